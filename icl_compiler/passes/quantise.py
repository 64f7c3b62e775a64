"""Quantisation: float neuromorphic graph → Loihi 2 fixed point (DESIGN §5).

Matches: a float :class:`NeuroGraph` (output of the lowering).
Produces: a copy with ``precision="fixed"`` where
  * every population has a payload ``scale`` (real value = integer payload × scale), sized from
    calibration so that its largest calibrated magnitude maps to the largest payload that (a)
    leaves one bit of headroom below the 24-bit payload clip (``ACT_BITS``) and (b) keeps every
    int32 synaptic accumulator it feeds exact: Σ_j |m_ij|·payload < 2^30 (Lava's Dense sums
    2m·s in int32, see docs/semantics.md).  Two passes: scales → mantissas → limits →
    scales.  Values beyond 2× the calibrated range saturate (counted), so calibrate on data
    from the deployment domain that includes the longest sequences;
  * every static synapse group has int8 mantissas ``m`` and an exponent ``e`` with
    ``m·2^e ≈ W·scale_pre/scale_post`` (per matrix; the mantissa keeps 8 bits even after Lava
    doubles it and drops the lowest bit, see docs/semantics.md);
  * biases are integers in the post population's units;
  * attention: k and v payloads use the 8-bit plastic range (k ∈ [−127, 127] for the sign-split
    K write, v ∈ [−127, 127] for the third-factor V write), q uses 8 bits so scores stay well
    inside the 24-bit accumulator; slot neurons right-shift scores by ``r`` before f (and by
    ``r2`` after squaring for relu2); the V read right-shifts by ``-e_v``.  All these scales are
    folded into the read path (the next Dense's mantissas), never applied as multiplications;
  * activation neurons: the operand's calibrated maximum maps to ``OPERAND_TARGET`` (4× headroom
    below the 16-bit operand clip); the integer response (piecewise linear with the fewest
    segments that meet ``error_target × activation_fit.ERROR_FRACTION``, or a square) is fitted
    by :mod:`.activation_fit`; product neurons: both operands' calibrated maxima map to
    ``OPERAND_TARGET`` and the product is shifted right into the payload range (``prod_shift``);
  * weight bits: 8 = one int8 mantissa per weight and one int8 plastic synapse per K/V entry;
    16 = every static matrix gets a second int8 group for its residual, and every K/V entry a
    high and a low plastic synapse (k, v use 15 bits: x = hi·2^7 + lo, ``fixed.kv_split``; the
    score and V read scales gain the factor 2^7).  "auto" (default) keeps 8 unless the 8-bit
    program's output error against the float graph on the calibration data exceeds
    ``error_target`` (5 %), then uses 16; the report says which and why.
Calibration: the reference interpreter (``semantics.interpreter``) runs the float graph on the
calibration inputs and records max |value| per population and per head internal (scores, slot
outputs, V accumulations).  Without calibration
data: ``DEFAULT_CALIBRATION`` random sequences of T_max tokens — token ids uniform over the
vocabulary, or features uniform in ``DEFAULT_FEATURE_RANGE`` (documented default input range).
Invariants: the graph structure is unchanged; ``verify_neuro`` holds (int8 mantissas).
As the pipeline's ``quantise`` pass (:data:`PASS`, fixed mode only) it writes the report's
``quantisation`` section and the 16-bit heads' encodings.
"""
from __future__ import annotations

import copy
import math

import numpy as np

from ..errors import CompileError
from ..ir.ops import ROW_NORMS
from ..ir.neuro import Lowering, NeuroGraph, NeuronModel, QuantParams, SynapseGroup
from ..options import ERROR_TARGET, positive_number, valid_weight_bits
from ..semantics.fixed import (DENSE_SUM_LIMIT, K_RANGE, MANTISSA_MAX, PAYLOAD_BITS,
                               PAYLOAD_MAX, PAYLOAD_MIN, RES_SCALE)
