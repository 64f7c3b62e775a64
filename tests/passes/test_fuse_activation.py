"""fuse_activation: smooth activations in every exported form → Activation, by their numbers."""
import math

import numpy as np
import pytest

from icl_compiler.ir.interpreter import run
from icl_compiler.ir.ops import ACTIVATIONS
from icl_compiler.passes.fuse_activation import GRID, match
from tests.passes.common import B, Builder, T, apply, feeds_for

SQRT2 = math.sqrt(2.0)
C = math.sqrt(2.0 / math.pi)


def _onnx(b, op_type, *ins):
    """An op the IR imports generically (evaluated by onnx.reference)."""
    return b.op("Onnx", *ins, op_type=op_type, opset=17, onnx_attrs={}, n_outputs=1)


def _same(g, h, rtol=1e-6):
    for seq in (3, 6):
        feeds = {k: v * 4 for k, v in feeds_for(g, seq=seq).items()}
        a, b = run(g, feeds, float_dtype="float64"), run(h, feeds, float_dtype="float64")
        for o in g.outputs:
            np.testing.assert_allclose(b[o], a[o], rtol=rtol, atol=1e-7)


def _forms():
    """(name, expected fn, builder of y from x): the forms exporters write."""
    def gelu_ts(b, x):  # TorchScript: Div, Erf, Add, Mul, Mul
        e = b.op("Erf", b.op("Div", x, b.const(SQRT2)))
        return b.op("Mul", b.op("Mul", x, b.op("Add", e, b.const(1.0))), b.const(0.5))

    def gelu_dyn(b, x):  # dynamo: x·0.5 first, erf(x·(1/√2))
        e = b.op("Erf", b.op("Mul", x, b.const(1 / SQRT2)))
        return b.op("Mul", b.op("Mul", x, b.const(0.5)), b.op("Add", b.const(1.0), e))

    def gelu_new(b, x):  # HF gelu_new: 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))
        inner = b.op("Add", x, b.op("Mul", b.const(0.044715), b.op("Pow", x, b.const(3.0))))
        t = b.op("Tanh", b.op("Mul", b.const(C), inner))
        return b.op("Mul", b.op("Mul", b.const(0.5), x), b.op("Add", b.const(1.0), t))

    def softplus_log(b, x):  # log(1 + e^x) written out
        return _onnx(b, "Log", b.op("Add", b.op("Exp", x), b.const(1.0)))

    return [
        ("gelu_torchscript", "gelu", gelu_ts),
        ("gelu_dynamo", "gelu", gelu_dyn),
        ("gelu_op", "gelu", lambda b, x: b.op("Gelu", x)),
        ("gelu_new", "gelu_tanh", gelu_new),
        ("gelu_op_tanh", "gelu_tanh", lambda b, x: b.op("Gelu", x, approximate="tanh")),
        ("silu", "silu", lambda b, x: b.op("Mul", x, b.op("Sigmoid", x))),
        ("silu_swapped", "silu", lambda b, x: b.op("Mul", b.op("Sigmoid", x), x)),
        ("silu_div", "silu", lambda b, x: b.op("Div", x, b.op("Add", b.const(1.0), b.op(
            "Exp", b.op("Neg", x))))),
        ("quick_gelu", "quick_gelu", lambda b, x: b.op("Mul", x, b.op("Sigmoid", b.op(
            "Mul", x, b.const(1.702))))),
        ("sigmoid", "sigmoid", lambda b, x: b.op("Sigmoid", x)),
        ("tanh", "tanh", lambda b, x: b.op("Tanh", x)),
        ("softplus_log", "softplus", softplus_log),
        ("softplus_op", "softplus", lambda b, x: _onnx(b, "Softplus", x)),
        ("mish", "mish", lambda b, x: b.op("Mul", x, b.op("Tanh", softplus_log(b, x)))),
        ("relu2_pow", "relu2", lambda b, x: b.op("Pow", b.op("Relu", x), b.const(2.0))),
        ("relu2_mul", "relu2", lambda b, x: (lambda r: b.op("Mul", r, r))(b.op("Relu", x))),
    ]


