"""`make run`: compile the bundled few-shot model to a Loihi 2 program and evaluate it.

1. Compiles examples/fewshot/model.onnx in fixed point (calibrated on data from the evaluation
   domain, including the longest episodes) and prints the resource report.
2. Evaluates few-shot episodes and prints a table in the paper's style: rows 5-way 1-shot,
   5-way 5-shot, 20-way 1-shot; columns Float (onnxruntime), Fixed (NumPy emulator), Lava
   (fixed point, on a stated smaller subset).  Every cell: accuracy, 95 % Wilson interval and
   the number of episodes.

Without --omniglot the episodes come from scikit-learn's handwritten digits (cross-domain: the
model never saw digits), upsampled to 28×28 with the same formula.  Digits have 10 classes; to
serve 20-way episodes, rotated digits (90°, 180°, 270°) are extra classes, except 6 and 9, whose
180° rotations are each other.  With --omniglot PATH the episodes use the held-out alphabets of
the Omniglot zips at PATH and calibration uses episodes from the training alphabets.

    python -m examples.run [--omniglot DIR] [--episodes 1000] [--lava-episodes 20]
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

import icl_compiler as icl  # noqa: E402
from icl_compiler.cli import weight_bits_arg  # noqa: E402
from icl_compiler.runtime.report import format_report  # noqa: E402

TASKS = [(5, 1), (5, 5), (20, 1)]
T_MAX = 26  # the model's context capacity: 5-way 5-shot + query


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
    """5-way 5-shot episodes: the longest sequences (T = 26), where activations peak."""
    return fsdata.make_episodes(domain, 5, 5, n, np.random.default_rng(seed))[0]


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


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--omniglot", help="Omniglot zip(s) or a folder of them (held-out alphabets)")
    ap.add_argument("--model", default=str(HERE / "model.onnx"))
    ap.add_argument("--episodes", type=int, default=1000, help="episodes per row (Float, Fixed)")
    ap.add_argument("--lava-episodes", type=int, default=20,
                    help="episodes per row on Lava (a subset of the same episodes)")
    ap.add_argument("--weight-bits", type=weight_bits_arg, choices=("auto", 8, 16), default="auto",
                    help="fixed-point weights and K/V (see icl-compile --help; default: auto)")
    ap.add_argument("--seed", type=int, default=2024)
    ap.add_argument("-o", "--out", default="out/fewshot", help="where the program is written")
    a = ap.parse_args(argv)

    t0 = time.time()
    if a.omniglot:
        chars = fsdata.load_omniglot(a.omniglot)
        train, test = fsdata.split_alphabets(chars)
        domain = f"Omniglot, held-out alphabets {fsdata.held_out_alphabets(chars)} ({len(test)} characters)"
        calib_src = train
    else:
        test = digit_classes()
        domain = (f"scikit-learn digits, cross-domain ({len(test)} classes: 10 digits + "
                  "rotations)")
        calib_src = test
    calib = calibration(calib_src)
    prog = icl.compile(a.model, precision="fixed", calibration=calib, max_context=T_MAX,
                       weight_bits=a.weight_bits)
    print(format_report(prog.report))
    prog.save(a.out, force=True)
    print(f"\nprogram written to {a.out}/ (compiled in {time.time() - t0:.1f} s)\n")

    import onnxruntime as ort

    sess = ort.InferenceSession(a.model, providers=["CPUExecutionProvider"])
    lava_note = ""
    try:
        import lava  # noqa: F401
    except ImportError:
        lava_note = "Lava not importable (needs Python 3.10 and lava-nc)"
    rows = []
    agree_fixed, agree_lava = [], []
    for i, (n, k) in enumerate(TASKS):
        x, target = fsdata.make_episodes(test, n, k, a.episodes, np.random.default_rng(a.seed + i))
        y_float = run_batched(lambda b: sess.run(None, {"x": b})[0], x, 500, "float")
        y_fixed = run_batched(lambda b: prog.run(b), x, 100, f"fixed {n}-way {k}-shot")
        p_float, p_fixed = predict(y_float, n), predict(y_fixed, n)
        agree_fixed.append(p_float == p_fixed)
        row = [f"{n}-way {k}-shot", cell(p_float == target), cell(p_fixed == target)]
        if lava_note or a.lava_episodes == 0:
            row.append("n/a")
        else:
            m = min(a.lava_episodes, len(x))
            y_lava = run_batched(lambda b: prog.run(b, backend="lava"), x[:m], 5,
                                 f"lava {n}-way {k}-shot")
            p_lava = predict(y_lava, n)
            agree_lava.append(p_lava == p_fixed[:m])
            row.append(cell(p_lava == target[:m]))
        rows.append(row)
    head = ["task", "Float (onnxruntime)", "Fixed (NumPy emulator)",
            f"Lava (fixed, first {a.lava_episodes} episodes)"]
    widths = [max(len(r[c]) for r in rows + [head]) for c in range(4)]
    print(f"few-shot accuracy on {domain}; 95% Wilson intervals")
    for r in [head] + rows:
        print("  " + "  ".join(s.ljust(w) for s, w in zip(r, widths)))
    fa = np.concatenate(agree_fixed)
    print(f"\nFixed predicts the same class as Float on {fa.sum()}/{len(fa)} episodes "
          f"({100 * fa.mean():.1f}%).")
    if agree_lava:
        la = np.concatenate(agree_lava)
        print(f"Lava predicts the same class as the Fixed emulator on {la.sum()}/{len(la)} "
              "episodes" + (" (all)." if la.all() else " — MISMATCH."))
    elif lava_note:
        print(lava_note)
    print(f"total {time.time() - t0:.0f} s")
    return 0 if (not agree_lava or np.concatenate(agree_lava).all()) else 1


if __name__ == "__main__":
    sys.exit(main())
