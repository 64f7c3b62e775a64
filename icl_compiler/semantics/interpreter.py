"""The reference interpreter of the neuromorphic IR, batched over sequences, in two evaluation orders.

It runs the *neuromorphic* graph (not the tensor IR): populations in static order, synapse
groups as matrix products, and each attention head's K/V held in per-sequence plastic weight
arrays that only the learning rules write.  Float mode uses float64; fixed mode uses the exact
integer primitives of :mod:`.fixed` (Lava 0.10 ``fixed_pt``; the contract is docs/semantics.md).
The neuron arithmetic is :mod:`.neurons`; this module adds the evaluation order, the plastic
state and the counts of :class:`RunStats`.

* **Token by token** (:meth:`Interpreter.step`, ``run(x, mode="token")``): the definition —
  every population once per token, each head writes slot t and reads.  The fixed-point products
  are plain int64 (``fixed.dense``, ``fixed.k_read``, ``fixed.v_read``).
* **Sequence-parallel** (:meth:`Interpreter.advance`, ``run(x)``, the default): every population
  once per *chunk* of tokens ([B·T, n] at once).  A population's value depends only on its own
  token except inside the heads, and there the K write of token t fills slot t while the read of
  token t sees the slots ≤ t, so a head is the writes of all T tokens followed by causally
  masked products (``neurons.k_read`` / ``value_read`` with ``t0``) — with the rules' own integer
  arithmetic, so the results, the :class:`RunStats` (ops, spikes, saturation counts), the
  calibration record and the final K/V equal the token-by-token ones bit for bit.  Fixed-point
  products run in float64 BLAS when a bound proves them exact (``products.int_matmul``); the
  static synapse groups leaving one population are stacked into one prepared matrix (built once
  per interpreter); wrap-arounds that the bounds exclude are skipped.  Float products keep the
  per-token layout that makes a token's rows independent of the chunk (``products.rows_matmul``)
  except where ``products.one_call_exact`` has found that one stacked call gives the same bits
  on this BLAS.  A chunk starts where the
  plastic state holds nothing yet (slots ≥ its first position are zero); otherwise (a state
  given by the caller) that chunk runs token by token.

Memory: a chunk of Tc tokens holds at most ``8·B·Tc·W`` bytes of per-token values, where ``W``
(:attr:`Interpreter.width`) is the number of values one token of one sequence produces (every
population, the stacked products, per head 4·T_max score/slot arrays and, for fast weights,
d_v·d_k); Tc is the largest chunk within ``memory_budget`` (default 64 MiB), at least one token.
Beyond that the interpreter holds the plastic state (K/V of every head), the outputs and the
prepared weights.

The NumPy backend and ``runtime.session`` run this interpreter; the quantiser calibrates with it
(``record``).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..ir.neuro import HeadSpec, Lowering, NeuroGraph, NeuronModel, Role
from . import blas
from . import fixed as fx
from . import neurons
from .neurons import count_nonzero
from .products import absmax, int_matmul, one_call_exact, tune_allocator

MEMORY_BUDGET = 64 * 2**20  # bytes of per-token values one chunk may hold
_INT32 = 2**31


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


@dataclass
class _OneHot:
    """A one-hot input over N rows (tokens): row r carries ``payload`` on neuron ``idx[r]``."""

    idx: np.ndarray
    payload: float


@dataclass
class _Stack:
    """The static synapse groups leaving one population, prepared once (fixed mode): Lava's
    doubled weights of all groups side by side, transposed ([pre, Σ rows]), and per group its
    columns, its largest row Σ|2m| and its shift e − 1."""

    WT: np.ndarray  # float64 (or int64 for one-hot pres, which are gathered)
    colsum: int
    groups: dict  # name -> (c0, c1, rowsum, e - 1)
    WT_int: np.ndarray | None = None


class Interpreter:
    """Runs a :class:`NeuroGraph` on a batch of sequences (``run``): sequence-parallel by default,
    token by token with ``mode="token"`` (see the module docstring)."""

    default_mode = "sequence"  # what ``run`` does without ``mode`` (benchmarks set "token")

    def __init__(self, ng: NeuroGraph, *, memory_budget: int = MEMORY_BUDGET):
        self.ng = ng
        self.fixed = ng.precision == "fixed"
        self._batch: int | None = None  # sequences in the chunk advance() computes
        self.order = ng.static_order()
        self.heads_by_out = {h.out: h for h in ng.heads}
        self.head_pops = {h.slots for h in ng.heads}
        self.io = ng.io
        self.static_in = {name: [s for s in ng.incoming(name) if s.role == Role.STATIC]
                          for name in self.order}
        self.dtype = neurons.dtype(self.fixed)
        self.record: dict[str, float] | None = None  # calibration: max |value| per probe
        self.last_state: dict[str, np.ndarray] = {}
        self.memory_budget = int(memory_budget)
        tune_allocator()
        blas.warn_once()  # (numpy's OpenBLAS on kernels narrower than the CPU's: say so)
        self.diagonal = self._diagonal_groups()
        self.out_groups = self._out_groups()
        self.stacks: dict[str, _Stack] = {}
        self.float_wts: dict[str, np.ndarray] = {}
        self.float_stacks: dict[str, np.ndarray] = {}  # float: pre -> its groups' weights stacked
        self.float_cols: dict[str, tuple[int, int]] = {}  # ... and each group's columns
        self.width = self._width()

    def _rec(self, key: str, arr) -> None:
        if self.record is None:
            return
        if isinstance(arr, _OneHot):
            m = abs(float(arr.payload)) if arr.idx.size else None
        else:
            m = float(absmax(arr)) if arr.size else None
        if m is not None:
            self.record[key] = max(self.record.get(key, 0.0), m)

    # -- preparation ---------------------------------------------------------------------------
    def _out_groups(self) -> dict[str, list]:
        """The non-diagonal static groups leaving each population, in evaluation order."""
        out: dict[str, list] = {}
        for name in self.order:
            for s in self.static_in[name]:
                if s.name not in self.diagonal:
                    out.setdefault(s.pre, []).append(s)
        return out

    def _stack(self, pre: str) -> _Stack:
        """The doubled weights of ``pre``'s static groups, stacked (fixed mode; built on first
        use, then kept: the interpreter prepares each matrix once)."""
        st = self.stacks.get(pre)
        if st is not None:
            return st
        groups = self.out_groups[pre]
        w2 = [fx.lava_dense_weights(s.weights) for s in groups]
        WT = np.concatenate([w.T for w in w2], axis=1)
        info, c = {}, 0
        for s, w in zip(groups, w2):
            rowsum = int(np.abs(w).sum(axis=1).max()) if w.size else 0
            info[s.name] = (c, c + w.shape[0], rowsum, int(s.exp) - 1)
            c += w.shape[0]
        colsum = max((g[2] for g in info.values()), default=0)
        one_hot = self.ng.pop(pre).one_hot
        WT = np.ascontiguousarray(WT, np.int64 if one_hot else np.float64)
        st = self.stacks[pre] = _Stack(WT, colsum, info, WT if one_hot else None)
        return st

    def prepared_bytes(self) -> int:
        """Bytes of the weights prepared so far (float: transposed, and stacked per pre
        population where one call is exact; fixed: stacked, doubled)."""
        arrays = list(self.float_wts.values()) + list(self.float_stacks.values()) + [
            a for st in self.stacks.values() for a in (st.WT, st.WT_int) if a is not None]
        return sum(a.nbytes for a in {id(a): a for a in arrays}.values())

    def _wt(self, s) -> np.ndarray | None:
        """A float group's prepared weights (``neurons.float_wt``, made once); None in fixed
        mode, whose products take the integer weights (``fixed.dense``, :meth:`_stack`)."""
        if self.fixed:
            return None
        wt = self.float_wts.get(s.name)
        if wt is None:
            wt = self.float_wts[s.name] = neurons.float_wt(s)
        return wt

    def _diagonal_groups(self) -> dict:
        """Static groups with a square diagonal matrix (residual connections), by name: float:
        the diagonal; fixed: (Lava's doubled diagonal, -, its largest |entry|, e − 1)."""
        out = {}
        for s in self.ng.synapses():
            w = s.weights
            if s.role != Role.STATIC or w.ndim != 2 or w.shape[0] != w.shape[1] or not w.size:
                continue
            d = np.diag(w)
            if np.count_nonzero(w) != np.count_nonzero(d):
                continue
            if self.fixed:
                d2 = np.diag(fx.lava_dense_weights(w)).astype(np.int64)
                out[s.name] = (d2, None, int(np.abs(d2).max()), int(s.exp) - 1)
            else:
                out[s.name] = d.astype(np.float64)
        return out

    def _width(self) -> int:
        """Values one token of one sequence holds during a chunk (the memory bound's W)."""
        w = sum(p.size for p in self.ng.populations() if not p.one_hot)
        # the stacked products (fixed; float where one call is exact, _float_stack)
        w += sum(s.weights.shape[0] for gs in self.out_groups.values() for s in gs)
        for h in self.ng.heads:
            w += 4 * h.t_max
            if h.lowering == Lowering.FAST_WEIGHT:
                w += self.ng.pop(h.k).size * self.ng.pop(h.v).size
        return max(w, 1)

    def chunk_tokens(self, batch: int) -> int:
        """Tokens per chunk for a batch: the most that keep 8·B·Tc·W within the memory budget."""
        return max(1, self.memory_budget // (8 * max(batch, 1) * self.width))

    # -- state ------------------------------------------------------------------------------
    def fresh_state(self, batch: int) -> dict[str, np.ndarray]:
        """Plastic weights of every head, zero at the start of each sequence."""
        st = {}
        for h in self.ng.heads:
            d, dv = self.ng.pop(h.k).size, self.ng.pop(h.v).size
            st[h.k_syn] = neurons.k_init(h, d, dv, batch, self.fixed)
            st[h.v_syn] = neurons.v_init(h, dv, batch, self.fixed)
        return st

    def _unwritten_from(self, state: dict, t0: int) -> bool:
        """True if every KV-slot head's slots ≥ t0 hold nothing (what a chunk needs)."""
        for h in self.ng.heads:
            if h.lowering == Lowering.FAST_WEIGHT:
                continue
            if np.any(state[h.k_syn][:, t0:]) or np.any(state[h.v_syn][:, :, t0:]):
                return False
        return True

    # -- one token (the definition) ----------------------------------------------------------------
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
                stats.synaptic_ops += count_nonzero(pre) * s.weights.shape[0]
                cur += neurons.dense(s, pre, fixed, wt=self._wt(s))
            vals[name] = self._neuron(name, pop, cur, stats)
        return vals[self.io.output_pop]

    def _neuron(self, name: str, pop, cur: np.ndarray, stats: RunStats,
                nz: dict | None = None) -> np.ndarray:
        """A static population's output from its synaptic current (both evaluation orders);
        ``nz`` (a chunk's cache of non-zero counts) receives the output's."""
        if pop.bias is not None:
            cur += pop.bias.astype(self.dtype)
        self._rec(name + ":current", cur)
        out, sat = neurons.neuron(pop, cur, self.fixed, in_place=True)  # (cur is ours: a sum)
        stats.saturate(f"payload:{name}", sat)
        self._spikes(name, out, stats, nz)
        return out

    def _spikes(self, name: str, out: np.ndarray, stats: RunStats, nz: dict | None) -> None:
        """Count a population's output spikes (into ``nz`` too, the chunk's cache) and record it."""
        n = count_nonzero(out)
        stats.spikes += n
        if nz is not None:
            nz[name] = n
        self._rec(name, out)

    def product(self, pop, vals, B: int, stats: RunStats) -> np.ndarray:
        """A product neuron, token by token: the currents of its two ports (port 0 with the
        bias), multiplied."""
        cur = [np.zeros((B, pop.size), self.dtype), np.zeros((B, pop.size), self.dtype)]
        for s in self.static_in[pop.name]:
            pre = vals[s.pre]
            stats.synaptic_ops += count_nonzero(pre) * s.weights.shape[0]
            cur[s.port] += neurons.dense(s, pre, self.fixed, wt=self._wt(s))
        return self._product(pop, cur, stats)

    def _product(self, pop, cur: list, stats: RunStats, nz: dict | None = None) -> np.ndarray:
        """A product neuron's output from its two ports' currents (both evaluation orders)."""
        if pop.bias is not None:
            cur[0] += pop.bias.astype(self.dtype)
        self._rec(pop.name + ":current", cur[0])
        self._rec(pop.name + ":current_b", cur[1])
        out, sat = neurons.product(pop, cur[0], cur[1], self.fixed)
        stats.saturate(f"payload:{pop.name}", sat)
        self._spikes(pop.name, out, stats, nz)
        return out

    def head(self, h: HeadSpec, vals, t: int, state, stats: RunStats, n_tok: int = 1,
             t0: int | None = None, nz: dict | None = None) -> np.ndarray:
        """One plastic head: for token t (``vals`` hold [B, n]), or for the ``n_tok`` tokens from
        ``t0`` (``vals`` hold [B·n_tok, n], causal reads; ``nz``: the chunk's non-zero counts;
        the slots ≥ t0 hold nothing yet, which ``advance`` has made sure of)."""
        ng, fixed = self.ng, self.fixed
        seq = t0 is not None
        B = vals[h.k].shape[0] // n_tok

        def val(name):
            v = vals[name]
            return v.reshape(B, n_tok, -1) if seq else v

        k, q, v = val(h.k), val(h.q), val(h.v)
        t = t0 if seq else t
        if h.lowering == Lowering.FAST_WEIGHT:  # float only (docs/semantics.md §6)
            W, out = neurons.fast_weight(h, state[h.k_syn], k, v, q)
            state[h.k_syn] = W
            stats.learning_updates += W[0].size * n_tok
            stats.synaptic_ops += W[0].size * n_tok
            return out.reshape(B * n_tok, -1) if seq else out
        stats.learning_updates += k.shape[-1] * (2 if fixed else 1) * n_tok
        K, sat = neurons.k_write(h, state[h.k_syn], k, t, fixed, copy=not seq, fresh=seq)
        state[h.k_syn] = K
        stats.saturate(f"k:{h.k}", sat)
        stats.learning_updates += v.shape[-1] * n_tok
        V, sat = neurons.v_write(h, state[h.v_syn], v, t, fixed, copy=not seq, fresh=seq)
        state[h.v_syn] = V
        stats.saturate(f"v:{h.v}", sat)
        stats.synaptic_ops += (count_nonzero(q) if nz is None else self._nz(h.q, vals, nz)) \
            * h.t_max
        scores = neurons.k_read(h, K, q, fixed, t0, t)
        a, sat = neurons.slots(h, ng.pop(h.slots).q, scores, fixed)
        stats.saturate(f"slots:{h.slots}", sat)
        nz_a = count_nonzero(a)
        if fixed:
            stats.spikes += nz_a
        vals[h.slots] = a
        self._rec(h.slots + ":score", scores * h.scale if not fixed else scores)
        self._rec(h.slots, a)
        stats.synaptic_ops += nz_a * V.shape[1]
        out, sat, acc = neurons.value_read(h, ng.pop(h.out), V, a, fixed, t0, with_acc=True,
                                             t=t)
        if self.record is not None and not fixed:
            self._rec(h.out + ":acc", acc)
        stats.saturate(f"payload:{h.out}", sat)
        return out.reshape(B * n_tok, -1) if seq else out

    # -- a chunk of tokens at once --------------------------------------------------------------
    def advance(self, x: np.ndarray, t0: int, state: dict, stats: RunStats, *,
                unwritten: bool = False) -> np.ndarray:
        """Tokens t0 … t0+T−1 of every sequence (x [B, T] ids or [B, T, F] features) → raw outputs
        [B, T, n_out]; ``state`` (the plastic weights) is updated in place and ``stats`` counted,
        exactly as T calls of :meth:`step` would.  ``unwritten``: the caller knows that the
        slots ≥ t0 hold nothing (``run``'s chunks of a fresh state), so it is not checked."""
        B, T = x.shape[0], x.shape[1]
        if not unwritten and not self._unwritten_from(state, t0):
            return np.stack([self._step_counted(x[:, i], t0 + i, state, stats)
                             for i in range(T)], axis=1)
        ng, fixed, N = self.ng, self.fixed, B * T
        self._batch = B  # float products: the rows of one token (products.rows_matmul)
        vals: dict = {}
        nz: dict[str, int] = {}
        amax: dict[str, int] = {}
        prods: dict[str, np.ndarray] = {}
        pos = t0 + np.arange(T)
        for name in self.order:
            pop = ng.pop(name)
            if pop.model == NeuronModel.INPUT:
                if pop.one_hot:
                    idx = neurons.one_hot_index(pop, x, pos).reshape(N)
                    if idx.size and idx.max() >= pop.size:
                        raise IndexError(f"position {int(idx.max())} is outside the position "
                                         f"table ({pop.size} entries)")
                    vals[name] = _OneHot(idx, neurons.one_hot_payload(pop, fixed))
                elif fixed and x.size:  # the payloads' extremes come from x's (two passes)
                    ext = neurons.feature_extremes(x, pop.scale)
                    vals[name] = neurons.encode_features(x, pop.scale, True, True,
                                                         ext).reshape(N, -1)
                    amax[name] = (neurons.clipped_absmax(ext), vals[name])
                else:
                    vals[name] = neurons.input_payload(pop, x, pos, fixed, as_float=True)
                    vals[name] = vals[name].reshape(N, -1)
                    if not fixed:  # the payloads are x in float64: counted on x (fewer bytes)
                        nz[name] = count_nonzero(x)
                self._rec(name, vals[name])
            elif name in self.heads_by_out:
                vals[name] = self.head(self.heads_by_out[name], vals, 0, state, stats, T, t0, nz)
                self._rec(name, vals[name])
            elif pop.model == NeuronModel.PRODUCT:  # two ports, each from the stacked products
                cur = [self._current(pop, N, [s for s in self.static_in[name] if s.port == p],
                                     vals, nz, prods, amax, stats) for p in (0, 1)]
                vals[name] = self._product(pop, cur, stats, nz)
            elif name not in self.head_pops:
                cur = self._current(pop, N, self.static_in[name], vals, nz, prods, amax, stats)
                vals[name] = self._neuron(name, pop, cur, stats, nz)
        stats.tokens += T
        return vals[self.io.output_pop].reshape(B, T, -1)

    def _current(self, pop, N: int, groups, vals, nz, prods, amax, stats) -> np.ndarray:
        """Σ of the groups' contributions over the chunk's N rows (the first term is the sum
        itself: 0 + x == x).  A term may be a view of its pre population's stacked product
        (its own columns, read once per chunk), so adding into it changes nothing else.  The sum
        is C-ordered, as the token-by-token one is (numpy's reductions, e.g. a norm neuron's,
        round a strided array differently)."""
        cur = None
        for s in groups:
            stats.synaptic_ops += self._nz(s.pre, vals, nz) * s.weights.shape[0]
            term = self._dense(s, vals, prods, amax)
            if cur is None:
                cur = term if term.dtype == self.dtype else term.astype(self.dtype)
            elif cur.flags.c_contiguous:
                cur += term
            else:  # (a view of a stacked product: the sum is a new, C-ordered array)
                cur = cur + term
        if cur is None:
            return np.zeros((N, pop.size), self.dtype)
        return cur if cur.flags.c_contiguous else np.ascontiguousarray(cur)

    def _step_counted(self, x_t, t, state, stats) -> np.ndarray:
        y = self.step(x_t, t, state, stats)
        stats.tokens += 1
        return y

    @staticmethod
    def _nz(name: str, vals: dict, cache: dict) -> int:
        if cache.get(name) is None:
            v = vals[name]
            cache[name] = (v.idx.size if v.payload else 0) if isinstance(v, _OneHot) \
                else count_nonzero(v)
        return cache[name]

    def _dense(self, s, vals: dict, prods: dict, amax: dict) -> np.ndarray:
        """A static group's contribution over all rows of the chunk (== ``neurons.dense`` row by
        row; fixed: from the pre population's stacked product, computed once).  A diagonal
        group (a residual connection) is an elementwise product: every other term of a row's sum
        is an exact zero."""
        pre = vals[s.pre]
        diag = self.diagonal.get(s.name)
        if not self.fixed:
            if isinstance(pre, _OneHot):  # one 1.0 per row: the product picks a weight column
                return s.weights.T[pre.idx] * pre.payload
            if diag is not None and np.isfinite(np.add.reduce(pre, axis=None)):  # (0·inf = NaN;
                # a finite sum means finite entries: an overflow to inf only takes the BLAS)
                return pre * diag
            if diag is None and s.pre not in prods:  # one call for the chunk and every group
                prods[s.pre] = self._float_stack(s.pre, pre)  # (None where it is not exact)
            if diag is not None or prods[s.pre] is None:  # the reference layout, token by token
                # (a diagonal group's too, on values that are not all finite)
                return neurons.dense(s, pre, False, self._batch, self._wt(s))
            c0, c1 = self.float_cols[s.name]
            return prods[s.pre][:, c0:c1]
        if s.pre not in amax:  # (max |payload|, the payloads as Lava's int32 channels carry them)
            if isinstance(pre, _OneHot):
                amax[s.pre] = (abs(int(pre.payload)), pre)
            else:
                m = absmax(pre)
                if m >= _INT32:  # fixed.dense wraps the pre payloads (never for our neurons)
                    amax[s.pre] = (_INT32, fx.wrap32(pre))
                else:
                    amax[s.pre] = (int(m), pre)
        m, pre = amax[s.pre]
        if diag is not None:
            d2, _, dmax, ex = diag
            acc = (pre if pre.dtype == np.int64 else pre.astype(np.int64)) * d2
            return self._shifted(acc, m * dmax, ex)
        st = self._stack(s.pre)
        if s.pre not in prods:
            if isinstance(pre, _OneHot):
                prods[s.pre] = st.WT[pre.idx] * int(pre.payload)
            else:
                if st.WT_int is None and float(m) * st.colsum >= 2**53:
                    st.WT_int = st.WT.astype(np.int64)
                prods[s.pre] = int_matmul(pre, st.WT, st.colsum, m, b_int=st.WT_int)
        c0, c1, rowsum, ex = st.groups[s.name]
        return self._shifted(prods[s.pre][:, c0:c1], m * rowsum, ex)

    def _float_stack(self, pre_name: str, pre: np.ndarray) -> np.ndarray | None:
        """The products of all float groups leaving ``pre_name`` over the chunk's rows as one BLAS
        call (their prepared weights side by side, :attr:`float_cols` their columns), when
        ``products.one_call_exact`` finds that this shape gives the bits of the reference layout
        (``rows_matmul``, token by token, group by group); otherwise None."""
        groups = self.out_groups[pre_name]
        widths = tuple(g.weights.shape[0] for g in groups)
        B = self._batch
        if not B or not one_call_exact(B, pre.shape[0] // B, pre.shape[1], widths):
            return None
        W = self.float_stacks.get(pre_name)
        if W is None:
            # (one group: its own prepared weights; several: stacked, without keeping the
            # groups' own copies, which only the token-by-token order uses)
            W = self._wt(groups[0]) if len(groups) == 1 else np.ascontiguousarray(
                np.concatenate([neurons.float_wt(g) for g in groups], axis=1))
            self.float_stacks[pre_name] = W
            c = 0
            for g, w in zip(groups, widths):
                self.float_cols[g.name] = (c, c + w)
                c += w
        return np.matmul(np.ascontiguousarray(pre), W)

    @staticmethod
    def _shifted(acc: np.ndarray, bound: int, ex: int) -> np.ndarray:
        """``fixed.shift(wrap32(acc), ex)`` for a group's sums with |acc| ≤ bound: the int32 wraps
        that the bound excludes are skipped."""
        if bound >= _INT32:
            acc, bound = fx.wrap32(acc), _INT32
        if ex > 0:
            acc = acc << ex
            if bound * 2**ex >= _INT32:
                acc = fx.wrap32(acc)
        elif ex < 0:
            acc = acc >> -ex
        return acc

    # -- whole batch -------------------------------------------------------------------------------
    def run(self, x: np.ndarray, stats: RunStats | None = None, *,
            mode: str | None = None) -> tuple[np.ndarray, RunStats]:
        """x: [B, T] token ids or [B, T, F] features → payload/real outputs [B, T, n_out].
        ``mode``: "sequence" (chunks of tokens, the default) or "token" (the definition)."""
        mode = mode or self.default_mode
        if mode not in ("sequence", "token"):
            raise ValueError(f"mode must be 'sequence' or 'token', got {mode!r}")
        stats = stats or RunStats()
        B, T = x.shape[0], x.shape[1]
        state = self.fresh_state(B)
        out_pop = self.ng.pop(self.io.output_pop)
        y = np.zeros((B, T, out_pop.size), self.dtype)
        if mode == "token":
            for t in range(T):
                y[:, t] = self._step_counted(x[:, t], t, state, stats)
        else:
            tc = self.chunk_tokens(B)
            for t0 in range(0, T, tc):
                y[:, t0:t0 + tc] = self.advance(x[:, t0:t0 + tc], t0, state, stats,
                                                unwritten=True)
        self.last_state = state
        return y, stats

    def dequantise(self, y: np.ndarray) -> np.ndarray:
        return neurons.dequantise(y, self.ng.pop(self.io.output_pop).scale, self.fixed)
