"""The pass type and the one loop that runs a pipeline over both IRs.

A :class:`Pass` states its name, the IR it acts on and the IR it produces (``"source"`` → ``"onnx"``
→ ``"tensor"`` → ``"neuro"``), the passes it requires before it, when it runs, and ``run(module,
ctx) -> summary``.  :func:`run_passes` is the only loop: it times every pass, verifies the IR a
pass produced, prints it for ``--dump-ir PASS`` and returns the report's ``passes`` section.
:class:`PassContext` carries the validated options the passes read and the report sections they
write (each stage writes its own).
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from ..errors import OptionError
from ..ir.graph import Graph
from ..ir.neuro import NeuroGraph, verify_neuro
from ..ir.printer import to_text
from ..ir.verify import IRVerifyError, verify
from ..options import ERROR_TARGET, CompileOptions
from ..targets.loihi2 import Target

IR = Literal["source", "onnx", "tensor", "neuro"]


@dataclass
class PassContext:
    """What the passes read (validated options, calibration data) and write (report sections)."""

    max_context: int | None = None  # attention: T_max, else inferred from the model
    lowering: str = "auto"  # attention: "auto" | "kv_slot" | "fast_weight"
    precision: str = "float"  # lower (fast_weight is float-only), quantise (runs in fixed mode)
    weight_bits: int | str = "auto"  # quantise
    error_target: float = ERROR_TARGET  # quantise (weight_bits "auto")
    strict: bool = False  # quantise: saturation on the calibration data is an error
    calibration: np.ndarray | None = None  # quantise
    target: Target | None = None  # partition
    bind: dict | None = None  # import: the auxiliary inputs' bindings (None: by name)
    outputs: tuple | None = None  # import: the ONNX outputs to compile (None: all)
    report: dict[str, Any] = field(default_factory=dict)  # the sections the passes write

    @classmethod
    def from_options(cls, opts: CompileOptions, calibration: np.ndarray | None = None):
        return cls(max_context=opts.max_context, lowering=opts.lowering,
                   precision=opts.precision, weight_bits=opts.weight_bits,
                   error_target=opts.error_target, strict=opts.strict, calibration=calibration,
                   target=opts.target, bind=opts.bind, outputs=opts.outputs)


@dataclass
class Module:
    """What a pipeline carries: the model as each IR that exists so far."""

    source: Any = None  # a path or an onnx.ModelProto
    onnx: Any = None  # onnx.ModelProto
    tensor: Graph | None = None
    neuro: NeuroGraph | None = None


@dataclass(frozen=True)
class Pass:
    name: str
    ir: IR  # the IR it acts on
    run: Callable[[Module, PassContext], str]  # rewrites the module; returns a one-line summary
    produces: IR | None = None  # the IR it produces (None: the one it acts on)
    requires: tuple[str, ...] = ()  # passes that must run before it
    enabled: Callable[[PassContext], bool] | None = None  # None: always runs
    condition: str = ""  # when it runs, for messages (e.g. "with precision fixed")

    @property
    def result(self) -> IR:
        return self.produces or self.ir

    def runs(self, ctx: PassContext) -> bool:
        return self.enabled is None or self.enabled(ctx)


def tensor_pass(name: str, fn: Callable[[Graph, PassContext], str]) -> Pass:
    """A pass of the tensor IR from a function ``fn(graph, ctx) -> summary`` (in place)."""
    return Pass(name, "tensor", lambda m, ctx: fn(m.tensor, ctx))


def verify_result(p: Pass, module: Module, *, tensor: bool) -> None:
    """Verify the IR pass ``p`` produced: the neuromorphic IR always (cheap), the tensor IR when
    ``tensor`` (``--verify-ir``: shape inference of every op)."""
    if p.result == "neuro":
        verify_neuro(module.neuro)
    elif p.result == "tensor" and tensor:
        try:
            verify(module.tensor)
        except IRVerifyError as e:
            raise IRVerifyError(f"after pass {p.name!r}: {e.reason}") from e


def ir_text(p: Pass, module: Module) -> str:
    if p.result == "neuro":
        return module.neuro.to_text()
    if p.result == "tensor":
        return to_text(module.tensor)
    import onnx.printer

    return onnx.printer.to_text(module.onnx)


def run_passes(module: Module, passes, ctx: PassContext, *, verify_each: bool = False,
               dump_after: str | None = None,
               dump: Callable[[str], None] | None = None) -> list[dict]:
    """Run ``passes`` in order on ``module``; returns one ``{"name", "seconds", "summary"}`` per
    pass that ran.  ``dump_after=NAME`` calls ``dump(text)`` (default: print) with the IR after
    that pass; an unknown or skipped name is an OptionError (a ValueError) that lists the names."""
    passes = list(passes)
    names = [p.name for p in passes]
    if dump_after is not None:
        if dump_after not in names:
            raise OptionError(f"--dump-ir: unknown pass {dump_after!r}; choose one of "
                              f"{', '.join(names)}")
        p = passes[names.index(dump_after)]
        if not p.runs(ctx):
            raise OptionError(f"--dump-ir {dump_after}: the {dump_after} pass runs only "
                              f"{p.condition or 'in other modes'}")
    report = []
    done: set[str] = set()
    for p in passes:
        if not p.runs(ctx):
            continue
        missing = [r for r in p.requires if r not in done]
        if missing:
            raise ValueError(f"pass {p.name!r} requires {missing} to run before it")
        t0 = time.perf_counter()
        summary = p.run(module, ctx)
        seconds = time.perf_counter() - t0
        verify_result(p, module, tensor=verify_each)
        report.append({"name": p.name, "seconds": round(seconds, 4), "summary": summary})
        done.add(p.name)
        if p.name == dump_after:
            (dump or print)(ir_text(p, module))
    return report
