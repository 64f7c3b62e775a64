"""Heads and features of an attention's operands, found by probing.

Each operand (Q, K, V and the output) is a token value in its own layout; probing with each
element replaced by its feature index (batch 1, one position) and reading the products' einsum
letters gives, per head, which features of the value form q, k and v, and where the output's
features go — whatever the layout (batch-first, sequence-first, batch×heads merged, K/V heads
shared by several query heads)."""
from __future__ import annotations

import numpy as np

from ...ir import layout as L
from ...ir.graph import Graph, Node
from ...ir.interpreter import run as interpret
from ...ir.ops import with_defaults
from ...ir.symbolic import resolve
from ..classify import Info, Kind, _spec
from ..util import const
from .common import B, F, T, Operand, _err
from .region import _env_for

def _probe_ids(g: Graph, info: dict[str, Info], v: str, env: dict[str, int]) -> np.ndarray:
    """The value ``v`` at env with every element replaced by 1 + its feature index."""
    lay = info[v].layout
    n = L.n_features(lay)
    fs = L.factor_shape(lay, env)
    ks = L.kinds(lay)
    nb = fs[ks.index(B)] if B in ks else 1
    nt = fs[ks.index(T)] if T in ks else 1
    tv = np.broadcast_to(np.arange(1, n + 1, dtype=np.float64), (nb, nt, n))
    return L.from_token_view(np.ascontiguousarray(tv), lay, env)

def _by_letters(arr: np.ndarray, term: str, letters: str, sizes: dict[str, int]) -> np.ndarray:
    """``arr`` (axes named by ``term``) with its axes in ``letters`` order, broadcast to
    ``sizes``; axes of ``term`` outside ``letters`` (batch/position at one token) are dropped."""
    x = arr[tuple(slice(None) if c in letters else 0 for c in term)]
    kept = [c for c in term if c in letters]
    x = np.transpose(x, [kept.index(c) for c in letters if c in kept])
    x = x.reshape([x.shape[[c for c in letters if c in kept].index(c)] if c in kept else 1
                   for c in letters])
    return np.broadcast_to(x, [sizes[c] for c in letters])

def _letter_sizes(arrs_terms) -> dict[str, int]:
    sizes: dict[str, int] = {}
    for arr, term in arrs_terms:
        for c, d in zip(term, arr.shape):
            sizes[c] = max(sizes.get(c, 1), int(d))
    return sizes

