"""Partition: place the neuromorphic graph on Loihi 2 neuro cores, embedded cores and the host.

Matches: any verified :class:`NeuroGraph` (float or fixed; the hardware model is the same).
Produces: ``partition(ng, target) -> resources`` (the report's ``resources`` section; the graph is
only annotated: ``pop.attrs["cores"]``), ``split_graph(ng, target) -> NeuroGraph`` (an executable
graph whose populations and synapse groups are really tiled), ``format_resources`` (terminal
table) and ``write_partition_picture`` (``partition.svg``).

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

Cost model of one tile (a core holds one or more tiles) — all assumptions are next to the
constants in :mod:`icl_compiler.targets.loihi2`
-----------------------------------------------------------------------------------------------
A tile computes a contiguous range of one population's neurons (the synapses live with their
*post* neuron, as on Loihi) from a set of input ranges (synapse group, pre range):

* neurons: the range's width; k and q populations of ``kv_slot`` heads count twice (the sign-split
  encoding of DESIGN §4 carries ``[x, −x]`` on 2·d neurons, fed by ``[W; −W]``).
* fan-in: the number of input axons = Σ pre neurons of its input ranges (an axon per pre neuron;
  the K synapses' pre side is the sign-split 2·d_k).  Not de-duplicated across tiles that share a
  core (conservative).
* synapse memory: dense format (no index bits, every weight stored, zeros too): per input axon
  its targets in blocks of ≤ 64, each block ``n × bits + 10`` header bits rounded up to a 64-bit
  word (nengo-loihi's Loihi 1 format).  Static weights 8 bits, plastic (K, V) 9 bits plus
  learning-engine state: 2 traces per axon, 3 per post neuron, 15 bits each (7 + 8 fraction),
  rounded to words, and 4 words of rule microcode per plastic tile.  A row-sum neuron
  (normalised heads) costs one neuron and one 1-weight axon per slot.

Tiling (the splits)
-------------------
For each population the pass first tries *post-axis* tiling: the widest range w whose neurons,
fan-in and synapse memory fit a core (binary search, the cost is monotone in w), then one of
three cuts: ⌈N/w⌉ tiles of balanced width, full tiles of w plus one remainder, or full tiles of
w rounded down to whole 64-synapse blocks plus one remainder.  The cut expected to pack into the
fewest cores wins: a tile over half a core counts one core (it rarely shares one), a smaller
tile its fill; ties go to the smaller total demand, then to the balanced cut.  (Balanced tiles
just over half a core — e.g. 2 × 56 % for a population of 1.1 cores — each take a core of their
own; a full tile plus a 13 % remainder packs into 1.13 cores.)
If even one neuron does not fit (fan-in > FAN_IN_PER_CORE, or one post neuron's synapses exceed
the memory), the concatenated input axis is cut into *chunks* of the largest fitting size plus
a remainder (pre-axis tiling).  Each chunk gets its own ``partial`` tiles; for neuro-core
populations ``sum`` tiles add the chunks' partial currents (one 1-weight axon per chunk and
neuron); for embedded/host populations the partial currents go straight to the embedded core or
host, which adds them (counted as ops).  Attention heads are tiled along the *slot* axis when a
head's slots + K synapses exceed a core: each slot tile holds K rows [a, b) and its slot neurons;
q and k are broadcast to every slot tile, the bAP of token t reaches only the tile holding slot t,
and the V synapses (on the value neurons' core) receive every slot tile's outputs.  This is
hardware-valid; the emulator's :class:`HeadSpec` cannot express it yet, so :func:`split_graph`
keeps heads whole (see there).

Input axis of a population: its incoming groups in a canonical order (by the pre population's
position in the graph, then as connected), each over the pre neurons it has synapses from — all
of them, except for a group made by :func:`split_graph`, whose ``attrs["pre_span"]`` names the
segment it carries (its other columns are zero).

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

Chips (minimising inter-chip spikes)
------------------------------------
Greedy + refinement rather than recursive Kernighan–Lin from scratch: cores are already in
dataflow order (layer by layer), and a transformer's core graph is close to a chain of layers, so
cutting that order into consecutive runs of ``cores_per_chip`` cores is a near-optimal start that
also respects chip capacity exactly.  Each pair of consecutive chips is then refined with
networkx's ``kernighan_lin_bisection`` seeded with the current split (it swaps cores pairwise, so
both chips keep their core counts; a swap set is kept only if the cut between the two chips drops
— other chips' cuts cannot change by swapping cores between these two).  Recursive KL bisection
from a random start on 10^4 cores is slow in pure-Python networkx, ignores the dataflow order,
and needs padding to respect exact chip capacities.  Embedded populations then go to the chip
with which they exchange the most spikes.

Spike estimate
--------------
``interchip_spikes_per_token`` counts, per token, one spike per (source neuron, destination
core) pair crossing chips, assuming every graded neuron sends every token (an upper bound; ReLU
sparsity lowers it), one-hot inputs send exactly one spike, and k/q send their sign-split pair.

Splitting the graph for the emulator (``split_graph``)
-----------------------------------------------------
Neuro-core populations (except those of attention heads) are cut into the plan's pieces
(``name#i``); every static synapse group is cut along the post axis by the post pieces and along
the pre axis by the pre pieces and the plan's fan-in chunks.  Exactness:

* post-axis tiles compute the same dot products: exact in fixed point; in float the emulator's
  BLAS may order a row's sum differently for a sub-matrix (measured: ~half of random shapes differ
  in the last bit), so float results are bit-identical when the sums are exact (dyadic weights and
  inputs, what the tests use) and equal to ~1e-15 otherwise.
* pre-axis tiles: in float, one group per pre segment (re-association, same caveat).  In fixed
  point a group's output is ``floor(Σ m·s·2^e)``; separate groups floor separately, so one group
  per segment is used only where that is exact — ``e ≥ 0`` (no floor) or a one-hot pre
  population (tokens/positions: at most one non-zero term per token).  Otherwise the segments
  feed an *accumulator* population through groups with ``e = 0`` (unshifted partial sums, exact
  integers, added in the neuron's int32 current like one dendritic sum); the accumulator neuron
  right-shifts its current once by ``-e`` (``q.shift``, the floor shift the interpreter
  already applies for the quantiser's rounding k/q/v neurons) and an identity group with
  ``e = 0`` adds that value — exactly the original group's ``floor(Σ m·s·2^e)`` — to the post
  population.  The accumulator's payload has the magnitude of the original group's output (a
  post-current contribution), so it stays inside 24 bits whenever the original current did.
  Cost: one more neuron per post neuron and one step of pipeline delay (the schedule is redone).
* attention heads stay whole (their k, q, v, slots and out populations and K/V synapses are not
  split): the emulator evaluates a head as one unit.  ``split_graph`` raises a CompileError when
  one head does not fit a core.  Slot-axis splitting is modelled by ``partition`` only.

Idempotence: splitting a split graph again (same target) returns the same populations and
synapse groups (names, ends and weights).  Planning the split graph sees the original input axis
(the segments' ``pre_span``, the canonical order), chunking keeps a segment in one chunk when it
fits, a piece is one tile's range so it is not cut again, and an accumulator is as wide as one
of its own tiles holds.
"""
from __future__ import annotations

