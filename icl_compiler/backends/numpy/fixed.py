"""Exact integer primitives of the fixed-point backends (the contract NumPy ⇔ Lava 0.10 ``fixed_pt``).

Every function is pure NumPy, vectorised over leading batch axes, and reproduces what Lava 0.10's
``fixed_pt`` process models compute, bit for bit.  The facts below were re-derived from Lava's source
(``proc/dense/models.py``, ``proc/graded/models.py``, ``magma/core/model/py/connection.py``,
``magma/core/learning/learning_rule_applier.py``, ``magma/core/learning/utils.py``) and checked by
probing Lava (``tests/backends/test_lava_primitives.py`` keeps the probes that matter).

Integers and widths
-------------------
* Spikes travel in ``int32`` channels: any int64 value sent is wrapped modulo 2**32 (``wrap32``).
  Lava 0.10's Python models do **not** clip graded payloads to 24 bits anywhere (``GradedVec``'s
  ``precision=24`` is metadata only; ``num_message_bits`` is only tested for ``> 0``).  Sums of
  several inputs into one port are done in the receiving port's dtype (``int32`` for the stock
  graded neurons), and ``Dense`` computes ``weights.dot(s_in)`` in ``int32`` → results wrap.
  ``clip_payload`` (24-bit saturation) is therefore *our* rule, applied only by our custom neurons
  (slot and value neurons); the compiler must keep stock-neuron payloads in range (|x| < 2**23).

Static ``Dense`` (``dense``, ``to_lava_dense_params``)
------------------------------------------------------
The compiler stores an int8 mantissa ``m`` ∈ [-128, 127] and an exponent ``e``: weight = m·2**e.
Lava's fixed-pt ``Dense`` at its first step clips weights to [-256, 255] (mixed sign mode) and
drops their lowest bit (``(w >> 1) << 1``), then each step computes ``a = int32(W·s)`` and shifts
the *sum* (not each product): ``a << weight_exp`` if ``weight_exp > 0`` else ``a >> -weight_exp``
(arithmetic shift = floor toward −∞).  Hence the exact mapping is

    Dense(weights = 2·m, weight_exp = e − 1, num_weight_bits = 8, sign_mode = SignMode.MIXED,
          num_message_bits = 24)

which gives   dense(m, e, s) = wrap32( wrap32(Σ_j 2·m_ij·s_j) << (e−1) )   if e > 1
                             = wrap32(Σ_j 2·m_ij·s_j) >> (1−e)               if e ≤ 1
              (= Σ m·s·2**e exactly for e ≥ 0, and floor(Σ m·s / 2**-e) for e < 0, absent overflow).
``sign_mode=MIXED`` must be passed explicitly: Lava otherwise infers INHIBITORY for an all-≤0 matrix
and clips 2·(−128) = −256 to −255 (EXCITATORY would be harmless).  With ``num_weight_bits = 9`` and
``weights = m`` Lava would be exact too, but 2·m / e−1 is the hardware-faithful form (8-bit signed
mantissa, mixed-sign scaling by 2).  The result is delivered one step later (Dense delay).
Because Lava sums the *doubled* weights in int32, a Dense is exact only while |Σ m·s| < 2**30
(``dense([[1]], 0, [2**30]) == -2**30`` in Lava too).

Graded neurons (``graded``, ``graded_relu``)
--------------------------------------------
``GradedVec``: ``v = int32(Σ a_in); out = v·(|v| > vth)``, state reset each step.  ``GradedReluVec``:
``out = v·(v > vth)``.  Lava's default is ``vth = 1`` (which would zero ±1) — always pass
``vth = 0``.  No bias, no 24-bit clip.  (``np.abs`` of int32 min stays negative, so −2**31 → 0.)

Learning engine (``LearningDense``, ``Loihi2FLearningRule``/``Loihi3FLearningRule``, t_epoch = 1)
-----------------------------------------------------------------------------------------------
Per learning epoch (every step), for each synaptic weight w (int, in [-256, 255]):

    acc = w << 7                                   # 16-bit accumulator, w pre-shifted by 7
    for each product  s·dep·f1·f2…  in rule order:
        P   = dep · Π clip(f_i, -2**width_i, 2**width_i − 1) · s_mant
              (widths: x0,y0 → 1;  x1,x2,y1,y2,y3 → 7;  w → 9;  s_mant=±1 for our rules)
        P   = (P >> max(0, Σ width_i + 4 − 15)) << s_exp          # s_exp = 7 for a unit scale
        P   = clip(P, -32769, 32767);  acc = clip(acc + P, -32769, 32767)
    acc  → stochastic rounding to a multiple of 128 (never triggers if acc % 128 == 0)
    w'   = clip(acc >> 7, -256, 255)

* The stochastic rounding of the weight uses ``ConnVarRandom()`` with its **fixed default seed 2**
  (``rng_seed`` of the rule does not reach it).  It only fires when a product or the accumulator
  saturates: for our rules that means ``w_old + x1 ≥ 256`` (K) or ``w_old + v ∉ [-256, 255]`` (V),
  impossible when each slot is written once onto a zero row/column (the protocol).  ``k_write`` /
  ``v_write`` count such events as saturations and return the floor.
* Learned weights are **not** LSB-truncated (only the initial weights are, at the first step), so odd
  learned K/V values are read at full resolution.
* Traces: a graded pre spike in ``GradedSpikeCfg.OVERWRITE`` sets
  ``x1 = uint8(round_half_even(p / 2))`` — i.e. **wraps modulo 256** (a negative payload gives
  ≥ 128) — then, in the learning phase, the trace is decayed once and, for neurons that spiked,
  clipped to [0, 127].  So ``x1 = clip((round_half_even(p/2)) mod 256, 0, 127)``.  A payload of 0 is
  no spike (x0 = 0) and leaves the old trace.
* Decay: ``floor(exp(-1/tau)·x)`` plus stochastic rounding (one random number per step, from the
  rule's ``rng_seed``); tau = 0 makes the trace read as 0.  Decay is exact only if
  ``exp(-1/tau) == 1.0`` in float64 → we set every used tau to ``TAU_NO_DECAY = 2**60`` (on
  hardware: decay constant 0 = no decay).  Finite taus are *not* exact: tau = 128 turns 127 into
  126 (unless the step's random number is < 0.01); larger taus fail at random steps with
  probability ≈ x/tau.  The guard-bit
  encoding of DESIGN §4 does not help: the learned weight is the decayed trace itself.
* ``Loihi3FLearningRule`` hard-wires ``y1_tau = y2_tau = y3_tau = 65535`` in its constructor, which
  stochastically corrupts the V write (probed: 1 bad step in ~250, e.g. y2 = 8 decays to 7).  The
  Lava backend overrides them with the setters (``rule.y1_tau = TAU_NO_DECAY`` …) after
  construction.

K write (two-factor, ``dw = "y0 * x0 * x1 - y0 * w"``, products y0·x0·x1 then −y0·w, shifts 0)
--------------------------------------------------------------------------------------------
Layout ``K[b, slot, 2d]`` = Lava's weight matrix [post = T_max slots, pre = 2d].  Writing token t:
pre payloads ``[2·max(k,0), 2·max(−k,0)]`` (``k_payload``), a bAP on slot t (y0 = 1 on row t only).
Row t becomes ``x0·x1`` with ``x1 = clip(|k| mod 256, 0, 127)`` on the active half and 0 on the other:
exact for k ∈ [-127, 127]; 127 < |k| < 256 saturates to ±127; |k| ≥ 256 wraps (the compiler must
clamp).  Other rows are untouched (y0 = 0).  Read: payloads ``[q, −q]`` → slot s receives
``Σ_i K⁺_si q_i − K⁻_si q_i = k_s·q`` (int32 wrap, then the LearningDense ``weight_exp`` shift).

V write (three-factor, ``dw = "x0 * y1 * y2 - x0 * y3 * w"``, y2 = 8, y3 = 32, no bAP)
-------------------------------------------------------------------------------------
Layout ``V[b, d_v, slot]`` = Lava's [post = d_v, pre = T_max].  A one-hot pre spike on slot t (any
non-zero payload) and third factors y1 = v, y2 = 8, y3 = 32 on every value neuron:
product 1 = ((y1·8) >> 3) << 7 = clip(v,-128,127)·128, product 2 = ((−32·w) >> 5) << 7 = −128·w, so
column t becomes clip(v, -128, 127).  In read steps y1 = y2 = y3 = 0, so x0 from the slot outputs
changes nothing (y3 is the write enable of the −w term; y2 could be dropped as ``x0 * y1`` has no
shift).  A bAP on V would clip y to [0, 127] — never send one.

16-bit K/V (``residual=True``; the quantiser's ``--weight-bits 16``)
---------------------------------------------------------------------
Each K/V entry is two plastic int8 synapses: x = hi·2^7 + lo with hi = x >> 7 in the 8-bit range
above and lo = x & 127 ∈ [0, 127] (``kv_split``; x saturates to [lo_min·2^7, hi_max·2^7 + 127]).
K: 3d pre neurons, write payloads ``[2·max(hi,0), 2·max(−hi,0), 2·lo]`` (the same two-factor rule
writes all three), read payloads ``[q, −q, q >> 7]``: slot s receives Σ hi·q + lo·(q >> 7)
≈ Σ k·q / 2^7 (one LearningDense, one weight_exp).  V: 2d_v post (value) neurons, high rows then
low rows, third factors y1 = [hi, lo]; the value neuron outputs ``high + (low >> 7)``
(``value_combine``), each row already shifted by the LearningDense's weight_exp.  Both halves are
written once per slot onto zeros, so the write stays exact.

Corrections to DESIGN §4/§5 (everything else there was confirmed)
-----------------------------------------------------------------
1. "Graded payloads enter x1 as round_half_even(p/2), clipped to [0, 127]": the value is cast to
   uint8 first, so it wraps modulo 256 before the clip (p = −2 → 127, p = 512 → 0, p = 600 → 44).
2. "V signed third factor … exact": only after overriding the y taus that
   ``Loihi3FLearningRule`` hard-wires to 65535 (see above); ``rng_seed`` alone is not enough.
3. "Trace decay: … guard-bit encoding exact for tau ≥ 128": not exact (the decayed odd value is
   learned as is); use ``TAU_NO_DECAY``.  ``rng_seed`` does not seed the weight rounding (fixed 2).
4. "the accumulator is 16-bit": it saturates at [-32769, 32767] with w pre-shifted by 7, so a write
   onto a non-zero row/column with |w_old + new| ≥ 256 is inexact (stochastic) — write each slot
   once per sequence onto zeros.
5. Payloads are int32 in Lava 0.10 (no 24-bit clip anywhere; sums wrap); the doubled Dense weights
   halve the headroom to 2**30.  Stock graded neurons default to vth = 1.
6. Lava's floating_pt learning applier cannot evaluate ``x0`` as a factor, so the K rule
   ``y0 * x0 * x1 - y0 * w`` raises inside the model process (and the run hangs) in floating_pt.
7. The 2-step schedule works with two small custom neurons (``backends/lava/procs``): the slot
   neuron gates its outputs and drives the bAPs, the value neuron drives y1..y3 and gates its
   output; head latency is 3 steps (output of token t leaves at step A_t + 3).
"""
from __future__ import annotations

