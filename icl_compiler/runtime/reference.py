"""onnxruntime as the reference, and random inputs shaped like a program's input."""
from __future__ import annotations

import numpy as np


def random_inputs(prog, batch: int = 2, seq: int | None = None, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    T = seq or min(prog.t_max or 8, 16)
    if prog.io.input_kind == "tokens":
        return rng.integers(0, prog.io.vocab, size=(batch, T)).astype(np.int64)
    return rng.uniform(0, 1, size=(batch, T, prog.ng.pop(prog.io.input_pop).size)).astype(np.float32)


def onnxruntime_run(model, x: np.ndarray) -> np.ndarray:
    """Run an ONNX model (path or ModelProto) on one input with onnxruntime's CPU provider."""
    import onnxruntime as ort

    src = model if isinstance(model, (str, bytes)) else (
        model.SerializeToString() if hasattr(model, "SerializeToString") else str(model))
    sess = ort.InferenceSession(src, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    x = x.astype(np.int64) if x.dtype.kind in "iu" else x.astype(np.float32)
    return sess.run(None, {name: x})[0]
