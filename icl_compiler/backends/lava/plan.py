"""The Lava network a program becomes, as plain data (no Lava import; ``network.py`` builds it).

Processes (each one Lava process = one OS process in ``Loihi2SimCfg``):

* ``source`` — a ``RingBuffer`` source carrying every input population (token one-hot, position
  one-hot, features), concatenated; token t of a sequence enters at step ``S·t``.
* ``core`` (``layout="merged"``, the default) — one
  :class:`~procs.core_neuron.process.CoreNeurons` hosting every graded population and every
  head's k/q, slot and value neurons (what ``graded``, ``kq``, ``slots`` and ``value`` below
  host in the separate layout, with the same code).
* ``graded`` — one :class:`~procs.graded_neuron.process.GradedNeurons` hosting every static graded
  population (graded, graded_relu, output, activation, product) as a unit; a product unit has
  two operands, ``cur`` (port 0 of the graph, with the bias) and ``b`` (port 1).
* ``embedded`` — one :class:`~procs.embedded_op.process.EmbeddedOps` hosting every norm population
  and every row-sum divide (present only if the program has them).
* per plastic head ``L{l}H{h}``: ``.K`` (``LearningDense``, Loihi2FLearningRule; float:
  ``FloatPlasticDense``) and ``.V`` (``LearningDense``, Loihi3FLearningRule; float:
  ``FloatPlasticDense``);
* per group of up to ``MAX_HEADS`` heads: ``kq{g}`` (:class:`KQNeuron`: the heads' k and q
  populations, sign-split payloads, one output port per head), ``slots{g}``
  (:class:`SlotNeuron`), ``value{g}`` (:class:`ValueNeuron`: the heads' v populations and
  outputs).  Hosting all heads in one process of each kind keeps the number of Lava processes
  (= OS processes, each adding per-step synchronisation) small: it grows with the heads only by
  the two plastic synapse groups per head.
* ``Dense`` processes for the static synapse groups: one ``Dense`` per (pre process, post process,
  exponent; with ``exp_in="neuron"``, the default, per (pre process, post process)) carries all
  such groups, each group in rows of its own (Lava floors and wraps each
  Dense row's sum; the emulator each group's, so two groups onto the same population — residual
  sums, the ``:lo`` half of 16-bit weights — must not share rows: they are separate dendritic
  rows that the post neuron adds).  Each ``Dense`` feeds its own numbered input port of the post
  process.
* ``sink`` — a ``RingBuffer`` sink on the output population.

Timing (``semantics/timing.py``): population P fires at step τ(P) of every token; an input
arriving over a group from P' is read ``τ(P) − τ(P') − 1`` steps after it arrived (delay line).

Measured on the few-shot model (``bench/lava.py``): 30 Lava processes in the layout before
issue 15 (separate, exponents in the Dense), 19 with the exponents in the neurons, 13 merged;
the per-step CPU of all processes falls from ~23 to ~15 ms, of which the 8 LearningDense
processes take ~10.5 (their stock learning engine runs every step: every step writes K of one
layer or V of another, so no learning phase can be skipped).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ...ir.neuro import NeuroGraph, QuantParams
from ...ir.ops import ROW_NORMS
from ...semantics import fixed as fx
from ...semantics.timing import STEPS_PER_TOKEN, sequence_steps, timing
from .units import MAX_HEADS

BANK_MODELS = ("graded", "graded_relu", "output", "activation", "product")


@dataclass
class ProcSpec:
    name: str
    kind: str  # source | graded | embedded | kq | slots | value | k_syn | v_syn | sink
    size: int = 0  # length of the process's output vector (s_out / a_out)
    bank: dict | None = None
    params: dict = field(default_factory=dict)


@dataclass
class DenseSpec:
    name: str
    pre: str  # process names
    post: str
    port: int
    weights: np.ndarray  # [rows, pre process output size]; fixed: int8 mantissas
    exp: int
    groups: list[str]


@dataclass
class DirectSpec:
    pre: str
    pre_port: str  # output port of the pre process
    post: str
    port: int
    what: str


@dataclass
class Plan:
    fixed: bool
    S: int
    T: int
    L: int  # steps per sequence
    depth: int  # τ(output): steps from a token's input to its output
    procs: dict[str, ProcSpec]
    dense: list[DenseSpec]
    direct: list[DirectSpec]
    inputs: list[tuple[str, int, int]]  # (input population, offset, size) in the source vector
    output: tuple[str, int, int]  # (process, first row, end row) of the output population
    heads: list[dict]
    tau: dict[str, int]
    layout: str = "separate"
    exp_in: str = "dense"

    def counts(self) -> dict[str, int]:
        kinds = {"source": "RingBuffer(source)", "sink": "RingBuffer(sink)",
                 "graded": "GradedNeurons", "core": "CoreNeurons", "embedded": "EmbeddedOps", "kq": "KQNeuron",
                 "slots": "SlotNeuron", "value": "ValueNeuron",
                 "k_syn": "LearningDense" if self.fixed else "FloatPlasticDense",
                 "v_syn": "LearningDense" if self.fixed else "FloatPlasticDense"}
        c: dict[str, int] = {}
        for p in self.procs.values():
            c[kinds[p.kind]] = c.get(kinds[p.kind], 0) + 1
        c["Dense"] = len(self.dense)
        return c

    @property
    def n_processes(self) -> int:
        return len(self.procs) + len(self.dense)


class PlanError(NotImplementedError):
    """The graph uses something the Lava backend does not map (the message says what)."""


def _head_name(h) -> str:
    return f"L{h.layer}H{h.head}"


EXP_IN = ("dense", "neuron")
LAYOUTS = ("separate", "merged")
DEFAULT_EXP_IN = "neuron"  # measured faster than "dense" (bench/lava.py), bit-identical
DEFAULT_LAYOUT = "merged"


def build_plan(ng: NeuroGraph, T: int | None, exp_in: str = DEFAULT_EXP_IN,
               layout: str = DEFAULT_LAYOUT, period: int | None = None) -> Plan:
    """Plan the Lava network of ``ng`` for sequences of ``T`` tokens (see the module docstring).

    ``exp_in``: where a fixed-point group's exponent is applied.  "neuron" (default): every
    ``Dense`` has ``weight_exp = 0`` (it delivers the int32 sum ``Σ 2m·s``) and the post neuron
    shifts each group's rows by ``e − 1`` (``fixed.shift``: bit-identical, the same int32 wrap
    then the same shift), so one ``Dense`` per (pre process, post process) suffices.  "dense":
    in the ``Dense`` (``weight_exp = e − 1``, ``fixed.to_lava_dense_params``), so groups with
    different exponents need different ``Dense`` processes (the layout before issue 15).

    ``layout``: "merged" (default, up to ``MAX_HEADS`` heads): one :class:`CoreNeurons` process
    hosts every graded population and every head's k/q, slot and value neurons, so the static
    synapses need one ``Dense`` from the source and one from the core back to itself (and the
    embedded ops, if any); "separate": GradedNeurons, KQNeuron, SlotNeuron and ValueNeuron
    processes (the layout before issue 15).  Both compute the same numbers: the neuron code is
    shared (``units.Bank``, ``units.slot_step``, ``units.value_step``).

    ``period``: steps per token (default ``STEPS_PER_TOKEN`` = 2, pipelined).  A stream that must
    return each token's output before it gets the next one uses ``pipeline_depth + 1``
    (``stream.py``); ``T = None`` then plans one unbounded stream.
    """
    if exp_in not in EXP_IN:
        raise ValueError(f"exp_in must be one of {EXP_IN}, got {exp_in!r}")
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    fixed = ng.precision == "fixed"
    neuron_exp = fixed and exp_in == "neuron"
    if not ng.heads:
        raise PlanError("the Lava backend maps programs with plastic attention heads only")
    if layout == "merged" and len(ng.heads) > MAX_HEADS:
        layout = "separate"  # one CoreNeurons process has ports for MAX_HEADS heads
    for h in ng.heads:
        if h.lowering != "kv_slot":
            raise PlanError(f"head L{h.layer}H{h.head}: the {h.lowering!r} lowering has no Lava "
                            "mapping (it is a float emulator option); compile with "
                            "lowering='kv_slot'")
        if ng.syn(h.k_syn).exp != 0:
            raise PlanError(f"head L{h.layer}H{h.head}: K synapses with exponent "
                            f"{ng.syn(h.k_syn).exp} (the emulator reads K with exponent 0)")
    tau, anchors = timing(ng)
    out_pop = ng.io.output_pop
    depth = tau[out_pop]
    S = STEPS_PER_TOKEN if period is None else int(period)
    if S < STEPS_PER_TOKEN:
        raise ValueError(f"period must be at least {STEPS_PER_TOKEN} steps per token")
    L = 0 if T is None else sequence_steps(T, depth, S)
    merged = layout == "merged"
    procs: dict[str, ProcSpec] = {}
    loc_out: dict[str, tuple[str, int]] = {}  # population -> (process, offset) in its output
    loc_in: dict[str, tuple[str, dict]] = {}  # population -> (process, unit) it integrates in

    def bank(fixed_: bool) -> dict:
        return {"fixed": fixed_, "S": S, "T": T, "L": L, "ports": [], "units": [], "out_size": 0}

    def unit(b: dict, name: str, kind: str, pop, tau_u: int, out: tuple[int, int] | None,
             **kw) -> dict:
        u = {"name": name, "kind": kind, "size": pop.size if pop is not None else 0,
             "tau": tau_u, "out": out, "pop": pop, "operands": {}, **kw}
        b["units"].append(u)
        return u

    head_pops = {}
    for h in ng.heads:
        for role in ("k", "q", "v", "slots", "out"):
            head_pops[getattr(h, role)] = (h, role)

    # -- input source ------------------------------------------------------------------------
    inputs, off = [], 0
    for p in ng.populations():
        if p.model == "input":
            inputs.append((p.name, off, p.size))
            loc_out[p.name] = ("source", off)
            off += p.size
    procs["source"] = ProcSpec("source", "source", off)

    # -- static banks ----------------------------------------------------------------------------
    gb, eb = bank(fixed), bank(fixed)
    gname = "core" if merged else "graded"
    for p in ng.populations():
        if p.model == "input" or p.name in head_pops:
            continue
        if p.model in BANK_MODELS:
            b, proc = gb, gname
        elif p.model == "norm":
            b, proc = eb, "embedded"
        else:
            raise PlanError(f"population {p.name}: model {p.model!r} outside an attention head "
                            "has no Lava mapping")
        o = b["out_size"]
        u = unit(b, p.name, p.model, p, tau[p.name], (o, o + p.size))
        b["out_size"] = o + p.size
        loc_out[p.name] = (proc, o)
        loc_in[p.name] = (proc, u)
    if out_pop not in loc_out or loc_out[out_pop][0] != gname:
        raise PlanError(f"the output population {out_pop} must be a graded/output population")
    o = loc_out[out_pop][1]
    gb["y"] = (o, o + ng.pop(out_pop).size)
    if not merged:
        procs["graded"] = ProcSpec("graded", "graded", gb["out_size"], gb)

    # -- heads: KQNeuron / SlotNeuron / ValueNeuron per group of ≤ MAX_HEADS heads -----------------
    heads: list[dict] = []
    direct: list[DirectSpec] = []
    n_groups = -(-len(ng.heads) // MAX_HEADS)
    for g in range(n_groups):
        members = list(zip(ng.heads, anchors))[g * MAX_HEADS:(g + 1) * MAX_HEADS]
        if merged:
            kq_name = sl_name = va_name = "core"
            kb = vb = gb
        else:
            kq_name, sl_name, va_name = f"kq{g}", f"slots{g}", f"value{g}"
            kb, vb = bank(fixed), bank(fixed)
        kq_rows, slot_heads, value_heads = [], [], []
        for i, (h, A) in enumerate(members):
            name = _head_name(h)
            d, dv = ng.pop(h.k).size, ng.pop(h.v).size
            res = fixed and h.kv_bits == 16  # high and low plastic synapses (fixed.kv_split)
            width = fx.k_lanes(res) * d if fixed else d
            if merged:  # the core sends k/q on its kq ports, not in s_out
                rows, r0 = None, 0
            else:
                r0 = kb["out_size"]
                kb["out_size"] = r0 + width
                rows = (r0, r0 + width)
            kq_rows.append((r0, r0 + width))
            loc_in[h.k] = (kq_name, unit(kb, f"k{i}", "k", ng.pop(h.k), A, rows, residual=res))
            loc_in[h.q] = (kq_name, unit(kb, f"q{i}", "q", ng.pop(h.q), A + 1, rows,
                                         residual=res))
            loc_in[h.v] = (va_name, unit(vb, f"v{i}", "v", ng.pop(h.v), A + 1, None))
            procs[f"{name}.K"] = ProcSpec(f"{name}.K", "k_syn", h.t_max,
                                          params={"shape": (h.t_max, width), "weight_exp": 0})
            sq = ng.pop(h.slots).q or QuantParams()
            slot_heads.append({"size": h.t_max, "f": h.f, "r": int(sq.r), "r2": int(sq.r2),
                               "scale": 1.0 if fixed else float(h.scale), "onehot": 1,
                               "anchor": A, "tokens": T, "seq_len": L, "clear": True,
                               "period": S})
            rowsum = h.normalise in ROW_NORMS
            oq = ng.pop(h.out).q or QuantParams()
            v_exp = 0 if (rowsum or not fixed) else int(oq.e_v)
            vrows = fx.v_lanes(res) * dv  # 16-bit V: high rows, then low rows
            procs[f"{name}.V"] = ProcSpec(f"{name}.V", "v_syn", vrows,
                                          params={"shape": (vrows, h.t_max), "weight_exp": v_exp})
            o = vb["out_size"]
            vb["out_size"] = o + dv
            value_heads.append({"size": vrows, "out": (o, o + dv), "anchor": A, "tokens": T,
                                "seq_len": L, "clear": True, "raw": rowsum, "residual": res,
                                "period": S})
            if rowsum:
                e0 = eb["out_size"]
                du = unit(eb, h.out, "divide", ng.pop(h.out), A + 3, (e0, e0 + dv),
                          sizes={"acc": dv, "a": h.t_max},
                          divide={"s_v": oq.s_v, "s_a": oq.s_a, "eps": h.eps, "norm": h.normalise,
                                  "scale": ng.pop(h.out).scale})
                eb["out_size"] = e0 + dv
                loc_out[h.out] = ("embedded", e0)
                # direct inputs (no Dense): the raw accumulator in the same step, the slot
                # outputs one step earlier
                pa = len(eb["ports"])
                du["operands"]["acc"] = [(pa, o, o + dv, 0)]
                direct.append(DirectSpec(va_name, "s_out", "embedded", pa, "acc"))
                eb["ports"].append(None)  # sized below: the whole ValueNeuron output
                pb = len(eb["ports"])
                du["operands"]["a"] = [(pb, 0, h.t_max, 1)]
                direct.append(DirectSpec(sl_name, f"s{i}", "embedded", pb, "a"))
                eb["ports"].append(h.t_max)
            else:
                loc_out[h.out] = (va_name, o)
            heads.append({"name": name, "spec": h, "anchor": A, "rowsum": rowsum, "group": g,
                          "index": i, "kq": kq_name, "slots": sl_name, "value": va_name,
                          "k_in": "ka" if merged else "a", "v_in": "va" if merged else "a"})
        if merged:
            core_heads = [{"kq": (r0, r1), "width": r1 - r0, "slot": sh, "value": vh}
                          for (r0, r1), sh, vh in zip(kq_rows, slot_heads, value_heads)]
            procs["core"] = ProcSpec("core", "core", 0, gb, params={"heads": core_heads})
        else:
            procs[kq_name] = ProcSpec(kq_name, "kq", kb["out_size"], kb,
                                      params={"heads": kq_rows})
            procs[sl_name] = ProcSpec(sl_name, "slots", 0, params={"heads": slot_heads})
            procs[va_name] = ProcSpec(va_name, "value", vb["out_size"], vb,
                                      params={"heads": value_heads})
    if merged:
        procs["core"].size = gb["out_size"]
    for c in direct:
        if c.what == "acc":
            eb["ports"][c.port] = procs[c.pre].size
    if eb["units"]:
        procs["embedded"] = ProcSpec("embedded", "embedded", eb["out_size"], eb)

    # -- static synapse groups → Dense ----------------------------------------------------------
    bins: dict[tuple, list] = {}
    for s in ng.synapses():
        if s.role != "static":
            continue
        if s.pre not in loc_out:
            raise PlanError(f"synapses {s.name}: pre population {s.pre} is internal to an "
                            "attention head and cannot feed static synapses on Lava")
        if s.post not in loc_in:
            raise PlanError(f"synapses {s.name}: post population {s.post} cannot receive static "
                            "synapses on Lava")
        pre_proc = loc_out[s.pre][0]
        post_proc, u = loc_in[s.post]
        key_exp = 1 if neuron_exp else (int(s.exp) if fixed else 0)  # 1: weight_exp 0
        bins.setdefault((pre_proc, post_proc, key_exp), []).append((s, u))

    dense: list[DenseSpec] = []
    for (pre_proc, post_proc, exp), groups in bins.items():
        post_bank = procs[post_proc].bank
        pre_size = procs[pre_proc].size
        rows = sum(u["size"] for _, u in groups)
        W = np.zeros((rows, pre_size), np.int64 if fixed else np.float64)
        port = len(post_bank["ports"])
        r = 0
        for s, u in groups:
            off = loc_out[s.pre][1]
            W[r:r + u["size"], off:off + ng.pop(s.pre).size] = s.weights
            delay = u["tau"] - tau[s.pre] - 1
            if delay < 0:
                raise PlanError(f"synapses {s.name}: negative delay {delay} (schedule bug)")
            contrib = (port, r, r + u["size"], delay) + ((int(s.exp) - 1,) if neuron_exp else ())
            u["operands"].setdefault("b" if s.port == 1 else "cur", []).append(contrib)
            r += u["size"]
        post_bank["ports"].append(rows)
        dense.append(DenseSpec(f"D{len(dense)}:{pre_proc}->{post_proc}", pre_proc, post_proc,
                               port, W, exp, [s.name for s, _ in groups]))

    return Plan(fixed=fixed, S=S, T=T, L=L, depth=depth, procs=procs, dense=dense, direct=direct,
                inputs=inputs, output=(gname, *gb["y"]), heads=heads, tau=tau, layout=layout,
                exp_in=exp_in if fixed else "dense")
