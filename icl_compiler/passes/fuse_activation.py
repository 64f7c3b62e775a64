"""Pass ``fuse_activation``: smooth activations, recognised by their numbers → ``Activation``.

Matches: a region of elementwise ops (Mul, Add, Div, Pow, Erf, Tanh, Sigmoid, Gelu, Softplus …,
see :data:`ELEMENTWISE`) that computes a value y from one token-local value x and scalar
constants only, every intermediate value used inside the region alone.  The region is evaluated
on a grid of x (the tensor interpreter's op semantics, in float64) and compared with every
function of :data:`~icl_compiler.ir.ops.activation.ACTIVATIONS` (GELU in its erf and tanh forms,
SiLU, sigmoid, tanh, softplus, ReLU², …).  Whatever ops an exporter wrote — ``0.5·x·(1 +
erf(x/√2))``, ``x·0.5·(1 + tanh(0.79788·(x + 0.044715·x³)))``, ``x·sigmoid(x)``, the ``Gelu``
op — the region that computes the function's numbers becomes one op.

Produces: ``Activation(x) {fn}`` computing y (the largest matching region ending at y; regions
are taken from the graph's end backwards, so an outer match wins over an inner one).

Invariants: output names, shapes and dtypes are unchanged; the numbers agree with the region's
to float rounding (≤ 1e-6 relative on the grid).  Values that are not token-local (attention
scores, positional tables) are left alone: attention's f is the attention pass's business.
"""
from __future__ import annotations

import numpy as np

from ..ir.graph import Graph, Node
from ..ir.ops import ACTIVATIONS, OPS, with_defaults
from .classify import Kind, classify
from .util import const, replace_node
from .util import op_type as _op

ELEMENTWISE = {"Add", "Sub", "Mul", "Div", "Pow", "Neg", "Abs", "Exp", "Log", "Sqrt",
               "Reciprocal", "Erf", "Tanh", "Sigmoid", "Softplus", "Softsign", "Relu",
               "LeakyRelu", "Elu", "Selu", "Celu", "Gelu", "HardSigmoid", "HardSwish", "Mish",
               "Max", "Min", "Clip", "Identity", "Cast"}
GRID = np.concatenate([np.linspace(-12.0, 12.0, 2401), [-30.0, -20.0, 20.0, 30.0]])
RTOL = 1e-6
MAX_REGION = 24  # nodes looked at upstream of a candidate output


def _uniform_const(g: Graph, v: str) -> bool:
    c = const(g, v)
    return c is not None and c.dtype.kind in "fiu" and c.size >= 1 and bool(np.all(c == c.flat[0]))


def _eligible(g: Graph, n: Node) -> bool:
    if _op(n) not in ELEMENTWISE or len(n.outputs) != 1:
        return False
    if _op(n) == "Cast" and np.dtype(g.values[n.outputs[0]].dtype).kind != "f":
        return False
    return all(not i or const(g, i) is None or _uniform_const(g, i) for i in n.inputs)


def _upstream(g: Graph, y: str) -> list[Node]:
    """Eligible nodes upstream of y through eligible producers only (at most MAX_REGION)."""
    out: dict[str, Node] = {}
    stack = [y]
    while stack and len(out) < MAX_REGION:
        v = stack.pop()
        p = g.producer(v)
        if p is None or p.name in out or not _eligible(g, p):
            continue
        out[p.name] = p
        stack += [i for i in p.inputs if i and const(g, i) is None]
    return list(out.values())


def _region(g: Graph, nodes: list[Node], x: str, y: str) -> list[Node] | None:
    """The nodes of ``nodes`` (topologically ordered) computing y from x and constants, or None
    if some node needs another value or an intermediate value is used outside."""
    reach = {x}
    region = []
    for n in nodes:
        if any(i in reach for i in n.inputs if i):
            region.append(n)
            reach.add(n.outputs[0])
    if y not in reach or y == x:
        return None
    made = {n.outputs[0] for n in region}
    for n in region:
        if any(i and const(g, i) is None and i != x and i not in made for i in n.inputs):
            return None
    for v in made - {y}:
        if v in g.outputs or any(c.name not in {n.name for n in region} for c in g.consumers(v)):
            return None
    shape = g.values[x].shape
    if any(g.values[v].shape != shape for v in made):
        return None
    # the region must end at y: nothing downstream of y inside it
    return region if region and region[-1].outputs[0] == y else None


def _evaluate(g: Graph, region: list[Node], x: str, grid: np.ndarray) -> np.ndarray | None:
    env = {x: grid}
    try:
        with np.errstate(all="ignore"):
            for n in region:
                xs = [env[i] if i in env else
                      (np.asarray(const(g, i), np.float64).reshape(-1)[:1] if i else None)
                      for i in n.inputs]
                if n.op == "Cast":
                    out = np.asarray(xs[0], np.float64)
                else:
                    out = np.asarray(OPS[n.op].compute(xs, with_defaults(n.op, n.attrs))[0],
                                     np.float64)
                env[n.outputs[0]] = np.broadcast_to(out, grid.shape).astype(np.float64)
    except Exception:  # noqa: BLE001 - an op the grid cannot evaluate: not an activation
        return None
    return env[region[-1].outputs[0]]


def match(values: np.ndarray, grid: np.ndarray = GRID) -> str | None:
    """The activation whose numbers on ``grid`` are ``values`` (to RTOL), or None."""
    if not np.all(np.isfinite(values)):
        return None
    with np.errstate(all="ignore"):
        for name, f in ACTIVATIONS.items():
            ref = f(grid)
            if np.all(np.abs(values - ref) <= RTOL * np.maximum(1.0, np.abs(ref))):
                return name
    return None


def find(g: Graph):
    """Yield (region, x, fn) for every activation, outermost first (does not change g)."""
    info = classify(g)
    used: set[str] = set()
    topo = g.topo_nodes()
    order = {m.name: i for i, m in enumerate(topo)}
    for n in reversed(topo):
        if n.name in used or not _eligible(g, n):
            continue
        y = n.outputs[0]
        if info.get(y) is None or info[y].kind != Kind.TOKEN:
            continue
        nodes = sorted((m for m in _upstream(g, y) if m.name not in used),
                       key=lambda m: order[m.name])
        roots = []
        for m in nodes:
            for i in m.inputs:
                if i and const(g, i) is None and i not in roots:
                    roots.append(i)
        best = None
        for x in roots:  # the earliest root first: the largest region
            if info.get(x) is None or info[x].kind != Kind.TOKEN:
                continue
            region = _region(g, nodes, x, y)
            if region is None or (len(region) == 1 and _op(region[0]) in ("Relu", "Identity")):
                continue
            vals = _evaluate(g, region, x, GRID)
            fn = None if vals is None else match(vals)
            if fn is not None:
                best = (region, x, fn)
                break
        if best is not None:
            used |= {m.name for m in best[0]}
            yield best


def run(g: Graph, ctx=None) -> str:
    found = list(find(g))
    counts: dict[str, int] = {}
    for region, x, fn in found:
        last = region[-1]
        for m in region[:-1]:
            g.remove_node(m.name)
        replace_node(g, last, "Activation", [x], {"fn": fn},
                     onnx_name=last.onnx_name or last.name)
        counts[fn] = counts.get(fn, 0) + 1
    g.prune()
    if not found:
        return "no smooth activation found"
    return "fused " + ", ".join(f"{n} {fn}" for fn, n in sorted(counts.items()))
