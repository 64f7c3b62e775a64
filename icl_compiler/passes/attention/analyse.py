"""One attention read analysed (:func:`_analyse`), and the diagnosis of products of activations
that are not attention (:func:`_diagnose`)."""
from __future__ import annotations

import networkx as nx
import numpy as np

from ...errors import CompileError
from ...ir import layout as L
from ...ir.graph import Graph, Node
from ...ir.interpreter import run as interpret
from ...ir.symbolic import resolve
from ..classify import PRODUCTS, Info, Kind
from ..util import ancestors
from .common import REL, SOFTMAX_HINT, SOFTMAX_REASON, UNSUPPORTED_F, Attn, B, S, T, _err
from .operands import _operands, _peel
from .region import (PROBE_SCALES, _correspondence, _env_for, _fit, _fit_norm, _fit_post,
                     _row_factor,
                     _norm_after, _positions, _region, _row_norm, _skeleton, _subgraph, _t_max)

def _analyse(g: Graph, info: dict[str, Info], p2: Node, ctx) -> Attn:
    ia = 0 if info[p2.inputs[0]].kind == Kind.PAIR else 1
    a_val = p2.inputs[ia]
    nodes, p1s, sides = _region(g, info, a_val)
    soft = next((n for n in nodes if n.op == "Softmax"), None)
    if soft is not None:
        raise _err(soft, SOFTMAX_REASON, SOFTMAX_HINT)
    if len(p1s) != 1:
        raise _err(p2, f"the attention weights come from {len(p1s)} products of activations; "
                       "exactly one Q·Kᵀ can be mapped")
    p1 = p1s[0]
    s_val = p1.outputs[0]
    z = p2.outputs[0]
    post = _norm_after(g, info, z, a_val)
    den_nodes: list[Node] = []
    if post is not None:
        # the ops from the scores to the denominator (not an earlier layer's: those are
        # ancestors too, through this layer's q and k)
        after = nx.descendants(g.nx(), p1.name)
        den_nodes = [n for n in ancestors(g, post[1]) if n.name not in {x.name for x in nodes}
                     and n.name != p1.name and n.name in after
                     and info[n.outputs[0]].kind in (Kind.MIXED, Kind.PAIR)]
    allowed = {n.name for n in nodes} | {p2.name} | {n.name for n in den_nodes}
    if post is not None:
        allowed.add(post[0].name)
    for n in nodes + [p1]:
        for o in n.outputs:
            extra = [c for c in g.consumers(o) if c.name not in allowed]
            if extra or o in g.outputs:
                bad = extra[0] if extra else n
                if bad.op == "Softmax":
                    raise _err(bad, SOFTMAX_REASON, SOFTMAX_HINT)
                raise _err(p1, "the attention scores are used by several ops "
                               f"({', '.join(sorted({c.op for c in g.consumers(o)}))}); only an "
                               "elementwise chain ending in ·V can be mapped")
    target = post[0].outputs[0] if post is not None else z
    t_max, lengths = _t_max(g, p1, s_val, sides, ctx, info)
    s_lay = info[s_val].layout
    a_lay = info[a_val].layout
    pre_norm = next((n for n in nodes if "rownorm" in info[n.outputs[0]].flags), None)
    numer = None
    if pre_norm is not None and post is None:
        numer = next((i for i in pre_norm.inputs if i and info[i].kind == Kind.PAIR), None)
    outs = [a_val] + ([numer] if numer is not None else [])
    sub = _subgraph(g, nodes, [s_val], outs, sides)
    sk = _skeleton(_subgraph(g, nodes, [s_val], outs, sides), info)
    rng = np.random.default_rng(0)
    fitted = None
    row_factors: list[np.ndarray] = []  # a query-position factor on q, at each length checked

    def evaluate(S_in):  # the weights A (and the numerator before a normalisation) at scores S
        res = interpret(sub, {s_val: S_in}, float_dtype="float64", keep=True)
        return np.asarray(res[a_val]), None if numer is None else np.asarray(res[numer])

    for T_ in lengths:
        env = _env_for(s_lay, T_, batch=2 if L.has(s_lay, B) else 1)
        shape = resolve(tuple(g.values[s_val].shape), env)
        S_ = rng.normal(0, 2, shape)
        try:
            A, N = evaluate(S_)
        except Exception as e:  # noqa: BLE001 - a mask we cannot evaluate is not a causal mask
            raise _err(p1, f"cannot evaluate the attention mask at sequence length {T_} "
                           f"({type(e).__name__}: {e})") from None
        if A.size != S_.size:
            raise _err(p1, f"the attention mask changes the scores' shape {S_.shape} to "
                           f"{A.shape}; the mask must broadcast over [..., T, T]")
        perm = _correspondence(sk, s_val, a_val, env, p1)
        tpos = _positions(s_lay, env, T).ravel()[perm].reshape(A.shape)
        spos = _positions(s_lay, env, S).ravel()[perm].reshape(A.shape)
        Sa = S_.ravel()[perm].reshape(A.shape)
        tril = (spos <= tpos).astype(np.float64)
        s_axis = tuple(i for i, ax in enumerate(a_lay) if S in {f.kind for f in ax})
        tol = REL * max(1.0, float(np.max(np.abs(A[np.isfinite(A)]), initial=0.0)))
        if not np.all(np.isfinite(A)) or np.any(np.abs(A) * (1 - tril) > tol):
            raise _err(p1, "attention is not causal: after masking, query t still sees keys "
                           f"s > t (checked at sequence length {T_}); a plastic KV cache "
                           "only holds the tokens seen so far",
                       "mask the scores with a lower-triangular (causal) mask")
        fit = None

        def scaled():  # the same attention at smaller score magnitudes: (λ·S, A(λ·S), N(λ·S))
            for lam in PROBE_SCALES:
                try:
                    yield (lam * S_,) + evaluate(lam * S_)
                except Exception:  # noqa: BLE001 - evaluated once above: only a scale fails
                    return

        if post is not None:
            r = _fit(A, Sa, tril)
            if r is not None:
                samples = [(S_, A)] + [(Sl, Al) for Sl, Al, _ in scaled()]
                fit = _fit_post(g, info, post, nodes, den_nodes, s_val, sides, r, samples, a_lay)
        elif numer is not None:
            pn = _correspondence(sk, s_val, numer, env, p1) if N.size == S_.size else None
            r = None if pn is None or not np.array_equal(pn, perm) else _fit(
                N.reshape(A.shape), Sa, tril)
            if r is not None:
                pairs = [(A, N.reshape(A.shape))] + [(Al, Nl.reshape(A.shape))
                                                     for _, Al, Nl in scaled()]
                form = _row_norm(pairs, s_axis)
                fit = None if form is None else (r[0], r[1]) + form
            if fit is None:
                pairs = [(A, Sa)] + [(Al, Sl.ravel()[perm].reshape(A.shape))
                                     for Sl, Al, _ in scaled()]
                fit = _fit_norm(pairs, tril, s_axis)
        else:
            r = _fit(A, Sa, tril)
            fit = None if r is None else (r[0], r[1], "none", 0.0)
        if fit is None:
            bad = next((n for n in nodes if n.op in UNSUPPORTED_F or
                        (n.op == "Onnx" and n.attrs.get("op_type") in UNSUPPORTED_F)), None)
            if bad is not None:
                op = bad.attrs.get("op_type", bad.op)
                if op == "Exp" and (post is not None or numer is not None):
                    raise _err(bad, SOFTMAX_REASON + " (here written by hand: exp of the scores "
                                    "divided by its row sum)", SOFTMAX_HINT)
                raise _err(bad, f"attention score function {op} is not supported (f must be "
                                "identity, ReLU or ReLU², with optional scaling and row-sum "
                                "normalisation)", "retrain with f = ReLU")
            factor = _row_factor(A, Sa, tril, tpos, s_axis) if post is None else None
            q_fac = None if factor is None or numer is not None else _q_factor(factor, T_)
            if q_fac is not None:  # c_t·f(S) = f(S') with q_t scaled: a per-position q factor
                if row_factors and not all(np.allclose(q_fac[:len(r)], r[:len(q_fac)],
                                                       rtol=1e-6, atol=0) for r in row_factors):
                    raise _err(p1, "the attention weights' query-position factor changes with "
                                   "the sequence length")
                row_factors.append(q_fac)
                fit = (factor[0], 1.0, "none", 0.0)
            elif factor is not None:
                cs = ", ".join(f"{c:.3g}" for _, c in sorted(factor[2].items())[:4])
                by = [n for n in nodes if n.op in ("Div", "Mul") and any(
                    i and (info[i].kind == Kind.POS or (
                        g.values[i].data is not None and g.values[i].data.size > 1))
                    for i in n.inputs)]
                where = next((n for n in by if n.op == "Div"), by[-1] if by else p1)
                raise _err(where, "the attention weights of query t are multiplied by a factor that "
                                  f"depends on t (c_0, c_1, … = {cs}, …) which cannot be moved "
                                  "onto q as a per-position factor (for f = ReLU or ReLU² it must "
                                  "be positive, and it must be defined at every position)",
                           "normalise by the row sum of the weights (w / w.sum(-1)), by a "
                           "constant, or by a positive factor of the query position")
        if fit is None:
            biased = _position_bias(sub, s_val, a_val, S_, perm, tril, tol, tpos - spos)
            if biased is not None and biased[0] is not True:  # the model's node, by name
                biased = (g.nodes.get(biased[0].name, biased[0]), biased[1])
            if biased is not None and biased[1] is not None:
                raise _err(biased[0] if biased[0] is not True else p1,
                           f"the attention mask hides keys {biased[1]} or more positions back (a "
                           f"sliding window of the last {biased[1]} tokens); a plastic KV cache "
                           "holds every token of the context and each query reads all of them",
                           "train with a full causal mask (every s ≤ t), or limit the context to "
                           f"the window with --max-context {biased[1]}")
            if biased is not None:
                biased = biased[0]
                raise _err(biased if biased is not True else p1,
                           "the attention weights depend on the query and key positions beyond "
                           "the causal mask (equal scores give different weights: an additive "
                           "position bias such as ALiBi, or a relative-position term); a plastic "
                           "KV cache applies f to each slot's score q·k alone, so f(q·k + b(t, s)) "
                           "is not elementwise in q·k",
                           "encode relative positions with rotary embeddings (RoPE) on q and k")
            raise _err(p1, "the attention score function is not of the form post·f(scale·q·k) "
                           f"with f ∈ {{identity, relu, relu2}} (checked at sequence length {T_})",
                       "use f ∈ {identity, relu, relu2} with constant scales")
        if fitted is not None and (fitted[0], fitted[2]) != (fit[0], fit[2]) or (
                fitted is not None and not np.isclose(fitted[1], fit[1], rtol=1e-6)):
            raise _err(p1, "the attention score function changes with the sequence length")
        fitted = fit
    f, scale, norm, eps = fitted
    z_lay = info[z].layout
    q, k, v, z_idx, H, d_k, d_v = _operands(g, info, p1, p2, s_val, a_val, sk, z)
    q, k = _peel(g, info, q), _peel(g, info, k)
    # f(c·(a·q)·(b·k)) = f(c·a·b·q·k): scalar scales on Q and K join the attention scale
    scale = scale * q.factor * k.factor
    q_factor = row_factors[-1] if row_factors else None
    if q_factor is not None and len(q_factor) != t_max:
        raise _err(p1, f"the attention weights' query-position factor is known for "
                       f"{len(q_factor)} positions, not the context capacity T_max = {t_max}")
    return Attn(p1, p2, target, q, k, v, z_idx, z_lay, f, scale, norm, eps, t_max, H, d_k, d_v,
                q_factor)


