"""The pairwise region of an attention read and what its numbers say.

The region is every op between the scores S = Q·Kᵀ and the weights A that multiply V, with the
position-only masks, scales and constants feeding it.  It is evaluated with the interpreter on
random scores: its data movement alone (the *skeleton*, every elementwise op replaced by its
pairwise operand) gives the element correspondence between S and A, the numbers give f, the
scale and the normalisation (:func:`_fit`, :func:`_fit_norm`, :func:`_fit_post`).
"""
from __future__ import annotations

import numpy as np

from ...ir import layout as L
from ...ir.graph import Graph, Node
from ...ir.interpreter import run as interpret
from ...ir.ops import F_FUNCS, with_defaults
from ...ir.symbolic import has_sym, is_sym, resolve
from ..classify import ELEMENTWISE, PRODUCTS, Info, Kind
from ..util import ancestors, const
from .common import REL, B, S, _err

def _region(g: Graph, info: dict[str, Info], a_val: str):
    """(region nodes, the scores product, side values) of the pairwise value ``a_val``."""
    stack, nodes, p1s, sides = [a_val], {}, {}, set()
    while stack:
        v = stack.pop()
        n = g.producer(v)
        if n is None or n.name in nodes or n.name in p1s:
            continue
        if "scores" in info[v].flags and n.op in PRODUCTS:
            p1s[n.name] = n
            continue
        nodes[n.name] = n
        for i in n.inputs:
            if not i:
                continue
            k = info[i]
            if k.kind == Kind.PAIR or (k.kind == Kind.MIXED and "rowsum" in k.flags):
                stack.append(i)
            elif k.kind in (Kind.CONST, Kind.POS):
                sides.add(i)
            else:
                raise _err(n, "the attention mask depends on the input data; only causal masks "
                              "computed from the sequence length and constants can be mapped")
    order = {n.name: i for i, n in enumerate(g.topo_nodes())}
    return sorted(nodes.values(), key=lambda n: order[n.name]), list(p1s.values()), sides

def _subgraph(g: Graph, nodes: list[Node], inputs: list[str], outputs: list[str],
              sides=()) -> Graph:
    """A graph of ``nodes`` plus everything that computes their side inputs."""
    keep = {n.name: n for n in nodes}
    for v in sides:
        for n in ancestors(g, v):
            keep.setdefault(n.name, n)
    sub = Graph("region")
    for n in g.topo_nodes():
        if n.name in keep:
            for v in n.inputs + n.outputs:
                if v:
                    sub.values[v] = g.values[v]
            sub.add_node(n.op, n.inputs, n.outputs, n.attrs, name=n.name)
    for v in inputs:
        sub.values[v] = g.values[v]
    for v in g.inputs:  # bound by the region's ancestors only through dims
        sub.values.setdefault(v, g.values[v])
    sub.inputs = list(inputs)
    sub.outputs = list(outputs)
    return sub

def _env_for(layout, T_: int, batch: int = 1) -> dict[str, int]:
    env: dict[str, int] = {}
    for ax in layout:
        for f in ax:
            if is_sym(f.size):
                for s in f.size.free_symbols:
                    env[s.name] = batch if f.kind == B else T_
    return env

def _positions(layout, env, kind: str) -> np.ndarray:
    """An array shaped like the value holding each element's position of factor ``kind``."""
    fs = L.factor_shape(layout, env)
    ks = L.kinds(layout)
    idx = np.zeros(fs, np.int64)
    if kind in ks:
        k = ks.index(kind)
        sh = [1] * len(fs)
        sh[k] = fs[k]
        idx = idx + np.arange(fs[k]).reshape(sh)
    shape = []
    pos = 0
    for ax in layout:
        n = 1
        for _ in ax:
            n *= fs[pos]
            pos += 1
        shape.append(n)
    return idx.reshape(shape)

