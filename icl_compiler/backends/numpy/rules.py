"""Per-primitive semantics of the neuromorphic graph, in float and in fixed mode.

Float mode: real numbers in float64; the learning rules with unit factors (the K rule
``dw = y0·x0·x1 − y0·w`` with the bAP y0 = 1 on slot t sets row t to x1 = k; the V rule sets
column t to v).  Fixed mode delegates to the integer primitives of :mod:`.fixed`, which
reproduce Lava 0.10 ``fixed_pt`` bit for bit; the quantiser's parameters live in population
``attrs["q"]`` and head populations' attrs.
"""
from __future__ import annotations

import numpy as np

from ...ir.neuro import HeadSpec, NeuroGraph, Population, SynapseGroup
from ...ir.ops import F_FUNCS
from ...semantics.fixed import PAYLOAD_MAX


def _fixed(ng: NeuroGraph) -> bool:
    return ng.precision == "fixed"


def one_hot_payload(ng: NeuroGraph, pop: Population):
    return int(pop.attrs.get("q", {}).get("one", 1)) if _fixed(ng) else 1.0


def encode_input(ng: NeuroGraph, pop: Population, x: np.ndarray) -> np.ndarray:
    if not _fixed(ng):
        return np.asarray(x, np.float64)
    p = np.round(np.asarray(x, np.float64) / pop.scale)
    return np.clip(p, -PAYLOAD_MAX - 1, PAYLOAD_MAX).astype(np.int64)


def dequantise(ng: NeuroGraph, pop: Population, y: np.ndarray) -> np.ndarray:
    if not _fixed(ng):
        return y.astype(np.float64)
    return y.astype(np.float64) * pop.scale


def dense(ng: NeuroGraph, s: SynapseGroup, pre: np.ndarray, stats) -> np.ndarray:
    stats.synaptic_ops += int(np.count_nonzero(pre)) * s.weights.shape[0]
    if not _fixed(ng):
        return pre @ s.weights.T
    from ...semantics import fixed

    return fixed.dense(s.weights, s.exp, pre)


def neuron(ng: NeuroGraph, pop: Population, cur: np.ndarray, stats) -> np.ndarray:
    if pop.model == "norm":
        return _norm(ng, pop, cur)
    if _fixed(ng) and pop.attrs.get("q", {}).get("shift"):
        cur = np.right_shift(cur, pop.attrs["q"]["shift"])  # bias holds the rounding half
    if pop.model == "graded_relu":
        out = np.maximum(cur, 0)
    elif pop.model in ("graded", "output"):
        out = cur
    else:
        raise ValueError(f"population {pop.name}: model {pop.model} has no static evaluation")
    if _fixed(ng):
        clipped = np.clip(out, -PAYLOAD_MAX - 1, PAYLOAD_MAX)
        stats.saturate(f"payload:{pop.name}", np.count_nonzero(clipped != out))
        out = clipped
    return out


def _norm(ng: NeuroGraph, pop: Population, cur: np.ndarray) -> np.ndarray:
    """LayerNorm/RMSNorm on an embedded core (float64 math; fixed mode rounds the result)."""
    a = pop.attrs
    x = cur.astype(np.float64)
    if _fixed(ng):
        x = x * a["q"]["in_scale"]
    if a["kind"] == "layernorm":
        x = x - x.mean(-1, keepdims=True)
    y = x / np.sqrt((x * x).mean(-1, keepdims=True) + a["eps"]) * a["gamma"] + a["beta"]
    if not _fixed(ng):
        return y
    return np.clip(np.round(y / pop.scale), -PAYLOAD_MAX - 1, PAYLOAD_MAX).astype(np.int64)


# -- plastic attention -------------------------------------------------------------------------

def residual(h: HeadSpec) -> bool:
    """16-bit K/V: each plastic weight is a high and a low int8 synapse (``fixed.kv_split``)."""
    return h.kv_bits == 16


def k_init(ng: NeuroGraph, h: HeadSpec, batch: int) -> np.ndarray:
    d = ng.pop(h.k).size
    if h.lowering == "fast_weight":
        return np.zeros((batch, ng.pop(h.v).size, d))  # W: [d_v, d_k], no slots
    if not _fixed(ng):
        return np.zeros((batch, h.t_max, d))
    from ...semantics import fixed

    return fixed.k_init(batch, h.t_max, d, residual(h))


