"""Tensor IR verifier: types, shapes, acyclicity, one producer per value, bound inputs."""
from __future__ import annotations

import networkx as nx
import numpy as np

from ..errors import IRVerifyError
from .graph import Graph, Value
from .ops import OPS, REQUIRED, _eq

__all__ = ["IRVerifyError", "verify"]


def _same_shape(a, b) -> bool:
    return len(a) == len(b) and all(_eq(x, y) for x, y in zip(a, b))


def verify(graph: Graph) -> None:
    """Raise IRVerifyError on the first broken invariant."""
    producers: dict[str, str] = {}
    for name in graph.inputs:
        if name not in graph.values:
            raise IRVerifyError(f"graph input {name!r} has no value")
        producers[name] = "<input>"
    for name, v in graph.values.items():
        if v.data is not None:
            if name in producers:
                raise IRVerifyError(f"value {name!r} is both an input and a constant")
            producers[name] = "<const>"
            if tuple(v.data.shape) != tuple(v.shape) or v.data.dtype.name != v.dtype:
                raise IRVerifyError(f"constant {name!r}: data {v.data.shape}/{v.data.dtype} "
                                    f"!= declared {v.shape}/{v.dtype}")
    for n in graph.nodes.values():
        for o in n.outputs:
            if o in producers:
                raise IRVerifyError(f"value {o!r} produced by {producers[o]} and by node {n.name!r}")
            if o not in graph.values:
                raise IRVerifyError(f"node {n.name!r}: output {o!r} has no value entry")
            producers[o] = n.name
    for n in graph.nodes.values():
        for i in n.inputs:
            if i and i not in producers:
                raise IRVerifyError(f"node {n.name!r} ({n.op}): input {i!r} is not bound")
    for o in graph.outputs:
        if o not in producers:
            raise IRVerifyError(f"graph output {o!r} is not produced")
    if not nx.is_directed_acyclic_graph(graph.nx()):
        cycle = nx.find_cycle(graph.nx())
        raise IRVerifyError(f"op graph has a cycle: {cycle}")
    for n in graph.topo_nodes():
        if n.op not in OPS:
            raise IRVerifyError(f"node {n.name!r}: unknown op {n.op!r}")
        od = OPS[n.op]
        lo, hi = od.n_inputs
        if not lo <= len(n.inputs) <= hi:
            raise IRVerifyError(f"node {n.name!r} ({n.op}): {len(n.inputs)} inputs, want {lo}..{hi}")
        if od.n_outputs is not None and len(n.outputs) != od.n_outputs:
            raise IRVerifyError(f"node {n.name!r} ({n.op}): {len(n.outputs)} outputs")
        unknown = set(n.attrs) - set(od.attrs)
        if unknown:
            raise IRVerifyError(f"node {n.name!r} ({n.op}): unknown attributes {sorted(unknown)}")
        missing = [k for k, d in od.attrs.items() if d is REQUIRED and k not in n.attrs]
        if missing:
            raise IRVerifyError(f"node {n.name!r} ({n.op}): missing attributes {missing}")
        ins: list[Value | None] = [graph.values[i] if i else None for i in n.inputs]
        attrs = {k: v for k, v in od.attrs.items() if v is not REQUIRED}
        attrs.update(n.attrs)
        try:
            want = od.shape(ins, attrs)
        except Exception as e:  # noqa: BLE001 - any shape-function failure is an IR error
            raise IRVerifyError(f"node {n.name!r} ({n.op}): shape function failed: {e}") from e
        for o, (shape, dtype) in zip(n.outputs, want):
            v = graph.values[o]
            if np.dtype(v.dtype) != np.dtype(dtype):
                raise IRVerifyError(f"node {n.name!r} ({n.op}): output {o!r} dtype {v.dtype}, "
                                    f"shape function says {dtype}")
            if not _same_shape(v.shape, shape):
                raise IRVerifyError(f"node {n.name!r} ({n.op}): output {o!r} shape {v.shape}, "
                                    f"shape function says {tuple(shape)}")
