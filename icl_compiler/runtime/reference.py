"""onnxruntime as the reference, and random inputs shaped like a program's input.

The reference runs the model as exported, with two adjustments that keep the comparison about
the compiler: auxiliary inputs the program binds at compile time (``attention_mask`` = ones,
``position_ids`` = arange, ..., see ``frontend/bind.py``) get the same values, and a float16
model runs in float32 from the same weights (:func:`as_float32`), since the program computes in
float64 and onnxruntime's fp16 rounding is not what a user wants to verify against.
"""
from __future__ import annotations

import copy

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

FP16_NOTE = ("the float16 model runs in float32 from the same weights (the fp16 rounding of "
             "onnxruntime is not the reference)")


def random_inputs(prog, batch: int = 2, seq: int | None = None, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    T = seq or min(prog.t_max or 8, 16)
    if prog.io.input_kind == "tokens":
        return rng.integers(0, prog.io.vocab, size=(batch, T)).astype(np.int64)
    return rng.uniform(0, 1, size=(batch, T, prog.ng.pop(prog.io.input_pop).size)).astype(np.float32)


def _fp16_tensor(t: onnx.TensorProto) -> bool:
    return t.data_type == TensorProto.FLOAT16


def is_float16(model: onnx.ModelProto) -> bool:
    g = model.graph
    return (any(_fp16_tensor(t) for t in g.initializer)
            or any(v.type.tensor_type.elem_type == TensorProto.FLOAT16
                   for v in list(g.input) + list(g.output)))


def as_float32(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` that computes in float32 where it computed in float16: initializers,
    Constant / ConstantOfShape values, Cast targets and declared value types."""
    m = copy.deepcopy(model)
    g = m.graph
    for i, t in enumerate(g.initializer):
        if _fp16_tensor(t):
            g.initializer[i].CopyFrom(numpy_helper.from_array(
                numpy_helper.to_array(t).astype(np.float32), t.name))
    for n in g.node:
        for a in n.attribute:
            if a.type == onnx.AttributeProto.TENSOR and _fp16_tensor(a.t):
                a.t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(a.t).astype(
                    np.float32), a.t.name))
            elif n.op_type == "Cast" and a.name == "to" and a.i == TensorProto.FLOAT16:
                a.i = TensorProto.FLOAT
    for v in list(g.input) + list(g.output) + list(g.value_info):
        if v.type.tensor_type.elem_type == TensorProto.FLOAT16:
            v.type.tensor_type.elem_type = TensorProto.FLOAT
    return m


def bound_value(how, shape, dtype) -> np.ndarray:
    """The value ``frontend/bind.py`` gives a bound input of this (concrete) shape."""
    if isinstance(how, np.ndarray):
        return how.astype(dtype)
    if how == "ones":
        return np.ones(shape, dtype)
    if how == "zeros":
        return np.zeros(shape, dtype)
    if how == "arange":
        return np.broadcast_to(np.arange(shape[-1], dtype=dtype), shape).copy()
    raise ValueError(f"unknown binding {how!r}")


def onnxruntime_run(model, x: np.ndarray, bind: dict | None = None, *,
                    all_outputs: bool = False):
    """Run an ONNX model (path or ModelProto) on the data input ``x`` with onnxruntime's CPU
    provider; the other inputs get the values the program bound them to (``bind``: {name: how},
    e.g. ``prog.io.bound``; the data input is the one not in ``bind``).  float16 models run in
    float32 (:func:`as_float32`)."""
    import onnxruntime as ort

    bind = dict(bind or {})
    proto = model if isinstance(model, onnx.ModelProto) else onnx.load(str(model))
    if is_float16(proto):
        proto = as_float32(proto)
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    ins = sess.get_inputs()
    free = [i.name for i in ins if i.name not in bind]
    if len(free) != 1:
        raise ValueError(f"the model has inputs {[i.name for i in ins]}; give the bindings of all "
                         "but the data input")
    data = free[0]
    feeds = {}
    B, T = x.shape[0], x.shape[1]
    for i in ins:
        if i.name == data:
            feeds[i.name] = x.astype(np.int64) if x.dtype.kind in "iu" else x.astype(np.float32)
            continue
        how = bind[i.name]
        dt = np.int64 if "int" in i.type else (np.bool_ if "bool" in i.type else np.float32)
        shape = [B if k == 0 else T for k in range(len(i.shape))]
        feeds[i.name] = bound_value(how, shape, dt)
    outs = sess.run(None, feeds)
    return outs if all_outputs else outs[0]
