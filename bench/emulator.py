"""Benchmark: NumPy emulator tokens/s (float and fixed) vs onnxruntime on the same model and batch.

onnxruntime runs whole sequences at once (its natural use, recomputing nothing); the emulator
streams tokens one at a time through the neuromorphic graph, as the chip would.  Both numbers are
printed side by side with their ratio.

    python -m bench.emulator [--model PATH] [--batch 64] [--repeat 3]
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

import icl_compiler as icl

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = ROOT / "examples" / "fewshot" / "model.onnx"
FALLBACK = ROOT / "tests" / "fixtures" / "tok_relu_fillneg_2l2h_ln_pos.onnx"


def best_of(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def inputs_for(prog, batch: int, seed: int = 0) -> np.ndarray:
    from icl_compiler.runtime.reference import random_inputs

    return random_inputs(prog, batch=batch, seq=prog.t_max, seed=seed)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(DEFAULT_MODEL if DEFAULT_MODEL.exists() else FALLBACK))
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--max-context", type=int, default=None,
                    help="context capacity (default: 26 for the few-shot model, else 16)")
    a = ap.parse_args(argv)
    if a.max_context is None:
        a.max_context = 26 if Path(a.model) == DEFAULT_MODEL else 16
    calib_path = Path(a.model).with_name("calib.npy")
    calib = np.load(calib_path) if calib_path.exists() else None
    progs = {"float": icl.compile(a.model, precision="float", max_context=a.max_context)}
    for bits in (8, 16):  # one and two int8 synapses per weight and per K/V entry
        progs[f"fixed {bits}-bit"] = icl.compile(a.model, precision="fixed", calibration=calib,
                                                 max_context=a.max_context, weight_bits=bits)
    x = inputs_for(progs["float"], a.batch)
    if calib is not None and x.ndim == 3:
        x = np.resize(calib, (a.batch,) + calib.shape[1:]).astype(np.float32)
    tokens = x.shape[0] * x.shape[1]
    import onnxruntime as ort

    sess = ort.InferenceSession(a.model, providers=["CPUExecutionProvider"])
    feed = {sess.get_inputs()[0].name: x}
    t_ort = best_of(lambda: sess.run(None, feed), a.repeat)  # session built once, outside
    print(f"model {Path(a.model).name}: batch {x.shape[0]} x {x.shape[1]} tokens "
          f"(best of {a.repeat})")
    print(f"  {'engine':<24}{'tokens/s':>12}{'vs onnxruntime':>18}")
    print(f"  {'onnxruntime (whole seq)':<24}{tokens / t_ort:12.0f}{'1.00x':>18}")
    res = {"onnxruntime_tokens_per_s": tokens / t_ort}
    for prec, prog in progs.items():
        t = best_of(lambda: prog.run(x), a.repeat)
        res[f"emulator_{prec.replace(' ', '_')}_tokens_per_s"] = tokens / t
        print(f"  {'emulator ' + prec:<24}{tokens / t:12.0f}{f'{t_ort / t:.3f}x':>18}")
    return res


if __name__ == "__main__":
    main()
