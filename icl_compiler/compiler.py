"""The compile driver: validate the options, run the frontend and the pipeline, make a Program.

The stages are :data:`FRONTEND` (``load``, ``import``) and ``passes.manager.PIPELINE``
(``fold_constants`` … ``attention``, ``lower``, ``quantise``, ``schedule``, ``partition``, ``estimate``), run
by one loop (``passes.base.run_passes``) that times, verifies and dumps every stage.  Each stage
writes its own report section; the driver adds the precision, the ``passes`` list and the ``ops``
the program measures on a few tokens (``runtime.report.measure_ops``).
"""
from __future__ import annotations

import os
from typing import Callable

import numpy as np
import onnx

from .errors import CompileError, OptionError
from .frontend import import_model, load_onnx, onnx_io
from .frontend.bind import bind_inputs, check_inputs
from .options import ERROR_TARGET, CompileOptions
from .passes.base import Module, Pass, PassContext, run_passes
from .passes.manager import PIPELINE
from .runtime.program import Program
from .runtime.report import measure_ops

REPORT_ORDER = ("model", "precision", "passes", "attention", "activations", "token_ops",
                "resources", "schedule", "offcore", "ops", "quantisation", "estimate")


def _load(m: Module, ctx: PassContext) -> str:
    proto = m.onnx = load_onnx(m.source)
    counts: dict[str, int] = {}
    for n in proto.graph.node:
        counts[n.op_type] = counts.get(n.op_type, 0) + 1
    ctx.report["model"] = {**onnx_io(proto), "onnx_ops": dict(sorted(counts.items()))}
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), "?")
    return f"{len(proto.graph.node)} ONNX nodes, opset {opset}"


def _import(m: Module, ctx: PassContext) -> str:
    # the I/O contract first: an input without a binding or an unknown output is the real
    # problem, whatever the import would find later
    inits = {t.name for t in m.onnx.graph.initializer}
    check_inputs([v.name for v in m.onnx.graph.input if v.name not in inits], ctx.bind)
    names = [o.name for o in m.onnx.graph.output]
    unknown = [o for o in ctx.outputs or () if o not in names]
    if unknown:
        raise CompileError(f"--outputs names {', '.join(map(repr, unknown))}, not an output of "
                           f"the model (outputs: {', '.join(names)})")
    g = m.tensor = import_model(m.onnx)
    if ctx.outputs is not None:
        g.outputs = list(ctx.outputs)
        g.prune()
    bound = bind_inputs(g, ctx.bind)
    if bound:
        ctx.report.setdefault("model", {})["bound_inputs"] = bound
    return (f"{len(g.nodes)} IR ops after folding shape arithmetic"
            + (f"; bound {', '.join(f'{k}={v}' for k, v in bound.items())}" if bound else ""))


FRONTEND: tuple[Pass, ...] = (
    Pass("load", ir="source", produces="onnx", run=_load),
    Pass("import", ir="onnx", produces="tensor", requires=("load",), run=_import),
)
STAGES: tuple[Pass, ...] = FRONTEND + PIPELINE
_DEFAULTS = dict(precision="float", max_context=None, lowering="auto", verify_ir=False,
                 dump_after=None, strict=False, target=None, weight_bits="auto",
                 error_target=ERROR_TARGET, bind=None, outputs=None)


def compile(model: str | os.PathLike | onnx.ModelProto, precision: str = "float",
            calibration: np.ndarray | None = None, max_context: int | None = None, *,
            lowering: str = "auto", verify_ir: bool = False, dump_after: str | None = None,
            dump: Callable[[str], None] | None = None, strict: bool = False,
            target: dict | None = None, weight_bits: int | str = "auto",
            error_target: float = ERROR_TARGET, bind: dict | None = None,
            outputs: list[str] | None = None, options: CompileOptions | None = None) -> Program:
    """Compile an ONNX model (path or ModelProto) into a :class:`Program`.

    precision: "float" (exact, float64) or "fixed" (Loihi 2 integers).
    calibration: inputs shaped like the model input, used to size fixed-point payloads.
    max_context: the context capacity T_max (needed when the sequence axis is dynamic and the
    model has no mask buffer that fixes it).
    strict: in fixed mode, any saturation on the calibration data is a CompileError.
    weight_bits: fixed mode.  8 = one int8 mantissa + exponent per matrix and one int8 plastic
    synapse per K/V entry; 16 = a second int8 synapse group carries each matrix's residual and
    K/V entries get a high and a low plastic synapse (twice the synapse memory, ~100x smaller
    error); "auto" (default) = 8 unless its output error on the calibration data exceeds
    ``error_target``, then 16 (the report's quantisation section says which and why).
    error_target: relative error (max |fixed − float| / max |float| on the calibration data)
    that "auto" accepts for 8-bit.
    target: the hardware (a ``targets.loihi2.Target`` or a dict such as
    ``{"system": "kapoho-point", "chips": 8}``); default one Loihi 2 chip.
    dump_after: print the IR after this stage with ``dump`` (default: print).
    bind: values for the model's auxiliary inputs, {name: "ones" | "zeros" | "arange" | array}
    (default by name: attention_mask = ones, position_ids = arange, token_type_ids = zeros; the
    report's ``model.bound_inputs`` says what was bound).
    outputs: the ONNX outputs to compile (default all; each must be computed token by token,
    e.g. logits and the present keys/values, not returned attention weights); run() then returns
    a tuple of them.
    options: a validated :class:`CompileOptions` instead of the keyword options above.
    """
    if options is None:
        options = CompileOptions.from_kwargs(
            precision=precision, lowering=lowering, max_context=max_context,
            weight_bits=weight_bits, error_target=error_target, strict=strict, target=target,
            dump_ir=dump_after, verify_ir=verify_ir, bind=bind, outputs=outputs)
    else:
        given = dict(precision=precision, max_context=max_context, lowering=lowering,
                     verify_ir=verify_ir, dump_after=dump_after, strict=strict, target=target,
                     weight_bits=weight_bits, error_target=error_target, bind=bind,
                     outputs=outputs)
        clash = sorted(k for k, v in given.items() if v is not _DEFAULTS[k] and v != _DEFAULTS[k])
        if clash:
            raise OptionError(f"give the options either as keywords or as options=, not both "
                              f"({', '.join(clash)})")
    calibration = None if calibration is None else np.asarray(calibration)
    ctx = PassContext.from_options(options, calibration)
    module = Module(source=model)
    passes = run_passes(module, STAGES, ctx, verify_each=options.verify_ir,
                        dump_after=options.dump_ir, dump=dump)
    prog = Program(module.neuro, {})
    sections = {**ctx.report, "precision": options.precision, "passes": passes,
                "ops": measure_ops(prog, calibration)}
    prog.report = {k: sections[k] for k in REPORT_ORDER if k in sections}
    return prog
