"""Benchmark: the integer responses of the activation neurons (fixed point).

    .venv/bin/python -m bench.activations [--target T] [--range X ...]

For every smooth activation the compiler maps (icl_compiler.ir.ops.ACTIVATIONS) and every
calibrated input range |x| <= X, it fits the response the quantiser would choose (operand 2^13 at
X, output 2^20 at max |f|; passes/activation_fit.py) and prints the method, the number of
segments, the microcode operations per neuron and the measured error: the integer response
against the exact function at every one of the 2^16 operands, relative to max |f| on the
calibrated range (there, and over the whole operand range |x| <= 4X), next to the target
(error_target x ERROR_FRACTION = 0.5 % by default).
"""
from __future__ import annotations

import argparse
import time

import numpy as np


def main(argv=None) -> int:
    from icl_compiler.ir.ops import ACTIVATIONS
    from icl_compiler.options import ERROR_TARGET
    from icl_compiler.passes import activation_fit as af

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--target", type=float, default=ERROR_TARGET * af.ERROR_FRACTION)
    ap.add_argument("--range", type=float, nargs="+", default=[2.0, 4.0, 8.0])
    args = ap.parse_args(argv)
    print(f"target: max error <= {args.target:.2%} of max|f| on the calibrated range")
    print(f"{'function':11s} {'|x|<=':>6s} {'method':7s} {'segments':>8s} {'ops/neuron':>10s} "
          f"{'err (calibrated)':>16s} {'err (operand range)':>19s} {'fit ms':>7s}")
    for fn, f in ACTIVATIONS.items():
        for X in args.range:
            y_max = float(np.max(np.abs(f(np.linspace(-X, X, 2001)))))
            s_in = X / af.OPERAND_TARGET
            t0 = time.perf_counter()
            if fn in af.SQUARES:
                a, s_out = af.square_params(fn, s_in, 2**22)
                m = af.measure(a, s_in, s_out, X)
                e = af.report_entry(a, m, None)
            else:
                a, e = af.fit(fn, s_in, y_max / 2**20, X, args.target)
            ms = (time.perf_counter() - t0) * 1000
            seg = "-" if e["segments"] is None else str(e["segments"])
            print(f"{fn:11s} {X:6g} {a.method:7s} {seg:>8s} {e['ops_per_neuron']:>10d} "
                  f"{e['max_error_calibrated']:>16.4%} {e['max_error_operand_range']:>19.4%} "
                  f"{ms:7.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
