"""Partition, work: what each core does per token, for the latency and energy estimate.

``core_work(pl)`` summarises, per core and per step τ (``pop.attrs["step"]``, set by the schedule
pass; 0 if it has not run), the per-token work of the tiles the core holds:

* ``synops``: synaptic ops per token that do not depend on the position — static groups with every
  graded pre neuron active (an upper bound; a one-hot input sends one spike, so a tile over the
  pre range [lo, hi) of N ids gets (hi − lo)/N of it, its expected share), the K read (every K
  synapse of an active lane: of a sign-split pair [q⁺, q⁻] one lane spikes, and the low lane of
  16-bit K), the partial-sum and row-sum synapses the partition adds;
* ``v``: the V read, which grows with the position: ``[lo, hi, posts]`` per V input (slots
  [lo, hi) into ``posts`` value neurons); with t written slots it costs
  ``posts · clip(t − lo, 0, hi − lo)`` ops (a slot that holds nothing does not spike);
* ``learning``: plastic updates per token, in expectation over the positions (the K row of
  token t lies in the slot tile holding t: d·lanes updates; the V column of t reaches the value
  neurons of every V tile whose slot range holds t);
* ``neurons``: the compartments of the tiles (with sign-split lanes, relays, sum neurons).
"""
from __future__ import annotations

from ...ir.ops import ROW_NORMS
from .tiling import _Planner


def core_work(pl: _Planner, n_cores: int) -> list[dict]:
    ng = pl.ng
    heads = {h.k_syn: h for h in ng.heads} | {h.v_syn: h for h in ng.heads}
    out: list[dict] = [{} for _ in range(n_cores)]
    for t in pl.tiles:
        if t.core < 0:
            continue
        plan = pl.plans[t.pop]
        tau = str(int(ng.pop(t.pop).attrs.get("step", 0)))
        w = out[t.core].setdefault(tau, {"synops": 0.0, "v": [], "learning": 0.0, "neurons": 0})
        w["neurons"] += t.neurons
        posts = (t.hi - t.lo) * plan.mult
        by_syn = {i.syn: i for i in plan.ins}
        if t.kind == "sum":
            w["synops"] += sum((hi - lo) for _, lo, hi in t.inputs) * posts
            continue
        for syn, lo, hi in t.inputs:
            i = by_syn[syn]
            s = ng.syn(syn)
            if s.role == "k":
                h = heads[syn]
                w["synops"] += (hi - lo) * (i.axf - 1) * posts  # one active lane of each ± pair
                # K write of token t: row t, d·lanes synapses, on the tile holding slot t
                w["learning"] += (hi - lo) * i.axf * (t.hi - t.lo) / h.t_max
            elif s.role == "v":
                h = heads[syn]
                w["v"].append([lo, hi, posts])
                w["learning"] += posts * (hi - lo) / h.t_max
            elif i.one_hot:
                w["synops"] += (hi - lo) / i.pre_size * posts
            else:
                w["synops"] += (hi - lo) * i.axf * posts
        h = pl.head_of_slots.get(t.pop)
        if h is not None and h.normalise in ROW_NORMS:
            w["synops"] += t.hi - t.lo  # the tile's row-sum neuron, fed by its slots
    return out
