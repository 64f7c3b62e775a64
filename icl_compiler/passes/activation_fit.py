"""Integer responses of the activation neurons in fixed point (a helper of ``quantise``).

An activation neuron integrates its current c (real value c·s_in), takes the 16-bit operand
u = clip(c, ±(2^15 − 1)) and computes, with adds, multiplies, compares and one shift — what a
Loihi 2 neuron microcode program can compute (docs/semantics.md §4):

* **pwl** (GELU, SiLU, sigmoid, tanh, softplus, mish, ELU …): a continuous piecewise-linear
  function of u in hinge form, ``round((c0 + c1·u + Σ_k w_k·max(u − b_k, 0)) / 2^frac)``.  The
  breakpoints b_k equidistribute √|f''| over the whole operand range (dense where the function
  bends, sparse on its linear tails), the knot values are a near-minimax fit (least squares,
  reweighted), and the number of segments is the smallest that keeps the *measured* error —
  the integer response against the exact function at every one of the 2^16 operands — within
  the target: ``error_target × ERROR_FRACTION × max |f|`` over the calibrated input range.
  ``frac`` is the largest that keeps every partial sum inside int32.
* **square** (ReLU², x²): ``round(u² / 2^frac)`` (of max(u, 0) for ReLU²), exact up to the
  final rounding.

:func:`fit` returns the :class:`~icl_compiler.ir.neuro.ActivationParams` and the report entry
(method, segments, measured error, ops per neuron).
"""
from __future__ import annotations

import math

import numpy as np

from ..ir.neuro import ActivationParams
from ..ir.ops import ACTIVATIONS
from ..semantics import fixed as fx

ERROR_FRACTION = 0.1  # an activation may use this share of the program's error target
OPERAND_TARGET = 2**13  # calibrated max of a multiplying neuron's operand (16-bit clip: 4× headroom)
PRODUCT_OPS = 6  # per product neuron and token: two operand clips (4 compares), multiply, shift
MAX_SEGMENTS = 256
SQUARES = ("relu2", "square")
_INT32 = 2**31 - 1
_FIT_POINTS = 4097
_LAWSON_ITERATIONS = 12


def ops_per_neuron(a: ActivationParams) -> int:
    """Microcode operations per neuron and token: the operand clip (2 compares), then c1·u + c0
    (2), per breakpoint a subtract, a compare, a multiply and an add (4), the rounding shift and
    its add (2); square: clip, multiply, round, shift (5)."""
    if a.method == "square":
        return 5
    return 6 + 4 * len(a.breaks)


