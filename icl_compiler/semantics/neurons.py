"""The neuron models of the neuromorphic IR, in float and in fixed point (docs/semantics.md §4-5).

Every function takes the typed records of the IR (:class:`~icl_compiler.ir.neuro.Population`,
:class:`~icl_compiler.ir.neuro.HeadSpec`, :class:`~icl_compiler.ir.neuro.QuantParams` …) and
``fixed`` (the program's precision), never a graph, so the reference interpreter and the Lava
backend's neuron processes share one definition of each model.  Functions that saturate return
``(value, number of saturated entries)``; counting is the caller's business.

Float mode: real numbers in float64; the learning rules with unit factors (the K rule
``dw = y0·x0·x1 − y0·w`` with the bAP y0 = 1 on slot t sets row t to x1 = k; the V rule sets
column t to v).  Fixed mode: the integer primitives of :mod:`.fixed`, which reproduce Lava 0.10
``fixed_pt`` bit for bit, with the quantiser's parameters (``Population.q``).
"""
from __future__ import annotations

import numpy as np

from ..ir.neuro import (Encoding, HeadSpec, LearningRule, Lowering, NeuronModel, Population,
                        QuantParams, SynapseGroup)
from ..ir.ops import ACTIVATIONS, F_FUNCS, ROW_NORMS, row_denominator
from . import fixed as fx
from .fixed import PAYLOAD_MAX, PAYLOAD_MIN

# The plastic synapses' learning rules (docs/semantics.md §5): one definition of each rule,
# copied into every K/V synapse group by the lowering.
K_WRITE_RULE = LearningRule(
    kind="k_write",
    lava_class="Loihi2FLearningRule",
    dw=fx.K_DW,
    params={"t_epoch": 1, "encoding": "sign_split", "range": list(fx.K_RANGE)},
)
V_WRITE_RULE = LearningRule(
    kind="v_write",
    lava_class="Loihi3FLearningRule",
    dw=fx.V_DW,
    params={"t_epoch": 1, "y2": fx.V_Y2, "y3": fx.V_Y3, "range": list(fx.V_RANGE)},
)


# How each head's K/V are held, as the report's ``attention[].encodings`` states it.
ENCODINGS = {
    "kv_slot/8": {"K": "sign_split [2·max(k,0), 2·max(−k,0)] / read [q, −q]",
                  "V": "signed third factor y1 = v"},
    "kv_slot/16": {
        "K": "k = hi·2^7 + lo: [2·max(hi,0), 2·max(−hi,0), 2·lo] / read [q, −q, q >> 7]",
        "V": "v = hi·2^7 + lo: third factors y1 = [hi, lo] on high and low value neurons, "
             "output high + (low >> 7)"},
    "fast_weight": {"W": "fast weight W += v·kᵀ (float)"},
}


def encodings(h: HeadSpec) -> dict[str, str]:
    if h.lowering == Lowering.FAST_WEIGHT:
        return dict(ENCODINGS["fast_weight"])
    return dict(ENCODINGS[f"kv_slot/{h.kv_bits}"])


def dtype(fixed: bool):
    return np.int64 if fixed else np.float64


def saturate(x: np.ndarray) -> tuple[np.ndarray, int]:
    """24-bit payload saturation: (clipped value, number of entries it changed)."""
    clipped = np.clip(x, PAYLOAD_MIN, PAYLOAD_MAX)
    return clipped, int(np.count_nonzero(clipped != x))


# -- inputs and outputs ------------------------------------------------------------------------

def one_hot_payload(pop: Population, fixed: bool):
    """The payload of a one-hot input spike (token id, position)."""
    if not fixed:
        return 1.0
    return int(pop.q.one) if pop.q is not None and pop.q.one is not None else 1


def encode_features(x: np.ndarray, scale: float, fixed: bool) -> np.ndarray:
    """Feature payloads: ``round(x / scale)`` saturated to 24 bits (float: x)."""
    if not fixed:
        return np.asarray(x, np.float64)
    p = np.round(np.asarray(x, np.float64) / scale)
    return np.clip(p, PAYLOAD_MIN, PAYLOAD_MAX).astype(np.int64)


def input_payload(pop: Population, x_t: np.ndarray, t: int, fixed: bool) -> np.ndarray:
    """What input population ``pop`` sends for token ``t`` (``x_t``: [B] ids or [B, F] features)."""
    B = x_t.shape[0]
    if pop.encoding == Encoding.ONE_HOT:
        ids = x_t.astype(np.int64)
        if ids.min() < 0 or ids.max() >= pop.size:
            raise ValueError(f"token id out of range [0, {pop.size})")
        out = np.zeros((B, pop.size), dtype(fixed))
        out[np.arange(B), ids] = one_hot_payload(pop, fixed)
        return out
    if pop.encoding == Encoding.POSITION:
        out = np.zeros((B, pop.size), dtype(fixed))
        out[:, t] = one_hot_payload(pop, fixed)
        return out
    return encode_features(x_t, pop.scale, fixed)


