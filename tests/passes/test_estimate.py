"""The estimate pass: a hand computation on a tiny program, the op counts against the NumPy
emulator, growth with the tokens, episode_estimate, the constants' sources, the report."""
import json
import re
from pathlib import Path

import numpy as np
import pytest

import icl_compiler.passes.estimate as est_mod
from icl_compiler.passes.estimate import episode_estimate, estimate
from icl_compiler.passes.lower import lower
from icl_compiler.passes.partition import partition
from icl_compiler.passes.quantise import quantise
from icl_compiler.passes.schedule import schedule
from icl_compiler.semantics.interpreter import Interpreter, RunStats
from icl_compiler.targets import loihi2 as L2
from tests.helpers import attention_graph

F, DK, DV, T, OUT = 3, 2, 2, 4, 2  # features, d_k, d_v, T_max, outputs


def _tiny_fixed():
    """x[3] → q,k,v → one relu head (T_max 4) → o + residual x → Relu → y[2], every weight and
    bias positive (so every graded neuron is active: the estimate's counts are then exact)."""
    g = attention_graph(np.random.default_rng(0), feat=F, heads=1, dk=DK, dv=DV, t_max=T, out=OUT,
                        f="relu")
    for v in g.values.values():
        if v.data is not None and v.data.dtype.kind == "f":
            v.data = np.abs(v.data) + np.float32(0.05)
    x = np.random.default_rng(1).uniform(0.5, 1.0, (4, T, F))
    ng, _ = quantise(lower(g), x, weight_bits=8)
    sched = schedule(ng)
    res = partition(ng)
    return ng, sched, res, x


@pytest.fixture(scope="module")
def tiny():
    ng, sched, res, x = _tiny_fixed()
    return ng, sched, res, x, estimate(ng, res, sched)


def test_hand_computation(tiny):
    ng, sched, res, _, e = tiny
    S, depth = 2, 6  # input τ0 → k τ1 → q, v τ2 → slots τ3 → out τ4 → h τ5 → output τ6
    assert (sched["steps_per_token"], sched["pipeline_depth"], res["cores_used"]) == (S, depth, 1)
    L = 2  # k and q are sign split: [k⁺, k⁻] neurons and K axons
    # synaptic ops per token at position t (t slots written)
    k_in = q_in = F * DK * L  # x → k, x → q into both lanes
    static = k_in + q_in + F * DV + F * F + DV * F + F * OUT  # + x → v, x → h, out → h, h → y
    k_read = DK * T  # one lane of each ± pair spikes into all T_max K synapses
    syn = lambda t: static + k_read + t * DV  # the V read: t written slots × d_v  # noqa: E731
    learn = DK * L + DV  # the K row and the V column of the token
    neurons = DK * L + DK * L + DV + T + DV + F + OUT  # k, q, v, slots, out, h, output relays
    # per step residue: odd τ (k 1, slots 3, h 5), even τ (q and v 2, out 4, output relays 6)
    odd_syn, odd_learn, odd_act = k_in + k_read + (F * F + DV * F), DK * L, DK * L + T + F
    even_act = DK * L + DV + DV + OUT
    barrier = L2.T_BARRIER_MIN_S  # one core: one tile

    def lat(t):
        odd = (odd_syn * L2.T_SYNOP_S + odd_learn * L2.T_LEARN_S + odd_act * L2.T_NEURON_ACTIVE_S
               + (neurons - odd_act) * L2.T_NEURON_INACTIVE_S)
        even = ((q_in + F * DV + t * DV + F * OUT) * L2.T_SYNOP_S + DV * L2.T_LEARN_S
                + even_act * L2.T_NEURON_ACTIVE_S + (neurons - even_act) * L2.T_NEURON_INACTIVE_S)
        return odd + even + 2 * barrier

    # spikes per token: within the core k±, q±, v, slots, out, h; host x to 4 groups, y to host
    spikes = (DK * L + DK * L + DV + T + DV + F) + (4 * F + OUT)

    def energy(t):
        return (syn(t) * L2.E_SYNOP_J + learn * L2.E_LEARN_J + neurons * L2.E_NEURON_ACTIVE_J
                + (S - 1) * neurons * L2.E_NEURON_INACTIVE_J + spikes * L2.E_SPIKE_TILE_J
                + L2.P_STATIC_W * lat(t))

    c = e["counts"]
    assert c["synaptic_ops_per_token"]["t1"] == syn(1)
    assert c["synaptic_ops_per_token"]["t_max"] == syn(T)
    assert c["learning_updates_per_token"] == learn
    assert c["neuron_updates_per_token"] == {"active": neurons, "inactive": (S - 1) * neurons}
    assert sum(c["spikes_per_token"][k] for k in ("within_core", "offcore")) == spikes
    assert c["spikes_per_token"]["tile_hops"] == 0
    assert e["per_position"]["latency_s"] == pytest.approx([lat(t) for t in range(1, T + 1)],
                                                           rel=1e-12)
    assert e["per_position"]["energy_j"] == pytest.approx([energy(t) for t in range(1, T + 1)],
                                                          rel=1e-12)
    # the fill/drain: depth + 1 − S steps of inactive updates; the sequence S·(T−1) + depth + 1
    fill_s = neurons * L2.T_NEURON_INACTIVE_S + barrier
    n_fill = depth + 1 - S
    seq_lat = sum(lat(t) for t in range(1, T + 1)) + n_fill * fill_s
    seq_e = sum(energy(t) for t in range(1, T + 1)) + n_fill * (
        neurons * L2.E_NEURON_INACTIVE_J + L2.P_STATIC_W * fill_s)
    ps = e["per_sequence"]
    assert ps["tokens"] == T and ps["steps"] == S * (T - 1) + depth + 1 == S * T + n_fill
    assert ps["latency_s"] == pytest.approx(seq_lat, rel=1e-12)
    assert ps["energy_j"] == pytest.approx(seq_e, rel=1e-12)
    assert e["per_token"]["latency_s"] == pytest.approx(np.mean([lat(t) for t in range(1, T + 1)]))


