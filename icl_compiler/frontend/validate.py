"""ONNX rules that the IR's shape functions do not check (they would otherwise surface as
onnxruntime errors or wrong numbers): attribute flags, variadic arities, minimum ranks, axes,
norm parameters, Einsum equations, Concat and Reshape shapes."""
from __future__ import annotations

from typing import Any

import sympy

from ..errors import CompileError
from ..ir.symbolic import is_sym, norm_dim
from .decode import _fmt, _label
from .shapes import _prod

# 0/1 flags (onnxruntime reads other values differently from "nonzero is true")
BOOL_ATTRS = {"keepdims", "upper", "transA", "transB", "exclusive", "reverse",
              "noop_with_empty_axes", "allowzero"}

# ONNX ops that take any number of inputs, with the IR op's maximum
VARIADIC = {"Max": 2, "Min": 2, "Concat": 64}

# the smallest rank of an op's first data input (ONNX's rule, which shape inference skips)
MIN_RANK = {"Slice": 1, "Split": 1, "Concat": 1, "Gather": 1, "CumSum": 1, "Softmax": 1,
            "LayerNormalization": 1, "Trilu": 2}

# ops whose single ``axis`` attribute their shape function does not check (default axis)
AXIS_OPS = {"CumSum": 0, "Softmax": -1, "LayerNormalization": -1}


def _check_axis(axis, rank: int, node) -> None:
    if is_sym(axis) or not -max(rank, 1) <= int(axis) < max(rank, 1):
        raise CompileError(f"axis {axis} is out of range for an input of rank {rank}",
                           node=_label(node), op=node.op_type)


def _check_norm_params(in_vals, axis, node) -> None:
    """LayerNormalization's scale and bias must broadcast to the normalised shape X[axis:]."""
    x = in_vals[0]
    _check_axis(axis, x.rank, node)
    norm = x.shape[int(axis) % max(x.rank, 1):]
    for v, what in zip(in_vals[1:], ("scale", "bias")):
        if v is None:
            continue
        s = v.shape
        ok = len(s) <= len(norm) and all(
            (not is_sym(d) and d == 1) or _same_dim(d, n) for d, n in zip(s[::-1], norm[::-1]))
        if not ok:
            raise CompileError(f"LayerNormalization {what} {v.name!r} has shape {_fmt(s)}, which "
                               f"does not broadcast to the normalised shape {_fmt(norm)}",
                               node=_label(node), op=node.op_type)


def _einsum_equation(eq: str, n_inputs: int) -> str:
    """An explicit ``lhs->rhs`` equation (ONNX allows the implicit form ``ij,jk``)."""
    eq = eq.replace(" ", "")
    if "." in eq:
        raise CompileError(f"Einsum equation {eq!r} uses an ellipsis, which is not supported")
    lhs, arrow, rhs = eq.partition("->")
    terms = lhs.split(",")
    if len(terms) != n_inputs:
        raise CompileError(f"Einsum equation {eq!r} has {len(terms)} operand(s) for "
                           f"{n_inputs} input(s)")
    if not all(t.isalpha() and t.isascii() for t in terms if t) or \
            not (rhs == "" or (rhs.isalpha() and rhs.isascii())):
        raise CompileError(f"Einsum equation {eq!r} is malformed")
    if not arrow:
        letters = "".join(terms)
        rhs = "".join(sorted(c for c in set(letters) if letters.count(c) == 1))
    if len(set(rhs)) != len(rhs) or not set(rhs) <= set("".join(terms)):
        raise CompileError(f"Einsum equation {eq!r} has a bad output term {rhs!r}")
    return f"{lhs}->{rhs}"


