"""icl-compile: compile an ONNX transformer into a Loihi 2 program with plastic attention.

Exit codes: 0 ok, 1 the run failed, 2 usage, 3 the model cannot be compiled or the output
directory cannot be written, 4 verification failed.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from .compiler import STAGES
from .errors import CompileError, OptionError
from .options import LOWERINGS, PRECISIONS, WEIGHT_BITS, CompileOptions, positive_number
from .runtime.outdir import OutputError
from .runtime.program import check_output_dir, silence_slow_kernels, slow_kernels_note

EXIT_OK, EXIT_RUN, EXIT_USAGE, EXIT_COMPILE, EXIT_VERIFY = 0, 1, 2, 3, 4
TOLERANCE = {"float": 1e-4, "fixed": 0.05}  # relative: max|y - ref| / max|ref|

EPILOG = """\
examples:
  icl-compile model.onnx -o out                      float program + out/report.json
  icl-compile model.onnx --precision fixed --calibrate x.npy --run x.npy --verify
  icl-compile model.onnx --dump-ir attention         print the IR after a pass

exit codes: 0 ok, 1 the run failed (Lava timeout/crash), 2 usage error, 3 the model cannot
be compiled or the output directory cannot be written, 4 verification failed.
Inputs (.npy) are shaped like the ONNX input: token ids [batch, seq] or features
[batch, seq, F].  The program runs each sequence token by token with fresh plastic state.
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line + exit 2, no traceback
        self.print_usage(sys.stderr)
        print(f"icl-compile: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="icl-compile", description=__doc__.splitlines()[0], epilog=EPILOG,
                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="the ONNX model (external data must sit in its folder)")
    p.add_argument("-o", "--out", default="out", help="output directory (default: ./out); "
                   "written atomically, holds report.json and the program; only the compiler's "
                   "files in it are replaced, yours are kept; a symlink is written through")
    p.add_argument("--force", action="store_true",
                   help="write into a non-empty output directory that holds no previous program "
                        "(its files are kept)")
    p.add_argument("--precision", choices=PRECISIONS, default="float",
                   help="float: exact (float64); fixed: Loihi 2 integers (default: float)")
    p.add_argument("--backend", choices=("numpy", "lava"), default="numpy",
                   help="backend for --run and --verify (default: numpy)")
    p.add_argument("--calibrate", metavar="X.npy",
                   help="inputs used to size fixed-point payloads (default: 16 random "
                        "sequences: uniform token ids, or features uniform in [0, 1])")
    p.add_argument("--run", metavar="X.npy", help="run the program on X and write OUT/output.npy")
    p.add_argument("--verify", action="store_true",
                   help="compare with onnxruntime (on --run data, else calibration data, else "
                        "random inputs); exit 4 above tolerance "
                        f"(float {TOLERANCE['float']:g}, fixed {TOLERANCE['fixed']:g} relative)")
    p.add_argument("--tolerance", type=float, metavar="REL",
                   help="relative tolerance for --verify (default: float 1e-4, fixed 0.05)")
    p.add_argument("--max-context", type=int, metavar="N",
                   help="context capacity T_max (needed when the sequence axis is dynamic; at "
                        "most the target's neurons and 1048576)")
    p.add_argument("--lowering", choices=LOWERINGS, default="auto",
                   help="attention lowering (auto picks kv_slot; fast_weight is float-only)")
    p.add_argument("--target", choices=("loihi2",), default="loihi2", help="hardware target")
    p.add_argument("--system", choices=("oheo-gulch", "kapoho-point", "hala-point"),
                   help="Loihi 2 system (sets the chip count)")
    p.add_argument("--chips", type=int, metavar="N", help="number of chips available")
    p.add_argument("--cores-per-chip", type=int, metavar="N",
                   help="lower the neuro cores per chip (a Loihi 2 chip has 128)")
    p.add_argument("--weight-bits", type=weight_bits_arg, choices=WEIGHT_BITS, default="auto",
                   help="fixed mode: 8 = one int8 mantissa per weight and one int8 plastic synapse "
                        "per K/V entry; 16 = a second int8 synapse group holds each matrix's "
                        "residual and K/V get a low half too (2x synapse memory, ~100x smaller "
                        "error); auto = 8 unless its output error on the calibration data exceeds "
                        "--error-target, then 16 (default: auto)")
    p.add_argument("--error-target", type=float, default=0.05, metavar="REL",
                   help="fixed mode, --weight-bits auto: the largest relative output error "
                        "(max |fixed - float| / max |float| on the calibration data) accepted "
                        "for 8-bit weights (default: 0.05)")
    p.add_argument("--strict", action="store_true",
                   help="fixed mode: any saturation on the calibration data is an error")
    p.add_argument("--dump-ir", metavar="PASS", help="print the IR after pass PASS, one of: "
                   + ", ".join(p.name for p in STAGES)
                   + " (load prints the ONNX model, lower … partition the neuromorphic graph)")
    p.add_argument("--verify-ir", action="store_true", help="run the IR verifier after every pass")
    p.add_argument("--report", action="store_true", help="print report.json to stdout")
    p.add_argument("--explain", action="store_true",
                   help="when the model cannot be compiled, print every problem found, one per "
                        "line, most fundamental first (softmax attention, then non-causal "
                        "attention, then the rest)")
    p.add_argument("--outputs", metavar="NAME[,NAME...]",
                   help="compile only these ONNX outputs (default: all; e.g. the logits without "
                        "a model's present keys/values or attention weights)")
    p.add_argument("--bind", action="append", metavar="NAME=HOW",
                   help="value of an auxiliary model input at compile time: ones, zeros, arange or "
                        "FILE.npy (repeatable; default by name: *mask* = ones, *position* = "
                        "arange, *token_type* = zeros)")
    p.add_argument("--timeout", type=float, default=600.0,
                   help="seconds before a Lava run is stopped (a positive number; default: 600)")
    return p


