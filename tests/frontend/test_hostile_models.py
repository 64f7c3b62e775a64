"""Hardening of the frontend: NaN/inf weights, hostile models (huge dims fail fast, graph damage
is a CompileError) and the frontend bugs the fuzzer found.

Each test checks the exit code (CLI, in-process: ``cli.main`` returns it, and any exception other
than the CLI's own handling fails the test) or the exception type, and the one-line message.
A few run the CLI as a subprocess to prove that no traceback reaches the user.
(External data has its own file, test_external_data.py; the random campaign is tests/fuzz.)
"""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import icl_compiler as icl
from icl_compiler.errors import CompileError
from icl_compiler.frontend import MAX_FOLD_ELEMENTS, import_model, load_onnx
from tests.helpers import SMALL, first_matrix, fixture, leftovers, one_line, run_cli, with_tensor

# ---------------------------------------------------------------------------------------------
# NaN / inf in weights

@pytest.mark.parametrize("value,word", [(np.nan, "NaN"), (np.inf, "inf"), (-np.inf, "inf")])
def test_nonfinite_initialiser_is_a_compile_error_naming_it(value, word):
    tensor = first_matrix(SMALL)
    with pytest.raises(CompileError) as ei:
        icl.compile(with_tensor(SMALL, tensor, value, index=3), max_context=16)
    msg = str(ei.value)
    assert f"initialiser {tensor!r}" in msg and word in msg and "1 of" in msg, msg
    assert "\n" not in msg


def test_nonfinite_constant_node_names_node_and_output():
    path, _, _ = fixture(SMALL)
    m = onnx.load(str(path))
    # the fixture's Constants are scalars/shape ints; add a float vector Constant used by an Add
    y = m.graph.output[0].name
    producer = next(n for n in m.graph.node if y in n.output)
    producer.output[0] = "pre_y"
    width = next(t for t in m.graph.initializer if t.name == "head.bias").dims[0]
    vec = np.ones(width, np.float32)
    vec[1] = np.nan
    m.graph.node.extend([
        helper.make_node("Constant", [], ["bad_vec"], name="my_bad_const",
                         value=numpy_helper.from_array(vec)),
        helper.make_node("Add", ["pre_y", "bad_vec"], [y], name="add_bad")])
    with pytest.raises(CompileError) as ei:
        import_model(load_onnx(m))
    msg = str(ei.value)
    assert "my_bad_const" in msg and "'bad_vec'" in msg and "NaN (1 of" in msg, msg


def test_scalar_minus_inf_mask_fill_is_accepted():
    # masked_fill(mask, -inf) exports a scalar -inf Constant: that is not a broken weight
    path, _, _ = fixture("tok_relu_perhead_fillneginf_1l2h")
    import_model(load_onnx(path))


def test_zero_minus_inf_additive_mask_is_accepted():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4, 4])
    mask = np.triu(np.full((4, 4), -np.inf, np.float32), 1)
    m = helper.make_model(helper.make_graph(
        [helper.make_node("Add", ["x", "mask"], ["y"])], "g", [x], [y],
        [numpy_helper.from_array(mask, "mask")]), opset_imports=[helper.make_opsetid("", 17)])
    import_model(load_onnx(m))


def test_cli_nonfinite_weight_exits_3_and_writes_nothing(tmp_path, capsys):
    tensor = first_matrix(SMALL)
    p = tmp_path / "nan.onnx"
    onnx.save(with_tensor(SMALL, tensor, np.nan), p)
    code, _, err = run_cli(capsys, p, "-o", tmp_path / "out")
    line = one_line(err)
    assert code == 3 and "cannot compile" in line and repr(tensor) in line and "NaN" in line
    assert not (tmp_path / "out").exists() and not leftovers(tmp_path)


# ---------------------------------------------------------------------------------------------
# hostile models: huge dims must fail fast (no allocation), graph damage is a CompileError

