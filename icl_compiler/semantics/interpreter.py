"""The reference interpreter of the neuromorphic IR: token by token, batched over sequences.

It runs the *neuromorphic* graph (not the tensor IR): populations in static order, synapse
groups as matrix products, and each attention head's K/V held in per-sequence plastic weight
arrays that only the learning rules write.  Float mode uses float64; fixed mode uses the exact
integer primitives of :mod:`.fixed` (Lava 0.10 ``fixed_pt``; the contract is docs/semantics.md).
The neuron arithmetic is :mod:`.neurons`; this module adds the evaluation order, the plastic
state and the counts of :class:`RunStats`.  The NumPy backend is this interpreter; the quantiser
calibrates with it (``record``).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..ir.neuro import HeadSpec, Lowering, NeuroGraph, NeuronModel, Role
from . import neurons


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


class Interpreter:
    """Runs a :class:`NeuroGraph` on a batch of sequences (``run``), one token at a time."""

    def __init__(self, ng: NeuroGraph):
        self.ng = ng
        self.fixed = ng.precision == "fixed"
        self.order = ng.static_order()
        self.heads_by_out = {h.out: h for h in ng.heads}
        self.head_pops = {h.slots for h in ng.heads}
        self.io = ng.io
        self.static_in = {name: [s for s in ng.incoming(name) if s.role == Role.STATIC]
                          for name in self.order}
        self.dtype = neurons.dtype(self.fixed)
        self.record: dict[str, float] | None = None  # calibration: max |value| per probe
        self.last_state: dict[str, np.ndarray] = {}

    def _rec(self, key: str, arr: np.ndarray) -> None:
        if self.record is not None and arr.size:
            self.record[key] = max(self.record.get(key, 0.0), float(np.max(np.abs(arr))))

    # -- state ------------------------------------------------------------------------------
    def fresh_state(self, batch: int) -> dict[str, np.ndarray]:
        """Plastic weights of every head, zero at the start of each sequence."""
        st = {}
        for h in self.ng.heads:
            d, dv = self.ng.pop(h.k).size, self.ng.pop(h.v).size
            st[h.k_syn] = neurons.k_init(h, d, dv, batch, self.fixed)
            st[h.v_syn] = neurons.v_init(h, dv, batch, self.fixed)
        return st

    # -- one token -----------------------------------------------------------------------------
    def step(self, x_t: np.ndarray, t: int, state: dict, stats: RunStats) -> np.ndarray:
        ng, fixed = self.ng, self.fixed
        B = x_t.shape[0]
        vals: dict[str, np.ndarray] = {}
        for name in self.order:
            pop = ng.pop(name)
            if pop.model == NeuronModel.INPUT:
                vals[name] = neurons.input_payload(pop, x_t, t, fixed)
                self._rec(name, vals[name])
                continue
            if name in self.heads_by_out:
                vals[name] = self.head(self.heads_by_out[name], vals, t, state, stats)
                self._rec(name, vals[name])
                continue
            if name in self.head_pops:
                continue  # slots are evaluated inside their head
            if pop.model == NeuronModel.PRODUCT:
                vals[name] = self.product(pop, vals, B, stats)
                continue
            cur = np.zeros((B, pop.size), self.dtype)
            for s in self.static_in[name]:
                pre = vals[s.pre]
                stats.synaptic_ops += int(np.count_nonzero(pre)) * s.weights.shape[0]
                cur += neurons.dense(s, pre, fixed)
            if pop.bias is not None:
                cur += pop.bias.astype(self.dtype)
            self._rec(name + ":current", cur)
            vals[name], sat = neurons.neuron(pop, cur, fixed)
            stats.saturate(f"payload:{name}", sat)
            stats.spikes += int(np.count_nonzero(vals[name]))
            self._rec(name, vals[name])
        return vals[self.io.output_pop]

    def product(self, pop, vals, B: int, stats: RunStats) -> np.ndarray:
        """A product neuron: the currents of its two ports (port 0 with the bias), multiplied."""
        cur = [np.zeros((B, pop.size), self.dtype), np.zeros((B, pop.size), self.dtype)]
        for s in self.static_in[pop.name]:
            pre = vals[s.pre]
            stats.synaptic_ops += int(np.count_nonzero(pre)) * s.weights.shape[0]
            cur[s.port] += neurons.dense(s, pre, self.fixed)
        if pop.bias is not None:
            cur[0] += pop.bias.astype(self.dtype)
        self._rec(pop.name + ":current", cur[0])
        self._rec(pop.name + ":current_b", cur[1])
        out, sat = neurons.product(pop, cur[0], cur[1], self.fixed)
        stats.saturate(f"payload:{pop.name}", sat)
        stats.spikes += int(np.count_nonzero(out))
        self._rec(pop.name, out)
        return out

    def head(self, h: HeadSpec, vals, t: int, state, stats: RunStats) -> np.ndarray:
        ng, fixed = self.ng, self.fixed
        if h.lowering == Lowering.FAST_WEIGHT:  # float only (docs/semantics.md §6)
            W, out = neurons.fast_weight(h, state[h.k_syn], vals[h.k], vals[h.v], vals[h.q])
            state[h.k_syn] = W
            stats.learning_updates += W[0].size
            stats.synaptic_ops += W[0].size
            return out
        k, q, v = vals[h.k], vals[h.q], vals[h.v]
        stats.learning_updates += k.shape[-1] * (2 if fixed else 1)
        K, sat = neurons.k_write(h, state[h.k_syn], k, t, fixed)
        state[h.k_syn] = K
        stats.saturate(f"k:{h.k}", sat)
        stats.learning_updates += v.shape[-1]
        V, sat = neurons.v_write(h, state[h.v_syn], v, t, fixed)
        state[h.v_syn] = V
        stats.saturate(f"v:{h.v}", sat)
        stats.synaptic_ops += int(np.count_nonzero(q)) * h.t_max
        scores = neurons.k_read(h, K, q, fixed)
        a, sat = neurons.slots(h, ng.pop(h.slots).q, scores, fixed)
        stats.saturate(f"slots:{h.slots}", sat)
        if fixed:
            stats.spikes += int(np.count_nonzero(a))
        vals[h.slots] = a
        self._rec(h.slots + ":score", scores * h.scale if not fixed else scores)
        self._rec(h.slots, a)
        if self.record is not None and not fixed:
            self._rec(h.out + ":acc", np.einsum("bvt,bt->bv", V, a))
        stats.synaptic_ops += int(np.count_nonzero(a)) * V.shape[1]
        out, sat = neurons.value_read(h, ng.pop(h.out), V, a, fixed)
        stats.saturate(f"payload:{h.out}", sat)
        return out

    # -- whole batch -------------------------------------------------------------------------------
    def run(self, x: np.ndarray, stats: RunStats | None = None) -> tuple[np.ndarray, RunStats]:
        """x: [B, T] token ids or [B, T, F] features → payload/real outputs [B, T, n_out]."""
        stats = stats or RunStats()
        B, T = x.shape[0], x.shape[1]
        state = self.fresh_state(B)
        out_pop = self.ng.pop(self.io.output_pop)
        y = np.zeros((B, T, out_pop.size), self.dtype)
        for t in range(T):
            y[:, t] = self.step(x[:, t], t, state, stats)
            stats.tokens += 1
        self.last_state = state
        return y, stats

    def dequantise(self, y: np.ndarray) -> np.ndarray:
        return neurons.dequantise(y, self.ng.pop(self.io.output_pop).scale, self.fixed)
