"""Pass ``classify``: a dataflow classification of every tensor-IR value.

Every value is one of

* ``const``     — computed from constants only (folded or not);
* ``position``  — computed from the sequence length and constants, not from the input data:
  causal masks, positional tables, rotary tables, bound ``attention_mask``/``position_ids``;
* ``token``     — token-local: at batch b and position t a function of the input at (b, t) only;
  it has a :class:`~.layout.Layout` saying where batch, position and features sit;
* ``pairwise``  — indexed by a query position T and a key position S (attention scores and what
  is computed from them elementwise with masks and constants), with a layout;
* ``mixing``    — anything else that mixes positions (a reason and the node are recorded).

The rules follow what each op computes on the factors of its operands' layouts (see
:mod:`.layout`): elementwise ops keep the class; layout ops move features; reductions and norms
over feature axes keep values token-local; a product of two token values whose positions stay
apart is ``pairwise`` (Q·Kᵀ); a product of a pairwise value with a token value that contracts the
key position is ``token`` again (A·V, the attention output).  Nothing here depends on how an
exporter spelled the computation.

The pass changes nothing; :func:`classify` returns the map, and ``run`` reports the counts.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

import numpy as np

from ..ir.graph import Graph, Node
from ..ir.ops import with_defaults
from ..ir.symbolic import has_sym
from ..ir import layout as L
from ..ir.layout import F, S, T, Factor, LayoutError


class Kind(str, Enum):
    CONST = "const"
    POS = "position"
    TOKEN = "token"
    PAIR = "pairwise"
    MIXED = "mixing"


@dataclass
class Info:
    kind: Kind
    layout: tuple | None = None  # token / pairwise
    reason: str | None = None  # mixing: why
    node: Node | None = None  # mixing: the node where positions were mixed
    flags: frozenset = field(default_factory=frozenset)  # scores | attention | product | rowsum
    code: str | None = None  # mixing: the kind of problem (LayoutError.code)

    def __repr__(self) -> str:
        lay = "" if self.layout is None else " " + L.fmt(self.layout)
        why = "" if self.reason is None else f" ({self.reason})"
        fl = "" if not self.flags else " {" + ",".join(sorted(self.flags)) + "}"
        return f"{self.kind.value}{lay}{why}{fl}"


ELEMENTWISE = {"Identity", "Neg", "Relu", "Sqrt", "Reciprocal", "Exp", "Abs", "Tanh", "Sigmoid",
               "Erf", "Not", "Gelu", "Cast", "Add", "Sub", "Mul", "Max", "Min", "Div", "Pow",
               "Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual", "And", "Or",
               "Where", "Softplus", "Log", "Floor", "Ceil", "Round", "Sign", "Clip", "Mod",
               "IsNaN", "IsInf", "Sin", "Cos", "LeakyRelu", "HardSigmoid", "HardSwish", "Elu",
               "Selu", "Celu", "Mish", "PRelu", "Xor", "BitwiseAnd", "BitwiseOr", "BitwiseNot",
               "BitwiseXor", "Activation"}
REDUCTIONS = {"ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceL2", "ReduceL1",
              "ReduceSumSquare", "ReduceProd", "ReduceLogSumExp"}
NORMS = {"LayerNormalization", "LayerNorm", "RMSNorm", "L2Norm"}
PRODUCTS = {"MatMul", "Einsum", "Gemm", "Linear"}
CONVS = {"Conv", "ConvTranspose", "AveragePool", "MaxPool", "LpPool", "GlobalAveragePool",
         "GlobalMaxPool", "GlobalLpPool"}


def _opt(n: Node) -> str:
    """The op a node stands for (the ONNX op of a generic passthrough node)."""
    return n.attrs.get("op_type", n.op) if n.op == "Onnx" else n.op


def classify(g: Graph, data_input: str | None = None) -> dict[str, Info]:
    """Classify every value of ``g`` (``data_input``: the model's data input, default the first
    graph input; other graph inputs are ``mixing``: bind them first)."""
    info: dict[str, Info] = {}
    data_input = data_input or (g.inputs[0] if g.inputs else None)
    for name, v in g.values.items():
        if v.data is not None:
            info[name] = Info(Kind.CONST)
    for name in g.inputs:
        v = g.values[name]
        if name != data_input:
            info[name] = Info(Kind.MIXED, reason=f"model input {name!r} is not bound")
            continue
        try:
            info[name] = Info(Kind.TOKEN, L.token_input(v.shape))
        except LayoutError as e:
            info[name] = Info(Kind.MIXED, reason=str(e))
    for n in g.topo_nodes():
        ins = [info.get(i) if i else None for i in n.inputs]
        for o, r in zip(n.outputs, _node(g, n, ins)):
            info[o] = r
    return info


def _node(g: Graph, n: Node, ins: list[Info | None]) -> list[Info]:
    outs = len(n.outputs)
    present = [i for i in ins if i is not None]
    if not present:
        # no data inputs (Range, ConstantOfShape): position-dependent when it has symbolic dims
        return [Info(Kind.POS if has_sym(n.attrs) else Kind.CONST)] * outs
    if all(i.kind == Kind.CONST for i in present):
        return [Info(Kind.CONST if not has_sym(n.attrs) else Kind.POS)] * outs
    if all(i.kind in (Kind.CONST, Kind.POS) for i in present):
        return [Info(Kind.POS)] * outs
    mixed = [i for i in present if i.kind == Kind.MIXED]
    extra = frozenset()
    if mixed and all("rowsum" in i.flags for i in mixed) and _opt(n) in ELEMENTWISE and any(
            i.kind == Kind.PAIR for i in present):
        # scores divided by their row sum (normalisation before ·V): still pairwise
        ins = [Info(Kind.POS) if i is not None and i.kind == Kind.MIXED else i for i in ins]
        mixed, extra = [], frozenset({"rownorm"})
    elif mixed and all("rowsum" in i.flags for i in mixed) and _opt(n) in ELEMENTWISE and any(
            i.kind == Kind.TOKEN and "attention" in i.flags for i in present):
        # an attention read divided by its row sum (normalisation after ·V): a token value,
        # as the attention pass will make it
        ins = [Info(Kind.POS) if i is not None and i.kind == Kind.MIXED else i for i in ins]
        mixed = []
    if mixed:
        m = mixed[0]
        return [Info(Kind.MIXED, reason=m.reason, node=m.node, flags=m.flags & {"rowsum"},
                     code=m.code)] * outs
    try:
        res = _rule(g, n, ins)
        if extra:
            res = [Info(r.kind, r.layout, r.reason, r.node, r.flags | extra, r.code) for r in res]
        return res
    except LayoutError as e:
        return [Info(Kind.MIXED, reason=str(e), node=n, code=e.code)] * outs
    except (ValueError, IndexError, KeyError, TypeError) as e:
        return [Info(Kind.MIXED, reason=f"{type(e).__name__}: {e}", node=n, code="layout")] * outs


def _shape(g: Graph, v: str):
    return g.values[v].shape


def _data_kind(ins: list[Info | None]) -> Kind:
    ks = {i.kind for i in ins if i is not None}
    return Kind.PAIR if Kind.PAIR in ks else Kind.TOKEN


def _rule(g: Graph, n: Node, ins: list[Info | None]) -> list[Info]:
    op = _opt(n)
    a = with_defaults(n.op, n.attrs) if n.op != "Onnx" else dict(n.attrs.get("onnx_attrs", {}))
    out_shape = _shape(g, n.outputs[0])
    lay0 = ins[0].layout if ins[0] is not None else None
    kind = _data_kind(ins)

    def same(layout, flags=frozenset()):
        return [Info(kind, layout, flags=flags)] * len(n.outputs)

    if op in ELEMENTWISE:
        operands = [(i.layout if i is not None and i.kind in (Kind.TOKEN, Kind.PAIR) else None,
                     _shape(g, v)) for i, v in zip(ins, n.inputs) if v]
        lays = [x for x, _ in operands if x is not None]
        if kind == Kind.PAIR and any(not L.has(x, S) for x in lays):
            # a token value combined with scores (e.g. a per-query bias): not a plain mask
            raise LayoutError(f"{op} combines attention scores with a token value",
                              code="data_mask")
        flags = frozenset({"product"}) if (op in ("Mul", "Div", "Pow") and len(lays) > 1
                                            and kind == Kind.TOKEN) else frozenset()
        return same(L.broadcast(operands, out_shape), flags)
    if op in ("Reshape", "Flatten"):
        return same(L.reshape(lay0, out_shape))
    if op == "Transpose":
        return same(L.transpose(lay0, a.get("perm")))
    if op == "Unsqueeze":
        return same(L.unsqueeze(lay0, a["axes"]))
    if op == "Squeeze":
        return same(L.squeeze(lay0, a.get("axes"), _shape(g, n.inputs[0])))
    if op == "Expand":
        return same(L.broadcast([(lay0, _shape(g, n.inputs[0]))], out_shape))
    if op == "Tile":
        lay = []
        for ax, r in zip(lay0, a["repeats"]):
            r = int(r)
            if r != 1 and not L.is_feature_axis(ax):
                raise LayoutError("Tile repeats the batch or sequence axis")
            lay.append(ax if r == 1 else (Factor(F, r, dup=True),) + ax)
        return same(tuple(lay))
    if op == "SplitHeads":
        lay = L.reshape(lay0, tuple(out_shape[:-3]) + (out_shape[-2], out_shape[-3],
                                                        out_shape[-1]))
        r = len(out_shape)
        return same(L.transpose(lay, list(range(r - 3)) + [r - 2, r - 3, r - 1]))
    if op == "MergeHeads":
        r = len(lay0)
        lay = L.transpose(lay0, list(range(r - 3)) + [r - 2, r - 3, r - 1])
        return same(L.reshape(lay, out_shape))
    if op in ("Slice", "Split", "Gather", "Concat"):
        return _select(g, n, op, a, ins, kind)
    if op in REDUCTIONS:
        if n.op == "Onnx" and len(n.inputs) > 1 and n.inputs[1]:
            axes = g.values[n.inputs[1]].data  # opset 18: the axes are an input
            if axes is None:
                raise LayoutError(f"{op} with axes computed at run time")
            a = {**a, "axes": [int(x) for x in np.asarray(axes).ravel()]}
        return _reduce(g, n, a, lay0, kind)
    if op in NORMS:
        axis = a.get("axis", -1) if op == "LayerNormalization" else -1
        axes = range(int(axis) % len(lay0), len(lay0))
        if kind != Kind.TOKEN or not all(L.is_feature_axis(lay0[x]) for x in axes):
            raise LayoutError(f"{op} normalises over a batch or position axis")
        return [Info(Kind.TOKEN, lay0)] + [Info(Kind.MIXED, reason="norm statistics output",
                                                node=n)] * (len(n.outputs) - 1)
    if op in PRODUCTS:
        return [_product(g, n, op, a, ins)]
    if op == "Trilu":
        if kind != Kind.PAIR or {f.kind for f in lay0[-2] + lay0[-1]} & {T, S} != {T, S}:
            raise LayoutError("Trilu on a token value mixes positions")
        return same(lay0)
    if op == "Softmax":
        ax = int(a.get("axis", -1)) % len(lay0)
        if kind == Kind.PAIR and S in {f.kind for f in lay0[ax]}:
            return same(lay0, frozenset({"softmax"}))
        if kind == Kind.TOKEN and L.is_feature_axis(lay0[ax]):
            return same(lay0)
        raise LayoutError("Softmax over a batch or position axis")
    if op == "CumSum":
        ax = int(a["axis"]) % len(lay0)
        if L.is_feature_axis(lay0[ax]):
            return same(lay0)
        raise LayoutError("CumSum over the positions (a running sum over tokens)")
    if op in CONVS:
        # a convolution or pooling within one token: the batch axis N carries the tokens
        # (e.g. patches reshaped to [B·T, C, H, W]), channels and space are features
        if kind == Kind.TOKEN and any(T in {f.kind for f in ax} for ax in lay0[2:]):
            raise LayoutError(
                f"{op} with a window over the sequence axis mixes neighbouring tokens (a "
                "convolution over the positions, e.g. a causal conv), so it cannot be a per-token "
                "neuron layer; only kernel-1 convolutions (stride 1, no padding) over the tokens "
                "compile, as a per-token Linear", code="op")
        if kind != Kind.TOKEN or L.is_feature_axis(lay0[0]) or any(
                not L.is_feature_axis(ax) for ax in lay0[1:]):
            raise LayoutError(f"{op} across the batch or the positions", code="op")
        if any(i is not None and i.kind not in (Kind.CONST,) for i in ins[1:]):
            raise LayoutError(f"{op} with weights computed from the data", code="op")
        return [Info(Kind.TOKEN, (lay0[0],) + tuple(L.feature_axis(d) for d in out_shape[1:]))]
    if op == "PlasticAttention":
        return [Info(Kind.TOKEN, lay0[:-1] + (L.feature_axis(out_shape[-1]),))]
    raise LayoutError(f"{op} is not known to keep values token-local", code="op")


def _select(g, n, op, a, ins, kind) -> list[Info]:
    if op == "Concat":
        ax = int(a["axis"]) % len(_shape(g, n.outputs[0]))
        # empty pieces (an empty past K/V cache) add nothing
        keep = [k for k, v in enumerate(n.inputs) if not L._is_zero(_shape(g, v)[ax])]
        ins = [ins[k] for k in keep]
        lays = [i.layout if i is not None and i.kind in (Kind.TOKEN, Kind.PAIR) else None
                for i in ins]
        if len(keep) == 1 and lays[0] is not None:
            return [Info(kind, lays[0])]
        ref = next(x for x in lays if x is not None)
        for x in lays:
            if x is not None and (len(x) != len(ref) or any(
                    x[k] != ref[k] for k in range(len(ref)) if k != ax)):
                raise LayoutError("Concat of values with different layouts")
        if any(x is not None and not L.is_feature_axis(x[ax]) for x in lays):
            raise LayoutError("Concat along the batch or sequence axis")
        return [Info(kind, L.with_axis(ref, ax, L.feature_axis(_shape(g, n.outputs[0])[ax]),
                                       "Concat"))]
    if op == "Gather":
        data, idx = ins[0], ins[1]
        ax = int(a.get("axis", 0)) % len(_shape(g, n.inputs[0]))
        dshape = _shape(g, n.inputs[0])
        if data.kind in (Kind.CONST, Kind.POS) and idx.kind == Kind.TOKEN:
            # a lookup table indexed by token values: the embedding of the token ids
            if ax != 0:
                raise LayoutError("a table lookup by token values along an inner axis")
            extra = tuple(L.feature_axis(d) for d in dshape[1:])
            return [Info(Kind.TOKEN, idx.layout + extra, flags=frozenset({"embedding"}))]
        if idx.kind != Kind.CONST:
            raise LayoutError("Gather with indices computed from the data")
        ishape = _shape(g, n.inputs[1])
        lay = data.layout
        if not L.is_feature_axis(lay[ax]):
            raise LayoutError("Gather along the batch or sequence axis")
        new = lay[:ax] + tuple(L.feature_axis(d) for d in ishape) + lay[ax + 1:]
        return [Info(kind, new)]
    lay0 = ins[0].layout
    out = []
    if op == "Slice":
        axes = a["axes"] if a.get("axes") is not None else range(len(a["starts"]))
        lay = lay0
        oshape = _shape(g, n.outputs[0])
        ishape = _shape(g, n.inputs[0])
        for ax in axes:
            ax = int(ax) % len(lay0)
            if L.is_feature_axis(lay[ax]):
                lay = L.with_axis(lay, ax, L.feature_axis(oshape[ax]), "Slice")
            elif not L._eq(oshape[ax], ishape[ax]):
                raise LayoutError("Slice along the batch or sequence axis")
        return [Info(kind, lay)]
    # Split
    ax = int(a.get("axis", 0)) % len(lay0)
    for o in n.outputs:
        out.append(Info(kind, L.with_axis(lay0, ax, L.feature_axis(_shape(g, o)[ax]), "Split")))
    return out


def _reduce(g, n, a, lay0, kind) -> list[Info]:
    axes = a.get("axes")
    r = len(lay0)
    if not axes and a.get("noop_with_empty_axes"):
        return [Info(kind, lay0)]
    axes = list(range(r)) if not axes else [int(x) % r for x in axes]
    keep = bool(a.get("keepdims", 1))
    red = set(axes)
    if all(L.is_feature_axis(lay0[x]) for x in red):
        lay = tuple(() if i in red else ax for i, ax in enumerate(lay0) if keep or i not in red)
        return [Info(kind, lay)]
    if kind == Kind.PAIR and all({f.kind for f in lay0[x]} <= {S, F} for x in red):
        return [Info(Kind.MIXED, reason="a sum over key positions (row sum of the scores)",
                     node=n, flags=frozenset({"rowsum"}), code="rowsum")]
    raise LayoutError(f"{_opt(n)} reduces over the batch or sequence axis")


# -- products ---------------------------------------------------------------------------------

def _matmul_spec(ra: int, rb: int) -> tuple[str, str, str]:
    nb = max(ra, rb) - 2
    batch = "".join(chr(ord("a") + i) for i in range(max(nb, 0)))
    A = (batch[len(batch) - (ra - 2):] if ra > 2 else "") + ("mk" if ra >= 2 else "k")
    Bs = (batch[len(batch) - (rb - 2):] if rb > 2 else "") + ("kn" if rb >= 2 else "k")
    out = batch + ("m" if ra >= 2 else "") + ("n" if rb >= 2 else "")
    return A, Bs, out


def _spec(g: Graph, n: Node, op: str, a: dict) -> tuple[list[str], str]:
    shapes = [_shape(g, v) for v in n.inputs if v]
    if op == "Einsum":
        lhs, out = a["equation"].replace(" ", "").split("->")
        return lhs.split(","), out
    if op == "Gemm":
        A = "km" if a.get("transA") else "mk"
        Bs = "nk" if a.get("transB") else "kn"
        return ([A, Bs] + (["n"] if len(shapes) > 2 else [])), "mn"
    if op == "Linear":
        A, Bs, out = _matmul_spec(len(shapes[0]), 2)
        return [A, Bs] + (["n"] if len(shapes) > 2 else []), out
    A, Bs, out = _matmul_spec(len(shapes[0]), len(shapes[1]))
    return [A, Bs], out


def _letters(lay, letters: str, shape) -> dict[str, tuple]:
    return {c: (lay[i], shape[i]) for i, c in enumerate(letters)}


def _product(g: Graph, n: Node, op: str, a: dict, ins: list[Info | None]) -> Info:
    terms, out = _spec(g, n, op, a)
    vals = [v for v in n.inputs if v]
    data = [(i, inf) for i, inf in enumerate(ins[:len(terms)]) if inf is not None
            and inf.kind in (Kind.TOKEN, Kind.PAIR)]
    oshape = _shape(g, n.outputs[0])
    if len(terms) > 2 and any(inf is not None and inf.kind not in (Kind.CONST,)
                              for inf in ins[2:]):
        raise LayoutError(f"{op} with a non-constant bias")
    if len(data) == 1:
        return _linear(g, n, terms, out, vals, ins, data[0][0], oshape)
    if len(data) == 2 and len(terms) == 2:
        return _bilinear(g, n, terms, out, vals, ins, oshape)
    raise LayoutError(f"{op} of {len(data)} token values")


def _linear(g, n, terms, out, vals, ins, i, oshape) -> Info:
    """A product of one token/pairwise value with constants: a linear map of its features."""
    tok = ins[i]
    j = 1 - i
    if ins[j] is not None and ins[j].kind == Kind.POS:
        raise LayoutError("a product with position-dependent weights")
    lt = _letters(tok.layout, terms[i], _shape(g, vals[i]))
    lc = dict(zip(terms[j], _shape(g, vals[j])))
    res = []
    for k, c in enumerate(out):
        if c in lt:
            ax, d = lt[c]
            if not L.is_feature_axis(ax) and c in lc and not L._is_one(lc[c]):
                raise LayoutError("a product whose weights differ between positions")
            if c in lc and L._is_one(d) and not L._is_one(lc[c]):
                ax = L.feature_axis(lc[c])
            res.append(ax)
        else:
            res.append(L.feature_axis(oshape[k]))
    for c, (ax, _d) in lt.items():
        if c not in out and not L.is_feature_axis(ax):
            raise LayoutError("a product that sums over the batch or the positions")
    return Info(tok.kind, tuple(res))


def _time_letter(lt: dict, kind: str) -> str | None:
    ls = [c for c, (ax, _) in lt.items() if kind in {f.kind for f in ax}]
    return ls[0] if len(ls) == 1 else None


def _bilinear(g, n, terms, out, vals, ins, oshape) -> Info:
    A, Bv = ins[0], ins[1]
    if A.kind == Kind.TOKEN and Bv.kind == Kind.PAIR:  # V-first spelling of A·V
        terms, vals, A, Bv = terms[::-1], vals[::-1], Bv, A
    la = _letters(A.layout, terms[0], _shape(g, vals[0]))
    lb = _letters(Bv.layout, terms[1], _shape(g, vals[1]))
    ta, tb = _time_letter(la, T), _time_letter(lb, T)
    if ta is None or tb is None:
        raise LayoutError("a product of values whose positions are not on one axis each")
    if A.kind == Kind.PAIR:
        sa = _time_letter(la, S)
        if Bv.kind != Kind.TOKEN or sa is None or sa != tb or tb in out or ta not in out:
            raise LayoutError("a product of attention scores that does not contract the key "
                              "positions with a token value", code="swap")
        res = _merge_letters(out, la, lb, oshape, rename={})
        return Info(Kind.TOKEN, res, flags=frozenset({"attention"}))
    if ta == tb:
        if ta not in out:
            raise LayoutError("a product that sums over the positions", code="sum_positions")
        return Info(Kind.TOKEN, _merge_letters(out, la, lb, oshape, rename={}),
                    flags=frozenset({"product"}))
    if ta not in out or tb not in out:
        raise LayoutError("a product of token values that sums over all positions (not causal "
                          "attention)", code="sum_positions")
    for c in set(la) & set(lb):
        if c not in out and not (L.is_feature_axis(la[c][0]) and L.is_feature_axis(lb[c][0])):
            raise LayoutError("a product that contracts the batch or position axis")
    res = _merge_letters(out, la, lb, oshape, rename={T: S})
    return Info(Kind.PAIR, res, flags=frozenset({"scores"}))


def _merge_letters(out, la, lb, oshape, rename) -> tuple:
    res = []
    for c in out:
        axa = la.get(c)
        axb = lb.get(c)
        if axb is not None and rename:
            axb = (tuple(Factor(rename.get(f.kind, f.kind), f.size, f.dup) for f in axb[0]),
                   axb[1])
        cand = [x for x in (axa, axb) if x is not None and not L._is_one(x[1])]
        if not cand:
            res.append(())
            continue
        if len(cand) == 2 and cand[0][0] != cand[1][0]:
            if not (L.is_feature_axis(cand[0][0]) and L.is_feature_axis(cand[1][0])):
                raise LayoutError("operands disagree on a batch or position axis")
        res.append(cand[0][0])
    return tuple(res)


def run(g: Graph, ctx=None) -> str:
    info = classify(g)
    counts: dict[str, int] = {}
    for v in info.values():
        counts[v.kind.value] = counts.get(v.kind.value, 0) + 1
    return ", ".join(f"{k} {counts[k]}" for k in sorted(counts)) + " value(s)"


def first_mixing(g: Graph, info: dict[str, Info]) -> list[Info]:
    """The mixing values that start a mixing region (their inputs are not mixing), in order."""
    out = []
    for n in g.topo_nodes():
        for o in n.outputs:
            i = info.get(o)
            if i is not None and i.kind == Kind.MIXED and i.node is n:
                out.append(i)
    return out


__all__ = ["Kind", "Info", "classify", "run", "first_mixing", "np"]
