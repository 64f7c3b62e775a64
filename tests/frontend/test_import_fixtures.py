"""Every fixture: the IR interpreter equals onnxruntime (max abs 1e-5), also at other lengths."""
import numpy as np
import onnxruntime as ort
import pytest

from icl_compiler.frontend import import_model, load_onnx
from icl_compiler.ir.interpreter import run
from icl_compiler.ir.symbolic import is_sym
from icl_compiler.ir.verify import verify
from tests.helpers import fixture, fixture_names


def _inputs(meta, x0, rng):
    """The committed input plus two random ones, one at a different sequence length."""
    out = [x0]
    for T in (5, 13):
        if meta["input"] == "tokens":
            out.append(rng.integers(0, meta["in_dim"], size=(3, T)).astype(np.int64))
        else:
            out.append(rng.uniform(-1, 1, size=(3, T, meta["in_dim"])).astype(np.float32))
    return out


@pytest.mark.parametrize("name", fixture_names(softmax=None))
def test_interpreter_matches_onnxruntime(name):
    path, x0, meta = fixture(name)
    g = import_model(load_onnx(path))
    verify(g)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    for x in _inputs(meta, x0, rng):
        ref = sess.run(None, {"x": x})[0]
        got = run(g, {"x": x})[g.outputs[0]]
        assert got.shape == ref.shape
        assert np.max(np.abs(got - ref)) <= 1e-5, (name, x.shape)


@pytest.mark.parametrize("name", fixture_names(softmax=None))
def test_dynamic_axes_survive_import(name):
    path, _, _ = fixture(name)
    g = import_model(load_onnx(path))
    x = g.values[g.inputs[0]]
    assert is_sym(x.shape[0]) and is_sym(x.shape[1])
    y = g.values[g.outputs[0]]
    assert is_sym(y.shape[0]) and is_sym(y.shape[1])
    assert "Shape" not in g.op_counts(), "shape arithmetic must be folded"