def _tiny(nodes, inits, x_shape=("batch", "seq", 4), y_rank=3):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x_shape))
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [f"o{i}" for i in range(y_rank)])
    return helper.make_model(helper.make_graph(nodes, "g", [x], [y], inits),
                             opset_imports=[helper.make_opsetid("", 17)])


def _const(name, arr):
    return numpy_helper.from_array(np.asarray(arr), name)


@pytest.mark.parametrize("n,needle", [
    (2**40, "above the limit of 2147483647"),
    (2**31, "above the limit of 2147483647"),
    (MAX_FOLD_ELEMENTS + 1, f"above the limit of {MAX_FOLD_ELEMENTS}"),
])
def test_huge_constant_of_shape_is_refused_before_allocating(n, needle):
    m = _tiny([helper.make_node("ConstantOfShape", ["s"], ["z"], name="big",
                                value=_const("v", np.array([1.0], np.float32))),
               helper.make_node("ReduceSum", ["z"], ["r"], keepdims=0),
               helper.make_node("Add", ["x", "r"], ["y"])],
              [_const("s", np.array([n], np.int64))])
    with pytest.raises(CompileError) as ei:
        import_model(load_onnx(m))
    msg = str(ei.value)
    assert "node 'big' (ConstantOfShape)" in msg and needle in msg, msg


def test_huge_expand_and_outer_products_are_refused():
    m = _tiny([helper.make_node("MatMul", ["a", "b"], ["z"], name="outer"),
               helper.make_node("ReduceSum", ["z"], ["r"], keepdims=0),
               helper.make_node("Add", ["x", "r"], ["y"])],
              [_const("a", np.ones((2**13, 1), np.float32)),
               _const("b", np.ones((1, 2**13), np.float32))])
    with pytest.raises(CompileError, match=r"node 'outer' \(MatMul\).*67108864 elements"):
        import_model(load_onnx(m))


def test_huge_input_dim_is_refused():
    m = _tiny([helper.make_node("Relu", ["x"], ["y"])], [], x_shape=(2**40, 4), y_rank=2)
    with pytest.raises(CompileError, match="graph input 'x': bad dimension 1099511627776"):
        import_model(load_onnx(m))


def test_reshape_with_uneven_minus_one_is_refused():
    # [batch, seq, 4] -> [batch, seq, -1, 3]: 4 is not divisible by 3 (ONNX shape inference
    # cannot tell with dynamic dims; the frontend used to round the -1 down silently)
    m = _tiny([helper.make_node("Shape", ["x"], ["sh"], end=2),
               helper.make_node("Concat", ["sh", "tail"], ["s"], axis=0),
               helper.make_node("Reshape", ["x", "s"], ["y"], name="rs")],
              [_const("tail", np.array([-1, 3], np.int64))], y_rank=4)
    with pytest.raises(CompileError, match=r"node 'rs' \(Reshape\): output 'y' gets a "
                                           r"non-integer dimension 4/3"):
        import_model(load_onnx(m))


def test_variadic_max_with_one_and_three_inputs_imports():
    for ins in (["x"], ["x", "x", "x"]):
        m = _tiny([helper.make_node("Max", ins, ["y"])], [])
        g = import_model(load_onnx(m))
        x = np.random.default_rng(0).normal(size=(2, 3, 4)).astype(np.float32)
        from icl_compiler.ir.interpreter import run
        from icl_compiler.ir.verify import verify

        verify(g)
        assert np.array_equal(run(g, {"x": x})["y"], x)


def test_non_utf8_string_attribute_is_a_compile_error():
    m = _tiny([helper.make_node("Gelu", ["x"], ["y"], name="g", approximate=b"\xff\xfe")], [])
    m.opset_import[0].version = 20
    with pytest.raises(CompileError, match=r"node 'g' \(Gelu\): attribute 'approximate' is not "
                                           "valid UTF-8"):
        import_model(load_onnx(m))


