"""Exact integer primitives of Loihi 2 fixed point, as Lava 0.10's ``fixed_pt`` models compute them.

Every function is pure NumPy, vectorised over leading batch axes, and reproduces what Lava 0.10's
``fixed_pt`` process models compute, bit for bit: ``wrap32``/``shift`` (int32 channels and
``weight_exp``), the static ``Dense`` (``dense``, ``to_lava_dense_params``), the stock graded
neurons, the learning engine with the K rule (two-factor, sign split) and the V rule
(three-factor), the 16-bit K/V split, and our custom slot and value neurons.  The statement of
these rules, with the Lava source they come from and the corrections to DESIGN §4/§5 found by
probing, is ``docs/semantics.md``; ``tests/backends/test_lava_primitives.py`` keeps the probes.

Hardware widths come from :mod:`icl_compiler.targets.loihi2`; the encodings derived from them
(K/V ranges, the 16-bit split, the rule strings, ``TAU_NO_DECAY``) are defined here, once.
"""
from __future__ import annotations

import numpy as np

from ..targets import loihi2 as L2

INT32_MIN = -(2**31)
PAYLOAD_BITS = L2.PAYLOAD_BITS  # graded payloads saturate to 24-bit signed (our neurons)
PAYLOAD_MAX = 2 ** (PAYLOAD_BITS - 1) - 1
PAYLOAD_MIN = -(2 ** (PAYLOAD_BITS - 1))

# static Dense: 2·m with m an int8 mantissa, clipped to 9 bits signed (mixed sign mode)
DENSE_WEIGHT_MIN, DENSE_WEIGHT_MAX = -(2**L2.WEIGHT_BITS), 2**L2.WEIGHT_BITS - 1
MANTISSA_MIN, MANTISSA_MAX = L2.WEIGHT_MIN, L2.WEIGHT_MAX  # int8 mantissas
DENSE_SUM_LIMIT = 2**30  # Lava sums 2m·s in int32: a Dense is exact while |Σ m·s| < 2**30

# learning engine (docs/semantics.md §5)
_SPIKE_BITS = 1  # width of the x0 / y0 factors
_TRACE_BITS = L2.TRACE_BITS  # x1, x2, y1, y2, y3
_W_BITS = L2.PLASTIC_WEIGHT_BITS  # w
_ACC_U = L2.LEARNING_ACCUMULATOR_BITS - 1  # unsigned accumulator width (15)
_ACC_MIN, _ACC_MAX = -(2**_ACC_U) - 1, 2**_ACC_U - 1  # learning accumulator saturation (Lava's bounds)
_W_SHIFT = L2.LEARNING_ACCUMULATOR_BITS - _W_BITS  # w is pre-shifted by 7 in the accumulator
WEIGHT_MIN, WEIGHT_MAX = -(2 ** (_W_BITS - 1)), 2 ** (_W_BITS - 1) - 1  # learned weights [-256, 255]
TRACE_MAX = 2**_TRACE_BITS - 1  # a trace (x1) holds [0, 127]

TAU_NO_DECAY = 2**60  # exp(-1/tau) == 1.0 in float64: exact, deterministic traces
K_RANGE = (-TRACE_MAX, TRACE_MAX)  # sign split: |k| is one trace x1
V_RANGE = (-(2**_TRACE_BITS), 2**_TRACE_BITS - 1)  # the third factor y1 is a signed 7-bit factor
RES_BITS = _TRACE_BITS  # 16-bit K/V: x = hi·2^7 + lo, hi in the 8-bit range, lo in [0, 127]
RES_SCALE = 2**RES_BITS
V_Y2 = 8  # third factors of the V write: y1·y2 and y3·w are shifted right by 3 and 5 (widths
V_Y3 = 32  # 7+7 and 7+9), so these make the products y1·2^7 and w·2^7 (docs/semantics.md §5)
K_DW = "y0 * x0 * x1 - y0 * w"
V_DW = "x0 * y1 * y2 - x0 * y3 * w"


# -- integer helpers ------------------------------------------------------------------------------

def wrap32(x) -> np.ndarray:
    """Wrap to int32 (two's complement), returned as int64."""
    x = np.asarray(x, dtype=np.int64)
    return ((x + 2**31) & 0xFFFFFFFF) - 2**31


