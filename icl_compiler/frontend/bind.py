"""Binding the model's auxiliary inputs to compile-time values.

Exports often take more than the data: ``attention_mask`` (all ones when nothing is padded),
``position_ids`` (0, 1, 2, ...), ``token_type_ids`` (zeros).  A program streams one token at a
time with no padding, so such an input only ever carries its neutral value: it is bound at
compile time, which makes everything computed from it position-only (masks, positional
lookups) instead of data.  The report says what was bound; ``--bind NAME=ones|zeros|arange|
FILE.npy`` (``compile(..., bind={...})``) overrides the defaults, which are chosen by name:

=====================  =========  ===========================================
input name contains    default    value
=====================  =========  ===========================================
``mask``               ones       1 everywhere (no padding)
``position``/``pos_``  arange     the position index along the last axis
``token_type``         zeros      0 everywhere (a single segment)
=====================  =========  ===========================================

The data input is the first graph input whose name matches none of these (or the first input).
"""
from __future__ import annotations

import re

import numpy as np

from ..errors import CompileError
from ..ir.graph import Graph
from ..ir.ops import OPS, with_defaults
from ..ir.symbolic import is_sym

DEFAULTS = [(re.compile(r"mask", re.I), "ones"),
            (re.compile(r"position|pos_?id", re.I), "arange"),
            (re.compile(r"token_?type|segment", re.I), "zeros")]
PAST = re.compile(r"past|cache|present", re.I)


def default_binding(name: str) -> str | None:
    for pat, how in DEFAULTS:
        if pat.search(name):
            return how
    return None


def data_input_name(names: list[str]) -> str | None:
    """The data input among the model's input names."""
    cands = [n for n in names if default_binding(n) is None and not PAST.search(n)]
    return cands[0] if cands else (names[0] if names else None)


def data_input(g: Graph) -> str | None:
    return data_input_name(list(g.inputs))


def add_op(g: Graph, op: str, inputs: list[str], attrs: dict, *, out: str | None = None,
           onnx_name: str | None = None) -> str:
    """A single-output node whose output type comes from the op's shape function."""
    ins = [g.values[i] for i in inputs]
    shape, dtype = OPS[op].shape(ins, with_defaults(op, attrs))[0]  # a single-output node
    name = out or g.fresh(op.lower())
    g.add_value(name, shape, str(np.dtype(dtype)))
    g.add_node(op, inputs, [name], attrs, onnx_name=onnx_name)
    return name


def check_inputs(names: list[str], binds: dict | None = None) -> str:
    """The I/O contract on the model's input names, before anything is imported: the data
    input, and a binding (given or by name) for every other input.  Returns the data input."""
    binds = dict(binds or {})
    data = data_input_name(list(names))
    unknown = [n for n in binds if n not in names]
    if unknown:
        raise CompileError(f"--bind names {', '.join(map(repr, unknown))}, which "
                           f"{'is' if len(unknown) == 1 else 'are'} not a model input (inputs: "
                           f"{', '.join(names)})")
    if data in binds:
        raise CompileError(f"--bind {data}: that is the model's data input")
    for name in names:
        if name == data or name in binds or default_binding(name) is not None:
            continue
        if PAST.search(name):
            raise CompileError(f"model input {name!r} looks like a past key/value cache; "
                               "the program keeps K and V in plastic synapses itself",
                               hint="export without past_key_values (use_cache=False)")
        raise CompileError(f"model input {name!r} is not the data input and has no default "
                           "value", hint=f"bind it at compile time: --bind "
                                         f"{name}=ones|zeros|arange|FILE.npy")
    return data


def bind_inputs(g: Graph, binds: dict[str, str | np.ndarray] | None = None) -> dict[str, str]:
    """Replace every graph input except the data input by its bound value (in place).

    Returns {input name: how it was bound} for the report.  Raises CompileError for an input
    that cannot be bound (no default for its name, or a past key/value cache)."""
    binds = dict(binds or {})
    data = check_inputs(list(g.inputs), binds)
    report: dict[str, str] = {}
    for name in [n for n in g.inputs if n != data]:
        v = g.values[name]
        how = binds.get(name, default_binding(name))
        g.inputs.remove(name)
        if isinstance(how, np.ndarray):
            if any(is_sym(d) for d in v.shape) or tuple(how.shape) != tuple(v.shape):
                raise CompileError(f"--bind {name}=FILE: the array is {list(how.shape)}, the "
                                   f"input is {list(v.shape)} (a file binding needs the input's "
                                   "static shape)")
            v.data = np.asarray(how, dtype=v.dtype)
            g.values[name] = v
            report[name] = f"file {list(how.shape)}"
            continue
        if how in ("ones", "zeros"):
            add_op(g, "ConstantOfShape", [], {"shape": list(v.shape), "value":
                                              1 if how == "ones" else 0, "dtype": v.dtype},
                   out=name, onnx_name=f"bind:{name}")
        elif how == "arange":
            if not v.shape:
                raise CompileError(f"--bind {name}=arange: the input is a scalar")
            r = add_op(g, "Range", [], {"start": 0, "limit": v.shape[-1], "delta": 1,
                                        "dtype": v.dtype}, onnx_name=f"bind:{name}")
            if len(v.shape) > 1:
                r = add_op(g, "Unsqueeze", [r], {"axes": list(range(len(v.shape) - 1))})
                add_op(g, "Expand", [r], {"shape": list(v.shape)}, out=name)
            else:
                add_op(g, "Identity", [r], out=name)
        else:
            raise CompileError(f"--bind {name}={how}: choose ones, zeros, arange or a .npy file")
        report[name] = how
    return report
