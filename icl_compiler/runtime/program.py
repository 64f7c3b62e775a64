"""A compiled program: the neuromorphic graph, its I/O contract and its report."""
from __future__ import annotations

import difflib
import functools
import inspect
import json
import math
import os
import threading
from numbers import Real
from pathlib import Path

import numpy as np

from ..errors import CompileError, NeuroVerifyError, OptionError
from ..ir import layout, neuro_serialize
from ..ir.neuro import NeuroGraph, ProgramIO, verify_neuro
from ..semantics import blas, neurons
from .outdir import OutputError, write_output_dir
from .outdir import check_output_dir as check_dir
from .safeload import ArraySpec, ProgramFileError, load_program_files, read_json_file

__all__ = ["Program", "load", "check_output_dir", "OutputError", "ProgramFileError", "FORMAT", "PROGRAM_FILES",
           "OWNED_FILES"]

# v2: the typed neuromorphic IR (enumerations, quantiser parameters, norm parameters, declared
# io and offcore).  v1 programs were written before it: load() refuses them and says to recompile.
FORMAT = "icl-program/2"
OLD_FORMATS = ("icl-program/1",)
PROGRAM_FILES = ("program.json", "weights.npz")
# what save() and icl-compile write: a previous program's copies are replaced (or removed when a
# run does not write them again); every other file in the directory is the user's and is kept
OWNED_FILES = PROGRAM_FILES + ("report.json", "output.npy", "partition.svg")
# the NumPy backend's prepared weights are kept between runs up to this size
KEEP_PREPARED = 256 * 2**20


def _layout(data: list) -> layout.Layout:
    """An output's layout from its JSON form, parsed once (symbolic sizes take a parser)."""
    return _parsed_layout(json.dumps(data))


@functools.lru_cache(maxsize=256)
def _parsed_layout(text: str) -> layout.Layout:
    return layout.from_json(json.loads(text))