def test_unsupported_element_types_are_named():
    x = helper.make_tensor_value_info("x", TensorProto.BFLOAT16, ["batch", 4])
    y = helper.make_tensor_value_info("y", TensorProto.BFLOAT16, ["batch", 4])
    m = helper.make_model(helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x],
                                            [y]), opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(CompileError, match=r"graph input 'x' has element type BFLOAT16 \(16\)"):
        import_model(load_onnx(m))


def test_sympy_names_as_dim_params_do_not_become_sympy_constants():
    # dim_param "I" must not turn into the imaginary unit, nor "N" into sympy.N
    m = _tiny([helper.make_node("Relu", ["x"], ["y"])], [], x_shape=("I", "N", 4))
    g = import_model(load_onnx(m))
    dims = g.values["x"].shape[:2]
    assert all(d.is_Symbol for d in dims), dims


def test_cycle_and_unsorted_graph_are_compile_errors(tmp_path, capsys):
    path, _, _ = fixture(SMALL)
    m = onnx.load(str(path))
    nodes = list(m.graph.node)
    nodes[2].input[0] = nodes[5].output[0]  # feed an early node from a later one
    p = tmp_path / "cycle.onnx"
    onnx.save(m, p)
    code, _, err = run_cli(capsys, p, "-o", tmp_path / "out")
    line = one_line(err)
    assert code == 3 and "topologically sorted" in line
    assert not (tmp_path / "out").exists()


def test_model_path_that_is_a_directory(tmp_path, capsys):
    code, _, err = run_cli(capsys, tmp_path, "-o", tmp_path / "out")
    assert code == 3 and "is a directory, not an ONNX file" in one_line(err)


def test_cli_hostile_model_in_a_subprocess_has_no_traceback(tmp_path):
    m = _tiny([helper.make_node("ConstantOfShape", ["s"], ["z"], name="big",
                                value=_const("v", np.array([1.0], np.float32))),
               helper.make_node("ReduceSum", ["z"], ["r"], keepdims=0),
               helper.make_node("Add", ["x", "r"], ["y"])],
              [_const("s", np.array([2**40, 2**40], np.int64))])
    p = tmp_path / "huge.onnx"
    onnx.save(m, p)
    r = subprocess.run([sys.executable, "-m", "icl_compiler.cli", str(p), "-o",
                        str(tmp_path / "out")], capture_output=True, text=True, timeout=120)
    assert r.returncode == 3 and "Traceback" not in r.stderr, r.stderr
    assert "node 'big' (ConstantOfShape)" in one_line(r.stderr)
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------------------------
# frontend bugs the fuzzer found: each used to import into an IR whose declared shapes or
# values were wrong (or crashed with an unclear message)

def _model(nodes, inits, x_shape=("batch", "seq", 4), y_shape=None, opset=17):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x_shape))
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT,
                                      y_shape if y_shape is not None else ["a", "b", "c"])
    return helper.make_model(helper.make_graph(nodes, "g", [x], [y], inits),
                             opset_imports=[helper.make_opsetid("", opset)])


def test_concat_of_mismatched_non_axis_dims_is_refused():
    # [batch, seq, 4] ++ [batch, 2*seq, 4] along the last axis: ONNX shape inference cannot
    # compare seq with 2*seq, and the IR's shape function only added up the axis
    m = _model([helper.make_node("Concat", ["x", "x"], ["xx"], axis=1),
                helper.make_node("Concat", ["x", "xx"], ["y"], axis=-1, name="cat")], [])
    with pytest.raises(CompileError, match=r"node 'cat' \(Concat\): Concat input 1 has shape "
                                           r"\[batch, 2\*seq, 4\].*differ in dim 1"):
        import_model(load_onnx(m))


def test_empty_runtime_tensor_is_refused():
    m = _model([helper.make_node("Slice", ["x", "s", "e", "a"], ["y"], name="sl")],
               [_const("s", np.array([0])), _const("e", np.array([0])), _const("a", np.array([2]))])
    with pytest.raises(CompileError, match=r"node 'sl' \(Slice\): output 'y' is empty"):
        import_model(load_onnx(m))


