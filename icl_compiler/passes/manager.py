"""Pass manager: the registry of passes and THE pipeline, over both IRs.

:data:`PIPELINE` is the order the compiler runs the passes in (after the frontend's ``load`` and
``import``, see ``compiler.py``), each a :class:`~.base.Pass` that states the IR it acts on:

tensor IR (each rewrites the graph in place; ``run(graph, ctx) -> summary`` in its module)

1. ``fold_constants``   constant folding + dead-code elimination
2. ``tabulate_ids``     a function of the token id alone (one-hot matmul, id-derived
                        padding mask) → Gather of a table evaluated on every id
3. ``canonical_products`` Mul+ReduceSum, unary, n-ary and elementwise Einsums → binary
                        contracting Einsums and Muls
4. ``linear_attention`` a running sum (CumSum) of k ⊗ v read by q → scores · tril · V
5. ``cse``              common-subexpression elimination
6. ``remove_noops``     Identity, same-type Cast, same-shape Reshape, Transpose∘Transpose
7. ``fuse_linear``      MatMul(+bias Add) / Gemm with constant weights → Linear
8. ``fuse_layernorm``   LayerNormalization / decomposed LayerNorm → LayerNorm
9. ``fuse_rmsnorm``     RMSNorm / L2 norm recognised by their numbers → RMSNorm / L2Norm
10. ``head_layout``      head split/merge → SplitHeads/MergeHeads; fused qkv Split and
                        per-head projections → Linears
11. ``attention``       causal softmax-free attention → one PlasticAttention per layer
12. ``fuse_activation`` smooth activations (GELU, SiLU, sigmoid, tanh …) recognised by their
                        numbers → Activation

tensor IR → neuromorphic IR, then neuromorphic IR

13. ``lower``           populations, synapse groups, plastic heads (writes ``attention``,
                        ``offcore``, ``activations``, ``token_ops``)
14. ``quantise``        fixed mode only: int8 weights, payload scales (writes ``quantisation``)
15. ``schedule``        the token schedule (writes ``schedule``)
16. ``partition``       cores and chips (writes ``resources``)
17. ``estimate``        Loihi 2 latency and energy ESTIMATE, Loihi 1 per-op proxies (writes
                        ``estimate``)

:data:`PASSES` maps every name to its pass.  :data:`DEFAULT_PIPELINE` (= :data:`PASS_NAMES`)
names the tensor part, which :func:`run_pipeline` runs on a tensor graph by default (tests and
tools); the loop itself is :func:`~.base.run_passes`.
"""
from __future__ import annotations

from collections.abc import Callable

from ..ir.graph import Graph
from . import (
    canonical_products,
    attention,
    cse,
    estimate,
    fold_constants,
    fuse_activation,
    fuse_layernorm,
    fuse_linear,
    fuse_rmsnorm,
    heads,
    linear_attention,
    lower,
    partition,
    quantise,
    remove_noops,
    schedule,
    tabulate_ids,
)
from .base import Module, Pass, PassContext, run_passes, tensor_pass, verify_result

__all__ = ["PIPELINE", "PASSES", "DEFAULT_PIPELINE", "PASS_NAMES", "PassContext", "run_pass",
           "run_pipeline"]

PIPELINE: tuple[Pass, ...] = (
    tensor_pass("fold_constants", fold_constants.run),
    tensor_pass("tabulate_ids", tabulate_ids.run),
    tensor_pass("canonical_products", canonical_products.run),
    tensor_pass("linear_attention", linear_attention.run),
    tensor_pass("cse", cse.run),
    tensor_pass("remove_noops", remove_noops.run),
    tensor_pass("fuse_linear", fuse_linear.run),
    tensor_pass("fuse_layernorm", fuse_layernorm.run),
    tensor_pass("fuse_rmsnorm", fuse_rmsnorm.run),
    tensor_pass("head_layout", heads.run),
    tensor_pass("attention", attention.run),
    tensor_pass("fuse_activation", fuse_activation.run),
    lower.PASS,
    quantise.PASS,
    schedule.PASS,
    partition.PASS,
    estimate.PASS,
)

PASSES: dict[str, Pass | Callable[[Graph, PassContext], str]] = {p.name: p for p in PIPELINE}
DEFAULT_PIPELINE: tuple[str, ...] = tuple(p.name for p in PIPELINE if p.ir == p.result == "tensor")
PASS_NAMES: tuple[str, ...] = DEFAULT_PIPELINE


def _get(name: str) -> Pass:
    p = PASSES[name]
    return p if isinstance(p, Pass) else tensor_pass(name, p)  # a plain function is a tensor pass


def run_pass(name: str, graph: Graph, ctx: PassContext | None = None, *,
             verify_after: bool = True) -> str:
    """Run one registered tensor pass on ``graph`` in place (for tests and tools); verifies the
    IR afterwards by default."""
    p = _get(name)
    module = Module(tensor=graph)
    summary = p.run(module, ctx or PassContext())
    if verify_after:
        verify_result(p, module, tensor=True)
    return summary


def run_pipeline(graph: Graph, ctx: PassContext | None = None, *, verify_each: bool = False,
                 dump_after: str | None = None, dump: Callable[[str], None] | None = None,
                 pipeline: tuple[str, ...] | list[str] | None = None) -> list[dict]:
    """Run the tensor passes of the pipeline (or the passes named in ``pipeline``) on ``graph``
    in place.

    Returns one ``{"name", "seconds", "summary"}`` per pass.  ``verify_each`` runs the IR
    verifier after every pass; ``dump_after=NAME`` calls ``dump(text)`` (default: print) with
    the printed IR after that pass.  An unknown pass name is a ValueError listing the names.
    """
    names = tuple(pipeline) if pipeline is not None else DEFAULT_PIPELINE
    unknown = [n for n in names if n not in PASSES]
    if unknown:
        raise ValueError(f"unknown pass name(s) {unknown}; the passes are: {', '.join(names)}")
    return run_passes(Module(tensor=graph), [_get(n) for n in names], ctx or PassContext(),
                      verify_each=verify_each, dump_after=dump_after, dump=dump)
