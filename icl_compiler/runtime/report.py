"""The report's runtime parts: the ``ops`` measured on a few tokens, and the human-readable
rendering of report.json (``format_report``; ``format_resources`` is its table of the partition
pass's ``resources`` section)."""
from __future__ import annotations

import numpy as np


def measure_ops(prog, calibration: np.ndarray | None) -> dict:
    """Synaptic ops, learning updates and spikes per token, measured by the NumPy backend on a
    few tokens (the per-token cost grows with the number of written slots, so this is the cost
    early in a sequence; large graphs take ~1 s per token, so they get 2 tokens instead of 8)."""
    n_weights = sum(s.weights.size for s in prog.ng.synapses())
    tokens = 8 if n_weights < 5_000_000 else 2
    io = prog.io
    T = min(prog.t_max or tokens, tokens)
    rng = np.random.default_rng(0)
    if calibration is not None and calibration.ndim >= 2:
        x = calibration[:2, :T]
    elif io.input_kind == "tokens":
        x = rng.integers(0, io.vocab, size=(2, T))
    else:
        x = rng.uniform(0, 1, size=(2, T, prog.ng.pop(io.input_pop).size))
    prog.run(x)
    st = prog.last_stats
    n = max(st.tokens, 1)
    return {"measured_on": "calibration data" if calibration is not None else "random input",
            "tokens": st.tokens,
            "synaptic_ops_per_token": round(st.synaptic_ops / n, 1),
            "learning_updates_per_token": round(st.learning_updates / n, 1),
            "spikes_per_token": round(st.spikes / n, 1),
            "saturations": st.saturations}


def _kib(bits: int) -> str:
    b = bits / 8
    for unit in ("B", "KiB", "MiB", "GiB"):
        if b < 1024 or unit == "GiB":
            return f"{b:.1f} {unit}" if unit != "B" else f"{int(b)} B"
        b /= 1024
    return f"{b:.1f} GiB"


def format_resources(res: dict, max_rows: int = 24) -> str:
    """A readable terminal table of the resources section."""
    t = res["target"]
    lines = [
        f"resources  target {t['name']}: {t['chips']} chip(s) × {t['cores_per_chip']} neuro cores; "
        f"per core {t['neurons_per_core']} neurons, {_kib(t['synapse_bits_per_core'])} synapse "
        f"memory, fan-in {t['fan_in_per_core']}"
        + (f" (overrides: {', '.join(t['overrides'])})" if t.get("overrides") else ""),
        f"  cores      {res['cores_used']} used, lower bound {res['cores_lower_bound']} "
        f"(ratio {res['cores_ratio']}); ideal bound {res['cores_lower_bound_ideal']} (bare weights)",
        f"  chips      {res['chips_used']} of {res['chips_available']}; inter-chip spikes/token ≤ "
        f"{res['interchip_spikes_per_token']}, host spikes/token ≤ {res['host_spikes_per_token']}",
        f"  neurons    {res['neurons']} on neuro cores (graph: {res['neurons_graph']}); synapses "
        f"{res['synapses']} in {_kib(res['synapse_bits'])} (bare weights {_kib(res['synapse_bits_ideal'])})",
        f"  placement  {res['placement_counts']['neurocore']} populations on neuro cores, "
        f"{res['placement_counts']['embedded']} embedded ({res['embedded_ops_per_token']} ops/token), "
        f"{res['placement_counts']['host']} host ({res['host_ops_per_token']} ops/token)",
        f"  splits     {res['splits']['populations_split']} populations tiled "
        f"({res['splits']['populations_pre_tiled']} along the input axis), "
        f"{res['splits']['head_slot_splits']} heads split along slots, {res['splits']['tiles']} tiles",
    ]
    if res.get("neuron_ops"):
        lines.append(f"  neuron ops {res['neuron_ops_per_token']} microcode ops/token in "
                     f"{len(res['neuron_ops'])} activation/product populations")
    if res.get("largest_consumers"):
        lines.append("  largest    " + "; ".join(f"{c['population']} {c['cores']:g} cores"
                                                  for c in res["largest_consumers"][:3]))
    rows = res["per_core"]
    head = f"  {'core':>5} {'chip':>4} {'neurons':>8} {'%':>6} {'syn mem':>10} {'%':>6} " \
           f"{'fan-in':>6} {'%':>6}  contents"
    lines.append(head)
    show = rows if len(rows) <= max_rows else rows[:max_rows - 4] + [None] + rows[-3:]
    for r in show:
        if r is None:
            lines.append(f"  {'…':>5} ({len(rows) - max_rows + 1} more cores)")
            continue
        u = r["usage"]
        what = ", ".join(r["what"])
        if len(what) > 60:
            what = what[:57] + "..."
        lines.append(f"  {r['core']:>5} {r['chip']:>4} {r['neurons']:>8} {u['neurons']:>6.1f} "
                     f"{_kib(r['synapse_bits']):>10} {u['synapse_memory']:>6.1f} {r['fan_in']:>6} "
                     f"{u['fan_in']:>6.1f}  {what}")
    if res["chips_used"] > 1:
        by_chip: dict[int, list] = {}
        for r in rows:
            by_chip.setdefault(r["chip"], []).append(r)
        lines.append(f"  {'chip':>5} {'cores':>5} {'mean syn %':>10} {'mean neur %':>11}")
        chips = sorted(by_chip)
        for c in chips if len(chips) <= 12 else chips[:8] + chips[-2:]:
            rs = by_chip[c]
            lines.append(f"  {c:>5} {len(rs):>5} {np.mean([r['usage']['synapse_memory'] for r in rs]):>10.1f} "
                         f"{np.mean([r['usage']['neurons'] for r in rs]):>11.1f}")
    return "\n".join(lines)