def dequantise(y: np.ndarray, scale: float, fixed: bool) -> np.ndarray:
    """Real values of the output population's payloads (on the host)."""
    if not fixed:
        return y.astype(np.float64)
    return y.astype(np.float64) * scale


# -- static synapses and neurons -----------------------------------------------------------------

def dense(s: SynapseGroup, pre: np.ndarray, fixed: bool) -> np.ndarray:
    """A static synapse group's contribution to its post population's current."""
    if not fixed:
        return pre @ s.weights.T
    return fx.dense(s.weights, s.exp, pre)


def neuron(pop: Population, cur: np.ndarray, fixed: bool) -> tuple[np.ndarray, int]:
    """A static population's output for its current: graded, graded ReLU, output, norm or
    activation (a product neuron has two currents: :func:`product`)."""
    if pop.model == NeuronModel.NORM:
        return norm(pop, cur, fixed), 0
    if pop.model == NeuronModel.ACTIVATION:
        return activation(pop, cur, fixed)
    if fixed and pop.q is not None and pop.q.shift:
        cur = np.right_shift(cur, pop.q.shift)  # rounding neurons: the bias holds the half
    if pop.model == NeuronModel.GRADED_RELU:
        out = np.maximum(cur, 0)
    elif pop.model in (NeuronModel.GRADED, NeuronModel.OUTPUT):
        out = cur
    else:
        raise ValueError(f"population {pop.name}: model {pop.model} has no static evaluation")
    return saturate(out) if fixed else (out, 0)


def activation(pop: Population, cur: np.ndarray, fixed: bool) -> tuple[np.ndarray, int]:
    """An activation neuron (``pop.act``): float, the exact function of the current; fixed, the
    integer response of the operand u = clip(current, ±OPERAND_MAX) ("pwl": piecewise linear,
    "square": u² or max(u, 0)², each rounded by 2^frac), saturated to 24 bits.  Returns
    (output, saturated entries: operand and payload)."""
    a = pop.act
    if not fixed:
        return ACTIVATIONS[a.fn](np.asarray(cur, np.float64)), 0
    u, sat_u = fx.operand(cur)
    if a.method == "square":
        y = fx.square(u, a.frac, relu=a.fn == "relu2")
    elif a.method == "pwl":
        y = fx.pwl(u, a.c0, a.c1, a.breaks, a.slopes, a.frac)
    else:
        raise ValueError(f"population {pop.name}: activation method {a.method!r} in fixed mode")
    out, sat = saturate(y)
    return out, sat + sat_u


def product(pop: Population, a: np.ndarray, b: np.ndarray, fixed: bool) -> tuple[np.ndarray, int]:
    """A product neuron: ``a`` = port 0's current (with the bias), ``b`` = port 1's.  Float: a·b;
    fixed: both saturated to ±OPERAND_MAX, then Lava ProdNeuron's ``int32(a·b) >> exp`` with
    exp = ``q.prod_shift``, saturated to 24 bits.  Returns (output, saturated entries)."""
    if not fixed:
        return np.asarray(a, np.float64) * np.asarray(b, np.float64), 0
    ua, sa = fx.operand(a)
    ub, sb = fx.operand(b)
    out, sat = saturate(fx.product(ua, ub, pop.q.prod_shift if pop.q is not None else 0))
    return out, sat + sa + sb


def norm(pop: Population, cur: np.ndarray, fixed: bool) -> np.ndarray:
    """LayerNorm/RMSNorm on an embedded core (float64 math; fixed mode rounds the result)."""
    n = pop.norm
    x = cur.astype(np.float64)
    if fixed:
        x = x * pop.q.in_scale
    if n.kind == "l2norm":  # F.normalize: x / max(||x||, eps)
        y = x / np.maximum(np.sqrt((x * x).sum(-1, keepdims=True)), n.eps) * n.gamma + n.beta
    else:
        if n.kind == "layernorm":
            x = x - x.mean(-1, keepdims=True)
        y = x / np.sqrt((x * x).mean(-1, keepdims=True) + n.eps) * n.gamma + n.beta
    if not fixed:
        return y
    return np.clip(np.round(y / pop.scale), PAYLOAD_MIN, PAYLOAD_MAX).astype(np.int64)


# -- plastic attention ----------------------------------------------------------------------------

def residual(h: HeadSpec) -> bool:
    """16-bit K/V: each plastic weight is a high and a low int8 synapse (``fixed.kv_split``)."""
    return h.kv_bits == 16


def k_init(h: HeadSpec, d: int, d_v: int, batch: int, fixed: bool) -> np.ndarray:
    """Fresh K synapses of a sequence ([B, T_max, d]; fixed: the sign-split layout; fast
    weights: W [B, d_v, d_k])."""
    if h.lowering == Lowering.FAST_WEIGHT:
        return np.zeros((batch, d_v, d))
    if not fixed:
        return np.zeros((batch, h.t_max, d))
    return fx.k_init(batch, h.t_max, d, residual(h))


