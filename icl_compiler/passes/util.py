"""Helpers shared by the tensor passes: constant predicates, node creation with shape
inference, value forwarding/renaming, and data-dependence queries."""
from __future__ import annotations

import networkx as nx
import numpy as np

from ..ir.graph import Graph, Node, Value
from ..ir.ops import OPS, with_defaults
from ..ir.symbolic import dims_equal, is_sym

def op_type(n: Node) -> str:
    """The ONNX op type of a node (a generic ``Onnx`` node's own ``op_type``)."""
    return n.attrs.get("op_type", n.op) if n.op == "Onnx" else n.op


# -- predicates on values (usable as pattern Var predicates) -----------------------------------

def const(g: Graph, v: str) -> np.ndarray | None:
    val = g.values.get(v)
    return None if val is None else val.data


def is_const(g: Graph, v: str) -> bool:
    return const(g, v) is not None


def is_nonconst(g: Graph, v: str) -> bool:
    return bool(v) and not is_const(g, v)


def is_scalar_const(g: Graph, v: str) -> bool:
    c = const(g, v)
    return c is not None and c.size == 1 and c.dtype.kind == "f"


def scalar(g: Graph, v: str) -> float:
    return float(np.asarray(const(g, v)).ravel()[0])


def scalar_is(x: float):
    """Predicate: a floating scalar constant equal to ``x``."""
    return lambda g, v: is_scalar_const(g, v) and scalar(g, v) == x


def is_const_2d(g: Graph, v: str) -> bool:
    c = const(g, v)
    return c is not None and c.ndim == 2 and c.dtype.kind == "f"


def is_vector_const(g: Graph, v: str) -> bool:
    """A float constant shaped [n] or [1, ..., 1, n] (a per-feature vector)."""
    c = const(g, v)
    return c is not None and c.dtype.kind == "f" and c.ndim >= 1 and c.size == c.shape[-1]


def reduces_last_axis(g: Graph, n: Node) -> bool:
    a = with_defaults(n.op, n.attrs)
    r = g.values[n.inputs[0]].rank
    axes = a.get("axes")
    return (axes is not None and len(axes) == 1 and axes[0] in (-1, r - 1)
            and bool(a.get("keepdims", 1)))


def same_shape(a, b) -> bool:
    return len(a) == len(b) and all(dim_eq(x, y) for x, y in zip(a, b))


def static(d) -> bool:
    return not is_sym(d)


# -- building -------------------------------------------------------------------------------

def add_op(g: Graph, op: str, inputs: list[str], attrs: dict | None = None, *,
           out: str | None = None, base: str | None = None, onnx_name: str | None = None) -> str:
    """Add a single-output node; its output value (``out`` or a fresh name) gets the shape and
    dtype from the op's shape function.  ``out`` may name an existing value whose producer was
    removed: the value is re-declared with the computed type."""
    attrs = dict(attrs or {})
    ins = [g.values[i] if i else None for i in inputs]
    shape, dtype = OPS[op].shape(ins, with_defaults(op, attrs))[0]  # a single-output node
    name = out or g.fresh(base or op.lower())
    g.values[name] = Value(name, tuple(shape), str(np.dtype(dtype)), None)
    g.add_node(op, inputs, [name], attrs, onnx_name=onnx_name)
    return name


def add_const(g: Graph, data: np.ndarray, base: str) -> str:
    return g.add_const(np.ascontiguousarray(data), base).name


def replace_node(g: Graph, old: Node, op: str, inputs: list[str], attrs: dict | None = None,
                 onnx_name: str | None = None) -> str:
    """Replace ``old`` (single output) by a new node computing the same output value."""
    out = old.outputs[0]
    g.remove_node(old.name)
    return add_op(g, op, inputs, attrs, out=out, onnx_name=onnx_name or old.onnx_name)


def rename_value(g: Graph, old: str, new: str) -> None:
    """Rename a value everywhere (producer, consumers, graph inputs/outputs)."""
    assert new not in g.values, new
    v = g.values.pop(old)
    g.values[new] = Value(new, v.shape, v.dtype, v.data)
    for n in g.nodes.values():
        n.inputs = [new if i == old else i for i in n.inputs]
        n.outputs = [new if o == old else o for o in n.outputs]
    g.inputs = [new if i == old else i for i in g.inputs]
    g.outputs = [new if o == old else o for o in g.outputs]
    g._dirty()


def forward(g: Graph, node: Node, src: str) -> bool:
    """Remove ``node`` and make the users of its (single) output read ``src`` instead.

    A graph output keeps its name: ``src`` is renamed to it, unless ``src`` is itself a graph
    input/output or a constant, in which case nothing is done and False is returned."""
    dst = node.outputs[0]
    if dst in g.outputs:
        if src in g.inputs or src in g.outputs or is_const(g, src):
            return False
        g.remove_node(node.name)
        del g.values[dst]
        rename_value(g, src, dst)
        return True
    g.remove_node(node.name)
    g.replace_uses(dst, src)
    del g.values[dst]
    return True


# -- queries -----------------------------------------------------------------------------------

def ancestors(g: Graph, value: str) -> list[Node]:
    """The nodes computing ``value`` (its producer and everything upstream), topo-ordered."""
    p = g.producer(value)
    if p is None:
        return []
    names = nx.ancestors(g.nx(), p.name) | {p.name}
    return [n for n in g.topo_nodes() if n.name in names]


def depends_on_inputs(g: Graph, value: str) -> bool:
    """True if ``value`` is computed from graph-input data (not only from dims/constants)."""
    if value in g.inputs:
        return True
    ins = set(g.inputs)
    return any(i in ins for n in ancestors(g, value) for i in n.inputs)


dim_eq = dims_equal  # the IR's fast exact dim equality

