"""Pass ``partition``: place the neuromorphic graph on Loihi 2 neuro cores, embedded cores and
the host.

Matches: any verified :class:`NeuroGraph` (float or fixed; the hardware model is the same).
Produces: ``partition(ng, target) -> resources`` (the report's ``resources`` section; the graph is
only annotated: ``pop.attrs["cores"]``).  The stages are modules of this package:
:mod:`.cost` (the cost model of a tile), :mod:`.tiling` (populations into tiles),
:mod:`.packing` (tiles into cores), :mod:`.chips` (cores onto chips, spike traffic); this module
is the driver and the report.  The terminal table and the picture of the result are
``runtime/report.py`` (``format_resources``) and ``runtime/picture.py``
(``write_partition_picture``).

Placement classes
-----------------
* **host**: ``input`` populations (token ids, positions, features) and the ``output`` population
  (dequantisation).  Synapses *into* a host population (the logits matrix) still live on neuro
  cores: "relay" neurons there compute the current and send it to the host.
* **embedded**: populations the lowering marked ``placement="embedded"`` (LayerNorm/RMSNorm
  statistics, attention normalisation by the row sum).  Like the host, they get relay neurons for
  their input current; the embedded x86 core then does the arithmetic (counted in
  ``embedded_ops``) and sends the result back as graded spikes.
* **neurocore**: everything else.
"""
from __future__ import annotations

import time

import numpy as np

from ...errors import CompileError
from ...ir.neuro import NeuroGraph
from ...targets import loihi2 as L2
from ...targets.loihi2 import Target, as_target
from ..base import Module, Pass, PassContext
from .chips import _assign_chips, _traffic
from .cost import _packing_cost, axon_bits, block_bits, dense_bits, learning_state_bits
from .packing import _layer_key, _pack
from .tiling import _effective_layers, _plan, _Planner
from .work import core_work

__all__ = ["partition", "PASS", "neuron_ops", "block_bits", "axon_bits", "dense_bits", "learning_state_bits",
           "_packing_cost", "_effective_layers", "_plan", "_pack", "_assign_chips", "_consumers"]

