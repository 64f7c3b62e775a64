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
from ...ir.ops import F_FUNCS, row_denominator, with_defaults
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

def _row_factor(A: np.ndarray, S_: np.ndarray, tril: np.ndarray, tpos: np.ndarray,
                s_axis: tuple[int, ...]):
    """(f, sign, {t: c_t}) when A = c_t · tril ⊙ f(sign·S) with a factor c_t that depends on the
    query position t (a running mean ÷(t+1), a 1/√t scale) but not on the scores; else None."""
    for f in ("identity", "relu", "relu2"):
        for sign in ((1.0,) if f == "identity" else (1.0, -1.0)):
            base = F_FUNCS[f](sign * S_) * tril
            den = np.sum(base * base, axis=s_axis, keepdims=True)
            if not np.any(den > 0):
                continue
            c = np.sum(A * base, axis=s_axis, keepdims=True) / np.where(den > 0, den, 1.0)
            if not _close(A, c * base):  # (rows where f is 0 everywhere must be 0 too)
                continue
            live = np.broadcast_to(den > 0, A.shape)
            cb, tb = np.broadcast_to(c, A.shape)[live], tpos[live]
            per_t = {}
            for t in np.unique(tb):
                vals = cb[tb == t]
                if not np.allclose(vals, vals[0], rtol=1e-6, atol=0):
                    return None  # the factor depends on more than the query position
                per_t[int(t)] = float(vals[0])
            if len(per_t) > 1 and not np.allclose(list(per_t.values()), per_t[min(per_t)],
                                                  rtol=1e-6, atol=0):
                return f, sign, per_t
            return None
    return None


# the scores are also evaluated scaled down by these factors, so that row sums reach every
# magnitude down to far below any eps a model adds to (or floors) its row sum
PROBE_SCALES = tuple(10.0 ** -k for k in range(1, 14))


def _denominator(D: np.ndarray, rs: np.ndarray):
    """(normalisation, eps) with D = rs + eps ("rowsum") or D = max(rs, eps) ("rowsum_max"),
    each point to a relative 1e-6, or None.  The points should span many magnitudes of rs
    (:data:`PROBE_SCALES`) so that the two forms are told apart."""
    D, rs = np.ravel(D), np.ravel(rs)
    if D.size == 0 or not np.all(np.isfinite(D)):
        return None
    low = rs <= np.quantile(rs, 0.25)  # eps is best seen where the row sums are smallest
    eps = float(np.median((D - rs)[low]))
    if np.allclose(D, rs + eps, rtol=1e-6, atol=0):
        return "rowsum", eps
    above = D > rs + 1e-6 * np.abs(D)
    if np.any(above):
        floor = float(np.median(D[above]))
        if floor > 0 and np.allclose(D, np.maximum(rs, floor), rtol=1e-6, atol=0):
            return "rowsum_max", floor
    return None


def _row_norm(pairs, s_axis):
    """(normalisation, eps) with A = base / den(Σ_s base) for every (A, base) pair (the same
    attention at several score magnitudes), den = Σ + eps or max(Σ, eps); or None."""
    Ds, rss = [], []
    for A, base in pairs:
        rs = np.broadcast_to(base.sum(axis=s_axis, keepdims=True), A.shape)
        nz = np.abs(A) > REL * max(1.0, float(np.max(np.abs(A))))
        with np.errstate(all="ignore"):
            Ds.append((base[nz] / A[nz]))
        rss.append(rs[nz])
    form = _denominator(np.concatenate(Ds), np.concatenate(rss))
    if form is None:
        return None
    for A, base in pairs:
        rs = base.sum(axis=s_axis, keepdims=True)
        with np.errstate(all="ignore"):
            want = base / row_denominator(form[0], rs, form[1])
        if not (np.all(np.isfinite(want)) and _close(A, want)):
            return None
    return form


def _fit_norm(pairs, tril: np.ndarray, s_axis):
    """(f, scale, normalisation, eps) with A = g / den(Σ_s g), g = tril ⊙ f(scale·S), for every
    (A, S) pair: the scale is not determined by A alone (Σ c·g = c·Σ g), so it is ±1 here."""
    for f in ("identity", "relu", "relu2"):
        for sign in ((1.0,) if f == "identity" else (1.0, -1.0)):
            form = _row_norm([(A, F_FUNCS[f](sign * S_) * tril) for A, S_ in pairs], s_axis)
            if form is not None:
                return f, sign, form[0], form[1]
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

def _fit_post(g, info, post, nodes, den_nodes, s_val, sides, fit, samples, a_lay):
    """Check that the op after the read divides it by Σ_s A + eps (or max(Σ_s A, eps)) for
    every (S, A) sample; returns (f, scale, normalisation, eps)."""
    c, d = post
    sub = _subgraph(g, nodes + den_nodes, [s_val], [d], sides)
    s_axis = tuple(i for i, ax in enumerate(a_lay) if S in {f.kind for f in ax})
    Ds, rss = [], []
    for S_, A in samples:
        try:
            D = np.asarray(interpret(sub, {s_val: S_}, float_dtype="float64")[d])
        except Exception as e:  # noqa: BLE001
            raise _err(c, f"cannot evaluate the attention normalisation ({e})") from None
        rs = A.sum(axis=s_axis, keepdims=True).ravel()
        if D.size != rs.size:
            raise _err(c, "the normalisation after ·V is not a row sum of the attention weights")
        with np.errstate(all="ignore"):
            Ds.append(1.0 / D.ravel() if c.op == "Mul" else D.ravel())
        rss.append(rs)
    form = _denominator(np.concatenate(Ds), np.concatenate(rss))
    if form is None:
        raise _err(c, "the normalisation after ·V is not a row sum of the attention weights "
                      "plus a constant (or clamped below by one)")
    return fit[0], fit[1], form[0], form[1]

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


def _evaluable(g: Graph, values: list[str], env_at, cap: int) -> int:
    """The most positions T ≤ cap at which every position-only value evaluates (a table looked
    up at ``arange(T) + offset``, as OPT's learned positions are, holds fewer than its rows)."""
    sub = _subgraph(g, [], [], list(values), values)

    def works(T_: int) -> bool:
        try:
            interpret(sub, {}, float_dtype="float64", env=env_at(T_))
            return True
        except Exception:  # noqa: BLE001 - an index past the table's end
            return False

    if works(cap):
        return cap
    lo, hi = 0, cap - 1
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if works(mid) else (lo, mid - 1)
    return lo


def _t_max(g: Graph, p1: Node, s_val: str, sides, ctx, info=None) -> tuple[int, list[int]]:
    """T_max (context capacity) and the sequence lengths at which the region is checked.

    T_max is ``--max-context``, else the static length, else the size of a constant buffer the
    mask is sliced from, else the size of a positional table the model looks up (GPT-2's
    learned positions bound its context)."""
    seq = g.values[s_val].shape[-1]
    buf = _buffer_size(g, sides)
    tables = [] if buf is not None or info is None else _position_tables(g, info)
    table = _buffer_size(g, tables) if tables else None
    if table is not None and ctx.max_context is None and is_sym(seq):
        table = _evaluable(g, tables, lambda T_: _env_for(info[s_val].layout, T_), table) or None
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
