"""Pass ``remove_noops``: removal of ops that do not change their input.

Matches:
- ``Identity(x)``;
- ``Cast(x)`` to x's own dtype;
- ``Reshape(x)`` whose output shape equals x's shape (symbolic dims compared exactly);
- ``Transpose(x)`` with the identity permutation;
- ``Transpose(Transpose(x))``: composed into one Transpose (removed if the composition is the
  identity).

Produces: users read x directly (a graph output keeps its name: x's producer is renamed to it);
the composed Transpose replaces the outer one.

Invariants: value shapes/dtypes and graph input/output names are unchanged; results are
bit-identical (only data movement is removed or composed).
"""
from __future__ import annotations

from ..ir.graph import Graph
from ..ir.ops import with_defaults
from .pattern import Match, Pattern, Var, op, rewrite_all
from .util import forward, replace_node, same_shape

X = Var("x")


def _perm(g: Graph, n) -> list[int]:
    p = with_defaults(n.op, n.attrs)["perm"]
    return list(p) if p is not None else list(reversed(range(g.values[n.inputs[0]].rank)))


def _is_identity_perm(g, n) -> bool:
    return _perm(g, n) == list(range(len(_perm(g, n))))


NOOPS = [
    Pattern(op("Identity", X), name="Identity"),
    Pattern(op("Cast", X, where=lambda g, n: g.values[n.inputs[0]].dtype == g.values[n.outputs[0]].dtype),
            name="Cast"),
    Pattern(op("Reshape", X, where=lambda g, n: same_shape(g.values[n.inputs[0]].shape,
                                                           g.values[n.outputs[0]].shape)),
            name="Reshape"),
    Pattern(op("Transpose", X, where=_is_identity_perm), name="Transpose"),
]
INNER = op("Transpose", X, name="inner")
TRANSPOSE_PAIR = Pattern(op("Transpose", INNER, name="outer"), single_use=False,
                         name="Transpose∘Transpose")


def run(g: Graph, ctx=None) -> str:
    counts: dict[str, int] = {}

    def drop(g: Graph, m: Match):
        if not forward(g, m.root, m["x"]):
            return False
        key = m.root.op
        counts[key] = counts.get(key, 0) + 1

    def compose(g: Graph, m: Match):
        inner, outer = m.nodes["inner"], m.nodes["outer"]
        pi, po = _perm(g, inner), _perm(g, outer)
        perm = [pi[p] for p in po]
        replace_node(g, outer, "Transpose", [m["x"]], {"perm": perm})
        counts["Transpose∘Transpose"] = counts.get("Transpose∘Transpose", 0) + 1

    rewrite_all(g, NOOPS, drop)
    rewrite_all(g, TRANSPOSE_PAIR, compose)
    rewrite_all(g, NOOPS, drop)  # composed identities
    g.prune()
    if not counts:
        return "no no-op found"
    return "removed " + ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
