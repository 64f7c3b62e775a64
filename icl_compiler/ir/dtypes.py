"""Element types of the tensor IR: numpy dtype names, and nothing else.

The loaders accept a dtype only by its exact name from this list (a file's "S1000000000" would
otherwise make numpy allocate a gigabyte per element).  The ONNX frontend (``frontend/decode.py``)
imports this list too.
"""
from __future__ import annotations

IR_DTYPES = frozenset({"bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32",
                       "uint64", "float16", "float32", "float64"})


def check_dtype(name, what: str = "dtype") -> str:
    """``name`` if it is a tensor-IR element type, else ValueError naming ``what``."""
    if not isinstance(name, str) or name not in IR_DTYPES:
        shown = repr(name) if len(repr(name)) <= 40 else repr(name)[:40] + "..."
        raise ValueError(f"{what} {shown} is not a tensor-IR element type "
                         f"({', '.join(sorted(IR_DTYPES))})")
    return name
