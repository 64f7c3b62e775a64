"""Neuromorphic IR: populations of neurons joined by synapse groups, on a networkx MultiDiGraph.

Nodes are populations (node attribute ``pop``), edges are synapse groups (edge key = synapse
name, edge attribute ``syn``).  The graph attribute ``schedule`` holds the token schedule and
``heads`` lists the plastic attention heads (which populations and synapses form each head).

Semantics per token (both backends implement exactly this; DESIGN §4-5):

* A population's input current is the sum over its incoming *static* synapse groups of
  ``W @ pre`` plus its ``bias``; its output is its neuron model applied to that current.
* Plastic attention heads are evaluated as one unit, in this order for token t:
  1. write: the ``k`` population's value is written into row t of the K synapses
     (two-factor rule, sign-split encoding in fixed mode);
  2. write: the ``v`` population's value (third factor) is written into column t of the V
     synapses (three-factor rule);
  3. read: the ``q`` population's value drives the K synapses, slot s receives k_s·q;
     slots apply ``f``; the V synapses give ``out = V @ f(scores)``;
  4. optional normalisation: ``out / (sum_s f(score_s) + eps)`` on an embedded core.
  Unwritten slots hold 0, which makes the attention causal (f(0) = 0 for every supported f).

Fixed mode: weights are int mantissas with a per-group exponent; population values are integer
payloads, real value = payload * ``scale``.  Float mode: weights and values are float64.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

import networkx as nx
import numpy as np

NEURON_MODELS = {
    "input": "external input of the token (features, or one-hot token id)",
    "graded": "graded identity neuron: out = current",
    "graded_relu": "graded ReLU neuron: out = max(current, 0)",
    "slot": "attention slot neuron applying f (identity | relu | relu2), gated in the write step",
    "norm": "LayerNorm/RMSNorm statistics and affine (embedded core)",
    "divide": "attention normalisation by the row sum (embedded core)",
    "output": "program output, dequantised on the host",
}
PLACEMENTS = ("neurocore", "embedded", "host")
# Off-core models must sit on an embedded core or the host.
OFFCORE_MODELS = {"norm", "divide"}


@dataclass
class LearningRule:
    """A plastic synapse rule and its Lava 0.10 form (DESIGN §4)."""

    kind: str  # "k_write" (two-factor) | "v_write" (three-factor)
    lava_class: str  # Loihi2FLearningRule | Loihi3FLearningRule
    dw: str
    params: dict[str, Any] = field(default_factory=dict)


K_WRITE_RULE = LearningRule(
    kind="k_write",
    lava_class="Loihi2FLearningRule",
    dw="y0 * x0 * x1 - y0 * w",
    params={"t_epoch": 1, "encoding": "sign_split", "range": [-127, 127]},
)
V_WRITE_RULE = LearningRule(
    kind="v_write",
    lava_class="Loihi3FLearningRule",
    dw="x0 * y1 * y2 - x0 * y3 * w",
    params={"t_epoch": 1, "y2": 8, "y3": 32, "range": [-128, 127]},
)


@dataclass
class Population:
    name: str
    size: int
    model: str
    layer: int | None = None
    placement: str = "neurocore"
    threshold: float = 0.0
    scale: float = 1.0  # fixed mode: real value = payload * scale
    bias: np.ndarray | None = None  # float (float mode) or int (fixed mode) per neuron
    attrs: dict[str, Any] = field(default_factory=dict)


@dataclass
class SynapseGroup:
    name: str
    pre: str
    post: str
    weights: np.ndarray  # [post, pre]; float64 (float mode) or int mantissa (fixed mode)
    exp: int = 0  # fixed mode: effective weight = mantissa * 2**exp
    rule: LearningRule | None = None
    role: str = "static"  # static | k | v | rowsum
    attrs: dict[str, Any] = field(default_factory=dict)

    @property
    def plastic(self) -> bool:
        return self.rule is not None


@dataclass
class HeadSpec:
    """Populations and synapses of one plastic attention head (DESIGN §4, KV-slot lowering)."""

    layer: int
    head: int
    k: str  # population holding k_t (written into the K synapses)
    q: str  # population holding q_t (reads the K synapses)
    v: str  # population holding v_t (third factor of the V write)
    slots: str  # T_max slot neurons applying f
    out: str  # d_v value neurons (the head output)
    k_syn: str
    v_syn: str
    f: str
    scale: float
    t_max: int
    normalise: str = "none"  # none | rowsum
    eps: float = 0.0
    lowering: str = "kv_slot"  # kv_slot | fast_weight
    # fixed mode: 8 = one int8 plastic synapse per K/V entry; 16 = a high and a low one
    # (x = hi·2^7 + lo, semantics/fixed.py: kv_split); set by the quantiser
    kv_bits: int = 8


class NeuroGraph:
    """Populations + synapse groups + schedule, stored in a networkx MultiDiGraph."""

    def __init__(self, precision: str = "float"):
        self.g = nx.MultiDiGraph(precision=precision, schedule={}, heads=[])

    # -- construction --------------------------------------------------------------------
    @property
    def precision(self) -> str:
        return self.g.graph["precision"]

    @property
    def heads(self) -> list[HeadSpec]:
        return self.g.graph["heads"]

    @property
    def schedule(self) -> dict:
        return self.g.graph["schedule"]

    def add_population(self, pop: Population) -> Population:
        if pop.name in self.g:
            raise ValueError(f"duplicate population {pop.name!r}")
        self.g.add_node(pop.name, pop=pop)
        return pop

    def add_synapses(self, syn: SynapseGroup) -> SynapseGroup:
        for end in (syn.pre, syn.post):
            if end not in self.g:
                raise ValueError(f"synapse group {syn.name!r} refers to unknown population {end!r}")
        self.g.add_edge(syn.pre, syn.post, key=syn.name, syn=syn)
        return syn

    def pop(self, name: str) -> Population:
        return self.g.nodes[name]["pop"]

    def populations(self) -> list[Population]:
        return [d["pop"] for _, d in self.g.nodes(data=True)]

    def synapses(self) -> list[SynapseGroup]:
        return [d["syn"] for _, _, d in self.g.edges(data=True)]

    def syn(self, name: str) -> SynapseGroup:
        for s in self.synapses():
            if s.name == name:
                return s
        raise KeyError(name)

    def incoming(self, pop_name: str) -> list[SynapseGroup]:
        return [d["syn"] for _, _, d in self.g.in_edges(pop_name, data=True)]

    def static_order(self) -> list[str]:
        """Population evaluation order within a token: topological over static synapses.

        Plastic K/V synapses are excluded: the attention protocol orders them (see module doc).
        The head's ``out`` population depends on its ``k``, ``q`` and ``v`` populations.
        """
        dep = nx.DiGraph()
        dep.add_nodes_from(self.g.nodes)
        for s in self.synapses():
            if s.role == "static":
                dep.add_edge(s.pre, s.post)
        for h in self.heads:
            for src in (h.k, h.q, h.v):
                dep.add_edge(src, h.out)
            dep.add_edge(h.slots, h.out)
        return list(nx.lexicographical_topological_sort(dep))

    # -- text -----------------------------------------------------------------------------
    def to_text(self) -> str:
        lines = [f"neuro graph ({self.precision})"]
        for p in self.populations():
            extra = "".join(f" {k}={v}" for k, v in sorted(p.attrs.items()) if _printable(v))
            lines.append(
                f"  pop {p.name}[{p.size}] {p.model} @{p.placement}"
                f"{'' if p.layer is None else f' layer={p.layer}'} scale={p.scale:g}{extra}"
            )
        for s in self.synapses():
            w = np.asarray(s.weights)
            rule = f" rule={s.rule.kind}" if s.rule else ""
            exp = f" exp={s.exp}" if self.precision == "fixed" else ""
            lines.append(f"  syn {s.name}: {s.pre} -> {s.post} {list(w.shape)} {s.role}{exp}{rule}")
        for h in self.heads:
            lines.append(
                f"  head L{h.layer}H{h.head}: k={h.k} q={h.q} v={h.v} slots={h.slots}[{h.t_max}]"
                f" out={h.out} f={h.f} scale={h.scale:g} norm={h.normalise} lowering={h.lowering}"
                + (f" kv_bits={h.kv_bits}" if h.kv_bits != 8 else "")
            )
        if self.schedule:
            lines.append(f"  schedule {json.dumps(self.schedule, sort_keys=True)}")
        return "\n".join(lines)

    # -- persistence ------------------------------------------------------------------------
    def to_dict(self) -> tuple[dict, dict[str, np.ndarray]]:
        """JSON-able description plus named arrays (weights, biases)."""
        arrays: dict[str, np.ndarray] = {}
        pops = []
        for p in self.populations():
            d = asdict(p)
            if p.bias is not None:
                arrays[f"bias/{p.name}"] = np.asarray(p.bias)
            d["bias"] = p.bias is not None
            d["attrs"] = _encode_attrs(p.attrs, arrays, f"pattr/{p.name}")
            pops.append(d)
        syns = []
        for s in self.synapses():
            arrays[f"w/{s.name}"] = np.asarray(s.weights)
            d = {k: v for k, v in asdict(s).items() if k != "weights"}
            d["attrs"] = _encode_attrs(s.attrs, arrays, f"sattr/{s.name}")
            syns.append(d)
        desc = {
            "precision": self.precision,
            "populations": pops,
            "synapses": syns,
            "heads": [asdict(h) for h in self.heads],
            "schedule": self.schedule,
        }
        return desc, arrays

    @classmethod
    def from_dict(cls, desc: dict, arrays: dict[str, np.ndarray]) -> NeuroGraph:
        ng = cls(desc["precision"])
        for d in desc["populations"]:
            d = dict(d)
            d["bias"] = arrays[f"bias/{d['name']}"] if d["bias"] else None
            d["attrs"] = _decode_attrs(d["attrs"], arrays)
            ng.add_population(Population(**d))
        for d in desc["synapses"]:
            d = dict(d)
            d["weights"] = arrays[f"w/{d['name']}"]
            d["rule"] = LearningRule(**d["rule"]) if d["rule"] else None
            d["attrs"] = _decode_attrs(d["attrs"], arrays)
            ng.add_synapses(SynapseGroup(**d))
        ng.g.graph["heads"] = [HeadSpec(**h) for h in desc["heads"]]
        ng.g.graph["schedule"] = desc["schedule"]
        return ng


def _printable(v: Any) -> bool:
    return isinstance(v, (int, float, str, bool)) and not (isinstance(v, str) and len(v) > 40)


def _encode_attrs(attrs: dict, arrays: dict, prefix: str) -> dict:
    out = {}
    for k, v in attrs.items():
        if isinstance(v, np.ndarray):
            arrays[f"{prefix}/{k}"] = v
            out[k] = {"__array__": f"{prefix}/{k}"}
        else:
            out[k] = v
    return out


def _decode_attrs(attrs: dict, arrays: dict) -> dict:
    return {
        k: arrays[v["__array__"]] if isinstance(v, dict) and "__array__" in v else v
        for k, v in attrs.items()
    }


class NeuroVerifyError(Exception):
    pass


def verify_neuro(ng: NeuroGraph) -> None:
    """Check the neuromorphic graph's invariants; raise NeuroVerifyError on the first failure."""
    fixed = ng.precision == "fixed"
    for p in ng.populations():
        if p.model not in NEURON_MODELS:
            raise NeuroVerifyError(f"population {p.name}: unknown model {p.model!r}")
        if p.placement not in PLACEMENTS:
            raise NeuroVerifyError(f"population {p.name}: unknown placement {p.placement!r}")
        if p.model in OFFCORE_MODELS and p.placement == "neurocore":
            raise NeuroVerifyError(f"population {p.name}: {p.model} cannot run on a neurocore")
        if p.size <= 0:
            raise NeuroVerifyError(f"population {p.name}: size {p.size}")
        if p.bias is not None and np.shape(p.bias) != (p.size,):
            raise NeuroVerifyError(f"population {p.name}: bias shape {np.shape(p.bias)}")
    for s in ng.synapses():
        pre, post = ng.pop(s.pre), ng.pop(s.post)
        if np.shape(s.weights) != (post.size, pre.size):
            raise NeuroVerifyError(
                f"synapses {s.name}: weights {np.shape(s.weights)} != ({post.size}, {pre.size})"
            )
        if fixed and not s.plastic:
            w = np.asarray(s.weights)
            if not np.issubdtype(w.dtype, np.integer) or w.min(initial=0) < -128 or w.max(initial=0) > 127:
                raise NeuroVerifyError(f"synapses {s.name}: fixed-mode weights must be int8 mantissas")
        if s.plastic and s.role not in ("k", "v"):
            raise NeuroVerifyError(f"synapses {s.name}: plastic synapses must have role k or v")
    for h in ng.heads:
        for name in (h.k, h.q, h.v, h.slots, h.out):
            if name not in ng.g:
                raise NeuroVerifyError(f"head L{h.layer}H{h.head}: unknown population {name}")
        if h.kv_bits not in (8, 16) or (h.kv_bits == 16 and not fixed):
            raise NeuroVerifyError(f"head L{h.layer}H{h.head}: kv_bits {h.kv_bits} (8, or 16 in "
                                   "fixed mode)")
        if ng.pop(h.slots).size != h.t_max:
            raise NeuroVerifyError(f"head L{h.layer}H{h.head}: slots size != T_max {h.t_max}")
        ks, vs = ng.syn(h.k_syn), ng.syn(h.v_syn)
        if (ks.pre, ks.post, ks.role) != (h.q, h.slots, "k"):
            raise NeuroVerifyError(f"head L{h.layer}H{h.head}: K synapses must join q -> slots")
        if (vs.pre, vs.post, vs.role) != (h.slots, h.out, "v"):
            raise NeuroVerifyError(f"head L{h.layer}H{h.head}: V synapses must join slots -> out")
        if ng.pop(h.k).size != ng.pop(h.q).size or ng.pop(h.v).size != ng.pop(h.out).size:
            raise NeuroVerifyError(f"head L{h.layer}H{h.head}: k/q or v/out sizes differ")
    try:
        ng.static_order()
    except nx.NetworkXUnfeasible as e:
        raise NeuroVerifyError("static synapses form a cycle within a token") from e
