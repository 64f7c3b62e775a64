"""The compile driver: frontend → tensor passes → lowering → quantisation → placement."""
from __future__ import annotations

import os
import time
from dataclasses import asdict
from typing import Callable

import numpy as np
import onnx

from .errors import CompileError, OptionError
from .frontend.onnx_import import import_model, load_onnx, onnx_io
from .ir.neuro import verify_neuro
from .ir.verify import verify
from .runtime.program import Program

PRECISIONS = ("float", "fixed")
LOWERINGS = ("auto", "kv_slot", "fast_weight")


def compile(model: str | os.PathLike | onnx.ModelProto, precision: str = "float",
            calibration: np.ndarray | None = None, max_context: int | None = None, *,
            lowering: str = "auto", verify_ir: bool = False, dump_after: str | None = None,
            dump: Callable[[str], None] | None = None, strict: bool = False,
            target: dict | None = None, weight_bits: int | str = "auto",
            error_target: float = 0.05) -> Program:
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
    """
    if precision not in PRECISIONS:
        raise OptionError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if lowering not in LOWERINGS:
        raise OptionError(f"lowering must be one of {LOWERINGS}, got {lowering!r}")
    if weight_bits not in (8, 16, "auto") or isinstance(weight_bits, bool):
        raise OptionError(f"weight_bits must be 8, 16 or 'auto', got {weight_bits!r}")
    if not isinstance(error_target, (int, float)) or not 0 < error_target < float("inf"):
        raise OptionError(f"error_target must be a positive number, got {error_target!r}")
    if max_context is not None and (int(max_context) != max_context or max_context < 1):
        raise OptionError(f"max_context must be a positive integer, got {max_context!r}")
    passes: list[dict] = []

    def timed(name: str, fn, summary: Callable[[object], str]):
        t0 = time.perf_counter()
        out = fn()
        passes.append({"name": name, "seconds": round(time.perf_counter() - t0, 4),
                       "summary": summary(out)})
        return out

    proto = timed("load", lambda: load_onnx(model), lambda m: f"{len(m.graph.node)} ONNX nodes, "
                  f"opset {next((o.version for o in m.opset_import if o.domain in ('', 'ai.onnx')), '?')}")
    graph = timed("import", lambda: import_model(proto),
                  lambda g: f"{len(g.nodes)} IR ops after folding shape arithmetic")
    if verify_ir:
        verify(graph)
    if dump_after == "import" and dump:
        from .ir.printer import to_text

        dump(to_text(graph))
    op_counts_onnx: dict[str, int] = {}
    for n in proto.graph.node:
        op_counts_onnx[n.op_type] = op_counts_onnx.get(n.op_type, 0) + 1

    from .passes.manager import PASS_NAMES, PassContext, run_pipeline

    ctx = PassContext(max_context=max_context, lowering=lowering, precision=precision)
    neuro_stages = ("lower", "quantise", "schedule")
    if dump_after is not None and dump_after not in ("import", *neuro_stages, *PASS_NAMES):
        raise OptionError(f"--dump-ir: unknown pass {dump_after!r}; choose one of "
                         f"{', '.join(('import', *PASS_NAMES, *neuro_stages))}")
    passes += run_pipeline(graph, ctx, verify_each=verify_ir,
                           dump_after=dump_after if dump_after in PASS_NAMES else None, dump=dump)
    from .passes.attention import attention_report
    from .passes.lower import lower

    attention = attention_report(graph)
    if not attention:
        raise CompileError("no causal softmax-free attention was found; the compiler maps "
                           "attention to plastic synapses, so a model without attention has "
                           "nothing to learn in context")
    ng = timed("lower", lambda: lower(graph, precision),
               lambda n: f"{len(n.populations())} populations, {len(n.synapses())} synapse groups, "
                         f"{len(n.heads)} plastic heads")
    verify_neuro(ng)
    if dump_after == "lower" and dump:
        dump(ng.to_text())
    quant_report = None
    if precision == "fixed":
        from .passes.quantise import quantise

        if calibration is not None:
            calibration = np.asarray(calibration)
            if calibration.dtype.kind == "f" and not np.all(np.isfinite(calibration)):
                raise CompileError("calibration data contains NaN or inf")
        ng, quant_report = timed("quantise", lambda: quantise(ng, calibration, strict=strict,
                                                              weight_bits=weight_bits,
                                                              error_target=error_target),
                                 lambda r: r[1]["summary"])
        verify_neuro(ng)
        if dump_after == "quantise" and dump:
            dump(ng.to_text())
    from .passes.schedule import schedule

    timed("schedule", lambda: schedule(ng), lambda s: f"{s['steps_per_token']} steps per token, "
          f"pipeline depth {s['pipeline_depth']}")
    if dump_after == "schedule" and dump:
        dump(ng.to_text())
    resources = _resources(ng, target, passes)
    prog = Program(ng, {})
    head_kv_bits = {(s.layer, s.head): s.kv_bits for s in ng.heads}
    for h in attention:
        if h["lowering"] == "auto":
            h["lowering"] = "kv_slot"
            h["lowering_reason"] = ("auto: kv_slot (exact in Loihi fixed point; fast_weight would "
                                    "need 9-bit weights to accumulate v·kᵀ)")
        if h["lowering"] != "kv_slot":
            h["encodings"] = {"W": "fast weight W += v·kᵀ (float)"}
        elif head_kv_bits.get((h["layer"], h["head"])) == 16:
            h["encodings"] = {
                "K": "k = hi·2^7 + lo: [2·max(hi,0), 2·max(−hi,0), 2·lo] / read [q, −q, q >> 7]",
                "V": "v = hi·2^7 + lo: third factors y1 = [hi, lo] on high and low value "
                     "neurons, output high + (low >> 7)"}
        else:
            h["encodings"] = {"K": "sign_split [2·max(k,0), 2·max(−k,0)] / read [q, −q]",
                              "V": "signed third factor y1 = v"}
    n_weights = sum(s.weights.size for s in ng.synapses())
    prog.report = {
        "model": {**onnx_io(proto), "onnx_ops": dict(sorted(op_counts_onnx.items())),
                  "ir_ops": graph.op_counts()},
        "precision": precision,
        "passes": passes,
        "attention": attention,
        "resources": resources,
        "schedule": ng.schedule,
        "offcore": [asdict(o) for o in ng.offcore],
        "ops": _ops_per_token(prog, calibration, tokens=8 if n_weights < 5_000_000 else 2),
    }
    if quant_report is not None:
        prog.report["quantisation"] = quant_report
    return prog


def _resources(ng, target, passes) -> dict:
    from .passes.partition import partition

    t0 = time.perf_counter()
    res = partition(ng, target)
    passes.append({"name": "partition", "seconds": round(time.perf_counter() - t0, 4),
                   "summary": f"{res['cores_used']} cores on {res['chips_used']} chip(s) "
                              f"(lower bound {res['cores_lower_bound']})"})
    return res


def _ops_per_token(prog: Program, calibration, tokens: int) -> dict:
    """Synaptic ops, learning updates and spikes per token, measured by the emulator on a few
    tokens (the per-token cost grows with the number of written slots, so this is the cost
    early in a sequence; large graphs take ~1 s per token in the emulator)."""
    io = prog.io
    T = min(prog.t_max or tokens, tokens)
    rng = np.random.default_rng(0)
    if calibration is not None and calibration.ndim >= 2:
        x = calibration[:2, :T]
    elif io.input_kind == "tokens":
        x = rng.integers(0, io.vocab, size=(2, T))
    else:
        x = rng.uniform(0, 1, size=(2, T, prog.ng.pop(io.input_pop).size))
    prog.run(x)
    st = prog.last_stats
    n = max(st.tokens, 1)
    return {"measured_on": "calibration data" if calibration is not None else "random input",
            "tokens": st.tokens,
            "synaptic_ops_per_token": round(st.synaptic_ops / n, 1),
            "learning_updates_per_token": round(st.learning_updates / n, 1),
            "spikes_per_token": round(st.spikes / n, 1),
            "saturations": st.saturations}
