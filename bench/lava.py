"""Benchmark: the Lava backend (Loihi2SimCfg, fixed_pt) vs the NumPy emulator on the same sequences.

Model: examples/fewshot/model.onnx with examples/fewshot/calib.npy if present (T_max from its
training record), else the largest test fixture.  Prints Lava ms/token (stepping only: whole
sequences including pipeline fill, and steady state = ms/step × steps/token), steps per token,
pipeline depth, the number of Lava processes (each an OS process), compile/start-up time, and
the emulator's ms/token on the same batch, and checks that both outputs are bit-identical.
``--fresh`` also measures a fresh network per sequence (the alternative to the on-chip K/V
reset between sequences); ``--float`` also runs float mode.

    python -m bench.lava [--model PATH] [--batch 2] [--seq N] [--fresh] [--float]
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

import icl_compiler as icl

ROOT = Path(__file__).resolve().parents[1]
FEWSHOT = ROOT / "examples" / "fewshot" / "model.onnx"
FIXTURES = ROOT / "tests" / "fixtures"


def _largest_fixture() -> tuple[Path, dict]:
    man = json.loads((FIXTURES / "manifest.json").read_text())
    man = [m for m in man if not m["softmax"]]

    def size(m):
        f = FIXTURES / m["file"]
        extra = FIXTURES / (m.get("data_file") or "-")
        return f.stat().st_size + (extra.stat().st_size if extra.is_file() else 0)

    m = max(man, key=size)
    return FIXTURES / m["file"], m


def _setup(a):
    if a.model is None and FEWSHOT.exists():
        model = FEWSHOT
        calib = np.load(FEWSHOT.with_name("calib.npy"))
        t_max = a.max_context
        rec = FEWSHOT.with_name("model.train.json")
        if t_max is None and rec.exists():
            t_max = json.loads(rec.read_text()).get("args", {}).get("t_max")
        return model, calib, t_max
    if a.model is None:
        model, meta = _largest_fixture()
        calib = np.load(FIXTURES / f"{meta['name']}.input.npy")
        return model, calib, a.max_context or meta["t_max"]
    model = Path(a.model)
    c = model.with_name("calib.npy")
    return model, (np.load(c) if c.exists() else None), a.max_context


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None)
    ap.add_argument("--max-context", type=int, default=None)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--seq", type=int, default=None, help="tokens per sequence (default: all)")
    ap.add_argument("--fresh", action="store_true",
                    help="also run with a fresh network per sequence")
    ap.add_argument("--float", action="store_true", help="also run float mode")
    ap.add_argument("--exp-in", choices=("dense", "neuron", "both"), default="both",
                    help="where fixed-point synapse exponents are applied (see "
                         "backends/lava/plan.py); both: dense, then neuron")
    ap.add_argument("--timeout", type=float, default=1800.0)
    ap.add_argument("--weight-bits", type=int, choices=(8, 16), default=8,
                    help="int8 synapses per weight and per K/V entry (default: 8)")
    a = ap.parse_args(argv)
    from icl_compiler.backends.lava import lava_unavailable_reason

    why = lava_unavailable_reason()
    if why:
        print(f"skipped: {why}")
        return {"skipped": why}
    model, calib, t_max = _setup(a)
    prog = icl.compile(str(model), precision="fixed", calibration=calib, max_context=t_max,
                       weight_bits=a.weight_bits)
    print(f"fixed point, {a.weight_bits}-bit weights and K/V")
    if calib is not None:
        x = np.resize(calib, (a.batch,) + calib.shape[1:])
    else:
        from icl_compiler.runtime.reference import random_inputs

        x = random_inputs(prog, batch=a.batch)
    if a.seq:
        x = x[:, :a.seq]
    x = x.astype(np.int64 if x.dtype.kind in "iu" else np.float32)
    B, T = x.shape[0], x.shape[1]
    n_tok = B * T
    t0 = time.perf_counter()
    y_emu = prog.run(x, backend="numpy", return_payload=True)
    t_emu = time.perf_counter() - t0
    first = "neuron" if a.exp_in == "neuron" else "dense"
    t0 = time.perf_counter()
    y_lava = prog.run(x, backend="lava", return_payload=True, timeout=a.timeout, exp_in=first)
    wall = time.perf_counter() - t0
    ex = prog.last_lava
    exact = bool(np.array_equal(y_lava, y_emu))
    sec = ex["seconds"]
    print(f"model {model.relative_to(ROOT) if model.is_relative_to(ROOT) else model}: "
          f"batch {B} x {T} tokens, fixed point, {len(prog.ng.heads)} plastic heads")
    print(f"  synapse exponents in  {first} (exp_in={first!r})")
    print(f"  Lava processes        {ex['processes']} ({ex['os_processes']} OS processes with "
          f"the runtime service): "
          + ", ".join(f"{k} {v}" for k, v in ex["process_counts"].items()))
    print(f"  steps/token           {ex['steps_per_token']} (schedule: "
          f"{prog.report['schedule']['steps_per_token']}), pipeline depth "
          f"{ex['pipeline_depth']}, {ex['steps_per_sequence']} steps per {T}-token sequence")
    print(f"  Lava ms/token         {ex['ms_per_token']:.1f} (whole sequences incl. pipeline "
          f"fill), steady state {ex['ms_per_step'] * ex['steps_per_token']:.1f} "
          f"({ex['ms_per_step']:.2f} ms/step)")
    print(f"  Lava set-up           compile+start {sec['compile']:.2f} s, reading K/V weights "
          f"and outputs {sec['read']:.2f} s, stop {sec['stop']:.2f} s, wall {wall:.2f} s")
    print(f"  emulator ms/token     {1000 * t_emu / n_tok:.3f} (same {B} sequences, batched)")
    print(f"  bit-exact             {'yes' if exact else 'NO'}")
    res = {"model": str(model), "batch": B, "tokens": T, "processes": ex["processes"],
           "os_processes": ex["os_processes"], "steps_per_token": ex["steps_per_token"],
           "pipeline_depth": ex["pipeline_depth"], "lava_ms_per_token": ex["ms_per_token"],
           "lava_ms_per_step": ex["ms_per_step"], "lava_compile_s": sec["compile"],
           "lava_wall_s": wall, "emulator_ms_per_token": 1000 * t_emu / n_tok,
           "bit_exact": exact}
    if a.exp_in == "both":
        y3 = prog.run(x, backend="lava", return_payload=True, timeout=a.timeout, exp_in="neuron")
        ex3 = prog.last_lava
        print(f"  exp_in='neuron'       {ex3['processes']} Lava processes, "
              f"{ex3['ms_per_token']:.1f} ms/token (steady state "
              f"{ex3['ms_per_step'] * ex3['steps_per_token']:.1f}, {ex3['ms_per_step']:.2f} "
              f"ms/step), {'bit-exact' if np.array_equal(y3, y_emu) else 'DIFFERENT'}")
        res.update(neuron_processes=ex3["processes"], neuron_ms_per_token=ex3["ms_per_token"],
                   neuron_ms_per_step=ex3["ms_per_step"])
    if a.fresh:
        t0 = time.perf_counter()
        y2 = prog.run(x, backend="lava", return_payload=True, timeout=a.timeout,
                      fresh_network=True)
        wall2 = time.perf_counter() - t0
        ex2 = prog.last_lava
        print(f"  fresh network/seq     wall {wall2:.2f} s (vs {wall:.2f} s with the on-chip "
              f"reset), compile+start {ex2['seconds']['compile']:.2f} s in all, "
              f"{'bit-exact' if np.array_equal(y2, y_emu) else 'DIFFERENT'}")
        res["fresh_wall_s"] = wall2
    if a.float:
        pf = icl.compile(str(model), precision="float", max_context=t_max)
        t0 = time.perf_counter()
        yf = pf.run(x, backend="lava", timeout=a.timeout)
        wallf = time.perf_counter() - t0
        ref = pf.run(x)
        err = float(np.max(np.abs(yf - ref)) / max(np.max(np.abs(ref)), 1e-30))
        exf = pf.last_lava
        print(f"  float mode            {exf['processes']} processes, "
              f"{exf['ms_per_token']:.1f} ms/token, wall {wallf:.2f} s, rel. error vs "
              f"emulator {err:.2g}")
        res.update(float_ms_per_token=exf["ms_per_token"], float_rel_err=err)
    return res


if __name__ == "__main__":
    main()