def shift(a, exp: int) -> np.ndarray:
    """Lava's weight_exp shift of an int32 sum: ``a << exp`` (int32 wrap) or ``a >> -exp`` (floor)."""
    a = wrap32_needed(a)
    exp = int(exp)
    if exp > 0:
        return wrap32(a << exp)
    return a >> (-exp)


def clip_payload(v) -> np.ndarray:
    """24-bit signed saturation used by our custom neurons (slot and value neurons)."""
    return np.clip(np.asarray(v, np.int64), PAYLOAD_MIN, PAYLOAD_MAX)


def round_half_even_half(p) -> np.ndarray:
    """``np.round(p / 2)`` for integers, exactly (ties to even)."""
    p = np.asarray(p, np.int64)
    h = p >> 1
    return h + ((p & 1) & (h & 1))


# -- static Dense ---------------------------------------------------------------------------------

def lava_dense_weights(w_mant) -> np.ndarray:
    """The int weights Lava's Dense really uses for mantissas ``w_mant`` (clip + LSB drop of 2·m)."""
    w2 = np.clip(2 * np.asarray(w_mant, np.int64), DENSE_WEIGHT_MIN, DENSE_WEIGHT_MAX)
    return (w2 >> 1) << 1


def to_lava_dense_params(w_mant, exp: int) -> dict:
    """Keyword arguments of ``lava.proc.dense.process.Dense`` for mantissas m [post, pre], exponent e.

    ``sign_mode`` is given by name ("MIXED"); the Lava backend converts it to
    ``lava.utils.weightutils.SignMode.MIXED`` (this module does not import Lava).
    """
    m = np.asarray(w_mant)
    if not np.issubdtype(m.dtype, np.integer) or m.ndim != 2:
        raise ValueError("w_mant must be a 2-D integer array [post, pre]")
    if m.size and (m.min() < MANTISSA_MIN or m.max() > MANTISSA_MAX):
        raise ValueError("weight mantissas must be int8 ([-128, 127])")
    return {
        "weights": (2 * m.astype(np.int64)).astype(np.int32),
        "weight_exp": int(exp) - 1,
        "num_weight_bits": L2.WEIGHT_BITS,
        "sign_mode": "MIXED",
        "num_message_bits": PAYLOAD_BITS,
    }


def dense(w_mant, exp: int, s) -> np.ndarray:
    """Synaptic output of a static Dense: ``shift(int32(s @ (2m)ᵀ), e − 1)``; s [..., pre] → [..., post]."""
    w = lava_dense_weights(w_mant)
    a = wrap32(s) @ w.T  # int64, exact; int32 dot in Lava = the same sum modulo 2**32
    return shift(a, int(exp) - 1)


# -- graded neurons -------------------------------------------------------------------------------

def _abs32(v: np.ndarray) -> np.ndarray:
    return np.where(v == INT32_MIN, INT32_MIN, np.abs(v))


def graded(v, vth: int = 0) -> np.ndarray:
    """Stock ``GradedVec`` (fixed_pt): ``v = int32(Σ a_in); out = v·(|v| > vth)``."""
    v = wrap32(v)
    return v * (_abs32(v) > vth)


def graded_relu(v, vth: int = 0) -> np.ndarray:
    """Stock ``GradedReluVec`` (fixed_pt): ``out = v·(v > vth)``."""
    v = wrap32(v)
    return v * (v > vth)


# -- learning engine ------------------------------------------------------------------------------

def _factor(x, width: int) -> np.ndarray:
    return np.clip(np.asarray(x, np.int64), -(2**width), 2**width - 1)


def _product(value, widths: tuple[int, ...], s_exp: int = 7) -> np.ndarray:
    """One product of the bit-approximate applier (value = dep·Πfactors·s_mant, already clipped)."""
    sh = max(0, sum(widths) + L2.LEARNING_SCALE_MANTISSA_BITS - _ACC_U)
    return np.clip((value >> sh) << s_exp, _ACC_MIN, _ACC_MAX)


def _finish(acc: np.ndarray) -> tuple[np.ndarray, int]:
    """Stochastic rounding (counted, floored if it would fire), >> 7, weight clip."""
    inexact = int(np.count_nonzero(acc & (2**_W_SHIFT - 1)))
    w = np.clip(acc >> _W_SHIFT, WEIGHT_MIN, WEIGHT_MAX)
    return w, inexact


