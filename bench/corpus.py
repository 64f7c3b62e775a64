"""Benchmark: the compiler on the corpus of third-party exports (tests/fixtures/corpus/).

    .venv/bin/python -m bench.corpus [--dir DIR] [--only SUBSTRING] [--no-fixed] [--timeout S]

For every model of DIR/manifest.json (made by tests/fixtures/corpus/make_corpus.py, or
make_heldout.py for a held-out set) it compiles the ONNX file with the current compiler:

- float: icl_compiler.compile(path, precision="float", max_context=<context>), then
  prog.run(stored input) against the stored onnxruntime output, relative error
  max |y - ref| / max |ref| (pass: <= 1e-4);
- fixed (when float passed): precision="fixed", calibration = the stored input (pass: <= 5 %);
- softmax models: whether the CompileError names one of the Softmax nodes (softmax_nodes).

The program gets the model's first input (the token ids or features); auxiliary inputs
(attention masks, position ids) are bound at compile time by their names, as icl-compile does
without --bind. Every output is compared (a model with several outputs gives a tuple); an fp16
model is compared with the float32 reference onnxruntime computes from the same weights. The
context (--max-context) is passed for dynamic-axes models only: a static export has its own. Every exception is caught and classified:
a CompileError is a refusal; any other exception from compile() or run() is a failure of the
compiler and is printed with its type and first line. Prints one line per model, then the
compile rates by family and by exporter, and the distinct refusal reasons with their counts.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import signal
import sys
import time
import warnings

import numpy as np

DEFAULT_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                           "tests", "fixtures", "corpus")
FLOAT_TOL = 1e-4
FIXED_TOL = 0.05


class Timeout(Exception):
    pass


def _alarm(signum, frame):
    raise Timeout()


def first_line(e: BaseException) -> str:
    s = str(e).strip()
    s = s.splitlines()[0] if s else ""
    return s.split(" Hint: Supported ONNX ops")[0]  # the op list is the same for every model


def rel_err(ys, refs) -> float:
    """The largest relative error over the outputs (``ys`` one array or a tuple)."""
    ys = ys if isinstance(ys, tuple) else (ys,)
    if len(ys) != len(refs):
        raise ValueError(f"{len(ys)} outputs, {len(refs)} references")
    worst = 0.0
    for y, ref in zip(ys, refs):
        y = np.asarray(y, dtype=np.float64)
        ref = np.asarray(ref, dtype=np.float64)
        if y.shape != ref.shape:
            raise ValueError(f"output shape {y.shape} != reference {ref.shape}")
        worst = max(worst, float(np.max(np.abs(y - ref)) / max(float(np.max(np.abs(ref))), 1e-30)))
    return worst


def load_io(d: str, e: dict):
    files = e.get("input_files") or {e["inputs"][0]["name"]: e["input_file"]}
    x = np.load(os.path.join(d, next(iter(files.values()))))  # the others are bound by name
    outs = e["output_files"]
    outs = list(outs.values()) if isinstance(outs, dict) else outs
    outs = [np.load(os.path.join(d, f)) for f in outs]
    return x, outs


def run_model(icl, d: str, e: dict, fixed: bool, timeout: int) -> dict:
    """-> {outcome, detail, float_err, fixed_err}. outcome: ok | float_only | float_wrong |
    fixed_wrong... | refused | refused_softmax_named | refused_softmax_unnamed | compiler_error |
    run_error | timeout | missing."""
    r = {"float_err": None, "fixed_err": None}
    path = os.path.join(d, e["file"])
    if not os.path.exists(path):
        return {**r, "outcome": "missing", "detail": f"no file {e['file']}"}
    x, outs = load_io(d, e)
    ctx = (int(e.get("context") or 0) or None) if e.get("axes", "dynamic") == "dynamic" else None
    signal.signal(signal.SIGALRM, _alarm)

    def stage(fn):
        signal.alarm(timeout)
        try:
            return fn()
        finally:
            signal.alarm(0)

    try:
        prog = stage(lambda: icl.compile(path, precision="float", max_context=ctx))
    except icl.CompileError as ex:
        msg = first_line(ex)
        if e.get("expected") == "refuse_softmax":
            nodes = e.get("softmax_nodes") or [e.get("softmax_node") or ""]
            named = any(n and n in str(ex) for n in nodes)  # any of the model's Softmax nodes
            return {**r, "outcome": "refused_softmax_named" if named else "refused_softmax_unnamed",
                    "detail": msg}
        return {**r, "outcome": "refused", "detail": msg}
    except Timeout:
        return {**r, "outcome": "timeout", "detail": f"compile (float) > {timeout}s"}
    except Exception as ex:  # noqa: BLE001 - a traceback from the compiler is its failure
        return {**r, "outcome": "compiler_error", "detail": f"compile: {type(ex).__name__}: {first_line(ex)}"}
    if e.get("expected") == "refuse_softmax":
        r["outcome_note"] = "softmax model compiled"
    try:
        if e.get("dtype") == "float16":  # the reference: float32 from the same weights
            from icl_compiler.runtime.reference import onnxruntime_run
            outs = onnxruntime_run(path, x, prog.io.bound, all_outputs=True)
            outs = list(outs) if isinstance(outs, (tuple, list)) else [outs]
        y = stage(lambda: prog.run(x))
        r["float_err"] = rel_err(y, outs)
    except Timeout:
        return {**r, "outcome": "timeout", "detail": f"run (float) > {timeout}s"}
    except icl.CompileError as ex:
        return {**r, "outcome": "run_refused", "detail": f"run: {first_line(ex)}"}
    except Exception as ex:  # noqa: BLE001
        return {**r, "outcome": "run_error", "detail": f"run (float): {type(ex).__name__}: {first_line(ex)}"}
    if not r["float_err"] <= FLOAT_TOL:
        return {**r, "outcome": "float_wrong", "detail": f"float rel err {r['float_err']:.2e}"}
    if not fixed:
        return {**r, "outcome": "float_ok", "detail": f"float {r['float_err']:.1e}"}
    try:
        progq = stage(lambda: icl.compile(path, precision="fixed", calibration=x, max_context=ctx))
        yq = stage(lambda: progq.run(x))
        r["fixed_err"] = rel_err(yq, outs)
    except Timeout:
        return {**r, "outcome": "float_only", "detail": f"fixed: > {timeout}s"}
    except icl.CompileError as ex:
        return {**r, "outcome": "float_only", "detail": f"fixed refused: {first_line(ex)}"}
    except Exception as ex:  # noqa: BLE001
        return {**r, "outcome": "float_only", "detail": f"fixed: {type(ex).__name__}: {first_line(ex)}"}
    if not r["fixed_err"] <= FIXED_TOL:
        return {**r, "outcome": "float_only",
                "detail": f"float {r['float_err']:.1e}, fixed {r['fixed_err']:.1%} > 5%"}
    return {**r, "outcome": "ok", "detail": f"float {r['float_err']:.1e}, fixed {r['fixed_err']:.2%}"}


def reason_key(detail: str) -> str:
    """A refusal message with its specifics (node names, numbers, shapes) replaced."""
    s = detail.split(" Hint: ")[0]
    s = re.sub(r"'[^']*'", "'…'", s)
    s = re.sub(r'"[^"]*"', '"…"', s)
    s = re.sub(r"\[[^\]]*\]", "[…]", s)
    s = re.sub(r"\d+(\.\d+)?(e-?\d+)?", "#", s)
    return s[:160]


def good(e: dict, r: dict) -> bool:
    """Did the compiler do what the manifest expects today?"""
    if e.get("expected") == "refuse_softmax":
        return r["outcome"] == "refused_softmax_named"
    return r["outcome"] == "ok"


def table(title: str, rows: dict[str, list[bool]]) -> None:
    print(f"\n{title}")
    for k in sorted(rows):
        v = rows[k]
        print(f"  {k:28s} {sum(v):3d}/{len(v):<3d} {100.0 * sum(v) / max(len(v), 1):5.1f} %")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dir", default=DEFAULT_DIR, help="directory with manifest.json (default: the corpus)")
    ap.add_argument("--only", default="", help="only models whose name contains this")
    ap.add_argument("--no-fixed", action="store_true", help="skip the fixed-point compile")
    ap.add_argument("--timeout", type=int, default=180, help="seconds per compile / run (default 180)")
    ap.add_argument("--json", default="", help="also write the per-model results to this file")
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore")
    import icl_compiler as icl

    with open(os.path.join(args.dir, "manifest.json")) as fh:
        man = json.load(fh)
    entries = [e for e in man["models"] if args.only in e["name"]]
    results = []
    t_all = time.perf_counter()
    for e in entries:
        t0 = time.perf_counter()
        try:
            r = run_model(icl, args.dir, e, not args.no_fixed, args.timeout)
        except Exception as ex:  # noqa: BLE001 - e.g. an unreadable stored input
            r = {"outcome": "bench_error", "detail": f"{type(ex).__name__}: {first_line(ex)}",
                 "float_err": None, "fixed_err": None}
        r["seconds"] = round(time.perf_counter() - t0, 2)
        results.append((e, r))
        exp = e.get("expected", "?")
        if exp == "compile_after":
            exp = "after:" + "+".join(e.get("compile_after", []))
        print(f"{e['name']:58s} {exp:24s} {r['outcome']:24s} {r['detail'][:150]}", flush=True)

    print(f"\n{len(results)} models in {time.perf_counter() - t_all:.0f} s")
    counts = collections.Counter(r["outcome"] for _, r in results)
    print("outcomes: " + ", ".join(f"{k} {v}" for k, v in counts.most_common()))
    for kind in ("compile", "refuse_softmax", "compile_after"):
        sel = [(e, r) for e, r in results if e.get("expected") == kind]
        if not sel:
            continue
        n_good = sum(good(e, r) for e, r in sel)
        what = {"compile": "in scope (expected compile): float <= 1e-4 and fixed <= 5 %",
                "refuse_softmax": "softmax (expected refusal naming the Softmax node)",
                "compile_after": "need a future feature (compile_after)"}[kind]
        print(f"{what}: {n_good}/{len(sel)}" + (
            "" if kind != "compile" else
            f"; float alone: {sum(r['outcome'] in ('ok', 'float_ok', 'float_only') for _, r in sel)}/{len(sel)}"))
    insc = [(e, r) for e, r in results if e.get("expected") == "compile"]
    if insc:
        by_fam, by_exp = collections.defaultdict(list), collections.defaultdict(list)
        for e, r in insc:
            by_fam[e["family"]].append(good(e, r))
            by_exp[f"{e['exporter']} {e['opset']}"].append(good(e, r))
        table("in-scope compile rate by family", by_fam)
        table("in-scope compile rate by exporter", by_exp)
    sm = [(e, r) for e, r in results if e.get("expected") == "refuse_softmax"]
    if sm:
        by_fam = collections.defaultdict(list)
        for e, r in sm:
            by_fam[e["family"]].append(good(e, r))
        table("softmax models refused naming their Softmax node, by family", by_fam)
    reasons = collections.Counter()
    for e, r in results:
        if not good(e, r) and e.get("expected") != "compile_after" or r["outcome"] in ("compiler_error", "run_error"):
            reasons[(r["outcome"], reason_key(r["detail"]))] += 1
    if reasons:
        print("\ndistinct reasons (models not doing what is expected; compile_after ones excluded "
              "unless the compiler crashed):")
        for (oc, k), n in reasons.most_common():
            print(f"  {n:3d}  {oc:24s} {k}")
    after = collections.Counter(reason_key(r["detail"]) for e, r in results
                                if e.get("expected") == "compile_after" and r["outcome"] not in ("compiler_error", "run_error"))
    if after:
        print("\ncompile_after models, what the compiler says today:")
        for k, n in after.most_common():
            print(f"  {n:3d}  {k}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump([{"name": e["name"], "expected": e.get("expected"), **r} for e, r in results], fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
