"""Shape manipulation: Reshape, Transpose, (Un)Squeeze, Expand, Concat, Split, Slice, Gather,
Shape, Size, Range, ConstantOfShape, Trilu, CumSum."""
from __future__ import annotations

import numpy as np
import sympy

from ..symbolic import Dim, dims_equal, is_sym, norm_dim
from .core import INT64_MAX, REQUIRED, _axis, _same, broadcast, prod, register


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
    # a negative bound counts from the end, symbolic ones too (x[-seq:] has seq elements)
    s = start + d if ((not is_sym(start) and start < 0) or (
        is_sym(start) and sympy.sympify(start).is_negative)) else start
    if not is_sym(end) and end >= 2**31:
        e = d
    elif (not is_sym(end) and end < 0) or (is_sym(end) and sympy.sympify(end).is_negative):
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


def _tile_shape(ins, a):
    reps = list(a["repeats"])
    if len(reps) != ins[0].rank:
        raise ValueError(f"Tile repeats {reps} do not match rank {ins[0].rank}")
    if any(not is_sym(r) and int(r) < 0 for r in reps):
        raise ValueError(f"Tile repeats {reps} must not be negative")
    return [(tuple(norm_dim(d * r) if is_sym(d) or is_sym(r) else int(d) * int(r)
                   for d, r in zip(ins[0].shape, reps)), ins[0].dtype)]


register("Tile", {"repeats": REQUIRED})(
    (_tile_shape, lambda xs, a: [np.tile(xs[0], tuple(int(r) for r in a["repeats"]))]))


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
