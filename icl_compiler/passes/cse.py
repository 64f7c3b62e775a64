"""Pass ``cse``: common-subexpression elimination.

Matches: two nodes with the same op, the same inputs (in order) and the same attributes
(exports without optimisation repeat work, e.g. a hand-written LayerNorm that computes
``x - mean(x)`` twice).

Produces: one node; the users of the duplicate's outputs read the kept node's outputs (a graph
output keeps its name).

Invariants: graph inputs and outputs keep their names and types; results are bit-identical
(the same op on the same values).
"""
from __future__ import annotations

import json

from ..ir.graph import Graph


def _key(n) -> str:
    return json.dumps([n.op, n.inputs, n.attrs], sort_keys=True, default=repr)


def run(g: Graph, ctx=None) -> str:
    seen: dict[str, object] = {}
    merged = 0
    for n in g.topo_nodes():
        if n.name not in g.nodes:
            continue
        k = _key(n)
        keep = seen.get(k)
        if keep is None:
            seen[k] = n
            continue
        if any(o in g.outputs for o in n.outputs) or len(n.outputs) != len(keep.outputs):
            continue
        g.remove_node(n.name)
        for old, new in zip(n.outputs, keep.outputs):
            g.replace_uses(old, new)
            del g.values[old]
        merged += 1
    g.prune()
    return f"merged {merged} duplicate op(s)" if merged else "no duplicate op"
