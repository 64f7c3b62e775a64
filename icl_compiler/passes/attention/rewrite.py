"""The rewrite: canonical [B, T, heads·d] operands, one PlasticAttention per layer, the output
re-laid out as the model had it, and layout chains that end where they started removed."""
from __future__ import annotations

import numpy as np

from ...ir import layout as L
from ...ir.graph import Graph
from ...ir.interpreter import run as interpret
from ..classify import Kind, classify
from ..heads import merge_linears
from ..util import add_const, add_op
from ...ir.layout import LayoutError
from .common import LAYOUT_OPS, Attn, B, F, Operand, T
from .region import _env_for, _subgraph

def _canonical_layout(lay) -> bool:
    ks = [tuple(f.kind for f in ax) for ax in lay]
    if ks and ks[0] == (B,):
        ks = ks[1:]
    return len(ks) == 2 and ks[0] == (T,) and all(k == F for k in ks[1])

def _chain_ids(g: Graph, info, src: str, dst: str, env) -> np.ndarray | None:
    """Feature map of the layout-op chain src → dst (dst feature j = src feature idx[j])."""
    nodes = []
    v = dst
    while v != src:
        n = g.producer(v)
        if n is None or n.op not in LAYOUT_OPS:
            return None
        nodes.append(n)
        v = n.inputs[0]
    sub = _subgraph(g, nodes[::-1], [src], [dst])
    try:
        return L.index_map(lambda xs: interpret(sub, {src: xs[0]}, float_dtype="float64")[dst],
                           [(info[src].layout, None)], info[dst].layout, env)
    except (LayoutError, Exception):  # noqa: BLE001
        return None

def _canonical(g: Graph, info, op: Operand, name: str | None) -> str:
    """A [B, T, heads·d] value holding the operand's features in (head, i) order."""
    lay = info[op.value].layout
    idx = op.idx.ravel()
    env = _env_for(lay, 3, batch=2)
    # an ancestor through layout ops that is already canonical: select from it directly
    v, best = op.value, None
    for _ in range(8):
        if _canonical_layout(info[v].layout):
            m = _chain_ids(g, info, v, op.value, env) if v != op.value else np.arange(
                L.n_features(lay))
            if m is not None:
                best = (v, m[idx])
        n = g.producer(v)
        if n is None or n.op not in LAYOUT_OPS:
            break
        v = n.inputs[0]
    if best is None:
        base = _to_canonical(g, op.value, lay)
        sel = idx
    else:
        base, sel = best
    n_base = int(g.values[base].shape[-1])
    if len(sel) == n_base and np.array_equal(sel, np.arange(n_base)):
        return base
    ind = add_const(g, np.asarray(sel, np.int64), "attn_select")
    return add_op(g, "Gather", [base, ind], {"axis": -1}, onnx_name=name)

def _factor_dims(lay) -> list:
    return [f.size for ax in lay for f in ax]

def _to_canonical(g: Graph, v: str, lay) -> str:
    ks = L.kinds(lay)
    dims = _factor_dims(lay)
    x = add_op(g, "Reshape", [v], {"shape": dims})
    order = [ks.index(k) for k in (B, T) if k in ks] + [i for i, k in enumerate(ks) if k == F]
    if order != list(range(len(order))):
        x = add_op(g, "Transpose", [x], {"perm": order})
    lead = [dims[ks.index(k)] for k in (B, T) if k in ks]
    return add_op(g, "Reshape", [x], {"shape": lead + [L.n_features(lay)]})

def _from_canonical(g: Graph, pa: str, z_idx: np.ndarray, lay, target: str) -> None:
    """Write ``target`` (layout ``lay``) from the canonical PlasticAttention output."""
    n = int(g.values[pa].shape[-1])
    x = pa
    if not (len(z_idx) == n and np.array_equal(z_idx, np.arange(n))):
        x = add_op(g, "Gather", [x, add_const(g, np.asarray(z_idx, np.int64), "attn_order")],
                   {"axis": -1})
    if _canonical_layout(lay) and len(lay) == len(g.values[x].shape):
        add_op(g, "Identity", [x], out=target)
        return
    ks = L.kinds(lay)
    dims = _factor_dims(lay)
    order = [ks.index(k) for k in (B, T) if k in ks] + [i for i, k in enumerate(ks) if k == F]
    x = add_op(g, "Reshape", [x], {"shape": [dims[i] for i in order]})
    inv = [int(i) for i in np.argsort(order)]
    if inv != list(range(len(inv))):
        x = add_op(g, "Transpose", [x], {"perm": inv})
    add_op(g, "Reshape", [x], {"shape": list(g.values[target].shape)}, out=target)

