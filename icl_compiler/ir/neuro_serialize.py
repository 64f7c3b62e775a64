"""Save/load the neuromorphic IR: a JSON-able description plus named arrays (the program's
``program.json`` "neuro" entry and ``weights.npz``; format ``icl-program/2``, runtime/program.py).

Enumerations are written as their values, the quantiser's, the norm's and the activation's
parameters as their fields (norm gamma/beta and array annotations in the arrays), io and offcore as records.

Loading is the mirror of :func:`to_dict`, and it trusts nothing in the files:

* :func:`array_specs` reads the description and says which arrays ``weights.npz`` must hold, with
  their shapes (from the population sizes) and dtypes (from the precision); the bounded loader
  (``runtime/safeload.py``) checks every member against it *before* decompressing it;
* :func:`from_dict` checks every field of every record against the type the IR declares for it
  (``typing.get_type_hints`` of the dataclasses in ``ir/neuro.py``: ints are ints and bounded,
  floats finite, enumerations and literals from their lists, no unknown or missing field), every
  array against its spec and for finite values, and the references between records (a synapse's
  populations, a head's synapses, the io populations, the one-hot vocabulary).

Every problem is one :class:`ProgramFormatError` naming the file (``program.json`` or
``weights.npz``), the record and the field or array key; ``verify_neuro`` then checks the graph's
invariants.
"""
from __future__ import annotations

import dataclasses
import math
import types
from dataclasses import asdict, fields
from enum import Enum
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

import numpy as np

from . import layout
from .neuro import (ActivationParams, Encoding, HeadSpec, LearningRule, NeuroGraph, NeuronModel,
                    NormParams, OffcoreOp, Population, ProgramIO, QuantParams, SynapseGroup)

# Bounds of a loaded program (a file must not make the loader or a run allocate without limit).
MAX_POPULATION_SIZE = 2**24  # neurons of one population: 16 Loihi 2 chips' worth (2^20 each)
MAX_INT = 2**53  # any other integer field (exponents, shifts, payloads, layers)
MAX_ATTR_ARRAY_BYTES = 2**20  # an array annotation (attrs) of a population or synapse group
MAX_STRING = 4096  # a name or another string field
BOUND_KINDS = ("ones", "zeros", "arange", "file")  # how an auxiliary input was bound (io.bound)


class ProgramFormatError(ValueError):
    """A saved program's description or arrays are malformed; ``file`` is "program.json" or
    "weights.npz", ``key`` the array key (weights.npz) or None."""

    def __init__(self, reason: str, *, file: str = "program.json", key: str | None = None):
        self.reason, self.file, self.key = reason, file, key
        super().__init__(reason)


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
            d["norm"] = {"kind": p.norm.kind, "eps": p.norm.eps, "group": p.norm.group}
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


# -- loading: the arrays a description declares -----------------------------------------------------

Spec = tuple  # (shape or None, allowed dtype names, max bytes or None) = runtime.safeload.ArraySpec


