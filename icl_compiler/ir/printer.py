"""Readable text form of the tensor IR: one op per line."""
from __future__ import annotations

import numpy as np

from .graph import Graph


def _type(graph: Graph, name: str) -> str:
    v = graph.values[name]
    return f"{v.dtype}[{', '.join(str(d) for d in v.shape)}]"


def _attr(v) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_attr(x) for x in v) + "]"
    if isinstance(v, str):
        return repr(v)
    return str(v)


def to_text(graph: Graph) -> str:
    lines = [f"graph {graph.name}("]
    for i in graph.inputs:
        lines.append(f"    %{i}: {_type(graph, i)}")
    lines.append(") {")
    for name, v in graph.values.items():
        if v.data is not None:
            stats = ""
            if v.data.size and v.data.dtype.kind in "fiu":
                stats = f" range=[{np.min(v.data):.4g}, {np.max(v.data):.4g}]"
            elif v.data.size == 0:
                stats = " empty"
            if v.data.size <= 4 and v.data.dtype.kind in "fiub":
                stats = f" = {v.data.tolist()}"
            lines.append(f"  const %{name}: {_type(graph, name)}{stats}")
    for n in graph.topo_nodes():
        outs = ", ".join(f"%{o}: {_type(graph, o)}" for o in n.outputs)
        ins = ", ".join(f"%{i}" if i else "_" for i in n.inputs)
        attrs = ", ".join(f"{k}={_attr(v)}" for k, v in sorted(n.attrs.items()))
        lines.append(f"  {outs} = {n.op}({ins}){' {' + attrs + '}' if attrs else ''}")
    lines.append(f"  return {', '.join('%' + o for o in graph.outputs)}")
    lines.append("}")
    return "\n".join(lines)
