"""ONNX → tensor IR: the importer (``import_model``) and the report's model I/O (``onnx_io``).

1. Load (with external data, restricted to the model's folder), ``onnx.checker``, strict
   ``onnx.shape_inference`` (catches malformed graphs early).
2. Walk the nodes in order.  Values computable at compile time are *known*: numeric arrays
   (constants, folded subgraphs) or small object arrays of symbolic dims (shape arithmetic on
   dynamic axes: ``Shape → Gather → Concat → Reshape``).  Shape-like operands (Reshape's shape,
   Slice's bounds, ...) must be known and become IR attributes.  Everything else becomes an IR
   node whose output shape comes from the op registry's shape function.
3. Ops outside :data:`SUPPORTED_OPS` are imported generically (``frontend/generic.py``):
   folded with onnx's reference implementation when their inputs are known, else kept as
   ``Onnx`` IR nodes; ONNX sequences of a constant structure become lists of values.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import onnx
import sympy
from onnx import numpy_helper

from ..errors import CompileError
from ..ir.graph import Graph, Value
from ..ir.ops import OPS, with_defaults
from ..ir.symbolic import has_sym, is_sym, norm_dim
from .decode import (MAX_DIM, MAX_FOLD_ELEMENTS, _attrs, _check_array, _check_shape, _first_line,
                     _fmt, _label, _np_dtype)
from .generic import SEQUENCE_OPS, import_generic, import_sequence
from .pointwise import import_pointwise_conv
from .realdims import _REAL_MOVES, _REAL_OPS, import_range, real_fold, real_move
from .shapes import _dim_symbol, _dims_array, _fold_symbolic, _prod
from .validate import (AXIS_OPS, BOOL_ATTRS, MIN_RANK, VARIADIC, _check_axis, _check_norm_params,
                       _check_reshape, _einsum_equation, _validate)

SUPPORTED_OPS = sorted([
    "Flatten", "Tile", "Gather", "MatMul", "Gemm", "Add", "Sub", "Mul", "Div", "Pow", "Sqrt", "Reciprocal", "Neg",
    "Relu", "Max", "Min", "Where", "Trilu", "Equal", "Less", "Greater", "LessOrEqual",
    "GreaterOrEqual", "And", "Or", "Not", "Cast", "CastLike", "Range", "Shape", "Size", "Slice",
    "Split", "Concat", "Reshape", "Transpose", "Unsqueeze", "Squeeze", "Expand", "Constant",
    "ConstantOfShape", "Identity", "ReduceMean", "ReduceSum", "ReduceMax", "LayerNormalization",
    "Softmax", "Erf", "Tanh", "Gelu", "Sigmoid", "CumSum", "Einsum", "Exp", "Abs", "Dropout",
])

# ONNX input slots that carry shapes/axes/bounds: (slot index, IR attribute name)
SHAPE_SLOTS: dict[str, list[tuple[int, str]]] = {
    "Reshape": [(1, "shape")],
    "Expand": [(1, "shape")],
    "Tile": [(1, "repeats")],
    "Slice": [(1, "starts"), (2, "ends"), (3, "axes"), (4, "steps")],
    "Unsqueeze": [(1, "axes")],
    "Squeeze": [(1, "axes")],
    "ReduceMean": [(1, "axes")],
    "ReduceSum": [(1, "axes")],
    "ReduceMax": [(1, "axes")],
    "Split": [(1, "split")],
    "Trilu": [(1, "k")],
    "CumSum": [(1, "axis")],
    "ConstantOfShape": [(0, "shape")],
    "Range": [(0, "start"), (1, "limit"), (2, "delta")],
}
SCALAR_ATTRS = {"k", "axis", "start", "limit", "delta"}
STATIC_ATTRS = {"axes", "axis", "steps"}  # operands that may not depend on dynamic axes
DOMAIN_HINT = ("only standard ONNX ops (the default domain) can be compiled; export without "
               "custom or contrib ops (e.g. those of onnxruntime's graph optimiser)")


class _Importer:
    def __init__(self, model: onnx.ModelProto):
        self.model = model
        self.opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
        self.g = Graph(model.graph.name or "model")
        self.known: dict[str, np.ndarray] = {}
        self.emitted_consts: set[str] = set()
        self.sequences: dict[str, list[str]] = {}  # ONNX sequences: the values they hold
        self.output_names = {o.name for o in model.graph.output}
        self.node_names: set[str] = set()
        # known symbolic values that are floats (a dynamic dim cast to float, then arithmetic
        # on it: torch.arange(T, dtype=float32)), with their dtype; their entries are exact
        # sympy expressions (float constants enter as the rationals they are)
        self.real: dict[str, str] = {}

    # -- helpers ----------------------------------------------------------------------------
    def shape_of(self, name: str) -> tuple:
        if name in self.g.values:
            return self.g.values[name].shape
        return tuple(self.known[name].shape)

    def dtype_of(self, name: str) -> str:
        if name in self.g.values:
            return self.g.values[name].dtype
        k = self.known[name]
        return k.dtype.name if k.dtype != object else self.real.get(name, "int64")

    def as_value(self, name: str, node: onnx.NodeProto) -> str:
        """Make sure a tensor operand exists as an IR value (materialising known constants)."""
        if name in self.g.values:
            return name
        if name in self.known:
            arr = self.known[name]
            if arr.dtype == object:
                # dims used as data: a position-only value resolved at run time
                vals = [norm_dim(x) if isinstance(x, sympy.Basic) else int(x) for x in arr.ravel()]
                dtype = self.real.get(name, "int64")
                self.g.add_value(name, arr.shape, dtype)
                self.g.add_node("Dims", [], [name], {"values": vals, "shape": list(arr.shape),
                                                     "dtype": dtype},
                                name=self.g.fresh("dims"))
                return name
            _check_array(arr, f"constant {name!r} (computed at compile time)", node=_label(node),
                         op=node.op_type)
            self.g.add_value(name, arr.shape, arr.dtype.name, arr)
            return name
        raise CompileError(f"input {name!r} is not produced by any node, initialiser or graph "
                           "input", node=_label(node), op=node.op_type)

    def ints_of(self, name: str, node: onnx.NodeProto, what: str) -> list:
        if name not in self.known:
            raise CompileError(
                f"{what} operand {name!r} is computed from tensor data at run time; the compiler "
                "needs it at compile time (shape arithmetic on the input's shape is fine)",
                node=_label(node), op=node.op_type)
        arr = self.known[name]
        if what in SCALAR_ATTRS and arr.size != 1:
            raise CompileError(f"{what} operand {name!r} must hold one value, not {arr.size}",
                               node=_label(node), op=node.op_type)
        if arr.dtype != object:
            if arr.dtype.kind not in "biu":
                raise CompileError(f"{what} operand {name!r} must be integer, not {arr.dtype}",
                                   node=_label(node), op=node.op_type)
            return [int(x) for x in np.asarray(arr).ravel()]
        vals = [norm_dim(x) if isinstance(x, sympy.Basic) else int(x) for x in arr.ravel()]
        if what in STATIC_ATTRS and any(is_sym(v) for v in vals):
            raise CompileError(f"{what} operand {name!r} depends on a dynamic axis "
                               f"({', '.join(map(str, vals))}); it must be a constant",
                               node=_label(node), op=node.op_type)
        return vals

    # -- main loop ------------------------------------------------------------------------------
    def run(self) -> Graph:
        gp = self.model.graph
        inits = {t.name for t in gp.initializer}
        for t in gp.initializer:
            if t.name in self.known:
                raise CompileError(f"initialiser {t.name!r} is defined twice")
            what = f"initialiser {t.name!r}"
            try:
                arr = numpy_helper.to_array(t)
            except Exception as e:  # noqa: BLE001
                raise CompileError(f"{what} cannot be read: {_first_line(e)}") from None
            self.known[t.name] = _check_array(np.array(arr), what)
        for vi in gp.input:
            if vi.name in inits:
                continue
            tt = vi.type.tensor_type
            if not vi.type.HasField("tensor_type") or not tt.HasField("shape"):
                raise CompileError(f"graph input {vi.name!r} has no tensor shape")
            if vi.name in self.g.values:
                raise CompileError(f"graph input {vi.name!r} is declared twice")
            dims = []
            for j, d in enumerate(tt.shape.dim):
                if d.HasField("dim_value"):
                    if not 0 < d.dim_value <= MAX_DIM:
                        raise CompileError(f"graph input {vi.name!r}: bad dimension {d.dim_value} "
                                           f"(must lie in 1..{MAX_DIM})")
                    dims.append(int(d.dim_value))
                else:
                    raw = d.dim_param if d.HasField("dim_param") else ""
                    dims.append(_dim_symbol(raw, f"{vi.name}_d{j}"))
            self.g.add_value(vi.name, dims, _np_dtype(tt.elem_type, f"graph input {vi.name!r}"))
            self.g.inputs.append(vi.name)
        if not self.g.inputs:
            raise CompileError("the model has no runtime inputs")
        for node in gp.node:
            self.import_node(node)
        for o in gp.output:
            if o.name not in self.g.values:
                if o.name in self.known:
                    raise CompileError(f"graph output {o.name!r} is a constant: the model ignores its input")
                raise CompileError(f"graph output {o.name!r} is not produced by any node")
            self.g.outputs.append(o.name)
        self.g.prune()
        self.g.sort()
        self.g.meta["opset"] = self.opset
        self.g.meta["producer"] = f"{self.model.producer_name} {self.model.producer_version}".strip()
        return self.g

    def import_node(self, node: onnx.NodeProto) -> None:
        op = node.op_type
        if node.domain not in ("", "ai.onnx"):
            raise CompileError(f"op from domain {node.domain!r} is not supported",
                               node=_label(node),
                               op=op, hint=DOMAIN_HINT)
        ins = list(node.input)
        for i in ins:
            if i and i not in self.known and i not in self.g.values and i not in self.sequences:
                raise CompileError(f"input {i!r} is used before it is produced (the graph is not "
                                   "topologically sorted or has a cycle)", node=_label(node), op=op)
        if not node.output or not node.output[0]:
            raise CompileError("the node has no output", node=_label(node), op=op)
        for o in node.output:
            if o and (o in self.known or o in self.g.values or o in self.sequences):
                raise CompileError(f"value {o!r} is produced twice", node=_label(node), op=op)
        try:
            a = _attrs(node)
            if op == "Conv" and import_pointwise_conv(self, node, a, ins):
                pass
            elif op in SUPPORTED_OPS:
                self._import(node, op, a, ins)
            elif op in SEQUENCE_OPS:
                import_sequence(self, node, op, a, ins)
            else:
                import_generic(self, node, op, a, ins)
        except CompileError as e:
            if e.node is None and e.op is None:  # say where it happened
                raise CompileError(e.reason, node=_label(node), op=op, hint=e.hint) from None
            raise
        except Exception as e:  # noqa: BLE001 - shape/attribute trouble in a hostile model
            raise CompileError(f"cannot import: {type(e).__name__}: {_first_line(e)}",
                               node=_label(node), op=op) from None

    def _import(self, node, op, a, ins, outs=None) -> None:
        outs = list(node.output) if outs is None else outs
        if op == "Constant":
            self.known[outs[0]] = _check_array(self._constant(a), f"Constant {outs[0]!r}")
            return
        if op in VARIADIC and len(ins) > VARIADIC[op]:
            # ONNX takes any number of inputs; the IR op takes at most VARIADIC[op]: chain them
            # (exact: max/min and concatenation along one axis are associative)
            k = VARIADIC[op]
            acc, rest, step = ins[:k], ins[k:], 0
            while True:
                last = len(rest) == 0
                out = outs[0] if last else f"{outs[0]}/{op.lower()}_part{step}"
                if not last and (out in self.known or out in self.g.values):
                    raise CompileError(f"value {out!r} already exists")
                self._import(node, op, a, acc, [out])
                if last:
                    return
                acc, rest, step = [out] + rest[:k - 1], rest[k - 1:], step + 1
        if op == "Flatten":  # a Reshape to [prod(shape[:axis]), prod(shape[axis:])]
            shape = self.shape_of(ins[0])
            ax = int(a.get("axis", 1))
            if not -len(shape) <= ax <= len(shape):
                raise CompileError(f"Flatten axis {ax} is out of range for rank {len(shape)}")
            ax = ax + len(shape) if ax < 0 else ax
            op, a = "Reshape", {}
            self.known[f"{outs[0]}/flatten_shape"] = _dims_array(
                [_prod(shape[:ax]), _prod(shape[ax:])])
            ins = [ins[0], f"{outs[0]}/flatten_shape"]
        if op in ("Max", "Min") and len(ins) == 1:
            op = "Identity"
        if op == "Dropout" and len(ins) > 2 and ins[2]:
            mode = self.known.get(ins[2])
            if mode is None or mode.dtype == object or bool(np.asarray(mode).ravel()[0]):
                raise CompileError("Dropout in training mode (or with a run-time training_mode) "
                                   "is random; export the model in eval mode")
        if op in ("Identity", "Dropout"):
            src = ins[0]
            if src in self.known:
                self.known[outs[0]] = self.known[src]
                if src in self.real:
                    self.real[outs[0]] = self.real[src]
            else:
                self.emit("Identity", [src], outs[:1], {}, node)
            if op == "Dropout" and len(outs) > 1 and outs[1]:  # eval mode: the mask keeps all
                self.emit("ConstantOfShape", [], outs[1:2],
                          {"shape": list(self.shape_of(src)), "value": True, "dtype": "bool"},
                          node)
            return
        if op == "Shape":
            shape = self.shape_of(ins[0])
            start, end = a.get("start", 0), a.get("end", None)
            self.known[outs[0]] = _dims_array(shape[slice(start, end)])
            return
        if op == "Size":
            self.known[outs[0]] = _dims_array([_prod(self.shape_of(ins[0]))]).reshape(())
            return
        if op == "CastLike":
            op, a, ins = "Cast", {"to": self.dtype_of(ins[1])}, ins[:1]
        elif op == "Cast":
            a = {"to": _np_dtype(a["to"], "the Cast target")}
        if op == "Range" and import_range(self, node, ins, outs):
            return
        if op in ("Cast", *_REAL_OPS) and real_fold(self, op, a, ins, outs):
            return
        attrs = self._ir_attrs(op, a, ins, node)
        data_ins = [i for k, i in enumerate(ins) if k not in {s for s, _ in SHAPE_SLOTS.get(op, [])}]
        if op == "Range":
            attrs["dtype"] = self.dtype_of(ins[0])
            data_ins = []
            if not is_sym(attrs["delta"]) and attrs["delta"] == 0:
                raise CompileError("Range delta is 0")
        if op == "ConstantOfShape":
            val = np.asarray(a.get("value", np.zeros(1, np.float32)))
            if val.size != 1:
                raise CompileError(f"ConstantOfShape value must hold one element, not {val.size}")
            attrs = {"shape": attrs["shape"], "value": val.ravel()[0].item(),
                     "dtype": val.dtype.name}
        if op == "Split":
            attrs["num_outputs"] = len(outs)
        for k, i in enumerate(data_ins):
            if not i and (op in VARIADIC or op == "Einsum" or k < OPS[op].n_inputs[0]):
                raise CompileError(f"input {k} is missing (empty name)")
        if op in MIN_RANK and data_ins and data_ins[0]:
            rank = len(self.shape_of(data_ins[0]))
            if rank < MIN_RANK[op]:
                raise CompileError(f"{op} needs an input of rank >= {MIN_RANK[op]}, "
                                   f"got rank {rank}")
        _validate(op, [self.shape_of(i) if i else None for i in data_ins], attrs, len(outs))
        if op in _REAL_MOVES and any(i in self.real for i in data_ins if i) and all(
                (not i) or i in self.known for i in data_ins):
            real_move(self, op, [self.known[i] if i else None for i in data_ins], attrs,
                            self.real[next(i for i in data_ins if i in self.real)], outs)
            return
        # fold when every data operand is known
        xs_sym = any(i and self.known.get(i, np.zeros(0)).dtype == object for i in data_ins)
        if all((not i) or i in self.known for i in data_ins) and (xs_sym or not has_sym(attrs)):
            folded = self._fold(op, [self.known[i] if i else None for i in data_ins], attrs, node)
            if folded is not None:
                for o, arr in zip(outs, folded):
                    self.known[o] = arr
                return
        self.emit(op, [self.as_value(i, node) if i else "" for i in data_ins], outs, attrs, node)

    def _constant(self, a: dict) -> np.ndarray:
        if len(a) != 1:
            raise CompileError(f"a Constant needs exactly one value attribute, got {sorted(a)}")
        if "value" in a:
            return np.array(a["value"])
        for key, dt in (("value_float", np.float32), ("value_floats", np.float32),
                        ("value_int", np.int64), ("value_ints", np.int64)):
            if key in a:
                return np.array(a[key], dtype=dt)
        raise CompileError(f"Constant with unsupported attribute(s) {sorted(a)} (supported: value, "
                           "value_float(s), value_int(s))")

    def _ir_attrs(self, op, a, ins, node) -> dict:
        attrs: dict[str, Any] = {}
        schema = OPS[op].attrs
        for k, v in a.items():
            if k in schema:
                attrs[k] = v
        for k in BOOL_ATTRS & set(attrs):
            if isinstance(attrs[k], bool) or attrs[k] not in (0, 1):
                raise CompileError(f"attribute {k}={attrs[k]!r} must be 0 or 1")
        if op == "Gelu" and "approximate" in a:
            if a["approximate"] not in ("none", "tanh"):
                raise CompileError(f"Gelu approximate={a['approximate']!r} must be 'none' or "
                                   "'tanh'")
            attrs["approximate"] = a["approximate"]
        for slot, name in SHAPE_SLOTS.get(op, []):
            if slot < len(ins) and ins[slot]:
                vals = self.ints_of(ins[slot], node, name)
                attrs[name] = vals[0] if name in SCALAR_ATTRS else vals
        if op in ("Reshape", "Expand") and "shape" in attrs:
            attrs["shape"] = list(attrs["shape"])
        if op == "Reshape" and "shape" in attrs and not attrs.get("allowzero", 0):
            rank = len(self.shape_of(ins[0]))
            for i, d in enumerate(attrs["shape"]):
                if not is_sym(d) and d == 0 and i >= rank:
                    raise CompileError(f"Reshape target {_fmt(attrs['shape'])} copies dim {i} "
                                       f"(a 0) from an input of rank {rank}")
        if op == "Einsum":
            attrs["equation"] = _einsum_equation(a.get("equation", ""), len(ins))
        if op == "Trilu" and "k" in attrs and not is_sym(attrs["k"]):
            # |k| beyond any dim keeps all or nothing; clamp so that numpy's tril/triu (which
            # negate k in int64) cannot overflow on k = -2**63
            attrs["k"] = max(-MAX_DIM, min(MAX_DIM, int(attrs["k"])))
        return attrs

    def _fold(self, op, xs, attrs, node) -> list[np.ndarray] | None:
        symbolic = any(x is not None and x.dtype == object for x in xs)
        full = with_defaults(op, attrs)
        if op == "Range" or op == "ConstantOfShape":
            full = {k: (int(v) if isinstance(v, sympy.Basic) and v.is_number else v)
                    for k, v in full.items()}
        self._fold_guard(op, xs, full, node)
        # NaN/inf from folding are reported (naming the tensor) if they reach the IR; numpy's
        # RuntimeWarnings would only clutter the CLI's one-line errors
        with np.errstate(all="ignore"):
            if not symbolic:
                return [np.asarray(r) for r in OPS[op].compute(xs, full)]
            return _fold_symbolic(op, xs, full)

    def _fold_guard(self, op, xs, full, node) -> None:
        """Refuse to compute a constant that is too large, before allocating it."""
        ins = [None if x is None else
               Value("", tuple(x.shape), "int64" if x.dtype == object else x.dtype.name)
               for x in xs]
        results = OPS[op].shape(ins, full)  # raises for inconsistent operands
        # a constant no larger than its inputs (a transpose, reshape or slice of a weight) is
        # always folded; growth is bounded
        size_in = sum(int(np.prod([d for d in x.shape])) for x in xs if x is not None)
        for shape, _ in results:
            _check_shape(shape, "the constant computed at compile time", node,
                         limit=max(MAX_FOLD_ELEMENTS, size_in))

    def emit(self, op, ins, outs, attrs, node) -> None:
        od = OPS[op]
        in_vals = [self.g.values[i] if i else None for i in ins]
        results = od.shape(in_vals, with_defaults(op, attrs))
        for o, (shape, _) in zip(outs, results):
            _check_shape(shape, f"output {o!r}", node)
        if len(results) == 1 and op != "ConstantOfShape" and outs[0] not in self.output_names \
                and any(not is_sym(d) and int(d) == 0 for d in results[0][0]):
            # an empty value depends on no data (e.g. a zero-width rotary slice): a constant of
            # its (possibly symbolic) shape
            shape, dtype = results[0]
            self.emit("ConstantOfShape", [], outs[:1],
                      {"shape": list(shape), "value": 0, "dtype": dtype}, node)
            return
        if len(outs) > 1 and op != "ConstantOfShape":
            # empty pieces of a multi-output op (a zero-width Split part) depend on no data:
            # constants of their shape; the op writes unused names in their place
            for k, (o, (shape, dtype)) in enumerate(zip(outs, results)):
                if o not in self.output_names and any(not is_sym(d) and int(d) == 0
                                                       for d in shape):
                    self.emit("ConstantOfShape", [], [o], {"shape": list(shape), "value": 0,
                                                           "dtype": dtype}, node)
                    outs = outs[:k] + [self.g.fresh(f"{o}/empty")] + outs[k + 1:]
        for o, (shape, _) in zip(outs, results):
            if op != "ConstantOfShape" and o in self.output_names and any(
                    not is_sym(d) and int(d) == 0 for d in shape):
                raise CompileError(f"output {o!r} is empty (shape {_fmt(shape)}); a run-time "
                                   "tensor without elements cannot be mapped to neurons",
                                   node=_label(node), op=node.op_type)
        if op in AXIS_OPS and in_vals and in_vals[0] is not None:
            _check_axis(attrs.get("axis", AXIS_OPS[op]), in_vals[0].rank, node)
        if op == "Reshape":
            _check_reshape(in_vals[0].shape, results[0][0], node)
        if op == "LayerNormalization":
            _check_norm_params(in_vals, with_defaults(op, attrs)["axis"], node)
        name = node.name if node.name and node.name not in self.node_names else None
        n = self.g.add_node(op, ins, outs[:len(results)], attrs, name=name, onnx_name=node.name or None)
        self.node_names.add(n.name)
        for o, (shape, dtype) in zip(outs, results):
            if o in self.g.values or o in self.known:
                raise CompileError(f"value {o!r} is produced twice", node=_label(node),
                                   op=node.op_type)
            self.g.add_value(o, [norm_dim(d) if isinstance(d, sympy.Basic) else int(d) for d in shape],
                             dtype)


def import_model(model: onnx.ModelProto) -> Graph:
    try:
        return _Importer(model).run()
    except CompileError:
        raise
    except Exception as e:  # noqa: BLE001 - last line of defence: never a traceback
        raise CompileError(f"cannot import the model ({INTERNAL}: {type(e).__name__}: "
                           f"{_first_line(e)})") from None


INTERNAL = "internal frontend error, please report it"

def onnx_io(model: onnx.ModelProto) -> dict:
    """Inputs and outputs with shapes (dim names for dynamic axes) for the report."""
    inits = {t.name for t in model.graph.initializer}

    def desc(vi):
        tt = vi.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in tt.shape.dim]
        return {"name": vi.name, "shape": dims, "dtype": _np_dtype(tt.elem_type, f"{vi.name!r}")}

    return {"inputs": [desc(v) for v in model.graph.input if v.name not in inits],
            "outputs": [desc(v) for v in model.graph.output]}
