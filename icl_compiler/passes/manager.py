"""Pass manager: the registry of tensor-IR passes and THE default pipeline.

Every pass is a function ``run(graph, ctx) -> str`` that rewrites the graph in place and returns
a one-line summary of what it changed.  :data:`PASSES` is the registry (name → function) and
:data:`DEFAULT_PIPELINE` the order the compiler runs them in:

1. ``fold_constants``   constant folding + dead-code elimination
2. ``remove_noops``     Identity, same-type Cast, same-shape Reshape, Transpose∘Transpose
3. ``fuse_linear``      MatMul(+bias Add) / Gemm with constant weights → Linear
4. ``fuse_layernorm``   LayerNormalization / decomposed LayerNorm → LayerNorm
5. ``fuse_rmsnorm``     hand-written RMSNorm → RMSNorm
6. ``head_layout``      head split/merge → SplitHeads/MergeHeads; fused qkv Split and
                        per-head projections → Linears
7. ``attention``        causal softmax-free attention → one PlasticAttention per layer
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from ..ir.graph import Graph
from ..ir.printer import to_text
from ..ir.verify import IRVerifyError, verify
from . import (
    attention,
    fold_constants,
    fuse_layernorm,
    fuse_linear,
    fuse_rmsnorm,
    heads,
    remove_noops,
)


@dataclass
class PassContext:
    max_context: int | None = None  # T_max (context capacity), else inferred from the model
    lowering: str = "auto"  # "auto" | "kv_slot" | "fast_weight"
    precision: str = "float"  # "float" | "fixed"


PassFn = Callable[[Graph, PassContext], str]

PASSES: dict[str, PassFn] = {
    "fold_constants": fold_constants.run,
    "remove_noops": remove_noops.run,
    "fuse_linear": fuse_linear.run,
    "fuse_layernorm": fuse_layernorm.run,
    "fuse_rmsnorm": fuse_rmsnorm.run,
    "head_layout": heads.run,
    "attention": attention.run,
}

DEFAULT_PIPELINE: tuple[str, ...] = (
    "fold_constants",
    "remove_noops",
    "fuse_linear",
    "fuse_layernorm",
    "fuse_rmsnorm",
    "head_layout",
    "attention",
)
PASS_NAMES: tuple[str, ...] = DEFAULT_PIPELINE


def run_pass(name: str, graph: Graph, ctx: PassContext | None = None, *,
             verify_after: bool = True) -> str:
    """Run one registered pass (for tests and tools); verifies the IR afterwards by default."""
    summary = PASSES[name](graph, ctx or PassContext())
    if verify_after:
        _verify(graph, name)
    return summary


def _verify(graph: Graph, name: str) -> None:
    try:
        verify(graph)
    except IRVerifyError as e:
        raise IRVerifyError(f"after pass {name!r}: {e.reason}") from e


def run_pipeline(graph: Graph, ctx: PassContext | None = None, *, verify_each: bool = False,
                 dump_after: str | None = None, dump: Callable[[str], None] | None = None,
                 pipeline: tuple[str, ...] | list[str] | None = None) -> list[dict]:
    """Run the default pipeline (or ``pipeline``) on ``graph`` in place.

    Returns one ``{"name", "seconds", "summary"}`` per pass.  ``verify_each`` runs the IR
    verifier after every pass; ``dump_after=NAME`` calls ``dump(text)`` (default: print) with
    the printed IR after that pass.  An unknown pass name is a ValueError listing the names.
    """
    ctx = ctx or PassContext()
    names = tuple(pipeline) if pipeline is not None else DEFAULT_PIPELINE
    unknown = [n for n in names if n not in PASSES]
    if dump_after is not None and dump_after not in names:
        unknown.append(dump_after)
    if unknown:
        raise ValueError(f"unknown pass name(s) {unknown}; the passes are: {', '.join(names)}")
    report = []
    for name in names:
        t0 = time.perf_counter()
        summary = PASSES[name](graph, ctx)
        seconds = time.perf_counter() - t0
        if verify_each:
            _verify(graph, name)
        report.append({"name": name, "seconds": round(seconds, 4), "summary": summary})
        if name == dump_after:
            (dump or print)(to_text(graph))
    return report
