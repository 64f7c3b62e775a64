"""ir/onnx_op.py: any standard ONNX op, with onnx's reference semantics and shape inference."""
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from icl_compiler.frontend import import_model, load_onnx
from icl_compiler.ir import onnx_op
from icl_compiler.ir.interpreter import run
from icl_compiler.ir.symbolic import sym


def test_infer_keeps_symbolic_dims_and_evaluate_matches_numpy():
    b, s = sym("batch"), sym("seq")
    assert onnx_op.infer("Mod", {"fmod": 0}, [((b, s), "int64"), ((), "int64")], 1, 18) == \
        [((b, s), "int64")]
    x = np.arange(12).reshape(3, 4)
    (y,) = onnx_op.evaluate("Mod", {}, [x, np.array(5)], 1, 18)
    np.testing.assert_array_equal(y, x % 5)
    with pytest.raises(ValueError, match="depends on the data"):
        onnx_op.infer("NonZero", {}, [((b, s), "int64")], 1, 18)


def _model(nodes, inits, inp, out):
    g = helper.make_graph(nodes, "m", [inp], [out], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)], ir_version=9)


def test_import_folds_constant_subgraphs_of_unsupported_ops_and_keeps_dynamic_ones(tmp_path):
    inp = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "seq", 4])
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "seq", 4])
    nodes = [
        helper.make_node("Mod", ["a", "b"], ["m"], fmod=0),  # constants only: folded
        helper.make_node("Cast", ["m"], ["mf"], to=TensorProto.FLOAT),
        helper.make_node("Cos", ["x"], ["c"]),  # on data: an Onnx node
        helper.make_node("Add", ["c", "mf"], ["y"]),
    ]
    inits = [numpy_helper.from_array(np.array([7, 8, 9, 10], np.int64), "a"),
             numpy_helper.from_array(np.array(4, np.int64), "b")]
    path = tmp_path / "m.onnx"
    onnx.save(_model(nodes, inits, inp, out), path)
    g = import_model(load_onnx(path))
    ops = sorted(n.op for n in g.nodes.values())
    assert ops == ["Add", "Onnx"] and next(n for n in g.nodes.values()
                                           if n.op == "Onnx").attrs["op_type"] == "Cos"
    x = np.random.default_rng(0).normal(size=(2, 3, 4)).astype(np.float32)
    np.testing.assert_allclose(run(g, {"x": x})["y"], np.cos(x) + np.array([3, 0, 1, 2]),
                               rtol=1e-6)


def test_folding_is_bounded_by_growth_not_by_views():
    from icl_compiler.errors import CompileError

    inp = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, None])
    big = np.zeros((1 << 12, 1 << 13), np.float32)  # 2^25 elements, above the fold limit
    nodes = [helper.make_node("Transpose", ["w"], ["wt"], perm=[1, 0]),  # a view: folded
             helper.make_node("Shape", ["wt"], ["s"]),
             helper.make_node("Cast", ["s"], ["sf"], to=TensorProto.FLOAT),
             helper.make_node("Add", ["x", "sf"], ["y"])]
    m = _model(nodes, [numpy_helper.from_array(big, "w")], inp, out)
    g = import_model(load_onnx(m))
    assert [n.op for n in g.nodes.values()] == ["Add"]
    tile = [helper.make_node("Tile", ["c", "r"], ["t"]),  # growth: refused, not allocated
            helper.make_node("Add", ["x", "t"], ["y"])]
    m = _model(tile, [numpy_helper.from_array(np.array([1 << 14, 1 << 14], np.int64), "r"),
                      numpy_helper.from_array(np.zeros((1, 2), np.float32), "c")],
               helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2]), out)
    with pytest.raises(CompileError):
        import_model(load_onnx(m))