def square_params(fn: str, in_scale: float, limit: int) -> tuple[ActivationParams, float]:
    """(params, output scale) of a square response: out = round(u² / 2^frac), scale =
    s_in²·2^frac, with the calibrated operand maximum ``OPERAND_TARGET`` mapped below
    ``limit / 16`` (the operand's 4× headroom, squared)."""
    frac = max(0, int(math.ceil(math.log2(OPERAND_TARGET**2 / max(1, limit // 16)))))
    return ActivationParams(fn=fn, method="square", frac=frac), in_scale**2 * 2.0**frac


def _breakpoints(f, lo: float, hi: float, k: int) -> np.ndarray:
    """k − 1 interior breakpoints (real x) equidistributing √|f''| + a floor over [lo, hi]."""
    x = np.linspace(lo, hi, 8193)
    h = x[1] - x[0]
    y = f(x)
    d2 = np.zeros_like(x)
    d2[1:-1] = (y[2:] - 2 * y[1:-1] + y[:-2]) / (h * h)
    rho = np.sqrt(np.abs(d2))
    rho = rho + 1e-3 * max(float(rho.max()), 1e-300)
    cdf = np.concatenate([[0.0], np.cumsum((rho[1:] + rho[:-1]) * 0.5 * h)])
    cdf /= cdf[-1]
    return np.interp(np.arange(1, k) / k, cdf, x)


def _knot_values(f, knots: np.ndarray) -> np.ndarray:
    """Values at the knots of the continuous piecewise-linear near-minimax fit of f (Lawson's
    reweighted least squares on a dense grid)."""
    x = np.linspace(knots[0], knots[-1], _FIT_POINTS)
    x = np.unique(np.concatenate([x, knots]))
    A = np.zeros((len(x), len(knots)))
    seg = np.clip(np.searchsorted(knots, x, side="right") - 1, 0, len(knots) - 2)
    t = (x - knots[seg]) / (knots[seg + 1] - knots[seg])
    A[np.arange(len(x)), seg] = 1 - t
    A[np.arange(len(x)), seg + 1] = t
    y = f(x)
    w = np.ones(len(x)) / len(x)
    v = None
    for _ in range(_LAWSON_ITERATIONS):
        sw = np.sqrt(w)
        v = np.linalg.lstsq(A * sw[:, None], y * sw, rcond=None)[0]
        r = np.abs(A @ v - y)
        if r.max() == 0:
            break
        w = w * (r + 1e-12 * r.max())
        w /= w.sum()
    return v


def _pwl_params(fn: str, f, in_scale: float, out_scale: float, k: int) -> ActivationParams:
    """The hinge-form integer response with k segments over the whole operand range."""
    U = fx.OPERAND_MAX
    inner = np.unique(np.round(_breakpoints(f, -U * in_scale, U * in_scale, k) / in_scale))
    inner = inner[(inner > -U) & (inner < U)]
    knots_u = np.concatenate([[-U], inner, [U]]).astype(np.float64)
    vals = _knot_values(lambda xu: f(xu * in_scale), knots_u) / out_scale  # output units
    s = np.diff(vals) / np.diff(knots_u)  # slope of each segment, output units per operand unit
    c1, w = s[0], np.diff(s)
    c0 = vals[0] - s[0] * knots_u[0]
    # partial sums |c0 + c1·u + Σ_{j≤k} w_j·(u − b_j)⁺| over the operand range bound frac
    u = np.array([-U, U] + list(inner), np.float64)
    acc = c0 + c1 * u
    peak = float(np.max(np.abs(acc)))
    for b, wk in zip(inner, w):
        acc = acc + wk * np.maximum(u - b, 0)
        peak = max(peak, float(np.max(np.abs(acc))))
    frac = int(math.floor(math.log2(_INT32 / (2.0 * peak + 2.0 ** (fx.OPERAND_BITS + 1)))))
    frac = max(0, min(frac, 30))
    sc = 2.0**frac
    return ActivationParams(fn=fn, method="pwl", breaks=[int(b) for b in inner],
                            slopes=[int(round(x * sc)) for x in w], c0=int(round(c0 * sc)),
                            c1=int(round(c1 * sc)), frac=frac)


def _partial_sums_fit(a: ActivationParams, u: np.ndarray) -> bool:
    acc = a.c0 + a.c1 * u
    ok = np.all(np.abs(acc) <= _INT32)
    for b, wk in zip(a.breaks, a.slopes):
        acc = acc + wk * np.maximum(u - b, 0)
        ok = ok and bool(np.all(np.abs(acc) <= _INT32))
    return bool(ok)


def measure(a: ActivationParams, in_scale: float, out_scale: float, x_max: float) -> dict:
    """The integer response against the exact function at every operand: max |error| relative
    to max |f| over the calibrated range |x| ≤ x_max, there and over the whole operand range."""
    f = ACTIVATIONS[a.fn]
    u = np.arange(-fx.OPERAND_MAX, fx.OPERAND_MAX + 1, dtype=np.int64)
    x = u * in_scale
    exact = f(x)
    if a.method == "square":
        y = fx.square(u, a.frac, relu=a.fn == "relu2")
    else:
        y = fx.pwl(u, a.c0, a.c1, a.breaks, a.slopes, a.frac)
    y = np.clip(y, fx.PAYLOAD_MIN, fx.PAYLOAD_MAX) * out_scale
    err = np.abs(y - exact)
    cal = np.abs(x) <= x_max
    ref = max(float(np.max(np.abs(exact[cal]))) if np.any(cal) else 0.0, 1e-30)
    return {"max_error_calibrated": float(err[cal].max()) / ref if np.any(cal) else 0.0,
            "max_error_operand_range": float(err.max()) / ref, "max_abs_f": ref}


def fit(fn: str, in_scale: float, out_scale: float, x_max: float,
        target: float) -> tuple[ActivationParams, dict]:
    """The fewest segments whose measured error (relative to max |f| over |x| ≤ x_max, over the
    whole operand range) is ≤ ``target``; (params, report entry)."""
    f = ACTIVATIONS[fn]

    def trial(k: int):
        a = _pwl_params(fn, f, in_scale, out_scale, k)
        return a, measure(a, in_scale, out_scale, x_max)

    best = None
    k = 1
    while k <= MAX_SEGMENTS:  # doubling, then bisection on the number of segments
        a, m = trial(k)
        if m["max_error_operand_range"] <= target:
            best = (k, a, m)
            break
        k *= 2
    if best is None:
        k = MAX_SEGMENTS
        a, m = trial(k)
        best = (k, a, m)
    else:
        lo, hi = k // 2 + 1, k
        while lo < hi:
            mid = (lo + hi) // 2
            a2, m2 = trial(mid)
            if m2["max_error_operand_range"] <= target:
                hi, best = mid, (mid, a2, m2)
            else:
                lo = mid + 1
    _, a, m = best
    u = np.arange(-fx.OPERAND_MAX, fx.OPERAND_MAX + 1, dtype=np.int64)
    if not _partial_sums_fit(a, u):
        raise ValueError(f"activation {fn}: the integer response overflows int32")
    return a, report_entry(a, m, target)


def report_entry(a: ActivationParams, m: dict, target: float | None) -> dict:
    return {"fn": a.fn, "method": a.method,
            "segments": len(a.breaks) + 1 if a.method == "pwl" else None,
            "frac_bits": a.frac, "target": target,
            "max_error_calibrated": round(m["max_error_calibrated"], 7),
            "max_error_operand_range": round(m["max_error_operand_range"], 7),
            "ops_per_neuron": ops_per_neuron(a)}
