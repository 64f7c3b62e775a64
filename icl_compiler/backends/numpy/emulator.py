"""NumPy emulator of the neuromorphic graph, token by token, batched over sequences.

It runs the *neuromorphic* graph (not the tensor IR): populations in static order, synapse
groups as matrix products, and each attention head's K/V held in per-sequence plastic weight
arrays that only the learning rules write (``rules``).  Float mode uses float64; fixed mode uses
the exact integer primitives of :mod:`.fixed` (Lava 0.10 ``fixed_pt`` semantics, DESIGN §5).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ...ir.neuro import HeadSpec, NeuroGraph
from . import rules


@dataclass
class RunStats:
    tokens: int = 0
    synaptic_ops: int = 0
    learning_updates: int = 0
    spikes: int = 0
    saturations: dict[str, int] = field(default_factory=dict)

    def saturate(self, what: str, n: int) -> None:
        if n:
            self.saturations[what] = self.saturations.get(what, 0) + int(n)


class Emulator:
    def __init__(self, ng: NeuroGraph):
        self.ng = ng
        self.fixed = ng.precision == "fixed"
        self.order = ng.static_order()
        self.heads_by_out = {h.out: h for h in ng.heads}
        self.head_pops = {p for h in ng.heads for p in (h.slots,)}
        io = ng.g.graph["io"]
        self.io = io
        self.static_in: dict[str, list] = {}
        for name in self.order:
            self.static_in[name] = [s for s in ng.incoming(name) if s.role == "static"]
        self.dtype = np.int64 if self.fixed else np.float64
        self.record: dict[str, float] | None = None  # calibration: max |value| per probe

    def _rec(self, key: str, arr: np.ndarray) -> None:
        if self.record is not None and arr.size:
            self.record[key] = max(self.record.get(key, 0.0), float(np.max(np.abs(arr))))

    # -- state ------------------------------------------------------------------------------
    def fresh_state(self, batch: int) -> dict[str, np.ndarray]:
        """Plastic weights of every head, zero at the start of each sequence."""
        st = {}
        for h in self.ng.heads:
            st[h.k_syn] = rules.k_init(self.ng, h, batch)
            st[h.v_syn] = rules.v_init(self.ng, h, batch)
        return st

    # -- one token -----------------------------------------------------------------------------
    def step(self, x_t: np.ndarray, t: int, state: dict, stats: RunStats) -> np.ndarray:
        ng = self.ng
        B = x_t.shape[0]
        vals: dict[str, np.ndarray] = {}
        for name in self.order:
            pop = ng.pop(name)
            if pop.model == "input":
                vals[name] = self.input_payload(pop, x_t, t, B)
                self._rec(name, vals[name])
                continue
            if name in self.heads_by_out:
                vals[name] = self.head(self.heads_by_out[name], vals, t, state, stats)
                self._rec(name, vals[name])
                continue
            if name in self.head_pops:
                continue  # slots are evaluated inside their head
            cur = np.zeros((B, pop.size), self.dtype)
            for s in self.static_in[name]:
                cur += rules.dense(ng, s, vals[s.pre], stats)
            if pop.bias is not None:
                cur += pop.bias.astype(self.dtype)
            self._rec(name + ":current", cur)
            vals[name] = rules.neuron(ng, pop, cur, stats)
            stats.spikes += int(np.count_nonzero(vals[name]))
            self._rec(name, vals[name])
        return vals[self.io["output_pop"]]

    def input_payload(self, pop, x_t, t, B) -> np.ndarray:
        enc = pop.attrs.get("encoding")
        if enc == "one_hot":
            ids = x_t.astype(np.int64)
            if ids.min() < 0 or ids.max() >= pop.size:
                raise ValueError(f"token id out of range [0, {pop.size})")
            out = np.zeros((B, pop.size), self.dtype)
            out[np.arange(B), ids] = rules.one_hot_payload(self.ng, pop)
            return out
        if enc == "position":
            out = np.zeros((B, pop.size), self.dtype)
            out[:, t] = rules.one_hot_payload(self.ng, pop)
            return out
        return rules.encode_input(self.ng, pop, x_t)

    def head(self, h: HeadSpec, vals, t: int, state, stats: RunStats) -> np.ndarray:
        ng = self.ng
        if h.lowering == "fast_weight":  # float only: W += v kᵀ, read W q (DESIGN §4)
            W = state[h.k_syn] + np.einsum("bv,bk->bvk", vals[h.v], vals[h.k])
            state[h.k_syn] = W
            stats.learning_updates += W[0].size
            stats.synaptic_ops += W[0].size
            return np.einsum("bvk,bk->bv", W, vals[h.q]) * h.scale
        K, V = state[h.k_syn], state[h.v_syn]
        state[h.k_syn] = K = rules.k_write(ng, h, K, vals[h.k], t, stats)
        state[h.v_syn] = V = rules.v_write(ng, h, V, vals[h.v], t, stats)
        scores = rules.k_read(ng, h, K, vals[h.q], stats)
        a = rules.slots(ng, h, scores, stats)
        vals[h.slots] = a
        self._rec(h.slots + ":score", scores * h.scale if not self.fixed else scores)
        self._rec(h.slots, a)
        if self.record is not None and not self.fixed:
            self._rec(h.out + ":acc", np.einsum("bvt,bt->bv", V, a))
        return rules.v_read(ng, h, V, a, stats)

    # -- whole batch -------------------------------------------------------------------------------
    def run(self, x: np.ndarray, stats: RunStats | None = None) -> tuple[np.ndarray, RunStats]:
        """x: [B, T] token ids or [B, T, F] features → payload/real outputs [B, T, n_out]."""
        stats = stats or RunStats()
        B, T = x.shape[0], x.shape[1]
        state = self.fresh_state(B)
        out_pop = self.ng.pop(self.io["output_pop"])
        y = np.zeros((B, T, out_pop.size), self.dtype)
        for t in range(T):
            y[:, t] = self.step(x[:, t], t, state, stats)
            stats.tokens += 1
        self.last_state = state
        return y, stats

    def dequantise(self, y: np.ndarray) -> np.ndarray:
        out_pop = self.ng.pop(self.io["output_pop"])
        return rules.dequantise(self.ng, out_pop, y)