class Program:
    def __init__(self, ng: NeuroGraph, report: dict):
        self.ng = ng
        self.report = report
        self._interp = None  # the NumPy backend's interpreter of ng, kept between runs
        self._interp_lock = threading.Lock()

    def __getstate__(self):  # (pickling, copying: the interpreter is rebuilt on the next run)
        state = dict(self.__dict__, _interp=None)
        del state["_interp_lock"]
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._interp_lock = threading.Lock()

    # -- properties --------------------------------------------------------------------------
    @property
    def precision(self) -> str:
        return self.ng.precision

    @property
    def io(self) -> ProgramIO:
        return self.ng.io

    @property
    def fixed(self) -> bool:
        return self.ng.precision == "fixed"

    @property
    def t_max(self) -> int | None:
        caps = [h.t_max for h in self.ng.heads]
        return min(caps) if caps else None

    # -- running --------------------------------------------------------------------------------
    def check_input(self, x) -> np.ndarray:
        """``x`` as an array shaped like the ONNX input, or ValueError saying what is wrong:
        token ids ``[batch, seq]`` (integers in [0, vocab)) or features ``[batch, seq, F]``
        (finite real numbers: complex, boolean, string and object arrays are refused, never
        cast).  An empty batch (batch = 0) is valid for both kinds; an empty sequence is not."""
        try:
            x = np.asarray(x)
        except (ValueError, TypeError) as e:  # ragged nested lists
            raise ValueError(f"the input is not an array ({str(e).splitlines()[0][:100]})") \
                from None
        kind = self.io.input_kind
        if kind == "tokens":
            if x.ndim != 2 or x.dtype.kind not in "iu":
                raise ValueError(f"expected token ids shaped [batch, seq] (integers), got "
                                 f"{x.dtype}{list(x.shape)}")
            vocab = self.io.vocab
            if vocab is not None and x.size and (x.min() < 0 or x.max() >= vocab):
                raise ValueError(f"token ids must lie in [0, {vocab}), got [{x.min()}, {x.max()}]")
        else:
            n = self.ng.pop(self.io.input_pop).size
            if x.dtype.kind not in "iuf":
                why = " (the imaginary part would be dropped)" if x.dtype.kind == "c" else ""
                raise ValueError(f"features must be real numbers (integers or floats), got "
                                 f"{x.dtype}{why}")
            if x.ndim != 3 or x.shape[-1] != n:
                raise ValueError(f"expected features shaped [batch, seq, {n}], got {list(x.shape)}")
            if not np.isfinite(np.add.reduce(x, axis=None)) and not np.all(np.isfinite(x)):
                # (a finite sum means finite entries; the sum overflowing is checked in full)
                raise ValueError("input contains NaN or inf")
        if x.shape[1] == 0:
            raise ValueError("empty sequence")
        if self.t_max is not None and x.shape[1] > self.t_max:
            raise ValueError(
                f"sequence length {x.shape[1]} exceeds the program's context capacity T_max = "
                f"{self.t_max}; recompile with a larger max_context (--max-context N)")
        return x

    def run(self, x, backend: str = "numpy", *, return_payload: bool = False, **kw):
        """Run a batch of sequences; each starts with fresh plastic state.

        Returns the output shaped like the ONNX output (e.g. [batch, seq, n]), dequantised to
        float; a tuple of them, in the ONNX order, when the program has several outputs.
        ``return_payload=True`` returns the raw integer payloads in fixed mode.  ``backend="lava"``
        takes the keyword options of ``backends.lava.run_program`` (``timeout`` in seconds, a
        positive finite number, …); any other keyword is a TypeError.  An empty batch gives an
        empty result (``[0, seq, n]``) on both backends.
        """
        kw = _run_options(backend, kw)
        x = self.check_input(x)
        if x.shape[0] == 0:
            y = np.zeros((0, x.shape[1], self.ng.pop(self.io.output_pop).size),
                         neurons.dtype(self.fixed))
        elif backend == "numpy":
            from ..backends.numpy import Interpreter, run

            if self._interp is None or self._interp.ng is not self.ng:
                self._interp = Interpreter(self.ng)  # its prepared weights serve every run
            if self._interp_lock.acquire(blocking=False):  # (a run in another thread: its own)
                try:
                    y, self.last_stats, self.last_state = run(self.ng, x, self._interp)
                    if self._interp.prepared_bytes() > KEEP_PREPARED:  # (a big model: not
                        self._interp = None  # kept, the prepared copies would double it)
                finally:
                    self._interp_lock.release()
            else:
                y, self.last_stats, self.last_state = run(self.ng, x)
        else:
            from ..backends.lava import run_program

            y, self.last_lava = run_program(self, x, **kw)
        return self.onnx_outputs(y if return_payload else self.dequantise(y))

    def onnx_outputs(self, y: np.ndarray):
        """The output population's values [B, T, n] as the ONNX outputs (their layouts: e.g.
        present keys [B, H, T, d]); one array, or a tuple for several outputs."""
        specs = self.io.outputs
        if not specs:
            return y
        outs = [_output_view(y[..., s["offset"]:s["offset"] + s["size"]], _layout(s["layout"]))
                for s in specs]
        return outs[0] if len(outs) == 1 else tuple(outs)

    def session(self, batch: int = 1, backend: str = "numpy", **kw):
        """A streaming session: ``step(x_t)`` feeds one token per sequence and keeps the plastic
        state between calls (see ``runtime/session.py``)."""
        from .session import Session

        return Session(self, batch=batch, backend=backend, **kw)

    def dequantise(self, y: np.ndarray) -> np.ndarray:
        """Real values of raw outputs (integer payloads in fixed mode)."""
        return neurons.dequantise(y, self.ng.pop(self.io.output_pop).scale, self.fixed)

    # -- persistence -----------------------------------------------------------------------------
    def save(self, directory: str | os.PathLike, *, force: bool = False,
             extra_files: dict[str, bytes] | None = None) -> Path:
        """Write the program into ``directory`` (runtime/outdir.py): only the compiler's files
        are replaced, the user's other files are kept, a symlink is written through, the swap is
        atomic; a directory that is not empty and holds no previous program is refused unless
        ``force``.  Every file-system error is one :class:`OutputError` (exit code 3)."""
        desc, arrays = neuro_serialize.to_dict(self.ng)
        doc = {"format": FORMAT, "neuro": desc, "report": self.report}
        files = {"weights.npz": lambda p: np.savez_compressed(p, **arrays),
                 "report.json": _json_bytes(self.report), **(extra_files or {}),
                 "program.json": _json_bytes(doc)}  # last: it marks a complete program
        return write_output_dir(directory, files, force=force,
                                is_previous=lambda d: _is_program_file(d / "program.json"),
                                owned=OWNED_FILES).path


def check_output_dir(directory: str | os.PathLike, *, force: bool = False) -> None:
    """OutputError now if :meth:`Program.save` would refuse ``directory`` (a file, a dangling
    symlink, a foreign non-empty directory without ``force``); nothing is written."""
    check_dir(directory, force=force, is_previous=lambda d: _is_program_file(d / "program.json"))


def silence_slow_kernels() -> None:
    """Silence the emulator's warning about narrow BLAS kernels (``semantics.blas``) for a
    program that says it its own way (:func:`slow_kernels_note`)."""
    import warnings

    warnings.filterwarnings("ignore", category=blas.SlowKernelsWarning)


def slow_kernels_note() -> str | None:
    """What to set when numpy's OpenBLAS runs kernels narrower than the CPU's, else None."""
    found = blas.diagnosis()
    return found[1] if found else None