from ..semantics.interpreter import Interpreter
from ..semantics.neurons import encodings
from . import activation_fit
from .activation_fit import OPERAND_TARGET, PRODUCT_OPS
from .base import Module, Pass, PassContext

ACT_BITS = PAYLOAD_BITS - 2  # magnitude bits of a graded payload at most (22: one bit of headroom),
# lowered per population so that every int32 synaptic accumulator stays exact
ACT_MAX = 2**ACT_BITS - 1
KV_MAX = K_RANGE[1]  # plastic K/V range: k ∈ [-127, 127], v ∈ [-128, 127] used as ±127
KV_TARGET = 126  # calibrated max maps here: 1 LSB of headroom for weight rounding
ACC_LIMIT = DENSE_SUM_LIMIT  # int32 synaptic accumulators (Lava sums 2m·s, wraps at 2^31)
ROUND_BITS = 8  # extra current bits of the 8-bit k/q/v populations, rounded away by the neuron
ONE_HOT = 127  # payload of a one-hot token / position spike
MANT_MAX = MANTISSA_MAX  # symmetric int8 mantissas [-127, 127]
DEFAULT_CALIBRATION = 16
DEFAULT_FEATURE_RANGE = (0.0, 1.0)


def _exp_for(maxabs: float, limit: int) -> int:
    """Smallest e with maxabs / 2^e ≤ limit."""
    if maxabs <= 0:
        return 0
    return int(math.ceil(math.log2(maxabs / limit)))


def quantise_matrix(M: np.ndarray) -> tuple[np.ndarray, int]:
    """int8 mantissas and exponent: m·2^e ≈ M, |m| ≤ 127."""
    e = _exp_for(float(np.max(np.abs(M))) if M.size else 0.0, MANT_MAX)
    m = np.clip(np.round(M / 2.0**e), -MANT_MAX, MANT_MAX).astype(np.int8)
    return m, e


class _Probe(Interpreter):
    """The interpreter with its calibration ``record`` on, noting the first value that is not a
    number it can represent: NaN or ±inf in float mode; in fixed mode a population payload
    outside the 24-bit range (only a NaN cast to an integer, e.g. inside a norm, makes one).
    ``bad`` is (probe key, token, what) of the first, in evaluation order."""

    def __init__(self, ng: NeuroGraph):
        super().__init__(ng)
        self.record = {}
        self.bad: tuple[str, int, str] | None = None
        self._t, self._T = 0, None  # the first token being evaluated; tokens at once (or None)

    def step(self, x_t, t, state, stats):
        self._t, self._T = t, None
        return super().step(x_t, t, state, stats)

    def advance(self, x, t0, state, stats, **kw):
        self._t, self._T = t0, x.shape[1]
        return super().advance(x, t0, state, stats, **kw)

    def _rec(self, key: str, arr) -> None:
        if (self.bad is None and isinstance(arr, np.ndarray) and arr.size
                and not _representable(key, arr, self.fixed)):
            what = ("a value that is not a number" if self.fixed else
                    "NaN" if np.isnan(arr).any() else "infinite values")
            self.bad = (key, self._token_of(arr), what)
        super()._rec(key, arr)  # a one-hot input (its payload) is always representable

    def _token_of(self, arr: np.ndarray) -> int:
        """The token of the first unrepresentable element: rows are sequences (token by token)
        or sequence × token (``[B·T, n]`` or ``[B, T, …]``, several tokens at once)."""
        ok = np.isfinite(arr) if not self.fixed else (arr >= PAYLOAD_MIN) & (arr <= PAYLOAD_MAX)
        first = np.unravel_index(int(np.argmin(ok.reshape(-1))), arr.shape)
        if not self._T:
            return self._t
        if arr.ndim >= 3:
            return self._t + int(first[1])
        return self._t + int(first[0]) % self._T


