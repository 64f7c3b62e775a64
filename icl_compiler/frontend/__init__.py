"""ONNX → tensor IR: safe loading (external data, checker, shape inference), decoding of
tensors and attributes, validation of the ONNX rules the shape functions do not check, symbolic
folding of shape arithmetic, and the importer itself."""
from .onnx_import import import_model, load_onnx, onnx_io

__all__ = ["import_model", "load_onnx", "onnx_io"]