def test_counts_agree_with_the_emulator(tiny):
    """Contract: per position, the NumPy emulator's synaptic ops and learning updates (token by
    token, one sequence) equal the estimate's, less the hardware-only duplicate lanes of the
    sign-split k and q inputs (the emulator computes k and q once, the chip as k⁺ and k⁻)."""
    ng, _, _, x, e = tiny
    it = Interpreter(ng)
    state, stats = it.fresh_state(1), RunStats()
    sign_split_extra = 2 * F * DK  # x → k and x → q: one extra lane each
    measured_syn, measured_learn = [], []
    for t in range(T):
        s0, l0 = stats.synaptic_ops, stats.learning_updates
        it.step(np.asarray(x[:1, t]), t, state, stats)
        measured_syn.append(stats.synaptic_ops - s0)
        measured_learn.append(stats.learning_updates - l0)
    c = e["counts"]
    syn = [c["synaptic_ops_per_token"]["t1"] + DV * t for t in range(T)]
    assert syn[-1] == c["synaptic_ops_per_token"]["t_max"]
    assert measured_syn == [s - sign_split_extra for s in syn]
    assert measured_learn == [c["learning_updates_per_token"]] * T


def test_estimate_grows_with_tokens_and_episode_matches_sequence(tiny):
    e = tiny[4]
    lat, en = e["per_position"]["latency_s"], e["per_position"]["energy_j"]
    assert all(b > a for a, b in zip(lat, lat[1:])) and all(b > a for a, b in zip(en, en[1:]))
    eps = [episode_estimate(e, n) for n in range(1, T + 1)]
    assert all(b["latency_s"] > a["latency_s"] and b["energy_j"] > a["energy_j"]
               for a, b in zip(eps, eps[1:]))
    full = eps[-1]
    assert full["latency_s"] == pytest.approx(e["per_sequence"]["latency_s"], rel=1e-12)
    assert full["energy_j"] == pytest.approx(e["per_sequence"]["energy_j"], rel=1e-12)
    assert full["steps"] == e["per_sequence"]["steps"]
    for bad in (0, T + 1, 1.5, True):
        with pytest.raises(ValueError, match="tokens"):
            episode_estimate(e, bad)


def test_every_constant_used_has_a_source(tiny):
    src = Path(est_mod.__file__).read_text() + Path(L2.__file__).read_text().split(
        "def core_hops", 1)[1].split("# -- systems", 1)[0]
    used = set(re.findall(r"\b(?:L2\.)?([ETP]_[A-Z_]+|CORES_PER_TILE|TILE_MESH|"
                          r"INTERCHIP_SPIKE_HOPS)\b", src))
    assert used, "no constants found"
    listed = L2.ESTIMATE_CONSTANTS
    assert used <= set(listed), used - set(listed)
    for name, (value, tag, source) in listed.items():
        assert getattr(L2, name) == value
        assert tag.split()[0].rstrip(",") in ("MEASURED", "ASSUMED"), tag
        assert source in L2.ESTIMATE_SOURCES
    e = tiny[4]
    assert e["sources"] == L2.ESTIMATE_SOURCES
    assert set(e["constants"]) == set(listed)
    assert "not a measurement" in e["label"] and "Loihi 1 prox" in e["label"]
    assert any("Loihi 1" in a for a in e["assumptions"])


def test_more_chips_cost_barrier_and_static_power(tiny):
    ng, sched, res, _, e1 = tiny
    res2 = dict(res, chips_used=2)
    e2 = estimate(ng, res2, sched)
    assert e2["counts"]["barrier_s"] == 2 * L2.T_BARRIER_MAX_S
    assert e2["counts"]["static_power_w"] == 2 * L2.P_STATIC_W
    assert e2["per_sequence"]["energy_j"] > e1["per_sequence"]["energy_j"]


def test_compiled_report_carries_the_estimate():
    import icl_compiler
    from icl_compiler.runtime.report import format_report
    from tests.helpers import SMALL

    fx = Path(__file__).resolve().parents[1] / "fixtures" / f"{SMALL}.onnx"
    prog = icl_compiler.compile(str(fx), max_context=16)
    r = json.loads(json.dumps(prog.report, default=str))  # what report.json holds
    e = r["estimate"]
    assert list(r)[-1] == "estimate" and "estimate" in [p["name"] for p in r["passes"]]
    assert e["per_sequence"]["tokens"] == 16 and len(e["per_position"]["latency_s"]) == 16
    assert e["per_token"]["latency_s"] > 0 and e["per_token"]["energy_j"] > 0
    assert e["counts"]["steps_per_sequence"] == r["schedule"]["steps_per_token"] * 15 + \
        r["schedule"]["pipeline_depth"] + 1
    text = format_report(prog.report)
    assert "Loihi 2 estimate (not a measurement)" in text and "Loihi 1" in text
    assert "per sequence" in text and "per token" in text