def array_specs(desc: Any) -> dict[str, Spec]:
    """The arrays that :func:`to_dict` wrote for this description: ``{key: (shape, dtypes,
    max_bytes)}`` (shape None: an annotation array of at most ``max_bytes``).  Reads only the
    fields it needs, each checked; ProgramFormatError when they are malformed."""
    d = _obj(desc, "neuro")
    fixed = _literal(d.get("precision"), ("float", "fixed"), "neuro.precision") == "fixed"
    real = ("float64",)
    specs: dict[str, Spec] = {}
    size: dict[str, int] = {}
    for i, p in enumerate(_list(d.get("populations"), "neuro.populations")):
        where = f"populations[{i}]"
        p = _obj(p, where)
        name = _string(p.get("name"), f"{where}.name")
        if name in size:
            raise ProgramFormatError(f"{where}: duplicate population {name!r}")
        n = size[name] = _size(p.get("size"), f"{where}.size")
        if _bool(p.get("bias"), f"{where}.bias"):
            specs[f"bias/{name}"] = ((n,), ("int64",) if fixed else real, None)
        if p.get("norm") is not None:
            for k in ("gamma", "beta"):
                specs[f"norm/{name}/{k}"] = ((n,), real, None)
        _attr_specs(p.get("attrs"), f"pattr/{name}/", f"{where}.attrs", specs)
    names: set[str] = set()
    for i, s in enumerate(_list(d.get("synapses"), "neuro.synapses")):
        where = f"synapses[{i}]"
        s = _obj(s, where)
        name = _string(s.get("name"), f"{where}.name")
        if name in names:
            raise ProgramFormatError(f"{where}: duplicate synapse group {name!r}")
        names.add(name)
        ends = []
        for end in ("pre", "post"):
            pop = _string(s.get(end), f"{where}.{end}")
            if pop not in size:
                raise ProgramFormatError(f"{where} ({name}): unknown {end} population {pop!r}")
            ends.append(size[pop])
        plastic = s.get("rule") is not None
        dtype = ("int64" if plastic else "int8") if fixed else "float64"
        specs[f"w/{name}"] = ((ends[1], ends[0]), (dtype,), None)
        _attr_specs(s.get("attrs"), f"sattr/{name}/", f"{where}.attrs", specs)
    return specs


def _attr_specs(attrs: Any, prefix: str, where: str, specs: dict) -> None:
    for k, v in _obj(attrs, where).items():
        if isinstance(v, dict) and "__array__" in v:
            key = _string(v["__array__"], f"{where}.{k}")
            if key != prefix + k or key in specs:
                raise ProgramFormatError(f"{where}.{k}: array reference {key!r} (expected "
                                         f"{prefix + k!r})")
            specs[key] = (None, ("float64", "int64"), MAX_ATTR_ARRAY_BYTES)


# -- loading: the records -------------------------------------------------------------------------

def from_dict(desc: Any, arrays: dict[str, np.ndarray]) -> NeuroGraph:
    """The inverse of :func:`to_dict`, checking everything (see the module docstring); raises
    :class:`ProgramFormatError`."""
    specs = array_specs(desc)
    _check_arrays(specs, arrays)
    d = desc
    _keys(d, {"precision", "populations", "synapses", "heads", "schedule", "io", "offcore"},
          "neuro")
    ng = NeuroGraph(d["precision"])
    for i, p in enumerate(d["populations"]):
        where = f"populations[{i}]"
        name = p["name"]
        rec = _record(Population, p, where, special=("bias", "q", "norm", "act", "attrs"))
        rec["bias"] = arrays[f"bias/{name}"] if p["bias"] else None
        rec["q"] = None if p["q"] is None else QuantParams(
            **_record(QuantParams, p["q"], f"{where}.q"))
        if p["norm"] is not None:
            norm = _record(NormParams, p["norm"], f"{where}.norm", absent=("gamma", "beta"))
            rec["norm"] = NormParams(norm["kind"], norm["eps"], arrays[f"norm/{name}/gamma"],
                                     arrays[f"norm/{name}/beta"], norm["group"])
        else:
            rec["norm"] = None
        rec["act"] = None if p["act"] is None else _activation(p["act"], f"{where}.act")
        rec["attrs"] = _decode_attrs(p["attrs"], arrays)
        ng.add_population(Population(**rec))
    for i, s in enumerate(d["synapses"]):
        where = f"synapses[{i}]"
        rec = _record(SynapseGroup, s, where, special=("rule", "attrs"), absent=("weights",))
        rec["weights"] = arrays[f"w/{s['name']}"]
        rec["rule"] = None if s["rule"] is None else LearningRule(
            **_record(LearningRule, s["rule"], f"{where}.rule"))
        rec["attrs"] = _decode_attrs(s["attrs"], arrays)
        ng.add_synapses(SynapseGroup(**rec))
    ng._n_generated = len(ng._syns)
    heads = _list(d["heads"], "neuro.heads")
    ng.g.graph["heads"] = [HeadSpec(**_record(HeadSpec, h, f"heads[{i}]"))
                           for i, h in enumerate(heads)]
    ng.g.graph["schedule"] = _obj(d["schedule"], "neuro.schedule")
    ng.io = None if d["io"] is None else ProgramIO(**_record(ProgramIO, d["io"], "neuro.io"))
    ng.g.graph["offcore"] = [OffcoreOp(**_record(OffcoreOp, o, f"offcore[{i}]"))
                             for i, o in enumerate(_list(d["offcore"], "neuro.offcore"))]
    _check_references(ng)
    return ng


