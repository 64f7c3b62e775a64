"""Partition, tiling: each population cut into tiles that fit one core.

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
hardware-valid; the interpreter's :class:`HeadSpec` cannot express it yet, so ``split_graph``
keeps heads whole (see there).

Input axis of a population: its incoming groups in a canonical order (by the pre population's
position in the graph, then as connected), each over the pre neurons it has synapses from — all
of them, except for a group made by ``split_graph`` (the tests' helper that applies a plan,
``tests/passes/split_graph.py``), whose ``attrs["pre_span"]`` names the
segment it carries (its other columns are zero).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import networkx as nx

from ...errors import CompileError
from ...ir.neuro import NeuroGraph, Population
from ...ir.ops import ROW_NORMS
from ...semantics.fixed import k_lanes, v_lanes
from ...targets.loihi2 import Target
from .cost import _BLOCK, _packing_cost, _pre_span, dense_bits, learning_state_bits

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
        self.mults = {p: k_lanes(h.k_syn in res) for h in kv for p in (h.k, h.q)} | {
            h.out: v_lanes(True) for h in kv if h.k_syn in res}
        self.sign_split = set(self.mults)
        self.head_pops = {p for h in ng.heads for p in (h.k, h.q, h.v, h.slots, h.out)}
        self.k_syns = {h.k_syn: k_lanes(h.k_syn in res) for h in kv}
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
        rowsum = h is not None and h.normalise in ROW_NORMS
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
        or when its input axis must be chunked, a sum tile (what ``split_graph`` uses to
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


def _plan(ng: NeuroGraph, t: Target) -> _Planner:
    return _Planner(ng, t).run()