@pytest.mark.parametrize("name, fn, make", _forms(), ids=[f[0] for f in _forms()])
def test_every_exported_form_becomes_one_activation(name, fn, make):
    b = Builder()
    x = b.input("x", (B, T, 8))
    h0 = b.linear(x, 8, 8)
    y = make(b, h0)
    g = b.output(b.linear(y, 8, 4))
    h, summary = apply("fuse_activation", g)
    acts = [n for n in h.nodes.values() if n.op == "Activation"]
    assert len(acts) == 1 and acts[0].attrs["fn"] == fn and acts[0].inputs == [h0]
    assert h.op_counts() == {"Linear": 2, "Activation": 1}
    assert summary == f"fused 1 {fn}"
    _same(g, h)


def test_the_largest_matching_region_wins_and_the_rest_stays():
    b = Builder()
    x = b.input("x", (B, T, 8))
    silu = b.op("Mul", x, b.op("Sigmoid", x), onnx_name="/act/Mul")
    y = b.op("Add", b.op("Mul", silu, b.const(2.0)), x)  # 2·silu(x) + x: no candidate
    g = b.output(y)
    h, _ = apply("fuse_activation", g)
    (act,) = [n for n in h.nodes.values() if n.op == "Activation"]
    assert act.attrs["fn"] == "silu" and act.onnx_name == "/act/Mul"
    assert h.op_counts() == {"Activation": 1, "Mul": 1, "Add": 1}
    _same(g, h)


def test_an_intermediate_value_used_elsewhere_splits_the_region():
    b = Builder()
    x = b.input("x", (B, T, 8))
    s = b.op("Sigmoid", x)
    g = b.output(b.op("Add", b.op("Mul", x, s), s))  # s is read outside x·s
    h, _ = apply("fuse_activation", g)
    assert [n.attrs["fn"] for n in h.nodes.values() if n.op == "Activation"] == ["sigmoid"]
    assert h.op_counts() == {"Activation": 1, "Mul": 1, "Add": 1}
    _same(g, h)


def test_two_values_or_per_feature_constants_are_not_one_function():
    b = Builder()
    x, y = b.input("x", (B, T, 8)), b.input("y", (B, T, 8))
    g = b.output(b.op("Mul", b.op("Sigmoid", x), y))  # a gate: sigmoid(x)·y
    h, _ = apply("fuse_activation", g)
    assert h.op_counts() == {"Activation": 1, "Mul": 1}
    b = Builder()
    x = b.input("x", (B, T, 8))
    scale = b.const(np.linspace(0.5, 1.0, 8))  # per-feature: not one scalar function
    g = b.output(b.op("Mul", b.op("Mul", x, scale), b.op("Sigmoid", x)))
    h, summary = apply("fuse_activation", g)
    assert [n.attrs["fn"] for n in h.nodes.values() if n.op == "Activation"] == ["sigmoid"]


def test_attention_scores_are_left_to_the_attention_pass():
    b = Builder()
    x = b.input("x", (B, T, 4))
    s = b.op("MatMul", x, b.op("Transpose", x, perm=[0, 2, 1]))  # pairwise
    g = b.output(b.op("MatMul", b.op("Sigmoid", s), x))
    h, summary = apply("fuse_activation", g)
    assert summary == "no smooth activation found" and "Activation" not in h.op_counts()


def test_match_tells_the_functions_apart():
    for name, f in ACTIVATIONS.items():
        assert match(f(GRID)) == name
    # the erf and tanh forms of GELU differ by up to ~5e-4: far outside the tolerance
    assert match(ACTIVATIONS["gelu"](GRID) + 1e-4) is None
    assert match(np.maximum(GRID, 0)) is None  # ReLU stays ReLU (graded ReLU neurons)
