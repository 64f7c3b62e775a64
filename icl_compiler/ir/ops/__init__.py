"""The op registry: each op's attribute schema, shape function and numpy reference semantics.

IR ops follow ONNX semantics, except that shape-like operands (Reshape's shape, Slice's
starts/ends, Expand's shape, ConstantOfShape's shape, Range's bounds, ...) are *attributes*:
the frontend folds the shape arithmetic that computes them into ints or symbolic dims.
Compiler ops (Linear, LayerNorm, RMSNorm, PlasticAttention, Activation) are added by the passes.

``shape(ins, attrs)`` gets the input :class:`Value` objects (``None`` for an omitted optional
input) and returns ``[(shape, dtype), ...]``.  ``compute(xs, attrs)`` gets numpy arrays and
attributes with symbolic dims already resolved, and returns a list of arrays.

The registry and the shared shape helpers are :mod:`.core`; the ops are registered by family:
:mod:`.elementwise`, :mod:`.linalg`, :mod:`.shape`, :mod:`.reduce`, :mod:`.attention`,
:mod:`.activation` and :mod:`.generic` (any other standard ONNX op, and dims used as data).
"""
from __future__ import annotations

from . import elementwise, linalg, shape, reduce, attention, activation, generic  # noqa: F401, I001 - registers the ops, in this order
from .activation import ACTIVATIONS
from .attention import F_FUNCS, ROW_NORMS, plastic_attention, row_denominator
from .core import OPS, REQUIRED, OpDef, _eq, broadcast, get_op, prod, register, with_defaults
from .reduce import layer_norm, rms_norm
from .shape import reshape_target

__all__ = ["OPS", "REQUIRED", "OpDef", "register", "get_op", "with_defaults", "broadcast", "prod",
           "F_FUNCS", "ROW_NORMS", "row_denominator", "ACTIVATIONS", "plastic_attention",
           "layer_norm", "rms_norm", "reshape_target", "_eq"]