def _skeleton(sub: Graph, info: dict[str, Info]) -> Graph:
    """The region's data movement only: every elementwise op replaced by its pairwise operand."""
    sk = Graph("skeleton")
    sk.values = dict(sub.values)
    for n in sub.topo_nodes():
        pair = [i for i in n.inputs if i and info.get(i) is not None
                and info[i].kind == Kind.PAIR]
        if n.op in ELEMENTWISE or (n.op == "Onnx" and n.attrs.get("op_type") in ELEMENTWISE) \
                or n.op == "Trilu":
            if pair:
                sk.add_node("Identity", [pair[0]], n.outputs[:1], name=n.name)
            continue
        if pair:
            sk.add_node(n.op, n.inputs, n.outputs, n.attrs, name=n.name)
    sk.inputs, sk.outputs = list(sub.inputs), list(sub.outputs)
    sk.prune()
    return sk

def _correspondence(sk: Graph, s_val: str, a_val: str, env: dict[str, int],
                    node: Node) -> np.ndarray:
    """perm with A.flat[j] computed from S.flat[perm[j]]."""
    shape = resolve(tuple(sk.values[s_val].shape), env)
    ids = np.arange(1, int(np.prod(shape)) + 1, dtype=np.float64).reshape(shape)
    try:
        out = interpret(sk, {s_val: ids}, float_dtype="float64")[a_val]
    except Exception as e:  # noqa: BLE001
        raise _err(node, f"cannot follow the attention scores through the mask ({e})") from None
    flat = np.asarray(out).ravel()
    if not np.array_equal(flat, np.rint(flat)) or flat.min(initial=1) < 1:
        raise _err(node, "the attention score function is not elementwise (it mixes scores "
                         "across positions or with other data); a plastic KV cache applies f to "
                         "each slot's score on its own", "use an elementwise f such as ReLU")
    return flat.astype(np.int64) - 1

def _close(x: np.ndarray, y: np.ndarray) -> bool:
    tol = REL * max(1.0, float(np.max(np.abs(x))))
    return bool(np.allclose(x, y, rtol=REL, atol=tol))

def _fit(A: np.ndarray, S_: np.ndarray, tril: np.ndarray):
    """(f, scale) with A = tril ⊙ f(scale·S) exactly (up to float rounding), or None."""
    for f in ("identity", "relu", "relu2"):
        for sign in ((1.0,) if f == "identity" else (1.0, -1.0)):
            base = F_FUNCS[f](sign * S_) * tril
            den = float(np.sum(base * base))
            if den == 0:
                continue
            c = float(np.sum(A * base)) / den
            if c == 0 or (f != "identity" and c < 0) or not _close(A, c * base):
                continue
            return f, sign * (float(np.sqrt(c)) if f == "relu2" else c)
    return None

def _row_eps(A: np.ndarray, base: np.ndarray, s_axis) -> float | None:
    """eps with A = base / (Σ_s base + eps), or None."""
    rs = base.sum(axis=s_axis, keepdims=True)
    tol = REL * max(1.0, float(np.max(np.abs(A))))
    nz = np.abs(A) > tol
    if not np.any(nz):
        return None
    with np.errstate(all="ignore"):
        est = np.broadcast_to(base / np.where(nz, A, 1.0) - rs, A.shape)[nz]
        eps = float(np.median(est))
        want = base / (rs + eps)
    return eps if np.all(np.isfinite(want)) and _close(A, want) else None

def _fit_norm(A: np.ndarray, S_: np.ndarray, tril: np.ndarray, s_axis):
    """(f, scale, eps) with A = g / (Σ_s g + eps), g = tril ⊙ f(scale·S): the scale is not
    determined by A alone (Σ c·g = c·Σ g), so it is ±1 here."""
    for f in ("identity", "relu", "relu2"):
        for sign in ((1.0,) if f == "identity" else (1.0, -1.0)):
            eps = _row_eps(A, F_FUNCS[f](sign * S_) * tril, s_axis)
            if eps is not None:
                return f, sign, eps
    return None

def _norm_after(g: Graph, info, z: str, a_val: str):
    """The op after the read that divides by the row sum: (node, denominator value) or None."""
    cons = g.consumers(z)
    if len(cons) != 1 or z in g.outputs:
        return None
    c = cons[0]
    others = [i for i in c.inputs if i and i != z]
    if c.op not in ("Div", "Mul") or len(others) != 1:
        return None
    d = others[0]
    if info[d].kind == Kind.MIXED and "rowsum" in info[d].flags:
        return c, d
    return None

