"""Run one fuzz case through the frontend and classify the outcome.

A case passes when it ends in success or a :class:`CompileError` with a one-line message.
Anything else (another exception type, a hang past the per-case timeout, an IR that fails the
verifier, an interpreter that crashes where onnxruntime runs, or numbers that differ from
onnxruntime) is an *unexpected* outcome: :func:`run_frontend` raises :class:`Unexpected`.

Outcomes are tallied in :data:`STATS` so that ``tests/conftest.py`` can print a summary.
"""
from __future__ import annotations

import collections
import contextlib
import os
import resource
import signal
import time
from pathlib import Path

import numpy as np
import onnx
import onnx.helper
import onnx.numpy_helper

from icl_compiler.errors import CompileError
from icl_compiler.frontend import MAX_DIM, import_model, load_onnx
from icl_compiler.ir.interpreter import run as interpret
from icl_compiler.ir.symbolic import is_sym
from icl_compiler.ir.verify import verify

CASE_TIMEOUT = float(os.environ.get("ICL_FUZZ_CASE_TIMEOUT", "60"))
MEMORY_LIMIT = 6 * 1024**3  # address-space safety net for the fuzzing process
MAX_INTERP_ELEMENTS = 20_000  # inputs bigger than this are not interpreted

STATS: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
TIMES: dict[str, list[float]] = collections.defaultdict(list)


class Unexpected(AssertionError):
    """A fuzz case ended in something other than success or CompileError."""


class CaseTimeout(BaseException):
    """Raised by the SIGALRM handler (BaseException: hostile code cannot swallow it)."""


@contextlib.contextmanager
def time_limit(seconds: float):
    """Raise CaseTimeout after ``seconds`` of wall time (main thread only; Python-level)."""
    if seconds <= 0 or not hasattr(signal, "setitimer"):
        yield
        return

    def handler(signum, frame):
        raise CaseTimeout(f"case took longer than {seconds:g} s")

    old = signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


