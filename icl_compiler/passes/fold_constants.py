"""Pass ``fold_constants``: constant folding and dead-code elimination.

Matches: every node whose inputs are all constants and whose attributes hold no symbolic dims
(so its value is the same for every input), up to :data:`MAX_FOLD_ELEMENTS` output elements.

Produces: the node's outputs become constants (same value names, shapes and dtypes); then every
node and value that no graph output depends on is removed.

Invariants: values keep their names, shapes and dtypes; graph inputs and outputs are unchanged;
results are bit-identical (the op registry's own numpy semantics compute the constants).
"""
from __future__ import annotations

import numpy as np

from ..ir.graph import Graph, Value
from ..ir.ops import OPS, with_defaults
from ..ir.symbolic import has_sym
from .util import is_const

MAX_FOLD_ELEMENTS = 1 << 22


def run(g: Graph, ctx=None) -> str:
    folded = 0
    for n in g.topo_nodes():
        if not all((not i) or is_const(g, i) for i in n.inputs):
            continue
        attrs = with_defaults(n.op, n.attrs)
        if has_sym(attrs):
            continue
        if any(g.values[o].shape and has_sym(list(g.values[o].shape)) for o in n.outputs):
            continue
        size = max((int(np.prod(g.values[o].shape)) for o in n.outputs), default=0)
        if size > MAX_FOLD_ELEMENTS:
            continue
        outs = OPS[n.op].compute([g.values[i].data if i else None for i in n.inputs], attrs)
        for o, arr in zip(n.outputs, outs):
            v = g.values[o]
            arr = np.asarray(arr).astype(v.dtype, copy=False).reshape(v.shape)
            g.values[o] = Value(o, v.shape, v.dtype, arr)
        g.remove_node(n.name)
        folded += 1
    removed = g.prune()
    return f"folded {folded} constant op(s), removed {removed} dead op(s)"
