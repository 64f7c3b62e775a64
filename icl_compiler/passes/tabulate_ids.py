"""Pass ``tabulate_ids``: any function of the token id alone becomes an embedding lookup.

Matches: the float values that depend on a token-id input (an integer graph input [batch, seq])
and on constants only — not on its shape, not on other inputs — and that a node outside that
subgraph reads: the *frontier* of the id-only subgraph.  A one-hot matmul
(``F.one_hot(x, V).float() @ E``, exported as ``OneHot`` or as ``Equal(x[..., None],
arange(V))``), an embedding times a padding mask computed from the ids (``E[x] * (x != pad)``),
a scaled or summed pair of embeddings: each computes, at position t, a vector that depends on
the id at t alone.  Plain lookups (``Gather`` of a table by the ids, through data movement) are
left alone: the lowering reads them as they are.

Produces: ``Gather(table, ids)`` with ``table[i] = value at an id i``, evaluated by the IR
interpreter on every id 0..V-1 at once (the ids as a batch of one-token sequences).  V, the
vocabulary, is what the subgraph itself can serve: the rows of the table it gathers from, the
depth of its OneHot, or the length of the constant it compares the ids with — one answer, or the
subgraph is left alone.

Proof: the rewrite is kept only if the table, gathered by random ids at two sequence lengths,
reproduces the subgraph's own value on those ids (relative error ≤ 1e-6 in float64): a value
that mixed tokens or read positions fails this and is left for the later passes to diagnose.

Invariants: graph inputs and outputs keep their names and types; the frontier values keep their
names, shapes and dtypes.  The table is kept in float64 and cast to the value's dtype, so the
compiler's float64 evaluation sees the exact function (to float64 rounding) and a float32 or
float16 evaluation rounds once.
"""
from __future__ import annotations

import numpy as np

from ..ir import interpreter
from ..ir.graph import Graph, Node
from ..ir.symbolic import is_sym
from .util import add_const, add_op, is_const
from .util import op_type as _op

CONTRACT = {"MatMul", "Gemm", "Einsum", "Linear", "Conv", "ConvTranspose"}
MOVES = {"Reshape", "Unsqueeze", "Squeeze", "Flatten", "Identity"}  # (a Cast uses ids as numbers)
NO_PROPAGATE = {"Shape", "Size"}  # the ids' shape is position information, not the ids
MAX_TABLE = 1 << 26  # elements of a table built here (a 50k x 768 GPT-2 table is 3.9e7)
MAX_VOCAB = 1 << 20
CHECK_SEQS = (3, 7)
TOL = 1e-6


def _id_inputs(g: Graph) -> list[str]:
    return [i for i in g.inputs
            if np.dtype(g.values[i].dtype).kind in "iu" and g.values[i].rank == 2]


def _id_only(g: Graph, x: str) -> tuple[set[str], set[str], list[Node]]:
    """The subgraph to tabulate: (values computed from ``x`` and constants only, those of them
    that use the ids as numbers, the nodes).

    It follows the ids through data movement and into their first product with a constant (the
    embedding: a Gather of a table, a one-hot matmul), and through what elementwise ops make of
    them; a value that uses the ids as numbers (a comparison, a one-hot, a cast) and has been
    embedded is *complete*: the subgraph ends there (its consumers, e.g. a norm or the first
    layer, stay the model's own).  A plain lookup and what follows it never uses the ids as
    numbers and is never tabulated."""
    dep, embedded, numbers, nodes = {x}, set(), set(), []
    complete: set[str] = set()
    for n in g.topo_nodes():
        if n.op in NO_PROPAGATE:
            continue
        live = [i for i in n.inputs if i and not is_const(g, i)]
        if not live or not all(i in dep and i not in complete for i in live):
            continue
        lookup = n.op == "Gather" and n.inputs[0] not in live
        if n.op in CONTRACT or lookup:
            if len(live) != 1 or live[0] in embedded:
                continue
            embedded.update(n.outputs)
        elif any(i in embedded for i in live):
            embedded.update(n.outputs)
        if any(i in numbers for i in live) or not (lookup or n.op in MOVES
                                                    or any(i in embedded for i in live)):
            numbers.update(n.outputs)
        dep.update(n.outputs)
        nodes.append(n)
        complete.update(o for o in n.outputs if o in embedded and o in numbers)
    return dep, numbers, nodes


