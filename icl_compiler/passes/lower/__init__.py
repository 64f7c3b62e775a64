"""Pass ``lower``: tensor IR (after the tensor passes) → neuromorphic graph.

Works on the value classification of :mod:`.classify`: every *token* value (a function of the
token at its position) is an affine form Σ W_i·pop_i + b over populations, onto the value's
per-token feature vector (:mod:`icl_compiler.ir.layout`), whatever its layout.  Forms are built
lazily and materialised into a population only where a neuron is needed (a nonlinearity, a
norm, an attention input, a value read by several consumers, the output).

* Linear token-local ops — data movement of any kind (Reshape, Transpose, Split, Concat, Slice,
  Gather with constant indices, Expand, Pad ...), sums, scaling by constants, products with
  constant weights (MatMul, Gemm, Einsum, Conv within a token ...) — are found by what they
  compute: the op is run on probe tensors, giving an index map (data movement, exact) or a
  matrix and a constant part (checked on a random input).
* Constant parts that depend on the position (positional embeddings in any form: a lookup by
  arange, a sliced learned table, a table the exporter folded into a constant, OPT's offset
  positions) become a per-position table: the host sends a one-hot position spike each token
  into a Dense holding the table, exactly like the token embedding.
* Neurons: ReLU → graded ReLU neurons; smooth activations (``Activation``, from
  ``fuse_activation``) → activation neurons; elementwise products of two token values (gated
  MLPs) and linear maps whose weights change with the position (rotary embeddings) → product
  neurons (:mod:`.products`); LayerNorm/RMSNorm → norm populations on an embedded core;
  token ids enter one-hot through a Dense (the embedding table); each attention head becomes
  k/q/v populations, T_max slot neurons and plastic K/V synapse groups (DESIGN §4).

Modules: :mod:`.lowerer` (the driver: forms, probing, position tables), :mod:`.neurons` (the
ops that need neurons), :mod:`.products` (product neurons), :mod:`.forms` (affine forms and
helpers).

Invariants: float semantics are unchanged (checked against the interpreter in tests); the result
passes ``verify_neuro``.  As the pipeline's ``lower`` pass (:data:`PASS`) it also writes the
report's ``attention`` section (lowering and encodings per head), ``offcore`` and
``activations`` (the activation and product populations), and records in
the program's I/O contract which auxiliary inputs were bound.
"""
from __future__ import annotations

from dataclasses import asdict

import numpy as np

from ...errors import CompileError
from ...ir.graph import Graph
from ...ir.neuro import NeuroGraph, NeuronModel
from ...semantics.neurons import encodings
from ...targets.loihi2 import as_target
from ..attention import attention_report
from ..base import Module, Pass, PassContext
from ..classify import classify
from ..partition.cost import check_heads_fit
from .forms import Affine, _op
from .lowerer import Lowerer

__all__ = ["lower", "PASS", "Lowerer", "Affine", "activation_report"]


def _first_blocker(g: Graph) -> CompileError | None:
    """Why no attention was recognised: the first op where the values stop being token-local
    (the attention may be hidden behind it), with every op that has no neuron mapping."""
    from ..classify import first_mixing

    info = classify(g)
    problems = [CompileError(f"{i.reason}; attention could not be recognised past this op",
                             node=i.node.onnx_name or i.node.name, op=_op(i.node))
                for i in first_mixing(g, info)]
    return CompileError.first_of(problems) if problems else None


def _unmapped(g: Graph) -> list[CompileError]:
    """Ops on token values that have no neuron mapping (for the report of a refused model)."""
    from .forms import AFFINE, MAPPED, NEURON_HINTS
    from .lowerer import Lowerer

    info = classify(g)
    out = []
    for n in g.topo_nodes():
        op = _op(n)
        if any(info.get(o) is not None and info[o].kind.value == "token" for o in n.outputs) \
                and op not in AFFINE and not hasattr(Lowerer, f"op_{n.op}"):
            out.append(CompileError(f"{op} cannot be lowered to neurons yet",
                                    node=n.onnx_name or n.name, op=op,
                                    hint=(NEURON_HINTS[op] + "; " if op in NEURON_HINTS else "")
                                    + MAPPED))
    return out


