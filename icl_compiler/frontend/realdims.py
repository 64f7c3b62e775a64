"""Float shape arithmetic: a dynamic dim cast to float (``torch.arange(T, dtype=float32)``,
``pos / T``) stays symbolic, with exact entries (float constants enter as the rationals they
are, Div is a true division), and a float Range over it becomes ``start + delta · Cast(Range(0,
n))`` with the exact count.  The importer keeps the float values' dtypes in ``imp.real``."""
from __future__ import annotations

import numpy as np
import sympy

from ..errors import CompileError
from ..ir.ops import OPS, with_defaults
from ..ir.symbolic import is_sym, norm_dim
from .decode import MAX_FOLD_ELEMENTS, _check_shape


def real_fold(imp, op, a, ins, outs) -> bool:
    """Fold Cast and arithmetic on symbolic dims when a float is involved: a dim cast to
    float stays symbolic (marked in ``imp.real``), float constants enter as exact
    rationals and Div is a true division.  False = not a float case (the integer shape
    arithmetic handles it)."""
    data = [i for i in ins if i]
    if not data or not all(i in imp.known for i in data):
        return False
    xs = [imp.known[i] for i in data]
    if not any(x.dtype == object for x in xs):
        return False
    if op == "Cast":
        to = a["to"]
        if np.dtype(to).kind == "f":
            imp.known[outs[0]] = xs[0]
            imp.real[outs[0]] = np.dtype(to).name
            return True
        if data[0] not in imp.real:
            return False
        imp.known[outs[0]] = _to_int(xs[0])  # float → int truncates toward zero
        return True
    fdt = next((imp.real[i] for i in data if i in imp.real),
               next((x.dtype.name for x in xs if x.dtype != object and x.dtype.kind == "f"),
                    None))
    if fdt is None:
        return False
    axs = [_exact(x) for x in xs]
    if op in _REAL_BINARY:
        f = np.frompyfunc(_REAL_BINARY[op], 2, 1)
        res = np.asarray(f(axs[0], axs[1]), dtype=object)
    else:  # Neg
        res = np.asarray(np.negative(axs[0]), dtype=object)
    res = _real_simplify(res, fdt)
    imp.known[outs[0]] = res
    if res.dtype == object:
        imp.real[outs[0]] = fdt
    return True

def real_move(imp, op, xs, attrs, fdt, outs) -> None:
    """Data movement (Unsqueeze, Concat, Gather, ...) of float shape values: on their exact
    entries, so a fraction is never rounded to an integer on the way."""
    xs = [None if x is None else _exact(x) for x in xs]
    if op == "Gather":
        xs[1] = np.asarray([int(v) for v in xs[1].ravel()], np.int64).reshape(xs[1].shape)
    for o, r in zip(outs, OPS[op].compute(xs, with_defaults(op, attrs))):
        r = _real_simplify(np.asarray(r, dtype=object), fdt)
        imp.known[o] = r
        if r.dtype == object:
            imp.real[o] = fdt

