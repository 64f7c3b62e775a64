"""remove_noops: Identity, same-type Cast, same-shape Reshape, Transpose∘Transpose."""
import pytest

from tests.passes.common import B, Builder, T, apply, assert_same_numbers


def test_removes_identity_cast_reshape():
    b = Builder()
    x = b.input("x", (B, T, 6))
    y = b.op("Identity", x)
    y = b.op("Cast", y, to="float32")
    y = b.op("Reshape", b.op("Relu", y), shape=[0, 0, 6])
    y = b.op("Cast", y, to="float64")                         # a real cast: stays
    g = b.output(b.op("Relu", y))
    h, summary = apply("remove_noops", g)
    assert h.op_counts() == {"Cast": 1, "Relu": 2}
    assert summary == "removed 1 Cast, 1 Identity, 1 Reshape"
    assert_same_numbers(g, h)


def test_transpose_pairs_compose():
    b = Builder()
    x = b.input("x", (B, T, 2, 3))
    a = b.op("Transpose", x, perm=[0, 2, 1, 3])
    a = b.op("Transpose", a, perm=[0, 1, 3, 2])               # composes to [0, 2, 3, 1]
    c = b.op("Transpose", b.op("Transpose", x, perm=[0, 2, 1, 3]), perm=[0, 2, 1, 3])  # identity
    g = b.output(b.op("Relu", a), b.op("Reshape", c, shape=[0, 0, 6]))
    h, summary = apply("remove_noops", g)
    assert h.op_counts() == {"Relu": 1, "Reshape": 1, "Transpose": 1}
    t = next(n for n in h.nodes.values() if n.op == "Transpose")
    assert t.attrs["perm"] == [0, 2, 3, 1] and t.inputs == ["x"]
    assert "Transpose∘Transpose" in summary
    assert_same_numbers(g, h)


@pytest.mark.parametrize("src_is_input", [True, False])
def test_graph_output_keeps_its_name(src_is_input):
    b = Builder()
    x = b.input("x", (B, 3))
    src = x if src_is_input else b.op("Relu", x)
    y = b.op("Identity", src)
    g = b.output(y)
    h, _ = apply("remove_noops", g)
    assert h.outputs == [y]
    # an output that would become the input itself stays an Identity
    assert h.op_counts() == ({"Identity": 1} if src_is_input else {"Relu": 1})
    assert_same_numbers(g, h)
