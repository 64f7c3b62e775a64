"""Token timing of a neuromorphic program: the step at which every population fires (docs/semantics.md §7).

This is the timing the Lava backend really runs (``backends/lava/plan.py`` builds its delay
lines from it) and the schedule pass records (``passes/schedule.py``), so ``steps_per_token`` and
``pipeline_depth`` are measured figures, not estimates.

Model (Lava 0.10 ``Loihi2SimCfg``; one algorithmic step = one Lava time step):

* Token t enters at step ``S·t`` of its sequence (``S = steps_per_token``): the input
  populations fire then (``τ = 0``).
* Every static ``Dense`` delivers one step after its pre population fired.  A population fires
  once per token, at ``τ(P) = max over its incoming static groups of τ(pre) + 1`` (0 without
  inputs), after *integrating* what arrived: inputs that arrive earlier (residual paths are
  shallower than the main path) wait in per-input delay lines of the receiving neuron process
  (dendritic delays), so pipelined tokens never mix.
* A plastic head with anchor ``A`` runs the 2-step protocol (DESIGN §4):
  ``A = max(1, arr(k), arr(q) − 1, arr(v) − 1)`` where ``arr(x) = max τ(pre) + 1`` over x's
  inputs.  Step ``A`` (phase A): the k/q neuron sends the sign-split k_t to the K synapses and
  the slot neuron marks slot t with a bAP.  Step ``A + 1`` (phase B): the k/q neuron sends q_t
  (the read), the value neuron sends v_t as third factor while the slot neuron spikes one-hot on
  slot t (the V write).  The K synapses deliver the scores at ``A + 2``, where the slot neurons
  apply f; the V synapses deliver ``V·f(scores)`` at ``A + 3``, where the value neurons (or the
  embedded divide, for row-sum normalisation) emit the head output.  Hence
  ``τ(k) = A, τ(q) = τ(v) = A + 1, τ(slots) = A + 2, τ(out) = A + 3``.  The step before
  ``A`` of a sequence's first token clears the head's K and V synapses (bAP on every slot /
  one-hot spike on every slot with the write enable), so a batch streams through one network.
* ``S = 2``: the K synapses are busy at A (write) and B (read) of every token; everything else
  is pipelined.  ``pipeline_depth = τ(output)``: steps from a token's input to its output.  A
  sequence of T tokens takes ``S·(T − 1) + pipeline_depth + 1`` steps.
"""
from __future__ import annotations

import networkx as nx

from ..ir.neuro import NeuroGraph

STEPS_PER_TOKEN = 2  # algorithmic steps per token of a program with plastic heads
HEAD_LATENCY = 3  # τ(out) − A: the scores reach the slots at A + 2, the output leaves at A + 3


def timing(ng: NeuroGraph) -> tuple[dict[str, int], list[int]]:
    """(τ per population, anchor A per head in ``ng.heads`` order)."""
    head_in = {}
    for i, h in enumerate(ng.heads):
        for role, name in (("k", h.k), ("q", h.q), ("v", h.v)):
            head_in[name] = (i, role)
    dep = nx.DiGraph()
    dep.add_nodes_from(ng.g.nodes)
    hnodes = [("head", i) for i in range(len(ng.heads))]
    dep.add_nodes_from(hnodes)
    for s in ng.synapses():
        if s.role != "static":
            continue
        if s.post in head_in:
            dep.add_edge(s.pre, hnodes[head_in[s.post][0]])
        else:
            dep.add_edge(s.pre, s.post)
    for i, h in enumerate(ng.heads):
        for name in (h.k, h.q, h.v, h.slots, h.out):
            dep.add_edge(hnodes[i], name)
    tau: dict[str, int] = {}
    anchors = [0] * len(ng.heads)

    def arrival(pop: str) -> int:
        return max((tau[s.pre] + 1 for s in ng.incoming(pop) if s.role == "static"), default=0)

    for node in nx.topological_sort(dep):
        if isinstance(node, tuple):
            h = ng.heads[node[1]]
            a = max(1, arrival(h.k), arrival(h.q) - 1, arrival(h.v) - 1)
            anchors[node[1]] = a
            tau[h.k], tau[h.q], tau[h.v] = a, a + 1, a + 1
            tau[h.slots], tau[h.out] = a + 2, a + HEAD_LATENCY
        elif node in tau:
            continue
        elif ng.pop(node).model == "input":
            tau[node] = 0
        else:
            tau[node] = arrival(node)
    return tau, anchors


def sequence_steps(tokens: int, depth: int, steps_per_token: int = STEPS_PER_TOKEN) -> int:
    """Steps a sequence of ``tokens`` tokens takes: ``S·(T − 1) + pipeline_depth + 1``."""
    return steps_per_token * (tokens - 1) + depth + 1
