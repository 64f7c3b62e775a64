"""Pass ``estimate``: a Loihi 2 latency and energy ESTIMATE of the compiled program, from its own
op counts, its schedule and its placement (issue 17).  It is not a measurement: the per-op
figures are Loihi 1's (Davies et al. 2018, Table 2), used as proxies since Intel publishes none
for Loihi 2; the static power is a measured Loihi 2 board figure.  Every constant is in
``targets/loihi2.py`` with its source and its tag (MEASURED / ASSUMED).

Matches: a verified :class:`NeuroGraph` after ``schedule`` and ``partition`` (it reads the
``schedule`` and ``resources`` report sections: the steps per token, the pipeline depth, each
core's per-step work ``per_core[c]["work"]`` and the spike traffic ``traffic``).
Produces: ``report["estimate"]`` (schema below); the graph is unchanged.

What it counts, per token at position t (t = 1 … T_max, t slots written, the current one
included):

* synaptic ops: static groups with every graded neuron active (an upper bound; a one-hot input
  sends one spike), the K read (T_max slots per active q lane: a Loihi dense group processes
  every synapse of a spiking axon) and the V read (t written slots × the value neurons: an empty
  slot does not spike), so the cost grows with t;
* learning updates: the K row and the V column of token t;
* neuron updates: each compartment is updated every algorithmic step, active in the step its
  population fires in (once per token), inactive in the S − 1 others;
* spikes: within a core, between cores of a chip (with their tile hops on the mesh), between
  chips and to the host / embedded cores (``resources.traffic``, every graded neuron sending).

Latency (bottleneck-core model): the S steps of a token (S = steps per token) each last as long
as the busiest core in that step — its synaptic ops × T_SYNOP_S + learning updates × T_LEARN_S +
active / inactive neuron updates × their times; a core does in step r the work of its
populations whose step τ ≡ r (mod S) — plus one barrier synchronisation.  A sequence of T tokens
takes ``S·(T − 1) + depth + 1`` steps (``semantics.timing.sequence_steps``): the T tokens' S
steps each and ``depth + 1 − S`` pipeline fill/drain steps, counted as steps in which every
compartment does an inactive update.  Energy = Σ counts × per-op energies + static power ×
latency (per chip used).

``report["estimate"]``::

    {"label": str, "per_token": {"latency_s", "energy_j", "at_t1": {...}, "at_t_max": {...}, …},
     "per_sequence": {"tokens": T_max, "latency_s", "energy_j", "steps"},
     "per_position": {"latency_s": [...], "energy_j": [...]},   # t = 1 … T_max
     "fill_drain": {"steps", "latency_s", "energy_j"},
     "counts": {...}, "assumptions": [...], "sources": {tag: citation},
     "constants": {name: {"value", "tag", "source"}}}

:func:`episode_estimate` gives a sequence of any length ≤ T_max from that dict alone.
"""
from __future__ import annotations

import numpy as np

from ..ir.neuro import NeuroGraph
from ..semantics.timing import sequence_steps
from ..targets import loihi2 as L2
from .base import Module, Pass, PassContext

LABEL = ("Loihi 2 ESTIMATE (not a measurement): bottleneck-core model; per-op energies and "
         "times are Loihi 1 proxies (Davies et al. 2018, Table 2), static power measured on a "
         "Loihi 2 board (lava-dl PilotNet benchmarks)")