def test_layernorm_bias_that_does_not_broadcast_is_refused():
    m = _model([helper.make_node("LayerNormalization", ["x", "g", "b"], ["y"], name="ln")],
               [_const("g", np.ones(4, np.float32)), _const("b", np.zeros((4, 1), np.float32))])
    with pytest.raises(CompileError, match=r"LayerNormalization bias 'b' has shape \[4, 1\]"):
        import_model(load_onnx(m))


def test_trilu_with_k_minus_2_to_the_63_keeps_nothing():
    m = _model([helper.make_node("Trilu", ["x", "k"], ["y"], upper=0)],
               [_const("k", np.array(-(2**63), np.int64))])
    from icl_compiler.ir.interpreter import run

    g = import_model(load_onnx(m))
    x = np.ones((1, 3, 4), np.float32)
    assert not run(g, {"x": x})["y"].any()  # numpy's tril overflowed on -k before the clamp


def test_corrupt_bool_bytes_are_refused():
    mask = numpy_helper.from_array(np.tril(np.ones((4, 4), bool)), "mask")
    raw = bytearray(mask.raw_data)
    raw[4] = 0x81  # row 1, col 0: true to numpy, false to onnxruntime's Where
    mask.raw_data = bytes(raw)
    m = _model([helper.make_node("Where", ["mask", "x", "zero"], ["y"])],
               [mask, _const("zero", np.array(0, np.float32))], x_shape=("batch", 4, 4))
    with pytest.raises(CompileError, match="initialiser 'mask' is a bool tensor with 1 byte"):
        import_model(load_onnx(m))


def test_symbolic_division_by_zero_in_shape_arithmetic():
    m = _model([helper.make_node("Shape", ["x"], ["sh"]),
                helper.make_node("Div", ["sh", "zeros"], ["q"], name="div"),
                helper.make_node("Reshape", ["x", "q"], ["y"])],
               [_const("zeros", np.zeros(3, np.int64))])
    with pytest.raises(CompileError, match=r"node 'div' \(Div\): shape arithmetic divides "
                                           "batch by 0"):
        import_model(load_onnx(m))


def test_einsum_implicit_output_and_bad_indices():
    from icl_compiler.ir.interpreter import run

    w = np.arange(12, dtype=np.float32).reshape(4, 3)
    m = _model([helper.make_node("Einsum", ["x", "w"], ["y"], equation="bti,ij")],
               [_const("w", w)], opset=17)
    g = import_model(load_onnx(m))  # implicit form: output "bjt" (sorted letters seen once)
    x = np.random.default_rng(0).normal(size=(2, 3, 4)).astype(np.float32)
    assert np.allclose(run(g, {"x": x})["y"], np.einsum("bti,ij->bjt", x, w), atol=1e-5)
    m = _model([helper.make_node("Einsum", ["x", "w"], ["y"], equation="bti,ij->btj",
                                 name="ein")], [_const("w", np.ones((5, 3), np.float32))])
    with pytest.raises(CompileError, match=r"node 'ein' \(Einsum\): Einsum index 'i' has "
                                           "sizes 4 and 5"):
        import_model(load_onnx(m))


def test_invalid_utf8_text_fields_are_refused(tmp_path):
    # protobuf returns such string fields as bytes (here a dim_param), which used to crash
    m = _model([helper.make_node("Relu", ["x"], ["y"])], [])
    data = m.SerializeToString().replace(b"seq", b"s\xe5q", 1)
    p = tmp_path / "bad_text.onnx"
    p.write_bytes(data)
    with pytest.raises(CompileError, match=r"model\.graph\.input\[0\].*dim\[1\]\.dim_param is "
                                           "not valid UTF-8"):
        load_onnx(p)
