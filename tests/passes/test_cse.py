"""cse: duplicate ops (same op, inputs and attributes) computed once."""
from tests.passes.common import B, Builder, T, apply, assert_same_numbers


def test_duplicates_merge_and_numbers_stay():
    b = Builder()
    x = b.input("x", (B, T, 4))
    m = b.op("ReduceMean", x, axes=[-1], keepdims=1)
    d1, d2 = b.op("Sub", x, m), b.op("Sub", x, m)  # an unoptimised export repeats x - mean
    other = b.op("Sub", m, x)  # different input order: kept
    g = b.output(b.op("Add", b.op("Mul", d1, d1), b.op("Add", d2, other)))
    h, summary = apply("cse", g)
    assert summary == "merged 1 duplicate op(s)"
    assert sum(n.op == "Sub" for n in h.nodes.values()) == 2
    assert_same_numbers(g, h)
    _, again = apply("cse", h)
    assert again == "no duplicate op"
