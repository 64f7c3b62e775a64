"""Token schedule of the lowered graph (DESIGN §4).

Each static Dense adds one algorithmic step of delay; a head's output is ready two synapse hops
after its k/q/v populations (K read, then V read).  ``pipeline_depth`` is the longest such path
from the input to the output, i.e. the steps between a token entering and its logits leaving.
``steps_per_token`` is how many algorithmic steps the attention protocol needs per token with a
gated slot neuron: step A writes k_t, step B reads with q_t and writes v_t (2).
Populations get ``attrs["step"]``: their depth in the pipeline.
"""
from __future__ import annotations

import networkx as nx

from ..ir.neuro import NeuroGraph

STEPS_PER_TOKEN = 2


def schedule(ng: NeuroGraph) -> dict:
    dep = nx.DiGraph()
    dep.add_nodes_from(ng.g.nodes)
    for s in ng.synapses():
        if s.role == "static":
            dep.add_edge(s.pre, s.post, w=1)
    for h in ng.heads:
        for src in (h.k, h.q, h.v):
            dep.add_edge(src, h.out, w=2)
    depth = {n: 0 for n in dep}
    for n in nx.topological_sort(dep):
        for _, m, d in dep.out_edges(n, data=True):
            depth[m] = max(depth[m], depth[n] + d["w"])
    for name, d in depth.items():
        ng.pop(name).attrs["step"] = d
    out = ng.g.graph["io"]["output_pop"]
    sched = {
        "steps_per_token": STEPS_PER_TOKEN if ng.heads else 1,
        "pipeline_depth": depth[out],
        "protocol": "A: write k_t (bAP on slot t); B: read with q_t, write v_t (slots gated)",
        "stages": {str(d): sorted(n for n, x in depth.items() if x == d)
                   for d in sorted(set(depth.values()))},
    }
    ng.g.graph["schedule"] = sched
    return sched
