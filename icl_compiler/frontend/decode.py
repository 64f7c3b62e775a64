"""Decoding ONNX tensors, attributes and element types into numpy, with their checks (known
element types, finite values, size guards against hostile models)."""
from __future__ import annotations

from typing import Any

import numpy as np
import onnx
import sympy
from onnx import helper, numpy_helper

from ..errors import CompileError
from ..ir.dtypes import IR_DTYPES
from ..ir.symbolic import is_sym

# Size guards: a hostile model must not make the compiler allocate.  No Loihi 2 system holds a
# tensor anywhere near these sizes.
MAX_DIM = 2**31 - 1  # any static dimension
MAX_ELEMENTS = 2**31  # any tensor whose shape is static
MAX_FOLD_ELEMENTS = 2**24  # any tensor the frontend computes at compile time (constant folding)

# the element types the tensor IR handles are ir.dtypes.IR_DTYPES (one list for the frontend and
# the IR loaders)


def _type_name(elem_type: int) -> str:
    try:
        return f"{onnx.TensorProto.DataType.Name(elem_type)} ({elem_type})"
    except ValueError:
        return str(elem_type)


def _np_dtype(elem_type: int, what: str = "a tensor") -> str:
    """The IR dtype name of an ONNX element type; CompileError for types the IR lacks."""
    try:
        name = np.dtype(helper.tensor_dtype_to_np_dtype(elem_type)).name
    except Exception:  # noqa: BLE001
        name = None
    if name not in IR_DTYPES:
        raise CompileError(f"{what} has element type {_type_name(elem_type)}, which the compiler "
                           "does not support (use float32, int64 or bool)")
    return name


def _check_array(arr: np.ndarray, what: str, *, node: str | None = None,
                 op: str | None = None) -> np.ndarray:
    """A constant tensor's dtype must be one the IR has, and its values must be finite.

    NaN is always an error.  Infinity is allowed only in a scalar (a mask's fill value, e.g.
    ``masked_fill(mask, -inf)``) or in a mask whose finite entries are all 0 (an additive
    causal mask); anywhere else it is a broken weight.
    """
    if arr.dtype.name not in IR_DTYPES:
        raise CompileError(f"{what} has element type {arr.dtype.name}, which the compiler does "
                           "not support (use float32, int64 or bool)", node=node, op=op)
    if arr.dtype == bool:
        # ONNX stores a bool per byte; other bytes than 0/1 are a corrupt file, and numpy and
        # onnxruntime read them differently (numpy: true, onnxruntime's Where: false)
        bad = int(np.count_nonzero(arr.view(np.uint8) > 1))
        if bad:
            raise CompileError(f"{what} is a bool tensor with {bad} byte(s) other than 0 or 1 "
                               "(the file is corrupt)", node=node, op=op)
        return arr
    if arr.dtype.kind != "f" or arr.size == 0:
        return arr
    nan = int(np.count_nonzero(np.isnan(arr)))
    if nan:
        raise CompileError(f"{what} contains NaN ({nan} of {arr.size} values); the weights are "
                           "broken (re-export the model from a healthy checkpoint)",
                           node=node, op=op)
    inf = np.isinf(arr)
    n_inf = int(np.count_nonzero(inf))
    if n_inf and arr.size > 1 and np.any(arr[~inf] != 0):
        raise CompileError(f"{what} contains inf ({n_inf} of {arr.size} values); only a scalar "
                           "fill value or a 0/-inf mask may be infinite (re-export the model "
                           "from a healthy checkpoint)", node=node, op=op)
    return arr


def _decode(b: bytes, what: str) -> str:
    try:
        return b.decode()
    except UnicodeDecodeError:
        raise CompileError(f"{what} is not valid UTF-8 text") from None


def _attrs(node: onnx.NodeProto) -> dict[str, Any]:
    out = {}
    for a in node.attribute:
        what = f"attribute {a.name!r}"
        try:
            v = helper.get_attribute_value(a)
        except Exception as e:  # noqa: BLE001
            raise CompileError(f"{what} cannot be read: {_first_line(e)}") from None
        if isinstance(v, bytes):
            v = _decode(v, what)
        elif isinstance(v, onnx.TensorProto):
            label = (f"Constant {node.output[0]!r}" if node.op_type == "Constant" and node.output
                     else f"tensor {what}")
            v = _check_array(np.array(numpy_helper.to_array(v)), label)
        elif isinstance(v, list) and v and isinstance(v[0], bytes):
            v = [_decode(x, what) for x in v]
        out[a.name] = v
    return out


def _static_count(shape) -> int:
    """Number of elements counting only the static dims (a lower bound when dims are symbolic)."""
    n = 1
    for d in shape:
        if not is_sym(d):
            n *= int(d)
    return n


def _check_shape(shape, what: str, node: onnx.NodeProto, limit: int = MAX_ELEMENTS) -> None:
    """Every dim is a non-negative int below MAX_DIM or a symbolic expression, and the static
    element count stays below ``limit``."""
    for d in shape:
        if is_sym(d):
            continue
        if isinstance(d, sympy.Basic) and not d.is_integer:
            raise CompileError(f"{what} gets a non-integer dimension {d} (shape {_fmt(shape)})",
                               node=_label(node), op=node.op_type)
        if int(d) < 0:
            raise CompileError(f"{what} gets a negative dimension (shape {_fmt(shape)})",
                               node=_label(node), op=node.op_type)
        if int(d) > MAX_DIM:
            raise CompileError(f"{what} gets dimension {int(d)}, above the limit of {MAX_DIM} "
                               f"(shape {_fmt(shape)})", node=_label(node), op=node.op_type)
    n = _static_count(shape)
    if n > limit:
        raise CompileError(f"{what} would have {n} elements (shape {_fmt(shape)}), above the "
                           f"limit of {limit}", node=_label(node), op=node.op_type)


def _label(node: onnx.NodeProto) -> str:
    """The node's name for messages (unnamed nodes are named by their first output)."""
    if node.name:
        return node.name
    first = next((o for o in node.output if o), None)
    return f"<unnamed, output {first!r}>" if first else "<unnamed>"


def _fmt(shape, limit: int = 8) -> str:
    dims = [str(d) for d in shape]
    if len(dims) > limit:  # keep one-line messages readable
        dims = dims[:limit // 2] + [f"... ({len(dims)} dims) ..."] + dims[-(limit // 2):]
    return "[" + ", ".join(dims) + "]"


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("=="):
            return line[:300]
    return type(e).__name__
