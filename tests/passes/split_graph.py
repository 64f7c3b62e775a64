"""``split_graph``: the partition plan applied to the graph, for the tests.

The partition pass (``icl_compiler/passes/partition``) only *models* the tiles; this helper
builds an executable graph whose populations and synapse groups are really cut as the plan says,
so that tests can check on the interpreter that the plan is exact (bit-identical in fixed point).
It lives in the tests because the compiler never runs the split graph.

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

import copy

import numpy as np

from icl_compiler.errors import CompileError
from icl_compiler.ir.neuro import NeuroGraph, Population, QuantParams, SynapseGroup, verify_neuro
from icl_compiler.passes.partition.tiling import _In, _plan
from icl_compiler.passes.schedule import schedule
from icl_compiler.targets.loihi2 import as_target


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
                                                     "post_range": [sa, sb]}, port=s.port))
    # keep the io contract: output and input populations were never split
    if ng.schedule:
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
                                  role="static", attrs=attrs,
                                  port=s.port if post == s.post else 0))