def _vocab(g: Graph, nodes: list[Node], dep: set[str]) -> int | None:
    """The number of ids the subgraph can serve, if its constants say it unambiguously."""
    cands = set()
    for n in nodes:
        if n.op == "Gather" and n.inputs[0] not in dep and is_const(g, n.inputs[0]):
            axis = int(n.attrs.get("axis", 0))
            cands.add(int(g.values[n.inputs[0]].data.shape[axis]))
        elif _op(n) == "OneHot" and len(n.inputs) > 1 and is_const(g, n.inputs[1]):
            cands.add(int(np.asarray(g.values[n.inputs[1]].data).ravel()[0]))
        elif _op(n) in ("Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual"):
            for i in n.inputs:
                c = g.values[i].data if i and i not in dep else None
                if c is not None and c.size > 1:
                    flat = np.asarray(c).ravel()
                    if np.array_equal(flat, np.arange(flat.size)):
                        cands.add(int(flat.size))
    return cands.pop() if len(cands) == 1 else None


def _subgraph(g: Graph, x: str, nodes: list[Node], outs: list[str]) -> Graph:
    sub = Graph("ids")
    need = {i for n in nodes for i in n.inputs if i} | set(outs) | {x}
    for name in need:
        sub.values[name] = g.values[name]
    for n in nodes:
        for o in n.outputs:
            sub.values[o] = g.values[o]
        sub.add_node(n.op, list(n.inputs), list(n.outputs), dict(n.attrs), onnx_name=n.onnx_name)
    sub.inputs, sub.outputs = [x], list(outs)
    sub.prune()
    return sub


def _feed_shape(g: Graph, x: str, n_ids: int) -> tuple[int, int] | None:
    """The [batch, seq] shape that feeds ``n_ids`` ids as one-token sequences, or None when the
    input's axes are static (other than a sequence of 1)."""
    b, t = g.values[x].shape
    if is_sym(t) or t == 1:
        return (n_ids, 1) if is_sym(b) else None
    return None


def run(g: Graph, ctx=None) -> str:
    done = []
    for x in _id_inputs(g):
        dep, numbers, nodes = _id_only(g, x)
        frontier, inside = [], {n.name for n in nodes}
        for v in sorted(dep - {x}):
            val = g.values[v]
            if np.dtype(val.dtype).kind != "f" or val.rank < 2:
                continue
            readers = [n for n in g.consumers(v) if n.name not in inside]
            if (readers or v in g.outputs) and v in numbers:
                frontier.append(v)
        if not frontier:
            continue
        V = _vocab(g, nodes, dep)
        shape = _feed_shape(g, x, V or 0)
        if V is None or V > MAX_VOCAB or shape is None:
            continue
        sub = _subgraph(g, x, nodes, frontier)
        dt = g.values[x].dtype
        try:
            tabs = interpreter.run(sub, {x: np.arange(V, dtype=dt).reshape(shape)},
                                   float_dtype="float64")
        except Exception:  # noqa: BLE001 - a subgraph we cannot evaluate is left alone
            continue
        rng = np.random.default_rng(0)
        for v in frontier:
            tab = np.asarray(tabs[v])
            if tab.ndim < 2 or tab.shape[:2] != shape or tab.size > MAX_TABLE:
                continue
            table = tab.reshape((V,) + tab.shape[2:])
            if not _proved(sub, x, v, table, V, dt, rng):
                continue
            producer = g.producer(v)
            if len(producer.outputs) != 1:
                continue
            name = add_const(g, table, f"{v}_table")  # float64: see Invariants
            g.remove_node(producer.name)
            rows = add_op(g, "Gather", [name, x], {"axis": 0}, onnx_name=producer.onnx_name)
            add_op(g, "Cast", [rows], {"to": g.values[v].dtype}, out=v,
                   onnx_name=producer.onnx_name)
            done.append(f"{producer.onnx_name or producer.name} ({V} ids)")
    removed = g.prune()
    if not done:
        return "no function of the token ids to tabulate"
    return (f"tabulated {len(done)} function(s) of the token ids: {', '.join(done)}; "
            f"removed {removed} op(s)")


def _proved(sub: Graph, x: str, v: str, table: np.ndarray, V: int, dt: str, rng) -> bool:
    for t in CHECK_SEQS:
        ids = rng.integers(0, V, size=(2, t)).astype(dt)
        try:
            got = np.asarray(interpreter.run(sub, {x: ids}, float_dtype="float64")[v])
        except Exception:  # noqa: BLE001
            return False
        want = table[ids]
        if got.shape != want.shape:
            return False
        scale = max(float(np.max(np.abs(want))), 1e-30) if want.size else 1.0
        if want.size and float(np.max(np.abs(got - want))) > TOL * scale:
            return False
    return True
