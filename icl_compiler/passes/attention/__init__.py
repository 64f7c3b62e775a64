"""Pass ``attention``: causal softmax-free attention → one ``PlasticAttention`` per layer.

Recognised by what it computes, not by how it is spelled.  With the value classification of
:mod:`.classify`:

* an *attention read* is a product (``MatMul``/``Einsum``/...) of a pairwise value A with a token
  value V that contracts A's key position with V's position (classified ``attention``);
* its *pairwise region* is every op between the scores S = Q·Kᵀ (a product of two token values
  whose positions stay apart, classified ``scores``) and A, with the masks, scales and constants
  feeding it (which may depend only on the sequence length and constants);
* the region is evaluated with the interpreter on random scores at several sequence lengths and
  must equal ``tril ⊙ f(scale·S)`` for f ∈ {identity, ReLU, ReLU²}, optionally divided by its row
  sum plus eps — exactly, up to float rounding; scale and eps are fitted from the numbers.  A
  normalisation after the read (``(A·V) / (Σ_s A + eps)``, any spelling) is checked the same way;
* heads and features are lined up by probing: Q, K, V and the output are mapped onto per-token
  feature vectors (:mod:`.layout`), whatever their layout (batch-first, sequence-first,
  batch×heads merged, per-head products, fused projections, K/V heads shared by several query
  heads).

Produces: ``PlasticAttention(q, k, v)`` on canonical [B, T, H·d] operands (data-movement ops the
lowering resolves into index maps; none when the model already has such values), attributes
heads, d_k, d_v, f, scale, normalisation, eps, T_max, lowering, layer, computing the value the
read (or the normalisation after it) computed, re-laid out as the model had it.  Scalar scales
on Q and K are folded into ``scale``.  Per-head attentions joined by a feature-axis Concat form
one layer.

Raises CompileError naming the ONNX node for softmax attention (first), attention that is not
causal, score functions that are not elementwise or not in the family, masks computed from the
input data, a dynamic context length without a bound, and products of two activations that are
not attention.

Invariants: graph inputs/outputs and their types are unchanged; numbers are unchanged up to
float rounding; no product of two activations remains.
"""
from __future__ import annotations

import numpy as np

from ...errors import CompileError
from ...ir.graph import Graph
from ...ir.ops import with_defaults
from ..base import PassContext
from ..classify import PRODUCTS, classify
from .analyse import _analyse, _diagnose
from .common import SOFTMAX_HINT, SOFTMAX_REASON, Attn
from .rewrite import _groups, _rewrite, simplify_layouts

__all__ = ["run", "attention_report", "simplify_layouts", "SOFTMAX_HINT", "SOFTMAX_REASON"]


def run(g: Graph, ctx: PassContext | None = None) -> str:
    ctx = ctx or PassContext()
    info = classify(g)
    found: list[Attn] = []
    problems: list[CompileError] = []
    for n in g.topo_nodes():
        i = info.get(n.outputs[0])
        if n.op in PRODUCTS and i is not None and "attention" in i.flags:
            try:
                with np.errstate(all="ignore"):  # probes of a model's own overflow/0·inf
                    found.append(_analyse(g, info, n, ctx))
            except CompileError as e:  # every read is analysed: the worst problem goes first
                problems.append(e)
    seen = {(e.node, e.reason) for e in problems}
    problems += [e for e in _diagnose(g, info, found) if (e.node, e.reason) not in seen]
    if problems:
        raise CompileError.first_of(problems)
    if not found:
        return "no attention found"
    groups = _groups(g, found)
    for layer, (members, target) in enumerate(groups):
        _rewrite(g, info, members, target, layer, ctx)
    g.prune()
    simplify_layouts(g)
    heads = sum(m.heads for members, _ in groups for m in members)
    desc = sorted({f"f={m.f} norm={m.normalisation} T_max={m.t_max}"
                   for members, _ in groups for m in members})
    return (f"rewrote {len(groups)} attention layer(s), {heads} head(s), into PlasticAttention "
            f"({'; '.join(desc)}, lowering={ctx.lowering})")

def attention_report(graph: Graph) -> list[dict]:
    """One entry per head of every PlasticAttention, in layer order."""
    out = []
    for n in graph.topo_nodes():
        if n.op != "PlasticAttention":
            continue
        a = with_defaults(n.op, n.attrs)
        for h in range(int(a["heads"])):
            out.append({"layer": int(a["layer"]), "head": h, "f": a["f"],
                        "scale": float(a["scale"]), "normalisation": a["normalisation"],
                        "eps": float(a["eps"]), "T_max": int(a["T_max"]),
                        "lowering": a["lowering"], "d_k": int(a["d_k"]), "d_v": int(a["d_v"]),
                        "node": n.onnx_name or n.name})
    return out
