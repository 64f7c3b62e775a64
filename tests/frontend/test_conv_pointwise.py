"""Kernel-1 convolutions over the sequence axis (nn.Conv1d(d, d, 1) on a transposed [B, d, T]
activation, a kernel-1 Conv2d on [B, d, T, 1], grouped) import as Einsum (+ bias), the same
numbers; a Conv whose window spans the tokens is refused naming the node and why."""
from __future__ import annotations

import numpy as np
import pytest

import icl_compiler as icl
from icl_compiler.backends.lava import lava_available
from icl_compiler.errors import CompileError
from icl_compiler.frontend import import_model
from icl_compiler.ir.interpreter import run
from tests.onnx_builder import Net, ort_run, rel_err

D = 8
X = np.random.default_rng(1).normal(size=(1, 6, D)).astype(np.float32)


def conv_model(kind="conv1d", t="T", k=1, group=1, bias=True, dil=1):
    n = Net(d=D, t=t)
    h = n.linear("x", D, D)
    if kind == "conv1d":  # x.transpose(1, 2) → Conv1d → transpose back
        xt = n.op("Transpose", h, perm=[0, 2, 1])
        ins = [xt, n.weight(D, D // group, k)] + ([n.c(n.rng.normal(0, .1, D))] if bias else [])
        c = n.op("Conv", *ins, kernel_shape=[k], pads=[(k - 1) * dil, 0], group=group,
                 dilations=[dil], name="token_conv")
        y = n.op("Transpose", c, perm=[0, 2, 1])
    else:  # [B, d, T, 1] → Conv2d(d, d, 1)
        xt = n.op("Unsqueeze", n.op("Transpose", h, perm=[0, 2, 1]), n.i64([3]))
        c = n.op("Conv", xt, n.weight(D, D // group, 1, 1), n.c(n.rng.normal(0, .1, D)),
                 kernel_shape=[1, 1], group=group, name="token_conv")
        y = n.op("Transpose", n.op("Squeeze", c, n.i64([3])), perm=[0, 2, 1])
    h2 = n.op("Add", h, n.op("Relu", y))
    return n.model(n.op("Add", h2, n.attention(h2)))


CASES = [dict(), dict(t=6), dict(bias=False), dict(group=2), dict(kind="conv2d"),
         dict(kind="conv2d", group=4, t=6)]


@pytest.mark.parametrize("kw", CASES, ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()))
def test_kernel1_conv_is_a_per_token_linear(kw):
    m = conv_model(**kw)
    g = import_model(m)
    assert not any(nd.op in ("Conv", "Onnx") for nd in g.nodes.values())
    for T in ((1, 6) if kw.get("t", "T") == "T" else (6,)):
        got = run(g, {"x": X[:, :T]})[g.outputs[0]]
        assert rel_err(got, ort_run(m, X[:, :T])) < 1e-5
    ref, ctx = ort_run(m, X), 16 if kw.get("t", "T") == "T" else None
    assert rel_err(icl.compile(m, max_context=ctx).run(X), ref) < 1e-4
    fixed = icl.compile(m, precision="fixed", calibration=X, max_context=ctx)
    assert rel_err(fixed.run(X), ref) < 0.05


@pytest.mark.parametrize("kw", [dict(k=3), dict(k=2, dil=2), dict(k=3, t=6)])
def test_conv_over_the_tokens_is_refused_naming_it(kw):
    m = conv_model(**kw)
    with pytest.raises(CompileError) as e:
        icl.compile(m, max_context=16 if kw.get("t", "T") == "T" else None)
    assert "token_conv" in str(e.value) and "mixes neighbouring tokens" in str(e.value)


@pytest.mark.lava
@pytest.mark.skipif(not lava_available(), reason="Lava is not available")
def test_fixed_lava_equals_numpy_bit_for_bit():
    prog = icl.compile(conv_model(group=2), precision="fixed", calibration=X, max_context=8)
    want = prog.run(X, backend="numpy", return_payload=True)
    assert np.count_nonzero(want) > want.size // 2
    np.testing.assert_array_equal(prog.run(X, backend="lava", return_payload=True), want)