def import_range(imp, node, ins, outs) -> bool:
    """A Range whose operands are floats (folded when they are numbers; with a dynamic
    bound, ``start + delta · Cast(Range(0, n))`` with the exact count ``n =
    ceil((limit − start) / delta)``).  False = an integer Range (the generic path)."""
    if len(ins) != 3 or not all(ins):
        return False
    for i in ins:
        if i not in imp.known:
            raise CompileError(f"Range operand {i!r} is computed from tensor data at run "
                               "time; the compiler needs it at compile time (shape "
                               "arithmetic on the input's shape is fine)")
    dtype = imp.dtype_of(ins[0])
    if np.dtype(dtype).kind != "f":
        return False
    vals = []
    for i, what in zip(ins, ("start", "limit", "delta")):
        arr = imp.known[i]
        if arr.size != 1:
            raise CompileError(f"Range {what} operand {i!r} must hold one value, not "
                               f"{arr.size}")
        vals.append(_exact(arr).ravel()[0])
    start, limit, delta = vals
    if delta == 0:
        raise CompileError("Range delta is 0")
    if not any(is_sym(v) for v in vals):
        n = max(int(sympy.ceiling((limit - start) / delta)), 0)
        _check_shape((n,), "the constant computed at compile time", node,
                     limit=MAX_FOLD_ELEMENTS)
        s0, d0 = (np.asarray(imp.known[i], dtype).ravel()[0] for i in (ins[0], ins[2]))
        imp.known[outs[0]] = (s0 + d0 * np.arange(n).astype(dtype)).astype(dtype)
        return True
    if is_sym(delta):
        raise CompileError(f"Range delta {delta} depends on a dynamic axis; it must be a "
                           "constant")
    n = norm_dim(sympy.Max(sympy.ceiling((limit - start) / delta), 0))
    base = outs[0]
    idx, fidx, scaled = f"{base}/index", f"{base}/index_{dtype}", f"{base}/scaled"
    imp.emit("Range", [], [idx], {"start": 0, "limit": n, "delta": 1, "dtype": "int64"},
              node)
    imp.emit("Cast", [idx], [fidx], {"to": dtype}, node)
    dname = _real_const(imp, f"{base}/delta", delta, dtype)
    sname = _real_const(imp, f"{base}/start", start, dtype)
    imp.emit("Mul", [fidx, imp.as_value(dname, node)], [scaled], {}, node)
    imp.emit("Add", [scaled, imp.as_value(sname, node)], outs[:1], {}, node)
    return True

def _real_const(imp, name, v, dtype) -> str:
    if is_sym(v):
        arr = np.empty((), dtype=object)
        arr[()] = v
        imp.known[name] = arr
        imp.real[name] = dtype
    else:
        imp.known[name] = np.asarray(float(v), dtype=dtype)
    return name


_REAL_OPS = ("Add", "Sub", "Mul", "Div", "Neg", "Max", "Min")
_REAL_MOVES = ("Gather", "Concat", "Unsqueeze", "Squeeze", "Slice", "Reshape", "Expand",
               "Transpose")
_REAL_BINARY = {"Add": lambda x, y: x + y, "Sub": lambda x, y: x - y,
                "Mul": lambda x, y: x * y, "Div": lambda x, y: _real_div(x, y),
                "Max": lambda x, y: sympy.Max(x, y), "Min": lambda x, y: sympy.Min(x, y)}


def _real_div(x, y):
    if y == 0:
        raise CompileError(f"shape arithmetic divides {x} by 0")
    return sympy.sympify(x) / y


def _exact(x: np.ndarray) -> np.ndarray:
    """An object array of exact sympy numbers/expressions (a float is the rational it is)."""
    out = np.empty(x.shape, dtype=object)
    flat = [v if isinstance(v, sympy.Basic) else
            (sympy.Rational(float(v)) if isinstance(v, (float, np.floating))
             else sympy.Integer(int(v))) for v in np.asarray(x, dtype=object).ravel()]
    if out.ndim == 0:
        out[()] = flat[0]
    else:
        out.ravel()[:] = flat
    return out


def _real_simplify(arr: np.ndarray, dtype: str) -> np.ndarray:
    """Numbers again when no dynamic dim is left (a float array of ``dtype``)."""
    if any(is_sym(v) for v in arr.ravel()):
        return arr
    return np.array([float(v) for v in arr.ravel()], dtype=dtype).reshape(arr.shape)


def _to_int(arr: np.ndarray) -> np.ndarray:
    def trunc(v):
        v = sympy.sympify(v)
        if v.is_integer:
            return norm_dim(v)
        if v.is_nonnegative:
            return norm_dim(sympy.floor(v))
        if v.is_nonpositive:
            return norm_dim(sympy.ceiling(v))
        raise CompileError(f"cannot truncate {v} (shape arithmetic of unknown sign) to an "
                           "integer")
    out = np.empty(arr.shape, dtype=object)
    flat = [trunc(v) for v in arr.ravel()]
    if out.ndim == 0:
        out[()] = flat[0]
    else:
        out.ravel()[:] = flat
    return out if any(is_sym(v) for v in flat) else np.array(flat, np.int64).reshape(arr.shape)