def _fit_post(g, info, post, nodes, den_nodes, s_val, sides, fit, S_, A, a_lay):
    """Check that the op after the read divides it by Σ_s A + eps; returns (f, scale, "rowsum",
    eps)."""
    c, d = post
    sub = _subgraph(g, nodes + den_nodes, [s_val], [d], sides)
    try:
        D = np.asarray(interpret(sub, {s_val: S_}, float_dtype="float64")[d])
    except Exception as e:  # noqa: BLE001
        raise _err(c, f"cannot evaluate the attention normalisation ({e})") from None
    s_axis = tuple(i for i, ax in enumerate(a_lay) if S in {f.kind for f in ax})
    rs = A.sum(axis=s_axis, keepdims=True).ravel()
    Df = D.ravel()
    if D.size != rs.size:
        raise _err(c, "the normalisation after ·V is not a row sum of the attention weights")
    if c.op == "Mul":
        with np.errstate(all="ignore"):
            Df = 1.0 / Df
    eps = float(np.median(Df - rs))
    if not np.allclose(Df, rs + eps, rtol=1e-7, atol=1e-9 * max(1.0, float(np.max(np.abs(rs))))):
        raise _err(c, "the normalisation after ·V is not a row sum of the attention weights "
                      "plus a constant")
    return fit[0], fit[1], "rowsum", eps

def _buffer_size(g: Graph, sides) -> int | None:
    """The fewest positions a constant table behind these values holds: sliced to the length
    (a registered mask buffer, a learned positional parameter) or looked up by a position-only
    index (an embedding of arange(T))."""
    sizes = []
    for v in sides:
        for n in ancestors(g, v):
            a = with_defaults(n.op, n.attrs)
            if n.op == "Slice" and const(g, n.inputs[0]) is not None and has_sym(a["ends"]):
                shape = const(g, n.inputs[0]).shape
                axes = a["axes"] if a["axes"] is not None else range(len(a["starts"]))
                sizes += [shape[ax] for ax in axes]
            elif n.op == "Gather" and const(g, n.inputs[0]) is not None \
                    and const(g, n.inputs[1]) is None:
                sizes.append(const(g, n.inputs[0]).shape[int(a.get("axis", 0))])
    return min(sizes) if sizes else None


def _position_tables(g: Graph, info) -> list[str]:
    """Position-only values that token values read (positional embeddings and the like)."""
    out = set()
    for n in g.nodes.values():
        if any(info.get(o) is not None and info[o].kind == Kind.TOKEN for o in n.outputs):
            out.update(i for i in n.inputs if i and info.get(i) is not None
                       and info[i].kind == Kind.POS)
    return sorted(out)


def _t_max(g: Graph, p1: Node, s_val: str, sides, ctx, info=None) -> tuple[int, list[int]]:
    """T_max (context capacity) and the sequence lengths at which the region is checked.

    T_max is ``--max-context``, else the static length, else the size of a constant buffer the
    mask is sliced from, else the size of a positional table the model looks up (GPT-2's
    learned positions bound its context)."""
    seq = g.values[s_val].shape[-1]
    buf = _buffer_size(g, sides)
    table = None if buf is not None or info is None else _buffer_size(
        g, _position_tables(g, info))
    if ctx.max_context is not None:
        t_max = int(ctx.max_context)
    elif not is_sym(seq):
        t_max = int(seq)
    elif buf is not None:
        t_max = int(buf)
    elif table is not None:
        t_max = int(table)
    else:
        raise _err(p1, "the sequence axis is dynamic and neither the attention mask nor a "
                       "positional table fixes a maximum context length, so the number of "
                       "plastic KV slots (T_max) is unknown",
                   "pass --max-context N (compile(..., max_context=N))")
    if not is_sym(seq):
        return t_max, [int(seq)]
    cap = min(t_max, buf or t_max, 64)
    return t_max, sorted({min(2, cap), min(5, cap), cap})