def x1_from_payload(p) -> np.ndarray:
    """Pre trace x1 of a spiking neuron in OVERWRITE mode, as the learning rule sees it."""
    p = wrap32_needed(p)
    return np.clip(round_half_even_half(p) & 0xFF, 0, TRACE_MAX)


def kv_split(x, residual: bool, lo_min: int, hi_max: int) -> tuple[np.ndarray, np.ndarray | None]:
    """8-bit K/V: (x, None).  16-bit K/V (``residual``): x saturated to
    [lo_min·2^7, hi_max·2^7 + 127] and split into x = hi·2^7 + lo, hi = x >> 7, lo = x & 127."""
    x = np.asarray(x, np.int64)
    if not residual:
        return x, None
    x = np.clip(x, lo_min * RES_SCALE, hi_max * RES_SCALE + RES_SCALE - 1)
    return x >> RES_BITS, x & (RES_SCALE - 1)


def k_payload(k, residual: bool = False) -> np.ndarray:
    """Write payloads, k [..., d] → [..., 2d]: ``[2·max(k,0), 2·max(−k,0)]`` (sign split);
    16-bit K: [..., 3d] = ``[2·max(hi,0), 2·max(−hi,0), 2·lo]`` with k = hi·2^7 + lo."""
    hi, lo = kv_split(k, residual, K_RANGE[0], K_RANGE[1])
    parts = [2 * np.maximum(hi, 0), 2 * np.maximum(-hi, 0)] + ([2 * lo] if residual else [])
    return wrap32_needed(np.concatenate(parts, axis=-1))


def k_traces(k, residual: bool = False) -> np.ndarray:
    """The pre traces x1 that the write payloads ``k_payload(k)`` leave (== ``x1_from_payload``):
    each half of the sign split carries 2·m with m = max(±hi, 0), and when m ≤ 127 (always for
    16-bit K, whose hi is saturated to [-127, 127]; for 8-bit K iff |k| ≤ 127) the trace is m
    itself: 2·m is even and below 2^8, so rounding, the mod-256 wrap and the clip change nothing.
    Larger m (8-bit K out of range) leave ``min(m mod 2^8, 127)``: the int32 wrap of 2·m subtracts
    a multiple of 2^32, so the payload stays even and its exact half is m minus a multiple of 2^31,
    which the mod-256 wrap removes; the clip at 0 does nothing to a value mod 2^8."""
    hi, lo = kv_split(k, residual, K_RANGE[0], K_RANGE[1])
    parts = [np.maximum(hi, 0), np.maximum(-hi, 0)]
    if hi.size and absmax_int(hi) > TRACE_MAX:
        parts = [np.minimum(m & 0xFF, TRACE_MAX) for m in parts]
    return np.concatenate(parts + ([lo] if residual else []), axis=-1)


def absmax_int(x) -> int:
    """max |x| of a non-empty integer array."""
    return int(max(-int(x.min()), int(x.max())))


def q_payload(q, residual: bool = False) -> np.ndarray:
    """Read payloads, q [..., d] → [..., 2d]: ``[q, −q]``; 16-bit K: [..., 3d] = ``[q, −q, q >> 7]``
    (the low half of K is read at 2^-7, so slot s receives ≈ Σ k_s·q / 2^7)."""
    q = wrap32_needed(q)
    parts = [q, -q] + ([q >> RES_BITS] if residual else [])
    return wrap32_needed(np.concatenate(parts, axis=-1))


def k_lanes(residual: bool = False) -> int:
    """K pre neurons (K synapse columns) per key dimension: the sign split ``[k⁺, k⁻]``, plus the
    low half for 16-bit K."""
    return 3 if residual else 2


def v_lanes(residual: bool = False) -> int:
    """V synapse rows (value neurons) per value dimension: 1, or a high and a low row (16-bit V)."""
    return 2 if residual else 1


def k_init(batch: int, t_max: int, d: int, residual: bool = False) -> np.ndarray:
    """Zero K synapses, layout [B, T_max, 2d] (3d for 16-bit K) = Lava's LearningDense [post, pre]."""
    return np.zeros((batch, t_max, k_lanes(residual) * d), np.int64)


def v_init(batch: int, d_v: int, t_max: int, residual: bool = False) -> np.ndarray:
    """Zero V synapses, layout [B, d_v, T_max] ([B, 2d_v, T_max] for 16-bit V: high rows, then
    low rows) = Lava's LearningDense weights [post, pre]."""
    return np.zeros((batch, v_lanes(residual) * d_v, t_max), np.int64)


