"""The report's runtime parts: the ``ops`` measured on a few tokens, and the human-readable
rendering of report.json."""
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
    res = r["resources"]
    try:
        from ..passes.partition import format_resources

        lines.append(format_resources(res))
    except ImportError:
        lines.append(f"resources  {res['neurons']} neurons, {res['synapses']} synapses, "
                     f"{res['synapse_bits']} synapse bits, {res['cores_used']} cores "
                     f"(lower bound {res['cores_lower_bound']}), {res['chips_used']} chip(s)")
    s = r["schedule"]
    lines.append(f"schedule   {s['steps_per_token']} algorithmic steps per token, pipeline depth "
                 f"{s['pipeline_depth']} steps")
    o = r["ops"]
    lines.append(f"per token  {o['synaptic_ops_per_token']:g} synaptic ops, "
                 f"{o['learning_updates_per_token']:g} learning updates, "
                 f"{o['spikes_per_token']:g} spikes ({o['measured_on']})")
    if r.get("offcore"):
        lines.append("off-core   " + ", ".join(f"{x['op']}@{x['placement']}" for x in r["offcore"]))
    q = r.get("quantisation")
    if q:
        lines.append(f"fixed point {q['summary']}")
        if q.get("weight_bits_choice"):
            lines.append(f"weights    {q['weight_bits_choice']}")
    return "\n".join(lines)
