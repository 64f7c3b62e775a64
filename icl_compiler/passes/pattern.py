"""A small declarative pattern language for the tensor IR.

A pattern is an expression tree that mirrors how the IR computes a value::

    x, w, b = Var("x"), Var("w", is_const_2d), Var("b", is_const)
    mm = op("MatMul", x, w, name="mm")
    LINEAR = Pattern(op("Add", mm, b, name="add"))

- :class:`Var` binds any value (optionally filtered by a predicate); the same name binds the
  same value everywhere in the pattern.
- :func:`op` matches a node of one of the given op types whose output is the value being
  matched, then its inputs slot by slot.  Binary ``Add/Mul/Max/Min/And/Or/Equal`` also match with
  their operands swapped.  Keyword arguments are attribute constraints (a value, or a predicate
  on the attribute with the op's defaults filled in); ``where`` is a predicate on the node.
- Reusing the same ``op(...)`` object twice means "the same node" (shared subexpressions).
- :class:`Alt` tries alternatives in order (e.g. ``Pow(d, 2)`` or ``Mul(d, d)``).

Matching is anchored: :meth:`Pattern.match_value` matches the pattern's root against the node
producing a given value; :meth:`Pattern.find_all` tries every node in topological order.
By default every matched node except the root must have no users outside the match
(``single_use``), so a rewrite that replaces the root never duplicates work.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ..ir.graph import Graph, Node
from ..ir.ops import with_defaults

COMMUTATIVE = frozenset({"Add", "Mul", "Max", "Min", "And", "Or", "Equal"})

ValuePred = Callable[[Graph, str], bool]
NodePred = Callable[[Graph, Node], bool]


class Pat:
    """Base class of pattern nodes."""


@dataclass(eq=False)
class Var(Pat):
    name: str
    pred: ValuePred | None = None


@dataclass(eq=False)
class Op(Pat):
    ops: tuple[str, ...]
    args: tuple[Pat, ...]
    name: str | None = None
    attrs: dict[str, Any] = field(default_factory=dict)
    where: NodePred | None = None
    commutative: bool | None = None
    output: int = 0
    variadic: bool = False  # extra trailing inputs are allowed (and not matched)


@dataclass(eq=False)
class Alt(Pat):
    options: tuple[Pat, ...]


def op(ops: str | tuple[str, ...], *args: Pat, name: str | None = None,
       where: NodePred | None = None, commutative: bool | None = None, output: int = 0,
       variadic: bool = False, **attrs: Any) -> Op:
    return Op(tuple([ops] if isinstance(ops, str) else ops), tuple(args), name, attrs, where,
              commutative, output, variadic)


def alt(*options: Pat) -> Alt:
    return Alt(tuple(options))


@dataclass
class Match:
    root: Node
    nodes: dict[str, Node]  # pattern label -> node
    values: dict[str, str]  # Var name -> value name
    node_names: frozenset[str]

    def __getitem__(self, key: str) -> str:
        return self.values[key]

    def node(self, label: str) -> Node | None:
        return self.nodes.get(label)


Binding = dict  # ("var", name) -> value, ("op", id) -> node name, ("label", name) -> node name


def _attr_ok(node: Node, want: dict[str, Any]) -> bool:
    if not want:
        return True
    have = with_defaults(node.op, node.attrs)
    for k, v in want.items():
        a = have.get(k)
        if callable(v):
            if not v(a):
                return False
        elif a != v:
            return False
    return True


def _match(g: Graph, p: Pat, value: str, b: Binding) -> Iterator[Binding]:
    if isinstance(p, Var):
        key = ("var", p.name)
        if key in b:
            if b[key] == value:
                yield b
            return
        if p.pred is None or p.pred(g, value):
            yield {**b, key: value}
        return
    if isinstance(p, Alt):
        for o in p.options:
            yield from _match(g, o, value, b)
        return
    assert isinstance(p, Op)
    node = g.producer(value) if value else None
    if node is None or node.op not in p.ops or node.outputs.index(value) != p.output:
        return
    key = ("op", id(p))
    if key in b:
        if b[key] == node.name:
            yield b
        return
    if any(k[0] == "op" and v == node.name for k, v in b.items()):
        return  # one graph node per pattern node
    if not _attr_ok(node, p.attrs) or (p.where is not None and not p.where(g, node)):
        return
    ins = node.inputs
    if p.variadic:
        if len(ins) < len(p.args):
            return
        ins = ins[:len(p.args)]
    elif len(ins) != len(p.args):
        return
    b2 = {**b, key: node.name}
    if p.name:
        b2[("label", p.name)] = node.name
    comm = p.commutative if p.commutative is not None else node.op in COMMUTATIVE
    orders = [p.args]
    if comm and len(p.args) == 2:
        orders.append(p.args[::-1])
    for order in orders:
        yield from _match_seq(g, order, ins, b2)


def _match_seq(g: Graph, pats, values, b: Binding) -> Iterator[Binding]:
    if not pats:
        yield b
        return
    for b2 in _match(g, pats[0], values[0], b):
        yield from _match_seq(g, pats[1:], values[1:], b2)


def _root_ops(p: Pat) -> set[str] | None:
    if isinstance(p, Op):
        return set(p.ops)
    if isinstance(p, Alt):
        out: set[str] = set()
        for o in p.options:
            r = _root_ops(o)
            if r is None:
                return None
            out |= r
        return out
    return None


class Pattern:
    """An anchored pattern with an optional whole-match ``check(graph, match) -> bool``."""

    def __init__(self, root: Pat, *, check: Callable[[Graph, Match], bool] | None = None,
                 single_use: bool = True, name: str = ""):
        self.root = root
        self.check = check
        self.single_use = single_use
        self.name = name
        self.root_ops = _root_ops(root)
        if not self.root_ops:
            raise ValueError("a pattern's root must be an op (or alternatives of ops)")

    def _finish(self, g: Graph, b: Binding, root: Node) -> Match | None:
        names = frozenset(v for k, v in b.items() if k[0] == "op")
        if self.single_use:
            outs = set(g.outputs)
            for n in names:
                if n == root.name:
                    continue
                for o in g.nodes[n].outputs:
                    if o in outs or any(c.name not in names for c in g.consumers(o)):
                        return None
        m = Match(root, {k[1]: g.nodes[v] for k, v in b.items() if k[0] == "label"},
                  {k[1]: v for k, v in b.items() if k[0] == "var"}, names)
        if self.check is not None and not self.check(g, m):
            return None
        return m

    def match_value(self, g: Graph, value: str, bind: dict[str, str] | None = None) -> Match | None:
        """Match the root against the producer of ``value``; ``bind`` pre-binds Vars."""
        root = g.producer(value)
        if root is None or root.op not in self.root_ops:
            return None
        b0: Binding = {("var", k): v for k, v in (bind or {}).items()}
        for b in _match(g, self.root, value, b0):
            m = self._finish(g, b, root)
            if m is not None:
                return m
        return None

    def match_node(self, g: Graph, node: Node, bind: dict[str, str] | None = None) -> Match | None:
        for o in node.outputs:
            m = self.match_value(g, o, bind)
            if m is not None and m.root is node:
                return m
        return None

    def find_all(self, g: Graph) -> list[Match]:
        """Every match, in topological order of the root (matches may overlap)."""
        out = []
        for n in g.topo_nodes():
            if n.op in self.root_ops:
                m = self.match_node(g, n)
                if m is not None:
                    out.append(m)
        return out


def drop_dead(g: Graph, names) -> None:
    """Remove the named nodes that no longer have users (and their output values)."""
    changed = True
    while changed:
        changed = False
        for n in list(names):
            node = g.nodes.get(n)
            if node is not None and all(o not in g.outputs and not g.consumers(o)
                                        for o in node.outputs):
                g.remove_node(n)
                for o in node.outputs:
                    g.values.pop(o, None)
                changed = True


def rewrite_all(g: Graph, patterns: Pattern | list[Pattern],
                rewrite: Callable[[Graph, Match], bool | None]) -> int:
    """Apply ``rewrite`` to matches until none is left; returns the number of rewrites.

    Each round walks the nodes in topological order and matches each pattern afresh on the
    current graph (so earlier rewrites in the round are seen).  ``rewrite`` returns False to
    decline a match.  After a rewrite, matched nodes left without users are removed.
    """
    if isinstance(patterns, Pattern):
        patterns = [patterns]
    total = 0
    for _ in range(1000):
        done = 0
        for name in [n.name for n in g.topo_nodes()]:
            for p in patterns:
                node = g.nodes.get(name)
                if node is None or node.op not in p.root_ops:
                    continue
                m = p.match_node(g, node)
                if m is not None and rewrite(g, m) is not False:
                    done += 1
                    drop_dead(g, m.node_names)
        total += done
        if not done:
            return total
    raise RuntimeError("rewrite_all: no fixpoint after 1000 rounds (a rewrite does not progress)")