def k_signed(K, residual: bool = False) -> np.ndarray:
    """Signed keys k_s = K⁺ − K⁻ (16-bit: (K⁺ − K⁻)·2^7 + K_lo), [B, T_max, 2d|3d] → [B, T_max, d]."""
    K = np.asarray(K)
    d = K.shape[-1] // k_lanes(residual)
    k = K[..., :d] - K[..., d:2 * d]
    return k * RES_SCALE + K[..., 2 * d:] if residual else k


def _k_rule(w: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, int]:
    """The two-factor K rule on rows ``w`` with a bAP (y0 = 1) and pre payloads ``p`` (same shape):
    (new rows, inexact accumulator events).  Elementwise, so any number of rows at once.

    Rows that hold nothing yet (every slot's first write, the protocol) take a proven shortcut:
    with w = 0, product 1 is x0·x1·2^7 ≤ 127·2^7 (no clip), product 2 is 0, the accumulator is a
    multiple of 2^7 (exact), so the row becomes x0·x1 = x1 (x1 = 0 where x0 = 0)."""
    p = wrap32_needed(p)
    x1 = x1_from_payload(p)
    if not w.any():
        return x1, 0
    x0 = (p != 0).astype(np.int64)
    acc = w << _W_SHIFT
    # product 1: y0 · x0 · x1 (widths 1 + 7), product 2: −y0 · w (width 9)
    acc = np.clip(acc + _product(_factor(x0, _SPIKE_BITS) * _factor(x1, _TRACE_BITS),
                                 (_SPIKE_BITS, _TRACE_BITS)), _ACC_MIN, _ACC_MAX)
    acc = np.clip(acc + _product(-_factor(w, _W_BITS), (_W_BITS,)), _ACC_MIN, _ACC_MAX)
    return _finish(acc)


def _rows(n_slots: int, t: int, n: int) -> int:
    """How many of the slots t, t+1, …, t+n−1 exist (the rest of the writes are lost)."""
    return max(0, min(n, n_slots - t)) if t >= 0 else 0


def k_write_payload(K, p, t: int) -> tuple[np.ndarray, int]:
    """K write with arbitrary pre payloads and a bAP (the general rule): p [B, 2d] onto slot t,
    or p [B, T, 2d] onto slots t … t+T−1 (one token each).  Payloads of missing slots are lost
    (counted)."""
    K = np.array(K, dtype=np.int64, copy=True)
    p = np.asarray(p)
    p3 = p[:, None] if p.ndim == 2 else p
    n = _rows(K.shape[1], int(t), p3.shape[1])
    inexact = 0
    if n:
        K[:, t:t + n, :], inexact = _k_rule(K[:, t:t + n, :], p3[:, :n])
    return K, inexact + int(p3[:, n:].size)


def _out_of_range(x, lo: int, hi: int, residual: bool) -> int:
    x = np.asarray(x, np.int64)
    if residual:
        lo, hi = lo * RES_SCALE, hi * RES_SCALE + RES_SCALE - 1
    if x.size == 0 or (x.min() >= lo and x.max() <= hi):
        return 0
    return int(np.count_nonzero((x < lo) | (x > hi)))


def k_write(K, k, t: int, residual: bool = False, copy: bool = True,
            fresh: bool = False) -> tuple[np.ndarray, int]:
    """Write keys k [B, d] into row t of K [B, T_max, 2d|3d] (two-factor rule, sign split); or
    k [B, T, d] (T tokens of each sequence) into rows t … t+T−1 — row by row the same arithmetic.

    Returns (new K, number of saturated/lost entries): k entries outside [-127, 127] (16-bit:
    [-127·2^7, 127·2^7 + 127]), inexact accumulator events (only possible if the row was not
    zero), and every entry of a token whose slot is ≥ T_max.  ``copy=False``: an int64 K is
    written in place.  ``fresh``: the caller knows that the rows written hold nothing yet (so
    they are not looked at).
    """
    k = np.asarray(k, np.int64)
    k3 = k[:, None] if k.ndim == 2 else k
    n = _rows(np.shape(K)[1], int(t), k3.shape[1])
    Kn = np.array(K, dtype=np.int64, copy=copy)
    inexact = 0
    if n:
        rows = Kn[:, t:t + n, :]
        # first writes (the protocol): each row becomes its traces (_k_rule's shortcut)
        if fresh or not rows.any():
            Kn[:, t:t + n, :] = k_traces(k3[:, :n], residual)
        else:
            Kn[:, t:t + n, :], inexact = _k_rule(rows, k_payload(k3[:, :n], residual))
    return Kn, _out_of_range(k3[:, :n], *K_RANGE, residual) + inexact + int(k3[:, n:].size)