def _json_bytes(obj) -> bytes:
    return json.dumps(obj, indent=1, default=_json_default).encode()


def _output_view(tv: np.ndarray, lay) -> np.ndarray:
    """``layout.output_view``, also for an empty batch: a layout without a batch factor (an
    export with batch 1) stacks one array per sequence, so zero sequences give the stack of
    none, shaped as one sequence's array with a leading 0."""
    if tv.shape[0] == 0 and not layout.has(lay, layout.B):
        one = layout.output_view(np.zeros((1,) + tv.shape[1:], tv.dtype), lay, 1, tv.shape[1])
        return one[:0]
    return layout.output_view(tv, lay, tv.shape[0], tv.shape[1])


BACKENDS = ("numpy", "lava")


def _run_options(backend, kw: dict) -> dict:
    """Check ``Program.run``'s backend and keyword options before anything runs: an unknown
    keyword (a typo such as ``backnd=``) is a TypeError, not an option silently ignored, and the
    Lava ``timeout`` must be a positive finite number (NaN would switch it off)."""
    if not isinstance(backend, str) or backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r} (choose numpy or lava)")
    allowed: tuple[str, ...] = ()
    if backend == "lava":
        from ..backends.lava import run_program

        allowed = tuple(n for n, p in inspect.signature(run_program).parameters.items()
                        if p.kind == p.KEYWORD_ONLY)
    bad = sorted(set(kw) - set(allowed))
    if bad:
        close = difflib.get_close_matches(bad[0], ("backend", "return_payload") + allowed, 1)
        raise TypeError(f"Program.run() got an unexpected keyword argument {bad[0]!r}"
                        + (f" (did you mean {close[0]!r}?)" if close else "")
                        + f"; backend={backend!r} takes "
                        + (", ".join(allowed) if allowed else "no options"))
    if "timeout" in kw:
        t = kw["timeout"]
        if isinstance(t, bool) or not isinstance(t, Real) or not 0 < t < math.inf:
            raise OptionError(f"timeout must be a positive number of seconds, got {t!r}")
    return kw


def _is_program_file(path: Path) -> bool:
    """A previous program is only what we wrote: program.json with one of our format tags (read
    with safeload's bounds: a FIFO or a huge file is not a program and is not waited for)."""
    try:
        return read_json_file(path.parent, path.name).get("format") in (FORMAT, *OLD_FORMATS)
    except ProgramFileError:
        return False


def _json_default(o):
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, (np.bool_,)):
        return bool(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def load(directory: str | os.PathLike) -> Program:
    """Read a program that :meth:`Program.save` wrote.  Nothing in the files is trusted: they are
    read with bounds (runtime/safeload.py: regular files only, sizes capped, every array checked
    against the shape and dtype that program.json declares before it is decompressed), then
    every record and array is checked (ir/neuro_serialize.py) and the graph verified.  Every
    problem is one :class:`ProgramFileError` (a CompileError) naming the file and what is wrong."""
    d = Path(directory)
    doc, arrays = load_program_files(d, lambda doc: _array_specs(d, doc))
    try:
        ng = neuro_serialize.from_dict(doc["neuro"], arrays)
    except neuro_serialize.ProgramFormatError as e:
        raise ProgramFileError(d / e.file, e.reason, key=e.key) from None
    try:
        verify_neuro(ng)
    except NeuroVerifyError as e:
        raise ProgramFileError(d / "program.json", f"not a valid program ({e.reason}); "
                                                   "recompile the model") from None
    report = doc.get("report")
    if not isinstance(report, dict):
        raise ProgramFileError(d / "program.json", "report: expected an object, got "
                                                   f"{type(report).__name__}")
    return Program(ng, report)


def _array_specs(d: Path, doc: dict) -> dict[str, ArraySpec]:
    """safeload's callback: the program's format, then the arrays its description declares."""
    fmt = doc.get("format")
    if fmt in OLD_FORMATS:
        raise CompileError(f"{d} holds a program in the old format {fmt!r}; this version of "
                           f"icl-compiler reads {FORMAT!r}",
                           hint="recompile the model (icl-compile MODEL.onnx -o DIR)")
    if fmt != FORMAT:
        raise ProgramFileError(d / "program.json", f"unknown program format {_short(fmt)} "
                                                   f"(this version reads {FORMAT!r})")
    try:
        specs = neuro_serialize.array_specs(doc.get("neuro"))
    except neuro_serialize.ProgramFormatError as e:
        raise ProgramFileError(d / "program.json", e.reason) from None
    return {k: ArraySpec(*spec) for k, spec in specs.items()}


def _short(v) -> str:
    r = repr(v)
    return r if len(r) <= 40 else r[:40] + "..."
