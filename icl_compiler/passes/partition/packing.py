"""Partition, packing: tiles into cores.

Packing (cores)
---------------
Tiles are packed into cores as a 3-dimensional vector bin packing (neurons, synapse bits,
fan-in, each normalised by the core's capacity), layer by layer so that a core holds tiles of one
layer and the core order follows the dataflow (a population without a layer — the residual
stream the lowering materialises — takes the latest layer among its inputs, or else the earliest
among its consumers; host populations have none): tiles in decreasing order of their largest demand,
each into the feasible core whose remaining capacity after placement has the smallest L2 norm
(the "L2 norm-based greedy" of Panigrahy et al., *Heuristics for vector bin packing*, 2011 — it
pairs fan-in-heavy with memory-heavy tiles, which plain first-fit-decreasing on one dimension
misses; vectorised over cores with numpy).  Cores left less than 3/4 full are then re-packed
together across layers, if that saves cores.  ``cores_lower_bound`` = max over resources of ⌈total demand /
per-core capacity⌉ with the demand of the tiles as mapped (so the ratio measures packing);
``cores_lower_bound_ideal`` uses the bare weights (8/9 bits per synapse, no block overhead, no
relays) to show what tiling itself costs.
"""
from __future__ import annotations

import math

import numpy as np

from ...targets.loihi2 import Target
from .tiling import Tile

class _Bin:
    __slots__ = ("n", "b", "f", "tiles")

    def __init__(self):
        self.n = self.b = self.f = 0
        self.tiles: list[int] = []


def _pack(tiles: list[Tile], t: Target) -> list[_Bin]:
    """Vector bin packing of tiles into cores (neurons, synapse bits, fan-in), layer by layer."""
    cap = np.array([t.neurons_per_core, t.synapse_bits_per_core, t.fan_in_per_core], float)
    vec = np.array([[x.neurons, x.bits, x.fan_in] for x in tiles], float).reshape(-1, 3) / cap

    def pack(ids: list[int]) -> list[list[int]]:
        # decreasing by the largest normalised demand; each tile goes to the feasible core whose
        # remaining capacity after placement is smallest in the L2 sense (fills cores evenly in
        # all three resources, so fan-in-heavy and memory-heavy tiles pair up)
        order = sorted(ids, key=lambda i: (-vec[i].max(), -vec[i].sum(), i))
        loads = np.zeros((len(order), 3))
        bins: list[list[int]] = []
        for i in order:
            v = vec[i]
            nb = len(bins)
            if nb:
                after = loads[:nb] + v
                ok = np.all(after <= 1 + 1e-12, axis=1)
                if ok.any():
                    slack = np.where(ok, ((1 - after) ** 2).sum(axis=1), np.inf)
                    j = int(np.argmin(slack))
                    loads[j] += v
                    bins[j].append(i)
                    continue
            loads[nb] = v
            bins.append([i])
        return bins

    def fill(b: list[int]) -> float:
        return float(vec[b].sum(axis=0).max())

    by_layer: dict = {}
    for x in tiles:
        by_layer.setdefault(_layer_key(x.layer), []).append(x.id)
    packed: list[list[int]] = []
    for key in sorted(by_layer):
        packed += pack(by_layer[key])
    # cores left less than 3/4 full are re-packed together across layers (if that saves cores)
    loose = [k for k, b in enumerate(packed) if fill(b) < 0.75]
    if len(loose) > 1:
        repacked = pack([i for k in loose for i in packed[k]])
        if len(repacked) < len(loose):
            loose_set = set(loose)
            packed = [b for k, b in enumerate(packed) if k not in loose_set] + repacked
            # each re-packed core goes where its lowest layer's cores are (stable sort)
            packed.sort(key=lambda b: min(_layer_key(tiles[i].layer) for i in b))
    out = []
    for b in packed:
        bn = _Bin()
        bn.tiles = list(b)
        bn.n = sum(tiles[i].neurons for i in b)
        bn.b = sum(tiles[i].bits for i in b)
        bn.f = sum(tiles[i].fan_in for i in b)
        out.append(bn)
    return out


def _layer_key(layer) -> float:
    return math.inf if layer is None else float(layer)
