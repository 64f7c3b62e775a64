"""Save/load the tensor IR: ``graph.json`` (structure) + ``tensors.npz`` (constant data)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import sympy

from ..errors import CompileError
from .dtypes import check_dtype
from .graph import Graph
from .symbolic import dim_from_json, dim_to_json

FORMAT = "icl-tensor-ir/1"


class IRFileError(CompileError, ValueError):
    """A saved tensor IR is malformed or out of bounds (the message names the value or node)."""


def _enc(v: Any) -> Any:
    if isinstance(v, sympy.Basic):
        return {"$dim": dim_to_json(v)}
    if isinstance(v, (list, tuple)):
        return {"$tuple": [_enc(x) for x in v]} if isinstance(v, tuple) else [_enc(x) for x in v]
    if isinstance(v, dict):
        return {"$dict": {k: _enc(x) for k, x in v.items()}}
    if isinstance(v, np.ndarray):
        return {"$array": v.tolist(), "dtype": v.dtype.name}
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating,)):
        return float(v)
    return v


def _dec(v: Any) -> Any:
    if isinstance(v, dict):
        if "$dim" in v:
            return dim_from_json(v["$dim"])
        if "$tuple" in v:
            return tuple(_dec(x) for x in v["$tuple"])
        if "$dict" in v:
            return {k: _dec(x) for k, x in v["$dict"].items()}
        if "$array" in v:
            dtype = check_dtype(v.get("dtype"), "array dtype")  # before numpy sees it
            try:
                return np.array(v["$array"], dtype=dtype)
            except (TypeError, ValueError, OverflowError) as e:
                raise ValueError(f"bad {dtype} array: {e}") from None
    if isinstance(v, list):
        return [_dec(x) for x in v]
    return v


def graph_to_json(graph: Graph) -> tuple[dict, dict[str, np.ndarray]]:
    tensors: dict[str, np.ndarray] = {}
    values = []
    for name, v in graph.values.items():
        entry = {"name": name, "shape": [dim_to_json(d) for d in v.shape], "dtype": v.dtype}
        if v.data is not None:
            key = f"t{len(tensors)}"
            tensors[key] = v.data
            entry["data"] = key
        values.append(entry)
    nodes = [{"name": n.name, "op": n.op, "inputs": n.inputs, "outputs": n.outputs,
              "attrs": {k: _enc(a) for k, a in n.attrs.items()}, "onnx_name": n.onnx_name}
             for n in graph.nodes.values()]
    doc = {"format": FORMAT, "name": graph.name, "inputs": graph.inputs,
           "outputs": graph.outputs, "values": values, "nodes": nodes, "meta": _enc(graph.meta)}
    return doc, tensors


def graph_from_json(doc: dict, tensors: dict[str, np.ndarray]) -> Graph:
    """Rebuild a graph from its JSON and constant arrays.  Every entry is checked before it is
    used (dims by ``dim_from_json``'s grammar, dtypes against ``ir.dtypes.IR_DTYPES``, constant
    arrays against their value's dtype and shape); a bad one is an :class:`IRFileError` naming
    the value or node."""
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        fmt = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
        raise IRFileError(f"not a tensor IR file (format {str(fmt)[:40]!r})")
    where = "graph"
    try:
        g = Graph(str(doc["name"]))
        for v in doc["values"]:
            where = f"value {str(v.get('name'))[:60]!r}"
            dtype = check_dtype(v["dtype"])
            shape = [dim_from_json(d) for d in v["shape"]]
            data = None
            if "data" in v:
                data = tensors[v["data"]]
                if data.dtype.name != dtype or list(data.shape) != shape:
                    raise ValueError(f"constant {v['data']!r} is {data.dtype.name}"
                                     f"{list(data.shape)}, declared {dtype}{shape}")
            g.add_value(v["name"], shape, dtype, data)
        for n in doc["nodes"]:
            where = f"node {str(n.get('name'))[:60]!r}"
            g.add_node(n["op"], n["inputs"], n["outputs"],
                       {k: _dec(a) for k, a in n["attrs"].items()},
                       name=n["name"], onnx_name=n["onnx_name"])
        where = "graph inputs, outputs and meta"
        g.inputs, g.outputs, g.meta = list(doc["inputs"]), list(doc["outputs"]), _dec(doc["meta"])
    except (KeyError, TypeError, AttributeError) as e:
        raise IRFileError(f"tensor IR {where}: missing or malformed entry ({type(e).__name__}: "
                          f"{str(e)[:80]})") from None
    except ValueError as e:
        raise IRFileError(f"tensor IR {where}: {e}") from None
    return g


def save_graph(graph: Graph, directory: str | Path, stem: str = "graph") -> None:
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    doc, tensors = graph_to_json(graph)
    (d / f"{stem}.json").write_text(json.dumps(doc, indent=1))
    np.savez(d / f"{stem}.npz", **tensors)


def load_graph(directory: str | Path, stem: str = "graph") -> Graph:
    d = Path(directory)
    doc = json.loads((d / f"{stem}.json").read_text())
    with np.load(d / f"{stem}.npz", allow_pickle=False) as z:
        tensors = {k: z[k] for k in z.files}
    return graph_from_json(doc, tensors)
