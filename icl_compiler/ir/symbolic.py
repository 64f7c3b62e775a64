"""Symbolic dimensions (dynamic batch and sequence axes) as sympy expressions.

A dimension is an ``int`` or a sympy expression over named symbols (``batch``, ``seq``, or the
exporter's names).  Shape arithmetic that depends on dynamic axes is folded at import time into
such expressions; they are resolved to ints at run time from the actual input shapes.
"""
from __future__ import annotations

import ast
import re
from typing import Any

import numpy as np
import sympy

Dim = Any  # int | sympy.Expr


def sym(name: str) -> sympy.Symbol:
    return sympy.Symbol(name, integer=True, positive=True)


def is_sym(x: Any) -> bool:
    return isinstance(x, sympy.Basic) and not x.is_number


def norm_dim(x: Any) -> Dim:
    """Turn numeric sympy results back into plain ints (sympy already canonicalises products
    and sums of the dim symbols, so no simplify is needed here)."""
    if isinstance(x, sympy.Basic):
        if x.is_Integer:
            return int(x)
        return x  # an expression, or a non-integer number (float shape arithmetic)
    if isinstance(x, (np.integer,)):
        return int(x)
    return x


def resolve(obj: Any, env: dict[str, int]) -> Any:
    """Replace symbolic dims inside ``obj`` (nested lists/tuples/dicts/object arrays) by ints."""
    if isinstance(obj, sympy.Basic):
        val = obj.subs({sym(k): v for k, v in env.items()})
        if not val.is_number:
            raise KeyError(f"unbound dimension in {obj} (bound: {sorted(env)})")
        # a dim is an integer; a float shape value (a dim cast to float, then divided) is not
        return int(val) if val.is_Integer else float(val)
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
_DIM_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
# functions a saved dim may call, with their number of arguments (what sympy's str() prints)
_DIM_FUNCS = {"floor": (sympy.floor, 1, 1), "ceiling": (sympy.ceiling, 1, 1),
              "Max": (sympy.Max, 1, 16), "Min": (sympy.Min, 1, 16), "Mod": (sympy.Mod, 2, 2),
              "Integer": (sympy.Integer, 1, 1), "Rational": (sympy.Rational, 2, 2)}
# Bounds of a saved dim (it comes from a file): its text, every integer in it and every number
# it evaluates to, and the exponent of a power (sympy prints seq*seq as seq**2).
MAX_DIM_TEXT = 256
MAX_DIM_INT = 2**63 - 1
MAX_DIM_POWER = 8


def dim_from_json(d: int | str) -> Dim:
    """Parse a saved dim.  The text comes from a file, so it is parsed as a restricted expression
    (names, integers up to 2**63 - 1, + - * / and powers with a literal exponent of at most
    ``MAX_DIM_POWER``, and floor/ceiling/Max/Min/Mod/Integer/Rational), never evaluated; any
    number it reduces to must stay within 2**63 - 1.  Anything else is a ValueError."""
    if isinstance(d, bool) or not isinstance(d, (int, str)):
        raise ValueError(f"not a dimension: {str(d)[:60]!r}")
    if isinstance(d, int):
        if abs(d) > MAX_DIM_INT:
            raise ValueError(f"dimension {str(d)[:30]}... exceeds 2**63 - 1")
        return d
    if not d.startswith("$"):
        raise ValueError(f"not a dimension: {d[:60]!r}")
    text = d[1:]
    if len(text) > MAX_DIM_TEXT:
        raise ValueError(f"dimension expression longer than {MAX_DIM_TEXT} characters: "
                         f"{text[:60]!r}...")
    if not _DIM_TEXT.match(text) or "__" in text:
        raise ValueError(f"not a dimension expression: {text[:60]!r}")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        raise ValueError(f"not a dimension expression: {text[:60]!r}") from None
    return norm_dim(_dim_node(tree.body, text))


def _dim_bounded(x: sympy.Basic, text: str) -> sympy.Basic:
    if x.is_number:
        if not x.is_Rational or abs(x.p) > MAX_DIM_INT or x.q > MAX_DIM_INT:
            raise ValueError(f"dimension expression {text[:60]!r} reduces to a number out of "
                             "range (|n| <= 2**63 - 1)")
    return x


def _dim_node(node: ast.AST, text: str) -> sympy.Basic:
    bad = ValueError(f"not a dimension expression: {text[:60]!r}")
    if isinstance(node, ast.Constant):
        if type(node.value) is not int or node.value > MAX_DIM_INT:
            raise bad
        return sympy.Integer(node.value)
    if isinstance(node, ast.Name):
        if not _DIM_NAME.match(node.id) or node.id in _DIM_FUNCS:
            raise bad
        return sym(node.id)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        x = _dim_node(node.operand, text)
        return -x if isinstance(node.op, ast.USub) else x
    if isinstance(node, ast.BinOp):
        a = _dim_node(node.left, text)
        if isinstance(node.op, ast.Pow):
            e = node.right
            neg = isinstance(e, ast.UnaryOp) and isinstance(e.op, ast.USub)
            e = e.operand if neg else e
            if not (isinstance(e, ast.Constant) and type(e.value) is int
                    and e.value <= MAX_DIM_POWER):
                raise ValueError(f"dimension expression {text[:60]!r}: a power needs a literal "
                                 f"integer exponent of at most {MAX_DIM_POWER}")
            if a.is_number and a != 0 and abs(a.p) > 1 and e.value * max(
                    abs(a.p).bit_length(), a.q.bit_length()) > 64:
                raise ValueError(f"dimension expression {text[:60]!r} reduces to a number out of "
                                 "range (|n| <= 2**63 - 1)")
            return _dim_bounded(a ** (-e.value if neg else e.value), text)
        b = _dim_node(node.right, text)
        ops = {ast.Add: lambda: a + b, ast.Sub: lambda: a - b, ast.Mult: lambda: a * b,
               ast.Div: lambda: a / b}
        op = ops.get(type(node.op))
        if op is None or (isinstance(node.op, ast.Div) and b == 0):
            raise bad
        return _dim_bounded(op(), text)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and not node.keywords:
        spec = _DIM_FUNCS.get(node.func.id)
        if spec is None or not spec[1] <= len(node.args) <= spec[2]:
            raise bad
        args = [_dim_node(a, text) for a in node.args]
        if node.func.id in ("Integer", "Rational") and not all(x.is_Integer for x in args):
            raise bad
        if node.func.id in ("Rational", "Mod") and args[1] == 0:
            raise bad
        return _dim_bounded(spec[0](*args), text)
    raise bad


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