def v_init(h: HeadSpec, d_v: int, batch: int, fixed: bool) -> np.ndarray:
    if h.lowering == Lowering.FAST_WEIGHT:
        return np.zeros((batch, 1, 1))  # running normaliser (unused without normalisation)
    if not fixed:
        return np.zeros((batch, d_v, h.t_max))
    return fx.v_init(batch, d_v, h.t_max, residual(h))


def k_write(h: HeadSpec, K: np.ndarray, k: np.ndarray, t: int, fixed: bool):
    """Write k_t into row t of K: (new K, saturated entries)."""
    if not fixed:
        K = K.copy()
        K[:, t, :] = k  # dw = y0*x0*x1 - y0*w with y0 = x0 = 1 on the bAP row
        return K, 0
    return fx.k_write(K, k, t, residual(h))


def v_write(h: HeadSpec, V: np.ndarray, v: np.ndarray, t: int, fixed: bool):
    """Write v_t into column t of V: (new V, saturated entries)."""
    if not fixed:
        V = V.copy()
        V[:, :, t] = v  # dw = x0*y1*y2 - x0*y3*w with x0 = one-hot slot t, y1 = v
        return V, 0
    return fx.v_write(V, v, t, residual=residual(h))


def k_read(h: HeadSpec, K: np.ndarray, q: np.ndarray, fixed: bool) -> np.ndarray:
    """The scores k_s·q of every slot ([B, T_max])."""
    if not fixed:
        return np.einsum("btd,bd->bt", K, q)
    return fx.k_read(K, q, residual=residual(h))


def slots(h: HeadSpec, sq: QuantParams | None, scores: np.ndarray, fixed: bool):
    """Slot neurons: f of the scores (float: f(score·scale); fixed: shift by r, f, >> r2 for
    relu2, 24-bit clip).  Returns (outputs, outputs at the clip)."""
    if not fixed:
        return F_FUNCS[h.f](scores * h.scale), 0
    a = fx.slot_f(scores, h.f, sq.r, sq.r2)
    return a, int(np.count_nonzero((a >= PAYLOAD_MAX) | (a <= PAYLOAD_MIN)))


def value_read(h: HeadSpec, out: Population, V: np.ndarray, a: np.ndarray, fixed: bool):
    """The head output from the V synapses and the slot outputs ``a``: value neurons (V·a,
    shifted by e_v, 16-bit V combined) or the row-sum divide.  Returns (output, saturated)."""
    rowsum = h.normalise in ROW_NORMS
    if not fixed:
        acc = np.einsum("bvt,bt->bv", V, a)
        return (divide(acc, a, False, h.eps, norm=h.normalise)[0] if rowsum else acc), 0
    q = out.q
    # the V LearningDense applies e_v (its weight_exp) to each row's int32 sum, then the value
    # neuron combines the high and low rows of 16-bit V
    acc = fx.value_combine(fx.v_read(V, a, 0 if rowsum else q.e_v), residual(h))
    if rowsum:
        return divide(acc, a, True, h.eps, q.s_v, q.s_a, out.scale, h.normalise)
    return saturate(acc)


def fast_weight(h: HeadSpec, W: np.ndarray, k: np.ndarray, v: np.ndarray, q: np.ndarray):
    """Fast-weight lowering (float only): W += v kᵀ, output W q · scale.  Returns (W, output)."""
    W = W + np.einsum("bv,bk->bvk", v, k)
    return W, np.einsum("bvk,bk->bv", W, q) * h.scale


def divide(acc: np.ndarray, a: np.ndarray, fixed: bool, eps: float, s_v: float | None = None,
           s_a: float | None = None, scale: float = 1.0,
           norm: str = "rowsum") -> tuple[np.ndarray, int]:
    """Row-sum normalisation on an embedded core (the ``divide`` population).

    ``acc`` = the V synapses' accumulator V·a (combined for 16-bit V), ``a`` = the slot outputs
    of the same token.  Float: ``acc / den(Σa)``.  Fixed: the real quotient
    (V·a)·s_v·s_a / den(Σa·s_a), rounded to the output population's scale and saturated;
    den(x) = x + eps (``norm="rowsum"``) or max(x, eps) (``"rowsum_max"``).
    """
    if not fixed:
        return acc / row_denominator(norm, a.sum(-1, keepdims=True), eps), 0
    return saturate(rowsum_divide(fx.wrap32(acc), a, s_v, s_a, eps, scale, norm))


def rowsum_divide(acc, a, s_v: float, s_a: float, eps: float, scale: float,
                  norm: str = "rowsum") -> np.ndarray:
    """Fixed-mode attention normalisation: the real quotient (V·a)·s_v·s_a / den(Σa·s_a),
    den(x) = x + eps or max(x, eps), rounded to the output population's scale (unclipped)."""
    real = acc * (s_v * s_a) / row_denominator(norm, a.sum(-1, keepdims=True) * s_a, eps)
    return np.round(real / scale).astype(np.int64)