def _q_factor(factor, T_: int) -> np.ndarray | None:
    """q's per-position factor for A = c_t · f(sign·S): f(a·S) = a^deg·f(S) for a > 0, so q_t
    scaled by sign·c_t (identity, relu) or sign·√c_t (relu²) gives the weights with scale 1;
    None unless every position 0 … T_−1 has its factor (and, for relu, a positive one)."""
    f, sign, per_t = factor
    if sorted(per_t) != list(range(T_)):
        return None
    c = np.array([per_t[t] for t in range(T_)], np.float64)
    if f == "identity":
        return c
    if np.any(c <= 0):
        return None
    return sign * (np.sqrt(c) if f == "relu2" else c)

def _position_bias(sub: Graph, s_val: str, a_val: str, S_: np.ndarray, perm, tril, tol,
                   dist=None):
    """Equal scores (every score 1.5, then 3.0) that give different weights at different
    causal (t, s) pairs: (the first op of the region whose output varies there, where the
    position term enters, or True; the smallest distance t − s at which the weights are zero
    while nearer keys are not — a window that hides older keys — or None); None if the weights
    do not depend on the positions."""
    inside = tril.ravel() > 0

    def causal(x):
        x = np.asarray(x, np.float64)
        return None if x.size != S_.size else x.ravel()[perm][inside]

    def varies(x) -> bool:
        x = causal(x)  # (a -inf fill where a key is hidden varies too)
        if x is None or np.isnan(x).any():
            return False
        return bool(np.ptp(np.nan_to_num(x, posinf=1e300, neginf=-1e300)) > tol)

    for c in (1.5, 3.0):
        try:
            res = interpret(sub, {s_val: np.full(S_.shape, c)}, float_dtype="float64",
                            keep=True)
        except Exception:  # noqa: BLE001 - not evaluable: no diagnosis
            return None
        if varies(res[a_val]):
            first = next((n for n in sub.topo_nodes() if varies(res.get(n.outputs[0], ()))),
                         True)
            hidden = None
            if dist is not None:  # zero beyond a distance even for huge scores: a window
                try:
                    big = interpret(sub, {s_val: np.full(S_.shape, 1e6)},
                                    float_dtype="float64")[a_val]
                except Exception:  # noqa: BLE001
                    big = None
                a, d = causal(big), dist.ravel()[inside]
                if a is not None:
                    zero = np.abs(a) <= tol
                    if zero.any() and (~zero).any() and d[zero].min() > d[~zero].max():
                        hidden = int(d[zero].min())
            return first, hidden
    return None


