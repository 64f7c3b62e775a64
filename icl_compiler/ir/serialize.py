"""Save/load the tensor IR: ``graph.json`` (structure) + ``tensors.npz`` (constant data)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import sympy

from .graph import Graph
from .symbolic import dim_from_json, dim_to_json


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
            return np.array(v["$array"], dtype=v["dtype"])
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
    doc = {"format": "icl-tensor-ir/1", "name": graph.name, "inputs": graph.inputs,
           "outputs": graph.outputs, "values": values, "nodes": nodes, "meta": _enc(graph.meta)}
    return doc, tensors


def graph_from_json(doc: dict, tensors: dict[str, np.ndarray]) -> Graph:
    if doc.get("format") != "icl-tensor-ir/1":
        raise ValueError(f"not a tensor IR file (format {doc.get('format')!r})")
    g = Graph(doc["name"])
    for v in doc["values"]:
        data = tensors[v["data"]] if "data" in v else None
        g.add_value(v["name"], [dim_from_json(d) for d in v["shape"]], v["dtype"], data)
    for n in doc["nodes"]:
        g.add_node(n["op"], n["inputs"], n["outputs"], {k: _dec(a) for k, a in n["attrs"].items()},
                   name=n["name"], onnx_name=n["onnx_name"])
    g.inputs, g.outputs, g.meta = list(doc["inputs"]), list(doc["outputs"]), _dec(doc["meta"])
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
