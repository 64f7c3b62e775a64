"""A compiled program: the neuromorphic graph, its I/O contract and its report."""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from ..errors import CompileError
from ..ir import layout, neuro_serialize
from ..ir.neuro import NeuroGraph, ProgramIO, verify_neuro
from ..semantics import neurons

# v2: the typed neuromorphic IR (enumerations, quantiser parameters, norm parameters, declared
# io and offcore).  v1 programs were written before it: load() refuses them and says to recompile.
FORMAT = "icl-program/2"
OLD_FORMATS = ("icl-program/1",)
PROGRAM_FILES = ("program.json", "weights.npz")


class Program:
    def __init__(self, ng: NeuroGraph, report: dict):
        self.ng = ng
        self.report = report

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
        x = np.asarray(x)
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
            if x.ndim != 3 or x.shape[-1] != n:
                raise ValueError(f"expected features shaped [batch, seq, {n}], got {list(x.shape)}")
            if not np.all(np.isfinite(x)):
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
        ``return_payload=True`` returns the raw integer payloads in fixed mode.
        """
        x = self.check_input(x)
        if backend == "numpy":
            from ..backends.numpy import run

            y, self.last_stats, self.last_state = run(self.ng, x)
        elif backend == "lava":
            from ..backends.lava import run_program

            y, self.last_lava = run_program(self, x, **kw)
        else:
            raise ValueError(f"unknown backend {backend!r} (choose numpy or lava)")
        return self.onnx_outputs(y if return_payload else self.dequantise(y))

    def onnx_outputs(self, y: np.ndarray):
        """The output population's values [B, T, n] as the ONNX outputs (their layouts: e.g.
        present keys [B, H, T, d]); one array, or a tuple for several outputs."""
        specs = self.io.outputs
        if not specs:
            return y
        outs = [layout.output_view(y[..., s["offset"]:s["offset"] + s["size"]],
                                   layout.from_json(s["layout"]), y.shape[0], y.shape[1])
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
        """Write the program atomically: build in a temp dir next to the target, then rename."""
        target = Path(directory)
        if target.exists():
            if not target.is_dir():
                raise CompileError(f"output path {target} exists and is not a directory")
            contents = set(os.listdir(target))
            is_program = "program.json" in contents and _is_program_file(target / "program.json")
            if contents and not is_program and not force:
                raise CompileError(f"output directory {target} is not empty and holds no previous "
                                   "program; choose another directory or pass --force")
        created = []  # parent folders this call creates, deepest first: removed on failure
        p = target.parent.absolute()
        while not p.exists() and p != p.parent:
            created.append(p)
            p = p.parent
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = None
        try:
            tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
            desc, arrays = neuro_serialize.to_dict(self.ng)
            doc = {"format": FORMAT, "neuro": desc, "report": self.report}
            (tmp / "program.json").write_text(json.dumps(doc, indent=1, default=_json_default))
            np.savez_compressed(tmp / "weights.npz", **arrays)
            (tmp / "report.json").write_text(json.dumps(self.report, indent=1, default=_json_default))
            for name, data in (extra_files or {}).items():
                (tmp / name).write_bytes(data)
            if target.exists():
                old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
                os.rename(target, old / "x")
                try:
                    os.rename(tmp, target)
                except BaseException:
                    os.rename(old / "x", target)  # put the previous program back
                    shutil.rmtree(old, ignore_errors=True)
                    raise
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.rename(tmp, target)
        except BaseException:
            if tmp is not None:
                shutil.rmtree(tmp, ignore_errors=True)
            for d in created:
                try:
                    d.rmdir()
                except OSError:
                    break
            raise
        return target


def _is_program_file(path: Path) -> bool:
    """A previous program is only what we wrote: program.json with one of our format tags."""
    try:
        return json.loads(path.read_text()).get("format") in (FORMAT, *OLD_FORMATS)
    except (OSError, ValueError, AttributeError):
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
    d = Path(directory)
    try:
        doc = json.loads((d / "program.json").read_text())
    except FileNotFoundError:
        raise CompileError(f"{d} holds no program (program.json missing)") from None
    except json.JSONDecodeError as e:
        raise CompileError(f"{d}/program.json is corrupt: {e}") from None
    fmt = doc.get("format") if isinstance(doc, dict) else None
    if fmt in OLD_FORMATS:
        raise CompileError(f"{d} holds a program in the old format {fmt!r}; this version of "
                           f"icl-compiler reads {FORMAT!r}",
                           hint="recompile the model (icl-compile MODEL.onnx -o DIR)")
    if fmt != FORMAT:
        raise CompileError(f"{d}: unknown program format {fmt!r}")
    try:
        with np.load(d / "weights.npz", allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        ng = neuro_serialize.from_dict(doc["neuro"], arrays)
    except FileNotFoundError:
        raise CompileError(f"{d} holds no weights.npz next to program.json") from None
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise CompileError(f"{d}/program.json or weights.npz is corrupt "
                           f"({type(e).__name__}: {e})", hint="recompile the model") from None
    verify_neuro(ng)
    return Program(ng, doc["report"])