def _representable(key: str, arr: np.ndarray, fixed: bool) -> bool:
    if not fixed:
        return bool(np.all(np.isfinite(arr)))
    if ":" in key:  # currents, scores, accumulators: wider than a payload by design
        return True
    return bool(np.all((arr >= PAYLOAD_MIN) & (arr <= PAYLOAD_MAX)))


def calibrate(ng: NeuroGraph, x: np.ndarray) -> tuple[dict[str, float], np.ndarray]:
    """Float run on the calibration data: (max |value| per probe, the float outputs).
    CompileError if the float program computes NaN or ±inf on it (fixed point would turn it
    into finite numbers), naming the first population where it happened."""
    emu = _Probe(ng)
    with np.errstate(all="ignore"):
        y, _ = emu.run(x)
    _refuse_unrepresentable(emu, "float program")
    if not np.all(np.isfinite(y)):  # no probe saw it (a new neuron kind): still refused
        raise CompileError("the float program's output is NaN or infinite on the calibration "
                           "data", hint=_NONFINITE_HINT)
    return emu.record, y


_NONFINITE_HINT = ("check the model's arithmetic there (a norm's eps must be positive, no "
                   "division by zero, no overflow) and that the calibration data is in range")


def _refuse_unrepresentable(emu: _Probe, what: str) -> None:
    if emu.bad is None:
        return
    key, t, found = emu.bad
    name, _, part = key.partition(":")
    pop = emu.ng.pop(name)
    kind = pop.norm.kind if pop.norm is not None else str(pop.model)
    probe = {"current": "input current", "score": "attention scores",
             "acc": "V accumulation"}.get(part, "value")
    raise CompileError(f"the {what} computes {found} on the calibration data, first in "
                       f"population {name} ({kind}, its {probe}) at token {t}; fixed point "
                       "would turn them into finite numbers", hint=_NONFINITE_HINT)


