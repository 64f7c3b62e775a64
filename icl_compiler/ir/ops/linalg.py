"""Linear algebra: MatMul, Gemm, Einsum and the compiler's Linear."""
from __future__ import annotations

import numpy as np

from ..symbolic import Dim
from .core import REQUIRED, broadcast, _eq, register


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