def format_activation(a: dict) -> str:
    """One line of the report's ``activations``: the neuron, its method and measured error."""
    head = f"{a['population']}[{a['size']}] {a['neuron']}"
    if a["neuron"] == "product":
        b = ", ".join(a.get("operand_b", []))
        return (f"{head}: a·b, operand b from {b}; {a['synapses_in']} synapses in"
                + (f"; >> {a['prod_shift']}, {a['ops_per_neuron']} ops/neuron"
                   if "prod_shift" in a else ""))
    if a["method"] == "exact":
        how = "exact function (float)"
    elif a["method"] == "pwl":
        how = (f"{a['segments']}-segment integer piecewise-linear, max error "
               f"{a['max_error_calibrated']:.3%} of max|f| on the calibrated range "
               f"({a['max_error_operand_range']:.3%} over the operand range; target "
               f"{a['target']:.2%}), {a['ops_per_neuron']} ops/neuron")
    else:
        how = (f"integer square >> {a['frac_bits']}, max error "
               f"{a['max_error_calibrated']:.2e} of max|f| on the calibrated range, "
               f"{a['ops_per_neuron']} ops/neuron")
    return f"{head} {a['fn']}: {how}; {a['synapses_in']} synapses in"


def _si(x: float, unit: str) -> str:
    for f, p in ((1, ""), (1e-3, "m"), (1e-6, "µ"), (1e-9, "n"), (1e-12, "p")):
        if abs(x) >= f or p == "p":
            return f"{x / f:.3g} {p}{unit}"
    return f"{x:.3g} {unit}"


def format_estimate(e: dict) -> str:
    """The report's ``estimate`` section: per token and per sequence latency and energy, labelled
    as the estimate it is, and where its figures come from."""
    pt, ps, c = e["per_token"], e["per_sequence"], e["counts"]
    a, b = pt["at_t1"], pt["at_t_max"]
    sy = c["synaptic_ops_per_token"]
    return "\n".join([
        "Loihi 2 estimate (not a measurement)",
        f"  per token     {_si(pt['latency_s'], 's')}, {_si(pt['energy_j'], 'J')} (mean over the "
        f"context; t=1: {_si(a['latency_s'], 's')}, {_si(a['energy_j'], 'J')}; "
        f"t={b['position']}: {_si(b['latency_s'], 's')}, {_si(b['energy_j'], 'J')})",
        f"  per sequence  {_si(ps['latency_s'], 's')}, {_si(ps['energy_j'], 'J')} for "
        f"{ps['tokens']} tokens ({ps['steps']} algorithmic steps, {c['chips']} chip(s), "
        f"{c['cores']} cores)",
        f"  counts/token  {sy['t1']:g}-{sy['t_max']:g} synaptic ops, "
        f"{c['learning_updates_per_token']:g} learning updates, "
        f"{c['neuron_updates_per_token']['active']:g} active + "
        f"{c['neuron_updates_per_token']['inactive']:g} inactive neuron updates",
        "  figures       Loihi 1 per-op energies/times as PROXIES (Davies et al., IEEE Micro "
        "2018, Table 2); static power measured on Loihi 2 (lava-dl PilotNet benchmarks, "
        f"{c['static_power_w']:g} W); assumptions and sources in report.json \"estimate\"",
    ])


def format_report(r: dict) -> str:
    lines = []
    m = r["model"]
    ios = lambda vs: ", ".join(f"{v['name']} {v['dtype']}{v['shape']}" for v in vs)  # noqa: E731
    lines.append(f"model      inputs: {ios(m['inputs'])}   outputs: {ios(m['outputs'])}")
    lines.append(f"precision  {r['precision']}")
    lines.append("passes")
    for p in r["passes"]:
        lines.append(f"  {p['name']:<22} {p['seconds'] * 1000:8.1f} ms  {p['summary']}")
    lines.append("attention (one row per head)")
    for h in r["attention"]:
        lines.append(f"  layer {h['layer']} head {h['head']}: f={h['f']} scale={h['scale']:.4g} "
                     f"norm={h['normalisation']} T_max={h['T_max']} lowering={h['lowering']}")
    if r.get("activations"):
        lines.append("activations (one row per activation or product population)")
        for a in r["activations"]:
            lines.append("  " + format_activation(a))
    for c in r.get("token_ops", []):
        lines.append(f"token op   {c['node']} ({c['op']}, {c['in_features']} → {c['out_features']}"
                     f" features): {c['lowered_as']}"
                     + (f", {c['nonzero_weights']} non-zero weights" if "nonzero_weights" in c
                        else f", {c['neurons']} ReLU neurons in {c['levels']} levels"))
    lines.append(format_resources(r["resources"]))
    s = r["schedule"]
    lines.append(f"schedule   {s['steps_per_token']} algorithmic steps per token, pipeline depth "
                 f"{s['pipeline_depth']} steps")
    o = r["ops"]
    lines.append(f"per token  {o['synaptic_ops_per_token']:g} synaptic ops, "
                 f"{o['learning_updates_per_token']:g} learning updates, "
                 f"{o['spikes_per_token']:g} spikes ({o['measured_on']})")
    if r.get("offcore"):
        lines.append("off-core   " + ", ".join(f"{x['op']}@{x['placement']}" for x in r["offcore"]))
    if r.get("estimate"):
        lines.append(format_estimate(r["estimate"]))
    q = r.get("quantisation")
    if q:
        lines.append(f"fixed point {q['summary']}")
        if q.get("weight_bits_choice"):
            lines.append(f"weights    {q['weight_bits_choice']}")
    return "\n".join(lines)
