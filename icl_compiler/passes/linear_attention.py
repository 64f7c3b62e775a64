"""Pass ``linear_attention``: causal linear attention written as a running sum → scores and ·V.

Matches: a ``CumSum`` over the positions of a token value P that is a product of two token values
at the same position (``P = k ⊗ v``, e.g. ``einsum("bthd,bthe->bthde", k, v)``), or of one token
value (``P = k``: the running normaliser), whose sum C is read by a product with a third token
value q at the same position (``einsum("bthd,bthde->bthe", q, C)``): recurrent causal linear
attention, out_t = Σ_{s≤t} (q_t·k_s) v_s (and Σ_{s≤t} q_t·k_s for the normaliser).

Produces the same numbers in the pairwise form the attention pass recognises: scores
``S = einsum(q, k)`` over (t, s), masked causally (``S · tril``), then ``einsum(S·tril, v)`` (or
``ReduceSum`` over s for the normaliser).  The rewrite is proved numerically before it is kept:
the old and the new subgraph are evaluated with the interpreter on random q, k, v at two lengths
and must agree.

Invariants: graph inputs/outputs keep their names and types; numbers agree up to float rounding.
"""
from __future__ import annotations

import numpy as np

from ..ir.graph import Graph, Node
from ..ir.interpreter import run as interpret
from ..ir.ops import with_defaults
from ..ir.symbolic import is_sym, resolve
from .classify import Info, Kind, _spec, classify
from .util import add_op

EINSUMS = ("Einsum", "MatMul", "Mul")


