"""Pass ``canonical_products``: products of tensors written in one canonical way.

Matches, whatever the exporter made of ``torch.einsum``, broadcasting and ``sum``:

1. ``ReduceSum(Mul(a, b))`` with neither operand constant (``(q.unsqueeze(-2) *
   k.unsqueeze(-3)).sum(-1)``: scores or an attention read written as a broadcast product and a
   sum) → one binary ``Einsum`` (``Unsqueeze`` after it for ``keepdims``);
2. an ``Einsum`` of one operand without repeated letters (``einsum("bhts->bht", w)``: a row sum)
   → ``ReduceSum`` over its summed letters, then ``Transpose`` if the output permutes them;
3. an ``Einsum`` of three or more operands (``einsum("bhts,ts,bhsd->bhtd", a, mask, v)``) → a
   chain of binary ``Einsum`` s, left to right, each keeping only the letters still needed;
4. a binary ``Einsum`` that sums no letter (an elementwise product: a mask times the weights,
   an outer product) → ``Transpose``/``Unsqueeze`` of the operands and a broadcasting ``Mul``;
5. a product of two activations scaled by a constant that is 1 along its last two axes (a
   learned per-head temperature ``s * scale[H, 1, 1]``, as in cosine attention) →
   the same product of the left operand scaled: ``MatMul(a * c, b)``, so that each head's
   scale is a per-feature constant on q.

After it, every product of tensors is a binary Einsum that contracts something, a MatMul/Gemm,
or a Mul — the forms the classification and the attention pass read.

Invariants: graph inputs and outputs keep their names and types; the numbers are the same up to
float summation order (the identities of einsum notation; ``tests/passes/
test_canonical_products.py`` checks each with the interpreter).
"""
from __future__ import annotations

from ..ir.graph import Graph, Node
from ..ir.ops import with_defaults
from ..ir.symbolic import is_sym
from .util import add_op, const

LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


def _terms(n: Node) -> tuple[list[str], str] | None:
    eq = str(n.attrs["equation"]).replace(" ", "")
    if "." in eq or "->" not in eq:  # ellipsis, implicit output: left alone
        return None
    lhs, out = eq.split("->")
    return lhs.split(","), out


def _one(d) -> bool:
    return not is_sym(d) and int(d) == 1


def _mul_letters(g: Graph, n: Node) -> tuple[list[str], str]:
    """Einsum terms of a broadcasting Mul: an operand axis of size 1 under an output axis that is
    not gets a letter of its own (summed over its one element)."""
    out = g.values[n.outputs[0]].shape
    r = len(out)
    letters = LETTERS[:r]
    fresh = iter(LETTERS[r:])
    terms = []
    for v in n.inputs:
        s = g.values[v].shape
        term = ""
        for i, d in enumerate(s):
            j = r - len(s) + i
            term += next(fresh) if _one(d) and not _one(out[j]) else letters[j]
        terms.append(term)
    return terms, letters


def _mul_reduce(g: Graph, r: Node) -> bool:
    """1. ReduceSum(Mul(a, b)) → Einsum."""
    if r.op != "ReduceSum" or len(r.inputs) != 1:
        return False
    m = g.producer(r.inputs[0])
    if m is None or m.op != "Mul" or len(m.inputs) != 2 or len(g.consumers(m.outputs[0])) != 1 \
            or m.outputs[0] in g.outputs or any(const(g, v) is not None for v in m.inputs):
        return False
    a = with_defaults("ReduceSum", r.attrs)
    rank = g.values[m.outputs[0]].rank
    axes = a["axes"]
    if axes is None or len(axes) == 0:
        if a["noop_with_empty_axes"]:
            return False
        axes = list(range(rank))
    axes = sorted({int(x) % rank for x in axes})
    terms, letters = _mul_letters(g, m)
    out = "".join(c for i, c in enumerate(letters) if i not in axes)
    y = r.outputs[0]
    g.remove_node(r.name)
    g.remove_node(m.name)
    eq = f"{terms[0]},{terms[1]}->{out}"
    if a["keepdims"]:
        e = add_op(g, "Einsum", list(m.inputs), {"equation": eq}, onnx_name=r.onnx_name)
        add_op(g, "Unsqueeze", [e], {"axes": axes}, out=y, onnx_name=r.onnx_name)
    else:
        add_op(g, "Einsum", list(m.inputs), {"equation": eq}, out=y, onnx_name=r.onnx_name)
    return True


def _unary(g: Graph, n: Node, terms, out) -> bool:
    """2. einsum("bhts->bht", w) → ReduceSum (+ Transpose)."""
    (t,) = terms
    if len(set(t)) != len(t):
        return False
    summed = [i for i, c in enumerate(t) if c not in out]
    kept = [c for c in t if c in out]
    perm = [kept.index(c) for c in out]
    permute = perm != list(range(len(perm)))
    y, x = n.outputs[0], n.inputs[0]
    g.remove_node(n.name)
    if summed:
        x = add_op(g, "ReduceSum", [x], {"axes": summed, "keepdims": 0},
                   out=None if permute else y, onnx_name=n.onnx_name)
    if permute:
        add_op(g, "Transpose", [x], {"perm": perm}, out=y, onnx_name=n.onnx_name)
    elif not summed:
        add_op(g, "Identity", [x], out=y, onnx_name=n.onnx_name)
    return True


