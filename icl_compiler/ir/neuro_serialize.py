"""Save/load the neuromorphic IR: a JSON-able description plus named arrays (the program's
``program.json`` "neuro" entry and ``weights.npz``; format ``icl-program/2``, runtime/program.py).

Enumerations are written as their values, the quantiser's, the norm's and the activation's
parameters as their fields (norm gamma/beta and array annotations in the arrays), io and offcore as records.
"""
from __future__ import annotations

from dataclasses import asdict, fields

import numpy as np

from .neuro import (ActivationParams, HeadSpec, LearningRule, NeuroGraph, NormParams, OffcoreOp,
                    Population, ProgramIO, QuantParams, SynapseGroup)


def to_dict(ng: NeuroGraph) -> tuple[dict, dict[str, np.ndarray]]:
    """JSON-able description plus named arrays (weights, biases, norm parameters)."""
    arrays: dict[str, np.ndarray] = {}
    pops = []
    for p in ng.populations():
        d = dataclass_dict(p)
        if p.bias is not None:
            arrays[f"bias/{p.name}"] = np.asarray(p.bias)
        d["bias"] = p.bias is not None
        d["q"] = None if p.q is None else asdict(p.q)
        if p.norm is not None:
            arrays[f"norm/{p.name}/gamma"] = np.asarray(p.norm.gamma)
            arrays[f"norm/{p.name}/beta"] = np.asarray(p.norm.beta)
            d["norm"] = {"kind": p.norm.kind, "eps": p.norm.eps}
        d["act"] = None if p.act is None else asdict(p.act)
        d["attrs"] = _encode_attrs(p.attrs, arrays, f"pattr/{p.name}")
        pops.append(d)
    syns = []
    for s in ng.synapses():
        arrays[f"w/{s.name}"] = np.asarray(s.weights)
        d = {k: v for k, v in dataclass_dict(s).items() if k != "weights"}
        d["rule"] = None if s.rule is None else asdict(s.rule)
        d["attrs"] = _encode_attrs(s.attrs, arrays, f"sattr/{s.name}")
        syns.append(d)
    desc = {
        "precision": ng.precision,
        "populations": pops,
        "synapses": syns,
        "heads": [asdict(h) for h in ng.heads],
        "schedule": ng.schedule,
        "io": None if ng.io is None else asdict(ng.io),
        "offcore": [asdict(o) for o in ng.offcore],
    }
    return desc, arrays


def from_dict(desc: dict, arrays: dict[str, np.ndarray]) -> NeuroGraph:
    """The inverse of :func:`to_dict` (raises KeyError/TypeError/ValueError when corrupt)."""
    ng = NeuroGraph(desc["precision"])
    for d in desc["populations"]:
        d = dict(d)
        name = d["name"]
        d["bias"] = arrays[f"bias/{name}"] if d["bias"] else None
        d["q"] = None if d.get("q") is None else QuantParams(**d["q"])
        norm = d.get("norm")
        d["norm"] = None if norm is None else NormParams(
            norm["kind"], norm["eps"], arrays[f"norm/{name}/gamma"], arrays[f"norm/{name}/beta"])
        d["act"] = None if d.get("act") is None else ActivationParams(**d["act"])
        d["attrs"] = _decode_attrs(d["attrs"], arrays)
        ng.add_population(Population(**d))
    for d in desc["synapses"]:
        d = dict(d)
        d["weights"] = arrays[f"w/{d['name']}"]
        d["rule"] = LearningRule(**d["rule"]) if d["rule"] else None
        d["attrs"] = _decode_attrs(d["attrs"], arrays)
        ng.add_synapses(SynapseGroup(**d))
    ng._n_generated = len(ng._syns)
    ng.g.graph["heads"] = [HeadSpec(**h) for h in desc["heads"]]
    ng.g.graph["schedule"] = desc["schedule"]
    ng.io = None if desc.get("io") is None else ProgramIO(**desc["io"])
    ng.g.graph["offcore"] = [OffcoreOp(**o) for o in desc.get("offcore", [])]
    return ng


def dataclass_dict(obj) -> dict:
    """The fields of a dataclass as a flat dict (values as they are, no deep copy)."""
    return {f.name: getattr(obj, f.name) for f in fields(obj)}


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
