"""Pass ``head_layout``: recognise multi-head split/merge and fused/per-head projections.

Matches:
- head split: ``Transpose(Reshape(x))`` where the Reshape turns x [..., T, H·d] into
  [..., T, H, d] and the Transpose keeps the leading axes in place (perm [0, 2, 1, 3] gives
  [..., H, T, d]; K's [0, 2, 3, 1] gives [..., H, d, T]);
- head merge: ``Reshape(Transpose(y))`` where y is [..., H, T, d], the Transpose swaps the H and T
  axes only and the Reshape merges the last two axes into H·d;
- fused projection: ``Split(Linear(x, W[, b]))`` along the last axis (e.g. a fused qkv Linear);
- per-head projections: ``Concat(Linear(x, W₀[, b₀]), Linear(x, W₁[, b₁]), ...)`` along the
  last axis with one shared x.

Produces:
- ``SplitHeads(x) {heads=H}`` ([..., H, T, d]), followed by the remaining Transpose
  ([0, 1, 3, 2] for K) when the perm was not the plain head swap;
- ``MergeHeads(y)``;
- one ``Linear(x, W[:, cols], b[cols])`` per Split output (each computing that output value);
- one ``Linear(x, [W₀|W₁|...], [b₀|b₁|...])`` computing the Concat's value.

Invariants: output names, shapes and dtypes are unchanged; numbers are bit-identical (data
movement and column slicing/concatenation of constants only).
"""
from __future__ import annotations

import numpy as np

from ..ir.graph import Graph, Node
from ..ir.ops import with_defaults
from .pattern import Match, Pattern, Var, op, rewrite_all
from .util import add_const, add_op, const, is_const_2d, replace_node, same_shape, static

X = Var("x")


def _perm(g: Graph, n: Node) -> list[int]:
    p = with_defaults(n.op, n.attrs)["perm"]
    return list(p) if p is not None else list(reversed(range(g.values[n.inputs[0]].rank)))


def _is_head_split_reshape(g: Graph, n: Node) -> bool:
    a, b = g.values[n.inputs[0]].shape, g.values[n.outputs[0]].shape
    return (len(a) >= 2 and len(b) == len(a) + 1 and same_shape(a[:-1], b[:-2])
            and static(a[-1]) and static(b[-2]) and static(b[-1]) and b[-2] * b[-1] == a[-1])


def _keeps_lead(g: Graph, n: Node) -> bool:
    p = _perm(g, n)
    r = len(p)
    return r >= 3 and p[:r - 3] == list(range(r - 3)) and sorted(p[r - 3:]) == [r - 3, r - 2, r - 1]


def _is_head_swap(g: Graph, n: Node) -> bool:
    r = g.values[n.inputs[0]].rank
    return r >= 3 and _perm(g, n) == list(range(r - 3)) + [r - 2, r - 3, r - 1]


def _is_head_merge_reshape(g: Graph, n: Node) -> bool:
    a, b = g.values[n.inputs[0]].shape, g.values[n.outputs[0]].shape
    return (len(b) == len(a) - 1 and same_shape(a[:-2], b[:-1]) and static(a[-2])
            and static(a[-1]) and static(b[-1]) and a[-2] * a[-1] == b[-1])


SPLIT = Pattern(op("Transpose", op("Reshape", X, name="reshape", where=_is_head_split_reshape),
                   where=_keeps_lead), single_use=False)
MERGE = Pattern(op("Reshape", op("Transpose", X, where=_is_head_swap),
                   where=_is_head_merge_reshape))


def _last_axis(g: Graph, n: Node) -> bool:
    ax = with_defaults(n.op, n.attrs)["axis"]
    return ax in (-1, g.values[n.inputs[0]].rank - 1)


def _linear_group(g: Graph, values: list[str]):
    """(x, [W_i], [b_i] or None) when every value is a Linear of one shared input x with constant
    weights, all with or all without bias; else None."""
    parts = []
    for v in values:
        n = g.producer(v)
        if n is None or n.op != "Linear" or not is_const_2d(g, n.inputs[1]):
            return None
        b = const(g, n.inputs[2]) if len(n.inputs) > 2 and n.inputs[2] else None
        parts.append((n.inputs[0], const(g, n.inputs[1]), b))
    if len({p[0] for p in parts}) != 1 or len({p[2] is None for p in parts}) != 1:
        return None
    bs = None if parts[0][2] is None else [p[2].reshape(-1) for p in parts]
    return parts[0][0], [p[1] for p in parts], bs


