"""The neuron models of the neuromorphic IR, in float and in fixed point (docs/semantics.md §4-5).

Every function takes the typed records of the IR (:class:`~icl_compiler.ir.neuro.Population`,
:class:`~icl_compiler.ir.neuro.HeadSpec`, :class:`~icl_compiler.ir.neuro.QuantParams` …) and
``fixed`` (the program's precision), never a graph, so the reference interpreter and the Lava
backend's neuron processes share one definition of each model.  Functions that saturate return
``(value, number of saturated entries)``; counting is the caller's business.

Every model works on any leading shape: one token per sequence ([B, n], the token-by-token
interpreter) or all tokens of a chunk ([B·T, n] / [B, T, n], the sequence-parallel one), so a
neuron model is one function for both paths.  The plastic heads' reads take the queries of T
tokens at once with ``t0`` (the first token's position) and apply the causal order themselves.

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
from .products import rows_matmul, token_matmul

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
    """24-bit payload saturation: (clipped value, number of entries it changed).  The clip is
    skipped when the extremes show it changes nothing."""
    if x.size == 0 or (x.min() >= PAYLOAD_MIN and x.max() <= PAYLOAD_MAX):
        return x, 0
    clipped = np.clip(x, PAYLOAD_MIN, PAYLOAD_MAX)
    return clipped, int(np.count_nonzero(clipped != x))


def count_nonzero(x: np.ndarray) -> int:
    """Non-zero entries (spikes, active synapses).  Float arrays are compared first: NumPy's
    ``count_nonzero`` on float64 is ~10× slower than on the boolean ``x != 0``."""
    return int(np.count_nonzero(x != 0 if x.dtype.kind == "f" else x))


# -- inputs and outputs ------------------------------------------------------------------------

def one_hot_payload(pop: Population, fixed: bool):
    """The payload of a one-hot input spike (token id, position)."""
    if not fixed:
        return 1.0
    return int(pop.q.one) if pop.q is not None and pop.q.one is not None else 1


def encode_features(x: np.ndarray, scale: float, fixed: bool, as_float: bool = False,
                    extremes: tuple | None = None) -> np.ndarray:
    """Feature payloads: ``round(x / scale)`` saturated to 24 bits (float: x).  ``as_float``: the
    same integers held in float64 (what the exact BLAS products take, ``products.int_matmul``);
    ``extremes``: ``feature_extremes(x, scale)``, if the caller has it."""
    if not fixed:
        return np.asarray(x, np.float64)
    p = np.divide(x, scale, dtype=np.float64)  # (x in float64, divided: one pass)
    np.rint(p, out=p)  # == np.round (ties to even)
    if p.size:
        lo, hi = feature_extremes(x, scale) if extremes is None else extremes
        if min(lo, hi) < PAYLOAD_MIN or max(lo, hi) > PAYLOAD_MAX or not np.isfinite(lo + hi):
            np.clip(p, PAYLOAD_MIN, PAYLOAD_MAX, out=p)
    return p if as_float else p.astype(np.int64)


def feature_extremes(x: np.ndarray, scale: float) -> tuple:
    """The smallest and largest fixed-point feature payload of a non-empty ``x`` before the
    24-bit clip: division and rounding are monotonic, so they are the payloads of x's extremes
    (two passes over x instead of over the payloads)."""
    return tuple(np.rint(np.float64(v) / scale) for v in (np.min(x), np.max(x)))


def clipped_absmax(extremes: tuple) -> int:
    """max |payload| after the 24-bit clip, from ``feature_extremes``."""
    lo, hi = (min(max(v, PAYLOAD_MIN), PAYLOAD_MAX) for v in extremes)
    return int(max(-lo, hi))


def one_hot_index(pop: Population, x: np.ndarray, t) -> np.ndarray:
    """The neuron a one-hot input population fires for each token: the token id, or the position
    (``t``: an int, or one position per token)."""
    if pop.encoding == Encoding.POSITION:
        return np.broadcast_to(np.asarray(t, np.int64), x.shape[:np.ndim(t) + 1])
    ids = x.astype(np.int64)
    if ids.size and (ids.min() < 0 or ids.max() >= pop.size):
        raise ValueError(f"token id out of range [0, {pop.size})")
    return ids


def input_payload(pop: Population, x: np.ndarray, t, fixed: bool,
                  as_float: bool = False) -> np.ndarray:
    """What input population ``pop`` sends: for token ``t`` (an int; ``x``: [B] ids or [B, F]
    features) → [B, n], or for tokens at positions ``t`` (an array of T ints; ``x``: [B, T] or
    [B, T, F]) → [B, T, n].  ``as_float``: fixed-point feature payloads held in float64."""
    if pop.encoding is not None:
        idx = one_hot_index(pop, x, t)
        if idx.size and (idx.min() < 0 or idx.max() >= pop.size):
            raise IndexError(f"position {int(idx.max())} is outside the position table "
                             f"({pop.size} entries)")
        out = np.zeros(idx.shape + (pop.size,), dtype(fixed))
        np.put_along_axis(out, idx[..., None], one_hot_payload(pop, fixed), axis=-1)
        return out
    return encode_features(x, pop.scale, fixed, as_float)


def dequantise(y: np.ndarray, scale: float, fixed: bool) -> np.ndarray:
    """Real values of the output population's payloads (on the host)."""
    if not fixed:
        return y.astype(np.float64)
    return y.astype(np.float64) * scale