def _validate(op: str, shapes: list, attrs: dict, n_out: int) -> None:
    """ONNX rules that the IR's shape functions do not check (they would give a wrong shape
    instead of an error, and numpy would compute something else or fail at run time)."""
    s0 = shapes[0] if shapes else None
    if op == "Concat":
        _check_concat_shapes([s for s in shapes], attrs["axis"])
    elif op == "Split" and s0 is not None:
        ax = int(attrs.get("axis", 0))
        if not -len(s0) <= ax < len(s0):
            raise CompileError(f"axis {ax} is out of range for an input of rank {len(s0)}")
        sizes = attrs.get("split")
        if sizes is not None:
            if len(sizes) != n_out:
                raise CompileError(f"Split has {len(sizes)} sizes for {n_out} outputs")
            if any(not is_sym(d) and d < 0 for d in sizes) or \
                    _dims_differ(_sum(sizes), s0[ax]):
                raise CompileError(f"Split sizes {_fmt(sizes)} do not add up to the split "
                                   f"dim {s0[ax]}")
    elif op == "Transpose" and s0 is not None and attrs.get("perm") is not None:
        if sorted(int(p) % max(len(s0), 1) for p in attrs["perm"]) != list(range(len(s0))) or \
                any(not -len(s0) <= int(p) < len(s0) for p in attrs["perm"]):
            raise CompileError(f"Transpose perm {list(attrs['perm'])} is not a permutation of "
                               f"the {len(s0)} axes")
    elif op in ("Unsqueeze", "Squeeze", "ReduceMean", "ReduceSum", "ReduceMax") and \
            s0 is not None and attrs.get("axes") is not None:
        rank = len(s0) + (len(attrs["axes"]) if op == "Unsqueeze" else 0)
        axes = [int(x) for x in attrs["axes"]]
        if any(not -max(rank, 1) <= x < max(rank, 1) for x in axes):
            raise CompileError(f"axes {axes} out of range for rank {rank}")
        norm = [x % max(rank, 1) for x in axes]
        if len(set(norm)) != len(norm):
            raise CompileError(f"axes {axes} repeat an axis")
        if op == "Squeeze":
            for x in norm:
                if not is_sym(s0[x]) and int(s0[x]) != 1:
                    raise CompileError(f"Squeeze axis {x} has size {s0[x]}, not 1")
    elif op == "Gemm" and len(shapes) >= 2 and shapes[1] is not None:
        a, b = s0, shapes[1]
        if len(a) != 2 or len(b) != 2:
            raise CompileError(f"Gemm needs rank-2 inputs, got {_fmt(a)} and {_fmt(b)}")
        k1 = a[0] if attrs.get("transA") else a[1]
        k2 = b[1] if attrs.get("transB") else b[0]
        if _dims_differ(k1, k2):
            raise CompileError(f"Gemm inner dims differ: {_fmt(a)} x {_fmt(b)} (transA="
                               f"{attrs.get('transA', 0)}, transB={attrs.get('transB', 0)})")
    elif op == "Einsum":
        terms = attrs["equation"].split("->")[0].split(",")
        dims: dict[str, Any] = {}
        for t, s in zip(terms, shapes):
            if s is None or len(t) != len(s):
                raise CompileError(f"Einsum term {t!r} does not match an input of shape "
                                   f"{_fmt(s or ())}")
            for c, d in zip(t, s):
                if c in dims and not (_is_one(d) or _is_one(dims[c])) and _dims_differ(d, dims[c]):
                    raise CompileError(f"Einsum index {c!r} has sizes {dims[c]} and {d}")
                if c not in dims or _is_one(dims[c]):
                    dims[c] = d


def _is_one(d) -> bool:
    return not is_sym(d) and int(d) == 1


def _sum(dims):
    total = 0
    for d in dims:
        total = total + d
    return norm_dim(total) if isinstance(total, sympy.Basic) else total


def _check_concat_shapes(shapes, axis) -> None:
    if any(s is None for s in shapes):
        return  # an empty input name: reported elsewhere
    rank = len(shapes[0])
    if is_sym(axis) or not -max(rank, 1) <= int(axis) < max(rank, 1):
        raise CompileError(f"axis {axis} is out of range for an input of rank {rank}")
    ax = int(axis) % max(rank, 1)
    for k, s in enumerate(shapes[1:], 1):
        if len(s) != rank:
            raise CompileError(f"Concat input {k} has rank {len(s)}, input 0 has rank {rank}")
        for i, (a, b) in enumerate(zip(shapes[0], s)):
            if i != ax and _dims_differ(a, b):
                raise CompileError(f"Concat input {k} has shape {_fmt(s)}, input 0 has "
                                   f"{_fmt(shapes[0])}: they differ in dim {i}, not only in the "
                                   f"concatenation axis {ax}")


def _dims_differ(a, b) -> bool:
    """True when two dims differ for every value of the (positive integer) dim symbols.

    ``seq`` and ``16`` may be equal at run time, so they do not differ; ``24*batch*seq`` and
    ``288*batch*seq`` always do.  (sympy's assumptions decide; unknown means "may be equal".)
    """
    if not is_sym(a) and not is_sym(b):
        return int(a) != int(b)
    return sympy.expand(sympy.sympify(a) - sympy.sympify(b)).is_zero is False


def _same_dim(a, b) -> bool:
    if is_sym(a) or is_sym(b):
        return sympy.expand(sympy.sympify(a) - sympy.sympify(b)) == 0
    return int(a) == int(b)


def _check_reshape(in_shape, out_shape, node) -> None:
    """Reshape must keep the element count (a -1 that does not divide evenly is an error)."""
    a, b = _prod(in_shape), _prod(out_shape)
    if _dims_differ(a, b):  # counts that may agree at run time are checked there
        raise CompileError(f"cannot reshape {_fmt(in_shape)} ({a} elements) into "
                           f"{_fmt(out_shape)} ({b} elements)", node=_label(node), op=node.op_type)
