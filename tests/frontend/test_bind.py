"""frontend/bind.py: auxiliary inputs bound to their neutral value at compile time."""
import numpy as np
import pytest

from icl_compiler.errors import CompileError
from icl_compiler.frontend.bind import bind_inputs, data_input
from icl_compiler.ir.interpreter import run
from tests.passes.common import B, Builder, T


def _model(*extra):
    b = Builder()
    ids = b.input("input_ids", (B, T), "int64")
    for name in extra:
        b.input(name, (B, T), "int64")
    y = b.op("Cast", ids, to="float32")
    for name in extra:
        y = b.op("Add", y, b.op("Cast", name, to="float32"))
    return b.output(y)


def test_defaults_by_name_and_the_values_they_bind():
    g = _model("attention_mask", "position_ids", "token_type_ids")
    assert data_input(g) == "input_ids"
    assert bind_inputs(g) == {"attention_mask": "ones", "position_ids": "arange",
                              "token_type_ids": "zeros"}
    assert g.inputs == ["input_ids"]
    ids = np.array([[5, 6, 7], [1, 2, 3]])
    y = run(g, {"input_ids": ids})[g.outputs[0]]
    np.testing.assert_array_equal(y, ids + 1 + np.arange(3))  # ones + arange + zeros


def test_explicit_bindings_and_errors():
    g = _model("attention_mask")
    assert bind_inputs(g, {"attention_mask": "zeros"}) == {"attention_mask": "zeros"}
    with pytest.raises(CompileError, match="not a model input"):
        bind_inputs(_model("attention_mask"), {"nope": "ones"})
    with pytest.raises(CompileError, match="no default value") as e:
        bind_inputs(_model("extra_flags"))
    assert "--bind extra_flags=" in e.value.hint
    with pytest.raises(CompileError, match="past key/value"):
        bind_inputs(_model("past_key_values.0.key"))
    with pytest.raises(CompileError, match="static shape"):
        bind_inputs(_model("attention_mask"), {"attention_mask": np.ones((2, 3))})


def test_parse_bind(tmp_path):
    from icl_compiler.errors import OptionError
    from icl_compiler.options import parse_bind

    f = tmp_path / "m.npy"
    np.save(f, np.ones((1, 4), np.int64))
    out = parse_bind(["attention_mask=ones", f"mask2={f}"])
    assert out["attention_mask"] == "ones" and out["mask2"].shape == (1, 4)
    with pytest.raises(OptionError, match="NAME="):
        parse_bind(["oops"])


def test_the_io_contract_is_checked_before_the_import():
    """An input without a binding is the first problem, whatever else the graph has."""
    import onnx
    from onnx import TensorProto, helper

    import icl_compiler as icl

    then = helper.make_graph([helper.make_node("Identity", ["x"], ["t"])], "then", [],
                             [helper.make_tensor_value_info("t", TensorProto.FLOAT,
                                                            ["b", "s", 4])])
    nodes = [helper.make_node("ReduceMin", ["flags"], ["r"], keepdims=0),
             helper.make_node("Cast", ["r"], ["cond"], to=TensorProto.BOOL),
             helper.make_node("If", ["cond"], ["y"], then_branch=then, else_branch=then)]
    g = helper.make_graph(nodes, "m", [
        helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", "s", 4]),
        helper.make_tensor_value_info("flags", TensorProto.INT64, ["b", "s"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", "s", 4])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)], ir_version=9)
    with pytest.raises(CompileError, match="'flags' is not the data input"):
        icl.compile(m)
    with pytest.raises(CompileError, match="subgraphs"):  # bound: the next problem shows
        icl.compile(m, bind={"flags": "ones"})
    with pytest.raises(CompileError, match="--outputs names 'logits'"):
        icl.compile(m, bind={"flags": "ones"}, outputs=["logits"])
    onnx.checker.check_model(m)