def _diagnose(g: Graph, info: dict[str, Info], found: list[Attn]) -> list[CompileError]:
    """Products of two activations that are not part of a recognised attention: why, each."""
    used = {a.p1.name for a in found} | {a.p2.name for a in found}
    out: list[CompileError] = []
    for n in g.topo_nodes():
        if n.name in used or n.op not in PRODUCTS:
            continue
        o = info.get(n.outputs[0])
        data_ins = [i for i in n.inputs[:2] if i and info[i].kind in (Kind.TOKEN, Kind.PAIR)]
        if o is not None and "scores" in o.flags:
            e = _scores_error(g, info, n)
            if e is not None:  # None: the scores reach a read (analysed on its own)
                out.append(e)
        elif o is not None and o.kind == Kind.MIXED and o.node is n and len(data_ins) == 2:
            out.append(_err(n, "a product of two activations that is not causal attention Q·Kᵀ "
                               "/ A·V; only attention can multiply activations (its K and V live "
                               "in plastic synapses)"))
    seen, unique = set(), []
    for e in out:  # several score products can stop at the same op
        key = (e.node, e.reason)
        if key not in seen:
            seen.add(key)
            unique.append(e)
    return unique


def _time_order(lay) -> list[str]:
    return [f.kind for ax in lay for f in ax if f.kind in (T, S)]

