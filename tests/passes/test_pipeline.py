"""The default pipeline on every torch-exported fixture: one PlasticAttention per layer, no
product of two activations left, same numbers as onnxruntime and as the imported graph."""
from functools import cache

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from icl_compiler.errors import CompileError
from icl_compiler.frontend import import_model, load_onnx
from icl_compiler.ir.interpreter import run
from icl_compiler.passes.attention import attention_report
from icl_compiler.passes.manager import PassContext, run_pipeline
from tests.helpers import fixture, fixture_names

# masks built at run time from the sequence length: no buffer fixes T_max
RUNTIME_MASKS = {"tril_mul_runtime", "where_arange"}
LOWERABLE = {"Linear", "Relu", "Add", "Sub", "Mul", "Div", "LayerNorm", "RMSNorm", "Gather",
             "Range", "Unsqueeze", "Identity", "PlasticAttention"}


@cache
def imported(name):
    path, x, meta = fixture(name)
    return import_model(load_onnx(path)), path, x, meta


def _inputs(meta, x0, seq):
    rng = np.random.default_rng(seq)
    if meta["input"] == "tokens":
        return rng.integers(0, meta["in_dim"], size=(2, seq)).astype(np.int64)
    return rng.uniform(0, 1, size=(2, seq, meta["in_dim"])).astype(np.float32)


@pytest.mark.parametrize("name", fixture_names(softmax=False))
def test_default_pipeline(name):
    g0, path, x0, meta = imported(name)
    g = g0.copy()
    ctx = PassContext(max_context=meta["t_max"] if meta["mask"] in RUNTIME_MASKS else None)
    report = run_pipeline(g, ctx, verify_each=True)
    assert [r["name"] for r in report][-2:] == ["attention", "fuse_activation"]

    pas = [n for n in g.topo_nodes() if n.op == "PlasticAttention"]
    assert len(pas) == meta["layers"]
    for i, n in enumerate(pas):
        a = n.attrs
        assert (a["layer"], a["heads"], a["f"], a["T_max"]) == (i, meta["heads"], meta["f"], 16)
        assert a["d_k"] * a["heads"] == meta["d_model"]
        assert a["normalisation"] == ("rowsum" if meta["rownorm"] else "none")
        assert all(g.producer(v).op == "Linear" for v in n.inputs)
    for n in g.nodes.values():
        if n.op in ("MatMul", "Einsum"):
            assert any(g.values[i].is_const for i in n.inputs), f"Q·Kᵀ-like {n.name} left"
    assert set(g.op_counts()) <= LOWERABLE, g.op_counts()
    assert len(attention_report(g)) == meta["layers"] * meta["heads"]

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for x in (x0, _inputs(meta, x0, 5), _inputs(meta, x0, 13)):
        ref = sess.run(None, {"x": x})[0]
        got = run(g, {"x": x})[g.outputs[0]]
        assert got.shape == ref.shape
        assert np.max(np.abs(got - ref)) <= 1e-5, (name, x.shape)
        before = run(g0, {"x": x}, float_dtype="float64")[g0.outputs[0]]
        after = run(g, {"x": x}, float_dtype="float64")[g.outputs[0]]
        np.testing.assert_allclose(after, before, rtol=1e-9, atol=1e-12 * np.max(np.abs(before)))


@pytest.mark.parametrize("name", [n for n in fixture_names(softmax=False)
                                  if fixture(n)[2]["mask"] in RUNTIME_MASKS][:1])
def test_runtime_mask_needs_max_context(name):
    g = imported(name)[0].copy()
    with pytest.raises(CompileError, match="max-context"):
        run_pipeline(g, PassContext(), verify_each=True)


@pytest.mark.parametrize("name", fixture_names(softmax=True))
def test_softmax_fixture_is_rejected_naming_the_node(name):
    g0, path, _, _ = imported(name)
    softmax = [n.name for n in onnx.load(str(path)).graph.node if n.op_type == "Softmax"]
    assert softmax
    with pytest.raises(CompileError) as e:
        run_pipeline(g0.copy(), PassContext(max_context=16), verify_each=True)
    assert softmax[0] in str(e.value) and e.value.op == "Softmax"
    assert "retrain" in str(e.value)