def _load_npy(path: str, what: str) -> np.ndarray:
    try:
        arr = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise _Usage(f"{what} file {path} does not exist") from None
    except Exception as e:  # noqa: BLE001
        raise _Usage(f"{what} file {path} is not a readable .npy array ({type(e).__name__})") from None
    if not isinstance(arr, np.ndarray):
        raise _Usage(f"{what} file {path} holds several arrays; give one .npy array")
    return arr


def weight_bits_arg(text: str) -> int | str:
    """``--weight-bits``: "auto" or a number of bits (argparse then checks the choices)."""
    return text if text == "auto" else int(text)


class _Usage(Exception):
    pass


class _RunFailed(Exception):
    """The program compiled but running it failed (Lava timeout or crash): exit 1."""


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _main(args)
    except _Usage as e:
        print(f"icl-compile: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except _RunFailed as e:
        print(f"icl-compile: {e}", file=sys.stderr)
        return EXIT_RUN
    except OutputError as e:  # the program compiled, but OUT cannot be written
        print(f"icl-compile: {e}", file=sys.stderr)
        return e.exit_code
    except CompileError as e:
        more = len(getattr(e, "blockers", [])) - 1
        print(f"icl-compile: cannot compile {args.model}: {e}"
              + (f" ({more} more problem(s): --explain lists them)" if more > 0
                 and not args.explain else ""), file=sys.stderr)
        if args.explain:
            for k, b in enumerate(getattr(e, "blockers", [e]), 1):
                print(f"  problem {k}: {b}", file=sys.stderr)
        return EXIT_COMPILE
    except KeyboardInterrupt:
        print("icl-compile: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. piped into `head`
        sys.stderr.close()
        return EXIT_OK


def _note_blas_kernels(args) -> None:
    """Where the emulator ran (fixed-point calibration, --run, --verify) on BLAS kernels narrower
    than the CPU's, say so in one note line at the end (the emulator's own warning is silenced
    from the start, in :func:`_main`)."""
    if args.precision == "fixed" or args.run or args.verify:
        note = slow_kernels_note()
        if note:
            print(f"note: {note}", file=sys.stderr)


def _main(args) -> int:
    from .compiler import compile as icl_compile
    from .runtime.report import format_report

    silence_slow_kernels()  # (said once, as a note at the end: _note_blas_kernels)
    try:
        options = CompileOptions.from_cli(args)
        for name in ("tolerance", "timeout"):
            if getattr(args, name) is not None:
                positive_number(f"--{name}", getattr(args, name))
    except OptionError as e:
        raise _Usage(str(e)) from None
    model = Path(args.model)
    if not model.is_file():  # the model first: it is the real problem when both are wrong
        raise CompileError(f"{model}: " + ("is a directory, not an ONNX file" if model.is_dir()
                                           else "no such file"))
    check_output_dir(args.out, force=args.force)  # a foreign -o is refused before compiling
    calib = _load_npy(args.calibrate, "--calibrate") if args.calibrate else None
    xrun = _load_npy(args.run, "--run") if args.run else None
    if args.precision == "float" and calib is not None:
        print("note: --calibrate only matters with --precision fixed", file=sys.stderr)
    try:
        prog = icl_compile(args.model, calibration=calib, dump=lambda text: print(text),
                           options=options)
    except OptionError as e:
        raise _Usage(str(e)) from None
    print(format_report(prog.report), flush=True)
    extra: dict[str, bytes] = {}
    outputs = None
    if xrun is not None:
        outputs = _run(prog, xrun, args)
        import io

        first = outputs[0] if isinstance(outputs, tuple) else outputs
        buf = io.BytesIO()
        np.save(buf, first.astype(np.float32))
        extra["output.npy"] = buf.getvalue()
        if isinstance(outputs, tuple):  # several ONNX outputs: all of them, by name
            buf = io.BytesIO()
            np.savez(buf, **{s["name"]: y.astype(np.float32)
                             for s, y in zip(prog.io.outputs, outputs)})
            extra["outputs.npz"] = buf.getvalue()
    verdict = None
    if args.verify:
        verdict = _verify(prog, args, xrun, calib, outputs)
        prog.report["verification"] = verdict
    svg = _picture(prog)
    if svg:
        extra["partition.svg"] = svg
    out = prog.save(args.out, force=args.force, extra_files=extra)
    print(f"\nwrote {out}/report.json, {out}/program.json, {out}/weights.npz"
          + (f", {out}/output.npy" if xrun is not None else "")
          + (f", {out}/outputs.npz" if "outputs.npz" in extra else "")
          + (f", {out}/partition.svg" if svg else ""))
    if args.report:
        print(json.dumps(prog.report, indent=1, default=str))
    if verdict is not None and not verdict["ok"]:
        print(f"icl-compile: verification failed: relative error {verdict['rel_err']:.3g} > "
              f"tolerance {verdict['tolerance']:g}", file=sys.stderr)
        return EXIT_VERIFY
    _note_blas_kernels(args)
    return EXIT_OK


def _run(prog, x, args) -> np.ndarray:
    try:
        x = prog.check_input(x)
    except ValueError as e:
        raise _Usage(f"--run input: {e}") from None
    if args.backend == "numpy":
        return prog.run(x)
    from .backends.lava import LavaUnavailableError

    try:
        return prog.run(x, backend="lava", timeout=args.timeout)
    except LavaUnavailableError as e:
        raise _Usage(f"--backend lava: {e}") from None
    except (TimeoutError, RuntimeError) as e:  # LavaTimeoutError, LavaRunError
        raise _RunFailed(f"the Lava run failed: {str(e).splitlines()[0]}") from None


def _verify(prog, args, xrun, calib, outputs) -> dict:
    import onnx

    from .runtime.reference import FP16_NOTE, is_float16, onnxruntime_run, random_inputs

    if xrun is not None:
        x, source = xrun, "--run data"
    elif calib is not None:
        x, source = calib, "calibration data"
    else:
        x, source = random_inputs(prog, batch=2), "random inputs"
    try:
        x = prog.check_input(x)
    except ValueError as e:
        raise _Usage(f"verification input: {e}") from None
    model = onnx.load(str(Path(args.model)), load_external_data=False)
    fp16 = is_float16(model)
    names = [o.name for o in model.graph.output]
    refs = onnxruntime_run(str(Path(args.model)), x, prog.io.bound, all_outputs=True)
    ys = outputs if outputs is not None else _run(prog, x, args)
    ys = ys if isinstance(ys, tuple) else (ys,)
    want = [s["name"] for s in prog.io.outputs] or [names[0]]
    refs = [refs[names.index(n)] for n in want]
    ref, y = refs[0], ys[0]
    scale = float(np.max(np.abs(ref))) or 1.0
    err = np.abs(y - ref)
    rel = max(float(np.abs(yi - ri).max() / (float(np.max(np.abs(ri))) or 1.0))
              for yi, ri in zip(ys, refs))
    tol = args.tolerance if args.tolerance is not None else TOLERANCE[prog.precision]
    rows = []
    for t in range(x.shape[1]):
        rows.append({"position": t, "max_abs_err": float(err[:, t].max()),
                     "rel_err": float(err[:, t].max() / scale)})
    table = "\n".join(f"  pos {r['position']:3d}  max|err| {r['max_abs_err']:.3e}  rel {r['rel_err']:.3e}"
                      for r in rows)
    print(f"\nverification against onnxruntime on {source} ({x.shape[0]} sequences, "
          f"{x.shape[1]} tokens, backend {args.backend}"
          + (f"; {FP16_NOTE}" if fp16 else "")
          + (f"; {len(want)} outputs, the table shows {want[0]}" if len(want) > 1 else "")
          + f"):\n{table}\n"
          f"  overall relative error {rel:.3e} (tolerance {tol:g}) -> {'ok' if rel <= tol else 'FAILED'}")
    return {"source": source, "backend": args.backend, "rel_err": rel, "max_abs_err": float(err.max()),
            "reference": "float32 from the float16 weights" if fp16 else "the model as exported",
            "tolerance": tol, "ok": rel <= tol, "per_position": rows}


def _picture(prog) -> bytes | None:
    """partition.svg's bytes (built in memory: nothing is written before the output directory),
    or None with a note when the picture would be too large to draw."""
    from .runtime.picture import PictureTooLarge, partition_picture

    try:
        return partition_picture(prog.report["resources"]).encode()
    except PictureTooLarge as e:
        print(f"note: partition.svg is not written: {e}", file=sys.stderr)
        return None


if __name__ == "__main__":
    sys.exit(main())
