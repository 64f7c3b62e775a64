"""Partition, chips: cores onto chips with few inter-chip spikes, and the spike traffic.

Chips (minimising inter-chip spikes)
------------------------------------
Greedy + refinement rather than recursive Kernighan–Lin from scratch: cores are already in
dataflow order (layer by layer), and a transformer's core graph is close to a chain of layers, so
cutting that order into consecutive runs of ``cores_per_chip`` cores is a near-optimal start that
also respects chip capacity exactly.  Each pair of consecutive chips is then refined with
networkx's ``kernighan_lin_bisection`` seeded with the current split (it swaps cores pairwise, so
both chips keep their core counts; a swap set is kept only if the cut between the two chips drops
— other chips' cuts cannot change by swapping cores between these two).  Recursive KL bisection
from a random start on 10^4 cores is slow in pure-Python networkx, ignores the dataflow order,
and needs padding to respect exact chip capacities.  Embedded populations then go to the chip
with which they exchange the most spikes.

Spike estimate
--------------
``interchip_spikes_per_token`` counts, per token, one spike per (source neuron, destination
core) pair crossing chips, assuming every graded neuron sends every token (an upper bound; ReLU
sparsity lowers it), one-hot inputs send exactly one spike, and k/q send their sign-split pair.
"""
from __future__ import annotations

import bisect
import time

import networkx as nx

from ...targets.loihi2 import Target
from .tiling import _Planner

def _traffic(pl: _Planner) -> list[tuple]:
    """Edges (src node, dst node, spikes per token); nodes are tile ids or ("emb"|"host", pop)."""
    ng, tiles, plans = pl.ng, pl.tiles, pl.plans
    edges: list[tuple] = []
    src_index: dict[str, tuple[list, list]] = {}

    def sources(pop: str):
        if pop not in src_index:
            plan = plans[pop]
            if plan.cls != "neurocore":
                node = ("host", pop) if plan.cls == "host" else ("emb", pop)
                src_index[pop] = ([0], [(0, ng.pop(pop).size, node)])
            else:
                hs = sorted(plan.holders)
                src_index[pop] = ([h[0] for h in hs], [(a, b, tid) for a, b, tid in hs])
        return src_index[pop]

    def connect(pop, lo, hi, dst, scale=1.0):
        starts, items = sources(pop)
        mult = plans[pop].mult
        j = max(bisect.bisect_right(starts, lo) - 1, 0)
        for a, b, node in items[j:]:
            if a >= hi:
                break
            ov = min(b, hi) - max(a, lo)
            if ov > 0:
                edges.append((node, dst, ov * mult * scale))

    for t in tiles:
        plan = plans[t.pop]
        by_syn = {i.syn: i for i in plan.ins}
        if t.kind == "sum":  # partial tiles of the same pop → this sum tile
            for tid in plan.tiles:
                u = tiles[tid]
                if u.kind == "partial" and u.chunk is not None and u.chunk >= 0:
                    ov = min(u.hi, t.hi) - max(u.lo, t.lo)
                    if ov > 0:
                        edges.append((u.id, t.id, ov * plan.mult))
            continue
        for syn, lo, hi in t.inputs:
            i = by_syn[syn]
            scale = 1.0 / i.pre_size if i.one_hot else 1.0
            connect(i.pre, lo, hi, t.id, scale)
        if plan.cls != "neurocore":  # relay/partial currents → the embedded core or host
            node = ("host", t.pop) if plan.cls == "host" else ("emb", t.pop)
            edges.append((t.id, node, t.hi - t.lo))
    for h in ng.heads:
        for tid in plans[h.slots].tiles:  # k writes into every slot tile (q reads via K's input)
            t = tiles[tid]
            if t.kind in ("slots", "partial"):
                connect(h.k, 0, ng.pop(h.k).size, t.id)
        for tid in plans[h.out].tiles:  # v is the third factor of the neurons holding V
            t = tiles[tid]
            if any(syn == h.v_syn for syn, _, _ in t.inputs):
                connect(h.v, t.lo, t.hi, t.id)
    return edges


def _assign_chips(n_cores: int, core_edges: dict, t: Target, budget_s: float = 20.0) -> list[int]:
    cpc = t.cores_per_chip
    chip = [c // cpc for c in range(n_cores)]
    n_chips = -(-n_cores // cpc) if n_cores else 0
    if n_chips < 2:
        return chip
    g = nx.Graph()
    g.add_nodes_from(range(n_cores))
    for (a, b), w in core_edges.items():
        if a != b:
            if g.has_edge(a, b):
                g[a][b]["w"] += w
            else:
                g.add_edge(a, b, w=w)
    t0 = time.perf_counter()
    from networkx.algorithms.community import kernighan_lin_bisection

    def cut(A, B):
        return sum(d["w"] for u, v, d in g.edges(A, data=True) if v in B)

    for _sweep in range(2):
        improved = False
        for c in range(n_chips - 1):
            if time.perf_counter() - t0 > budget_s:
                return chip
            A = {i for i in range(n_cores) if chip[i] == c}
            B = {i for i in range(n_cores) if chip[i] == c + 1}
            sub = g.subgraph(A | B)
            if sub.number_of_edges() == 0:
                continue
            before = cut(A, B)
            if before == 0:
                continue
            A2, B2 = kernighan_lin_bisection(sub, partition=(A, B), max_iter=10, weight="w", seed=0)
            if len(A2) == len(A) and cut(A2, B2) < before - 1e-9:
                for i in A2:
                    chip[i] = c
                for i in B2:
                    chip[i] = c + 1
                improved = True
        if not improved:
            break
    return chip