import bisect
import copy
import math
import time
from dataclasses import dataclass, field

import networkx as nx
import numpy as np

from ..errors import CompileError
from ..ir.neuro import NeuroGraph, Population, QuantParams, SynapseGroup, verify_neuro
from ..targets import loihi2 as L2
from ..targets.loihi2 import Target, as_target
from .base import Module, Pass, PassContext

# -- cost model -------------------------------------------------------------------------------------

_BLOCK = L2.SYNAPSES_PER_BLOCK
_WORD = L2.SYNAPSE_WORD_BITS
_TRACE_BITS = L2.TRACE_BITS + L2.TRACE_FRACTION_BITS


def _words(bits: int) -> int:
    return -(-bits // _WORD) * _WORD


def block_bits(n: int, wbits: int) -> int:
    """Memory of one synapse block of n ≤ 64 weights (header + weights, whole 64-bit words)."""
    return _words(n * wbits + L2.SYNAPSE_BLOCK_HEADER_BITS) if n > 0 else 0


def axon_bits(n_targets: int, wbits: int) -> int:
    """Memory of one input axon's synapse list with n_targets dense weights."""
    full, rem = divmod(n_targets, _BLOCK)
    return full * block_bits(_BLOCK, wbits) + block_bits(rem, wbits)


def dense_bits(n_axons: int, n_targets: int, wbits: int) -> int:
    return n_axons * axon_bits(n_targets, wbits)


def learning_state_bits(n_axons: int, n_post: int) -> int:
    """Learning-engine state of one plastic tile: pre traces, post traces, rule microcode."""
    return (_words(n_axons * L2.PRE_TRACES * _TRACE_BITS)
            + _words(n_post * L2.POST_TRACES * _TRACE_BITS) + L2.LEARNING_RULE_BITS)


def _pre_span(s: SynapseGroup) -> tuple[int, int]:
    """[lo, hi): the pre neurons a group has synapses from.  :func:`split_graph` cuts a group at
    fan-in chunk boundaries inside a pre piece; it stores the piece's weights with zero columns
    outside the segment and records the segment as ``attrs["pre_span"]``, so that planning the
    split graph sees exactly the input axis (and the chunks) of the original plan."""
    n = np.shape(s.weights)[1]
    span = (s.attrs or {}).get("pre_span")
    if s.plastic or not span:
        return 0, n
    return max(0, int(span[0])), min(n, int(span[1]))


def _effective_layers(ng: NeuroGraph) -> dict:
    """Each population's layer for packing and chips.  Populations the lowering left without a
    layer (the materialised residual stream) take the latest layer among their inputs, or the
    earliest among their consumers (the embedding sum x0 goes with layer 0); host populations
    keep None."""
    layer = {p.name: p.layer for p in ng.populations()}
    host = {p.name for p in ng.populations() if p.model == "input" or p.placement == "host"}
    try:
        order = ng.static_order()
    except nx.NetworkXUnfeasible:  # a cycle: verify_neuro/schedule report it; keep graph order
        order = list(ng.g.nodes)
    for name in order:
        if layer[name] is None and name not in host:
            pre = [layer[s.pre] for s in ng.incoming(name) if layer[s.pre] is not None]
            if pre:
                layer[name] = max(pre)
    for name in reversed(order):
        if layer[name] is None and name not in host:
            post = [layer[v] for _, v in ng.g.out_edges(name) if layer[v] is not None]
            if post:
                layer[name] = min(post)
    return layer


def _packing_cost(fills: list[float]) -> tuple:
    """Expected cores for tiles of these fills (their largest normalised demand): a tile over half
    a core rarely shares it (count 1), smaller ones pack with others (count their fill); then
    the total demand, then the number of tiles."""
    return (round(sum(1.0 if f > 0.5 else f for f in fills), 9), round(sum(fills), 9), len(fills))


# -- the plan ---------------------------------------------------------------------------------------

@dataclass
class _In:
    """One incoming synapse group of a population, as the hardware sees it."""

    syn: str
    pre: str
    pre_size: int
    axf: int  # input axons per pre neuron (2 for the sign-split K read)
    wbits: int
    plastic: bool
    one_hot: bool
    diag: bool = False  # one input per (pre index, post neuron) with one weight: partial sums
    lo: int = 0  # the pre neurons [lo, hi) the group has synapses from (see _pre_span); the
    hi: int = -1  # others need no axon (hi = -1: up to pre_size)
    whole: bool = False  # made by split_graph: chunking keeps it in one chunk when it fits

    def __post_init__(self):
        if self.hi < 0:
            self.hi = self.pre_size


@dataclass
class Tile:
    id: int
    kind: str  # neurons | slots | relay | partial | sum
    pop: str
    lo: int
    hi: int
    inputs: list  # [(syn, pre_lo, pre_hi)]
    neurons: int
    bits: int
    fan_in: int
    synapses: int
    layer: int | None
    chunk: int | None = None
    core: int = -1

    @property
    def label(self) -> str:
        k = "" if self.kind in ("neurons", "slots") else f" {self.kind}"
        c = "" if self.chunk is None else f"/c{self.chunk}"
        return f"{self.pop}[{self.lo}:{self.hi}]{k}{c}"


@dataclass
class _PopPlan:
    name: str
    cls: str  # neurocore | embedded | host
    mult: int
    ins: list
    chunks: list | None  # [[(syn, lo, hi)]] when the input axis is chunked
    tiles: list = field(default_factory=list)  # tile ids (all kinds)
    holders: list = field(default_factory=list)  # (lo, hi, tile id) tiles that hold the neurons


class _Planner:
    def __init__(self, ng: NeuroGraph, t: Target):
        self.ng, self.t = ng, t
        self.cap_n, self.cap_b, self.cap_f = t.neurons_per_core, t.synapse_bits_per_core, t.fan_in_per_core
        self.tiles: list[Tile] = []
        self.plans: dict[str, _PopPlan] = {}
        self.head_of_slots = {h.slots: h for h in ng.heads}
        # neurons per logical neuron: k and q are sign split (×2, ×3 with 16-bit K: a low
        # half), 16-bit V has high and low value neurons (×2); K axons per k/q neuron likewise
        kv = [h for h in ng.heads if h.lowering == "kv_slot"]
        res = {h.k_syn for h in kv if h.kv_bits == 16}
        self.mults = {p: 3 if h.k_syn in res else 2 for h in kv for p in (h.k, h.q)} | {
            h.out: 2 for h in kv if h.k_syn in res}
        self.sign_split = set(self.mults)
        self.head_pops = {p for h in ng.heads for p in (h.k, h.q, h.v, h.slots, h.out)}
        self.k_syns = {h.k_syn: 3 if h.k_syn in res else 2 for h in kv}
        self.slot_splits = 0
        self.order = {name: i for i, name in enumerate(ng.g.nodes)}
        self.layer = _effective_layers(ng)

    # -- classification -------------------------------------------------------------------------
    def cls(self, p: Population) -> str:
        if p.model == "input" or p.placement == "host":
            return "host"
        if p.placement == "embedded":
            return "embedded"
        return "neurocore"

    def _ins(self, name: str) -> list[_In]:
        """The incoming groups in a canonical order (by pre population, then as connected), so
        that a split graph, whose groups are the pieces of these in the same order, gets the same
        input axis and chunks."""
        out = []
        syns = sorted(self.ng.incoming(name), key=lambda s: self.order[s.pre])
        for s in syns:
            pre = self.ng.pop(s.pre)
            lo, hi = _pre_span(s)
            out.append(_In(s.name, s.pre, pre.size, self.k_syns.get(s.name, 1),
                           self.t.plastic_weight_bits if s.plastic else self.t.weight_bits,
                           s.plastic, pre.one_hot,
                           lo=lo, hi=hi, whole="split_of" in (s.attrs or {})))
        return out

    # -- cost of one tile --------------------------------------------------------------------------
    def cost(self, inputs, by_syn, width: int, mult: int, rowsum: bool) -> tuple[int, int, int, int]:
        posts = width * mult
        neurons, bits, fan_in, syns = posts, 0, 0, 0
        plastic_axons = 0
        for syn, lo, hi in inputs:
            i = by_syn[syn]
            if i.diag:  # each post neuron gets its own axon from each of hi - lo partial sums
                ax = (hi - lo) * posts
                fan_in += ax
                bits += dense_bits(ax, 1, i.wbits)
                syns += ax
                continue
            ax = (hi - lo) * i.axf
            fan_in += ax
            bits += dense_bits(ax, posts, i.wbits)
            syns += ax * posts
            if i.plastic:
                plastic_axons += ax
        if plastic_axons:
            bits += learning_state_bits(plastic_axons, posts)
        if rowsum:  # one row-sum neuron fed by every slot of the tile (weights 1)
            neurons += 1
            bits += dense_bits(width, 1, self.t.weight_bits)
            syns += width
        return neurons, bits, fan_in, syns

    def fits(self, c) -> bool:
        return c[0] <= self.cap_n and c[1] <= self.cap_b and c[2] <= self.cap_f

    def max_width(self, inputs, by_syn, n: int, mult: int, rowsum: bool) -> int:
        if not self.fits(self.cost(inputs, by_syn, 1, mult, rowsum)):
            return 0
        lo, hi = 1, n
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if self.fits(self.cost(inputs, by_syn, mid, mult, rowsum)):
                lo = mid
            else:
                hi = mid - 1
        return lo

    def add_tile(self, plan: _PopPlan, kind, lo, hi, inputs, by_syn, rowsum=False, chunk=None):
        pop = self.ng.pop(plan.name)
        n, b, f, s = self.cost(inputs, by_syn, hi - lo, plan.mult, rowsum)
        t = Tile(len(self.tiles), kind, plan.name, lo, hi, list(inputs), n, b, f, s,
                 self.layer[pop.name], chunk)
        self.tiles.append(t)
        plan.tiles.append(t.id)
        if kind in ("neurons", "slots", "sum"):
            plan.holders.append((lo, hi, t.id))
        return t

    # -- planning ------------------------------------------------------------------------------------
    def run(self) -> _Planner:
        for p in self.ng.populations():
            self.plan_pop(p)
        return self

    def plan_pop(self, p: Population) -> None:
        cls = self.cls(p)
        mult = self.mults.get(p.name, 1)
        ins = self._ins(p.name)
        plan = _PopPlan(p.name, cls, mult, ins, None)
        self.plans[p.name] = plan
        if p.model == "input":
            return
        if cls != "neurocore" and not ins:
            return
        by_syn = {i.syn: i for i in ins}
        full = [(i.syn, i.lo, i.hi) for i in ins if i.hi > i.lo]
        h = self.head_of_slots.get(p.name)
        rowsum = h is not None and h.normalise == "rowsum"
        kind = "slots" if h is not None else ("neurons" if cls == "neurocore" else "relay")
        w = self.max_width(full, by_syn, p.size, mult, rowsum)
        if w > 0:
            self._tile_range(plan, kind, full, by_syn, w, rowsum)
            if h is not None and len(plan.tiles) > 1:
                self.slot_splits += 1
            return
        if mult > self.cap_n or (rowsum and self.cap_n < 2):
            raise CompileError(f"population {p.name}: one neuron needs {mult + rowsum} compartments "
                               f"but a core has {self.cap_n}")
        if h is not None:
            raise CompileError(f"attention head L{h.layer}H{h.head}: one slot neuron's K synapses "
                               f"({ins[0].pre_size * ins[0].axf} input axons) do not fit a core "
                               f"(fan-in {self.cap_f}, {self.cap_b} synapse bits)",
                               hint="reduce the head dimension d_k")
        # pre-axis tiling: cut the concatenated input axis into chunks
        plan.chunks = chunks = self._chunks(p.name, ins, by_syn, mult)
        for c, inputs in enumerate(chunks):
            wc = self.max_width(inputs, by_syn, p.size, mult, False)
            self._tile_range(plan, "partial", inputs, by_syn, wc, False, chunk=c)
        if cls == "neurocore":
            k = len(chunks)
            ws = self._sum_width(k, p.size, mult)
            if ws == 0:
                raise CompileError(f"population {p.name}: its input needs {k} partial sums per "
                                   f"neuron, more than a core's fan-in ({self.cap_f}) allows",
                                   hint="a deeper adder tree is not implemented; reduce the layer "
                                        "width")
            sum_in = self._sum_in(p.name, k)
            self._tile_range(plan, "sum", [(sum_in.syn, 0, k)], {sum_in.syn: sum_in}, ws, False)

    def _sum_in(self, name: str, k: int) -> _In:
        return _In(f"{name}:partials", name, k, 1, self.t.weight_bits, False, False, diag=True)

    def _sum_width(self, k: int, n: int, mult: int) -> int:
        """The widest range of neurons that one sum tile of k partial sums per neuron holds."""
        sum_in = self._sum_in("", k)
        return self.max_width([(sum_in.syn, 0, k)], {sum_in.syn: sum_in}, n, mult, False)

    def holder_width(self, ins: list[_In], n: int, mult: int = 1) -> int:
        """The widest range of a population fed by ``ins`` that one tile holds: a neurons tile,
        or when its input axis must be chunked, a sum tile (what :func:`split_graph` uses to
        size accumulators so that splitting the split graph again changes nothing)."""
        by_syn = {i.syn: i for i in ins}
        w = self.max_width([(i.syn, i.lo, i.hi) for i in ins if i.hi > i.lo], by_syn, n, mult,
                           False)
        if w > 0:
            return w
        return self._sum_width(len(self._chunks("accumulator", ins, by_syn, mult)), n, mult)

    def _tile_range(self, plan, kind, inputs, by_syn, w, rowsum, chunk=None):
        """Cut [0, n) into tiles of width ≤ w.  Candidates: ⌈n/w⌉ balanced tiles; full tiles of
        w plus one remainder; full tiles of w rounded down to whole 64-synapse blocks plus one
        remainder.  The one whose tiles are expected to pack into the fewest cores wins (see
        :func:`_packing_cost`); ties go to the balanced cut."""
        n = self.ng.pop(plan.name).size
        k = -(-n // w)
        cands = [[round(i * n / k) for i in range(k + 1)]]
        if k > 1:
            cands.append(list(range(0, n, w)) + [n])
            wa = (w // _BLOCK) * _BLOCK
            if _BLOCK <= wa < w:
                cands.append(list(range(0, n, wa)) + [n])
        mult = plan.mult
        memo: dict[int, float] = {}

        def fill(width):
            if width not in memo:
                c = self.cost(inputs, by_syn, width, mult, rowsum)
                memo[width] = max(c[0] / self.cap_n, c[1] / self.cap_b, c[2] / self.cap_f)
            return memo[width]

        bounds = min(cands, key=lambda bs: _packing_cost([fill(b - a) for a, b in zip(bs, bs[1:])]))
        for a, b in zip(bounds, bounds[1:]):
            self.add_tile(plan, kind, a, b, inputs, by_syn, rowsum, chunk)

    def _chunks(self, name, ins, by_syn, mult) -> list[list]:
        """Chunks of the input axis, each small enough for one post neuron on a core."""
        units = [(i, i.lo, i.hi) for i in ins if i.hi > i.lo]
        total_axons = sum((i.hi - i.lo) * i.axf for i in ins)
        # largest chunk (in axons) whose one-neuron tile fits, using the widest weight format
        worst = max(ins, key=lambda i: (i.wbits, i.plastic))
        probe = _In("probe", "", 0, 1, worst.wbits, worst.plastic, False)

        def ok(a):
            return self.fits(self.cost([("probe", 0, a)], {"probe": probe}, 1, mult, False))

        lo, hi = 0, min(total_axons, self.cap_f)
        while lo < hi:
            mid = (lo + hi + 1) // 2
            lo, hi = (mid, hi) if ok(mid) else (lo, mid - 1)
        cap = lo
        if cap < max(i.axf for i in ins):
            raise CompileError(f"population {name}: a single input axon does not fit a core's "
                               f"synapse memory ({self.cap_b} bits)")
        # full chunks of `cap` axons and one remainder chunk: full chunks give tiles that fill
        # both fan-in and memory; the remainder's tiles are thin in fan-in and pack with others
        size = cap
        chunks, cur, used = [], [], 0
        for i, lo_, n in units:
            if i.whole and cur and (n - lo_) * i.axf <= size and (n - lo_) * i.axf > size - used:
                chunks.append(cur)  # a piece made by split_graph: keep it whole in one chunk
                cur, used = [], 0
            while lo_ < n:
                room = (size - used) // i.axf
                if room <= 0 and cur:
                    chunks.append(cur)
                    cur, used = [], 0
                    continue
                take = min(n - lo_, max(room, 1))
                cur.append((i.syn, lo_, lo_ + take))
                used += take * i.axf
                lo_ += take
                if used >= size:
                    chunks.append(cur)
                    cur, used = [], 0
        if cur:
            chunks.append(cur)
        return chunks


# -- packing ----------------------------------------------------------------------------------------

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


# -- traffic ----------------------------------------------------------------------------------------

def _traffic(pl: _Planner) -> list[tuple]:
    """Edges (src node, dst node, spikes per token); nodes are tile ids or ("emb"|"host", pop)."""
    ng, tiles, plans = pl.ng, pl.tiles, pl.plans
    edges: list[tuple] = []
    src_index: dict[str, tuple[list, list]] = {}

    def sources(pop: str):
        if pop not in src_index:
            plan = plans[pop]
            if plan.cls != "neurocore":
                node = ("host", pop) if plan.cls == "host" else ("emb", pop)
                src_index[pop] = ([0], [(0, ng.pop(pop).size, node)])
            else:
                hs = sorted(plan.holders)
                src_index[pop] = ([h[0] for h in hs], [(a, b, tid) for a, b, tid in hs])
        return src_index[pop]

    def connect(pop, lo, hi, dst, scale=1.0):
        starts, items = sources(pop)
        mult = plans[pop].mult
        j = max(bisect.bisect_right(starts, lo) - 1, 0)
        for a, b, node in items[j:]:
            if a >= hi:
                break
            ov = min(b, hi) - max(a, lo)
            if ov > 0:
                edges.append((node, dst, ov * mult * scale))

    for t in tiles:
        plan = plans[t.pop]
        by_syn = {i.syn: i for i in plan.ins}
        if t.kind == "sum":  # partial tiles of the same pop → this sum tile
            for tid in plan.tiles:
                u = tiles[tid]
                if u.kind == "partial" and u.chunk is not None and u.chunk >= 0:
                    ov = min(u.hi, t.hi) - max(u.lo, t.lo)
                    if ov > 0:
                        edges.append((u.id, t.id, ov * plan.mult))
            continue
        for syn, lo, hi in t.inputs:
            i = by_syn[syn]
            scale = 1.0 / i.pre_size if i.one_hot else 1.0
            connect(i.pre, lo, hi, t.id, scale)
        if plan.cls != "neurocore":  # relay/partial currents → the embedded core or host
            node = ("host", t.pop) if plan.cls == "host" else ("emb", t.pop)
            edges.append((t.id, node, t.hi - t.lo))
    for h in ng.heads:
        for tid in plans[h.slots].tiles:  # k writes into every slot tile (q reads via K's input)
            t = tiles[tid]
            if t.kind in ("slots", "partial"):
                connect(h.k, 0, ng.pop(h.k).size, t.id)
        for tid in plans[h.out].tiles:  # v is the third factor of the neurons holding V
            t = tiles[tid]
            if any(syn == h.v_syn for syn, _, _ in t.inputs):
                connect(h.v, t.lo, t.hi, t.id)
    return edges


# -- chips ------------------------------------------------------------------------------------------

def _assign_chips(n_cores: int, core_edges: dict, t: Target, budget_s: float = 20.0) -> list[int]:
    cpc = t.cores_per_chip
    chip = [c // cpc for c in range(n_cores)]
    n_chips = -(-n_cores // cpc) if n_cores else 0
    if n_chips < 2:
        return chip
    g = nx.Graph()
    g.add_nodes_from(range(n_cores))
    for (a, b), w in core_edges.items():
        if a != b:
            if g.has_edge(a, b):
                g[a][b]["w"] += w
            else:
                g.add_edge(a, b, w=w)
    t0 = time.perf_counter()
    from networkx.algorithms.community import kernighan_lin_bisection

    def cut(A, B):
        return sum(d["w"] for u, v, d in g.edges(A, data=True) if v in B)

    for _sweep in range(2):
        improved = False
        for c in range(n_chips - 1):
            if time.perf_counter() - t0 > budget_s:
                return chip
            A = {i for i in range(n_cores) if chip[i] == c}
            B = {i for i in range(n_cores) if chip[i] == c + 1}
            sub = g.subgraph(A | B)
            if sub.number_of_edges() == 0:
                continue
            before = cut(A, B)
            if before == 0:
                continue
            A2, B2 = kernighan_lin_bisection(sub, partition=(A, B), max_iter=10, weight="w", seed=0)
            if len(A2) == len(A) and cut(A2, B2) < before - 1e-9:
                for i in A2:
                    chip[i] = c
                for i in B2:
                    chip[i] = c + 1
                improved = True
        if not improved:
            break
    return chip


# -- the pass -------------------------------------------------------------------------------------

def _plan(ng: NeuroGraph, t: Target) -> _Planner:
    return _Planner(ng, t).run()


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
    for (a, b), w in core_edges.items():
        per_core_out[a] += w if a != b else 0.0
        if chip[a] != chip[b]:
            inter += w
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


# -- the executable split graph --------------------------------------------------------------------

def split_graph(ng: NeuroGraph, target=None) -> NeuroGraph:
    """A copy of ``ng`` whose populations and synapse groups are tiled as the plan says.

    Exactness rules and the head restriction are in the module docstring.  The result passes
    ``verify_neuro``; its io, heads and output population keep their names.
    """
    t = as_target(target)
    pl = _plan(ng, t)
    fixed = ng.precision == "fixed"
    for h in ng.heads:  # the plastic K (slots) and V (out) synapses must each fit one core
        for name in (h.slots, h.out):
            plan = pl.plans[name]
            n_tiles = len(plan.tiles)
            if n_tiles > 1 or plan.chunks:
                raise CompileError(
                    f"attention head L{h.layer}H{h.head}: population {name} and its plastic "
                    f"synapses need {n_tiles} cores on this target; split_graph keeps each head "
                    f"whole (the emulator evaluates a head as one unit)",
                    hint="slot-axis splitting is modelled by partition() only; give the target "
                         "more neurons/synapse memory per core or reduce T_max")
    head_pops = pl.head_pops
    pieces: dict[str, list[tuple[str, int, int]]] = {}
    for p in ng.populations():
        plan = pl.plans[p.name]
        ranges = sorted({(a, b) for a, b, _ in plan.holders})
        if (plan.cls == "neurocore" and p.name not in head_pops and p.model in ("graded", "graded_relu")
                and len(ranges) > 1):
            pieces[p.name] = [(f"{p.name}#{i}", a, b) for i, (a, b) in enumerate(ranges)]
        else:
            pieces[p.name] = [(p.name, 0, p.size)]
    out = NeuroGraph(ng.precision)
    for k, v in ng.g.graph.items():
        if k not in ("precision",):
            out.g.graph[k] = copy.deepcopy(v)
    for p in ng.populations():
        for name, a, b in pieces[p.name]:
            if name == p.name:
                q = copy.deepcopy(p)
                q.attrs.pop("cores", None)  # placement annotations belong to the unsplit graph
                out.add_population(q)
                continue
            q = copy.deepcopy(p)
            q.name, q.size = name, b - a
            q.bias = None if p.bias is None else np.asarray(p.bias)[a:b].copy()
            q.attrs = {**copy.deepcopy(p.attrs), "split_of": p.name, "range": [a, b]}
            q.attrs.pop("cores", None)
            out.add_population(q)
    n_acc = 0
    acc_width: dict[str, int] = {}
    for s in ng.synapses():
        if s.plastic:
            out.add_synapses(copy.deepcopy(s))
            continue
        pre = ng.pop(s.pre)
        plan = pl.plans[s.post]
        inp = next(i for i in plan.ins if i.syn == s.name)
        # pre segments: the group's span (all of its pre neurons, or the pre_span of a group
        # that is itself a split segment) cut at the plan's chunk boundaries and the pre pieces
        if inp.hi <= inp.lo:  # an empty span (no synapses): one zero group from the first piece
            first = pieces[s.pre][0]
            segs = [(first[0], first[1], first[1], first[1])]
        else:
            cuts = {inp.lo, inp.hi}
            for ch in plan.chunks or ():
                for syn, lo, hi in ch:
                    if syn == s.name:
                        cuts.update((lo, hi))
            cuts.update(x for _, a, b in pieces[s.pre] for x in (a, b) if inp.lo < x < inp.hi)
            cuts = sorted(cuts)
            segs = []  # (pre piece name, piece lo, seg lo, seg hi)
            for lo, hi in zip(cuts, cuts[1:]):
                pname, pa, _ = next(x for x in pieces[s.pre] if x[1] <= lo < x[2])
                segs.append((pname, pa, lo, hi))
        one_hot = pre.one_hot
        direct = (not fixed) or s.exp >= 0 or one_hot or len(segs) == 1
        W = np.asarray(s.weights)
        if len(segs) == 1 and segs[0][0] == s.pre and pieces[s.post] == [(s.post, 0, W.shape[0])]:
            out.add_synapses(copy.deepcopy(s))  # nothing to cut
            continue
        for qname, qa, qb in pieces[s.post]:
            Wq = W[qa:qb]
            if direct:
                for pname, pa, lo, hi in segs:
                    _add_seg(out, s, pname, qname, Wq, pieces, s.pre, pa, lo, hi, s.exp,
                             f"{s.name}|{qname}|{lo}:{hi}" if (len(segs) > 1 or qname != s.post)
                             else s.name, qa, qb)
                continue
            # accumulators of at most one core's neurons each: the segments arrive unshifted
            # (e = 0, exact integers), the accumulator neuron applies the group's shift once
            # (q.shift: floor(Σ / 2^-e), the emulator's rounding-neuron rule) and an identity
            # group (e = 0) adds that exact floor(Σ m·s·2^e) to the post population's current
            qpop = ng.pop(s.post)
            # each accumulator is as wide as one tile of it holds, so that a split of the split
            # graph leaves it whole
            if s.name not in acc_width:
                units = [_In(f"seg{j}", pname, 0, 1, t.weight_bits, False, False, lo=lo - pa,
                             hi=hi - pa, whole=True) for j, (pname, pa, lo, hi) in enumerate(segs)]
                acc_width[s.name] = max(1, min(t.neurons_per_core,
                                               pl.holder_width(units, qpop.size) or qpop.size))
            step = acc_width[s.name]
            for sa in range(qa, qb, step):
                sb = min(qb, sa + step)
                n_acc += 1
                acc = f"{qname}.acc{n_acc}"
                out.add_population(Population(
                    name=acc, size=sb - sa, model="graded", layer=qpop.layer, placement="neurocore",
                    scale=float(qpop.q.in_scale if qpop.q is not None and qpop.q.in_scale
                                is not None else qpop.scale),
                    q=QuantParams(shift=-int(s.exp)),
                    attrs={"partial_sum_of": s.name, "range": [sa, sb]}))
                Ws = W[sa:sb]
                for pname, pa, lo, hi in segs:
                    _add_seg(out, s, pname, acc, Ws, pieces, s.pre, pa, lo, hi, 0,
                             f"{s.name}|{acc}|{lo}:{hi}", sa, sb)
                sel = np.zeros((qb - qa, sb - sa), dtype=W.dtype)
                sel[np.arange(sa - qa, sb - qa), np.arange(sb - sa)] = 1
                out.add_synapses(SynapseGroup(name=f"{s.name}|{acc}->{qname}", pre=acc, post=qname,
                                              weights=sel, exp=0, role="static",
                                              attrs={"split_of": s.name, "accumulated": True,
                                                     "post_range": [sa, sb]}))
    # keep the io contract: output and input populations were never split
    if ng.schedule:
        from .schedule import schedule

        schedule(out)
    verify_neuro(out)
    return out


def _add_seg(out, s, pname, post, Wq, pieces, pre_name, pa, lo, hi, exp, name, qa, qb):
    """One synapse group from pre piece ``pname`` (starting at pa) carrying columns [lo, hi)."""
    piece = next(x for x in pieces[pre_name] if x[0] == pname)
    width = piece[2] - piece[1]
    if lo == piece[1] and hi == piece[2]:
        w = np.array(Wq[:, lo:hi])
    else:  # a fan-in chunk inside a piece: the other columns are zero
        w = np.zeros((Wq.shape[0], width), dtype=Wq.dtype)
        w[:, lo - pa:hi - pa] = Wq[:, lo:hi]
    attrs = {**copy.deepcopy(s.attrs), "split_of": s.attrs.get("split_of", s.name),
             "pre_range": [lo, hi], "post_range": [qa, qb], "pre_span": [lo - pa, hi - pa]}
    out.add_synapses(SynapseGroup(name=name, pre=pname, post=post, weights=w, exp=exp,
                                  role="static", attrs=attrs))


# -- text and picture ------------------------------------------------------------------------------

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


def _color(i: int, n: int) -> str:
    import colorsys

    h = (i / max(n, 1)) * 0.85
    r, g, b = colorsys.hls_to_rgb(h, 0.55, 0.65)
    return f"#{int(r * 255):02x}{int(g * 255):02x}{int(b * 255):02x}"


def _esc(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def write_partition_picture(res: dict, path) -> None:
    """Write ``partition.svg``: cores as a grid per chip, coloured by layer, with a legend."""
    from pathlib import Path

    t = res["target"]
    rows = res["per_core"]
    cpc = t["cores_per_chip"]
    n_chips = max(res["chips_used"], 1)
    cols_c = 16 if cpc >= 16 else cpc
    rows_c = -(-cpc // cols_c)
    cell, gap, pad = 11, 1, 8
    chip_w = cols_c * (cell + gap) + 2 * pad
    chip_h = rows_c * (cell + gap) + 2 * pad + 12
    per_row = max(1, min(n_chips, math.ceil(math.sqrt(n_chips * 1.6))))
    grid_rows = -(-n_chips // per_row)
    layers = sorted({r["layer"] for r in rows}, key=_layer_key)
    colors = {ly: ("#555555" if ly is None else _color(i, len(layers))) for i, ly in enumerate(layers)}
    legend_h = 24 + 16 * (len(layers) + 4)
    width = max(per_row * (chip_w + 10) + 20, 520)
    height = grid_rows * (chip_h + 10) + legend_h + 60
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'font-family="sans-serif" font-size="11">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="10" y="18" font-size="14" font-weight="bold">{_esc(t["name"])}: '
           f'{res["cores_used"]} cores (lower bound {res["cores_lower_bound"]}), '
           f'{res["chips_used"]} chip(s), ≤ {res["interchip_spikes_per_token"]} inter-chip spikes/token</text>']
    by_chip: dict[int, dict[int, dict]] = {}
    for r in rows:
        by_chip.setdefault(r["chip"], {})
    # cores keep their order within each chip
    for r in rows:
        by_chip[r["chip"]][len(by_chip[r["chip"]])] = r
    y0 = 30
    for c in range(n_chips):
        gx, gy = c % per_row, c // per_row
        x = 10 + gx * (chip_w + 10)
        y = y0 + gy * (chip_h + 10)
        out.append(f'<rect x="{x}" y="{y}" width="{chip_w}" height="{chip_h}" fill="#f4f4f4" '
                   f'stroke="#222" stroke-width="2" rx="4"/>')
        out.append(f'<text x="{x + pad}" y="{y + 11}" font-size="10">chip {c}</text>')
        cores = by_chip.get(c, {})
        for slot in range(cpc):
            cx = x + pad + (slot % cols_c) * (cell + gap)
            cy = y + pad + 12 + (slot // cols_c) * (cell + gap)
            r = cores.get(slot)
            if r is None:
                out.append(f'<rect x="{cx}" y="{cy}" width="{cell}" height="{cell}" fill="#dddddd"/>')
                continue
            u = r["usage"]
            tip = (f"core {r['core']} (chip {r['chip']}) layer {r['layer']}: neurons "
                   f"{u['neurons']}%, synapse memory {u['synapse_memory']}%, fan-in {u['fan_in']}% — "
                   + ", ".join(r["what"]))
            fill = max(u["neurons"], u["synapse_memory"], u["fan_in"]) / 100
            out.append(f'<rect x="{cx}" y="{cy}" width="{cell}" height="{cell}" '
                       f'fill="{colors[r["layer"]]}" fill-opacity="{0.35 + 0.65 * min(fill, 1):.2f}">'
                       f'<title>{_esc(tip)}</title></rect>')
    ly = y0 + grid_rows * (chip_h + 10) + 10
    out.append(f'<text x="10" y="{ly}" font-weight="bold">legend</text>')
    items = [(colors[layer], "inputs/output (no layer)" if layer is None else f"layer {layer}")
             for layer in layers]
    items += [("#dddddd", "unused core"), ("none", "chip boundary")]
    for i, (col, label) in enumerate(items):
        yy = ly + 8 + 16 * i
        if col == "none":
            out.append(f'<rect x="10" y="{yy}" width="12" height="12" fill="none" stroke="#222" '
                       f'stroke-width="2"/>')
        else:
            out.append(f'<rect x="10" y="{yy}" width="12" height="12" fill="{col}"/>')
        out.append(f'<text x="28" y="{yy + 10}">{_esc(label)}</text>')
    yy = ly + 8 + 16 * len(items)
    out.append(f'<text x="10" y="{yy + 10}">opacity = fullest resource of the core; hover a core '
               f'for its contents. Embedded ops/token: {res["embedded_ops_per_token"]}, host ops/token: '
               f'{res["host_ops_per_token"]}</text>')
    out.append("</svg>")
    Path(path).write_text("\n".join(out))


def _run(m: Module, ctx: PassContext) -> str:
    res = ctx.report["resources"] = partition(m.neuro, ctx.target)
    return (f"{res['cores_used']} cores on {res['chips_used']} chip(s) "
            f"(lower bound {res['cores_lower_bound']})")


PASS = Pass("partition", ir="neuro", requires=("lower",), run=_run)