ASSUMPTIONS = [
    "Loihi 1 per-op energies and times (Davies et al. 2018, Table 2) stand in for Loihi 2: "
    "synaptic op, learning update, neuron update, spike within a tile, tile hop, barrier",
    "every graded neuron is active every token (no activation sparsity): synaptic ops and "
    "spikes are upper bounds; a one-hot input sends one spike",
    "the K read processes all T_max K synapses of each active q lane (one lane of each "
    "sign-split pair spikes); the V read processes only the t written slots",
    "neuron update times are ASSUMED (2 / 1 synaptic-op times for active / inactive), as is the "
    "learning update time (2 synaptic-op times); see targets/loihi2.py",
    "mesh: 4 cores per tile, 32 tiles as an 8 x 4 mesh (Loihi 1 geometry); hops = Manhattan "
    "distance of the tiles; hop energy = mean of E-W and N-S",
    "a spike between chips is charged a mesh diameter of hops (no inter-chip figure is "
    "published); spikes to the host or embedded cores one tile spike",
    "barrier: 113 ns (1 tile) to 465 ns (32 tiles), linear in the tiles in use; with several "
    "chips, 465 ns per chip",
    "static power: the middle of the measured 0.23-0.28 W of a one-chip Loihi 2 board, per "
    "chip used",
    "embedded-core (LayerNorm, row-sum division) and host work is not in the latency or the "
    "energy; spike transport overlaps the synaptic work of a step",
    "pipeline fill/drain steps (depth + 1 - S per sequence) do inactive neuron updates only",
]


def _clip_slots(t: np.ndarray, lo: int, hi: int) -> np.ndarray:
    return np.clip(t - lo, 0, hi - lo)