def k_read(K, q, exp: int = 0, residual: bool = False) -> np.ndarray:
    """Scores [B, T_max]: ``shift(int32(K · q_payload(q)), exp)`` (exp = the K LearningDense weight_exp)."""
    a = np.einsum("btp,bp->bt", np.asarray(K, np.int64), q_payload(q, residual))
    return shift(a, exp)


def causal_mask(t0: int, T: int, t_max: int) -> np.ndarray:
    """[T, T_max]: slot s is visible to the query of token t0 + i iff s ≤ t0 + i."""
    return np.arange(t_max)[None, :] <= (int(t0) + np.arange(T))[:, None]


def k_read_causal(K, q, t0: int, exp: int = 0, residual: bool = False) -> np.ndarray:
    """Scores [B, T, T_max] of the queries q [B, T, d] of tokens t0 … t0+T−1, each reading K as it
    was right after its own token's write: ``K`` holds the writes of all T tokens, slots after a
    query's token score 0 (the rows it would have read are still zero; the caller checks that K's
    rows ≥ t0 held nothing before these writes).  Equal to :func:`k_read` token by token.

    When no |q| reaches 2^31 (so q and −q are their own int32 wraps) the read payloads
    ``[q, −q(, q >> 7)]`` give Σ K⁺q + K⁻(−q) (+ K_lo(q >> 7)) = Σ (K⁺ − K⁻)·q (+ …) exactly, a
    product with half the lanes.  It runs in float64 BLAS, exact because |K⁺ − K⁻| ≤ 511 and
    |q| < 2^31 bound every partial sum by 2^40·d (``products.int_matmul``)."""
    from .products import int_matmul

    K = np.asarray(K, np.int64)
    q = np.asarray(q, np.int64)
    d = q.shape[-1]
    if q.size == 0 or absmax_int(q) < -INT32_MIN:
        lhs = [q] + ([q >> RES_BITS] if residual else [])
        rhs = [K[..., :d] - K[..., d:2 * d]] + ([K[..., 2 * d:]] if residual else [])
        colsum = d * (2 * WEIGHT_MAX + 1) + (d * -WEIGHT_MIN if residual else 0)
        lhs = lhs[0] if len(lhs) == 1 else np.concatenate(lhs, axis=-1)
        rhs = rhs[0] if len(rhs) == 1 else np.concatenate(rhs, axis=-1)
    else:
        lhs, rhs, colsum = q_payload(q, residual), K, K.shape[-1] * -WEIGHT_MIN
    rhs = np.ascontiguousarray(rhs.transpose(0, 2, 1), np.float64)  # (C order: 2× faster BLAS)
    a = int_matmul(lhs, rhs, b_colsum=colsum)
    a[:, ~causal_mask(t0, a.shape[1], a.shape[2])] = 0
    return shift(a, exp)  # (shift skips the int32 wrap when nothing needs it)


def wrap32_needed(x: np.ndarray) -> np.ndarray:
    """``wrap32(x)``, skipped when every |x| < 2^31 already (then it is the identity)."""
    x = np.asarray(x, np.int64)
    if x.size == 0 or (x.min() >= INT32_MIN and x.max() < -INT32_MIN):
        return x
    return wrap32(x)


def _v_rule(w: np.ndarray, y1: np.ndarray, y2: int, y3: int,
            fresh: bool = False) -> tuple[np.ndarray, int]:
    """The three-factor V rule on columns ``w`` with a pre spike (x0 = 1) and third factors
    ``y1`` (same shape), ``y2``, ``y3``: (new columns, inexact events).  Elementwise.

    Columns that hold nothing yet with the protocol's y2 = 8 take a proven shortcut: product 1
    is ((y1·8) >> 3)·2^7 = y1·2^7 with y1 ∈ [-128, 127] (no clip), product 2 is 0, so the column
    becomes y1.  ``fresh``: the caller knows they hold nothing (they are not looked at)."""
    if y2 == V_Y2 and (fresh or not w.any()):
        return np.array(y1, np.int64, copy=True), 0
    acc = w << _W_SHIFT
    # product 1: x0 · y1 · y2 (widths 7 + 7), product 2: −x0 · y3 · w (widths 7 + 9); x0 = 1
    acc = np.clip(acc + _product(y1 * _factor(y2, _TRACE_BITS), (_TRACE_BITS, _TRACE_BITS)),
                  _ACC_MIN, _ACC_MAX)
    acc = np.clip(acc + _product(-_factor(y3, _TRACE_BITS) * _factor(w, _W_BITS),
                                 (_TRACE_BITS, _W_BITS)), _ACC_MIN, _ACC_MAX)
    return _finish(acc)


