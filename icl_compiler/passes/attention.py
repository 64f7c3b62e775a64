"""Pass ``attention``: causal softmax-free attention → one ``PlasticAttention`` per layer.

Matches, for every product of two activations ``Q·Kᵀ`` (``MatMul(Q, Transpose(K))`` with the
Transpose swapping the last two axes, or ``Einsum("…td,…sd->…ts")``):

- operand sources: optional scalar ``Mul``/``Div`` scales on Q and K; ``SplitHeads(q)`` (batched
  heads, [B, H, T, d]) or a plain [B, T, d] value (one head);
- the score chain, one step at a time from the table :data:`STEPS`: scalar scales (``Mul``/``Div``
  by a constant), masks (``Mul`` by a mask, ``Where(cond, s, fill)`` / ``Where(cond, fill, s)``,
  ``Add``/``Sub`` of a mask), f atoms (``Relu``; ``Pow(·, 2)`` / ``Mul(s, s)``), an optional row
  normalisation ``s / (ReduceSum(s, -1) + eps)``; it ends at ``A·V`` (``MatMul`` or ``Einsum``),
  optionally followed by ``Div(A·V, ReduceSum(A, -1) [+ eps])``;
- the result consumed by ``MergeHeads`` (batched), or per-head results joined by ``Concat`` on the
  last axis (per-head projections).

Causality is checked numerically, not from the mask's construction: the score chain (with its
mask subgraphs, which may depend only on dims and constants) is evaluated with the interpreter on
random scores for a few sequence lengths and must equal ``tril ⊙ post·f(pre·S)`` exactly.

Produces: ``PlasticAttention(q, k, v)`` on merged heads (q, k [B, T, H·d_k], v [B, T, H·d_v]) with
attributes heads, d_k, d_v, f, scale, normalisation, eps, T_max, lowering (from the context) and
layer (order of appearance), computing the value the MergeHeads/Concat computed.  q/k/v come
straight from the projections (per-head Linears are merged into one Linear); a MergeHeads or
SplitHeads is inserted only when the model's layout has no such source.

Raises CompileError naming the ONNX node for softmax attention, attention that is not causally
masked, score functions that are not elementwise (or not identity/ReLU/ReLU²), masks computed
from the input data, a dynamic context length without a bound, and products of two activations
that are not attention.

Invariants: graph inputs/outputs and their types are unchanged; numbers are unchanged up to
float rounding (reassociated scales); no MatMul of two activations remains.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import CompileError
from ..ir.graph import Graph, Node
from ..ir.interpreter import run as interpret
from ..ir.ops import F_FUNCS, with_defaults
from ..ir.symbolic import has_sym, is_sym, resolve
from .base import PassContext
from .heads import merge_linears
from .pattern import Match, Pattern, Var, alt, op
from .util import (
    add_op,
    ancestors,
    const,
    depends_on_inputs,
    is_nonconst,
    is_scalar_const,
    reduces_last_axis,
    scalar,
    scalar_is,
)

SOFTMAX_HINT = ("retrain the model with softmax-free attention, e.g. f = ReLU: "
                "out_t = Σ_{s≤t} relu(q_t·k_s/√d) v_s (optionally divided by the row sum)")
SOFTMAX_REASON = ("softmax attention cannot be mapped to plastic synapses: a plastic KV write "
                  "stores one slot per token and each slot applies f(q·k_s) on its own, but "
                  "softmax needs all past scores at once to normalise")
ELEMENTWISE_UNARY = {"Exp", "Sigmoid", "Tanh", "Gelu", "Erf", "Abs", "Neg", "Sqrt", "Reciprocal"}

# -- the score-chain step table --------------------------------------------------------------
S, C = Var("s"), Var("c", is_scalar_const)
M = Var("m", lambda g, v: bool(v) and not is_scalar_const(g, v))
FILL, COND = Var("fill"), Var("cond")


def _swaps_last_two(g: Graph, n: Node) -> bool:
    p = with_defaults(n.op, n.attrs)["perm"]
    r = g.values[n.inputs[0]].rank
    p = list(p) if p is not None else list(reversed(range(r)))
    return r >= 2 and p == list(range(r - 2)) + [r - 1, r - 2]


@dataclass(frozen=True)
class Step:
    role: str  # scale | inv_scale | mask | relu | square | rownorm
    pattern: Pattern


STEPS: list[Step] = [
    Step("scale", Pattern(op("Mul", S, C))),
    Step("inv_scale", Pattern(op("Div", S, C))),
    Step("square", Pattern(alt(op("Pow", S, Var("two", scalar_is(2.0))), op("Mul", S, S)))),
    Step("relu", Pattern(op("Relu", S))),
    Step("mask", Pattern(alt(op("Mul", S, M), op("Add", S, M), op("Sub", S, M, commutative=False),
                             op("Where", COND, S, FILL), op("Where", COND, FILL, S)))),
    Step("rownorm", Pattern(op("Div", S, alt(
        op("Add", op("ReduceSum", S, where=reduces_last_axis), Var("eps", is_scalar_const)),
        op("ReduceSum", S, where=reduces_last_axis))))),
]
F_OF_ATOMS = {(): "identity", ("relu",): "relu", ("relu", "square"): "relu2",
              ("relu", "relu"): "relu"}
F_DEGREE = {"identity": 1, "relu": 1, "relu2": 2}

# -- operand sources ------------------------------------------------------------------------
X = Var("x")
SCALED = Pattern(alt(op("Mul", X, C), op("Div", X, C, name="div")), single_use=False)
SWAP_LAST = Pattern(op("Transpose", X, where=_swaps_last_two), single_use=False)
SPLIT_HEADS = Pattern(op("SplitHeads", X), single_use=False)
AV = Var("av")
POST_ROWNORM = Pattern(op("Div", AV, alt(
    op("Add", op("ReduceSum", Var("a"), where=reduces_last_axis), Var("eps", is_scalar_const)),
    op("ReduceSum", Var("a"), where=reduces_last_axis))))


@dataclass
class Source:
    """Where one attention operand comes from: a merged-heads value, or (when the model has no
    SplitHeads) the per-head value that needs a MergeHeads."""
    merged: str | None
    per_head: str
    heads: int
    dim: int


@dataclass
class Attn:
    scores: Node
    av: Node
    out: str  # the value this attention computes ([B, H, T, d_v] or [B, T, d_v])
    q: Source
    k: Source
    v: Source
    f: str
    scale: float
    normalisation: str
    eps: float
    t_max: int

    def key(self):
        return (self.f, self.scale, self.normalisation, self.eps, self.t_max, self.q.dim, self.v.dim)


def _err(node: Node, reason: str, hint: str | None = None) -> CompileError:
    return CompileError(reason, node=node.onnx_name or node.name, op=node.op, hint=hint)


def _peel_scale(g: Graph, v: str) -> tuple[str, float]:
    factor = 1.0
    while True:
        m = SCALED.match_value(g, v)
        if m is None:
            return v, factor
        c = scalar(g, m["c"])
        factor = factor / c if m.node("div") is not None else factor * c
        v = m["x"]


def _source(g: Graph, v: str) -> Source:
    m = SPLIT_HEADS.match_value(g, v)
    shape = g.values[v].shape
    d = shape[-1]
    if m is not None:
        return Source(m["x"], v, int(m.root.attrs["heads"]), int(d))
    if len(shape) <= 3:
        return Source(v, v, 1, int(d))
    h = shape[-3]
    if is_sym(h) or is_sym(d):
        raise CompileError(f"attention operand {v!r} has a dynamic head axis or head size {shape}")
    return Source(None, v, int(h), int(d))


def _einsum_role(eq: str) -> str | None:
    """"scores" for ``P t d, P s d -> P t s``, "av" for ``P t s, P s e -> P t e``, else None."""
    eq = eq.replace(" ", "")
    if "->" not in eq or "." in eq:
        return None
    lhs, out = eq.split("->")
    terms = lhs.split(",")
    if len(terms) != 2 or not (len(terms[0]) == len(terms[1]) == len(out) >= 2):
        return None
    a, b = terms
    P = out[:-2]
    if a[:-2] != P or b[:-2] != P:
        return None
    t = out[-2]
    if a[-2] != t or len(set(a)) != len(a) or len(set(b)) != len(b):
        return None
    if b[-1] == a[-1] and a[-1] not in out and out[-1] == b[-2] != t:
        return "scores"
    if a[-1] == b[-2] and a[-1] not in out and out[-1] == b[-1] != t:
        return "av"
    return None


def _is_product(g: Graph, n: Node) -> bool:
    return n.op in ("MatMul", "Einsum") and len(n.inputs) == 2 and all(
        is_nonconst(g, i) for i in n.inputs)


def _scores_operands(g: Graph, n: Node) -> tuple[str, str, float] | None:
    """(Q per-head value, K per-head value, scale) if ``n`` computes Q·Kᵀ."""
    if not _is_product(g, n):
        return None
    qh, sq = _peel_scale(g, n.inputs[0])
    if n.op == "Einsum":
        if _einsum_role(n.attrs["equation"]) != "scores":
            return None
        kh, sk = _peel_scale(g, n.inputs[1])
        return qh, kh, sq * sk
    kt, sk1 = _peel_scale(g, n.inputs[1])
    m = SWAP_LAST.match_value(g, kt)
    if m is None:
        return None
    kh, sk2 = _peel_scale(g, m["x"])
    return qh, kh, sq * sk1 * sk2


def _av_node(g: Graph, a: str) -> Node | None:
    for c in g.consumers(a):
        if not _is_product(g, c) or c.inputs[0] != a:
            continue
        if c.op == "MatMul" or _einsum_role(c.attrs["equation"]) == "av":
            return c
    return None


def _unsupported(g: Graph, node: Node) -> CompileError:
    if node.op == "Softmax":
        return _err(node, SOFTMAX_REASON, SOFTMAX_HINT)
    if node.op in ELEMENTWISE_UNARY:
        return _err(node, f"attention score function {node.op} is not supported (f must be "
                          "identity, ReLU or ReLU², with optional scaling and row-sum "
                          "normalisation)", "retrain with f = ReLU")
    return _err(node, f"the attention score function is not elementwise ({node.op} mixes scores "
                      "across positions or with other data); a plastic KV cache applies f to each "
                      "slot's score on its own", "use an elementwise f such as ReLU")


def _walk(g: Graph, scores: Node) -> tuple[list[tuple[str, Match]], str, Node]:
    """Follow the score chain from Q·Kᵀ to A·V; returns the steps, A and the A·V node."""
    steps: list[tuple[str, Match]] = []
    cur = scores.outputs[0]
    while True:
        cons = g.consumers(cur)
        if cur in g.outputs or not cons:
            raise _err(scores, "attention scores are never multiplied by V")
        av = _av_node(g, cur)
        if av is not None:
            return steps, cur, av
        found = None
        for c in cons:
            for st in STEPS:
                m = st.pattern.match_node(g, c, bind={"s": cur})
                if m is not None and {n.name for n in cons} <= m.node_names:
                    found = (st.role, m)
                    break
            if found:
                break
        if found is None:
            bad = next((c for c in cons if c.op == "Softmax"), cons[0])
            if len(cons) > 1 and bad.op != "Softmax":
                raise _err(scores, "the attention scores are used by several ops "
                                   f"({', '.join(c.op for c in cons)}); only an elementwise "
                                   "chain ending in ·V can be mapped")
            raise _unsupported(g, bad)
        if steps and steps[-1][0] == "rownorm":
            raise _err(found[1].root, "the attention weights are changed after the row-sum "
                                      "normalisation; only ·V may follow it")
        steps.append(found)
        cur = found[1].root.outputs[0]


def _mask_operands(m: Match) -> list[str]:
    return [m.values[k] for k in ("m", "cond", "fill") if k in m.values]


def _buffer_size(g: Graph, masks: list[str]) -> int | None:
    sizes = []
    for v in masks:
        for n in ancestors(g, v):
            a = with_defaults(n.op, n.attrs)
            if n.op == "Slice" and const(g, n.inputs[0]) is not None and has_sym(a["ends"]):
                shape = const(g, n.inputs[0]).shape
                axes = a["axes"] if a["axes"] is not None else range(len(a["starts"]))
                sizes += [shape[ax] for ax in axes]
    return min(sizes) if sizes else None


def _check_chain(g: Graph, scores: Node, steps, end: str, f: str, pre: float, post: float,
                 lengths: list[int]) -> None:
    """Evaluate the elementwise score chain on random scores and compare it with
    tril ⊙ post·f(pre·S): the upper triangle must vanish (causality), the rest must match."""
    nodes = {n.name: n for _, m in steps for n in
             ([m.root] + [a for v in _mask_operands(m) for a in ancestors(g, v)])}
    sub = Graph("score_chain")
    s_val = scores.outputs[0]
    for n in g.topo_nodes():
        if n.name in nodes:
            for v in n.inputs + n.outputs:
                if v:
                    sub.values[v] = g.values[v]
            sub.add_node(n.op, n.inputs, n.outputs, n.attrs, name=n.name)
    sub.values[s_val] = g.values[s_val]
    for v in g.inputs:
        sub.values[v] = g.values[v]
    sub.inputs = [s_val] + [v for v in g.inputs if v != s_val]
    sub.outputs = [end]
    shape = g.values[s_val].shape
    rng = np.random.default_rng(0)
    for T in lengths:
        env = {}
        for v in sub.inputs:
            for d in g.values[v].shape:
                if is_sym(d):
                    for sy in d.free_symbols:
                        env.setdefault(sy.name, 1)
        for d in shape[-2:]:
            if is_sym(d):
                for sy in d.free_symbols:
                    env[sy.name] = T
        feeds = {v: np.zeros(resolve(tuple(g.values[v].shape), env), g.values[v].dtype)
                 for v in sub.inputs}
        S_ = rng.normal(0, 2, resolve(tuple(shape), env))
        feeds[s_val] = S_
        try:
            A = interpret(sub, feeds, float_dtype="float64")[end]
        except Exception as e:  # noqa: BLE001 - a mask we cannot evaluate is not a causal mask
            raise _err(scores, f"cannot evaluate the attention mask at sequence length {T} "
                               f"({type(e).__name__}: {e})") from None
        if A.shape != S_.shape:
            raise _err(scores, f"the attention mask changes the scores' shape {S_.shape} to "
                               f"{A.shape}; the mask must broadcast over [..., T, T]")
        tril = np.tril(np.ones((T, T)))
        want = tril * post * F_FUNCS[f](pre * S_)
        tol = 1e-9 * max(1.0, float(np.max(np.abs(want))))
        if not np.all(np.abs(A * (1 - tril)) <= tol):
            raise _err(scores, "attention is not causal: after masking, query t still sees keys "
                               f"s > t (checked at sequence length {T}); a plastic KV cache only "
                               "holds the tokens seen so far",
                       "mask the scores with a lower-triangular (causal) mask")
        if not np.allclose(A, want, rtol=1e-9, atol=tol):
            raise _err(scores, f"the attention score function is not of the form "
                               f"post·f(scale·q·k) with f = {f} (checked at sequence length {T})",
                       "use f ∈ {identity, relu, relu2} with constant scales")


def _analyse(g: Graph, scores: Node, qh: str, kh: str, qk_scale: float, ctx) -> Attn:
    steps, a, av = _walk(g, scores)
    atoms: list[str] = []
    pre, post = 1.0, 1.0  # scales in the chain before / after the first f atom
    eps, norm = 0.0, "none"
    masks: list[str] = []
    for role, m in steps:
        if role in ("scale", "inv_scale"):
            c = scalar(g, m["c"])
            c = 1.0 / c if role == "inv_scale" else c
            if atoms:
                post *= c
            else:
                pre *= c
        elif role in ("relu", "square"):
            atoms.append(role)
        elif role == "mask":
            for v in _mask_operands(m):
                if depends_on_inputs(g, v):
                    raise _err(m.root, "the attention mask depends on the input data; only "
                                       "causal masks computed from the sequence length and "
                                       "constants can be mapped")
            masks += _mask_operands(m)
        elif role == "rownorm":
            norm, eps = "rowsum", scalar(g, m["eps"]) if "eps" in m.values else 0.0
    f = F_OF_ATOMS.get(tuple(atoms))
    if f is None:
        node = next(m.root for r, m in steps if r in ("relu", "square"))
        raise _err(node, f"attention score function {' then '.join(atoms)} is not supported "
                         "(f must be identity, ReLU or ReLU²)", "retrain with f = ReLU")
    end = a if not (steps and steps[-1][0] == "rownorm") else steps[-1][1].values["s"]
    out = av.outputs[0]
    if norm == "none":
        for c in g.consumers(out):
            m = POST_ROWNORM.match_node(g, c, bind={"av": out, "a": a})
            if m is not None:
                norm, eps, out = "rowsum", scalar(g, m["eps"]) if "eps" in m.values else 0.0, \
                    m.root.outputs[0]
                break
    extra = [c for c in g.consumers(a) if c.name != av.name and not (
        norm == "rowsum" and c.op == "ReduceSum")]
    if extra:
        raise _unsupported(g, extra[0])
    # T_max
    seq = g.values[scores.outputs[0]].shape[-1]
    buf = _buffer_size(g, masks)
    if ctx.max_context is not None:
        t_max = int(ctx.max_context)
    elif not is_sym(seq):
        t_max = int(seq)
    elif buf is not None:
        t_max = int(buf)
    else:
        raise _err(scores, "the sequence axis is dynamic and the attention mask does not fix a "
                           "maximum context length, so the number of plastic KV slots (T_max) is "
                           "unknown", "pass --max-context N (compile(..., max_context=N))")
    if not is_sym(seq):
        lengths = [int(seq)]
    else:
        cap = min(t_max, buf or t_max, 64)
        lengths = sorted({min(2, cap), min(5, cap), cap})
    # single scale inside f
    if f != "identity" and post <= 0:
        raise _err(scores, f"a non-positive scale after f = {f} cannot be folded into the scores")
    _check_chain(g, scores, [s for s in steps if s[0] != "rownorm"], end, f, pre, post, lengths)
    scale = qk_scale * pre * post ** (1.0 / F_DEGREE[f])
    q, k, v = _source(g, qh), _source(g, kh), _source(g, av.inputs[1])
    if not (q.heads == k.heads == v.heads) or q.dim != k.dim:
        raise _err(scores, f"attention operands disagree on heads/head size (q {q.heads}×{q.dim}, "
                           f"k {k.heads}×{k.dim}, v {v.heads}×{v.dim})")
    return Attn(scores, av, out, q, k, v, f, scale, norm, eps, t_max)


def _find(g: Graph, ctx) -> list[Attn]:
    found: list[Attn] = []
    consumed: set[str] = set()
    for n in g.topo_nodes():
        if n.name in consumed:
            continue
        ops = _scores_operands(g, n)
        if ops is None:
            continue
        att = _analyse(g, n, *ops, ctx)
        consumed.add(att.av.name)
        found.append(att)
    for n in g.topo_nodes():
        if _is_product(g, n) and n.name not in consumed and n.name not in {a.scores.name for a in found}:
            raise _err(n, "a product of two activations that is not causal attention Q·Kᵀ / A·V; "
                          "only attention can multiply activations (its K and V live in plastic "
                          "synapses)")
    return found


def _merged(g: Graph, srcs: list[Source], name: str | None) -> str:
    vals = [s.merged if s.merged is not None else add_op(g, "MergeHeads", [s.per_head])
            for s in srcs]
    if len(vals) == 1:
        return vals[0]
    return merge_linears(g, vals, onnx_name=name) or add_op(g, "Concat", vals, {"axis": -1})


def _groups(g: Graph, atts: list[Attn]) -> list[tuple[list[Attn], str]]:
    """Group per-head attentions joined by a last-axis Concat; returns (heads, value computed)."""
    by_out = {a.out: a for a in atts}
    grouped: set[str] = set()
    groups = []
    for n in g.topo_nodes():
        if n.op != "Concat" or len(n.inputs) < 2:
            continue
        ax = n.attrs["axis"]
        members = [by_out.get(i) for i in n.inputs]
        if (ax in (-1, g.values[n.inputs[0]].rank - 1) and all(m is not None for m in members)
                and all(m.q.heads == 1 and g.values[m.out].rank <= 3 for m in members)
                and len({m.key() for m in members}) == 1
                and all(len(g.consumers(m.out)) == 1 and m.out not in g.outputs for m in members)
                and len(set(n.inputs)) == len(n.inputs)):
            groups.append((members, n.outputs[0]))
            grouped.update(m.out for m in members)
    for a in atts:
        if a.out not in grouped:
            groups.append(([a], a.out))
    order = {n.name: i for i, n in enumerate(g.topo_nodes())}
    groups.sort(key=lambda gr: order[gr[0][0].scores.name])
    return groups


def _rewrite(g: Graph, members: list[Attn], target: str, layer: int, ctx) -> None:
    a0 = members[0]
    heads = sum(m.q.heads for m in members)
    name = a0.scores.onnx_name
    q = _merged(g, [m.q for m in members], name)
    k = _merged(g, [m.k for m in members], name)
    v = _merged(g, [m.v for m in members], name)
    attrs = {"heads": heads, "d_k": a0.q.dim, "d_v": a0.v.dim, "f": a0.f, "scale": a0.scale,
             "normalisation": a0.normalisation, "eps": a0.eps, "T_max": a0.t_max,
             "lowering": ctx.lowering, "layer": layer}
    # per-head values with a head axis ([B, H, T, d_v]) are merged back by a MergeHeads, which
    # the PlasticAttention replaces; without one, a SplitHeads restores the model's layout
    head_axis = any(m.v.merged != m.v.per_head for m in members)
    cons = g.consumers(target)
    if head_axis and len(cons) == 1 and cons[0].op == "MergeHeads" and target not in g.outputs:
        target, head_axis = cons[0].outputs[0], False
    g.remove_node(g.producer(target).name)
    if head_axis:
        pa = add_op(g, "PlasticAttention", [q, k, v], attrs, base="plastic_attention",
                    onnx_name=name)
        add_op(g, "SplitHeads", [pa], {"heads": heads}, out=target)
    else:
        add_op(g, "PlasticAttention", [q, k, v], attrs, out=target, onnx_name=name)


def run(g: Graph, ctx: PassContext | None = None) -> str:
    ctx = ctx or PassContext()
    atts = _find(g, ctx)
    if not atts:
        return "no attention found"
    groups = _groups(g, atts)
    for layer, (members, target) in enumerate(groups):
        _rewrite(g, members, target, layer, ctx)
    g.prune()
    heads = sum(m.q.heads for members, _ in groups for m in members)
    desc = sorted({f"f={m.f} norm={m.normalisation} T_max={m.t_max}"
                   for members, _ in groups for m in members})
    return (f"rewrote {len(groups)} attention layer(s), {heads} head(s), into PlasticAttention "
            f"({'; '.join(desc)}, lowering={ctx.lowering})")


def attention_report(graph: Graph) -> list[dict]:
    """One entry per head of every PlasticAttention, in layer order."""
    out = []
    for n in graph.topo_nodes():
        if n.op != "PlasticAttention":
            continue
        a = with_defaults(n.op, n.attrs)
        for h in range(int(a["heads"])):
            out.append({"layer": int(a["layer"]), "head": h, "f": a["f"],
                        "scale": float(a["scale"]), "normalisation": a["normalisation"],
                        "eps": float(a["eps"]), "T_max": int(a["T_max"]),
                        "lowering": a["lowering"], "d_k": int(a["d_k"]), "d_v": int(a["d_v"]),
                        "node": n.onnx_name or n.name})
    return out