def estimate(ng: NeuroGraph, resources: dict, schedule: dict, t_max: int | None = None) -> dict:
    """The ``estimate`` report section of a scheduled and partitioned graph."""
    S = int(schedule["steps_per_token"])
    depth = int(schedule["pipeline_depth"])
    caps = [h.t_max for h in ng.heads]
    T = max(caps) if caps else int(t_max or 1)
    t = np.arange(1, T + 1, dtype=np.float64)  # written slots at each position
    per_core = resources["per_core"]
    n_cores = len(per_core)
    chips = max(1, int(resources["chips_used"]))

    # per core and step residue r: the work that does not depend on t, and the V inputs
    neurons = np.array([sum(w["neurons"] for w in c["work"].values()) for c in per_core], float)
    syn_total = np.zeros(T)
    learn_total = 0.0
    step_time = np.zeros((S, T))
    active_total = 0.0
    for c in per_core:
        n_c = sum(w["neurons"] for w in c["work"].values())
        for r in range(S):
            ws = [w for tau, w in c["work"].items() if int(tau) % S == r]
            syn = np.full(T, sum(w["synops"] for w in ws))
            for w in ws:
                for lo, hi, posts in w["v"]:
                    syn = syn + posts * _clip_slots(t, lo, hi)
            learn = sum(w["learning"] for w in ws)
            active = sum(w["neurons"] for w in ws)
            busy = (syn * L2.T_SYNOP_S + learn * L2.T_LEARN_S + active * L2.T_NEURON_ACTIVE_S
                    + (n_c - active) * L2.T_NEURON_INACTIVE_S)
            np.maximum(step_time[r], busy, out=step_time[r])
            syn_total += syn
            learn_total += learn
            active_total += active
    inactive_total = S * float(neurons.sum()) - active_total
    if chips > 1:
        barrier = chips * L2.T_BARRIER_MAX_S
    else:
        barrier = L2.barrier_s(-(-n_cores // L2.CORES_PER_TILE)) if n_cores else 0.0
    lat = (step_time + barrier).sum(axis=0)  # the S steps of the token at each position

    tr = resources.get("traffic", {})
    sp_core, sp_cores = tr.get("within_core", 0.0), tr.get("between_cores", 0.0)
    sp_chips, sp_off, hops = tr.get("between_chips", 0.0), tr.get("offcore", 0.0), tr.get("hops", 0.0)
    e_spikes = ((sp_core + sp_cores + sp_chips + sp_off) * L2.E_SPIKE_TILE_J
                + (hops + sp_chips * L2.INTERCHIP_SPIKE_HOPS) * L2.E_HOP_J)
    p_static = chips * L2.P_STATIC_W
    e_dyn = (syn_total * L2.E_SYNOP_J + learn_total * L2.E_LEARN_J
             + active_total * L2.E_NEURON_ACTIVE_J + inactive_total * L2.E_NEURON_INACTIVE_J
             + e_spikes)
    energy = e_dyn + p_static * lat

    fill_steps = max(depth + 1 - S, 0)
    fill_step_s = (float(neurons.max()) * L2.T_NEURON_INACTIVE_S if n_cores else 0.0) + barrier
    fill = {"steps": fill_steps, "latency_s": fill_steps * fill_step_s,
            "energy_j": fill_steps * (float(neurons.sum()) * L2.E_NEURON_INACTIVE_J
                                      + p_static * fill_step_s)}

    def at(i: int) -> dict:
        return {"position": i + 1, "latency_s": float(lat[i]), "energy_j": float(energy[i]),
                "synaptic_ops": float(syn_total[i])}

    seq_lat = float(lat.sum()) + fill["latency_s"]
    seq_e = float(energy.sum()) + fill["energy_j"]
    counts = {
        "positions": T,
        "steps_per_token": S,
        "pipeline_depth": depth,
        "steps_per_sequence": sequence_steps(T, depth, S),
        "synaptic_ops_per_token": {"t1": float(syn_total[0]), "t_max": float(syn_total[-1]),
                                   "mean": float(syn_total.mean())},
        "learning_updates_per_token": float(learn_total),
        "neuron_updates_per_token": {"active": float(active_total),
                                     "inactive": float(inactive_total)},
        "spikes_per_token": {"within_core": sp_core, "between_cores": sp_cores,
                             "between_chips": sp_chips, "offcore": sp_off, "tile_hops": hops},
        "cores": n_cores,
        "chips": chips,
        "barrier_s": barrier,
        "static_power_w": p_static,
    }
    return {
        "label": LABEL,
        "per_token": {"latency_s": float(lat.mean()), "energy_j": float(energy.mean()),
                      "what": "mean over positions 1..T_max of one token's S steps in a stream",
                      "at_t1": at(0), "at_t_max": at(T - 1),
                      "pipeline_latency_s": float(lat[0]) / S * (depth + 1)},
        "per_sequence": {"tokens": T, "latency_s": seq_lat, "energy_j": seq_e,
                         "steps": sequence_steps(T, depth, S)},
        "per_position": {"latency_s": [float(x) for x in lat],
                         "energy_j": [float(x) for x in energy]},
        "fill_drain": fill,
        "counts": counts,
        "assumptions": list(ASSUMPTIONS),
        "sources": dict(L2.ESTIMATE_SOURCES),
        "constants": {k: {"value": list(v) if isinstance(v, tuple) else v, "tag": tag,
                          "source": src}
                      for k, (v, tag, src) in L2.ESTIMATE_CONSTANTS.items()},
    }


def episode_estimate(estimate: dict, tokens: int) -> dict:
    """Latency and energy of one sequence of ``tokens`` tokens (1 ≤ tokens ≤ T_max), from the
    ``estimate`` report section alone: the first ``tokens`` positions plus the pipeline fill/drain."""
    pos = estimate["per_position"]
    T = len(pos["latency_s"])
    if isinstance(tokens, bool) or int(tokens) != tokens or not 1 <= tokens <= T:
        raise ValueError(f"tokens must be an integer in 1..{T} (the compiled context), "
                         f"got {tokens!r}")
    n = int(tokens)
    fill = estimate["fill_drain"]
    c = estimate["counts"]
    return {"tokens": n,
            "latency_s": sum(pos["latency_s"][:n]) + fill["latency_s"],
            "energy_j": sum(pos["energy_j"][:n]) + fill["energy_j"],
            "steps": c["steps_per_token"] * (n - 1) + c["pipeline_depth"] + 1,
            "label": estimate["label"]}


def _run(m: Module, ctx: PassContext) -> str:
    e = ctx.report["estimate"] = estimate(m.neuro, ctx.report["resources"],
                                          ctx.report["schedule"], ctx.max_context)
    pt, ps = e["per_token"], e["per_sequence"]
    return (f"ESTIMATE {pt['latency_s'] * 1e6:.3g} us, {pt['energy_j'] * 1e9:.3g} nJ per token; "
            f"{ps['latency_s'] * 1e3:.3g} ms, {ps['energy_j'] * 1e6:.3g} uJ per sequence of "
            f"{ps['tokens']} (Loihi 1 proxies)")


PASS = Pass("estimate", ir="neuro", requires=("schedule", "partition"), run=_run)
