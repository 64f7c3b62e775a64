"""The compiler's attention ops: PlasticAttention (with F_FUNCS, the score functions) and the
head layout ops SplitHeads/MergeHeads."""
from __future__ import annotations

import numpy as np

from ..symbolic import is_sym
from .core import REQUIRED, prod, register


F_FUNCS = {
    "identity": lambda s: s,
    "relu": lambda s: np.maximum(s, 0),
    "relu2": lambda s: np.maximum(s, 0) ** 2,
}


ROW_NORMS = ("rowsum", "rowsum_max")  # divide by Σ_s f + eps, or by max(Σ_s f, eps)


def row_denominator(normalisation: str, rs, eps):
    """The divisor of a row-sum normalisation: ``Σ + eps`` or (``rowsum_max``, a clamp of the row
    sum from below, as ``s / s.sum().clamp(min=eps)`` writes it) ``max(Σ, eps)``."""
    return np.maximum(rs, eps) if normalisation == "rowsum_max" else rs + eps


def plastic_attention(q, k, v, heads, d_k, d_v, f, scale, normalisation, eps):
    """Reference semantics of PlasticAttention on merged-head layout.

    q, k: [..., T, heads*d_k]; v: [..., T, heads*d_v] -> [..., T, heads*d_v] with, per head,
    out_t = sum_{s<=t} f(scale * q_t.k_s) v_s, optionally divided by sum_{s<=t} f(.) + eps (``rowsum``) or max(sum_{s<=t} f(.), eps)
    (``rowsum_max``).
    """
    T = q.shape[-2]
    lead = q.shape[:-2]
    qh = q.reshape(lead + (T, heads, d_k)).swapaxes(-2, -3)
    kh = k.reshape(lead + (T, heads, d_k)).swapaxes(-2, -3)
    vh = v.reshape(lead + (T, heads, d_v)).swapaxes(-2, -3)
    s = (qh @ kh.swapaxes(-1, -2)) * np.asarray(scale, q.dtype)
    a = F_FUNCS[f](s) * np.tril(np.ones((T, T), q.dtype))
    out = a @ vh
    if normalisation in ROW_NORMS:
        out = out / row_denominator(normalisation, a.sum(-1, keepdims=True),
                                    np.asarray(eps, q.dtype))
    return out.swapaxes(-2, -3).reshape(lead + (T, heads * d_v)).astype(q.dtype)


def _pa_shape(ins, a):
    q, k, v = ins
    if q.shape[-1] != a["heads"] * a["d_k"] or k.shape[-1] != q.shape[-1]:
        raise ValueError("PlasticAttention: q/k last dim must be heads*d_k")
    if v.shape[-1] != a["heads"] * a["d_v"]:
        raise ValueError("PlasticAttention: v last dim must be heads*d_v")
    return [(v.shape, v.dtype)]


register("PlasticAttention",
         {"heads": REQUIRED, "d_k": REQUIRED, "d_v": REQUIRED, "f": REQUIRED, "scale": 1.0,
          "normalisation": "none", "eps": 0.0, "T_max": REQUIRED, "lowering": "auto",
          "layer": 0},
         n_inputs=(3, 3),
         doc="causal softmax-free attention whose K/V live in plastic synapses")(
    (_pa_shape, lambda xs, a: [plastic_attention(xs[0], xs[1], xs[2], a["heads"], a["d_k"],
                                                 a["d_v"], a["f"], a["scale"],
                                                 a["normalisation"], a["eps"])]))


# =============================================================================================
# Head layout ops (added by the passes engineer for passes/heads.py and passes/attention.py)
#
# SplitHeads: x [..., T, H*d] -> [..., H, T, d]   (Reshape to [..., T, H, d] + swap of T and H)
# MergeHeads: x [..., H, T, d] -> [..., T, H*d]   (the inverse)
# Both are pure data movement; the attention pass absorbs them into PlasticAttention.
# ---------------------------------------------------------------------------------------------

def _split_heads_shape(ins, a):
    x, h = ins[0], a["heads"]
    if x.rank < 2:
        raise ValueError("SplitHeads needs rank >= 2")
    c = x.shape[-1]
    if is_sym(c) or c % h:
        raise ValueError(f"SplitHeads: last dim {c} is not a multiple of heads={h}")
    return [(x.shape[:-2] + (h, x.shape[-2], c // h), x.dtype)]


def _split_heads(xs, a):
    x, h = xs[0], a["heads"]
    y = x.reshape(x.shape[:-1] + (h, x.shape[-1] // h))
    return [np.ascontiguousarray(np.swapaxes(y, -2, -3))]


def _merge_heads_shape(ins, a):
    x = ins[0]
    if x.rank < 3:
        raise ValueError("MergeHeads needs rank >= 3")
    h, t, d = x.shape[-3:]
    return [(x.shape[:-3] + (t, prod([h, d])), x.dtype)]


def _merge_heads(xs, a):
    x = np.swapaxes(xs[0], -2, -3)
    return [np.ascontiguousarray(x.reshape(x.shape[:-2] + (x.shape[-2] * x.shape[-1],)))]


register("SplitHeads", {"heads": REQUIRED},
         doc="[..., T, H*d] -> [..., H, T, d] (reshape + transpose of a head split)")(
    (_split_heads_shape, _split_heads))
register("MergeHeads", doc="[..., H, T, d] -> [..., T, H*d] (transpose + reshape of a head merge)")(
    (_merge_heads_shape, _merge_heads))
