"""Reference interpreter over the tensor IR (numpy semantics of the op registry)."""
from __future__ import annotations

import numpy as np

from .graph import Graph
from .ops import OPS, with_defaults
from .symbolic import is_sym, resolve


def bind_dims(graph: Graph, feeds: dict[str, np.ndarray]) -> dict[str, int]:
    """Bind the graph inputs' symbolic dims to the actual input shapes."""
    env: dict[str, int] = {}
    for name in graph.inputs:
        v = graph.values[name]
        arr = feeds[name]
        if arr.ndim != v.rank:
            raise ValueError(f"input {name!r}: expected rank {v.rank}, got shape {arr.shape}")
        for d, actual in zip(v.shape, arr.shape):
            if is_sym(d):
                if len(d.free_symbols) != 1:
                    continue
                sym_ = next(iter(d.free_symbols))
                value = actual if d == sym_ else _solve_linear(d, sym_, actual)
                if value is None:
                    continue
                key = str(sym_)
                if env.setdefault(key, value) != value:
                    raise ValueError(f"dimension {key} bound to {env[key]} and {value}")
            elif d != actual:
                raise ValueError(f"input {name!r}: expected shape {v.shape}, got {arr.shape}")
    return env


def _solve_linear(d, sym_, actual: int) -> int | None:
    """The value of ``sym_`` with ``d(sym_) == actual`` when ``d = a·sym_ + b`` (e.g. a batch×heads
    axis ``2*batch``), else None."""
    b = d.subs(sym_, 0)
    a = d.subs(sym_, 1) - b
    if not (a.is_Integer and b.is_Integer) or int(a) == 0 or (d - (a * sym_ + b)).expand() != 0:
        return None
    q, r = divmod(int(actual) - int(b), int(a))
    return q if r == 0 and q > 0 else None


def run(graph: Graph, feeds: dict[str, np.ndarray], *, float_dtype: str | None = None,
        keep: bool = False, env: dict[str, int] | None = None) -> dict[str, np.ndarray]:
    """Evaluate the graph.  ``float_dtype="float64"`` promotes every float tensor (for exact
    before/after comparisons of passes).  ``keep=True`` returns every intermediate value.
    ``env`` binds dims that no graph input carries (a graph of position-only values)."""
    fdt = np.dtype(float_dtype) if float_dtype else None

    def conv(a: np.ndarray) -> np.ndarray:
        a = np.asarray(a)
        return a.astype(fdt) if fdt is not None and a.dtype.kind == "f" else a

    feeds = {k: conv(v) for k, v in feeds.items()}
    env = {**(env or {}), **bind_dims(graph, feeds)}
    vals: dict[str, np.ndarray] = {}
    for name, v in graph.values.items():
        if v.data is not None:
            vals[name] = conv(v.data)
    vals.update(feeds)
    for node in graph.topo_nodes():
        od = OPS[node.op]
        attrs = resolve(with_defaults(node.op, node.attrs), env)
        if fdt is not None and node.op == "Cast" and np.dtype(attrs["to"]).kind == "f":
            attrs["to"] = fdt.name
        if fdt is not None and "dtype" in attrs and np.dtype(attrs["dtype"]).kind == "f":
            attrs["dtype"] = fdt.name
        xs = [vals[i] if i else None for i in node.inputs]
        outs = od.compute(xs, attrs)
        for o, arr in zip(node.outputs, outs):
            vals[o] = np.asarray(arr)
    if keep:
        return vals
    return {o: vals[o] for o in graph.outputs}