import numpy as np

INT32_MIN = -(2**31)
PAYLOAD_BITS = 24  # our custom neurons saturate payloads to 24-bit signed
PAYLOAD_MAX = 2 ** (PAYLOAD_BITS - 1) - 1
PAYLOAD_MIN = -(2 ** (PAYLOAD_BITS - 1))

TAU_NO_DECAY = 2**60  # exp(-1/tau) == 1.0 in float64: exact, deterministic traces
K_RANGE = (-127, 127)
V_RANGE = (-128, 127)
RES_BITS = 7  # 16-bit K/V: x = hi·2^7 + lo, hi in the 8-bit range, lo in [0, 127]
RES_SCALE = 2**RES_BITS
V_Y2 = 8  # third factors of the V write (see module doc)
V_Y3 = 32
WEIGHT_MIN, WEIGHT_MAX = -256, 255  # learned weights, mixed sign mode
_ACC_MIN, _ACC_MAX = -(2**15) - 1, 2**15 - 1  # learning accumulator saturation (Lava's bounds)
_W_SHIFT = 7  # W_ACCUMULATOR_S - W_WEIGHTS_S
K_DW = "y0 * x0 * x1 - y0 * w"
V_DW = "x0 * y1 * y2 - x0 * y3 * w"


# -- integer helpers ------------------------------------------------------------------------------