# -- static synapses and neurons -----------------------------------------------------------------

def dense(s: SynapseGroup, pre: np.ndarray, fixed: bool, batch: int | None = None,
          wt: np.ndarray | None = None) -> np.ndarray:
    """A static synapse group's contribution to its post population's current (``pre`` [rows,
    n]: one token of every sequence, or ``batch`` sequences × tokens, row i·T + t).  Float:
    ``wt`` is the prepared ``float_wt(s)`` (made here if None): every product of a group takes
    its weights in the same layout, part of what the BLAS computes."""
    if not fixed:
        return rows_matmul(pre, float_wt(s) if wt is None else wt, batch)
    return fx.dense(s.weights, s.exp, pre)


def float_wt(s: SynapseGroup) -> np.ndarray:
    """A float group's weights as its products take them: transposed, [pre, post], C order."""
    return np.ascontiguousarray(s.weights.T, np.float64)


def neuron(pop: Population, cur: np.ndarray, fixed: bool,
           in_place: bool = False) -> tuple[np.ndarray, int]:
    """A static population's output for its current: graded, graded ReLU, output, norm or
    activation (a product neuron has two currents: :func:`product`).  ``in_place``: the caller
    gives ``cur`` away, so the shift and the ReLU may overwrite it."""
    if pop.model == NeuronModel.NORM:
        return norm(pop, cur, fixed), 0
    if pop.model == NeuronModel.ACTIVATION:
        return activation(pop, cur, fixed)
    out_arg = {"out": cur} if in_place else {}
    if fixed and pop.q is not None and pop.q.shift:  # rounding neurons: the bias holds the half
        cur = np.right_shift(cur, pop.q.shift, **out_arg)
    if pop.model == NeuronModel.GRADED_RELU:
        out = np.maximum(cur, 0, **out_arg)
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
    """LayerNorm/RMSNorm/L2 norm on an embedded core (float64 math; fixed mode rounds the
    result); with ``norm.group`` = g > 0 one norm per run of g consecutive neurons."""
    n = pop.norm
    x = cur.astype(np.float64)
    if fixed:
        x = x * pop.q.in_scale
    shape = x.shape
    if n.group:
        x = x.reshape(shape[:-1] + (shape[-1] // n.group, n.group))
        gamma, beta = (np.reshape(v, (-1, n.group)) for v in (n.gamma, n.beta))
    else:
        gamma, beta = n.gamma, n.beta
    if n.kind == "l2norm":  # F.normalize: x / max(||x||, eps)
        y = x / np.maximum(np.sqrt((x * x).sum(-1, keepdims=True)), n.eps) * gamma + beta
    else:
        if n.kind == "layernorm":
            x = x - x.mean(-1, keepdims=True)
        y = x / np.sqrt((x * x).mean(-1, keepdims=True) + n.eps) * gamma + beta
    y = y.reshape(shape)
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


def _float_slots(h: HeadSpec, t: int, n: int) -> None:
    if t + n > h.t_max:
        raise ValueError(f"head {h.name}: token {t + n - 1} is past the context capacity "
                         f"T_max = {h.t_max}")


def k_write(h: HeadSpec, K: np.ndarray, k: np.ndarray, t: int, fixed: bool, copy: bool = True,
            fresh: bool = False):
    """Write k_t into row t of K (k [B, d]), or k [B, T, d] into rows t … t+T−1: (new K,
    saturated entries).  ``copy=False``: K (of the right dtype) is written in place; ``fresh``:
    the caller knows those rows hold nothing yet."""
    if not fixed:
        k3 = k[:, None] if k.ndim == 2 else k
        _float_slots(h, t, k3.shape[1])
        K = K.copy() if copy else K
        K[:, t:t + k3.shape[1], :] = k3  # dw = y0*x0*x1 - y0*w with y0 = x0 = 1 on the bAP row
        return K, 0
    return fx.k_write(K, k, t, residual(h), copy=copy, fresh=fresh)


def v_write(h: HeadSpec, V: np.ndarray, v: np.ndarray, t: int, fixed: bool, copy: bool = True,
            fresh: bool = False):
    """Write v_t into column t of V (v [B, d_v]), or v [B, T, d_v] into columns t … t+T−1:
    (new V, saturated entries).  ``copy=False``: V (of the right dtype) is written in place;
    ``fresh``: the caller knows those columns hold nothing yet."""
    if not fixed:
        v3 = v[:, None] if v.ndim == 2 else v
        _float_slots(h, t, v3.shape[1])
        V = V.copy() if copy else V
        V[:, :, t:t + v3.shape[1]] = v3.transpose(0, 2, 1)  # x0 = one-hot slot t, y1 = v
        return V, 0
    return fx.v_write(V, v, t, residual=residual(h), copy=copy, fresh=fresh)


def k_read(h: HeadSpec, K: np.ndarray, q: np.ndarray, fixed: bool,
           t0: int | None = None, t: int = 0) -> np.ndarray:
    """The scores k_s·q of every slot: q [B, d] of token ``t`` → [B, T_max]; or the queries
    q [B, T, d] of the tokens t0 … t0+T−1 → [B, T, T_max], each token's scores as it reads K
    right after its own write (slots after it score 0; ``K`` holds the writes of all T tokens)."""
    if t0 is None:
        if not fixed:
            return k_scores(K, q[:, None], t)[:, 0]
        return fx.k_read(K, q, residual=residual(h))
    if not fixed:
        s = k_scores(K, q, t0)
        s[:, ~fx.causal_mask(t0, s.shape[1], s.shape[2])] = 0.0
        return s
    return fx.k_read_causal(K, q, t0, residual=residual(h))


def k_scores(K: np.ndarray, q: np.ndarray, t0: int) -> np.ndarray:
    """Float scores K·q of the tokens t0 … t0+n−1 (q [B, n, d]) on every slot: [B, n, T_max],
    each token's row computed alike for one token or many (``products.token_matmul``)."""
    return token_matmul(K, q, t0)


def slots(h: HeadSpec, sq: QuantParams | None, scores: np.ndarray, fixed: bool):
    """Slot neurons: f of the scores (float: f(score·scale); fixed: shift by r, f, >> r2 for
    relu2, 24-bit clip).  Returns (outputs, outputs at the clip)."""
    if not fixed:
        return F_FUNCS[h.f](scores * h.scale), 0
    a = fx.slot_f(scores, h.f, sq.r, sq.r2)
    return a, int(np.count_nonzero((a >= PAYLOAD_MAX) | (a <= PAYLOAD_MIN)))


def value_read(h: HeadSpec, out: Population, V: np.ndarray, a: np.ndarray, fixed: bool,
               t0: int | None = None, with_acc: bool = False, t: int = 0):
    """The head output from the V synapses and the slot outputs ``a``: value neurons (V·a,
    shifted by e_v, 16-bit V combined) or the row-sum divide.  ``a`` [B, T_max] (token ``t``), or
    [B, T, T_max] for the tokens t0 … t0+T−1 (each token reads only the columns written up to
    it; ``V`` holds all T writes).  Returns (output, saturated), and with ``with_acc`` the V·a
    accumulator as a third item."""
    rowsum = h.normalise in ROW_NORMS
    if not fixed:  # V·a, each token's row computed alike for one token or many; causal: the
        # columns after each token were still zero when it read them
        acc = token_matmul(V, a[:, None], t)[:, 0] if t0 is None else \
            token_matmul(V, a, t0, fx.causal_mask(t0, a.shape[1], a.shape[2]))
        res = (divide(acc, a, False, h.eps, norm=h.normalise)[0] if rowsum else acc), 0
    else:  # the V LearningDense applies e_v (its weight_exp) to each row's int32 sum, then
        # the value neuron combines the high and low rows of 16-bit V
        e_v = 0 if rowsum else out.q.e_v
        # (causal: ``a`` is already 0 on the hidden slots, whose scores k_read zeroed: every
        # slot function maps 0 to 0, tests/semantics/test_fixed.py)
        syn = fx.v_read(V, a, e_v) if t0 is None else fx.v_read_causal(V, a, e_v)
        acc = fx.value_combine(syn, residual(h))
        res = divide(acc, a, True, h.eps, out.q.s_v, out.q.s_a, out.scale, h.normalise) if rowsum \
            else saturate(acc)
    return (*res, acc) if with_acc else res


def fast_weight(h: HeadSpec, W: np.ndarray, k: np.ndarray, v: np.ndarray, q: np.ndarray):
    """Fast-weight lowering (float only): W += v kᵀ, output W q · scale.  Returns (W, output).
    k, v, q [B, n] (one token) or [B, T, n] (T tokens: W accumulates token by token, in order)."""
    if k.ndim == 2:
        W = W + np.einsum("bv,bk->bvk", v, k)
        return W, np.einsum("bvk,bk->bv", W, q) * h.scale
    outer = np.einsum("btv,btk->btvk", v, k)
    Ws = np.cumsum(np.concatenate([W[:, None], outer], axis=1), axis=1)[:, 1:]  # sequential sums
    return Ws[:, -1], np.einsum("btvk,btk->btv", Ws, q) * h.scale


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
