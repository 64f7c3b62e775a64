"""Elementwise ops: unary and binary arithmetic, comparisons, logic, Where, Cast."""
from __future__ import annotations

import math

import numpy as np

from .core import REQUIRED, _bcast, _bcast_bool, broadcast, register, _same


def _erf(x):
    # vectorised math.erf keeps float64 accuracy without scipy
    return np.vectorize(math.erf, otypes=[x.dtype])(x) if x.size else x.copy()


def _sigmoid(x):
    with np.errstate(over="ignore"):  # exp(-x) overflows to inf for very negative x: 1/inf = 0
        return (1 / (1 + np.exp(-x))).astype(x.dtype)


_UNARY = {
    "Identity": lambda x: x.copy(),
    "Neg": np.negative,
    "Relu": lambda x: np.maximum(x, np.zeros((), x.dtype)),
    "Sqrt": np.sqrt,
    "Reciprocal": lambda x: (np.ones((), x.dtype) / x).astype(x.dtype),
    "Exp": np.exp,
    "Abs": np.abs,
    "Tanh": np.tanh,
    "Sigmoid": lambda x: _sigmoid(x),
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
