"""`make run`: compile the bundled few-shot model to a Loihi 2 program and evaluate it.

1. Compiles examples/fewshot/model.onnx in fixed point, calibrated on episodes of the
   *training* alphabets (examples/fewshot/omniglot_calib.npz), and prints the resource report.
2. Evaluates few-shot episodes on the two held-out Omniglot alphabets (Greek, Korean; the
   committed pack examples/fewshot/omniglot_heldout.npz, 64 characters x 20 drawers, never seen
   in training) and prints a table in the paper's style: rows 5-way 1-shot, 5-way 5-shot,
   20-way 1-shot; columns Float (onnxruntime), Fixed (NumPy emulator), Lava (fixed point, on the
   first episodes of each row; its integer output arrays are compared with the emulator's bit for
   bit) and the Loihi 2 estimate per episode (latency, energy: an estimate from the program's op
   counts, not a measurement).  Every accuracy cell: accuracy, 95 % Wilson interval, episodes.
3. Writes accuracy against shots (float and fixed) as an SVG next to the program.

--omniglot DIR reads the same alphabets from the Omniglot zips instead (and calibrates on the
same training-alphabet episodes drawn from them).  --digits runs the cross-domain test: sklearn's
8x8 handwritten digits upsampled by the same formula (rotations as extra classes so 20-way
episodes exist; calibration on digits).  The model never saw digits and is at chance on them.

    python -m examples.run [--digits | --omniglot DIR] [--episodes 1000] [--lava-episodes 20]
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent / "fewshot"
sys.path.insert(0, str(HERE))
import data as fsdata  # noqa: E402
import plot as fsplot  # noqa: E402

import icl_compiler as icl  # noqa: E402
from icl_compiler.cli import weight_bits_arg  # noqa: E402
from icl_compiler.runtime.report import format_report  # noqa: E402

TASKS = [(5, 1), (5, 5), (20, 1)]
T_MAX = 26  # the model's context capacity: 5-way 5-shot + query (MODEL_CARD.md)
# accuracy against shots: every (N, K) with N*K + 1 <= T_MAX among N = 5, 10, 20
CURVE_WAYS = (5, 10, 20)
CURVE = [(n, k) for n in CURVE_WAYS for k in range(1, 6) if n * k + 1 <= T_MAX]
PICTURE = "accuracy_vs_shots.svg"


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return (0.0, 1.0)
    p = k / n
    den = 1 + z * z / n
    c = (p + z * z / (2 * n)) / den
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return c - h, c + h


def digit_classes() -> dict[str, np.ndarray]:
    """sklearn digits, plus rotations as new classes (not for 6/9: 180° maps one to the other)."""
    base = fsdata.load_sklearn_digits()
    out = dict(base)
    for name, imgs in base.items():
        if name in ("digit6", "digit9"):
            continue
        sq = imgs.reshape(-1, 28, 28)
        for k in (1, 2, 3):
            out[f"{name}_rot{90 * k}"] = np.rot90(sq, k, axes=(1, 2)).reshape(-1, 784).copy()
    return out


def calibration(domain: dict[str, np.ndarray], n: int = 16, seed: int = 7) -> np.ndarray:
    """5-way 5-shot episodes: the longest sequences (T = 26), where activations peak.  On the
    Omniglot training alphabets this is exactly the committed omniglot_calib.npz."""
    return fsdata.make_episodes(domain, 5, 5, n, np.random.default_rng(seed))[0]


def task_seed(seed: int, n: int, k: int) -> int:
    """The table's rows keep the seeds of MODEL_CARD.md (seed + row index); other points of the
    curve get their own."""
    if (n, k) in TASKS:
        return seed + TASKS.index((n, k))
    return seed + 1000 + 10 * n + k


def predict(y: np.ndarray, n_way: int) -> np.ndarray:
    return y[:, -1, :n_way].argmax(-1)


def run_batched(fn, x: np.ndarray, batch: int, desc: str) -> np.ndarray:
    from tqdm import tqdm

    outs = []
    for i in tqdm(range(0, len(x), batch), desc=desc, leave=False, file=sys.stderr,
                  disable=len(x) <= batch):
        outs.append(fn(x[i:i + batch]))
    return np.concatenate(outs)


def cell(correct: np.ndarray) -> str:
    k, n = int(correct.sum()), len(correct)
    lo, hi = wilson(k, n)
    return f"{100 * k / n:5.1f}% [{100 * lo:4.1f},{100 * hi:5.1f}] n={n}"


def _si(v: float, unit: str) -> str:
    for scale, prefix in ((1.0, ""), (1e-3, "m"), (1e-6, "µ"), (1e-9, "n"), (1e-12, "p")):
        if abs(v) >= scale:
            return f"{v / scale:.3g} {prefix}{unit}"
    return f"{v:.3g} {unit}"


def estimate_cell(report: dict, tokens: int) -> str:
    """The Loihi 2 estimate for one episode of ``tokens`` tokens (the `estimate` pass's
    ``episode_estimate``), or why it is not there."""
    try:
        from icl_compiler.passes.estimate import episode_estimate

        e = episode_estimate(report["estimate"], tokens)
        return f"{_si(e['latency_s'], 's')}, {_si(e['energy_j'], 'J')} ({tokens} tokens)"
    except (ImportError, KeyError):
        return "n/a (estimate not available)"


def evaluate(prog, float_run, classes, tasks, episodes: int, seed: int,
             lava_episodes: int = 0, lava_timeout: float = 600.0) -> dict:
    """Float and fixed accuracy on ``episodes`` episodes of every (N, K) in ``tasks``; on the
    first ``lava_episodes`` of each, also the Lava network (one network per task, for all its
    episodes), whose integer output arrays are compared with the emulator's.  Returns
    {(N, K): {"target", "float", "fixed" (bool arrays: correct), "tokens", and with Lava
    "lava" (correct), "lava_equal" (episodes whose whole [T, 20] output equals the emulator's)}}.
    """
    from tqdm import tqdm

    res = {}
    for n, k in tasks:
        x, target = fsdata.make_episodes(classes, n, k, episodes,
                                         np.random.default_rng(task_seed(seed, n, k)))
        y_float = run_batched(float_run, x, 500, f"float {n}-way {k}-shot")
        pay = run_batched(lambda b: prog.run(b, return_payload=True), x, 100,
                          f"fixed {n}-way {k}-shot")
        r = {"target": target, "tokens": x.shape[1], "float": predict(y_float, n) == target,
             "fixed": predict(prog.dequantise(pay), n) == target,
             "float_eq_fixed": predict(y_float, n) == predict(prog.dequantise(pay), n)}
        if lava_episodes:  # the first episodes, and the emulator's payloads behind Fixed
            r["_lava_in"] = (x[:lava_episodes], pay[:lava_episodes])
        res[(n, k)] = r
    if lava_episodes:
        bar = tqdm(tasks, desc="lava", leave=False, file=sys.stderr)
        for n, k in bar:
            bar.set_description(f"lava {n}-way {k}-shot ({lava_episodes} episodes, one network)")
            r = res[(n, k)]
            x, pay_fixed = r.pop("_lava_in")
            m = len(x)
            pay_lava = prog.run(x, backend="lava", return_payload=True, read_weights=False,
                                timeout=lava_timeout)
            r["lava"] = predict(prog.dequantise(pay_lava), n) == r["target"][:m]
            same_shape = pay_lava.shape == pay_fixed.shape
            r["lava_equal"] = np.array([same_shape and np.array_equal(a, b)
                                        for a, b in zip(pay_lava, pay_fixed)])
        bar.close()
    return res


def format_table(res: dict, report: dict, domain: str, lava_episodes: int,
                 lava_note: str = "") -> str:
    head = ["task", "Float (onnxruntime)", "Fixed (NumPy emulator)",
            f"Lava (first {lava_episodes} episodes)" if lava_episodes else "Lava",
            "Loihi 2 estimate / episode"]
    rows = []
    for (n, k) in TASKS:
        r = res[(n, k)]
        rows.append([f"{n}-way {k}-shot", cell(r["float"]), cell(r["fixed"]),
                     cell(r["lava"]) if "lava" in r else f"n/a{' (' + lava_note + ')' if lava_note else ''}",
                     estimate_cell(report, r["tokens"])])
    widths = [max(len(r[c]) for r in rows + [head]) for c in range(len(head))]
    lines = [f"few-shot accuracy on {domain}", "(95% Wilson intervals; Lava and the estimate: "
             "fixed point)"]
    lines += ["  " + "  ".join(s.ljust(w) for s, w in zip(r, widths)).rstrip()
              for r in [head] + rows]
    fa = np.concatenate([res[t]["float_eq_fixed"] for t in TASKS])
    lines.append(f"\nFixed predicts the same class as Float on {fa.sum()}/{len(fa)} episodes "
                 f"({100 * fa.mean():.1f}%).")
    eq = [res[t]["lava_equal"] for t in TASKS if "lava_equal" in res[t]]
    if eq:
        eq = np.concatenate(eq)
        lines.append(f"Lava = emulator bit for bit on {eq.sum()}/{len(eq)} episodes"
                     + (" (all)" if eq.all() else " — MISMATCH")
                     + ": whole output arrays compared (every position, all 20 integer logits).")
    if "estimate" in report:
        lines.append("Loihi 2 column: an ESTIMATE from the program's op counts and schedule, "
                     "not a measurement\n(report.json → estimate: constants, sources, "
                     "assumptions).")
    return "\n".join(lines)


def curve_svg(res: dict, domain: str) -> str:
    palette = {5: "#1f77b4", 10: "#2ca02c", 20: "#d62728"}
    curves = []
    for n in CURVE_WAYS:
        for kind, dash in (("float", False), ("fixed", True)):
            pts = []
            for (nn, k), r in sorted(res.items()):
                if nn == n:
                    c = r[kind]
                    lo, hi = wilson(int(c.sum()), len(c))
                    pts.append((k, float(c.mean()), lo, hi))
            if pts:
                curves.append({"label": f"{n}-way {kind}", "color": palette[n], "dash": dash,
                               "points": pts})
    n_ep = len(next(iter(res.values()))["float"])
    caption = [
        f"{domain}: {n_ep} episodes per point (95% Wilson intervals).",
        "Float = onnxruntime (solid, dots); fixed = NumPy emulator of the Loihi 2 program (dashed).",
        f"Only N·K+1 ≤ {T_MAX} tokens fit the model's context capacity: 10-way stops at K=2 and",
        "20-way has K=1 only (20-way 2-shot would need 41 tokens).",
    ]
    return fsplot.accuracy_svg(curves, "In-context learning: accuracy against shots", caption)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.splitlines()[0].replace("evaluate it.", "evaluate it on the "
                                                     "held-out Omniglot alphabets (Greek, Korean) "
                                                     "of the committed pack."),
        epilog="Prints the report, the table (Float, Fixed, Lava, Loihi 2 estimate) and writes "
               "the accuracy-vs-shots SVG into --out.")
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--omniglot", metavar="DIR",
                     help="read the held-out alphabets from the Omniglot zip(s) or a folder of "
                          "them instead of the committed pack")
    src.add_argument("--digits", action="store_true",
                     help="cross-domain test instead: scikit-learn's 8x8 digits (+ rotations), "
                          "which the Omniglot-trained model never saw; it is at chance there")
    ap.add_argument("--model", default=str(HERE / "model.onnx"),
                    help="the ONNX model (default: the bundled examples/fewshot/model.onnx)")
    ap.add_argument("--episodes", type=int, default=1000,
                    help="episodes per row and per curve point (Float, Fixed); default 1000")
    ap.add_argument("--lava-episodes", type=int, default=20,
                    help="episodes per row on Lava, the first ones of the same episodes "
                         "(default 20; 0 skips Lava)")
    ap.add_argument("--no-curve", action="store_true", help="skip the accuracy-vs-shots picture")
    ap.add_argument("--weight-bits", type=weight_bits_arg, choices=("auto", 8, 16), default="auto",
                    help="fixed-point weights and K/V (see icl-compile --help; default: auto)")
    ap.add_argument("--seed", type=int, default=2024)
    ap.add_argument("-o", "--out", default="out/fewshot",
                    help="where the program, report.json and the picture are written")
    a = ap.parse_args(argv)
    if argv is None:  # (the command line itself: it replaces the process; after --help)
        from icl_compiler.semantics.blas import rerun_on_better_kernels

        rerun_on_better_kernels()  # (thousands of episodes: worth the right kernels)

    t0 = time.time()
    if a.digits:
        test = digit_classes()
        domain = (f"scikit-learn digits, cross-domain ({len(test)} classes: 10 digits + "
                  "rotations)")
        calib = calibration(test)
        short = "sklearn digits, cross-domain"
    elif a.omniglot:
        chars = fsdata.load_omniglot(a.omniglot)
        train, test = fsdata.split_alphabets(chars)
        domain = (f"Omniglot, held-out alphabets {', '.join(fsdata.held_out_alphabets(chars))} "
                  f"({len(test)} characters, from {a.omniglot})")
        calib = calibration(train)
        short = f"held-out Omniglot alphabets ({', '.join(fsdata.held_out_alphabets(chars))})"
    else:
        test = fsdata.load_pack()
        alph = sorted({k.split("/")[0] for k in test})
        domain = (f"Omniglot, held-out alphabets {', '.join(alph)} ({len(test)} characters, "
                  "examples/fewshot/omniglot_heldout.npz)")
        short = f"held-out Omniglot alphabets ({', '.join(alph)})"
        calib = fsdata.load_calib_pack()
    prog = icl.compile(a.model, precision="fixed", calibration=calib, max_context=T_MAX,
                       weight_bits=a.weight_bits)
    print(format_report(prog.report))
    out = Path(a.out)
    prog.save(out, force=True)
    print(f"\nprogram written to {out}/ (compiled in {time.time() - t0:.1f} s)\n")

    import onnxruntime as ort

    sess = ort.InferenceSession(a.model, providers=["CPUExecutionProvider"])
    float_run = lambda b: sess.run(None, {"x": b})[0]  # noqa: E731
    lava_note = ""
    lava_eps = a.lava_episodes
    if lava_eps:
        from icl_compiler.backends.lava import lava_unavailable_reason

        why = lava_unavailable_reason()
        if why:
            lava_note, lava_eps = "Lava not importable", 0
            print(f"Lava column skipped: {why}")
    res = evaluate(prog, float_run, test, TASKS, a.episodes, a.seed, lava_eps)
    print(format_table(res, prog.report, domain, lava_eps, lava_note))
    pic = None
    if not a.no_curve:
        more = evaluate(prog, float_run, test, [t for t in CURVE if t not in res], a.episodes,
                        a.seed)
        pic = out / PICTURE
        pic.write_text(curve_svg({**{t: res[t] for t in CURVE if t in res}, **more}, short),
                       encoding="utf-8")
    print(f"\ntotal {time.time() - t0:.0f} s")
    print(f"program:  {out}/  (load with icl_compiler.load)")
    print(f"report:   {out}/report.json")
    if (out / "partition.svg").exists():
        print(f"cores:    {out}/partition.svg")
    if pic is not None:
        print(f"picture:  {pic}  (accuracy against shots, float and fixed)")
    eq = [res[t]["lava_equal"] for t in TASKS if "lava_equal" in res[t]]
    return 0 if all(e.all() for e in eq) else 1


if __name__ == "__main__":
    sys.exit(main())