def activation_report(ng: NeuroGraph) -> list[dict]:
    """The report's ``activations``: one entry per activation or product population (its
    function, neurons and incoming synapses; the quantiser adds the fixed-point response and
    its measured error)."""
    out = []
    for p in ng.populations():
        if p.model not in (NeuronModel.ACTIVATION, NeuronModel.PRODUCT):
            continue
        syn = sum(int(np.count_nonzero(s.weights)) for s in ng.incoming(p.name))
        e = {"population": p.name, "neuron": str(p.model), "size": p.size, "synapses_in": syn}
        if p.act is not None:
            e.update(fn=p.act.fn, method="exact" if p.act.method == "exact" else p.act.method)
        else:
            e["operand_b"] = sorted({s.pre for s in ng.incoming(p.name) if s.port == 1})
        out.append(e)
    return out


def lower(graph: Graph, precision: str = "float") -> NeuroGraph:
    """Lower to a float neuromorphic graph; ``precision`` is the final one (for checks)."""
    return Lowerer(graph, precision).run()


def lower_with_notes(graph: Graph, precision: str = "float") -> tuple[NeuroGraph, list[dict]]:
    """:func:`lower`, and the report's ``token_ops`` (convolutions and pooling: how each was
    lowered, its features and weights)."""
    lw = Lowerer(graph, precision)
    return lw.run(), lw.token_ops


AUTO_REASON = ("auto: kv_slot (exact in Loihi fixed point; fast_weight would need 9-bit weights "
               "to accumulate v·kᵀ)")


def _run(m: Module, ctx: PassContext) -> str:
    """The pipeline's ``lower``: the neuromorphic graph, and the report's ``attention`` (one entry
    per head: the attention pass's findings, the lowering and the encodings) and ``offcore``."""
    attention = attention_report(m.tensor)
    if not attention:
        blocker = _first_blocker(m.tensor)
        if blocker is not None:
            raise blocker
        unmapped = _unmapped(m.tensor)
        first = ("" if not unmapped else f" (and node {unmapped[0].node!r} "
                 f"({unmapped[0].op}) has no neuron mapping)")
        err = CompileError("no causal softmax-free attention was found; the compiler maps "
                           "attention to plastic synapses, so a model without attention has "
                           "nothing to learn in context" + first)
        err.blockers = [err] + unmapped
        raise err
    ctx.report.setdefault("model", {})["ir_ops"] = m.tensor.op_counts()
    # before the slot populations and K/V synapses are allocated: can the heads fit at all?
    target = as_target(ctx.target)
    for n in m.tensor.topo_nodes():
        if n.op == "PlasticAttention" and n.attrs.get("lowering", "auto") != "fast_weight":
            a = n.attrs
            check_heads_fit(target, int(a["T_max"]), int(a["d_k"]), int(a["d_v"]),
                            heads=int(a["heads"]), node=n.onnx_name or n.name)
    ng, token_ops = lower_with_notes(m.tensor, ctx.precision)
    m.neuro = ng
    ng.io.bound = {k: (v if isinstance(v, str) and v in ("ones", "zeros", "arange") else "file")
                   for k, v in ctx.report.get("model", {}).get("bound_inputs", {}).items()}
    heads = {(h.layer, h.head): h for h in ng.heads}
    for entry in attention:
        if entry["lowering"] == "auto":
            entry["lowering"] = "kv_slot"
            entry["lowering_reason"] = AUTO_REASON
        entry["encodings"] = encodings(heads[entry["layer"], entry["head"]])
    ctx.report["attention"] = attention
    ctx.report["offcore"] = [asdict(o) for o in ng.offcore]
    ctx.report["activations"] = activation_report(ng)
    ctx.report["token_ops"] = token_ops
    return (f"{len(ng.populations())} populations, {len(ng.synapses())} synapse groups, "
            f"{len(ng.heads)} plastic heads")


PASS = Pass("lower", ir="tensor", produces="neuro", requires=("attention",), run=_run)
