"""The generic ``Onnx`` op: any standard ONNX op the registry has no entry for.

Its reference semantics are onnx's own (``onnx.reference.ReferenceEvaluator`` on a one-node
model) and its output types come from ONNX shape inference on that node, with the IR's symbolic
dims passed as named dims and mapped back.  So an export's mask builder or shape plumbing
(``Mod``, ``Flatten``, ``IsNaN``, ``GatherND``, ``Pad``, ``Cos`` ...) imports whatever ops it
uses; the frontend folds it when its inputs are constants, the interpreter evaluates it when
they depend only on the sequence length, and the passes see it by its ONNX op type (the lowering
refuses it, naming the node, when it would have to run on neurons).

Attributes of an ``Onnx`` node: ``op_type``, ``domain`` (always the default domain), ``opset``,
``onnx_attrs`` (the ONNX attributes as Python values / numpy arrays), ``n_outputs``.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from .symbolic import is_sym, norm_dim

IR_VERSION = 8  # one-node models: any opset ≥ 17 is fine with IR 8


def _attr_values(attrs: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in attrs.items():
        if isinstance(v, np.ndarray):
            v = numpy_helper.from_array(v)
        out[k] = v
    return out


def _elem(dtype: str) -> int:
    return helper.np_dtype_to_tensor_dtype(np.dtype(dtype))


def node_model(op_type: str, attrs: dict[str, Any], in_types: list, n_out: int, opset: int,
               consts: dict[int, np.ndarray] | None = None) -> onnx.ModelProto:
    """A one-node model.  ``in_types``: (shape with ints or dim-name strings, dtype) per input,
    None for an omitted optional input; ``consts``: inputs given as initializers."""
    consts = consts or {}
    names = [("" if t is None else f"in{i}") for i, t in enumerate(in_types)]
    outs = [f"out{i}" for i in range(n_out)]
    node = helper.make_node(op_type, names, outs, **_attr_values(attrs))
    inputs, inits = [], []
    for i, t in enumerate(in_types):
        if t is None:
            continue
        if i in consts:
            inits.append(numpy_helper.from_array(np.asarray(consts[i]), names[i]))
            continue
        shape, dtype = t
        inputs.append(helper.make_tensor_value_info(names[i], _elem(dtype), list(shape)))
    outputs = [helper.make_empty_tensor_value_info(o) for o in outs]
    graph = helper.make_graph([node], "onnx_op", inputs, outputs, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                             ir_version=IR_VERSION)


def infer(op_type: str, attrs: dict[str, Any], ins: list, n_out: int, opset: int,
          consts: dict[int, np.ndarray] | None = None) -> list[tuple[tuple, str]]:
    """Output (shape, dtype) per output; ``ins``: (shape with ints/sympy dims, dtype) or None.
    Raises ValueError when ONNX cannot infer a type or a dim it returns has no IR meaning."""
    names: dict[str, Any] = {}
    types = []
    for t in ins:
        if t is None:
            types.append(None)
            continue
        shape, dtype = t
        dims = []
        for d in shape:
            if is_sym(d):
                key = f"__d{len(names)}" if str(d) not in {str(v) for v in names.values()} else \
                    next(k for k, v in names.items() if str(v) == str(d))
                names[key] = d
                dims.append(key)
            else:
                dims.append(int(d))
        types.append((dims, dtype))
    model = node_model(op_type, attrs, types, n_out, opset, consts)
    try:
        inferred = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True,
                                                     data_prop=True)
    except Exception as e:  # noqa: BLE001 - onnx raises several types
        raise ValueError(f"ONNX shape inference failed for {op_type}: "
                         f"{str(e).strip().splitlines()[-1][:200]}") from None
    vi = {v.name: v for v in inferred.graph.output}
    res = []
    for i in range(n_out):
        tt = vi[f"out{i}"].type.tensor_type
        if not tt.HasField("shape"):
            raise ValueError(f"ONNX shape inference gives no shape for {op_type} output {i}")
        shape = []
        for d in tt.shape.dim:
            if d.HasField("dim_value"):
                shape.append(int(d.dim_value))
            elif d.dim_param in names:
                shape.append(names[d.dim_param])
            else:
                raise ValueError(f"{op_type} output {i} has a dimension that depends on the data "
                                 f"({d.dim_param or '?'})")
        if not tt.elem_type:
            raise ValueError(f"ONNX shape inference gives no element type for {op_type}")
        res.append((tuple(norm_dim(x) for x in shape),
                    np.dtype(helper.tensor_dtype_to_np_dtype(tt.elem_type)).name))
    return res


@lru_cache(maxsize=512)
def _evaluator(key: bytes):
    from onnx.reference import ReferenceEvaluator

    return ReferenceEvaluator(onnx.load_from_string(key))


def check_implemented(op_type: str, attrs: dict[str, Any], ins: list, n_out: int,
                      opset: int) -> None:
    """Raise ValueError when onnx's reference has no implementation of the op (deprecated ops
    such as Scatter): the interpreter could not evaluate it."""
    types = [None if t is None else ([1 if is_sym(d) else int(d) for d in t[0]], t[1])
             for t in ins]
    try:
        _evaluator(node_model(op_type, attrs, types, n_out, opset).SerializeToString())
    except Exception as e:  # noqa: BLE001 - onnx raises its own types
        raise ValueError(f"onnx's reference implementation cannot evaluate {op_type} "
                         f"({type(e).__name__}: {str(e).strip().splitlines()[0][:120]})") from None


def evaluate(op_type: str, attrs: dict[str, Any], xs: list, n_out: int,
             opset: int) -> list[np.ndarray]:
    """Run the op with onnx's reference implementation on concrete inputs (None = omitted)."""
    types = [None if x is None else (list(np.shape(x)), np.asarray(x).dtype.name) for x in xs]
    model = node_model(op_type, attrs, types, n_out, opset)
    ev = _evaluator(model.SerializeToString())
    feeds = {f"in{i}": np.asarray(x) for i, x in enumerate(xs) if x is not None}
    return [np.asarray(o) for o in ev.run(None, feeds)]