@contextlib.contextmanager
def memory_limit(nbytes: int = MEMORY_LIMIT):
    """Cap the address space so that a missed allocation guard fails fast, not by OOM."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    new = nbytes if hard == resource.RLIM_INFINITY else min(nbytes, hard)
    if soft != resource.RLIM_INFINITY and soft <= new:
        yield
        return
    resource.setrlimit(resource.RLIMIT_AS, (new, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def check_message(e: CompileError, what: str) -> str:
    msg = str(e)
    if not msg.strip() or "\n" in msg.strip():
        raise Unexpected(f"{what}: CompileError message is not one non-empty line: {msg!r}")
    if "internal frontend error" in msg:  # the frontend's last-resort catch-all fired
        raise Unexpected(f"{what}: {msg}")
    if "MemoryError" in msg:
        raise Unexpected(f"{what}: an allocation guard is missing (the frontend ran out of "
                         f"memory): {msg!r}")
    if "Traceback" in msg:
        raise Unexpected(f"{what}: CompileError message holds a traceback: {msg!r}")
    return msg


def run_frontend(src: str | os.PathLike | onnx.ModelProto, what: str, *, family: str,
                 interpret_check: bool = True, vocab: int | None = None,
                 timeout: float = CASE_TIMEOUT) -> str:
    """load_onnx + import_model + verify (+ interpreter vs onnxruntime).  Returns the outcome:
    ``"ok"``, ``"ok+ort"`` (numbers compared), or ``"CompileError@<stage>"``."""
    t0 = time.perf_counter()
    stage = "load"
    try:
        with time_limit(timeout):
            try:
                model = load_onnx(src)
                stage = "import"
                graph = import_model(model)
            except CompileError as e:
                check_message(e, what)
                outcome = f"CompileError@{stage}"
            else:
                stage = "verify"
                try:
                    verify(graph)
                except Exception as e:  # noqa: BLE001
                    raise Unexpected(f"{what}: the imported IR fails the verifier: "
                                     f"{type(e).__name__}: {e}") from e
                outcome = "ok"
                if interpret_check:
                    stage = "interpret"
                    outcome = _interpret_vs_ort(graph, src, model, what, vocab)
    except CaseTimeout as e:
        raise Unexpected(f"{what}: hang at stage {stage}: {e}") from None
    except Unexpected:
        raise
    except Exception as e:  # noqa: BLE001 - the point of the fuzzer
        raise Unexpected(f"{what}: {type(e).__name__} at stage {stage}: {e}") from e
    STATS[family][outcome] += 1
    TIMES[family].append(time.perf_counter() - t0)
    return outcome


def run_cli(model: onnx.ModelProto, work: Path, what: str) -> str:
    """A whole compile through the CLI, in-process, of ``model`` saved in the empty folder
    ``work``.  Expected: exit 0 with a program in work/out, or exit 3 with one "cannot compile"
    line and no output directory; no temporary files left.  Returns the outcome."""
    import io

    from icl_compiler import cli

    p = work / "m.onnx"
    p.write_bytes(model.SerializeToString())
    out = work / "out"
    err = io.StringIO()
    t0 = time.perf_counter()
    try:
        with time_limit(CASE_TIMEOUT), \
                contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
            code = cli.main([str(p), "-o", str(out)])
    except CaseTimeout:
        raise Unexpected(f"{what}: hang") from None
    except SystemExit as e:
        raise Unexpected(f"{what}: SystemExit {e.code}: {err.getvalue()}") from None
    except Exception as e:  # noqa: BLE001
        raise Unexpected(f"{what}: {type(e).__name__}: {e}") from e
    if code not in (0, 3):
        raise Unexpected(f"{what}: exit {code}: {err.getvalue().strip()}")
    leftovers = sorted(x.name for x in work.iterdir() if x.name not in ("m.onnx", "out"))
    if leftovers:
        raise Unexpected(f"{what}: temp files left: {leftovers}")
    if code == 3:
        lines = err.getvalue().strip().splitlines()
        if len(lines) != 1 or "cannot compile" not in lines[0]:
            raise Unexpected(f"{what}: exit 3 without a one-line message: {err.getvalue()!r}")
        if out.exists():
            raise Unexpected(f"{what}: exit 3 left an output directory")
    elif not {"report.json", "program.json"} <= set(os.listdir(out)):
        raise Unexpected(f"{what}: exit 0 without a program in {out}")
    STATS["cli"][f"exit {code}"] += 1
    TIMES["cli"].append(time.perf_counter() - t0)
    return f"exit {code}" + (f": {err.getvalue().split(': ', 2)[-1][:60]}" if code == 3 else "")


def _feeds(graph, vocab: int | None, rng: np.random.Generator) -> dict[str, np.ndarray] | None:
    feeds = {}
    env: dict = {}  # one value per symbol: the first symbolic axis seen is 2, the others 3
    for name in graph.inputs:
        v = graph.values[name]
        shape = []
        for d in v.shape:
            if is_sym(d):
                if len(d.free_symbols) != 1 or d != next(iter(d.free_symbols)):
                    return None  # an expression of dims: no obvious binding
                env.setdefault(d, 2 if not env else 3)
                shape.append(env[d])
            else:
                shape.append(int(d))
        if int(np.prod(shape, dtype=object)) > MAX_INTERP_ELEMENTS:
            return None
        dt = np.dtype(v.dtype)
        if dt.kind in "iu":
            hi = vocab if vocab else 4
            feeds[name] = rng.integers(0, hi, size=shape).astype(dt)
        elif dt.kind == "b":
            feeds[name] = rng.integers(0, 2, size=shape).astype(bool)
        elif dt.kind == "f":
            feeds[name] = rng.uniform(0, 1, size=shape).astype(dt)
        else:
            return None
    return feeds


def _interpret_vs_ort(graph, src, model, what: str, vocab: int | None) -> str:
    """The IR interpreter must agree with onnxruntime wherever onnxruntime runs the model."""
    import onnxruntime as ort

    feeds = _feeds(graph, vocab, np.random.default_rng(0))
    if feeds is None:
        return "ok"
    if _integer_division(model):
        # onnxruntime dies with SIGFPE on an integer division by zero (which the compiler
        # itself handles): no reference for these
        return "ok (integer Div: not compared)"
    if _extreme_trilu_k(src):
        # the frontend clamps k (numpy would overflow); onnxruntime gets k = -2**63 wrong
        # (tril(x, -2**63) keeps everything), so there is no reference to compare with
        return "ok (extreme Trilu k: not compared)"
    try:
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        so.inter_op_num_threads = 1
        so.log_severity_level = 4
        # the reference semantics, not ORT's fusions (which assume well-formed patterns: ORT
        # fuses x / sqrt(mean(x^2) + v) into an RMSNorm even when v is a vector)
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        blob = src.SerializeToString() if isinstance(src, onnx.ModelProto) else str(Path(src))
        sess = ort.InferenceSession(blob, so, providers=["CPUExecutionProvider"])
        names = [i.name for i in sess.get_inputs()]
        if sorted(names) != sorted(feeds):
            return "ok"
        refs = sess.run(None, feeds)
        out_names = [o.name for o in sess.get_outputs()]
    except Exception:  # noqa: BLE001 - onnxruntime rejects the model too
        return "ok"
    ref_by_name = dict(zip(out_names, refs))
    try:
        with np.errstate(all="ignore"):
            got = interpret(graph, feeds, keep=True)
    except Exception as e:  # noqa: BLE001
        raise Unexpected(f"{what}: onnxruntime runs the model but the IR interpreter raises "
                         f"{type(e).__name__}: {e}") from e
    if not (all(_well_conditioned(v, allow_inf=True) for v in got.values())
            and all(_well_conditioned(v) for v in refs)):
        return "ok (overflow: not compared)"
    try:
        with np.errstate(all="ignore"):
            got64 = interpret(graph, feeds, float_dtype="float64")
    except Exception:  # noqa: BLE001 - float64 is only the conditioning probe
        got64 = None
    if got64 is None or not all(
            _close(np.asarray(got[o]), np.asarray(got64[o]).astype(np.asarray(got[o]).dtype),
                   rtol=1e-5) for o in graph.outputs):
        # float32 rounding decides the result (cancellation, near-zero divisors): two correct
        # implementations may differ, so onnxruntime is no oracle here
        return "ok (ill-conditioned: not compared)"
    for o in graph.outputs:
        if o not in ref_by_name:
            continue
        a, b = np.asarray(got[o]), np.asarray(ref_by_name[o])
        if a.shape != b.shape:
            raise Unexpected(f"{what}: output {o!r} shape {a.shape}, onnxruntime {b.shape}")
        if not _close(a, b, rtol=1e-3):  # ORT is float32 too: 1e-4 is its own error
            raise Unexpected(f"{what}: output {o!r} differs from onnxruntime "
                             f"(max abs diff {_maxdiff(a, b)})")
    return "ok+ort"


def _integer_division(model: onnx.ModelProto) -> bool:
    """Does the (shape-inferred) model divide integers by something that may be 0 or -1
    (onnxruntime's kernels trap on x/0 and INT_MIN/-1)?  Constant divisors without 0 and -1
    (d_model // heads, ...) are safe."""
    g = model.graph
    types = {v.name: v.type.tensor_type.elem_type
             for v in list(g.input) + list(g.output) + list(g.value_info)}
    types.update({t.name: t.data_type for t in g.initializer})
    consts = _constants(model)
    floats = {onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16,
              onnx.TensorProto.BFLOAT16}
    for n in g.node:
        if n.op_type not in ("Div", "Mod") or types.get(n.output[0] if n.output else "") in floats:
            continue
        divisor = consts.get(n.input[1]) if len(n.input) > 1 else None
        if divisor is None or np.isin(divisor, (0, -1)).any():
            return True
    return False


def _constants(m: onnx.ModelProto) -> dict:
    out = {}
    for t in m.graph.initializer:
        try:
            out[t.name] = onnx.numpy_helper.to_array(t)
        except Exception:  # noqa: BLE001
            pass
    for n in m.graph.node:
        if n.op_type == "Constant" and n.output and len(n.attribute) == 1:
            try:
                v = onnx.helper.get_attribute_value(n.attribute[0])
                out[n.output[0]] = (onnx.numpy_helper.to_array(v)
                                    if isinstance(v, onnx.TensorProto) else np.asarray(v))
            except Exception:  # noqa: BLE001
                pass
    return out


def _extreme_trilu_k(src) -> bool:
    """Does a Trilu get a constant k beyond any dim (which the frontend clamps)?"""
    m = src if isinstance(src, onnx.ModelProto) else onnx.load(str(src))
    consts = _constants(m)
    for n in m.graph.node:
        if n.op_type == "Trilu" and len(n.input) > 1 and n.input[1] in consts:
            k = consts[n.input[1]]
            if k.size and k.dtype.kind in "iu" and abs(int(k.ravel()[0])) >= MAX_DIM:
                return True
    return False


def _well_conditioned(a, allow_inf: bool = False) -> bool:
    """No NaN, no magnitudes where float32 rounding order decides the result, and no inf
    (unless ``allow_inf``: intermediate -inf masks are normal)."""
    a = np.asarray(a)
    if a.dtype.kind not in "fc" or a.size == 0:
        return True
    if np.any(np.isnan(a)):
        return False
    fin = np.isfinite(a)
    if not allow_inf and not fin.all():
        return False
    return not fin.any() or float(np.max(np.abs(a[fin]))) < 1e15


def _close(a: np.ndarray, b: np.ndarray, rtol: float = 1e-4) -> bool:
    if a.dtype.kind not in "fc" or b.dtype.kind not in "fc":
        return bool(np.array_equal(a, b))
    a, b = a.astype(np.float64), b.astype(np.float64)
    if not np.array_equal(np.isnan(a), np.isnan(b)):
        return False
    fin = np.isfinite(a) & np.isfinite(b)
    if not np.array_equal(a[~fin & ~np.isnan(a)], b[~fin & ~np.isnan(b)]):
        return False
    if not fin.any():
        return True
    scale = max(1.0, float(np.max(np.abs(b[fin]))))
    return bool(np.max(np.abs(a[fin] - b[fin])) <= rtol * scale)


def _maxdiff(a, b) -> float:
    with np.errstate(all="ignore"):
        return float(np.nanmax(np.abs(a.astype(np.float64) - b.astype(np.float64))))
