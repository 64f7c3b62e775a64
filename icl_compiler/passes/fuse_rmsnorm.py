"""Pass ``fuse_rmsnorm``: hand-written RMSNorm → ``RMSNorm``.

Matches ``x · r`` or ``x / s`` with ``s = Sqrt(ReduceMean(x²) + eps)`` (mean over the last axis,
keepdims; x² as ``Pow(x, 2)`` or ``Mul(x, x)``; eps a scalar constant) and ``r = 1/s`` as
``Div(1, s)`` or ``Reciprocal(s)``; then a following ``Mul`` by a constant gamma over the last
axis (see :mod:`.norm_affine`).

Produces: ``RMSNorm(x[, gamma]) {epsilon}`` computing the root's output value.

Invariants: output names, shapes and dtypes are unchanged; numbers agree up to float rounding
(x·(1/s) vs x/s).
"""
from __future__ import annotations

from ..ir.graph import Graph
from .norm_affine import absorb_affine
from .pattern import Match, Pattern, Var, alt, op, rewrite_all
from .util import is_scalar_const, reduces_last_axis, replace_node, scalar, scalar_is

X = Var("x")
SQUARE = alt(op("Pow", X, Var("two", scalar_is(2.0))), op("Mul", X, X))
S = op("Sqrt", op("Add", op("ReduceMean", SQUARE, where=reduces_last_axis),
                  Var("eps", is_scalar_const)))
INV = alt(op("Reciprocal", S), op("Div", Var("one", scalar_is(1.0)), S))
RMS = Pattern(alt(op("Mul", X, INV), op("Div", X, S)))


def run(g: Graph, ctx=None) -> str:
    n = 0

    def fuse(g: Graph, m: Match):
        nonlocal n
        replace_node(g, m.root, "RMSNorm", [m["x"]], {"epsilon": scalar(g, m["eps"])})
        n += 1

    rewrite_all(g, RMS, fuse)
    g.prune()
    absorbed = absorb_affine(g, "RMSNorm")
    if not n:
        return "no RMSNorm found"
    return f"fused {n} RMSNorm(s) (absorbed {absorbed} gamma op(s))"