def _operands(g, info, p1: Node, p2: Node, s_val: str, a_val: str, sk: Graph, z_val: str):
    """(q, k, v Operands, z_idx, heads, d_k, d_v) by probing at one token (batch 1, seq 1)."""
    t1, o1 = _spec(g, p1, p1.op, with_defaults(p1.op, p1.attrs))
    qv, kv = p1.inputs[0], p1.inputs[1]
    env = _env_for(info[qv].layout, 1)
    env.update(_env_for(info[kv].layout, 1))
    Q, K = _probe_ids(g, info, qv, env), _probe_ids(g, info, kv, env)
    sizes = _letter_sizes([(Q, t1[0]), (K, t1[1])])
    contract = [c for c in t1[0] if c in t1[1] and c not in o1]
    s_lay = info[s_val].layout
    heads1 = [c for c, ax in zip(o1, s_lay) if any(f.kind == F for f in ax) and sizes.get(c, 1) > 1]
    letters = "".join(heads1 + contract)
    QQ = _by_letters(Q, t1[0], letters, sizes).reshape(-1, int(np.prod([sizes[c] for c in contract])))
    KK = _by_letters(K, t1[1], letters, sizes).reshape(QQ.shape)
    H, d_k = QQ.shape
    # which P1 head each element of A comes from
    s_shape = resolve(tuple(g.values[s_val].shape), env)
    hid = np.zeros(s_shape)
    o1_sizes = {c: d for c, d in zip(o1, s_shape)}
    head_index = np.zeros([o1_sizes[c] for c in o1], np.int64)
    stride = 1
    for c in reversed(heads1):
        sh = [1] * len(o1)
        sh[o1.index(c)] = o1_sizes[c]
        head_index = head_index + stride * np.arange(o1_sizes[c]).reshape(sh)
        stride *= o1_sizes[c]
    hid = (head_index + 1).astype(np.float64).reshape(s_shape)
    A_h = np.asarray(interpret(sk, {s_val: hid}, float_dtype="float64")[a_val])
    t2, o2 = _spec(g, p2, p2.op, with_defaults(p2.op, p2.attrs))
    ia = 0 if info[p2.inputs[0]].kind == Kind.PAIR else 1
    vv = p2.inputs[1 - ia]
    Vp = _probe_ids(g, info, vv, env)
    Z = _probe_ids(g, info, z_val, env) if info[z_val].layout is not None else None
    sizes2 = _letter_sizes([(A_h, t2[ia]), (Vp, t2[1 - ia])])
    AA = _by_letters(A_h, t2[ia], o2, sizes2)
    VV = _by_letters(Vp, t2[1 - ia], o2, sizes2)
    e_letters = [c for c in o2 if c in t2[1 - ia] and c not in t2[ia] and sizes2.get(c, 1) > 1]
    e_sizes = [sizes2[c] for c in e_letters]
    d_v = int(np.prod(e_sizes)) if e_letters else 1
    E = np.zeros(AA.shape, np.int64)
    stride = 1
    for c in reversed(e_letters):
        sh = [1] * len(o2)
        sh[o2.index(c)] = sizes2[c]
        E = E + stride * np.arange(sizes2[c]).reshape(sh)
        stride *= sizes2[c]
    E = np.broadcast_to(E, AA.shape)
    head = np.rint(AA).astype(np.int64) - 1
    v_idx = -np.ones((H, d_v), np.int64)
    seen = np.zeros((H, d_v), bool)
    for h, e, fid in zip(head.ravel(), E.ravel(), VV.ravel()):
        if not 0 <= h < H:
            raise _err(p2, "the heads of Q·Kᵀ and A·V do not line up")
        if seen[h, e] and v_idx[h, e] != int(fid) - 1:
            raise _err(p2, "the heads of Q·Kᵀ and A·V do not line up")
        v_idx[h, e], seen[h, e] = int(fid) - 1, True
    if not seen.all():
        raise _err(p2, "the heads of Q·Kᵀ and A·V do not line up")
    if Z is None or Z.size != AA.size:
        raise _err(p2, "cannot line up the attention output with its layout")
    z_idx = -np.ones(L.n_features(info[z_val].layout), np.int64)
    for h, e, zid in zip(head.ravel(), E.ravel(), np.rint(Z).astype(np.int64).ravel()):
        z_idx[zid - 1] = h * d_v + e
    return (Operand(qv, QQ.astype(np.int64) - 1), Operand(kv, KK.astype(np.int64) - 1),
            Operand(vv, v_idx), z_idx, H, d_k, d_v)

def _peel(g: Graph, info, op: Operand) -> Operand:
    """Follow scalar Mul/Div by constants back from the operand; their product is its factor."""
    v, factor = op.value, 1.0
    while True:
        n = g.producer(v)
        if n is None or n.op not in ("Mul", "Div"):
            break
        x = [i for i in n.inputs if i and const(g, i) is None]
        c = [i for i in n.inputs if i and const(g, i) is not None]
        if len(x) != 1 or len(c) != 1 or const(g, c[0]).size != 1 or (
                n.op == "Div" and n.inputs[1] != c[0]) or info[x[0]].layout != info[v].layout:
            break
        cv = float(np.asarray(const(g, c[0]), np.float64).ravel()[0])
        if cv == 0 or not np.isfinite(cv):
            break
        factor *= (1.0 / cv) if n.op == "Div" else cv
        v = x[0]
    return Operand(v, op.idx, factor)
