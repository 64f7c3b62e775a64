"""Pass ``schedule``: record the token schedule of the neuromorphic graph (DESIGN §4).

Matches: a verified :class:`NeuroGraph` (float or fixed).
Produces: ``attrs["step"] = τ`` on every population and the graph's ``schedule`` (the report's
``schedule`` section): steps per token, pipeline depth, steps per sequence, the protocol, each
head's anchor and the populations of every stage.  The timing model itself is
:mod:`icl_compiler.semantics.timing` (docs/semantics.md §7), which the Lava backend runs.
Invariants: the graph's structure, weights and scales are unchanged.
"""
from __future__ import annotations

from ..ir.neuro import NeuroGraph
from ..semantics.timing import STEPS_PER_TOKEN, timing
from .base import Module, Pass, PassContext


def schedule(ng: NeuroGraph) -> dict:
    tau, anchors = timing(ng)
    for name, d in tau.items():
        ng.pop(name).attrs["step"] = d
    out = ng.io.output_pop
    S = STEPS_PER_TOKEN if ng.heads else 1
    sched = {
        "steps_per_token": S,
        "pipeline_depth": tau[out],
        "steps_per_sequence": f"{S}*(T-1) + {tau[out] + 1}",
        "protocol": "A: write k_t (bAP on slot t); B: read with q_t, write v_t (slots gated); "
                    "scores at A+2, head output at A+3; residual inputs wait in delay lines",
        "heads": [{"layer": h.layer, "head": h.head, "anchor": a}
                  for h, a in zip(ng.heads, anchors)],
        "stages": {str(d): sorted(n for n, x in tau.items() if x == d)
                   for d in sorted(set(tau.values()))},
    }
    ng.g.graph["schedule"] = sched
    return sched


def _run(m: Module, ctx: PassContext) -> str:
    s = ctx.report["schedule"] = schedule(m.neuro)
    return f"{s['steps_per_token']} steps per token, pipeline depth {s['pipeline_depth']}"


PASS = Pass("schedule", ir="neuro", requires=("lower",), run=_run)