def v_write(V, v, t: int, y2: int = V_Y2, y3: int = V_Y3,
            residual: bool = False, copy: bool = True,
            fresh: bool = False) -> tuple[np.ndarray, int]:
    """Write values v [B, d_v] into column t of V [B, d_v|2d_v, T_max] (three-factor rule); or
    v [B, T, d_v] into columns t … t+T−1.

    Returns (new V, number of saturated/lost entries).  Column t becomes clip(v, -128, 127);
    16-bit V: rows [hi, lo] of v = hi·2^7 + lo (``kv_split``), third factors y1 = [hi, lo].
    Every entry of a token whose slot is ≥ T_max is lost (counted).  ``copy=False``: an int64 V
    is written in place.  ``fresh``: the caller knows that the columns written hold nothing yet
    (so they are not looked at).
    """
    V = np.array(V, dtype=np.int64, copy=copy)
    v = np.asarray(v, np.int64)
    v3 = v[:, None] if v.ndim == 2 else v
    n = _rows(V.shape[2], int(t), v3.shape[1])
    inexact = 0
    if n:
        y1 = _factor(wrap32_needed(v_third_factor(v3[:, :n], residual)), _TRACE_BITS)  # [B, n, rows]
        cols, inexact = _v_rule(V[:, :, t:t + n], y1.transpose(0, 2, 1), y2, y3, fresh)
        V[:, :, t:t + n] = cols
        inexact += _out_of_range(v3[:, :n], *V_RANGE, residual)
    return V, inexact + int(v3[:, n:].size)


def v_third_factor(v, residual: bool = False) -> np.ndarray:
    """y1 of the V write for values v [..., d_v]: v itself, or [hi, lo] ([..., 2d_v]) for 16-bit V."""
    hi, lo = kv_split(v, residual, V_RANGE[0], V_RANGE[1])
    return hi if not residual else np.concatenate([hi, lo], axis=-1)


def value_combine(acc, residual: bool = False) -> np.ndarray:
    """The head's accumulator from the V synapses' outputs: ``acc`` for 8-bit V; for 16-bit V
    (rows [high, low]) ``high + (low >> 7)``, int32-wrapped."""
    acc = np.asarray(acc, np.int64)
    if not residual:
        return acc
    dv = acc.shape[-1] // 2
    return wrap32_needed(acc[..., :dv] + (acc[..., dv:] >> RES_BITS))


def v_read(V, a, exp: int = 0) -> np.ndarray:
    """V synapses' outputs [B, d_v] ([B, 2d_v] for 16-bit V): ``shift(int32(V · a), exp)``
    (exp = V LearningDense weight_exp); ``value_combine`` gives the head accumulator."""
    acc = np.einsum("bvt,bt->bv", np.asarray(V, np.int64), wrap32(a))
    return shift(acc, exp)


def v_read_causal(V, a, exp: int = 0) -> np.ndarray:
    """V synapses' outputs [B, T, d_v|2d_v] for slot outputs a [B, T, T_max] of T tokens, ``a``
    already zero on the slots after each token (``causal_mask``): equal to :func:`v_read` token by
    token (the columns it would have read there are still zero).  Exact in float64 BLAS:
    |V| ≤ 256 and |a| < 2^31 bound every partial sum by 2^39·T_max."""
    from .products import int_matmul

    VT = np.ascontiguousarray(np.asarray(V).transpose(0, 2, 1), np.float64)  # (C order: faster)
    acc = int_matmul(wrap32_needed(a), VT, b_colsum=V.shape[-1] * -WEIGHT_MIN)
    return shift(acc, exp)


# -- our custom neurons (backends/lava/procs) -----------------------------------------------------

SLOT_FUNCS = ("identity", "relu", "relu2")


