"""Pass ``fuse_layernorm``: LayerNorm over the last axis → ``LayerNorm``.

Matches:
- ONNX ``LayerNormalization(x, scale[, bias])`` normalising the last axis only;
- the decomposed form ``d = x - ReduceMean(x)``, ``v = ReduceMean(d²)`` (d² as ``Pow(d, 2)`` or
  ``Mul(d, d)``), ``(d / Sqrt(v + eps))``, both means over the last axis with keepdims, eps a
  scalar constant; then a following ``Mul`` by a constant gamma and ``Add`` of a constant beta
  (see :mod:`.norm_affine`).

Produces: ``LayerNorm(x[, gamma[, beta]]) {epsilon}`` computing the root's output value.

Invariants: output names, shapes and dtypes are unchanged; numbers agree up to float rounding
(the reference computes the same formula).
"""
from __future__ import annotations

from ..ir.graph import Graph
from ..ir.ops import with_defaults
from .norm_affine import absorb_affine
from .pattern import Match, Pattern, Var, alt, op, rewrite_all
from .util import is_scalar_const, reduces_last_axis, replace_node, scalar, scalar_is

X = Var("x")
MEAN = op("ReduceMean", X, where=reduces_last_axis)
D = op("Sub", X, MEAN)
SQUARE = alt(op("Pow", D, Var("two", scalar_is(2.0))), op("Mul", D, D))
DECOMPOSED = Pattern(op("Div", D, op("Sqrt", op("Add", op("ReduceMean", SQUARE, where=reduces_last_axis),
                                                  Var("eps", is_scalar_const)))))


def _last_axis(g: Graph, n) -> bool:
    ax = with_defaults(n.op, n.attrs)["axis"]
    return ax in (-1, g.values[n.inputs[0]].rank - 1)


def _plain(g: Graph, n) -> bool:
    """Over the last axis, and no statistics output (Mean, InvStdDev) is used."""
    return _last_axis(g, n) and len(n.outputs) == 1


ONNX_LN = Pattern(op("LayerNormalization", X, name="ln", where=_plain, variadic=True))


def run(g: Graph, ctx=None) -> str:
    n_onnx = n_dec = 0

    def from_onnx(g: Graph, m: Match):
        nonlocal n_onnx
        n = m.root
        replace_node(g, n, "LayerNorm", list(n.inputs),
                     {"epsilon": float(with_defaults(n.op, n.attrs)["epsilon"])})
        n_onnx += 1

    def from_decomposed(g: Graph, m: Match):
        nonlocal n_dec
        replace_node(g, m.root, "LayerNorm", [m["x"]], {"epsilon": scalar(g, m["eps"])})
        n_dec += 1

    rewrite_all(g, ONNX_LN, from_onnx)
    rewrite_all(g, DECOMPOSED, from_decomposed)
    g.prune()
    absorbed = absorb_affine(g, "LayerNorm")
    if not (n_onnx or n_dec):
        return "no LayerNorm found"
    return (f"fused {n_onnx} LayerNormalization and {n_dec} decomposed LayerNorm(s) into LayerNorm"
            f" (absorbed {absorbed} gamma/beta op(s))")