def v_init(ng: NeuroGraph, h: HeadSpec, batch: int) -> np.ndarray:
    dv = ng.pop(h.v).size
    if h.lowering == "fast_weight":
        return np.zeros((batch, 1, 1))  # running normaliser (unused without normalisation)
    if not _fixed(ng):
        return np.zeros((batch, dv, h.t_max))
    from ...semantics import fixed

    return fixed.v_init(batch, dv, h.t_max, residual(h))


def k_write(ng, h: HeadSpec, K, k, t, stats):
    stats.learning_updates += k.shape[-1] * (2 if _fixed(ng) else 1)
    if not _fixed(ng):
        K = K.copy()
        K[:, t, :] = k  # dw = y0*x0*x1 - y0*w with y0 = x0 = 1 on the bAP row
        return K
    from ...semantics import fixed

    Kn, sat = fixed.k_write(K, k, t, residual(h))
    stats.saturate(f"k:{h.k}", sat)
    return Kn


def v_write(ng, h: HeadSpec, V, v, t, stats):
    stats.learning_updates += v.shape[-1]
    if not _fixed(ng):
        V = V.copy()
        V[:, :, t] = v  # dw = x0*y1*y2 - x0*y3*w with x0 = one-hot slot t, y1 = v
        return V
    from ...semantics import fixed

    Vn, sat = fixed.v_write(V, v, t, residual=residual(h))
    stats.saturate(f"v:{h.v}", sat)
    return Vn


def k_read(ng, h: HeadSpec, K, q, stats):
    stats.synaptic_ops += int(np.count_nonzero(q)) * h.t_max
    if not _fixed(ng):
        return np.einsum("btd,bd->bt", K, q)
    from ...semantics import fixed

    return fixed.k_read(K, q, residual=residual(h))


def slots(ng, h: HeadSpec, scores, stats):
    if not _fixed(ng):
        return F_FUNCS[h.f](scores * h.scale)
    from ...semantics import fixed

    q = ng.pop(h.slots).attrs["q"]
    a = fixed.slot_f(scores, h.f, q["r"], q["r2"])  # shift, f, 24-bit clip
    stats.saturate(f"slots:{h.slots}", np.count_nonzero((a >= PAYLOAD_MAX) | (a <= -PAYLOAD_MAX - 1)))
    stats.spikes += int(np.count_nonzero(a))
    return a


def v_read(ng, h: HeadSpec, V, a, stats):
    stats.synaptic_ops += int(np.count_nonzero(a)) * V.shape[1]
    if not _fixed(ng):
        out = np.einsum("bvt,bt->bv", V, a)
        if h.normalise == "rowsum":
            out = out / (a.sum(-1, keepdims=True) + h.eps)
        return out
    from ...semantics import fixed

    pop = ng.pop(h.out)
    q = pop.attrs["q"]
    rowsum = h.normalise == "rowsum"
    # the V LearningDense applies e_v (its weight_exp) to each row's int32 sum, then the value
    # neuron combines the high and low rows of 16-bit V
    acc = fixed.value_combine(fixed.v_read(V, a, 0 if rowsum else q["e_v"]), residual(h))
    out = rowsum_divide(acc, a, q["s_v"], q["s_a"], h.eps, pop.scale) if rowsum else acc
    clipped = np.clip(out, -PAYLOAD_MAX - 1, PAYLOAD_MAX)
    stats.saturate(f"payload:{h.out}", np.count_nonzero(clipped != out))
    return clipped


def rowsum_divide(acc, a, s_v: float, s_a: float, eps: float, scale: float) -> np.ndarray:
    """Fixed-mode attention normalisation on an embedded core: the real quotient
    (V·a)·s_v·s_a / (Σa·s_a + eps), rounded to the output population's scale (unclipped)."""
    real = acc * (s_v * s_a) / (a.sum(-1, keepdims=True) * s_a + eps)
    return np.round(real / scale).astype(np.int64)
