"""Reductions and normalisations: ReduceMean/Sum/Max, Softmax, LayerNormalization and the
compiler's LayerNorm, RMSNorm and L2Norm."""
from __future__ import annotations

import numpy as np

from .core import _axis, register, _same


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


def _ln_shape(ins, a):
    """Y, and the optional Mean and InvStdDev (the normalised axes kept with size 1; float32
    unless stash_type is 0)."""
    x = ins[0]
    ax = _axis(a["axis"], x.rank)
    stat = tuple(d if i < ax else 1 for i, d in enumerate(x.shape))
    u = x.dtype if a["stash_type"] == 0 else "float32"
    return [(x.shape, x.dtype), (stat, u), (stat, u)]


def _ln(xs, a):
    x = xs[0]
    axes = tuple(range(_axis(a["axis"], x.ndim), x.ndim))
    u = x.dtype if a["stash_type"] == 0 else np.float32
    xu = x.astype(u)
    mu = xu.mean(axis=axes, keepdims=True)
    inv = 1 / np.sqrt(((xu - mu) ** 2).mean(axis=axes, keepdims=True) + np.asarray(a["epsilon"],
                                                                                    u))
    y = layer_norm(x, xs[1] if len(xs) > 1 else None, xs[2] if len(xs) > 2 else None, a["axis"],
                   a["epsilon"])
    return [y, mu.astype(u), inv.astype(u)]


register("LayerNormalization", {"axis": -1, "epsilon": 1e-5, "stash_type": 1}, n_inputs=(1, 3),
         n_outputs=None)((_ln_shape, _ln))
register("LayerNorm", {"epsilon": 1e-5}, n_inputs=(1, 3),
         doc="LayerNorm over the last axis: (x-mean)/sqrt(var+eps)*gamma+beta")(
    (_same, lambda xs, a: [layer_norm(xs[0], xs[1] if len(xs) > 1 else None,
                                      xs[2] if len(xs) > 2 else None, -1, a["epsilon"])]))


def rms_norm(x, gamma, eps):
    y = x / np.sqrt((x * x).mean(axis=-1, keepdims=True) + np.asarray(eps, x.dtype))
    if gamma is not None:
        y = y * gamma
    return y.astype(x.dtype)


def l2_norm(x, gamma, eps):
    n = np.sqrt((x * x).sum(axis=-1, keepdims=True))
    y = x / np.maximum(n, np.asarray(eps, x.dtype))
    if gamma is not None:
        y = y * gamma
    return y.astype(x.dtype)


register("L2Norm", {"epsilon": 1e-12}, n_inputs=(1, 2),
         doc="x / max(||x||_2, eps) * gamma over the last axis (F.normalize)")(
    (_same, lambda xs, a: [l2_norm(xs[0], xs[1] if len(xs) > 1 else None, a["epsilon"])]))
register("RMSNorm", {"epsilon": 1e-6}, n_inputs=(1, 2),
         doc="x / sqrt(mean(x^2)+eps) * gamma over the last axis")(
    (_same, lambda xs, a: [rms_norm(xs[0], xs[1] if len(xs) > 1 else None, a["epsilon"])]))
