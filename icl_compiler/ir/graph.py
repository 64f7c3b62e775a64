"""Tensor IR: op nodes joined by typed values.

Storage is two insertion-ordered dicts (nodes, values); :meth:`Graph.nx` exposes the op graph as
a networkx DiGraph (one edge per producer→consumer pair, labelled with the values it carries) for
topological order, cycle checks and pattern matching.  The networkx view is rebuilt lazily after
every mutation.

Invariants (checked by :func:`icl_compiler.ir.verify.verify`): every value has one producer (a
node, a graph input, or constant data); every node input is bound; the op graph is acyclic;
stored shapes/dtypes equal what the op's shape function computes.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any, Iterable

import networkx as nx
import numpy as np

from .symbolic import Dim


@dataclass
class Value:
    name: str
    shape: tuple[Dim, ...]
    dtype: str  # numpy dtype name: float32, float64, int64, bool, ...
    data: np.ndarray | None = None  # constant (initializer) data

    @property
    def is_const(self) -> bool:
        return self.data is not None

    @property
    def rank(self) -> int:
        return len(self.shape)


@dataclass
class Node:
    name: str
    op: str
    inputs: list[str]
    outputs: list[str]
    attrs: dict[str, Any] = field(default_factory=dict)
    onnx_name: str | None = None  # the ONNX node this came from (for error messages)


class Graph:
    def __init__(self, name: str = "graph"):
        self.name = name
        self.values: dict[str, Value] = {}
        self.nodes: dict[str, Node] = {}
        self.inputs: list[str] = []
        self.outputs: list[str] = []
        self.meta: dict[str, Any] = {}
        self._nx: nx.DiGraph | None = None
        self._producer: dict[str, str] | None = None
        self._consumers: dict[str, list[str]] | None = None
        self._counter = itertools.count()

    # -- bookkeeping ------------------------------------------------------------------------
    def _dirty(self) -> None:
        self._nx = None
        self._producer = None
        self._consumers = None

    def fresh(self, base: str) -> str:
        """A value or node name not used yet."""
        while True:
            name = f"{base}_{next(self._counter)}"
            if name not in self.values and name not in self.nodes:
                return name

    # -- values -------------------------------------------------------------------------------
    def add_value(self, name: str, shape: Iterable[Dim], dtype: str,
                  data: np.ndarray | None = None) -> Value:
        v = Value(name, tuple(shape), str(np.dtype(dtype)), data)
        self.values[name] = v
        self._dirty()
        return v

    def add_const(self, data: np.ndarray, base: str = "const", name: str | None = None) -> Value:
        data = np.asarray(data)
        return self.add_value(name or self.fresh(base), data.shape, data.dtype.name, data)

    def value(self, name: str) -> Value:
        return self.values[name]

    def const(self, name: str) -> np.ndarray | None:
        v = self.values.get(name)
        return None if v is None else v.data

    # -- nodes --------------------------------------------------------------------------------
    def add_node(self, op: str, inputs: list[str], outputs: list[str], attrs: dict | None = None,
                 name: str | None = None, onnx_name: str | None = None) -> Node:
        name = name or self.fresh(op.lower())
        if name in self.nodes:
            raise ValueError(f"duplicate node name {name!r}")
        n = Node(name, op, list(inputs), list(outputs), dict(attrs or {}), onnx_name)
        self.nodes[name] = n
        self._dirty()
        return n

    def remove_node(self, name: str) -> None:
        del self.nodes[name]
        self._dirty()

    def producer(self, value: str) -> Node | None:
        if self._producer is None:
            self._producer = {o: n.name for n in self.nodes.values() for o in n.outputs}
        p = self._producer.get(value)
        return None if p is None else self.nodes[p]

    def consumers(self, value: str) -> list[Node]:
        if self._consumers is None:
            cons: dict[str, list[str]] = {}
            for n in self.nodes.values():
                for i in dict.fromkeys(n.inputs):
                    if i:
                        cons.setdefault(i, []).append(n.name)
            self._consumers = cons
        return [self.nodes[c] for c in self._consumers.get(value, [])]

    def replace_uses(self, old: str, new: str) -> None:
        """Make every consumer (and graph output) of value ``old`` read ``new`` instead."""
        for n in self.nodes.values():
            n.inputs = [new if i == old else i for i in n.inputs]
        if old in self.outputs:
            # keep the graph output's name stable: rename the new value's producer output
            self.outputs = [new if o == old else o for o in self.outputs]
        self._dirty()

    # -- networkx view ----------------------------------------------------------------------
    def nx(self) -> nx.DiGraph:
        if self._nx is None:
            g = nx.DiGraph()
            for n in self.nodes.values():
                g.add_node(n.name, op=n.op)
            for n in self.nodes.values():
                for i in n.inputs:
                    p = self.producer(i) if i else None
                    if p is not None:
                        if g.has_edge(p.name, n.name):
                            g.edges[p.name, n.name]["values"].append(i)
                        else:
                            g.add_edge(p.name, n.name, values=[i])
            self._nx = g
        return self._nx

    def topo_nodes(self) -> list[Node]:
        order = {name: i for i, name in enumerate(self.nodes)}
        names = nx.lexicographical_topological_sort(self.nx(), key=lambda n: order[n])
        return [self.nodes[n] for n in names]

    def sort(self) -> None:
        """Reorder the node dict topologically (keeps printing and saving deterministic)."""
        self.nodes = {n.name: n for n in self.topo_nodes()}
        self._dirty()

    def prune(self) -> int:
        """Remove nodes whose outputs nobody uses, and values nobody refers to."""
        removed = 0
        needed = set(self.outputs)
        keep: list[Node] = []
        for n in reversed(self.topo_nodes()):
            if any(o in needed for o in n.outputs):
                keep.append(n)
                needed.update(i for i in n.inputs if i)
            else:
                removed += 1
        self.nodes = {n.name: n for n in reversed(keep)}
        self._dirty()
        used = needed | set(self.inputs) | {o for n in self.nodes.values() for o in n.outputs}
        for name in list(self.values):
            if name not in used:
                del self.values[name]
        return removed

    def op_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for n in self.nodes.values():
            counts[n.op] = counts.get(n.op, 0) + 1
        return dict(sorted(counts.items()))

    def copy(self) -> Graph:
        import copy

        g = Graph(self.name)
        g.values = {k: Value(v.name, v.shape, v.dtype, v.data) for k, v in self.values.items()}
        g.nodes = {k: Node(n.name, n.op, list(n.inputs), list(n.outputs), copy.deepcopy(n.attrs),
                           n.onnx_name) for k, n in self.nodes.items()}
        g.inputs, g.outputs, g.meta = list(self.inputs), list(self.outputs), copy.deepcopy(self.meta)
        return g
