"""The op registry: each op's attribute schema, shape function and numpy reference semantics.

IR ops follow ONNX semantics, except that shape-like operands (Reshape's shape, Slice's
starts/ends, Expand's shape, ConstantOfShape's shape, Range's bounds, ...) are *attributes*:
the frontend folds the shape arithmetic that computes them into ints or symbolic dims.
Compiler ops (Linear, LayerNorm, RMSNorm, PlasticAttention) are added by the passes.

``shape(ins, attrs)`` gets the input :class:`Value` objects (``None`` for an omitted optional
input) and returns ``[(shape, dtype), ...]``.  ``compute(xs, attrs)`` gets numpy arrays and
attributes with symbolic dims already resolved, and returns a list of arrays.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import sympy

from .symbolic import Dim, dims_equal, is_sym, norm_dim

REQUIRED = object()
INT64_MAX = 2**63 - 1


@dataclass
class OpDef:
    name: str
    attrs: dict[str, Any]  # attribute name -> default (REQUIRED if it must be given)
    shape: Callable
    compute: Callable
    n_inputs: tuple[int, int]  # (min, max) number of inputs
    n_outputs: int | None = 1  # None: given by the node
    doc: str = ""


OPS: dict[str, OpDef] = {}


def register(name: str, attrs: dict | None = None, n_inputs=(1, 1), n_outputs: int | None = 1,
             doc: str = ""):
    def deco(fns):
        shape, compute = fns
        OPS[name] = OpDef(name, dict(attrs or {}), shape, compute, n_inputs, n_outputs, doc)
        return fns
    return deco


def get_op(name: str) -> OpDef:
    return OPS[name]


# ---------------------------------------------------------------------------------------------
# shape helpers

def broadcast(*shapes: tuple[Dim, ...]) -> tuple[Dim, ...]:
    rank = max(len(s) for s in shapes)
    out = []
    for i in range(rank):
        dims = [s[len(s) - rank + i] for s in shapes if len(s) - rank + i >= 0]
        d: Dim = 1
        for x in dims:
            if _eq(x, 1):
                continue
            if _eq(d, 1):
                d = x
            elif _eq(d, x):
                continue
            elif is_sym(d) and not is_sym(x):
                d = x
            elif is_sym(x) and not is_sym(d):
                continue
            elif is_sym(x) and is_sym(d):
                continue
            else:
                raise ValueError(f"shapes {shapes} do not broadcast")
        out.append(d)
    return tuple(out)


def _eq(a: Dim, b: Dim) -> bool:
    return dims_equal(a, b)


def prod(dims) -> Dim:
    p: Dim = 1
    for d in dims:
        p = p * d
    return norm_dim(p) if isinstance(p, sympy.Basic) else p


def _axis(a: int, rank: int) -> int:
    if not -rank <= a < max(rank, 1):
        raise ValueError(f"axis {a} out of range for rank {rank}")
    return a % rank if rank else 0


def _same(ins, attrs):
    return [(ins[0].shape, ins[0].dtype)]


def _bcast(ins, attrs):
    return [(broadcast(*(v.shape for v in ins)), ins[0].dtype)]


def _bcast_bool(ins, attrs):
    return [(broadcast(*(v.shape for v in ins)), "bool")]


# ---------------------------------------------------------------------------------------------
# elementwise

def _erf(x):
    # vectorised math.erf keeps float64 accuracy without scipy
    return np.vectorize(math.erf, otypes=[x.dtype])(x) if x.size else x.copy()


_UNARY = {
    "Identity": lambda x: x.copy(),
    "Neg": np.negative,
    "Relu": lambda x: np.maximum(x, np.zeros((), x.dtype)),
    "Sqrt": np.sqrt,
    "Reciprocal": lambda x: (np.ones((), x.dtype) / x).astype(x.dtype),
    "Exp": np.exp,
    "Abs": np.abs,
    "Tanh": np.tanh,
    "Sigmoid": lambda x: (1 / (1 + np.exp(-x))).astype(x.dtype),
    "Erf": _erf,
    "Not": np.logical_not,
}
for _name, _fn in _UNARY.items():
    register(_name)((_same, lambda xs, a, _fn=_fn: [np.asarray(_fn(xs[0]))]))


def _gelu(xs, a):
    x = xs[0]
    if a["approximate"] == "tanh":
        y = 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))
    else:
        y = 0.5 * x * (1 + _erf(x / np.sqrt(2).astype(x.dtype)))
    return [y.astype(x.dtype)]


register("Gelu", {"approximate": "none"})((_same, _gelu))

_BINARY = {
    "Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Max": np.maximum, "Min": np.minimum,
}
for _name, _fn in _BINARY.items():
    register(_name, n_inputs=(2, 2))(
        (_bcast, lambda xs, a, _fn=_fn: [np.asarray(_fn(xs[0], xs[1]))]))


def _div(xs, a):
    x, y = xs
    if np.issubdtype(x.dtype, np.integer):
        return [np.asarray(np.trunc(x / y).astype(x.dtype))]  # ONNX integer Div truncates
    return [np.asarray(x / y, dtype=x.dtype)]


def _pow(xs, a):
    x, y = xs
    return [np.asarray(np.power(x, y.astype(x.dtype) if x.dtype.kind == "f" else y), x.dtype)]


register("Div", n_inputs=(2, 2))((_bcast, _div))
register("Pow", n_inputs=(2, 2))((_bcast, _pow))
for _name, _fn in {"Equal": np.equal, "Less": np.less, "Greater": np.greater,
                   "LessOrEqual": np.less_equal, "GreaterOrEqual": np.greater_equal,
                   "And": np.logical_and, "Or": np.logical_or}.items():
    register(_name, n_inputs=(2, 2))(
        (_bcast_bool, lambda xs, a, _fn=_fn: [np.asarray(_fn(xs[0], xs[1]))]))


def _where_shape(ins, attrs):
    return [(broadcast(*(v.shape for v in ins)), ins[1].dtype)]


register("Where", n_inputs=(3, 3))((_where_shape, lambda xs, a: [np.where(xs[0], xs[1], xs[2])]))
register("Cast", {"to": REQUIRED})(
    (lambda ins, a: [(ins[0].shape, a["to"])], lambda xs, a: [xs[0].astype(a["to"])]))


# ---------------------------------------------------------------------------------------------
# linear algebra

def _matmul_shape(ins, attrs):
    a, b = ins[0].shape, ins[1].shape
    if len(a) == 1:
        a1 = (1,) + a
    else:
        a1 = a
    b1 = b + (1,) if len(b) == 1 else b
    if not _eq(a1[-1], b1[-2]):
        raise ValueError(f"MatMul inner dims differ: {a} x {b}")
    batch = broadcast(a1[:-2], b1[:-2])
    out = batch + (a1[-2], b1[-1])
    if len(a) == 1:
        out = out[:-2] + out[-1:]
    if len(b) == 1:
        out = out[:-1]
    return [(out, ins[0].dtype)]


register("MatMul", n_inputs=(2, 2))((_matmul_shape, lambda xs, a: [np.matmul(xs[0], xs[1])]))


def _gemm_shape(ins, a):
    m = ins[0].shape[1] if a["transA"] else ins[0].shape[0]
    n = ins[1].shape[0] if a["transB"] else ins[1].shape[1]
    return [((m, n), ins[0].dtype)]


def _gemm(xs, a):
    A = xs[0].T if a["transA"] else xs[0]
    B = xs[1].T if a["transB"] else xs[1]
    y = np.asarray(a["alpha"], A.dtype) * (A @ B)
    if len(xs) > 2 and xs[2] is not None:
        y = y + np.asarray(a["beta"], A.dtype) * xs[2]
    return [y.astype(A.dtype)]


register("Gemm", {"alpha": 1.0, "beta": 1.0, "transA": 0, "transB": 0}, n_inputs=(2, 3))(
    (_gemm_shape, _gemm))


def _einsum_shape(ins, a):
    lhs, rhs = a["equation"].replace(" ", "").split("->")
    dims: dict[str, Dim] = {}
    for term, v in zip(lhs.split(","), ins):
        if "..." in term:
            raise ValueError("Einsum with ellipsis is not supported")
        for ch, d in zip(term, v.shape):
            if ch in dims and not _eq(dims[ch], 1):
                if not _eq(d, 1):
                    continue
            else:
                dims[ch] = d
    return [(tuple(dims[c] for c in rhs), ins[0].dtype)]


register("Einsum", {"equation": REQUIRED}, n_inputs=(1, 8))(
    (_einsum_shape, lambda xs, a: [np.asarray(np.einsum(a["equation"], *xs))]))


def _linear_shape(ins, a):
    x, w = ins[0], ins[1]
    if not _eq(x.shape[-1], w.shape[0]):
        raise ValueError(f"Linear: input {x.shape} vs weight {w.shape}")
    return [(x.shape[:-1] + (w.shape[1],), x.dtype)]


def _linear(xs, a):
    y = xs[0] @ xs[1]
    if len(xs) > 2 and xs[2] is not None:
        y = y + xs[2]
    return [y.astype(xs[0].dtype)]


register("Linear", n_inputs=(2, 3), doc="y = x @ W + b (W: [in, out])")((_linear_shape, _linear))


# ---------------------------------------------------------------------------------------------
# shape manipulation

def reshape_target(in_shape, target, allowzero=0) -> tuple[Dim, ...]:
    out = list(target)
    if not allowzero:
        out = [in_shape[i] if (not is_sym(d) and d == 0) else d for i, d in enumerate(out)]
    if sum(1 for d in out if not is_sym(d) and d == -1) > 1:
        raise ValueError("Reshape: more than one -1")
    if any(not is_sym(d) and d == -1 for d in out):
        known = prod([d for d in out if is_sym(d) or d != -1])
        total = prod(in_shape)
        rest = norm_dim(sympy.sympify(total) / sympy.sympify(known))
        out = [rest if (not is_sym(d) and d == -1) else d for d in out]
    return tuple(out)


def _reshape_shape(ins, a):
    return [(reshape_target(ins[0].shape, a["shape"], a["allowzero"]), ins[0].dtype)]


def _reshape(xs, a):
    return [xs[0].reshape(reshape_target(xs[0].shape, a["shape"], a["allowzero"]))]


register("Reshape", {"shape": REQUIRED, "allowzero": 0})((_reshape_shape, _reshape))


def _transpose_shape(ins, a):
    perm = a["perm"] if a["perm"] is not None else list(reversed(range(ins[0].rank)))
    if sorted(int(p) for p in perm) != list(range(ins[0].rank)):
        raise ValueError(f"Transpose perm {list(perm)} is not a permutation of rank "
                         f"{ins[0].rank}")
    return [(tuple(ins[0].shape[p] for p in perm), ins[0].dtype)]


register("Transpose", {"perm": None})(
    (_transpose_shape, lambda xs, a: [np.transpose(xs[0], a["perm"])]))


def _unsqueeze_shape(ins, a):
    rank = ins[0].rank + len(a["axes"])
    axes = sorted(_axis(x, rank) for x in a["axes"])
    shape = list(ins[0].shape)
    for ax in axes:
        shape.insert(ax, 1)
    return [(tuple(shape), ins[0].dtype)]


def _unsqueeze(xs, a):
    rank = xs[0].ndim + len(a["axes"])
    return [np.expand_dims(xs[0], tuple(sorted(_axis(x, rank) for x in a["axes"])))]


register("Unsqueeze", {"axes": REQUIRED})((_unsqueeze_shape, _unsqueeze))


def _squeeze_axes(shape, axes):
    if axes is None:
        return [i for i, d in enumerate(shape) if not is_sym(d) and d == 1]
    return sorted(_axis(x, len(shape)) for x in axes)


def _squeeze_shape(ins, a):
    axes = _squeeze_axes(ins[0].shape, a["axes"])
    return [(tuple(d for i, d in enumerate(ins[0].shape) if i not in axes), ins[0].dtype)]


register("Squeeze", {"axes": None})(
    (_squeeze_shape, lambda xs, a: [np.squeeze(xs[0], tuple(_squeeze_axes(xs[0].shape, a["axes"])))]))


def _expand_shape(ins, a):
    return [(broadcast(ins[0].shape, tuple(a["shape"])), ins[0].dtype)]


register("Expand", {"shape": REQUIRED})(
    (_expand_shape,
     lambda xs, a: [np.array(np.broadcast_to(xs[0], broadcast(xs[0].shape, tuple(a["shape"]))))]))


def _concat_shape(ins, a):
    ax = _axis(a["axis"], ins[0].rank)
    for v in ins[1:]:
        if v.rank != ins[0].rank or v.dtype != ins[0].dtype:
            raise ValueError(f"Concat inputs differ in rank or dtype: {v.dtype}{list(v.shape)} "
                             f"vs {ins[0].dtype}{list(ins[0].shape)}")
        if not all(dims_equal(d, e) for i, (d, e) in enumerate(zip(v.shape, ins[0].shape))
                   if i != ax):
            raise ValueError(f"Concat inputs differ outside axis {ax}: {list(v.shape)} vs "
                             f"{list(ins[0].shape)}")
    shape = list(ins[0].shape)
    shape[ax] = norm_dim(sum((sympy.sympify(v.shape[ax]) for v in ins), sympy.Integer(0)))
    return [(tuple(shape), ins[0].dtype)]


register("Concat", {"axis": REQUIRED}, n_inputs=(1, 64))(
    (_concat_shape, lambda xs, a: [np.concatenate(xs, axis=a["axis"])]))


def _split_sizes(dim, a, n_out):
    if a["split"] is not None:
        return list(a["split"])
    if is_sym(dim):
        raise ValueError("Split of a dynamic axis needs explicit sizes")
    size = -(-dim // n_out)
    return [min(size, dim - i * size) for i in range(n_out)]


def _split_shape(ins, a):
    ax = _axis(a["axis"], ins[0].rank)
    dim = ins[0].shape[ax]
    sizes = _split_sizes(dim, a, a["num_outputs"])
    if len(sizes) != a["num_outputs"] or any(not is_sym(x) and x < 0 for x in sizes):
        raise ValueError(f"Split sizes {sizes} do not give {a['num_outputs']} outputs")
    if not is_sym(dim) and not any(is_sym(x) for x in sizes) and sum(sizes) != dim:
        raise ValueError(f"Split sizes {sizes} do not add up to the axis length {dim}")
    outs = []
    for s in sizes:
        shape = list(ins[0].shape)
        shape[ax] = s
        outs.append((tuple(shape), ins[0].dtype))
    return outs


def _split(xs, a):
    ax = _axis(a["axis"], xs[0].ndim)
    sizes = _split_sizes(xs[0].shape[ax], a, a["num_outputs"])
    return np.split(xs[0], np.cumsum(sizes)[:-1], axis=ax)


register("Split", {"axis": 0, "split": None, "num_outputs": REQUIRED}, n_outputs=None)(
    (_split_shape, _split))


def _slice_dim(d: Dim, start: Dim, end: Dim, step: int) -> Dim:
    if not (is_sym(d) or is_sym(start) or is_sym(end)):
        return len(range(*slice(start, end, step).indices(d)))
    if step != 1:
        raise ValueError("symbolic Slice needs step 1")
    s = start + d if (not is_sym(start) and start < 0) else start
    if not is_sym(end) and end >= 2**31:
        e = d
    elif not is_sym(end) and end < 0:
        e = d + end
    else:
        e = end
    if not is_sym(s) and s < 0:
        s = 0
    return norm_dim(sympy.Max(sympy.sympify(e) - sympy.sympify(s), 0))


def _slice_params(rank, a):
    axes = a["axes"] if a["axes"] is not None else list(range(len(a["starts"])))
    steps = a["steps"] if a["steps"] is not None else [1] * len(axes)
    return [(_axis(ax, rank), s, e, st) for ax, s, e, st in zip(axes, a["starts"], a["ends"], steps)]


def _slice_shape(ins, a):
    shape = list(ins[0].shape)
    for ax, s, e, st in _slice_params(ins[0].rank, a):
        shape[ax] = _slice_dim(shape[ax], s, e, st)
    return [(tuple(shape), ins[0].dtype)]


def _slice(xs, a):
    idx = [slice(None)] * xs[0].ndim
    for ax, s, e, st in _slice_params(xs[0].ndim, a):
        n = xs[0].shape[ax]
        s = max(min(s, INT64_MAX), -n - 1)
        e = max(min(e, INT64_MAX), -n - 1)
        if st < 0 and e < -n:
            e = None
        idx[ax] = slice(s, e, st)
    return [xs[0][tuple(idx)].copy()]


register("Slice", {"starts": REQUIRED, "ends": REQUIRED, "axes": None, "steps": None})(
    (_slice_shape, _slice))


def _gather_shape(ins, a):
    ax = _axis(a["axis"], ins[0].rank)
    s = ins[0].shape
    return [(s[:ax] + ins[1].shape + s[ax + 1:], ins[0].dtype)]


def _gather(xs, a):
    data, idx = xs
    ax = _axis(a["axis"], data.ndim)
    idx = np.where(idx < 0, idx + data.shape[ax], idx)
    if idx.size and (idx.min() < 0 or idx.max() >= data.shape[ax]):
        raise IndexError(f"Gather index out of range [0, {data.shape[ax]})")
    return [np.take(data, idx, axis=ax)]


register("Gather", {"axis": 0}, n_inputs=(2, 2))((_gather_shape, _gather))


def _shape_shape(ins, a):
    r = ins[0].rank
    start, end = a["start"], a["end"] if a["end"] is not None else r
    n = len(range(r)[slice(start, end)])
    return [((n,), "int64")]


register("Shape", {"start": 0, "end": None})(
    (_shape_shape,
     lambda xs, a: [np.array(xs[0].shape[slice(a["start"], a["end"])], dtype=np.int64)]))
register("Size")((lambda ins, a: [((), "int64")], lambda xs, a: [np.array(xs[0].size, np.int64)]))


def _range_shape(ins, a):
    n = sympy.ceiling((sympy.sympify(a["limit"]) - sympy.sympify(a["start"])) / sympy.sympify(a["delta"]))
    return [((norm_dim(sympy.Max(n, 0)),), a["dtype"])]


register("Range", {"start": REQUIRED, "limit": REQUIRED, "delta": REQUIRED, "dtype": REQUIRED},
         n_inputs=(0, 0))(
    (_range_shape, lambda xs, a: [np.arange(a["start"], a["limit"], a["delta"], dtype=a["dtype"])]))
register("ConstantOfShape", {"shape": REQUIRED, "value": 0.0, "dtype": "float32"}, n_inputs=(0, 0))(
    (lambda ins, a: [(tuple(a["shape"]), a["dtype"])],
     lambda xs, a: [np.full(tuple(a["shape"]), a["value"], dtype=a["dtype"])]))


def _trilu(xs, a):
    x, k = xs[0], a["k"]
    return [np.triu(x, k) if a["upper"] else np.tril(x, k)]


register("Trilu", {"upper": 1, "k": 0})((_same, _trilu))


def _cumsum(xs, a):
    x, ax = xs[0], _axis(a["axis"], xs[0].ndim)
    if a["reverse"]:
        x = np.flip(x, ax)
    y = np.cumsum(x, axis=ax, dtype=x.dtype)
    if a["exclusive"]:
        y = y - x
    if a["reverse"]:
        y = np.flip(y, ax)
    return [np.ascontiguousarray(y)]


register("CumSum", {"axis": REQUIRED, "exclusive": 0, "reverse": 0})((_same, _cumsum))


# ---------------------------------------------------------------------------------------------
# reductions and normalisations

def _reduce_axes(rank, a):
    if a["axes"] is None or len(a["axes"]) == 0:
        return None if not a.get("noop_with_empty_axes") else ()
    return tuple(sorted(_axis(x, rank) for x in a["axes"]))


def _reduce_shape(ins, a):
    axes = _reduce_axes(ins[0].rank, a)
    axes = tuple(range(ins[0].rank)) if axes is None else axes
    shape = [(1 if i in axes else d) for i, d in enumerate(ins[0].shape) if a["keepdims"] or i not in axes]
    return [(tuple(shape), ins[0].dtype)]


for _name, _fn in {"ReduceMean": np.mean, "ReduceSum": np.sum, "ReduceMax": np.max}.items():
    register(_name, {"axes": None, "keepdims": 1, "noop_with_empty_axes": 0})(
        (_reduce_shape, lambda xs, a, _fn=_fn: [np.asarray(
            _fn(xs[0], axis=_reduce_axes(xs[0].ndim, a), keepdims=bool(a["keepdims"])), xs[0].dtype)]))


def _softmax(xs, a):
    x = xs[0]
    e = np.exp(x - np.max(x, axis=a["axis"], keepdims=True))
    return [(e / e.sum(axis=a["axis"], keepdims=True)).astype(x.dtype)]


register("Softmax", {"axis": -1})((_same, _softmax))


def layer_norm(x, gamma, beta, axis, eps):
    axes = tuple(range(_axis(axis, x.ndim), x.ndim))
    mu = x.mean(axis=axes, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=axes, keepdims=True)
    y = (x - mu) / np.sqrt(var + np.asarray(eps, x.dtype))
    if gamma is not None:
        y = y * gamma
    if beta is not None:
        y = y + beta
    return y.astype(x.dtype)


register("LayerNormalization", {"axis": -1, "epsilon": 1e-5, "stash_type": 1}, n_inputs=(1, 3))(
    (lambda ins, a: [(ins[0].shape, ins[0].dtype)],
     lambda xs, a: [layer_norm(xs[0], xs[1] if len(xs) > 1 else None,
                               xs[2] if len(xs) > 2 else None, a["axis"], a["epsilon"])]))
register("LayerNorm", {"epsilon": 1e-5}, n_inputs=(1, 3),
         doc="LayerNorm over the last axis: (x-mean)/sqrt(var+eps)*gamma+beta")(
    (_same, lambda xs, a: [layer_norm(xs[0], xs[1] if len(xs) > 1 else None,
                                      xs[2] if len(xs) > 2 else None, -1, a["epsilon"])]))


def rms_norm(x, gamma, eps):
    y = x / np.sqrt((x * x).mean(axis=-1, keepdims=True) + np.asarray(eps, x.dtype))
    if gamma is not None:
        y = y * gamma
    return y.astype(x.dtype)


register("RMSNorm", {"epsilon": 1e-6}, n_inputs=(1, 2),
         doc="x / sqrt(mean(x^2)+eps) * gamma over the last axis")(
    (_same, lambda xs, a: [rms_norm(xs[0], xs[1] if len(xs) > 1 else None, a["epsilon"])]))


# ---------------------------------------------------------------------------------------------
# plastic attention

F_FUNCS = {
    "identity": lambda s: s,
    "relu": lambda s: np.maximum(s, 0),
    "relu2": lambda s: np.maximum(s, 0) ** 2,
}


def plastic_attention(q, k, v, heads, d_k, d_v, f, scale, normalisation, eps):
    """Reference semantics of PlasticAttention on merged-head layout.

    q, k: [..., T, heads*d_k]; v: [..., T, heads*d_v] -> [..., T, heads*d_v] with, per head,
    out_t = sum_{s<=t} f(scale * q_t.k_s) v_s, optionally divided by (sum_{s<=t} f(.) + eps).
    """
    T = q.shape[-2]
    lead = q.shape[:-2]
    qh = q.reshape(lead + (T, heads, d_k)).swapaxes(-2, -3)
    kh = k.reshape(lead + (T, heads, d_k)).swapaxes(-2, -3)
    vh = v.reshape(lead + (T, heads, d_v)).swapaxes(-2, -3)
    s = (qh @ kh.swapaxes(-1, -2)) * np.asarray(scale, q.dtype)
    a = F_FUNCS[f](s) * np.tril(np.ones((T, T), q.dtype))
    out = a @ vh
    if normalisation == "rowsum":
        out = out / (a.sum(-1, keepdims=True) + np.asarray(eps, q.dtype))
    return out.swapaxes(-2, -3).reshape(lead + (T, heads * d_v)).astype(q.dtype)


def _pa_shape(ins, a):
    q, k, v = ins
    if q.shape[-1] != a["heads"] * a["d_k"] or k.shape[-1] != q.shape[-1]:
        raise ValueError("PlasticAttention: q/k last dim must be heads*d_k")
    if v.shape[-1] != a["heads"] * a["d_v"]:
        raise ValueError("PlasticAttention: v last dim must be heads*d_v")
    return [(v.shape, v.dtype)]


register("PlasticAttention",
         {"heads": REQUIRED, "d_k": REQUIRED, "d_v": REQUIRED, "f": REQUIRED, "scale": 1.0,
          "normalisation": "none", "eps": 0.0, "T_max": REQUIRED, "lowering": "auto",
          "layer": 0},
         n_inputs=(3, 3),
         doc="causal softmax-free attention whose K/V live in plastic synapses")(
    (_pa_shape, lambda xs, a: [plastic_attention(xs[0], xs[1], xs[2], a["heads"], a["d_k"],
                                                 a["d_v"], a["f"], a["scale"],
                                                 a["normalisation"], a["eps"])]))


def with_defaults(op: str, attrs: dict) -> dict:
    """The node's attributes completed with the schema's defaults."""
    od = OPS[op]
    out = {k: v for k, v in od.attrs.items() if v is not REQUIRED}
    out.update(attrs)
    return out


# =============================================================================================
# Head layout ops (added by the passes engineer for passes/heads.py and passes/attention.py)
#
# SplitHeads: x [..., T, H*d] -> [..., H, T, d]   (Reshape to [..., T, H, d] + swap of T and H)
# MergeHeads: x [..., H, T, d] -> [..., T, H*d]   (the inverse)
# Both are pure data movement; the attention pass absorbs them into PlasticAttention.
# ---------------------------------------------------------------------------------------------

def _split_heads_shape(ins, a):
    x, h = ins[0], a["heads"]
    if x.rank < 2:
        raise ValueError("SplitHeads needs rank >= 2")
    c = x.shape[-1]
    if is_sym(c) or c % h:
        raise ValueError(f"SplitHeads: last dim {c} is not a multiple of heads={h}")
    return [(x.shape[:-2] + (h, x.shape[-2], c // h), x.dtype)]


def _split_heads(xs, a):
    x, h = xs[0], a["heads"]
    y = x.reshape(x.shape[:-1] + (h, x.shape[-1] // h))
    return [np.ascontiguousarray(np.swapaxes(y, -2, -3))]


def _merge_heads_shape(ins, a):
    x = ins[0]
    if x.rank < 3:
        raise ValueError("MergeHeads needs rank >= 3")
    h, t, d = x.shape[-3:]
    return [(x.shape[:-3] + (t, prod([h, d])), x.dtype)]


def _merge_heads(xs, a):
    x = np.swapaxes(xs[0], -2, -3)
    return [np.ascontiguousarray(x.reshape(x.shape[:-2] + (x.shape[-2] * x.shape[-1],)))]


register("SplitHeads", {"heads": REQUIRED},
         doc="[..., T, H*d] -> [..., H, T, d] (reshape + transpose of a head split)")(
    (_split_heads_shape, _split_heads))
register("MergeHeads", doc="[..., H, T, d] -> [..., T, H*d] (transpose + reshape of a head merge)")(
    (_merge_heads_shape, _merge_heads))