def _activation(value: Any, where: str) -> ActivationParams:
    """An activation's parameters: the typed fields, and the breakpoints and slopes as lists of
    integers of one length (the breakpoints ascending)."""
    rec = _record(ActivationParams, value, where)
    for k in ("breaks", "slopes"):
        rec[k] = [_int(x, f"{where}.{k}[{i}]") for i, x in enumerate(rec[k])]
    if len(rec["breaks"]) != len(rec["slopes"]) or rec["breaks"] != sorted(rec["breaks"]):
        raise ProgramFormatError(f"{where}: {len(rec['breaks'])} breakpoints (ascending) and "
                                 f"{len(rec['slopes'])} slopes")
    return ActivationParams(**rec)


def _check_arrays(specs: dict[str, Spec], arrays: dict[str, np.ndarray]) -> None:
    for key, (shape, dtypes, max_bytes) in specs.items():
        a = arrays.get(key)
        if not isinstance(a, np.ndarray):
            raise ProgramFormatError("missing", file="weights.npz", key=key)
        if a.dtype.name not in dtypes or (shape is not None and a.shape != tuple(shape)) or (
                max_bytes is not None and a.nbytes > max_bytes):
            raise ProgramFormatError(f"{a.dtype.name}{list(a.shape)}, declared "
                                     f"{'/'.join(dtypes)}"
                                     f"{list(shape) if shape is not None else ''}",
                                     file="weights.npz", key=key)
        if a.dtype.kind == "f" and not np.all(np.isfinite(a)):
            raise ProgramFormatError(f"holds NaN or inf ({int(np.sum(~np.isfinite(a)))} of "
                                     f"{a.size} values)", file="weights.npz", key=key)


def _check_references(ng: NeuroGraph) -> None:
    """What ``verify_neuro`` assumes when it looks names up, and what a run needs."""
    for i, h in enumerate(ng.heads):
        for end in ("k", "q", "v", "slots", "out"):
            if getattr(h, end) not in ng.g:
                raise ProgramFormatError(f"heads[{i}].{end}: unknown population "
                                         f"{getattr(h, end)!r}")
        for end in ("k_syn", "v_syn"):
            if getattr(h, end) not in ng._syns:
                raise ProgramFormatError(f"heads[{i}].{end}: unknown synapse group "
                                         f"{getattr(h, end)!r}")
    io = ng.io
    if io is None:
        raise ProgramFormatError("neuro.io: the program has no I/O contract")
    for end in ("output_pop", "input_pop"):
        name = getattr(io, end)
        if name is not None and name not in ng.g:
            raise ProgramFormatError(f"neuro.io.{end}: unknown population {name!r}")
    _check_outputs(io, ng.pop(io.output_pop).size)
    for name, how in io.bound.items():
        if not isinstance(how, str) or how not in BOUND_KINDS:
            raise ProgramFormatError(f"neuro.io.bound.{_show(name)}: {_show(how)} is not one of "
                                     f"{list(BOUND_KINDS)}")
    if io.input_kind == "tokens":
        ids = [p for p in ng.populations() if p.encoding == Encoding.ONE_HOT]
        if io.vocab is None or not ids or any(p.size != io.vocab for p in ids):
            raise ProgramFormatError(f"neuro.io.vocab: {io.vocab!r} does not match the one-hot "
                                     f"input populations ({[p.size for p in ids]})")
    for i, o in enumerate(ng.offcore):
        if o.population not in ng.g:
            raise ProgramFormatError(f"offcore[{i}].population: unknown population "
                                     f"{o.population!r}")
    # slot neurons and plastic synapses exist only as parts of a head
    slots = [h.slots for h in ng.heads]
    for p in ng.populations():
        if (p.model == NeuronModel.SLOT) != (p.name in slots):
            raise ProgramFormatError(f"population {p.name}: " + (
                "slot neurons of no head" if p.model == NeuronModel.SLOT
                else f"a {p.model} population as a head's slots"))
    plastic = [s for h in ng.heads for s in (h.k_syn, h.v_syn)]
    if len(set(slots)) != len(slots) or len(set(plastic)) != len(plastic):
        raise ProgramFormatError("neuro.heads: two heads share slots or plastic synapses")
    for s in ng.synapses():
        if s.plastic and s.name not in plastic:
            raise ProgramFormatError(f"synapses {s.name}: plastic synapses of no head")
    if ng.precision == "fixed":
        _check_quantiser(ng)