def _groups(g: Graph, atts: list[Attn]) -> list[tuple[list[Attn], str]]:
    """Per-head attentions whose canonical outputs a feature-axis Concat joins: one layer."""
    by_out = {a.target: a for a in atts}
    grouped: set[str] = set()
    groups = []
    for n in g.topo_nodes():
        if n.op != "Concat" or len(n.inputs) < 2:
            continue
        ax = n.attrs["axis"]
        members = [by_out.get(i) for i in n.inputs]
        if (ax in (-1, g.values[n.inputs[0]].rank - 1) and all(m is not None for m in members)
                and all(_canonical_layout(m.z_layout) and np.array_equal(
                    m.z_idx, np.arange(len(m.z_idx))) for m in members)
                and len({m.key() for m in members}) == 1
                and all(len(g.consumers(m.target)) == 1 and m.target not in g.outputs
                        for m in members)
                and len(set(n.inputs)) == len(n.inputs)):
            groups.append((members, n.outputs[0]))
            grouped.update(m.target for m in members)
    for a in atts:
        if a.target not in grouped:
            groups.append(([a], a.target))
    order = {n.name: i for i, n in enumerate(g.topo_nodes())}
    groups.sort(key=lambda gr: order[gr[0][0].p1.name])
    return groups

def _rewrite(g: Graph, info, members: list[Attn], target: str, layer: int, ctx) -> None:
    a0 = members[0]
    name = a0.p1.onnx_name
    heads = sum(m.heads for m in members)
    ops = {}
    for role in ("q", "k", "v"):
        vals = [_canonical(g, info, getattr(m, role), name) for m in members]
        ops[role] = vals[0] if len(vals) == 1 else (
            merge_linears(g, vals, onnx_name=name) or add_op(g, "Concat", vals, {"axis": -1}))
    if a0.q_factor is not None:  # query t's weights × c_t: q_t × c_t (a per-position table)
        q = ops["q"]
        seq = g.values[q].shape[1]
        table = add_const(g, a0.q_factor.reshape(-1, 1), "q_factor")  # float64, then cast
        rows = add_op(g, "Slice", [table], {"starts": [0], "ends": [seq], "axes": [0],
                                             "steps": [1]}, onnx_name=name)
        rows = add_op(g, "Cast", [rows], {"to": g.values[q].dtype}, onnx_name=name)
        ops["q"] = add_op(g, "Mul", [q, rows], onnx_name=name)
    attrs = {"heads": heads, "d_k": a0.d_k, "d_v": a0.d_v, "f": a0.f, "scale": a0.scale,
             "normalisation": a0.normalisation, "eps": a0.eps, "T_max": a0.t_max,
             "lowering": ctx.lowering, "layer": layer}
    g.remove_node(g.producer(target).name)
    if len(members) > 1 or (_canonical_layout(a0.z_layout) and np.array_equal(
            a0.z_idx, np.arange(len(a0.z_idx))) and g.values[target].rank == 3):
        add_op(g, "PlasticAttention", [ops["q"], ops["k"], ops["v"]], attrs, out=target,
               onnx_name=name)
        return
    pa = add_op(g, "PlasticAttention", [ops["q"], ops["k"], ops["v"]], attrs,
                base="plastic_attention", onnx_name=name)
    _from_canonical(g, pa, a0.z_idx, a0.z_layout, target)

def simplify_layouts(g: Graph) -> int:
    """Replace a chain of layout ops that ends where it started (same canonical layout, same
    feature order) by its source."""
    info = classify(g)
    removed = 0
    for n in g.topo_nodes():
        if n.name not in g.nodes or n.op not in LAYOUT_OPS | {"Gather"}:
            continue
        out = n.outputs[0]
        i = info.get(out)
        if i is None or i.kind != Kind.TOKEN or not _canonical_layout(i.layout):
            continue
        v = n.inputs[0]
        env = _env_for(i.layout, 3, batch=2)
        for _ in range(8):
            if v in g.inputs or info.get(v) is None or info[v].kind != Kind.TOKEN:
                break
            if _canonical_layout(info[v].layout) and g.values[v].shape == g.values[out].shape:
                m = _chain_ids(g, info, v, out, env)
                if m is not None and np.array_equal(m, np.arange(len(m))) and out not in g.outputs:
                    g.replace_uses(out, v)
                    removed += 1
                    break
            p = g.producer(v)
            if p is None or p.op not in LAYOUT_OPS:
                break
            v = p.inputs[0]
    g.prune()
    return removed