def merge_linears(g: Graph, values: list[str], out: str | None = None,
                  onnx_name: str | None = None) -> str | None:
    """One Linear computing ``Concat(values, axis=-1)`` when every value is a Linear of the same
    input (see :func:`_linear_group`); returns its output value, or None."""
    grp = _linear_group(g, values)
    if grp is None:
        return None
    x, Ws, bs = grp
    ins = [x, add_const(g, np.concatenate(Ws, axis=1), "merged_w")]
    if bs is not None:
        ins.append(add_const(g, np.concatenate(bs), "merged_b"))
    return add_op(g, "Linear", ins, out=out, base="merged", onnx_name=onnx_name)


def _mergeable_concat(g: Graph, n: Node) -> bool:
    return (_last_axis(g, n) and len(n.inputs) > 1 and _linear_group(g, n.inputs) is not None
            and all(len(g.consumers(v)) == 1 and v not in g.outputs for v in n.inputs))


SPLIT_LINEAR = Pattern(op("Split", op("Linear", X, Var("W", is_const_2d), name="lin", variadic=True),
                          where=_last_axis))
CONCAT = Pattern(op("Concat", X, variadic=True, where=_mergeable_concat))


def run(g: Graph, ctx=None) -> str:
    counts = {"split": 0, "merge": 0, "fused": 0, "concat": 0}

    def split(g: Graph, m: Match):
        t, r = m.root, m.nodes["reshape"]
        heads = int(g.values[r.outputs[0]].shape[-2])
        rank = g.values[r.outputs[0]].rank
        # t = transpose(reshape, p) and SplitHeads = transpose(reshape, s), s its own inverse,
        # so t = transpose(SplitHeads, rest) with rest[i] = s[p[i]]
        s = list(range(rank - 3)) + [rank - 2, rank - 3, rank - 1]
        rest = [s[i] for i in _perm(g, t)]
        if rest == list(range(rank)):
            replace_node(g, t, "SplitHeads", [m["x"]], {"heads": heads}, onnx_name=r.onnx_name)
        else:
            sh = add_op(g, "SplitHeads", [m["x"]], {"heads": heads}, onnx_name=r.onnx_name)
            replace_node(g, t, "Transpose", [sh], {"perm": rest})
        counts["split"] += 1

    def merge(g: Graph, m: Match):
        replace_node(g, m.root, "MergeHeads", [m["x"]])
        counts["merge"] += 1

    def split_linear(g: Graph, m: Match):
        lin, sp = m.nodes["lin"], m.root
        W = const(g, lin.inputs[1])
        b = const(g, lin.inputs[2]) if len(lin.inputs) > 2 and lin.inputs[2] else None
        g.remove_node(sp.name)
        start = 0
        for o in sp.outputs:
            n = int(g.values[o].shape[-1])
            ins = [m["x"], add_const(g, W[:, start:start + n], lin.inputs[1] + "_cols")]
            if b is not None:
                ins.append(add_const(g, b.reshape(-1)[start:start + n], lin.inputs[2] + "_cols"))
            add_op(g, "Linear", ins, out=o, onnx_name=lin.onnx_name)
            start += n
        counts["fused"] += 1

    def concat(g: Graph, m: Match):
        c = m.root
        g.remove_node(c.name)
        merge_linears(g, c.inputs, out=c.outputs[0], onnx_name=c.onnx_name)
        counts["concat"] += 1

    rewrite_all(g, [SPLIT, MERGE, SPLIT_LINEAR, CONCAT], lambda g, m: {
        "Transpose": split, "Reshape": merge, "Split": split_linear, "Concat": concat}[m.root.op](g, m))
    g.prune()
    if not any(counts.values()):
        return "no head split/merge found"
    return (f"{counts['split']} head split(s) → SplitHeads, {counts['merge']} merge(s) → MergeHeads, "
            f"{counts['fused']} fused projection(s) split, {counts['concat']} per-head "
            f"projection group(s) merged")