def _check_outputs(io: ProgramIO, n: int) -> None:
    """``io.outputs``: slices of the output population (offset, size) each with a token-local
    layout (B, T and F factors) of that many features, which ``Program.onnx_outputs`` can apply
    (checked on one token)."""
    for i, o in enumerate(io.outputs):
        where = f"neuro.io.outputs[{i}]"
        _keys(_obj(o, where), {"name", "offset", "size", "layout"}, where)
        _string(o["name"], f"{where}.name")
        off = _int(o["offset"], f"{where}.offset", 0, n - 1)
        size = _int(o["size"], f"{where}.size", 1, n - off)
        try:
            lay = layout.from_json(_list(o["layout"], f"{where}.layout"))
            ks = layout.kinds(lay)
            ok = (set(ks) <= {layout.B, layout.T, layout.F} and ks.count(layout.T) == 1
                  and ks.count(layout.B) <= 1 and layout.n_features(lay) == size)
            if ok:
                layout.output_view(np.zeros((1, 1, size)), lay, 1, 1)
        except ProgramFormatError:
            raise
        except (ValueError, TypeError, KeyError, IndexError, AttributeError, ArithmeticError):
            ok = False
        if not ok:
            raise ProgramFormatError(f"{where}.layout: not a token layout of {size} features")


def _check_quantiser(ng: NeuroGraph) -> None:
    """The quantiser's parameters that a fixed-point run reads."""
    need: dict[str, tuple[str, ...]] = {}
    for h in ng.heads:
        need[h.slots] = ("r", "r2")
        need[h.out] = ("s_v", "s_a") if h.normalise in ("rowsum", "rowsum_max") else ("e_v",)
    for p in ng.populations():
        if p.model in (NeuronModel.NORM, NeuronModel.ACTIVATION):
            need[p.name] = ("in_scale",)
        elif p.model == NeuronModel.PRODUCT:
            need[p.name] = ("in_scale", "in_scale_b")
    for name, keys in need.items():
        q = ng.pop(name).q
        missing = [k for k in keys if q is None or getattr(q, k) is None]
        if missing:
            raise ProgramFormatError(f"population {name}: fixed point needs the quantiser's "
                                     f"{', '.join(missing)} (q)")
    for p in ng.populations():
        if not p.scale > 0:
            raise ProgramFormatError(f"population {p.name}: scale {p.scale!r} (must be > 0)")


# -- typed fields -----------------------------------------------------------------------------------

_HINTS: dict[type, dict[str, Any]] = {}


