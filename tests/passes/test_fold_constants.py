"""fold_constants: constant subgraphs become constants, dead ops disappear, symbolic ones stay."""
import numpy as np

from tests.passes.common import B, Builder, T, apply, assert_same_numbers


def graph():
    b = Builder()
    x = b.input("x", (B, T, 4))
    w = b.op("Transpose", b.rand(3, 4), perm=[1, 0])          # constant: folds
    w2 = b.op("Mul", w, b.const(2.0))                           # constant: folds
    y = b.op("MatMul", x, w2)
    b.op("Relu", y)                                             # dead
    ones = b.op("ConstantOfShape", shape=[T, T], value=1.0, dtype="float32")  # symbolic: stays
    tri = b.op("Trilu", ones, upper=0)
    s = b.op("MatMul", b.op("Transpose", y, perm=[0, 2, 1]), b.op("Unsqueeze", tri, axes=[0]))
    return b.output(s)


def test_folds_constants_and_removes_dead_code():
    g = graph()
    h, summary = apply("fold_constants", g)
    assert summary == "folded 2 constant op(s), removed 1 dead op(s)"
    assert h.op_counts() == {"ConstantOfShape": 1, "MatMul": 2, "Transpose": 1, "Trilu": 1,
                             "Unsqueeze": 1}
    w = h.nodes[next(n for n in h.nodes if h.nodes[n].op == "MatMul")].inputs[1]
    assert h.values[w].is_const and h.values[w].shape == (4, 3)
    assert_same_numbers(g, h)


def test_keeps_names_and_dtypes():
    g = graph()
    h, _ = apply("fold_constants", g)
    assert h.inputs == g.inputs and h.outputs == g.outputs
    for name, v in h.values.items():
        if v.is_const and name in g.values:
            assert v.dtype == g.values[name].dtype
            assert v.data.dtype == np.dtype(v.dtype)


def test_nothing_to_do():
    b = Builder()
    g = b.output(b.op("Relu", b.input("x", (B, 3))))
    h, summary = apply("fold_constants", g)
    assert summary == "folded 0 constant op(s), removed 0 dead op(s)"
    assert h.op_counts() == {"Relu": 1}
