"""Benchmark: NumPy emulator tokens/s (float, fixed 8-bit, fixed 16-bit) vs onnxruntime on the same
model and batch, measured interleaved in one run; the streaming session's per-token latency; the
fixed auto-bits compile with the sequence-parallel and the token-by-token interpreter.

onnxruntime runs whole sequences at once (its natural use, recomputing nothing); the emulator
runs the neuromorphic graph: sequence-parallel (the default of ``Program.run``), and, for
reference, token by token (``mode="token"``, the definition it is bit-exact with — checked here
on the benchmark batch).  Each round times every engine once, in turn, with a pause between them
(PAUSE) so that onnxruntime's and OpenBLAS's spinning worker threads do not run into the next
measurement; the figure
is the best round of each.  Ratios = emulator tokens/s / onnxruntime tokens/s.

    python -m bench.emulator [--model PATH] [--batch 64] [--repeat 15]
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

import icl_compiler as icl
from icl_compiler.semantics import blas
from icl_compiler.semantics.interpreter import Interpreter

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = ROOT / "examples" / "fewshot" / "model.onnx"
FALLBACK = ROOT / "tests" / "fixtures" / "tok_relu_fillneg_2l2h_ln_pos.onnx"
PAUSE = 0.3  # s between engines: OpenBLAS and onnxruntime worker threads spin for ~0.1 s after a run (with 0.05 s, onnxruntime often ran at a third of its speed)


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def interleaved(fns: dict, repeat: int) -> dict[str, float]:
    """Best time of each function over ``repeat`` rounds, the functions timed in turn."""
    best = {k: float("inf") for k in fns}
    for _ in range(repeat):
        for k, fn in fns.items():
            time.sleep(PAUSE)
            best[k] = min(best[k], timed(fn))
    return best


def inputs_for(prog, batch: int, seed: int = 0) -> np.ndarray:
    from icl_compiler.runtime.reference import random_inputs

    return random_inputs(prog, batch=batch, seq=prog.t_max, seed=seed)


def compile_fixed(model, calib, max_context, mode: str):
    """A fixed auto-bits compile whose quantiser runs the interpreter in ``mode``: (seconds, program)."""
    old = Interpreter.default_mode
    Interpreter.default_mode = mode
    try:
        t0 = time.perf_counter()
        prog = icl.compile(model, precision="fixed", calibration=calib, max_context=max_context)
        return time.perf_counter() - t0, prog
    finally:
        Interpreter.default_mode = old


def same_program(a, b) -> bool:
    from icl_compiler.ir import neuro_serialize

    da, wa = neuro_serialize.to_dict(a.ng)
    db, wb = neuro_serialize.to_dict(b.ng)
    return da == db and wa.keys() == wb.keys() and all(np.array_equal(wa[k], wb[k]) for k in wa)


def host() -> str:
    """The CPU and the BLAS kernels numpy runs on: the ratios depend on both (onnxruntime computes
    in float32, the emulator's float mode in float64, and OpenBLAS picks its kernels at run time)."""
    import platform

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            info = {k.strip(): v.strip() for k, v in (line.split(":", 1) for line in f
                                                         if ":" in line)}
        cpu = " ".join(info.get("model name", cpu).split()) + \
            f" (family {info.get('cpu family', '?')}, model {info.get('model', '?')})"
    except OSError:
        pass
    return f"{cpu}; {blas.describe()}"


def fast_layouts() -> str:
    """Which one-call float layouts the run used (products.one_call_exact / whole_call_exact)."""
    from icl_compiler.semantics import products

    parts = []
    for name, seen in (("static products", products._ONE_CALL),
                       ("head reads", products._WHOLE_CALL)):
        parts.append(f"{name} one call for {sum(seen.values())} of {len(seen)} shapes")
    return "; ".join(parts)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(DEFAULT_MODEL if DEFAULT_MODEL.exists() else FALLBACK))
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--max-context", type=int, default=None,
                    help="context capacity (default: 26 for the few-shot model, else 16)")
    a = ap.parse_args(argv)
    if argv is None:  # (the command line itself: it replaces the process; after --help)
        blas.rerun_on_better_kernels()
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
    fns = {"onnxruntime": lambda: sess.run(None, feed)}
    for prec, prog in progs.items():
        fns[prec] = (lambda p: lambda: p.run(x, return_payload=True))(prog)
    best = interleaved(fns, a.repeat)
    t_ort = best.pop("onnxruntime")
    print(f"host: {host()}")
    print(f"model {Path(a.model).name}: batch {x.shape[0]} x {x.shape[1]} tokens (best of "
          f"{a.repeat} interleaved rounds); float: {fast_layouts()} (checked bit-exact on this "
          f"BLAS, else per token)")
    print(f"  {'engine':<26}{'tokens/s':>12}{'vs onnxruntime':>17}   bit-exact with token-by-token")
    print(f"  {'onnxruntime (whole seq)':<26}{tokens / t_ort:12.0f}{'1.00x':>17}")
    res = {"onnxruntime_tokens_per_s": tokens / t_ort}
    for prec, prog in progs.items():
        t = best[prec]
        emu_tok = Interpreter(prog.ng)
        t0 = time.perf_counter()
        y_tok, st_tok = emu_tok.run(x, mode="token")
        t_tok = time.perf_counter() - t0
        emu_seq = Interpreter(prog.ng)
        y_seq, st_seq = emu_seq.run(x)
        exact = (np.array_equal(y_tok, y_seq) and st_tok == st_seq
                 and all(np.array_equal(emu_tok.last_state[k], emu_seq.last_state[k])
                         for k in emu_tok.last_state))
        key = prec.replace(" ", "_").replace("-", "")
        res[f"emulator_{key}_tokens_per_s"] = tokens / t
        res[f"emulator_{key}_ratio"] = t_ort / t
        print(f"  {'emulator ' + prec:<26}{tokens / t:12.0f}{f'{t_ort / t:.3f}x':>17}   "
              f"{'yes' if exact else 'NO'} (outputs, stats, K/V; token-by-token "
              f"{tokens / t_tok:.0f} tokens/s)")
    # streaming session: one token per sequence per step
    prog = progs["fixed 8-bit"]
    s = prog.session(batch=x.shape[0])
    t0 = time.perf_counter()
    ys = [s.step(x[:, t], return_payload=True) for t in range(x.shape[1])]
    dt = time.perf_counter() - t0
    same = np.array_equal(np.stack(ys, 1), prog.run(x, return_payload=True))
    res["session_ms_per_step"] = 1000 * dt / x.shape[1]
    print(f"  session (fixed 8-bit, numpy): {1000 * dt / x.shape[1]:.2f} ms per step of "
          f"{x.shape[0]} tokens ({1000 * dt / tokens:.3f} ms/token); T steps == run(): "
          f"{'yes' if same else 'NO'}")
    # fixed auto-bits compile: the quantiser's calibration and auto-bits runs, both ways
    t_seq, p_seq = compile_fixed(a.model, calib, a.max_context, "sequence")
    t_tok, p_tok = compile_fixed(a.model, calib, a.max_context, "token")
    t_seq = min(t_seq, compile_fixed(a.model, calib, a.max_context, "sequence")[0])
    q = p_seq.report["quantisation"]["weight_bits"]
    res.update(compile_fixed_s=t_seq, compile_fixed_token_s=t_tok)
    print(f"  fixed auto-bits compile ({q}-bit chosen): {t_seq:.2f} s sequence-parallel vs "
          f"{t_tok:.2f} s token-by-token ({t_tok / t_seq:.1f}x); identical program: "
          f"{'yes' if same_program(p_seq, p_tok) else 'NO'}")
    return res


if __name__ == "__main__":
    main()