def _scores_error(g: Graph, info: dict[str, Info], p1: Node) -> CompileError | None:
    """Why the scores of ``p1`` never reach an attention read: the first op where they stop
    being a pairwise value, or a softmax on the way."""
    seen, stack = set(), [p1.outputs[0]]
    first, swap = None, None
    order = {n.name: i for i, n in enumerate(g.topo_nodes())}
    while stack:
        v = stack.pop()
        for c in g.consumers(v):
            if c.name in seen:
                continue
            seen.add(c.name)
            if c.op == "Softmax" or (c.op == "Onnx" and c.attrs.get("op_type") == "Softmax"):
                return _err(c, SOFTMAX_REASON, SOFTMAX_HINT)
            oi = info.get(c.outputs[0])
            if oi is not None and "attention" in oi.flags:
                return None
            if oi is not None and oi.kind == Kind.PAIR:
                stack.append(c.outputs[0])
                if c.op == "Transpose" and swap is None and _time_order(oi.layout) != _time_order(
                        info[c.inputs[0]].layout):
                    swap = c
            elif oi is not None and oi.kind == Kind.MIXED and oi.node is c:
                if first is None or order[c.name] < order[first.name]:
                    first = c
    if first is None:
        return _err(p1, "attention scores are never multiplied by V")
    code = info[first.outputs[0]].code
    if code == "data_mask":
        return _err(first, "the attention mask depends on the input data; only causal masks "
                           "computed from the sequence length and constants can be mapped")
    if code == "swap":
        return _err(swap or first, "the attention score function is not elementwise (it mixes scores "
                           "across positions); a plastic KV cache applies f to each slot's "
                           "score on its own", "use an elementwise f such as ReLU")
    if code == "rowsum":
        return _err(first, "the attention scores' row sum is used other than to normalise the "
                           "attention output")
    return _err(first, f"the attention scores cannot be mapped here: {info[first.outputs[0]].reason}")
