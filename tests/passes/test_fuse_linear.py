"""fuse_linear: MatMul(+bias) and Gemm with constant weights → Linear."""
import numpy as np

from tests.passes.common import B, Builder, T, apply, assert_same_numbers


def test_matmul_add_both_orders_and_plain_matmul():
    b = Builder()
    x = b.input("x", (B, T, 4))
    h1 = b.op("Add", b.rand(5), b.op("MatMul", x, b.rand(4, 5)))          # bias first
    h2 = b.op("Add", b.op("MatMul", h1, b.rand(5, 3)), b.rand(1, 1, 3))   # bias [1, 1, 3]
    h3 = b.op("MatMul", h2, b.rand(3, 2))                                  # no bias
    h4 = b.op("Add", b.op("MatMul", h3, b.rand(2, 2)), h3)                 # residual, not a bias
    g = b.output(h4)
    h, summary = apply("fuse_linear", g)
    assert h.op_counts() == {"Add": 1, "Linear": 4}
    assert summary == "fused 2 MatMul+Add, 2 MatMul into Linear"
    lin = [n for n in h.topo_nodes() if n.op == "Linear"]
    assert [len(n.inputs) for n in lin] == [3, 3, 2, 2]
    assert h.values[lin[1].inputs[2]].shape == (3,)
    assert_same_numbers(g, h)


def test_shared_matmul_is_not_fused_with_its_add():
    b = Builder()
    x = b.input("x", (B, 4))
    m = b.op("MatMul", x, b.rand(4, 4))
    g = b.output(b.op("Add", m, b.rand(4)), b.op("Relu", m))
    h, _ = apply("fuse_linear", g)
    assert h.op_counts() == {"Add": 1, "Linear": 1, "Relu": 1}
    assert_same_numbers(g, h)


def test_gemm():
    b = Builder()
    x = b.input("x", (B, 4))
    y = b.op("Gemm", x, b.rand(3, 4), b.rand(3), transB=1, alpha=0.5, beta=2.0)
    g = b.output(b.op("Gemm", y, b.rand(3, 2)))
    h, summary = apply("fuse_linear", g)
    assert h.op_counts() == {"Linear": 2}
    assert summary == "fused 2 Gemm into Linear"
    w = h.values[next(n for n in h.topo_nodes()).inputs[1]].data
    assert w.shape == (4, 3) and w.dtype == np.float32
    assert_same_numbers(g, h)


def test_activation_times_activation_is_left_alone():
    b = Builder()
    x = b.input("x", (B, 4, 4))
    g = b.output(b.op("MatMul", x, x))
    h, summary = apply("fuse_linear", g)
    assert h.op_counts() == {"MatMul": 1}
    assert summary.startswith("no MatMul")
