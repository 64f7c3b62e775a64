"""Shared by ``fuse_layernorm`` and ``fuse_rmsnorm``: fold the per-feature affine that follows a
fused norm (``Mul`` by a constant gamma, ``Add`` of a constant beta) into the norm's inputs.

Matches ``Mul(N(x), gamma)`` where N has no gamma yet and no beta, and ``Add(N(x, ...), beta)``
where N (a LayerNorm) has no beta yet; gamma/beta are constant vectors over the last axis and N's
output is used only there.  Produces the norm with the constant as its gamma/beta input.
Invariants: the output value keeps its name/shape/dtype; numbers are bit-identical.
"""
from __future__ import annotations

from ..ir.graph import Graph
from .pattern import Match, Pattern, Var, op, rewrite_all
from .util import add_const, const, is_vector_const, replace_node


def _fits(g: Graph, m: Match) -> bool:
    c = const(g, m["c"])
    n = g.values[m.nodes["norm"].outputs[0]].shape[-1]
    return c.size == n and g.values[m["c"]].dtype == g.values[m.root.outputs[0]].dtype


def absorb_affine(g: Graph, norm_op: str) -> int:
    """Fold following per-feature Mul/Add constants into ``norm_op`` nodes; returns the count."""
    def no_gamma(g, n):
        return len(n.inputs) == 1

    def no_beta(g, n):
        return len(n.inputs) < 3

    C = Var("c", is_vector_const)
    gamma = Pattern(op("Mul", op(norm_op, Var("x"), name="norm", where=no_gamma), C), check=_fits)
    beta = Pattern(op("Add", op(norm_op, Var("x"), name="norm", where=no_beta, variadic=True), C),
                   check=_fits)

    def fold(g: Graph, m: Match):
        n = m.nodes["norm"]
        c = const(g, m["c"])
        cv = m["c"] if c.ndim == 1 else add_const(g, c.reshape(-1), m["c"])
        ins = list(n.inputs)
        if m.root.op == "Mul":
            ins = [ins[0], cv]
        else:
            ins = [ins[0], ins[1] if len(ins) > 1 else "", cv]
        replace_node(g, m.root, norm_op, ins, n.attrs, onnx_name=n.onnx_name)

    count = rewrite_all(g, [gamma, beta] if norm_op == "LayerNorm" else [gamma], fold)
    g.prune()
    return count