def partition(ng: NeuroGraph, target=None) -> dict:
    """Tile, pack and place ``ng`` on the target; return the ``resources`` report section.

    ``target``: None (oheo-gulch), a :class:`Target`, or a dict of :func:`get_target` keyword
    arguments (``{"system": "kapoho-point", "chips": 8}``).  Raises CompileError when the model
    does not fit the system (naming its largest consumer and the shortfall).
    """
    t0 = time.perf_counter()
    t = as_target(target)
    pl = _plan(ng, t)
    tiles = pl.tiles
    bins = _pack(tiles, t)
    for c, b in enumerate(bins):
        for tid in b.tiles:
            tiles[tid].core = c
    n_cores = len(bins)
    cn, cb, cf = t.neurons_per_core, t.synapse_bits_per_core, t.fan_in_per_core
    tot_n = sum(x.neurons for x in tiles)
    tot_b = sum(x.bits for x in tiles)
    tot_f = sum(x.fan_in for x in tiles)
    lb = max(1 if tiles else 0, -(-tot_n // cn), -(-tot_b // cb), -(-tot_f // cf))
    ideal_bits = sum(np.size(s.weights) * (t.plastic_weight_bits if s.plastic else t.weight_bits)
                     * pl.k_syns.get(s.name, 1) * pl.mults.get(s.post, 1)
                     for s in ng.synapses())
    ideal_n = sum(p.size * pl.plans[p.name].mult for p in ng.populations()
                  if pl.plans[p.name].cls == "neurocore")
    lb_ideal = max(1 if tiles else 0, -(-ideal_n // cn), -(-ideal_bits // cb))
    consumers = _consumers(pl, t)
    if n_cores > t.cores:
        top = consumers[0] if consumers else None
        what = (f"; largest consumer: population {top['population']} ({top['cores']:.1f} cores, "
                f"{top['synapse_bits']} synapse bits, fed by {top['largest_input']})") if top else ""
        need_chips = L2.chips_needed(n_cores, t)
        raise CompileError(
            f"the model needs {n_cores} neuro cores ({need_chips} chip(s); lower bound {lb}) but "
            f"{t.name} has {t.chips} chip(s) × {t.cores_per_chip} = {t.cores} cores: short by "
            f"{n_cores - t.cores} cores ({need_chips - t.chips} chip(s)){what}",
            hint="choose a larger system (--system kapoho-point | hala-point, or --chips N), "
                 "or reduce the context (--max-context) or the model width")
    # traffic and chips
    edges = _traffic(pl)
    core_edges: dict = {}
    off_edges: dict = {}
    host_spikes = 0.0
    for a, b, w in edges:
        ca = tiles[a].core if isinstance(a, int) else a
        cb_ = tiles[b].core if isinstance(b, int) else b
        if isinstance(ca, int) and isinstance(cb_, int):
            key = (ca, cb_)
            core_edges[key] = core_edges.get(key, 0.0) + w
        else:
            key = (ca, cb_)
            off_edges[key] = off_edges.get(key, 0.0) + w
    chip = _assign_chips(n_cores, core_edges, t)
    # embedded populations: on the chip they talk to most
    emb_chip: dict[str, int] = {}
    emb_traffic: dict[str, dict[int, float]] = {}
    for (a, b), w in off_edges.items():
        for node, other in ((a, b), (b, a)):
            if isinstance(node, tuple) and node[0] == "emb" and isinstance(other, int):
                d = emb_traffic.setdefault(node[1], {})
                d[chip[other]] = d.get(chip[other], 0.0) + w
    for p in ng.populations():
        if pl.plans[p.name].cls == "embedded":
            d = emb_traffic.get(p.name, {0: 0.0})
            emb_chip[p.name] = min(d, key=lambda c: (-d[c], c))
    inter = 0.0
    per_core_out = [0.0] * n_cores
    within_core = between_cores = hops = 0.0  # spikes per token, for the estimate
    for (a, b), w in core_edges.items():
        per_core_out[a] += w if a != b else 0.0
        if chip[a] != chip[b]:
            inter += w
        elif a == b:
            within_core += w
        else:
            between_cores += w
            hops += w * L2.core_hops(a, b, t.cores_per_chip)
    for (a, b), w in off_edges.items():
        if isinstance(a, int):
            per_core_out[a] += w
        ends = [chip[x] if isinstance(x, int) else (emb_chip.get(x[1]) if x[0] == "emb" else None)
                for x in (a, b)]
        if any(isinstance(x, tuple) and x[0] == "host" for x in (a, b)):
            host_spikes += w
        elif None not in ends and ends[0] != ends[1]:
            inter += w
    # per-core table
    work = core_work(pl, n_cores)
    per_core = []
    for c, b in enumerate(bins):
        layers = sorted({tiles[i].layer for i in b.tiles}, key=_layer_key)
        main = max(b.tiles, key=lambda i: (tiles[i].bits, tiles[i].neurons))
        per_core.append({
            "core": c, "chip": chip[c], "neurons": b.n, "synapse_bits": b.b, "fan_in": b.f,
            "fan_out": int(round(per_core_out[c])),
            "usage": {"neurons": round(100 * b.n / cn, 2), "synapse_memory": round(100 * b.b / cb, 2),
                      "fan_in": round(100 * b.f / cf, 2),
                      "fan_out": round(100 * per_core_out[c] / t.fan_out_per_core, 2)},
            "layer": tiles[main].layer, "layers": layers,
            "what": [tiles[i].label for i in b.tiles[:6]] + (
                [f"+{len(b.tiles) - 6} more"] if len(b.tiles) > 6 else []),
            "work": work[c],
        })
    for p in ng.populations():  # annotate the graph: which cores hold each population
        cores = sorted({tiles[i].core for i in pl.plans[p.name].tiles})
        if cores:
            p.attrs["cores"] = cores
    placement = {p.name: pl.plans[p.name].cls for p in ng.populations()}
    emb_ops, host_ops = _offcore_ops(pl)
    chips_used = (max(chip) + 1) if chip else 0
    splits = {
        "populations_split": sum(1 for p in pl.plans.values()
                                 if len([i for i in p.tiles if tiles[i].kind != "partial"]) > 1
                                 or p.chunks),
        "populations_pre_tiled": sum(1 for p in pl.plans.values() if p.chunks),
        "head_slot_splits": pl.slot_splits,
        "tiles": len(tiles),
    }
    nops = neuron_ops(ng)
    res = {
        "target": t.to_dict(),
        "cores_used": n_cores,
        "cores_lower_bound": lb,
        "cores_ratio": round(n_cores / lb, 4) if lb else None,
        "cores_lower_bound_ideal": lb_ideal,
        "chips_used": chips_used,
        "chips_available": t.chips,
        "neurons": tot_n,
        "neurons_graph": sum(p.size for p in ng.populations() if placement[p.name] == "neurocore"),
        "synapses": sum(x.synapses for x in tiles),
        "synapse_bits": tot_b,
        "synapse_bits_ideal": int(ideal_bits),
        "fan_in_total": tot_f,
        "interchip_spikes_per_token": int(round(inter)),
        "host_spikes_per_token": int(round(host_spikes)),
        # spikes per token by route (same upper bound), and the tile hops of those within a chip
        "traffic": {"within_core": within_core, "between_cores": between_cores,
                    "between_chips": inter, "offcore": sum(off_edges.values()),
                    "hops": hops},
        "spike_estimate": "upper bound: every graded neuron sends each token to every core that "
                          "needs it; one-hot inputs send one spike",
        "embedded_ops": emb_ops,
        "embedded_ops_per_token": int(sum(x["ops_per_token"] for x in emb_ops)),
        "embedded_placement": emb_chip,
        # populations per chip vs the chip's embedded cores (more than that share a core)
        "embedded_per_chip": {str(c): n for c, n in sorted(
            {c: sum(1 for v in emb_chip.values() if v == c) for c in set(emb_chip.values())}.items())},
        "embedded_cores_per_chip": t.embedded_cores_per_chip,
        "host_ops": host_ops,
        "host_ops_per_token": int(sum(x["ops_per_token"] for x in host_ops)),
        "neuron_ops": nops,
        "neuron_ops_per_token": int(sum(x["ops_per_token"] or 0 for x in nops)),
        "placement": placement,
        "placement_counts": {k: sum(1 for v in placement.values() if v == k)
                             for k in ("neurocore", "embedded", "host")},
        "splits": splits,
        "largest_consumers": consumers[:5],
        "fan_out_over_reference": sum(1 for x in per_core_out if x > t.fan_out_per_core),
        "per_core": per_core,
        "seconds": round(time.perf_counter() - t0, 3),
    }
    return res


def _consumers(pl: _Planner, t: Target) -> list[dict]:
    cn, cb, cf = t.neurons_per_core, t.synapse_bits_per_core, t.fan_in_per_core
    out = []
    for name, plan in pl.plans.items():
        if not plan.tiles:
            continue
        ts = [pl.tiles[i] for i in plan.tiles]
        cores = sum(max(x.neurons / cn, x.bits / cb, x.fan_in / cf) for x in ts)
        big = max(plan.ins, key=lambda i: i.pre_size, default=None)
        out.append({"population": name, "cores": round(cores, 2), "tiles": len(ts),
                    "synapse_bits": sum(x.bits for x in ts), "neurons": sum(x.neurons for x in ts),
                    "largest_input": f"{big.syn} ({big.pre_size} pre neurons)" if big else "-"})
    out.sort(key=lambda d: -d["cores"])
    return out


def neuron_ops(ng: NeuroGraph) -> list[dict]:
    """Per-token microcode operations of the neurons that compute more than a sum: activation
    neurons (their integer response: ``activation_fit.ops_per_neuron``) and product neurons
    (``activation_fit.PRODUCT_OPS``), with their neurons and incoming synapses.  In float mode an
    activation computes the exact function (no hardware response yet): ops are None."""
    from ..activation_fit import PRODUCT_OPS, ops_per_neuron

    out = []
    for p in ng.populations():
        if p.model not in ("activation", "product"):
            continue
        syns = sum(int(np.count_nonzero(s.weights)) for s in ng.incoming(p.name))
        if p.model == "product":
            per, what = PRODUCT_OPS, "product a·b (two 16-bit operands, multiply, shift)"
        elif p.act.method == "exact":
            per, what = None, f"{p.act.fn}, exact (float mode)"
        else:
            per = ops_per_neuron(p.act)
            what = (f"{p.act.fn}: {len(p.act.breaks) + 1}-segment integer piecewise-linear "
                    "response" if p.act.method == "pwl" else f"{p.act.fn}: integer square")
        out.append({"population": p.name, "model": str(p.model), "neurons": p.size,
                    "synapses_in": syns, "ops_per_neuron": per,
                    "ops_per_token": None if per is None else per * p.size, "what": what})
    return out


def _offcore_ops(pl: _Planner) -> tuple[list, list]:
    """Per-token operations on embedded cores and on the host (estimates, documented per item)."""
    emb, host = [], []
    for name, plan in pl.plans.items():
        p = pl.ng.pop(name)
        n = p.size
        chunks = len(plan.chunks) if plan.chunks else 1
        adds = n * (chunks - 1)  # adding the partial currents of chunked inputs
        if plan.cls == "embedded":
            if p.model == "norm":
                kind = p.norm.kind
                ops = (5 if kind == "layernorm" else 3) * n + 1 + adds
                what = f"{kind}: mean/variance, 1/sqrt, scale and shift of {n} values"
            elif p.model == "divide":
                ops = n + 1 + adds
                what = f"attention normalisation: {n} divisions by the row sum"
            else:
                ops, what = n + adds, f"{p.model} on an embedded core"
            emb.append({"population": name, "op": p.model, "ops_per_token": ops, "what": what})
        elif plan.cls == "host":
            if p.model == "input":
                ops = 1 if p.one_hot else n
                what = ("send one spike (one-hot id)" if ops == 1 else f"encode {n} features as "
                        "graded spikes")
            else:
                ops = n + adds
                what = f"receive {n} currents" + (f" in {chunks} partial sums" if chunks > 1 else "") \
                       + " and dequantise"
            host.append({"population": name, "op": p.model, "ops_per_token": ops, "what": what})
    return emb, host


def _run(m: Module, ctx: PassContext) -> str:
    res = ctx.report["resources"] = partition(m.neuro, ctx.target)
    return (f"{res['cores_used']} cores on {res['chips_used']} chip(s) "
            f"(lower bound {res['cores_lower_bound']})")


PASS = Pass("partition", ir="neuro", requires=("lower",), run=_run)
