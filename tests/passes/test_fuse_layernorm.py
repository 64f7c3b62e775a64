"""fuse_layernorm: ONNX LayerNormalization and the decomposed formula → LayerNorm."""
import pytest

from tests.passes.common import B, Builder, T, apply, assert_same_numbers


def decomposed(b: Builder, x: str, square: str, gamma=True, beta=True) -> str:
    mu = b.op("ReduceMean", x, axes=[-1], keepdims=1)
    d = b.op("Sub", x, mu)
    sq = b.op("Pow", d, b.const(2.0)) if square == "pow" else b.op("Mul", d, d)
    var = b.op("ReduceMean", sq, axes=[-1], keepdims=1)
    y = b.op("Div", d, b.op("Sqrt", b.op("Add", var, b.const(1e-5))))
    if gamma:
        y = b.op("Mul", y, b.const(b.rng.uniform(0.5, 1.5, 6)))
    if beta:
        y = b.op("Add", b.rand(6), y)
    return y


@pytest.mark.parametrize("square", ["pow", "mul"])
@pytest.mark.parametrize("gamma,beta", [(True, True), (True, False), (False, True), (False, False)])
def test_decomposed(square, gamma, beta):
    b = Builder()
    x = b.input("x", (B, T, 6))
    g = b.output(b.op("Relu", decomposed(b, x, square, gamma, beta)))
    h, summary = apply("fuse_layernorm", g)
    assert h.op_counts() == {"LayerNorm": 1, "Relu": 1}
    ln = next(n for n in h.nodes.values() if n.op == "LayerNorm")
    assert ln.inputs[0] == "x" and ln.attrs["epsilon"] == pytest.approx(1e-5)
    assert [bool(i) for i in ln.inputs[1:]] == [gamma, beta][:len(ln.inputs) - 1]
    assert "1 decomposed" in summary
    assert_same_numbers(g, h)


def test_onnx_layernormalization_last_axis_only():
    b = Builder()
    x = b.input("x", (B, T, 6))
    y = b.op("LayerNormalization", x, b.rand(6), b.rand(6), axis=-1, epsilon=1e-5)
    z = b.op("LayerNormalization", y, b.rand(6), axis=2)
    w = b.op("LayerNormalization", b.op("Reshape", z, shape=[0, 0, 2, 3]), b.rand(2, 3), axis=2)
    g = b.output(w)
    h, summary = apply("fuse_layernorm", g)
    assert h.op_counts() == {"LayerNorm": 2, "LayerNormalization": 1, "Reshape": 1}
    assert summary.startswith("fused 2 LayerNormalization")
    assert_same_numbers(g, h)


def test_mean_over_other_axis_is_not_a_layernorm():
    b = Builder()
    x = b.input("x", (B, T, 6))
    mu = b.op("ReduceMean", x, axes=[1], keepdims=1)
    d = b.op("Sub", x, mu)
    var = b.op("ReduceMean", b.op("Mul", d, d), axes=[-1], keepdims=1)
    g = b.output(b.op("Div", d, b.op("Sqrt", b.op("Add", var, b.const(1e-5)))))
    h, summary = apply("fuse_layernorm", g)
    assert "LayerNorm" not in h.op_counts() and summary == "no LayerNorm found"
