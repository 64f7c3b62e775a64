"""Benchmark: the Lava backend (Loihi2SimCfg, fixed_pt) — network layouts side by side, a stock Lava
chain with as many processes, and the streaming session.

Model: examples/fewshot/model.onnx with examples/fewshot/calib.npy if present (T_max from its
training record), else the largest test fixture.  In one run, round after round, it measures:

* each bit-exact network layout (``plan.build_plan``): "separate, dense" (the layout before
  issue 15), "separate, neuron" and "merged, neuron" (the default) — Lava processes, ms/step,
  ms/token (whole sequences, pipeline fill included) and the steady state (ms/step × steps per
  token), and that outputs and final K/V equal the emulator's;
* a stock Lava chain (RingBuffer → Dense → … → RingBuffer, fixed_pt) with the same number of
  processes as each layout: the per-step cost of Lava's synchronisation alone;
* a streaming session (``prog.session(backend="lava")``) on one episode: per-token latency, one
  network for the whole stream; with ``--session-tokens N`` (default 100) also a stream of N
  tokens through a small fixture compiled with T_max = N (started once, == the emulator).

    python -m bench.lava [--model PATH] [--batch 2] [--seq N] [--rounds 2] [--session-tokens 100]
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
LAYOUTS = [("separate", "dense"), ("separate", "neuron"), ("merged", "neuron")]
OLD, NEW = LAYOUTS[0], LAYOUTS[-1]


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
        calib = np.load(FEWSHOT.with_name("calib.npy"))
        t_max = a.max_context
        rec = FEWSHOT.with_name("model.train.json")
        if t_max is None and rec.exists():
            t_max = json.loads(rec.read_text()).get("args", {}).get("t_max")
        return FEWSHOT, calib, t_max
    if a.model is None:
        model, meta = _largest_fixture()
        return model, np.load(FIXTURES / f"{meta['name']}.input.npy"), a.max_context or meta["t_max"]
    model = Path(a.model)
    c = model.with_name("calib.npy")
    return model, (np.load(c) if c.exists() else None), a.max_context


def stock_chain_ms_per_step(n_processes: int, steps: int = 60) -> float:
    """ms/step of RingBuffer → (n − 2) × Dense → RingBuffer, fixed_pt, after a start-up step."""
    from icl_compiler.backends.lava import _import_lava

    _import_lava()
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.dense.process import Dense
    from lava.proc.io.sink import RingBuffer as Sink
    from lava.proc.io.source import RingBuffer as Source

    src = Source(data=np.ones((4, steps + 1), np.int32))
    prev = src.s_out
    for _ in range(max(0, n_processes - 2)):
        d = Dense(weights=2 * np.eye(4, dtype=np.int32), num_message_bits=24)
        prev.connect(d.s_in)
        prev = d.a_out
    sink = Sink(shape=(4,), buffer=steps + 1)
    prev.connect(sink.a_in)
    try:
        src.run(condition=RunSteps(num_steps=1), run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
        t0 = time.perf_counter()
        src.run(condition=RunSteps(num_steps=steps))
        return 1000 * (time.perf_counter() - t0) / steps
    finally:
        src.stop()


def _session(prog, x, exact_ref) -> dict:
    """Stream x ([1, T]) through a Lava session: per-token ms, starts, == reference."""
    t0 = time.perf_counter()
    with prog.session(batch=1, backend="lava") as s:
        t_open = time.perf_counter() - t0
        st = s._stream
        t0 = time.perf_counter()
        ys = np.stack([s.step(x[:, t], return_payload=True) for t in range(x.shape[1])], 1)
        dt = time.perf_counter() - t0
        return {"open_s": t_open, "ms_per_token": 1000 * dt / x.shape[1], "period": st.plan.S,
                "starts": st.starts, "steps": st.steps, "processes": st.processes,
                "exact": bool(np.array_equal(ys, exact_ref))}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None)
    ap.add_argument("--max-context", type=int, default=None)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--seq", type=int, default=None, help="tokens per sequence (default: all)")
    ap.add_argument("--rounds", type=int, default=2, help="rounds over the layouts (best kept)")
    ap.add_argument("--session-tokens", type=int, default=100,
                    help="tokens of the long session stream (0: skip it)")
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
    if calib is not None:
        x = np.resize(calib, (a.batch,) + calib.shape[1:])
    else:
        from icl_compiler.runtime.reference import random_inputs

        x = random_inputs(prog, batch=a.batch)
    if a.seq:
        x = x[:, :a.seq]
    x = x.astype(np.int64 if x.dtype.kind in "iu" else np.float32)
    B, T = x.shape[0], x.shape[1]
    y_emu = prog.run(x, backend="numpy", return_payload=True)
    state = prog.last_state
    best: dict = {}
    for _ in range(a.rounds):
        for layout in LAYOUTS:
            y = prog.run(x, backend="lava", return_payload=True, timeout=a.timeout,
                         layout=layout[0], exp_in=layout[1])
            ex = prog.last_lava
            exact = bool(np.array_equal(y, y_emu)) and all(
                np.array_equal(w, state[k]) for k, w in ex["weights"].items())
            r = best.get(layout)
            if r is None or ex["ms_per_step"] < r["ms_per_step"]:
                best[layout] = {"processes": ex["processes"], "ms_per_step": ex["ms_per_step"],
                                "ms_per_token": ex["ms_per_token"], "exact": exact,
                                "steps_per_token": ex["steps_per_token"],
                                "compile_s": ex["seconds"]["compile"]}
            best[layout]["exact"] = best[layout]["exact"] and exact
        for layout in LAYOUTS:
            n = best[layout]["processes"]
            c = stock_chain_ms_per_step(n)
            best[layout]["chain"] = min(best[layout].get("chain", c), c)
    print(f"model {model.relative_to(ROOT) if model.is_relative_to(ROOT) else model}: batch {B} "
          f"x {T} tokens, fixed point {a.weight_bits}-bit, {len(prog.ng.heads)} plastic heads, "
          f"pipeline depth {prog.report['schedule']['pipeline_depth']} (best of {a.rounds} "
          "rounds, all in this run)")
    print(f"  {'layout':<22}{'processes':>10}{'ms/step':>9}{'ms/token':>10}{'steady':>8}"
          f"{'stock chain ms/step':>21}   bit-exact")
    for layout in LAYOUTS:
        r = best[layout]
        tag = " (before)" if layout == OLD else " (default)" if layout == NEW else ""
        print(f"  {', '.join(layout) + tag:<22}{r['processes']:>10}{r['ms_per_step']:>9.2f}"
              f"{r['ms_per_token']:>10.1f}{r['ms_per_step'] * r['steps_per_token']:>8.1f}"
              f"{r['chain']:>14.2f} ({r['processes']} pr.)   {'yes' if r['exact'] else 'NO'}")
    gain = best[OLD]["ms_per_token"] / best[NEW]["ms_per_token"]
    print(f"  default vs before: {gain:.2f}x lower ms/token "
          f"({best[OLD]['ms_per_token']:.1f} -> {best[NEW]['ms_per_token']:.1f})")
    res = {"layouts": {", ".join(k): v for k, v in best.items()}, "ms_per_token_gain": gain}
    # the streaming session on one episode
    sess = _session(prog, x[:1], y_emu[:1])
    print(f"  session (1 episode, {T} tokens): {sess['ms_per_token']:.1f} ms/token "
          f"({sess['period']} steps per token), opened in {sess['open_s']:.2f} s, "
          f"{sess['starts']} network start(s), {sess['processes']} processes, "
          f"== emulator: {'yes' if sess['exact'] else 'NO'}")
    res["session"] = sess
    if a.session_tokens:
        path = FIXTURES / "tok_identity_trilmul_1l1h.onnx"  # its mask is built at run time
        xf = np.load(FIXTURES / "tok_identity_trilmul_1l1h.input.npy")
        small = icl.compile(str(path), precision="fixed", calibration=xf,
                            max_context=a.session_tokens)
        xs = np.random.default_rng(0).integers(0, small.io.vocab, size=(1, a.session_tokens))
        long = _session(small, xs, small.run(xs, return_payload=True))
        print(f"  session of {a.session_tokens} tokens ({path.stem}, T_max = "
              f"{a.session_tokens}): {long['starts']} network start(s), {long['steps']} Lava "
              f"steps, {long['ms_per_token']:.1f} ms/token, == emulator: "
              f"{'yes' if long['exact'] else 'NO'}")
        res["session_long"] = long
    return res


if __name__ == "__main__":
    main()
