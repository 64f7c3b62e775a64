"""The op registry's shape functions (ir/ops): output shapes and dtypes by ONNX's rules, with
static and symbolic dims, and the errors for inputs that do not fit."""
from __future__ import annotations

import numpy as np
import pytest

from icl_compiler.ir.graph import Value
from icl_compiler.ir.ops import OPS, broadcast, with_defaults
from icl_compiler.ir.symbolic import dims_equal, sym

B, T = sym("batch"), sym("seq")


def shapes(op, ins, **attrs):
    vals = [None if s is None else Value(f"x{i}", tuple(s), dt)
            for i, (s, dt) in enumerate(ins)]
    return [(tuple(s), str(d)) for s, d in OPS[op].shape(vals, with_defaults(op, attrs))]


def f32(*shape):
    return (shape, "float32")


def i64(*shape):
    return (shape, "int64")


def same(a, b) -> bool:
    return len(a) == len(b) and all(
        len(sa) == len(sb) and all(dims_equal(x, y) for x, y in zip(sa, sb)) and da == db
        for (sa, da), (sb, db) in zip(a, b))


CASES = [
    # elementwise: numpy broadcasting, comparisons give bool
    ("Add", [f32(B, T, 4), f32(4)], {}, [f32(B, T, 4)]),
    ("Mul", [f32(B, 1, 4), f32(1, T, 1)], {}, [f32(B, T, 4)]),
    ("Less", [f32(B, T), f32(1)], {}, [((B, T), "bool")]),
    ("Where", [((T, T), "bool"), f32(B, T, T), f32()], {}, [f32(B, T, T)]),
    ("Relu", [f32(B, T, 4)], {}, [f32(B, T, 4)]),
    ("Cast", [f32(B, 3)], {"to": "int64"}, [i64(B, 3)]),
    # linear algebra
    ("MatMul", [f32(B, T, 4), f32(4, 6)], {}, [f32(B, T, 6)]),
    ("MatMul", [f32(B, 2, T, 8), f32(B, 2, 8, T)], {}, [f32(B, 2, T, T)]),
    ("MatMul", [f32(4), f32(4, 6)], {}, [f32(6)]),
    ("Gemm", [f32(3, 4), f32(6, 4), f32(6)], {"transB": 1}, [f32(3, 6)]),
    ("Einsum", [f32(B, T, 8), f32(B, T, 8)], {"equation": "btd,bsd->bts"}, [f32(B, T, T)]),
    ("Linear", [f32(B, T, 4), f32(4, 6), f32(6)], {}, [f32(B, T, 6)]),
    # shapes
    ("Reshape", [f32(B, T, 8)], {"shape": [0, 0, 2, -1]}, [f32(B, T, 2, 4)]),
    ("Reshape", [f32(B, T, 8)], {"shape": [-1, 8]}, [f32(B * T, 8)]),
    ("Reshape", [f32(2, 0)], {"shape": [0, 3], "allowzero": 1}, [f32(0, 3)]),
    ("Transpose", [f32(B, T, 2, 4)], {"perm": [0, 2, 1, 3]}, [f32(B, 2, T, 4)]),
    ("Transpose", [f32(B, T, 4)], {}, [f32(4, T, B)]),
    ("Unsqueeze", [f32(T, 4)], {"axes": [0, -1]}, [f32(1, T, 4, 1)]),
    ("Squeeze", [f32(1, T, 1, 4)], {"axes": [0, 2]}, [f32(T, 4)]),
    ("Squeeze", [f32(1, T, 1, 4)], {}, [f32(T, 4)]),
    ("Expand", [f32(T, 1)], {"shape": [B, 1, 4]}, [f32(B, T, 4)]),
    ("Concat", [f32(B, T, 2), f32(B, T, 3)], {"axis": -1}, [f32(B, T, 5)]),
    ("Concat", [f32(B, T, 2), f32(B, T, 2)], {"axis": 1}, [f32(B, 2 * T, 2)]),
    ("Split", [f32(B, T, 6)], {"axis": 2, "split": [2, 4], "num_outputs": 2},
     [f32(B, T, 2), f32(B, T, 4)]),
    ("Split", [f32(B, T, 6)], {"axis": -1, "num_outputs": 3}, [f32(B, T, 2)] * 3),
    ("Slice", [f32(B, T, 10)], {"starts": [2], "ends": [8], "axes": [2], "steps": [2]},
     [f32(B, T, 3)]),
    ("Slice", [f32(B, T, 10)], {"starts": [-3], "ends": [2**62], "axes": [-1]}, [f32(B, T, 3)]),
    ("Slice", [f32(16, 16)], {"starts": [0, 0], "ends": [T, T]}, [f32(T, T)]),
    ("Slice", [f32(1, T, 8)], {"starts": [-T], "ends": [2**62], "axes": [1]}, [f32(1, T, 8)]),
    ("Tile", [f32(B, T, 4)], {"repeats": [1, 1, 3]}, [f32(B, T, 12)]),
    ("Tile", [f32(2, T)], {"repeats": [B, 2]}, [f32(2 * B, 2 * T)]),
    ("Gather", [f32(30, 8), i64(B, T)], {}, [f32(B, T, 8)]),
    ("Gather", [f32(B, T, 8), i64()], {"axis": 1}, [f32(B, 8)]),
    ("Shape", [f32(B, T, 8)], {}, [i64(3)]),
    ("Shape", [f32(B, T, 8)], {"start": 1, "end": -1}, [i64(1)]),
    ("Size", [f32(B, T)], {}, [i64()]),
    ("Range", [], {"start": 0, "limit": T, "delta": 1, "dtype": "int64"}, [i64(T)]),
    ("Range", [], {"start": 1, "limit": 10, "delta": 3, "dtype": "int64"}, [i64(3)]),
    ("ConstantOfShape", [], {"shape": [T, T], "value": 0.0, "dtype": "float32"}, [f32(T, T)]),
    ("Trilu", [f32(T, T)], {"upper": 0}, [f32(T, T)]),
    ("CumSum", [f32(B, T)], {"axis": 1}, [f32(B, T)]),
    # reductions and norms
    ("ReduceSum", [f32(B, T, 4)], {"axes": [-1], "keepdims": 1}, [f32(B, T, 1)]),
    ("ReduceMean", [f32(B, T, 4)], {"axes": [1, 2], "keepdims": 0}, [f32(B)]),
    ("ReduceMax", [f32(B, T, 4)], {"keepdims": 0}, [f32()]),
    ("Softmax", [f32(B, T, T)], {"axis": -1}, [f32(B, T, T)]),
    ("LayerNormalization", [f32(B, T, 4), f32(4), f32(4)], {"axis": -1},
     [f32(B, T, 4), f32(B, T, 1), f32(B, T, 1)]),  # Y, and the optional Mean and InvStdDev
    ("LayerNorm", [f32(B, T, 4), f32(4), f32(4)], {}, [f32(B, T, 4)]),
    ("RMSNorm", [f32(B, T, 4), f32(4)], {}, [f32(B, T, 4)]),
    ("L2Norm", [f32(B, T, 4), f32(4)], {}, [f32(B, T, 4)]),
    # generic ONNX ops (onnx shape inference) and dims used as data
    ("Onnx", [i64(B, T), i64()], {"op_type": "Mod", "opset": 18, "onnx_attrs": {"fmod": 0}},
     [i64(B, T)]),
    ("Onnx", [f32(2, 3, 4)], {"op_type": "Flatten", "opset": 18, "onnx_attrs": {"axis": 1}},
     [f32(2, 12)]),
    ("Dims", [], {"values": [B * T, 4], "shape": [2]}, [i64(2)]),
    # attention and head layout
    ("PlasticAttention", [f32(B, T, 8), f32(B, T, 8), f32(B, T, 6)],
     {"heads": 2, "d_k": 4, "d_v": 3, "f": "relu", "scale": 0.5, "T_max": 16},
     [f32(B, T, 6)]),
    ("SplitHeads", [f32(B, T, 8)], {"heads": 2}, [f32(B, 2, T, 4)]),
    ("MergeHeads", [f32(B, 2, T, 4)], {}, [f32(B, T, 8)]),
]


