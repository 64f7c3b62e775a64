"""Symbolic dimensions (dynamic batch and sequence axes) as sympy expressions.

A dimension is an ``int`` or a sympy expression over named symbols (``batch``, ``seq``, or the
exporter's names).  Shape arithmetic that depends on dynamic axes is folded at import time into
such expressions; they are resolved to ints at run time from the actual input shapes.
"""
from __future__ import annotations

from typing import Any

import re

import numpy as np
import sympy
from sympy.parsing.sympy_parser import parse_expr

Dim = Any  # int | sympy.Expr


def sym(name: str) -> sympy.Symbol:
    return sympy.Symbol(name, integer=True, positive=True)


def is_sym(x: Any) -> bool:
    return isinstance(x, sympy.Basic) and not x.is_number


def norm_dim(x: Any) -> Dim:
    """Turn numeric sympy results back into plain ints (sympy already canonicalises products
    and sums of the dim symbols, so no simplify is needed here)."""
    if isinstance(x, sympy.Basic):
        if x.is_number:
            return int(x)
        return x
    if isinstance(x, (np.integer,)):
        return int(x)
    return x


def resolve(obj: Any, env: dict[str, int]) -> Any:
    """Replace symbolic dims inside ``obj`` (nested lists/tuples/dicts/object arrays) by ints."""
    if isinstance(obj, sympy.Basic):
        val = obj.subs({sym(k): v for k, v in env.items()})
        if not val.is_number:
            raise KeyError(f"unbound dimension in {obj} (bound: {sorted(env)})")
        return int(val)
    if isinstance(obj, (list, tuple)):
        return type(obj)(resolve(v, env) for v in obj)
    if isinstance(obj, dict):
        return {k: resolve(v, env) for k, v in obj.items()}
    if isinstance(obj, np.ndarray) and obj.dtype == object:
        return np.array([resolve(v, env) for v in obj.ravel()], dtype=np.int64).reshape(obj.shape)
    return obj


def has_sym(obj: Any) -> bool:
    if isinstance(obj, sympy.Basic):
        return is_sym(obj)
    if isinstance(obj, (list, tuple)):
        return any(has_sym(v) for v in obj)
    if isinstance(obj, dict):
        return any(has_sym(v) for v in obj.values())
    if isinstance(obj, np.ndarray) and obj.dtype == object:
        return any(has_sym(v) for v in obj.ravel())
    return False


def dim_to_json(d: Dim) -> int | str:
    return int(d) if not isinstance(d, sympy.Basic) else ("$" + str(d))


_DIM_TEXT = re.compile(r"^[A-Za-z0-9_+\-*/(), ]*$")
_DIM_FUNCS = {"floor": sympy.floor, "ceiling": sympy.ceiling, "Max": sympy.Max, "Min": sympy.Min,
              "Integer": sympy.Integer, "Rational": sympy.Rational}


def dim_from_json(d: int | str) -> Dim:
    """Parse a saved dim.  The text comes from a file, so it is parsed as a restricted
    expression (identifiers, integers, + - * / and a few functions), never evaluated."""
    if isinstance(d, str) and d.startswith("$"):
        text = d[1:]
        if not _DIM_TEXT.match(text) or "__" in text:
            raise ValueError(f"not a dimension expression: {text[:60]!r}")
        names = {n for n in re.findall(r"[A-Za-z_][A-Za-z0-9_]*", text) if n not in _DIM_FUNCS}
        expr = parse_expr(text, local_dict={n: sym(n) for n in names},
                          global_dict=dict(_DIM_FUNCS), evaluate=True)
        if not isinstance(expr, sympy.Basic):
            raise ValueError(f"not a dimension expression: {text[:60]!r}")
        return norm_dim(expr)
    return d


def dim_str(d: Dim) -> str:
    return str(d)


def dims_equal(a: Any, b: Any) -> bool:
    """Exact equality of two dims (ints or sympy expressions), fast for the common cases:
    identical expressions, numbers, and polynomials in the dim symbols (decided by expansion);
    anything else falls back to ``sympy.simplify``."""
    if a is b or a == b:
        return True
    if not (isinstance(a, sympy.Basic) or isinstance(b, sympy.Basic)):
        return False
    d = sympy.expand(sympy.sympify(a) - sympy.sympify(b))
    if d.is_number:
        return bool(d == 0)
    if d.is_polynomial(*d.free_symbols):
        return False  # a nonzero polynomial is not identically zero
    return bool(sympy.simplify(d) == 0)
