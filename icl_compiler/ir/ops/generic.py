"""Ops that stand for what the registry has no entry for.

* ``Onnx``: any standard ONNX op, with onnx's own reference semantics and ONNX shape inference
  for its output types (:mod:`icl_compiler.ir.onnx_op`).  Attributes: ``op_type``, ``opset``,
  ``onnx_attrs`` (the ONNX attributes as Python values / numpy arrays), ``n_outputs``.
* ``Dims``: an int tensor of (symbolic) dims used as data, e.g. ``batch*seq`` computed from
  ``Shape`` and used in index arithmetic: position-only, its entries resolved from the input
  shapes at run time.
"""
from __future__ import annotations

import numpy as np

from .core import REQUIRED, register


def _onnx_shape(ins, a):
    from .. import onnx_op

    types = [None if v is None else (v.shape, v.dtype) for v in ins]
    consts = {i: v.data for i, v in enumerate(ins) if v is not None and v.data is not None}
    return onnx_op.infer(a["op_type"], a["onnx_attrs"], types, int(a["n_outputs"]),
                         int(a["opset"]), consts)


def _onnx_compute(xs, a):
    from .. import onnx_op

    return onnx_op.evaluate(a["op_type"], a["onnx_attrs"], xs, int(a["n_outputs"]),
                            int(a["opset"]))


register("Onnx", {"op_type": REQUIRED, "opset": REQUIRED, "onnx_attrs": {}, "n_outputs": 1},
         n_inputs=(0, 64), n_outputs=None,
         doc="a standard ONNX op evaluated by onnx.reference (see ir/onnx_op.py)")(
    (_onnx_shape, _onnx_compute))

register("Dims", {"values": REQUIRED, "shape": REQUIRED, "dtype": "int64"}, n_inputs=(0, 0),
         doc="an int tensor of (symbolic) dims, resolved at run time")(
    (lambda ins, a: [(tuple(a["shape"]), a["dtype"])],
     lambda xs, a: [np.array([v if np.dtype(a["dtype"]).kind == "f" else int(v)
                              for v in a["values"]], dtype=a["dtype"]).reshape(
         tuple(a["shape"]))]))
