"""Pass ``fuse_rmsnorm``: hand-written RMSNorm → ``RMSNorm``.

Matches ``x · r`` or ``x / s`` with ``s = Sqrt(ReduceMean(x²) + eps)`` (mean over the last axis,
keepdims; x² as ``Pow(x, 2)`` or ``Mul(x, x)``; eps a scalar constant) and ``r = 1/s`` as
``Div(1, s)`` or ``Reciprocal(s)``; then a following ``Mul`` by a constant gamma over the last
axis (see :mod:`.norm_affine`).

Also recognises, by their numbers, ``x / d`` and ``x · (1/d)`` where d is computed from x
alone: RMSNorm (d = sqrt(mean x² + eps)) and the L2 norm of ``F.normalize`` (d = max(‖x‖, eps)),
whatever ops compute d (see :func:`fuse_numeric`).

Produces: ``RMSNorm(x[, gamma]) {epsilon}`` or ``L2Norm(x[, gamma]) {epsilon}`` computing the
root's output value.

Invariants: output names, shapes and dtypes are unchanged; numbers agree up to float rounding
(x·(1/s) vs x/s).
"""
from __future__ import annotations

import numpy as np

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
    found = fuse_numeric(g)
    n += found["RMSNorm"]
    absorbed = absorb_affine(g, "RMSNorm") + absorb_affine(g, "L2Norm")
    if not n and not found["L2Norm"]:
        return "no RMSNorm found"
    return (f"fused {n} RMSNorm(s)" + (f" and {found['L2Norm']} L2 norm(s)" if found["L2Norm"]
                                       else "") + f" (absorbed {absorbed} gamma op(s))")


# -- norms recognised by their numbers ---------------------------------------------------------
#
# ``x / d`` or ``x · r`` where d (r = 1/d) is computed from x alone, one number per token, is a
# normalisation of x over its last axis if its numbers say so, whatever ops compute d
# (``F.normalize`` exports ReduceL2 → Clip → Expand → Div; others write sqrt(sum x²), rsqrt,
# Pow(·, −0.5) …).  With d(0) the value at x = 0 (where the eps bound shows), the candidates are
#   rms:  d = sqrt(mean(x²) + eps), eps = d(0)²      → RMSNorm
#   l2:   d = max(||x||₂, eps),     eps = d(0)       → L2Norm
# checked on random tokens at three scales (so the eps bound is exercised too).

def _between(g: Graph, x: str, d: str):
    """The nodes computing d from x and constants (topologically ordered), or None."""
    from .util import const

    seen: dict[str, object] = {}
    stack, reached = [d], False
    while stack:
        v = stack.pop()
        if v == x:
            reached = True
            continue
        if const(g, v) is not None:
            continue
        p = g.producer(v)
        if p is None:
            return None
        if p.name in seen:
            continue
        seen[p.name] = p
        stack += [i for i in p.inputs if i]
    if not reached:
        return None
    order = {n.name: i for i, n in enumerate(g.topo_nodes())}
    return sorted(seen.values(), key=lambda n: order[n.name])


def _norm_candidates(g: Graph):
    from ..ir.interpreter import run as interpret
    from ..ir.symbolic import is_sym
    from .util import const

    for n in g.topo_nodes():
        if n.op not in ("Div", "Mul") or len(n.inputs) != 2:
            continue
        x, d = n.inputs
        if const(g, x) is not None or const(g, d) is not None:
            continue
        xv = g.values[x]
        if not xv.shape or is_sym(xv.shape[-1]) or g.values[n.outputs[0]].shape != xv.shape:
            continue
        nodes = _between(g, x, d)
        if nodes is None:
            continue  # d must be computed from x and constants only
        sub = Graph("norm")
        for m in nodes:
            for v in m.inputs + m.outputs:
                if v:
                    sub.values[v] = g.values[v]
            sub.add_node(m.op, m.inputs, m.outputs, m.attrs, name=m.name)
        sub.values[x] = xv
        sub.inputs, sub.outputs = [x], [d]
        lead = [2 if is_sym(s) else int(s) for s in xv.shape[:-1]]
        shape = lead + [int(xv.shape[-1])]
        rng = np.random.default_rng(0)
        def D(X):
            out = np.asarray(interpret(sub, {x: X}, float_dtype="float64")[d], np.float64)
            out = np.broadcast_to(out, X.shape)
            return 1.0 / out if n.op == "Mul" else out

        try:
            with np.errstate(all="ignore"):
                d0 = D(np.zeros(shape))
                Xs = [rng.normal(size=shape) * s for s in (1.0, 1e-3, 1e2)]
                Ds = [D(X) for X in Xs]
        except Exception:  # noqa: BLE001 - not evaluable: not a norm
            continue
        if not np.all(np.isfinite(d0)) or not np.allclose(d0, d0.flat[0]):
            continue
        e0 = float(d0.flat[0])
        for kind, eps, f in (
                ("RMSNorm", e0 * e0, lambda X, e: np.sqrt((X * X).mean(-1, keepdims=True) + e)),
                ("L2Norm", e0, lambda X, e: np.maximum(np.sqrt((X * X).sum(-1, keepdims=True)),
                                                       e))):
            if eps > 0 and all(np.allclose(Dx, np.broadcast_to(f(X, eps), X.shape), rtol=1e-6,
                                           atol=0) for X, Dx in zip(Xs, Ds)):
                yield n, x, kind, eps
                break


def fuse_numeric(g: Graph) -> dict[str, int]:
    """Replace every norm found by :func:`_norm_candidates`; returns how many of each kind."""
    counts = {"RMSNorm": 0, "L2Norm": 0}
    for n, x, kind, eps in list(_norm_candidates(g)):
        if n.name in g.nodes:
            replace_node(g, n, kind, [x], {"epsilon": float(eps)})
            counts[kind] += 1
    g.prune()
    return counts