def _letters(g: Graph, n: Node, info) -> tuple[list[str], str] | None:
    """Einsum terms of a product node; a Mul of broadcast operands is an einsum too (an axis an
    operand broadcasts gets a letter of its own, summed over its single element)."""
    if n.op in ("Einsum", "MatMul"):
        return _spec(g, n, n.op, with_defaults(n.op, n.attrs))
    if n.op == "Mul" and len(n.inputs) == 2:
        out = g.values[n.outputs[0]].shape
        r = len(out)
        letters = "abcdefghijklmnopqrstuvw"[:r]
        fresh = iter("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
        terms = []
        for v in n.inputs:
            s = g.values[v].shape
            term = ""
            for i, d in enumerate(s):
                j = r - len(s) + i
                one = not is_sym(d) and int(d) == 1
                term += next(fresh) if one and not (not is_sym(out[j]) and int(out[j]) == 1) \
                    else letters[j]
            terms.append(term)
        return terms, letters
    return None


def _time_letter(info: Info, term: str) -> str | None:
    for c, ax in zip(term, info.layout):
        if any(f.kind == "T" for f in ax):
            return c
    return None


def _candidates(g: Graph, info: dict[str, Info]):
    for c in g.topo_nodes():
        if c.op != "CumSum" or not c.inputs or info.get(c.inputs[0]) is None:
            continue
        pi = info[c.inputs[0]]
        if pi.kind != Kind.TOKEN:
            continue
        ax = int(with_defaults("CumSum", c.attrs)["axis"]) % len(pi.layout)
        a = with_defaults("CumSum", c.attrs)
        if a["exclusive"] or a["reverse"] or not any(f.kind == "T" for f in pi.layout[ax]):
            continue
        reads = g.consumers(c.outputs[0])
        if len(reads) != 1 or c.outputs[0] in g.outputs:
            continue
        yield c, reads[0]


def _rewrite(g: Graph, info, c: Node, r: Node) -> bool:
    p_val = c.inputs[0]
    pn = g.producer(p_val)
    spec_r = _letters(g, r, info)
    if spec_r is None or len(spec_r[0]) != 2:
        return False
    (t0, t1), rout = spec_r
    qi = 0 if r.inputs[1] == c.outputs[0] else 1
    if r.inputs[1 - qi] != c.outputs[0]:
        return False
    q_val, rq, rc = r.inputs[qi], (t0, t1)[qi], (t0, t1)[1 - qi]
    if info.get(q_val) is None or info[q_val].kind != Kind.TOKEN:
        return False
    # P = k ⊗ v (a product of two token values) or P = k (a single one)
    spec_p = _letters(g, pn, info) if pn is not None and "product" in info[p_val].flags else None
    if spec_p is not None and len(spec_p[0]) == 2:
        (pa, pb), pout = spec_p
        k_val, v_val = pn.inputs[0], pn.inputs[1]
    else:
        pout = "abcdefghijklmnopqrstuvw"[:g.values[p_val].rank]
        pa, pb, k_val, v_val = pout, None, p_val, None
    if len(pout) != len(rc) or set(rc + rq + rout) & set("ABCDEFGHIJKLMNOPQRSTUVWXYZ"):
        return False
    m = dict(zip(pout, rc))  # P's letters → R's letters for C's axes (own letters stay)
    k_t = "".join(m.get(x, x) for x in pa)
    v_t = "".join(m.get(x, x) for x in pb) if pb else None
    t_r = _time_letter(info[k_val], k_t) if info[k_val].layout else None
    if t_r is None or t_r not in rq or _time_letter(info[q_val], rq) != t_r:
        return False
    s = next(x for x in "zyxwvutsrqponmlkjihgfedcba" if x not in set(rq + rc + rout))
    k_s = k_t.replace(t_r, s)
    v_s = v_t.replace(t_r, s) if v_t else None
    keep = set(rout) | (set(v_s) if v_s else set())
    s_out = "".join(x for x in dict.fromkeys(rq + k_s) if x in keep and x != s) + s
    if t_r not in s_out:
        return False
    name = r.onnx_name
    scores = add_op(g, "Einsum", [q_val, k_val], {"equation": f"{rq},{k_s}->{s_out}"},
                    onnx_name=name)
    T = g.values[q_val].shape[rq.index(t_r)]
    ones = add_op(g, "ConstantOfShape", [], {"shape": [T, T], "value": 1.0,
                                             "dtype": g.values[scores].dtype})
    tril = add_op(g, "Trilu", [ones], {"upper": 0})
    mshape = [T if x in (t_r, s) else 1 for x in s_out]
    mask = add_op(g, "Reshape", [tril], {"shape": mshape})
    weights = add_op(g, "Mul", [scores, mask], onnx_name=name)
    out = r.outputs[0]
    g.remove_node(r.name)
    if v_s is not None:
        add_op(g, "Einsum", [weights, v_val], {"equation": f"{s_out},{v_s}->{rout}"}, out=out,
               onnx_name=name)
    else:
        red = add_op(g, "ReduceSum", [weights], {"axes": [s_out.index(s)], "keepdims": 0},
                     onnx_name=name)
        if "".join(x for x in s_out if x != s) != rout:
            g.remove_node(g.producer(red).name)
            return False
        add_op(g, "Identity", [red], out=out)
    return True


def _same(old: Graph, new: Graph, outs: list[str]) -> bool:
    """The old and the rewritten graph agree on random inputs at two lengths."""
    rng = np.random.default_rng(0)
    for T in (3, 5):
        feeds = {}
        for v in old.inputs:
            val = old.values[v]
            shape = resolve(tuple(val.shape), {str(s): (2 if i == 0 else T)
                                               for i, d in enumerate(val.shape) if is_sym(d)
                                               for s in d.free_symbols})
            feeds[v] = (rng.integers(0, 4, shape) if np.dtype(val.dtype).kind in "iu"
                        else rng.normal(size=shape)).astype(val.dtype)
        try:
            a = interpret(old, feeds, float_dtype="float64")
            b = interpret(new, feeds, float_dtype="float64")
        except Exception:  # noqa: BLE001 - a rewrite that does not evaluate is not kept
            return False
        for o in outs:
            scale = max(1.0, float(np.abs(a[o]).max()))
            if a[o].shape != b[o].shape or not np.allclose(a[o], b[o], rtol=1e-9,
                                                           atol=1e-12 * scale):
                return False
    return True


def run(g: Graph, ctx=None) -> str:
    done = 0
    for c, r in list(_candidates(g, classify(g))):
        if c.name not in g.nodes or r.name not in g.nodes:
            continue
        h = g.copy()
        if not _rewrite(h, classify(h), h.nodes[c.name], h.nodes[r.name]):
            continue
        h.prune()
        if not _same(g, h, g.outputs):
            continue
        g.nodes, g.values = h.nodes, h.values
        g._dirty()
        done += 1
    g.prune()
    return (f"rewrote {done} running-sum linear attention(s) into scores and ·V" if done
            else "no running-sum linear attention")