def _chain(g: Graph, n: Node, terms, out) -> bool:
    """3. an n-ary Einsum → binary Einsums, left to right."""
    y = n.outputs[0]
    g.remove_node(n.name)
    cur, cur_t = n.inputs[0], terms[0]
    for i in range(1, len(terms)):
        t = terms[i]
        if i == len(terms) - 1:
            add_op(g, "Einsum", [cur, n.inputs[i]], {"equation": f"{cur_t},{t}->{out}"},
                   out=y, onnx_name=n.onnx_name)
            break
        later = set("".join(terms[i + 1:])) | set(out)
        keep = "".join(c for c in dict.fromkeys(cur_t + t) if c in later)
        cur = add_op(g, "Einsum", [cur, n.inputs[i]], {"equation": f"{cur_t},{t}->{keep}"},
                     onnx_name=n.onnx_name)
        cur_t = keep
    return True


def _elementwise(g: Graph, n: Node, terms, out) -> bool:
    """4. a binary Einsum that sums nothing → aligned operands and a Mul."""
    if set("".join(terms)) != set(out) or any(len(set(t)) != len(t) for t in terms):
        return False
    if all(const(g, v) is not None for v in n.inputs):
        return False
    y = n.outputs[0]
    g.remove_node(n.name)
    ops = []
    for v, t in zip(n.inputs, terms):
        order = sorted(t, key=out.index)
        if list(order) != list(t):
            v = add_op(g, "Transpose", [v], {"perm": [t.index(c) for c in order]})
        missing = [i for i, c in enumerate(out) if c not in t]
        if missing:
            v = add_op(g, "Unsqueeze", [v], {"axes": missing})
        ops.append(v)
    add_op(g, "Mul", ops, out=y, onnx_name=n.onnx_name)
    return True


def _scaled_product(g: Graph, n: Node) -> bool:
    """5. Mul/Div(MatMul(a, b), c), c a constant that is 1 along the product's last two axes (a
    per-head scale [H, 1, 1]) → MatMul(Mul/Div(a, c), b): the scale moves onto the left operand."""
    if n.op not in ("Mul", "Div") or len(n.inputs) != 2:
        return False
    p_in = next((i for i in n.inputs if const(g, i) is None), None)
    c_in = next((i for i in n.inputs if const(g, i) is not None), None)
    if p_in is None or c_in is None or (n.op == "Div" and n.inputs[1] != c_in):
        return False
    p = g.producer(p_in)
    c = const(g, c_in)
    if p is None or p.op != "MatMul" or any(const(g, i) is not None for i in p.inputs) \
            or len(g.consumers(p_in)) != 1 or p_in in g.outputs or c.size <= 1:
        return False
    rank = g.values[p_in].rank
    if c.ndim > rank or c.ndim < 2 or c.shape[-1] != 1 or c.shape[-2] != 1 \
            or c.ndim > g.values[p.inputs[0]].rank:
        return False
    a, b = p.inputs[0], p.inputs[1]
    out = n.outputs[0]
    g.remove_node(n.name)
    g.remove_node(p.name)
    scaled = add_op(g, n.op, [a, c_in], onnx_name=n.onnx_name)
    add_op(g, "MatMul", [scaled, b], out=out, onnx_name=p.onnx_name)
    return True


def _rewrite(g: Graph, n: Node) -> str | None:
    if n.op == "ReduceSum":
        return "mul+sum" if _mul_reduce(g, n) else None
    if n.op in ("Mul", "Div"):
        return "scaled product" if _scaled_product(g, n) else None
    spec = _terms(n) if n.op == "Einsum" else None
    if spec is None:
        return None
    terms, out = spec
    if len(terms) == 1:
        return "unary" if _unary(g, n, terms, out) else None
    if len(terms) > 2:
        return "n-ary" if _chain(g, n, terms, out) else None
    return "elementwise" if _elementwise(g, n, terms, out) else None


def run(g: Graph, ctx=None) -> str:
    done = {"mul+sum": 0, "unary": 0, "n-ary": 0, "elementwise": 0, "scaled product": 0}
    for _ in range(8):  # one rewrite can expose another (an n-ary chain's elementwise step)
        changed = False
        for n in g.topo_nodes():
            kind = _rewrite(g, n) if n.name in g.nodes else None
            if kind is not None:
                done[kind] += 1
                changed = True
        if not changed:
            break
    g.prune()
    if not any(done.values()):
        return "no product to rewrite"
    return "rewrote " + ", ".join(f"{v} {k}" for k, v in done.items() if v)