@pytest.mark.parametrize("op, ins, attrs, want", CASES, ids=[c[0] for c in CASES])
def test_shape_function(op, ins, attrs, want):
    got = shapes(op, ins, **attrs)
    assert same(got, want), (got, want)


def test_every_registered_op_has_a_case_or_is_elementwise():
    covered = {c[0] for c in CASES}
    same_shape = [op for op in OPS if op not in covered]
    for op in same_shape:  # the rest are elementwise: same shape out (bool for logic ops)
        n = OPS[op].n_inputs[0]
        dt = "bool" if op in ("Not", "And", "Or") else "float32"
        out = shapes(op, [((B, T, 4), dt)] * max(n, 1), **({"to": "float32"} if op == "Cast"
                                                             else {}))
        assert [tuple(s) for s, _ in out] == [(B, T, 4)], op


@pytest.mark.parametrize("op, ins, attrs, match", [
    ("Add", [f32(B, 3), f32(B, 4)], {}, "broadcast"),
    ("MatMul", [f32(B, T, 4), f32(5, 6)], {}, "inner dims differ"),
    ("Reshape", [f32(B, T, 8)], {"shape": [-1, -1]}, "more than one -1"),
    ("Transpose", [f32(B, T, 4)], {"perm": [0, 0, 1]}, "not a permutation"),
    ("Concat", [f32(B, 2, 3), f32(B, 4, 3)], {"axis": 2}, "differ outside axis"),
    ("Split", [f32(B, 6)], {"axis": 1, "split": [2, 2], "num_outputs": 2}, "add up"),
    ("Split", [f32(B, T)], {"axis": 1, "num_outputs": 2}, "dynamic axis"),
])
def test_shape_function_refuses(op, ins, attrs, match):
    with pytest.raises((ValueError, IndexError, TypeError), match=match):
        shapes(op, ins, **attrs)


def test_broadcast_of_symbolic_and_static_dims():
    assert broadcast((B, 1), (1, 4)) == (B, 4)
    assert broadcast((B, T), (T,)) == (B, T)
    assert broadcast((3, 1), (1,)) == (3, 1)
    with pytest.raises(ValueError, match="broadcast"):
        broadcast((3,), (4,))


def test_interpreter_binds_a_dim_from_a_merged_axis():
    """An input shaped [2·batch, seq] (batch × heads merged, as after q.view(B*H, T, d)) binds
    batch from its first axis, so ops that read ``batch`` evaluate."""
    from icl_compiler.ir.graph import Graph
    from icl_compiler.ir.interpreter import bind_dims, run
    from icl_compiler.ir.symbolic import sym

    B, T = sym("batch"), sym("seq")
    g = Graph("merged")
    g.add_value("s", (2 * B, T), "float32")
    g.inputs = ["s"]
    g.add_value("z", (B, 2, T), "float32")
    g.add_node("Reshape", ["s"], ["z"], {"shape": [B, 2, T]})
    g.outputs = ["z"]
    assert bind_dims(g, {"s": np.zeros((6, 4))}) == {"batch": 3, "seq": 4}
    assert bind_dims(g, {"s": np.zeros((5, 4))}) == {"seq": 4}  # 5 is not 2·batch: unbound
    assert run(g, {"s": np.arange(24.0).reshape(6, 4)})["z"].shape == (3, 2, 4)
