"""Placement of the neuromorphic graph on Loihi 2 cores (minimal version; see issue 6)."""
from __future__ import annotations

import math

from ..ir.neuro import NeuroGraph

NEURONS_PER_CORE = 8192
SYNAPSE_BITS_PER_CORE = 128 * 1024 * 8
CORES_PER_CHIP = 128


def partition(ng: NeuroGraph, target: dict | None = None) -> dict:
    neurons = sum(p.size for p in ng.populations() if p.placement == "neurocore")
    syn_bits = sum(s.weights.size * 8 for s in ng.synapses())
    lb = max(math.ceil(neurons / NEURONS_PER_CORE), math.ceil(syn_bits / SYNAPSE_BITS_PER_CORE), 1)
    return {"neurons": neurons, "synapses": sum(s.weights.size for s in ng.synapses()),
            "synapse_bits": syn_bits, "cores_used": lb, "cores_lower_bound": lb,
            "chips_used": math.ceil(lb / CORES_PER_CHIP), "per_core": [],
            "interchip_spikes_per_token": 0}
