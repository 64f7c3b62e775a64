"""ONNX → tensor IR.

* :mod:`.load` — safe loading: external data restricted to the model's folder and size-checked,
  ``onnx.checker``, strict shape inference;
* :mod:`.decode` — ONNX tensors, attributes and element types → numpy, with their checks and the
  size guards against hostile models;
* :mod:`.validate` — the ONNX rules the IR's shape functions do not check;
* :mod:`.shapes` — symbolic folding of shape arithmetic on dynamic axes;
* :mod:`.realdims` — float shape arithmetic (a dynamic dim cast to float) and float Range;
* :mod:`.pointwise` — kernel-1 convolutions as the per-token Einsum they are;
* :mod:`.importer` — the importer (:func:`import_model`) and the report's model I/O
  (:func:`onnx_io`).
"""
from .decode import MAX_DIM, MAX_ELEMENTS, MAX_FOLD_ELEMENTS
from .importer import SUPPORTED_OPS, import_model, onnx_io
from .load import load_onnx

__all__ = ["import_model", "load_onnx", "onnx_io", "SUPPORTED_OPS", "MAX_DIM", "MAX_ELEMENTS",
           "MAX_FOLD_ELEMENTS"]