def default_calibration(ng: NeuroGraph, n: int = DEFAULT_CALIBRATION, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    io = ng.io
    T = min(h.t_max for h in ng.heads) if ng.heads else 16
    if io.input_kind == "tokens":
        return rng.integers(0, io.vocab, size=(n, T))
    lo, hi = DEFAULT_FEATURE_RANGE
    return rng.uniform(lo, hi, size=(n, T, ng.pop(io.input_pop).size))


def relative_error(y: np.ndarray, ref: np.ndarray) -> float:
    """max |y − ref| / max |ref| (0 when both are 0)."""
    den = float(np.max(np.abs(ref))) if np.size(ref) else 0.0
    num = float(np.max(np.abs(y - ref))) if np.size(ref) else 0.0
    return num / den if den > 0 else (0.0 if num == 0 else float("inf"))


def quantise(ng: NeuroGraph, calibration: np.ndarray | None = None, *,
             strict: bool = False, weight_bits: int | str = "auto",
             error_target: float = ERROR_TARGET) -> tuple[NeuroGraph, dict]:
    """Quantise the float graph (see the module docstring).  ``weight_bits``: 8, 16, or "auto"
    (8 unless the 8-bit program's output error on the calibration data exceeds
    ``error_target``, then 16).  The options are checked by the rules of ``options.py``."""
    return _quantise(ng, calibration, strict=strict, weight_bits=valid_weight_bits(weight_bits),
                     error_target=positive_number("error_target", error_target))


def _quantise(ng: NeuroGraph, calibration: np.ndarray | None, *, strict: bool,
              weight_bits: int | str, error_target: float) -> tuple[NeuroGraph, dict]:
    if ng.precision != "float":
        raise ValueError("quantise expects the float graph")
    source = "calibration data"
    if calibration is None:
        calibration = default_calibration(ng)
        source = (f"default: {len(calibration)} random sequences "
                  + ("of token ids" if ng.io.input_kind == "tokens"
                     else f"with features uniform in {list(DEFAULT_FEATURE_RANGE)}"))
    _check_calibration(ng, calibration)
    fq = copy.deepcopy(ng)
    for h in fq.heads:  # a negative score scale is folded into the query weights
        if h.scale < 0:
            qpop = fq.pop(h.q)
            for s in fq.incoming(h.q):
                s.weights = -s.weights
            if qpop.bias is not None:
                qpop.bias = -qpop.bias
            h.scale = -h.scale
    calibration = np.asarray(calibration)
    rec, y_float = calibrate(fq, calibration)
    errors: dict[int, float] = {}
    for bits in ((8, 16) if weight_bits == "auto" else (weight_bits,)):
        # pass 1 with the default payload limits; pass 2 with each population's limit lowered
        # so that every consumer's int32 accumulator Σ m·s stays exact (|Σ| < ACC_LIMIT)
        q, mats, head_params, acts = _assign(fq, rec, {}, bits, error_target)
        limits = _accumulator_limits(q)
        q, mats, head_params, acts = _assign(fq, rec, limits, bits, error_target)
        # 4. saturation and output error on the calibration data in fixed point
        emu = _Probe(q)
        with np.errstate(invalid="ignore"):  # a NaN cast to int: refused just below
            y_fixed, stats = emu.run(calibration)
        _refuse_unrepresentable(emu, f"{bits}-bit fixed-point program")
        errors[bits] = relative_error(emu.dequantise(y_fixed), y_float)
        if not math.isfinite(errors[bits]):
            zero = not np.any(y_float)
            raise CompileError(
                f"the {bits}-bit fixed-point program's error on the calibration data is not "
                f"finite (population {q.io.output_pop}, the output: "
                + ("the float output is 0 everywhere while the fixed one is not)" if zero else
                   f"{errors[bits]})"),
                hint="calibrate on data for which the model's output is not identically zero"
                if zero else _NONFINITE_HINT)
        if errors[bits] <= error_target:
            break
    if weight_bits == "auto":
        choice = (f"auto: 8-bit error {errors[8]:.2%} on the {source.split(':')[0]} "
                  + (f"<= target {error_target:.2%}" if bits == 8 else
                     f"> target {error_target:.2%}, so 16-bit (error {errors[16]:.2%}"
                     + ("" if errors[16] <= error_target else ", still above the target")
                     + ")"))
    else:
        choice = f"{bits}-bit as asked (error {errors[bits]:.2%} on the {source.split(':')[0]})"
    sat = dict(stats.saturations)
    if strict and sat:
        worst = max(sat, key=sat.get)
        raise CompileError(f"--strict: {sum(sat.values())} saturation events on the calibration "
                           f"data (most in {worst}: {sat[worst]})",
                           hint="give calibration data that covers the real input range, or "
                                "drop --strict to accept clipping")
    report = {
        "calibration": source,
        "activation_bits": ACT_BITS + 1,
        "weight_bits": bits,
        "weight_bits_choice": choice,
        "error_target": error_target,
        "calibration_error": {str(b): round(e, 6) for b, e in errors.items()},
        "weight_encoding": ("int8 mantissa + exponent per matrix" if bits == 8 else
                            "two int8 synapse groups per matrix (high and residual mantissas)"),
        "kv_bits": bits,
        "kv_encoding": ("one int8 plastic synapse per K/V entry" if bits == 8 else
                        "a high and a low int8 plastic synapse per K/V entry (x = hi·2^7 + lo)"),
        "kv_range": ([-KV_MAX, KV_MAX] if bits == 8 else
                     [-KV_MAX * RES_SCALE, KV_MAX * RES_SCALE + RES_SCALE - 1]),
        "populations": {p.name: p.scale for p in q.populations()},
        "matrices": mats,
        "heads": head_params,
        "activations": acts,
        "saturations": sat,
        "saturation_events": int(sum(sat.values())),
        "summary": (f"{bits}-bit weights and K/V ({'auto' if weight_bits == 'auto' else 'asked'}"
                    f"), output error {errors[bits]:.2%} vs float on the "
                    f"{source.split(':')[0]}, {len(mats)} matrices, {len(q.heads)} plastic heads, "
                    f"{sum(sat.values())} saturation events"),
    }
    return q, report


def _assign(fq: NeuroGraph, rec: dict[str, float], limits: dict[str, int],
            weight_bits: int, error_target: float = ERROR_TARGET) -> tuple[NeuroGraph, list, list,
                                                                           list]:
    """Scales, mantissas, exponents, head shifts and activation responses for given
    per-population payload limits."""
    q = copy.deepcopy(fq)
    q.precision = "fixed"

    def mx(key: str) -> float:
        return max(rec.get(key, 0.0), 1e-12)

    def lim(name: str, default: int) -> int:
        return min(default, limits.get(name, default))

    # 16-bit weights: K and V too get a high and a low plastic synapse per entry (x = hi·2^7 + lo)
    for h in q.heads:
        if h.lowering == Lowering.KV_SLOT:
            h.kv_bits = 16 if weight_bits == 16 else 8
    res = {h.k: RES_SCALE if h.kv_bits == 16 else 1 for h in q.heads} | {
        h.v: RES_SCALE if h.kv_bits == 16 else 1 for h in q.heads}
    # k and v are bounded by the plastic weights' 8 (16) bits; q only by the int32 read Σ k·q
    # (16-bit K adds Σ lo·(q >> 7) ≤ Σ |q|)
    head_pops = {h.k: KV_TARGET * res[h.k] for h in q.heads} | {
        h.v: KV_TARGET * res[h.v] for h in q.heads} | {
        h.q: lim(h.q, ACC_LIMIT // ((KV_MAX + (h.kv_bits == 16)) * q.pop(h.q).size))
        for h in q.heads}
    outs = {h.out: h for h in q.heads}
    acts: list[dict] = []
    # 1. population scales
    for p in q.populations():
        if p.model == NeuronModel.INPUT:
            if p.one_hot:
                p.scale = 1.0 / ONE_HOT
                p.q = QuantParams(one=ONE_HOT)
            else:
                p.scale = mx(p.name) / lim(p.name, ACT_MAX)
            continue
        if p.model == NeuronModel.SLOT or p.name in outs:
            continue  # set with the head below
        if p.model in (NeuronModel.ACTIVATION, NeuronModel.PRODUCT):
            acts += _multiplying(p, mx, lim(p.name, ACT_MAX), error_target)
            continue
        limit = head_pops.get(p.name, lim(p.name, ACT_MAX))
        p.scale = mx(p.name) / limit
        if p.name in res:
            # 8-bit k/q/v: the synapses deliver ROUND_BITS more bits and the neuron rounds
            # (out = (current + 2^(R-1)) >> R) so the plastic values are unbiased, not floored
            p.q = QuantParams(shift=ROUND_BITS, in_scale=p.scale / 2**ROUND_BITS)
        if p.model == NeuronModel.NORM:
            p.q = QuantParams(in_scale=mx(p.name + ":current") / ACT_MAX)
    # 2. heads: slot shift, V-read exponent, output scale
    head_params = []
    for h in q.heads:
        sk, sq, sv = q.pop(h.k).scale, q.pop(h.q).scale, q.pop(h.v).scale
        R = res[h.k]  # 16-bit K: slot s receives Σ k·q / 2^7
        c = h.scale * sk * sq * R  # real score per integer score unit
        score_int = mx(h.slots + ":score") / c
        # slot outputs: 24-bit payloads, and Σ_t V[:, t]·a_t must stay inside int32
        a_max = min(2**20, ACC_LIMIT // (KV_MAX * h.t_max))
        r2 = 0
        if h.f == "relu2":
            r = max(0, _exp_for(score_int, min(a_max, 2**15)))  # a1 = relu(s >> r), a1² < 2^31
            a1 = score_int / 2**r
            r2 = max(0, _exp_for(a1 * a1, a_max))
            sa = (c * 2**r) ** 2 * 2**r2
        else:
            r = max(0, _exp_for(score_int, a_max))
            sa = c * 2**r
        slots = q.pop(h.slots)
        slots.scale = sa
        slots.q = QuantParams(r=r, r2=r2)
        sv = sv * res[h.v]  # real value per unit of the combined accumulator (fixed.value_combine)
        acc_int = mx(h.out + ":acc") / (sv * sa)
        e_v = -max(0, _exp_for(acc_int, lim(h.out, ACT_MAX)))
        out = q.pop(h.out)
        if h.normalise in ROW_NORMS:
            out.scale = mx(h.out) / lim(h.out, ACT_MAX)
        else:
            out.scale = sv * sa * 2.0**(-e_v)
        out.q = QuantParams(e_v=e_v, s_v=sv, s_a=sa)
        head_params.append({"layer": h.layer, "head": h.head, "k_scale": sk, "q_scale": sq,
                            "v_scale": q.pop(h.v).scale, "kv_bits": h.kv_bits, "slot_shift": r,
                            "slot_shift2": r2, "v_read_exp": e_v})
    # 3. synapses and biases
    mats = []
    for s in list(q.synapses()):
        if s.plastic:
            s.weights = np.zeros(s.weights.shape, np.int64)
            continue
        pre, post = q.pop(s.pre), q.pop(s.post)
        tgt = _in_scale(post, s.port)
        M = s.weights * (pre.scale / tgt)
        s.weights, s.exp = quantise_matrix(M)
        approx = s.weights * 2.0**s.exp
        if weight_bits == 16 and np.any(approx != M):
            # a second int8 synapse group carries the residual: W ≈ m_hi·2^e + m_lo·2^e_lo
            m_lo, e_lo = quantise_matrix(M - approx)
            if np.any(m_lo):
                q.add_synapses(SynapseGroup(name=s.name + ":lo", pre=s.pre, post=s.post,
                                            weights=m_lo, exp=e_lo, attrs={"part": "lo"},
                                            port=s.port))
                approx = approx + m_lo * 2.0**e_lo
        err = float(np.max(np.abs(approx - M))) / max(float(np.max(np.abs(M))), 1e-30)
        mats.append({"synapses": s.name, "exp": s.exp, "max_rel_err": round(err, 7)})
    for p in q.populations():
        shift = p.q.shift if p.q is not None else 0
        if p.bias is not None or shift:
            tgt = _in_scale(p)
            b = np.zeros(p.size) if p.bias is None else np.asarray(p.bias)
            p.bias = np.round(b / tgt).astype(np.int64) + (2 ** (shift - 1) if shift else 0)
    return q, mats, head_params, acts


def _multiplying(p, mx, limit: int, error_target: float) -> list[dict]:
    """Scales of an activation or product population (and the activation's integer response);
    returns its report entry."""
    name = p.name
    sa = mx(name + ":current") / OPERAND_TARGET
    if p.model == NeuronModel.PRODUCT:
        sb = mx(name + ":current_b") / OPERAND_TARGET
        shift = max(0, _exp_for(mx(name) / (sa * sb), limit))
        p.scale = sa * sb * 2.0**shift
        p.q = QuantParams(in_scale=sa, in_scale_b=sb, prod_shift=shift)
        return [{"population": name, "neuron": "product", "size": p.size, "prod_shift": shift,
                 "ops_per_neuron": PRODUCT_OPS}]
    p.q = QuantParams(in_scale=sa)
    fn = p.act.fn
    x_max = mx(name + ":current")
    if fn in activation_fit.SQUARES:
        p.act, p.scale = activation_fit.square_params(fn, sa, limit)
        m = activation_fit.measure(p.act, sa, p.scale, x_max)
        entry = activation_fit.report_entry(p.act, m, None)
    else:
        p.scale = mx(name) / max(1, limit // 4)  # 4× headroom: linear tails grow with x
        p.act, entry = activation_fit.fit(fn, sa, p.scale, x_max,
                                          error_target * activation_fit.ERROR_FRACTION)
    return [{"population": name, "neuron": "activation", "size": p.size, **entry}]



def _in_scale(p, port: int = 0) -> float:
    """Real value per unit of a population's current (its payload scale unless the neuron
    rescales: rounding neurons, norms, multiplying neurons); ``port`` 1: a product's operand b."""
    if port == 1:
        return p.q.in_scale_b
    return p.q.in_scale if p.q is not None and p.q.in_scale is not None else p.scale


def _accumulator_limits(q: NeuroGraph) -> dict[str, int]:
    """Per population: the largest payload that keeps Σ_j |m_ij|·payload < ACC_LIMIT in every
    static synapse group it feeds (Lava's Dense sums 2m·s in int32, docs/semantics.md §3)."""
    limits: dict[str, int] = {}
    for s in q.synapses():
        if s.plastic or not s.weights.size:
            continue
        row = int(np.max(np.sum(np.abs(s.weights.astype(np.int64)), axis=1)))
        if row:
            limits[s.pre] = min(limits.get(s.pre, ACT_MAX), max(1, ACC_LIMIT // row))
    return limits


def _check_calibration(ng: NeuroGraph, x: np.ndarray) -> None:
    io = ng.io
    x = np.asarray(x)
    if x.dtype.kind not in "iuf":
        raise CompileError(f"calibration data must be real numbers, got {x.dtype}"
                           + (" (the imaginary part would be dropped)" if x.dtype.kind == "c"
                              else ""))
    if x.dtype.kind == "f" and not np.all(np.isfinite(x)):
        raise CompileError("calibration data contains NaN or inf")
    if io.input_kind == "tokens":
        if x.ndim != 2 or x.dtype.kind not in "iu":
            raise CompileError(f"calibration data must be token ids [batch, seq], got {x.dtype}{list(x.shape)}")
        if x.size and (x.min() < 0 or x.max() >= io.vocab):
            raise CompileError(f"calibration token ids must lie in [0, {io.vocab})")
    else:
        n = ng.pop(io.input_pop).size
        if x.ndim != 3 or x.shape[-1] != n:
            raise CompileError(f"calibration data must be [batch, seq, {n}], got {list(x.shape)}")
        if not np.all(np.isfinite(x)):
            raise CompileError("calibration data contains NaN or inf")
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise CompileError("calibration data is empty")
    cap = min((h.t_max for h in ng.heads), default=None)
    if cap is not None and x.shape[1] > cap:
        raise CompileError(f"calibration sequences ({x.shape[1]} tokens) exceed T_max = {cap}")


def _run(m: Module, ctx: PassContext) -> str:
    """The pipeline's ``quantise`` (fixed mode): the fixed-point graph, the report's
    ``quantisation`` section and the 16-bit heads' encodings in ``attention``."""
    m.neuro, report = _quantise(m.neuro, ctx.calibration, strict=ctx.strict,
                                weight_bits=ctx.weight_bits, error_target=ctx.error_target)
    heads = {(h.layer, h.head): h for h in m.neuro.heads}
    for entry in ctx.report.get("attention", []):
        entry["encodings"] = encodings(heads[entry["layer"], entry["head"]])
    ctx.report["quantisation"] = report
    fitted = {a["population"]: a for a in report["activations"]}
    for entry in ctx.report.get("activations", []):
        entry.update({k: v for k, v in fitted.get(entry["population"], {}).items()
                      if k not in ("population", "neuron", "size")})
    return report["summary"]


PASS = Pass("quantise", ir="neuro", requires=("lower",), run=_run,
            enabled=lambda ctx: ctx.precision == "fixed", condition="with precision fixed")
