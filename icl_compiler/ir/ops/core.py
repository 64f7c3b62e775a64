"""The op registry (:data:`OPS`, :func:`register`), attribute defaults and the shape helpers
that the op families share."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import sympy

from ..symbolic import Dim, dims_equal, is_sym, norm_dim

REQUIRED = object()
INT64_MAX = 2**63 - 1


@dataclass
class OpDef:
    name: str
    attrs: dict[str, Any]  # attribute name -> default (REQUIRED if it must be given)
    shape: Callable
    compute: Callable
    n_inputs: tuple[int, int]  # (min, max) number of inputs
    n_outputs: int | None = 1  # None: given by the node
    doc: str = ""


OPS: dict[str, OpDef] = {}


def register(name: str, attrs: dict | None = None, n_inputs=(1, 1), n_outputs: int | None = 1,
             doc: str = ""):
    def deco(fns):
        shape, compute = fns
        OPS[name] = OpDef(name, dict(attrs or {}), shape, compute, n_inputs, n_outputs, doc)
        return fns
    return deco


def get_op(name: str) -> OpDef:
    return OPS[name]


def with_defaults(op: str, attrs: dict) -> dict:
    """The node's attributes completed with the schema's defaults."""
    od = OPS[op]
    out = {k: v for k, v in od.attrs.items() if v is not REQUIRED}
    out.update(attrs)
    return out


def broadcast(*shapes: tuple[Dim, ...]) -> tuple[Dim, ...]:
    rank = max(len(s) for s in shapes)
    out = []
    for i in range(rank):
        dims = [s[len(s) - rank + i] for s in shapes if len(s) - rank + i >= 0]
        d: Dim = 1
        for x in dims:
            if _eq(x, 1):
                continue
            if _eq(d, 1):
                d = x
            elif _eq(d, x):
                continue
            elif is_sym(d) and not is_sym(x):
                d = x
            elif is_sym(x) and not is_sym(d):
                continue
            elif is_sym(x) and is_sym(d):
                continue
            else:
                raise ValueError(f"shapes {shapes} do not broadcast")
        out.append(d)
    return tuple(out)


def _eq(a: Dim, b: Dim) -> bool:
    return dims_equal(a, b)


def prod(dims) -> Dim:
    p: Dim = 1
    for d in dims:
        p = p * d
    return norm_dim(p) if isinstance(p, sympy.Basic) else p


def _axis(a: int, rank: int) -> int:
    if not -rank <= a < max(rank, 1):
        raise ValueError(f"axis {a} out of range for rank {rank}")
    return a % rank if rank else 0


def _same(ins, attrs):
    return [(ins[0].shape, ins[0].dtype)]


def _bcast(ins, attrs):
    return [(broadcast(*(v.shape for v in ins)), ins[0].dtype)]


def _bcast_bool(ins, attrs):
    return [(broadcast(*(v.shape for v in ins)), "bool")]
