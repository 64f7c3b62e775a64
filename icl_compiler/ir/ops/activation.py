"""The compiler's ``Activation`` op: one smooth elementwise function of one value, by name.

:data:`ACTIVATIONS` holds the exact functions (float64 NumPy) that the ``fuse_activation`` pass
recognises by their numbers, whatever ops an exporter wrote them with (``0.5·x·(1 + erf(x/√2))``,
``x·sigmoid(x)``, the ``Gelu`` op, ``Softplus`` …).  Float programs compute exactly these; fixed
programs an integer response fitted to them by the quantiser (docs/semantics.md §4).
"""
from __future__ import annotations

import math

import numpy as np

from .core import REQUIRED, _same, register

_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)


def _erf(x: np.ndarray) -> np.ndarray:
    # vectorised math.erf: float64 accuracy without scipy
    return np.vectorize(math.erf, otypes=[np.float64])(x) if x.size else x.astype(np.float64)


def sigmoid(x: np.ndarray) -> np.ndarray:
    """1 / (1 + e^-x) without overflow warnings (e^-x = inf for very negative x gives 0)."""
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-x))


def softplus(x: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, x)


ACTIVATIONS = {
    "gelu": lambda x: 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0))),
    "gelu_tanh": lambda x: 0.5 * x * (1.0 + np.tanh(_SQRT_2_OVER_PI * (x + 0.044715 * x**3))),
    "quick_gelu": lambda x: x * sigmoid(1.702 * x),
    "silu": lambda x: x * sigmoid(x),
    "sigmoid": sigmoid,
    "tanh": np.tanh,
    "softplus": softplus,
    "mish": lambda x: x * np.tanh(softplus(x)),
    "elu": lambda x: np.where(x > 0, x, np.expm1(np.minimum(x, 0.0))),
    "relu2": lambda x: np.maximum(x, 0.0) ** 2,
    "square": lambda x: x * x,
}
"""name -> exact float64 function."""

ACTIVATION_DOC = {
    "gelu": "GELU, erf form: x·Φ(x) = 0.5·x·(1 + erf(x/√2))",
    "gelu_tanh": "GELU, tanh form: 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))",
    "quick_gelu": "x·sigmoid(1.702·x)",
    "silu": "SiLU / swish: x·sigmoid(x)",
    "sigmoid": "1/(1 + e^−x)",
    "tanh": "tanh(x)",
    "softplus": "log(1 + e^x)",
    "mish": "x·tanh(softplus(x))",
    "elu": "ELU (α = 1): x if x > 0 else e^x − 1",
    "relu2": "ReLU²: max(x, 0)²",
    "square": "x²",
}


def activation(name: str, x: np.ndarray) -> np.ndarray:
    """The exact function ``name`` of x (float64)."""
    return ACTIVATIONS[name](np.asarray(x, np.float64))


def _compute(xs, a):
    x = xs[0]
    return [activation(a["fn"], x).astype(x.dtype)]


register("Activation", {"fn": REQUIRED},
         doc="y = fn(x) elementwise, fn one of ACTIVATIONS")((_same, _compute))