def wrap32(x) -> np.ndarray:
    """Wrap to int32 (two's complement), returned as int64."""
    x = np.asarray(x, dtype=np.int64)
    return ((x + 2**31) & 0xFFFFFFFF) - 2**31


def shift(a, exp: int) -> np.ndarray:
    """Lava's weight_exp shift of an int32 sum: ``a << exp`` (int32 wrap) or ``a >> -exp`` (floor)."""
    a = wrap32(a)
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
    w2 = np.clip(2 * np.asarray(w_mant, np.int64), -256, 255)
    return (w2 >> 1) << 1


def to_lava_dense_params(w_mant, exp: int) -> dict:
    """Keyword arguments of ``lava.proc.dense.process.Dense`` for mantissas m [post, pre], exponent e.

    ``sign_mode`` is given by name ("MIXED"); the Lava backend converts it to
    ``lava.utils.weightutils.SignMode.MIXED`` (this module does not import Lava).
    """
    m = np.asarray(w_mant)
    if not np.issubdtype(m.dtype, np.integer) or m.ndim != 2:
        raise ValueError("w_mant must be a 2-D integer array [post, pre]")
    if m.size and (m.min() < -128 or m.max() > 127):
        raise ValueError("weight mantissas must be int8 ([-128, 127])")
    return {
        "weights": (2 * m.astype(np.int64)).astype(np.int32),
        "weight_exp": int(exp) - 1,
        "num_weight_bits": 8,
        "sign_mode": "MIXED",
        "num_message_bits": 24,
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
    sh = max(0, sum(widths) + 4 - 15)
    return np.clip((value >> sh) << s_exp, _ACC_MIN, _ACC_MAX)


def _finish(acc: np.ndarray) -> tuple[np.ndarray, int]:
    """Stochastic rounding (counted, floored if it would fire), >> 7, weight clip."""
    inexact = int(np.count_nonzero(acc & 127))
    w = np.clip(acc >> _W_SHIFT, WEIGHT_MIN, WEIGHT_MAX)
    return w, inexact


def x1_from_payload(p) -> np.ndarray:
    """Pre trace x1 of a spiking neuron in OVERWRITE mode, as the learning rule sees it."""
    p = wrap32(p)
    return np.clip(round_half_even_half(p) & 0xFF, 0, 127)


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
    return wrap32(np.concatenate(parts, axis=-1))


def q_payload(q, residual: bool = False) -> np.ndarray:
    """Read payloads, q [..., d] → [..., 2d]: ``[q, −q]``; 16-bit K: [..., 3d] = ``[q, −q, q >> 7]``
    (the low half of K is read at 2^-7, so slot s receives ≈ Σ k_s·q / 2^7)."""
    q = wrap32(q)
    parts = [q, -q] + ([q >> RES_BITS] if residual else [])
    return wrap32(np.concatenate(parts, axis=-1))


def k_init(batch: int, t_max: int, d: int, residual: bool = False) -> np.ndarray:
    """Zero K synapses, layout [B, T_max, 2d] (3d for 16-bit K) = Lava's LearningDense [post, pre]."""
    return np.zeros((batch, t_max, (3 if residual else 2) * d), np.int64)


def v_init(batch: int, d_v: int, t_max: int, residual: bool = False) -> np.ndarray:
    """Zero V synapses, layout [B, d_v, T_max] ([B, 2d_v, T_max] for 16-bit V: high rows, then
    low rows) = Lava's LearningDense weights [post, pre]."""
    return np.zeros((batch, (2 if residual else 1) * d_v, t_max), np.int64)


def k_signed(K, residual: bool = False) -> np.ndarray:
    """Signed keys k_s = K⁺ − K⁻ (16-bit: (K⁺ − K⁻)·2^7 + K_lo), [B, T_max, 2d|3d] → [B, T_max, d]."""
    K = np.asarray(K)
    d = K.shape[-1] // (3 if residual else 2)
    k = K[..., :d] - K[..., d:2 * d]
    return k * RES_SCALE + K[..., 2 * d:] if residual else k


def k_write_payload(K, p, t: int) -> tuple[np.ndarray, int]:
    """K write with arbitrary pre payloads p [B, 2d] and a bAP on slot t (the general rule)."""
    K = np.array(K, dtype=np.int64, copy=True)
    if not 0 <= t < K.shape[1]:
        return K, int(np.asarray(p).size)  # no slot: nothing is written (counted as lost)
    p = wrap32(p)
    x0 = (p != 0).astype(np.int64)
    x1 = x1_from_payload(p)
    w = K[:, t, :]
    acc = w << _W_SHIFT
    # product 1: y0 · x0 · x1 (widths 1 + 7), product 2: −y0 · w (width 9)
    acc = np.clip(acc + _product(_factor(x0, 1) * _factor(x1, 7), (1, 7)), _ACC_MIN, _ACC_MAX)
    acc = np.clip(acc + _product(-_factor(w, 9), (9,)), _ACC_MIN, _ACC_MAX)
    K[:, t, :], inexact = _finish(acc)
    return K, inexact


def _out_of_range(x, lo: int, hi: int, residual: bool) -> int:
    x = np.asarray(x, np.int64)
    if residual:
        lo, hi = lo * RES_SCALE, hi * RES_SCALE + RES_SCALE - 1
    return int(np.count_nonzero((x < lo) | (x > hi)))


def k_write(K, k, t: int, residual: bool = False) -> tuple[np.ndarray, int]:
    """Write keys k [B, d] into row t of K [B, T_max, 2d|3d] (two-factor rule, sign split).

    Returns (new K, number of saturated/lost entries): k entries outside [-127, 127] (16-bit:
    [-127·2^7, 127·2^7 + 127]), inexact accumulator events (only possible if row t was not
    zero), or all entries if t ≥ T_max.
    """
    k = np.asarray(k, np.int64)
    Kn, inexact = k_write_payload(K, k_payload(k, residual), t)
    if not 0 <= t < np.shape(K)[1]:
        return Kn, int(k.size)
    return Kn, _out_of_range(k, *K_RANGE, residual) + inexact


def k_read(K, q, exp: int = 0, residual: bool = False) -> np.ndarray:
    """Scores [B, T_max]: ``shift(int32(K · q_payload(q)), exp)`` (exp = the K LearningDense weight_exp)."""
    a = np.einsum("btp,bp->bt", np.asarray(K, np.int64), q_payload(q, residual))
    return shift(a, exp)


def v_write(V, v, t: int, y2: int = V_Y2, y3: int = V_Y3,
            residual: bool = False) -> tuple[np.ndarray, int]:
    """Write values v [B, d_v] into column t of V [B, d_v|2d_v, T_max] (three-factor rule).

    Returns (new V, number of saturated/lost entries).  Column t becomes clip(v, -128, 127);
    16-bit V: rows [hi, lo] of v = hi·2^7 + lo (``kv_split``), third factors y1 = [hi, lo].
    """
    V = np.array(V, dtype=np.int64, copy=True)
    v = np.asarray(v, np.int64)
    if not 0 <= t < V.shape[2]:
        return V, int(v.size)
    y1 = _factor(wrap32(v_third_factor(v, residual)), 7)
    w = V[:, :, t]
    acc = w << _W_SHIFT
    # product 1: x0 · y1 · y2 (widths 7 + 7), product 2: −x0 · y3 · w (widths 7 + 9); x0 = 1
    acc = np.clip(acc + _product(y1 * _factor(y2, 7), (7, 7)), _ACC_MIN, _ACC_MAX)
    acc = np.clip(acc + _product(-_factor(y3, 7) * _factor(w, 9), (7, 9)), _ACC_MIN, _ACC_MAX)
    V[:, :, t], inexact = _finish(acc)
    return V, _out_of_range(v, *V_RANGE, residual) + inexact


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
    return wrap32(acc[..., :dv] + (acc[..., dv:] >> RES_BITS))


def v_read(V, a, exp: int = 0) -> np.ndarray:
    """V synapses' outputs [B, d_v] ([B, 2d_v] for 16-bit V): ``shift(int32(V · a), exp)``
    (exp = V LearningDense weight_exp); ``value_combine`` gives the head accumulator."""
    acc = np.einsum("bvt,bt->bv", np.asarray(V, np.int64), wrap32(a))
    return shift(acc, exp)


# -- our custom neurons (backends/lava/procs) -----------------------------------------------------

SLOT_FUNCS = ("identity", "relu", "relu2")


def slot_f(scores, f: str, r: int = 0, r2: int = 0) -> np.ndarray:
    """Slot neuron: ``s = scores >> r``; identity | relu | relu2 = (max(s,0)² >> r2); 24-bit clip."""
    s = wrap32(scores) >> int(r)
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
    return clip_payload(wrap32(value_combine(acc, residual)))


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