def _record(cls: type, value: Any, where: str, special: tuple[str, ...] = (),
            absent: tuple[str, ...] = ()) -> dict:
    """The fields of dataclass ``cls`` from a JSON object, each checked against its declared
    type; the ``special`` fields must be present and are left to the caller, the ``absent``
    ones (arrays) are not in the object."""
    if cls not in _HINTS:
        _HINTS[cls] = get_type_hints(cls)
    hints = _HINTS[cls]
    d = _obj(value, where)
    names = [f.name for f in dataclasses.fields(cls) if f.name not in absent]
    _keys(d, set(names), where)
    return {n: d[n] if n in special else _typed(d[n], hints[n], f"{where}.{n}") for n in names}


def _typed(v: Any, tp: Any, where: str) -> Any:
    origin = get_origin(tp)
    if tp is Any:
        return v
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if v is None:
            if type(None) in args:
                return None
            raise ProgramFormatError(f"{where}: null")
        last: ProgramFormatError | None = None
        for a in args:
            if a is type(None):
                continue
            try:
                return _typed(v, a, where)
            except ProgramFormatError as e:
                last = e
        raise last  # type: ignore[misc]
    if origin is Literal:
        return _literal(v, get_args(tp), where)
    if isinstance(tp, type) and issubclass(tp, Enum):
        return tp(_literal(v, tuple(e.value for e in tp), where))
    if tp is bool:
        return _bool(v, where)
    if tp is int:
        return _int(v, where)
    if tp is float:
        try:
            ok = not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v)
        except OverflowError:  # an integer beyond float range
            ok = False
        if not ok:
            raise ProgramFormatError(f"{where}: {_show(v)} is not a finite number")
        return float(v)
    if tp is str:
        return _string(v, where)
    if origin is dict or tp is dict:
        return _obj(v, where)
    if origin is list or tp is list:
        return _list(v, where)
    raise ProgramFormatError(f"{where}: cannot read a field of type {tp}")  # a new IR type


def _keys(d: dict, names: set[str], where: str) -> None:
    missing, extra = sorted(names - set(d)), sorted(set(d) - names)
    if missing or extra:
        raise ProgramFormatError(f"{where}: " + "; ".join(
            ([f"missing field(s) {', '.join(missing)}"] if missing else [])
            + ([f"unknown field(s) {', '.join(_show(k) for k in extra[:5])}"] if extra else [])))


def _show(v: Any) -> str:
    r = repr(v)
    return r if len(r) <= 40 else r[:40] + "..."


def _obj(v: Any, where: str) -> dict:
    if not isinstance(v, dict):
        raise ProgramFormatError(f"{where}: expected an object, got {type(v).__name__}")
    return v


def _list(v: Any, where: str) -> list:
    if not isinstance(v, list):
        raise ProgramFormatError(f"{where}: expected a list, got {type(v).__name__}")
    return v


def _string(v: Any, where: str) -> str:
    if not isinstance(v, str) or len(v) > MAX_STRING:
        raise ProgramFormatError(f"{where}: {_show(v)} is not a string of at most {MAX_STRING} "
                                 "characters")
    return v


def _bool(v: Any, where: str) -> bool:
    if not isinstance(v, bool):
        raise ProgramFormatError(f"{where}: {_show(v)} is not true or false")
    return v


def _int(v: Any, where: str, lo: int = -MAX_INT, hi: int = MAX_INT) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise ProgramFormatError(f"{where}: {_show(v)} is not an integer in [{lo}, {hi}]")
    return v


def _size(v: Any, where: str) -> int:
    return _int(v, where, 1, MAX_POPULATION_SIZE)


def _literal(v: Any, allowed: tuple, where: str):
    if isinstance(v, bool) or v not in allowed or not any(type(v) is type(a) for a in allowed):
        raise ProgramFormatError(f"{where}: {_show(v)} is not one of {list(allowed)}")
    return v


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
