"""tabulate_ids: a function of the token id alone (one-hot matmuls, id-derived padding masks)
becomes a Gather of a table evaluated on every id, computing the same numbers."""
import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

import icl_compiler as icl
from icl_compiler.frontend.importer import import_model
from tests.passes.common import B, Builder, T, apply, assert_same_numbers


V, D = 7, 4


def _onehot(b, x):
    """dynamo's F.one_hot(x, V).float(): x[..., None] == arange(V), cast."""
    return b.op("Cast", b.op("Equal", b.op("Unsqueeze", x, axes=[-1]),
                             b.const(np.arange(V), dtype="int64")), to="float32")


def _ops(g):
    return sorted(n.op for n in g.nodes.values())


def _onnx(nodes, inits, out_dim=D, out="y"):
    g = helper.make_graph(
        nodes, "ids", [helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", "seq"])],
        [helper.make_tensor_value_info(out, TensorProto.FLOAT, ["batch", "seq", out_dim])],
        [numpy_helper.from_array(np.asarray(a), n) for n, a in inits.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(m, full_check=True)
    return m


def _emb(seed=0, shape=(V, D)):
    return np.random.default_rng(seed).normal(0, 1, shape).astype(np.float32)


def test_onehot_matmul_becomes_a_lookup():
    m = _onnx([helper.make_node("OneHot", ["ids", "depth", "vals"], ["oh"], axis=-1),
               helper.make_node("Cast", ["oh"], ["ohf"], to=TensorProto.FLOAT),
               helper.make_node("MatMul", ["ohf", "E"], ["y"])],
              {"depth": np.array(V, np.int64), "vals": np.array([0, 1], np.int64), "E": _emb()})
    g = import_model(m)
    h, summary = apply("tabulate_ids", g)
    assert summary.startswith("tabulated 1 function(s) of the token ids") and f"({V} ids)" in summary
    assert _ops(h) == ["Cast", "Gather"]
    table = next(h.values[n.inputs[0]].data for n in h.nodes.values() if n.op == "Gather")
    np.testing.assert_allclose(table, _emb(), rtol=0, atol=0)
    assert_same_numbers(g, h)


def test_equal_to_arange_onehot_and_a_padding_mask_from_the_ids():
    """dynamo's one_hot (ids[..., None] == arange(V)) and E[x] * (x != 0)[..., None]."""
    b = Builder()
    x = b.input("x", (B, T), "int64")
    oh = _onehot(b, x)
    e1 = b.op("MatMul", oh, b.rand(V, D))
    keep = b.op("Cast", b.op("Not", b.op("Equal", x, b.const(0, dtype="int64"))), to="float32")
    e2 = b.op("Mul", b.op("Gather", b.rand(V, D), x, axis=0),
              b.op("Unsqueeze", keep, axes=[-1]))
    g = b.output(b.op("Relu", b.op("Add", e1, e2)))
    h, summary = apply("tabulate_ids", g)
    assert summary.startswith("tabulated 2 function(s)")  # each ends at its embedding
    assert _ops(h) == ["Add", "Cast", "Cast", "Gather", "Gather", "Relu"]
    assert_same_numbers(g, h)


def test_a_plain_lookup_what_follows_it_and_positions_are_left_alone():
    """E[x] then a norm is the model's own computation, not a function to tabulate (it would
    duplicate the table on chip)."""
    b = Builder()
    x = b.input("x", (B, T), "int64")
    e = b.op("Gather", b.rand(V, D), b.op("Identity", x), axis=0)
    e = b.op("Relu", b.op("Mul", e, b.rand(D)))
    pos = b.op("Range", start=0, limit=T, delta=1, dtype="int64")
    p = b.op("Gather", b.rand(16, D), pos, axis=0)
    g = b.output(b.op("Add", e, p))
    h, summary = apply("tabulate_ids", g)
    assert summary == "no function of the token ids to tabulate"
    assert _ops(h) == _ops(g)


def test_onehot_plus_positions_tabulates_only_the_id_part():
    b = Builder()
    x = b.input("x", (B, T), "int64")
    oh = _onehot(b, x)
    e = b.op("MatMul", oh, b.rand(V, D))
    pos = b.op("Range", start=0, limit=T, delta=1, dtype="int64")
    g = b.output(b.op("Add", e, b.op("Gather", b.rand(16, D), pos, axis=0)))
    h, summary = apply("tabulate_ids", g)
    assert summary.startswith("tabulated 1 function(s)")
    assert "Equal" not in _ops(h) and "Range" in _ops(h)
    assert_same_numbers(g, h)


def test_an_ambiguous_vocabulary_is_left_alone():
    """Two tables of different sizes: which ids the model serves is not the subgraph's to say."""
    b = Builder()
    x = b.input("x", (B, T), "int64")
    e = b.op("Add", b.op("Gather", b.rand(V, D), x, axis=0),
             b.op("Gather", b.rand(V + 3, D), x, axis=0))
    g = b.output(e)
    _, summary = apply("tabulate_ids", g)
    assert summary == "no function of the token ids to tabulate"


def test_a_value_mixing_tokens_is_not_tabulated():
    """A cumulative sum over the sequence depends on earlier ids: the numeric proof rejects it."""
    b = Builder()
    x = b.input("x", (B, T), "int64")
    oh = _onehot(b, x)
    g = b.output(b.op("CumSum", b.op("MatMul", oh, b.rand(V, D)), axis=1))
    h, summary = apply("tabulate_ids", g)
    assert "CumSum" in _ops(h)
    assert_same_numbers(g, h)


def test_a_onehot_model_compiles_and_matches_onnxruntime():
    rng = np.random.default_rng(3)
    W = {n: rng.normal(0, 0.5, (D, D)).astype(np.float32) for n in ("Wq", "Wk", "Wv", "Wo")}
    m = _onnx([helper.make_node("OneHot", ["ids", "depth", "vals"], ["oh"], axis=-1),
               helper.make_node("Cast", ["oh"], ["ohf"], to=TensorProto.FLOAT),
               helper.make_node("MatMul", ["ohf", "E"], ["h"]),
               helper.make_node("MatMul", ["h", "Wq"], ["q"]),
               helper.make_node("MatMul", ["h", "Wk"], ["k"]),
               helper.make_node("MatMul", ["h", "Wv"], ["v"]),
               helper.make_node("Transpose", ["k"], ["kt"], perm=[0, 2, 1]),
               helper.make_node("MatMul", ["q", "kt"], ["s"]),
               helper.make_node("Relu", ["s"], ["r"]),
               helper.make_node("Trilu", ["r"], ["w"], upper=0),
               helper.make_node("MatMul", ["w", "v"], ["a"]),
               helper.make_node("Add", ["a", "h"], ["res"]),
               helper.make_node("MatMul", ["res", "Wo"], ["y"])],
              {"depth": np.array(V, np.int64), "vals": np.array([0, 1], np.int64),
               "E": _emb(1), **W})
    x = rng.integers(0, V, (2, 6)).astype(np.int64)
    ref = ort.InferenceSession(m.SerializeToString(),
                               providers=["CPUExecutionProvider"]).run(None, {"ids": x})[0]
    prog = icl.compile(m, max_context=8)
    assert any(p["name"] == "tabulate_ids" and p["summary"].startswith("tabulated")
               for p in prog.report["passes"])
    y = prog.run(x)
    assert np.max(np.abs(y - ref)) <= 1e-4 * np.max(np.abs(ref))
    fixed = icl.compile(m, precision="fixed", calibration=x, max_context=8)
    assert np.max(np.abs(fixed.run(x) - ref)) <= 0.05 * np.max(np.abs(ref))
