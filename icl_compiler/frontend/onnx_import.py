"""ONNX → tensor IR.

1. Load (with external data, restricted to the model's folder), ``onnx.checker``, strict
   ``onnx.shape_inference`` (catches malformed graphs early).
2. Walk the nodes in order.  Values computable at compile time are *known*: numeric arrays
   (constants, folded subgraphs) or small object arrays of symbolic dims (shape arithmetic on
   dynamic axes: ``Shape → Gather → Concat → Reshape``).  Shape-like operands (Reshape's shape,
   Slice's bounds, ...) must be known and become IR attributes.  Everything else becomes an IR
   node whose output shape comes from the op registry's shape function.
3. Ops outside :data:`SUPPORTED_OPS` raise CompileError naming the node and the supported list.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import sympy
from onnx import helper, numpy_helper

from ..errors import CompileError
from ..ir.graph import Graph
from ..ir.ops import OPS, with_defaults
from ..ir.symbolic import has_sym, is_sym, norm_dim, sym

SUPPORTED_OPS = sorted([
    "Gather", "MatMul", "Gemm", "Add", "Sub", "Mul", "Div", "Pow", "Sqrt", "Reciprocal", "Neg",
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

DEFAULT_MAX_EXTERNAL_BYTES = 2 * 1024**3
SUPPORTED_HINT = "Supported ONNX ops: " + ", ".join(SUPPORTED_OPS) + "."


# ---------------------------------------------------------------------------------------------
# loading

def load_onnx(src: str | os.PathLike | onnx.ModelProto, *,
              max_external_bytes: int = DEFAULT_MAX_EXTERNAL_BYTES) -> onnx.ModelProto:
    """Load a model, its external data (only from inside the model's folder) and check it."""
    if isinstance(src, onnx.ModelProto):
        model = src
        base = None
    else:
        path = Path(src)
        if not path.is_file():
            raise CompileError(f"{path}: no such file")
        try:
            model = onnx.load(str(path), load_external_data=False)
        except Exception as e:  # noqa: BLE001 - protobuf raises many types for bad bytes
            raise CompileError(f"{path}: not a readable ONNX model ({type(e).__name__}: "
                               f"{str(e).splitlines()[0] if str(e) else 'parse error'})") from None
        base = path.resolve().parent
    if not model.HasField("graph") or not model.graph.node:
        raise CompileError("the ONNX model has an empty graph (is this really an ONNX file?)")
    _load_external(model, base, max_external_bytes)
    try:
        onnx.checker.check_model(model)
    except Exception as e:  # noqa: BLE001
        raise CompileError(f"onnx.checker rejected the model: {_first_line(e)}") from None
    if model.functions:
        try:
            from onnx import inliner
            model = inliner.inline_local_functions(model)
        except Exception as e:  # noqa: BLE001
            raise CompileError(f"could not inline the model's local functions: {_first_line(e)}") from None
    try:
        model = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    except Exception as e:  # noqa: BLE001
        raise CompileError(f"ONNX shape inference failed: {_first_line(e)}") from None
    return model


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("=="):
            return line[:300]
    return type(e).__name__


def _external_tensors(model: onnx.ModelProto):
    from onnx.external_data_helper import _get_all_tensors, uses_external_data

    return [t for t in _get_all_tensors(model) if uses_external_data(t)]


def _load_external(model: onnx.ModelProto, base: Path | None, cap: int) -> None:
    tensors = _external_tensors(model)
    if not tensors:
        return
    if base is None:
        raise CompileError("the model refers to external data; pass the .onnx path, not a ModelProto")
    total = 0
    for t in tensors:
        info = {e.key: e.value for e in t.external_data}
        loc = info.get("location", "")
        name = t.name or "<unnamed>"
        if not loc or os.path.isabs(loc) or Path(loc).drive:
            raise CompileError(f"tensor {name!r}: external data location {loc!r} must be a "
                               "relative path inside the model's folder")
        p = base / loc
        if ".." in Path(loc).parts or os.path.islink(p) or not p.resolve().is_relative_to(base):
            raise CompileError(f"tensor {name!r}: external data location {loc!r} resolves outside "
                               f"the model's folder {base}")
        if not p.is_file():
            raise CompileError(f"tensor {name!r}: external data file {loc!r} is missing")
        try:
            offset = int(info.get("offset", 0))
            length = int(info["length"]) if "length" in info else p.stat().st_size - offset
        except ValueError:
            raise CompileError(f"tensor {name!r}: bad external data offset/length") from None
        if offset < 0 or length < 0 or offset + length > p.stat().st_size:
            raise CompileError(f"tensor {name!r}: external data file {loc!r} is shorter than "
                               f"offset+length ({offset}+{length} > {p.stat().st_size} bytes)")
        total += length
        if total > cap:
            raise CompileError(f"external data exceeds the size cap of {cap} bytes "
                               "(raise it with max_external_bytes)")
    from onnx.external_data_helper import load_external_data_for_model

    try:
        load_external_data_for_model(model, str(base))
    except Exception as e:  # noqa: BLE001
        raise CompileError(f"could not read external data: {_first_line(e)}") from None


# ---------------------------------------------------------------------------------------------
# import

def _np_dtype(elem_type: int) -> str:
    try:
        return np.dtype(helper.tensor_dtype_to_np_dtype(elem_type)).name
    except Exception:  # noqa: BLE001
        raise CompileError(f"unsupported tensor element type {elem_type}") from None


def _attrs(node: onnx.NodeProto) -> dict[str, Any]:
    out = {}
    for a in node.attribute:
        v = helper.get_attribute_value(a)
        if isinstance(v, bytes):
            v = v.decode()
        elif isinstance(v, onnx.TensorProto):
            v = numpy_helper.to_array(v)
        elif isinstance(v, list) and v and isinstance(v[0], bytes):
            v = [x.decode() for x in v]
        out[a.name] = v
    return out


class _Importer:
    def __init__(self, model: onnx.ModelProto):
        self.model = model
        self.opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
        self.g = Graph(model.graph.name or "model")
        self.known: dict[str, np.ndarray] = {}
        self.emitted_consts: set[str] = set()
        self.node_names: set[str] = set()

    # -- helpers ----------------------------------------------------------------------------
    def shape_of(self, name: str) -> tuple:
        if name in self.g.values:
            return self.g.values[name].shape
        return tuple(self.known[name].shape)

    def dtype_of(self, name: str) -> str:
        if name in self.g.values:
            return self.g.values[name].dtype
        k = self.known[name]
        return k.dtype.name if k.dtype != object else "int64"

    def as_value(self, name: str, node: onnx.NodeProto) -> str:
        """Make sure a tensor operand exists as an IR value (materialising known constants)."""
        if name in self.g.values:
            return name
        if name in self.known:
            arr = self.known[name]
            if arr.dtype == object:
                raise CompileError(
                    f"tensor {name!r} depends on a dynamic axis and is used as data; only shape "
                    "operands may depend on dynamic axes", node=node.name, op=node.op_type,
                    hint="export with static shapes, or compute this tensor from a constant")
            self.g.add_value(name, arr.shape, arr.dtype.name, arr)
            return name
        raise CompileError(f"input {name!r} is not produced by any node, initialiser or graph "
                           "input", node=node.name, op=node.op_type)

    def ints_of(self, name: str, node: onnx.NodeProto, what: str) -> list:
        if name not in self.known:
            raise CompileError(
                f"{what} operand {name!r} is computed from tensor data at run time; the compiler "
                "needs it at compile time (shape arithmetic on the input's shape is fine)",
                node=node.name, op=node.op_type)
        arr = self.known[name]
        if arr.dtype != object:
            return [int(x) for x in np.asarray(arr).ravel()]
        return [norm_dim(x) if isinstance(x, sympy.Basic) else int(x) for x in arr.ravel()]

    # -- main loop ------------------------------------------------------------------------------
    def run(self) -> Graph:
        gp = self.model.graph
        inits = {t.name for t in gp.initializer}
        for t in gp.initializer:
            try:
                arr = numpy_helper.to_array(t)
            except Exception as e:  # noqa: BLE001
                raise CompileError(f"initialiser {t.name!r} cannot be read: {_first_line(e)}") from None
            self.known[t.name] = np.array(arr)
        for i, vi in enumerate(gp.input):
            if vi.name in inits:
                continue
            tt = vi.type.tensor_type
            if not vi.type.HasField("tensor_type") or not tt.HasField("shape"):
                raise CompileError(f"graph input {vi.name!r} has no tensor shape")
            dims = []
            for j, d in enumerate(tt.shape.dim):
                if d.HasField("dim_value"):
                    if d.dim_value <= 0:
                        raise CompileError(f"graph input {vi.name!r}: bad dimension {d.dim_value}")
                    dims.append(int(d.dim_value))
                else:
                    name = d.dim_param if d.HasField("dim_param") and d.dim_param else f"{vi.name}_d{j}"
                    name = "".join(c if c.isalnum() else "_" for c in name)
                    dims.append(sym(name if name[0].isalpha() else "d" + name))
            self.g.add_value(vi.name, dims, _np_dtype(tt.elem_type))
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
            raise CompileError(f"op from domain {node.domain!r} is not supported", node=node.name,
                               op=op, hint=SUPPORTED_HINT)
        if op not in SUPPORTED_OPS:
            raise CompileError("this op is not supported", node=node.name, op=op, hint=SUPPORTED_HINT)
        a = _attrs(node)
        ins = list(node.input)
        for i in ins:
            if i and i not in self.known and i not in self.g.values:
                raise CompileError(f"input {i!r} is used before it is produced (the graph is not "
                                   "topologically sorted or has a cycle)", node=node.name, op=op)
        try:
            self._import(node, op, a, ins)
        except CompileError:
            raise
        except Exception as e:  # noqa: BLE001 - shape/attribute trouble in a hostile model
            raise CompileError(f"cannot import: {type(e).__name__}: {_first_line(e)}",
                               node=node.name, op=op) from None

    def _import(self, node, op, a, ins) -> None:
        outs = list(node.output)
        if op == "Constant":
            self.known[outs[0]] = self._constant(a)
            return
        if op in ("Identity", "Dropout"):
            src = ins[0]
            if src in self.known:
                self.known[outs[0]] = self.known[src]
            else:
                self.emit("Identity", [src], outs[:1], {}, node)
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
            a = {"to": _np_dtype(a["to"])}
        attrs = self._ir_attrs(op, a, ins, node)
        data_ins = [i for k, i in enumerate(ins) if k not in {s for s, _ in SHAPE_SLOTS.get(op, [])}]
        if op == "Range":
            attrs["dtype"] = self.dtype_of(ins[0])
            data_ins = []
        if op == "ConstantOfShape":
            val = a.get("value", np.zeros(1, np.float32))
            attrs = {"shape": attrs["shape"], "value": np.asarray(val).ravel()[0].item(),
                     "dtype": np.asarray(val).dtype.name}
        if op == "Split":
            attrs["num_outputs"] = len(outs)
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
        if "value" in a:
            return np.array(a["value"])
        for key, dt in (("value_float", np.float32), ("value_floats", np.float32),
                        ("value_int", np.int64), ("value_ints", np.int64)):
            if key in a:
                return np.array(a[key], dtype=dt)
        raise CompileError(f"Constant with unsupported attribute(s) {sorted(a)}")

    def _ir_attrs(self, op, a, ins, node) -> dict:
        attrs: dict[str, Any] = {}
        schema = OPS[op].attrs
        for k, v in a.items():
            if k in schema:
                attrs[k] = v
        if op == "Gelu" and "approximate" in a:
            attrs["approximate"] = a["approximate"]
        for slot, name in SHAPE_SLOTS.get(op, []):
            if slot < len(ins) and ins[slot]:
                vals = self.ints_of(ins[slot], node, name)
                attrs[name] = vals[0] if name in SCALAR_ATTRS else vals
        if op in ("Reshape", "Expand") and "shape" in attrs:
            attrs["shape"] = list(attrs["shape"])
        return attrs

    def _fold(self, op, xs, attrs, node) -> list[np.ndarray] | None:
        symbolic = any(x is not None and x.dtype == object for x in xs)
        full = with_defaults(op, attrs)
        if not symbolic:
            if op == "Range" or op == "ConstantOfShape":
                full = {k: (int(v) if isinstance(v, sympy.Basic) else v) for k, v in full.items()}
            return [np.asarray(r) for r in OPS[op].compute(xs, full)]
        return _fold_symbolic(op, xs, full)

    def emit(self, op, ins, outs, attrs, node) -> None:
        od = OPS[op]
        in_vals = [self.g.values[i] if i else None for i in ins]
        results = od.shape(in_vals, with_defaults(op, attrs))
        name = node.name if node.name and node.name not in self.node_names else None
        n = self.g.add_node(op, ins, outs[:len(results)], attrs, name=name, onnx_name=node.name or None)
        self.node_names.add(n.name)
        for o, (shape, dtype) in zip(outs, results):
            if o in self.g.values or o in self.known:
                raise CompileError(f"value {o!r} is produced twice", node=node.name, op=node.op_type)
            self.g.add_value(o, [norm_dim(d) if isinstance(d, sympy.Basic) else int(d) for d in shape],
                             dtype)


def _dims_array(dims) -> np.ndarray:
    if any(is_sym(d) for d in dims):
        arr = np.empty(len(dims), dtype=object)
        arr[:] = [d if is_sym(d) else int(d) for d in dims]
        return arr
    return np.array([int(d) for d in dims], dtype=np.int64)


def _prod(dims):
    p = 1
    for d in dims:
        p = p * d
    return norm_dim(p) if isinstance(p, sympy.Basic) else p


def _obj(x: np.ndarray) -> np.ndarray:
    if x.dtype == object:
        return x
    out = np.empty(x.shape, dtype=object)
    out[...] = x.astype(np.int64) if x.dtype.kind in "iub" else x
    if out.ndim == 0:
        out = np.array(x.item(), dtype=object)
    return out


def _simplify(arr: np.ndarray) -> np.ndarray:
    flat = [norm_dim(v) if isinstance(v, sympy.Basic) else v for v in arr.ravel()]
    if not any(is_sym(v) for v in flat):
        if all(isinstance(v, (bool, np.bool_)) for v in flat) and flat:
            return np.array(flat, dtype=bool).reshape(arr.shape)
        return np.array([int(v) for v in flat], dtype=np.int64).reshape(arr.shape)
    out = np.empty(arr.shape, dtype=object)
    out.ravel()[:] = flat if out.ndim else None
    if out.ndim == 0:
        out = np.array(flat[0], dtype=object)
    return out


_SYM_BINARY = {
    "Add": lambda x, y: x + y, "Sub": lambda x, y: x - y, "Mul": lambda x, y: x * y,
    "Div": lambda x, y: sympy.floor(sympy.sympify(x) / y),
    "Max": lambda x, y: sympy.Max(x, y), "Min": lambda x, y: sympy.Min(x, y),
    "Equal": lambda x, y: bool(sympy.simplify(sympy.sympify(x) - y) == 0),
}


def _fold_symbolic(op: str, xs: list, a: dict) -> list[np.ndarray] | None:
    """Shape arithmetic on arrays of symbolic dims.  None = cannot fold (emit the op)."""
    xs = [_obj(x) if x is not None else None for x in xs]
    if op in _SYM_BINARY:
        f = np.frompyfunc(_SYM_BINARY[op], 2, 1)
        return [_simplify(np.asarray(f(xs[0], xs[1]), dtype=object))]
    if op == "Cast":
        return [_simplify(xs[0])] if np.dtype(a["to"]).kind in "iu" else None
    if op == "Neg":
        return [_simplify(-xs[0])]
    if op in ("Gather", "Concat", "Unsqueeze", "Squeeze", "Slice", "Reshape", "Where",
              "Expand", "Transpose"):
        if op == "Gather":
            xs[1] = xs[1].astype(np.int64)
        if op == "Where":
            xs[0] = xs[0].astype(bool)
        return [_simplify(np.asarray(r, dtype=object)) for r in OPS[op].compute(xs, a)]
    return None


def import_model(model: onnx.ModelProto) -> Graph:
    return _Importer(model).run()


def onnx_io(model: onnx.ModelProto) -> dict:
    """Inputs and outputs with shapes (dim names for dynamic axes) for the report."""
    inits = {t.name for t in model.graph.initializer}

    def desc(vi):
        tt = vi.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in tt.shape.dim]
        return {"name": vi.name, "shape": dims, "dtype": _np_dtype(tt.elem_type)}

    return {"inputs": [desc(v) for v in model.graph.input if v.name not in inits],
            "outputs": [desc(v) for v in model.graph.output]}
