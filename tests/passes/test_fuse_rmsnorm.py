"""fuse_rmsnorm: hand-written RMSNorm (TorchScript and dynamo forms) → RMSNorm."""
import pytest

from tests.passes.common import B, Builder, T, apply, assert_same_numbers


def rms(b: Builder, x: str, square: str, inv: str) -> str:
    sq = b.op("Pow", x, b.const(2.0)) if square == "pow" else b.op("Mul", x, x)
    s = b.op("Sqrt", b.op("Add", b.op("ReduceMean", sq, axes=[-1], keepdims=1), b.const(1e-6)))
    if inv == "div1":                      # TorchScript: Div(1, sqrt)
        return b.op("Mul", x, b.op("Div", b.const(1.0), s))
    if inv == "reciprocal":                # dynamo: Reciprocal(sqrt), Mul operands swapped
        return b.op("Mul", b.op("Reciprocal", s), x)
    return b.op("Div", x, s)               # x / sqrt


@pytest.mark.parametrize("square", ["pow", "mul"])
@pytest.mark.parametrize("inv", ["div1", "reciprocal", "div"])
def test_rmsnorm_forms_with_gamma(square, inv):
    b = Builder()
    x = b.input("x", (B, T, 8))
    y = b.op("Mul", rms(b, x, square, inv), b.const(b.rng.uniform(0.5, 1.5, 8)))
    g = b.output(b.op("Relu", y))
    h, summary = apply("fuse_rmsnorm", g)
    assert h.op_counts() == {"RMSNorm": 1, "Relu": 1}
    n = next(n for n in h.nodes.values() if n.op == "RMSNorm")
    assert n.inputs[0] == "x" and len(n.inputs) == 2 and n.attrs["epsilon"] == pytest.approx(1e-6)
    assert summary == "fused 1 RMSNorm(s) (absorbed 1 gamma op(s))"
    assert_same_numbers(g, h)


def test_without_gamma_and_shared_input():
    b = Builder()
    x = b.input("x", (B, T, 8))
    y = rms(b, x, "pow", "div1")
    g = b.output(b.op("Add", y, x))        # x is also used by the residual
    h, _ = apply("fuse_rmsnorm", g)
    assert h.op_counts() == {"Add": 1, "RMSNorm": 1}
    assert_same_numbers(g, h)


def test_other_exponent_is_not_rms():
    b = Builder()
    x = b.input("x", (B, T, 8))
    sq = b.op("Pow", x, b.const(3.0))
    s = b.op("Sqrt", b.op("Add", b.op("ReduceMean", sq, axes=[-1], keepdims=1), b.const(1e-6)))
    g = b.output(b.op("Div", x, s))
    h, summary = apply("fuse_rmsnorm", g)
    assert summary == "no RMSNorm found" and "RMSNorm" not in h.op_counts()
