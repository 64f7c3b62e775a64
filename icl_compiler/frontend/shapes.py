"""Symbolic shape folding: shape arithmetic on dynamic axes (``Shape → Gather → Concat →
Reshape``) evaluated on object arrays of sympy dims, so the program serves any length."""
from __future__ import annotations

import keyword

import numpy as np
import sympy

from ..errors import CompileError
from ..ir.ops import OPS
from ..ir.symbolic import has_sym, is_sym, norm_dim, sym

_SYMPY_NAMES = set(vars(sympy))


def _dim_symbol(raw: str, fallback: str):
    """A sympy symbol for a dynamic axis, named after the ONNX dim_param where possible."""
    name = "".join(c if c.isalnum() else "_" for c in (raw or fallback))[:64] or "d"
    if not name[0].isalpha():
        name = "d" + name
    if name in _SYMPY_NAMES or keyword.iskeyword(name):  # "N", "E", "I", "beta", "lambda", ...
        name = "d_" + name
    return sym(name)


def _dims_array(dims) -> np.ndarray:
    if any(is_sym(d) for d in dims):
        arr = np.empty(len(dims), dtype=object)
        arr[:] = [d if is_sym(d) else int(d) for d in dims]
        return arr
    return np.array([int(d) for d in dims], dtype=np.int64)


def _prod(dims):
    p = 1
    for d in dims:
        p = p * d
    return norm_dim(p) if isinstance(p, sympy.Basic) else p


def _obj(x: np.ndarray) -> np.ndarray:
    if x.dtype == object:
        return x
    out = np.empty(x.shape, dtype=object)
    out[...] = x.astype(np.int64) if x.dtype.kind in "iub" else x
    if out.ndim == 0:
        out = np.array(x.item(), dtype=object)
    return out


def _simplify(arr: np.ndarray) -> np.ndarray:
    flat = [norm_dim(v) if isinstance(v, sympy.Basic) else v for v in arr.ravel()]
    if not any(is_sym(v) for v in flat):
        if all(isinstance(v, (bool, np.bool_)) for v in flat) and flat:
            return np.array(flat, dtype=bool).reshape(arr.shape)
        return np.array([int(v) for v in flat], dtype=np.int64).reshape(arr.shape)
    out = np.empty(arr.shape, dtype=object)
    out.ravel()[:] = flat if out.ndim else None
    if out.ndim == 0:
        out = np.array(flat[0], dtype=object)
    return out


_SYM_BINARY = {
    "Add": lambda x, y: x + y, "Sub": lambda x, y: x - y, "Mul": lambda x, y: x * y,
    "Div": lambda x, y: _sym_div(x, y),
    "Max": lambda x, y: sympy.Max(x, y), "Min": lambda x, y: sympy.Min(x, y),
    "Equal": lambda x, y: bool(sympy.simplify(sympy.sympify(x) - y) == 0),
}


def _sym_div(x, y):
    if not is_sym(y) and y == 0:
        raise CompileError(f"shape arithmetic divides {x} by 0")
    return sympy.floor(sympy.sympify(x) / y)


def _fold_symbolic(op: str, xs: list, a: dict) -> list[np.ndarray] | None:
    """Shape arithmetic on arrays of symbolic dims.  None = cannot fold (emit the op)."""
    xs = [_obj(x) if x is not None else None for x in xs]
    if op == "Gather" and has_sym(xs[1]):
        raise CompileError("Gather indices depend on a dynamic axis; they must be constants")
    if op == "Where" and has_sym(xs[0]):
        raise CompileError("a Where condition depends on a dynamic axis in shape arithmetic")
    if op in _SYM_BINARY:
        f = np.frompyfunc(_SYM_BINARY[op], 2, 1)
        return [_simplify(np.asarray(f(xs[0], xs[1]), dtype=object))]
    if op == "Cast":
        return [_simplify(xs[0])] if np.dtype(a["to"]).kind in "iu" else None
    if op == "Neg":
        return [_simplify(np.asarray(np.negative(xs[0]), dtype=object))]
    if op in ("Gather", "Concat", "Unsqueeze", "Squeeze", "Slice", "Reshape", "Where",
              "Expand", "Transpose"):
        if op == "Gather":
            xs[1] = xs[1].astype(np.int64)
        if op == "Where":
            xs[0] = xs[0].astype(bool)
        return [_simplify(np.asarray(r, dtype=object)) for r in OPS[op].compute(xs, a)]
    return None
