"""head_layout: head split/merge → SplitHeads/MergeHeads, fused qkv Split and per-head
projection Concats → Linears."""
import numpy as np

from tests.passes.common import B, Builder, T, apply, assert_same_numbers


def test_split_merge_around_batched_attention():
    b = Builder()
    x = b.input("x", (B, T, 8))
    q, k, v = (b.linear(x, 8, 8) for _ in range(3))
    qh = b.op("Transpose", b.op("Reshape", q, shape=[B, T, 2, 4]), perm=[0, 2, 1, 3])
    kt = b.op("Transpose", b.op("Reshape", k, shape=[0, 0, 2, 4]), perm=[0, 2, 3, 1])
    vh = b.op("Transpose", b.op("Reshape", v, shape=[B, T, 2, 4]), perm=[0, 2, 1, 3])
    o = b.op("MatMul", b.op("MatMul", qh, kt), vh)
    y = b.op("Reshape", b.op("Transpose", o, perm=[0, 2, 1, 3]), shape=[B, T, 8])
    g = b.output(y)
    h, summary = apply("head_layout", g)
    assert h.op_counts() == {"Linear": 3, "MatMul": 2, "MergeHeads": 1, "SplitHeads": 3,
                             "Transpose": 1}
    t = next(n for n in h.nodes.values() if n.op == "Transpose")
    assert t.attrs["perm"] == [0, 1, 3, 2] and h.producer(t.inputs[0]).op == "SplitHeads"
    assert all(n.attrs["heads"] == 2 for n in h.nodes.values() if n.op == "SplitHeads")
    assert h.producer(y).op == "MergeHeads"
    assert summary.startswith("3 head split(s) → SplitHeads, 1 merge(s) → MergeHeads")
    assert_same_numbers(g, h)


def test_not_a_head_split():
    b = Builder()
    x = b.input("x", (B, T, 8))
    r = b.op("Reshape", x, shape=[0, 0, 2, 4])
    g = b.output(b.op("Transpose", r, perm=[2, 0, 1, 3]))       # moves a leading axis
    h, summary = apply("head_layout", g)
    assert h.op_counts() == {"Reshape": 1, "Transpose": 1} and summary == "no head split/merge found"


def test_fused_qkv_split():
    b = Builder()
    x = b.input("x", (B, T, 6))
    qkv = b.linear(x, 6, 12)
    outs = [f"part{i}" for i in range(3)]
    for o, n in zip(outs, (4, 4, 4)):
        b.g.add_value(o, (B, T, n), "float32")
    b.g.add_node("Split", [qkv], outs, {"axis": -1, "split": [4, 4, 4], "num_outputs": 3})
    g = b.output(*outs)
    h, summary = apply("head_layout", g)
    assert h.op_counts() == {"Linear": 3}
    assert [h.producer(o).op for o in outs] == ["Linear"] * 3
    assert "1 fused projection(s) split" in summary
    assert_same_numbers(g, h)


def test_per_head_projections_concat():
    b = Builder()
    x = b.input("x", (B, T, 6))
    parts = [b.linear(x, 6, 3) for _ in range(2)]
    g = b.output(b.op("Concat", *parts, axis=-1))
    h, summary = apply("head_layout", g)
    assert h.op_counts() == {"Linear": 1}
    lin = next(iter(h.nodes.values()))
    assert h.values[lin.inputs[1]].data.shape == (6, 6) and h.values[lin.inputs[2]].data.shape == (6,)
    assert "1 per-head projection group(s) merged" in summary
    assert_same_numbers(g, h)


def test_concat_of_different_inputs_stays():
    b = Builder()
    x = b.input("x", (B, T, 6))
    g = b.output(b.op("Concat", b.linear(x, 6, 3), b.linear(b.op("Relu", x), 6, 3), axis=-1))
    h, _ = apply("head_layout", g)
    assert h.op_counts()["Concat"] == 1


def test_split_heads_ops_invert_each_other():
    from icl_compiler.ir.ops import OPS
    x = np.arange(2 * 3 * 8, dtype=np.float64).reshape(2, 3, 8)
    s, = OPS["SplitHeads"].compute([x], {"heads": 2})
    assert s.shape == (2, 2, 3, 4)
    np.testing.assert_array_equal(s, x.reshape(2, 3, 2, 4).transpose(0, 2, 1, 3))
    m, = OPS["MergeHeads"].compute([s], {})
    np.testing.assert_array_equal(m, x)
