"""The few-shot showcase: the fixed emulator and Lava predict the classes onnxruntime does."""
import sys
from pathlib import Path

import numpy as np
import pytest

import icl_compiler as icl
from icl_compiler.runtime.reference import onnxruntime_run

ROOT = Path(__file__).resolve().parents[2]
FEWSHOT = ROOT / "examples" / "fewshot"
OMNIGLOT = ROOT.parent / "shared" / "data" / "omniglot"
pytest.importorskip("PIL")
sys.path.insert(0, str(FEWSHOT))
import data as fsdata  # noqa: E402


def _compile(calib_classes):
    calib = fsdata.make_episodes(calib_classes, 5, 5, 8, np.random.default_rng(7))[0]
    return icl.compile(FEWSHOT / "model.onnx", precision="fixed", calibration=calib,
                       max_context=26)


@pytest.mark.skipif(not OMNIGLOT.is_dir(), reason=f"Omniglot not found at {OMNIGLOT}")
@pytest.mark.lava
def test_fixed_and_lava_predict_like_float_on_held_out_omniglot():
    pytest.importorskip("lava")
    train, test = fsdata.split_alphabets(fsdata.load_omniglot(str(OMNIGLOT)))
    prog = _compile(train)
    x, target = fsdata.make_episodes(test, 5, 1, 6, np.random.default_rng(11))
    p_float = onnxruntime_run(str(FEWSHOT / "model.onnx"), x)[:, -1, :5].argmax(-1)
    payload = prog.run(x, return_payload=True)
    p_fixed = prog.run(x)[:, -1, :5].argmax(-1)
    lava_payload = prog.run(x, backend="lava", return_payload=True)
    assert np.array_equal(lava_payload, payload)
    assert np.array_equal(p_fixed, p_float)
    assert (p_float == target).mean() >= 0.5  # the model does learn in context


@pytest.mark.lava
def test_lava_equals_emulator_on_digit_episodes():
    """Cross-domain episodes (no Omniglot needed): Lava and the emulator agree bit for bit."""
    pytest.importorskip("lava")
    digits = fsdata.load_sklearn_digits()
    prog = _compile(digits)
    x, _ = fsdata.make_episodes(digits, 5, 1, 3, np.random.default_rng(3))
    assert np.array_equal(prog.run(x, backend="lava", return_payload=True),
                          prog.run(x, return_payload=True))