def slot_f(scores, f: str, r: int = 0, r2: int = 0) -> np.ndarray:
    """Slot neuron: ``s = scores >> r``; identity | relu | relu2 = (max(s,0)² >> r2); 24-bit clip."""
    s = wrap32_needed(scores) >> int(r)
    if f == "identity":
        a = s
    elif f == "relu":
        a = np.maximum(s, 0)
    elif f == "relu2":
        a = np.right_shift(np.maximum(s, 0) ** 2, int(r2))
    else:
        raise ValueError(f"unknown slot function {f!r} (expected one of {SLOT_FUNCS})")
    return clip_payload(a)


def value_out(acc, residual: bool = False) -> np.ndarray:
    """Value neuron output in its read step: the V synapses' outputs combined
    (``value_combine``) and saturated to 24 bits."""
    return clip_payload(wrap32_needed(value_combine(acc, residual)))


def head_sequence(ks, qs, vs, t_max: int, f: str = "relu", r: int = 0, r2: int = 0,
                  k_exp: int = 0, v_exp: int = 0):
    """Reference of one plastic head over a sequence (what ``backends.lava.primitives.run_head`` runs).

    ks, qs [B, T, d], vs [B, T, d_v] ints.  Per token t: K write, V write, read
    (``value_out(v_read(V, slot_f(k_read(K, q_t)))``).  Returns (outputs [B, T, d_v], K, V, sat).
    """
    ks, qs, vs = (np.asarray(x, np.int64) for x in (ks, qs, vs))
    B, T, d = ks.shape
    K, V = k_init(B, t_max, d), v_init(B, vs.shape[-1], t_max)
    outs, sat = [], 0
    for t in range(T):
        K, s1 = k_write(K, ks[:, t], t)
        V, s2 = v_write(V, vs[:, t], t)
        a = slot_f(k_read(K, qs[:, t], k_exp), f, r, r2)
        outs.append(value_out(v_read(V, a, v_exp)))
        sat += s1 + s2
    return np.stack(outs, 1), K, V, sat


# -- multiplying neurons: activations and products (our custom neurons) ---------------------------
#
# Our rule: the operands of a neuron that multiplies saturate to 16 bits, so that every product of
# two operands (and every partial sum of a piecewise-linear response, bounded by the quantiser's
# fit) fits a 32-bit register, as Loihi 2 neuron microcode computes it (add, multiply, shift,
# compare).

OPERAND_BITS = 16
OPERAND_MAX = 2 ** (OPERAND_BITS - 1) - 1


def operand(x) -> tuple[np.ndarray, int]:
    """A multiplying neuron's operand: x saturated to ±OPERAND_MAX (value, saturated entries)."""
    x = np.asarray(x, np.int64)
    u = np.clip(x, -OPERAND_MAX, OPERAND_MAX)
    return u, int(np.count_nonzero(u != x))


def round_shift(acc, frac: int) -> np.ndarray:
    """``acc / 2^frac`` rounded half up: ``(acc + 2^(frac−1)) >> frac`` (acc itself if frac = 0)."""
    acc = np.asarray(acc, np.int64)
    frac = int(frac)
    return acc if frac <= 0 else (acc + (1 << (frac - 1))) >> frac


def pwl(u, c0: int, c1: int, breaks, slopes, frac: int) -> np.ndarray:
    """Integer piecewise-linear response of operands u (|u| ≤ OPERAND_MAX):
    ``round((c0 + c1·u + Σ_k slopes[k]·max(u − breaks[k], 0)) / 2^frac)`` (unclipped)."""
    u = np.asarray(u, np.int64)
    acc = int(c0) + int(c1) * u
    for b, w in zip(breaks, slopes):
        acc = acc + int(w) * np.maximum(u - int(b), 0)
    return round_shift(acc, frac)


def square(u, frac: int, relu: bool = False) -> np.ndarray:
    """``round(u² / 2^frac)`` (relu: of max(u, 0)), unclipped."""
    u = np.asarray(u, np.int64)
    if relu:
        u = np.maximum(u, 0)
    return round_shift(u * u, frac)


def product(a, b, shift_: int) -> np.ndarray:
    """Lava's ``ProdNeuron`` (fixed_pt) on our operands: ``int32(a·b) >> exp`` (unclipped)."""
    return wrap32(np.asarray(a, np.int64) * np.asarray(b, np.int64)) >> int(shift_)
