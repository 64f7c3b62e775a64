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

import keyword
import os
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import sympy
from onnx import helper, numpy_helper

from ..errors import CompileError
from ..ir.graph import Graph, Value
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
STATIC_ATTRS = {"axes", "axis", "steps"}  # operands that may not depend on dynamic axes

DEFAULT_MAX_EXTERNAL_BYTES = 2 * 1024**3
SUPPORTED_HINT = "Supported ONNX ops: " + ", ".join(SUPPORTED_OPS) + "."

# Size guards: a hostile model must not make the compiler allocate.  No Loihi 2 system holds a
# tensor anywhere near these sizes.
MAX_DIM = 2**31 - 1  # any static dimension
MAX_ELEMENTS = 2**31  # any tensor whose shape is static
MAX_FOLD_ELEMENTS = 2**24  # any tensor the frontend computes at compile time (constant folding)

# element types the tensor IR handles (numpy dtype names)
IR_DTYPES = {"bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
             "float16", "float32", "float64"}


# ---------------------------------------------------------------------------------------------
# loading

def load_onnx(src: str | os.PathLike | onnx.ModelProto, *,
              max_external_bytes: int = DEFAULT_MAX_EXTERNAL_BYTES) -> onnx.ModelProto:
    """Load a model, its external data (only from inside the model's folder) and check it.

    Every problem with the file is a :class:`CompileError` with a one-line message.
    """
    if isinstance(src, onnx.ModelProto):
        model = src
        base = None
    else:
        try:
            path = Path(src)
            is_file = path.is_file()
        except (TypeError, ValueError, OSError) as e:
            raise CompileError(f"{src!r}: not a usable model path ({_first_line(e)})") from None
        if not is_file:
            what = "is a directory, not an ONNX file" if path.is_dir() else "no such file"
            raise CompileError(f"{path}: {what}")
        try:
            model = onnx.load(str(path), load_external_data=False)
        except Exception as e:  # noqa: BLE001 - protobuf raises many types for bad bytes
            raise CompileError(f"{path}: not a readable ONNX model ({type(e).__name__}: "
                               f"{_first_line(e)})") from None
        base = path.resolve().parent
    if not model.HasField("graph") or not model.graph.node:
        raise CompileError("the ONNX model has an empty graph (is this really an ONNX file?)")
    _check_text(model)
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


def _check_text(msg, where: str = "model") -> None:
    """protobuf hands back text fields holding invalid UTF-8 as bytes; refuse them here rather
    than let bytes reach names, dim_params and external data locations."""
    from google.protobuf.descriptor import FieldDescriptor

    for field, value in msg.ListFields():
        repeated = (field.is_repeated if hasattr(field, "is_repeated")
                    else field.label == FieldDescriptor.LABEL_REPEATED)
        items = value if repeated else [value]
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            for i, item in enumerate(items):
                _check_text(item, f"{where}.{field.name}" + (f"[{i}]" if repeated else ""))
        elif field.type == FieldDescriptor.TYPE_STRING and any(isinstance(v, bytes)
                                                                for v in items):
            raise CompileError(f"{where}.{field.name} is not valid UTF-8 text (the file is "
                               "corrupt)")


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


def _tensor_nbytes(t: onnx.TensorProto) -> int | None:
    """Bytes the tensor's data must have (None when the type has no fixed item size)."""
    try:
        dt = np.dtype(helper.tensor_dtype_to_np_dtype(t.data_type))
    except Exception:  # noqa: BLE001
        return None
    if dt.kind not in "biuf" or dt.name not in IR_DTYPES:
        return None
    n = 1
    for d in t.dims:
        n *= int(d)
    return n * dt.itemsize


def _load_external(model: onnx.ModelProto, base: Path | None, cap: int) -> None:
    tensors = _external_tensors(model)
    if not tensors:
        return
    if base is None:
        raise CompileError("the model refers to external data; pass the .onnx path, not a ModelProto")
    total = 0
    for t in tensors:
        name = t.name or "<unnamed>"
        try:
            length = _check_external(t, name, base)
        except (OSError, ValueError) as e:
            raise CompileError(f"tensor {name!r}: bad external data reference "
                               f"({_first_line(e)})") from None
        total += length
        if total > cap:
            raise CompileError(f"external data exceeds the size cap of {cap} bytes (at tensor "
                               f"{name!r}, {total} bytes so far); raise max_external_bytes if "
                               "the model is really this large")
    from onnx.external_data_helper import load_external_data_for_model

    try:
        load_external_data_for_model(model, str(base))
    except Exception as e:  # noqa: BLE001
        raise CompileError(f"could not read external data: {_first_line(e)}") from None


def _check_external(t: onnx.TensorProto, name: str, base: Path) -> int:
    """Validate one tensor's external data reference; returns its length in bytes."""
    info = {e.key: e.value for e in t.external_data}
    loc = info.get("location", "")
    if not loc:
        raise CompileError(f"tensor {name!r}: stored as external data but has no location")
    if "\0" in loc or os.path.isabs(loc) or Path(loc).drive or loc.startswith("~"):
        raise CompileError(f"tensor {name!r}: external data location {loc!r} must be a "
                           "relative path inside the model's folder")
    if ".." in Path(loc).parts or ".." in loc.replace("\\", "/").split("/"):
        raise CompileError(f"tensor {name!r}: external data location {loc!r} contains '..'; "
                           "external data must sit in the model's folder")
    p = base / loc
    if not p.resolve().is_relative_to(base):
        raise CompileError(f"tensor {name!r}: external data location {loc!r} resolves outside "
                           f"the model's folder {base} (through a symbolic link)")
    for q in [p, *p.parents]:
        if q == base:
            break
        if q.is_symlink():  # onnx refuses these too; say so clearly
            raise CompileError(f"tensor {name!r}: external data location {loc!r} goes through "
                               f"the symbolic link {q.relative_to(base)}; copy the data file "
                               "into the model's folder instead")
    if not p.exists():
        raise CompileError(f"tensor {name!r}: external data file {loc!r} is missing "
                           f"(looked in {base})")
    if not p.is_file():
        raise CompileError(f"tensor {name!r}: external data location {loc!r} is not a regular file")
    size = p.stat().st_size
    try:
        offset = int(info.get("offset", 0))
        length = int(info["length"]) if "length" in info else size - offset
    except ValueError:
        raise CompileError(f"tensor {name!r}: bad external data offset/length "
                           f"({info.get('offset')!r}/{info.get('length')!r})") from None
    if offset < 0 or length < 0:
        raise CompileError(f"tensor {name!r}: negative external data offset/length "
                           f"({offset}/{length})")
    if offset + length > size:
        raise CompileError(f"tensor {name!r}: external data file {loc!r} is shorter than "
                           f"offset+length ({offset}+{length} > {size} bytes)")
    need = _tensor_nbytes(t)
    if need is not None and need != length:
        raise CompileError(f"tensor {name!r}: external data holds {length} bytes but its shape "
                           f"{list(t.dims)} needs {need}")
    return length


# ---------------------------------------------------------------------------------------------
# import

def _type_name(elem_type: int) -> str:
    try:
        return f"{onnx.TensorProto.DataType.Name(elem_type)} ({elem_type})"
    except ValueError:
        return str(elem_type)


def _np_dtype(elem_type: int, what: str = "a tensor") -> str:
    """The IR dtype name of an ONNX element type; CompileError for types the IR lacks."""
    try:
        name = np.dtype(helper.tensor_dtype_to_np_dtype(elem_type)).name
    except Exception:  # noqa: BLE001
        name = None
    if name not in IR_DTYPES:
        raise CompileError(f"{what} has element type {_type_name(elem_type)}, which the compiler "
                           "does not support (use float32, int64 or bool)")
    return name


def _check_array(arr: np.ndarray, what: str, *, node: str | None = None,
                 op: str | None = None) -> np.ndarray:
    """A constant tensor's dtype must be one the IR has, and its values must be finite.

    NaN is always an error.  Infinity is allowed only in a scalar (a mask's fill value, e.g.
    ``masked_fill(mask, -inf)``) or in a mask whose finite entries are all 0 (an additive
    causal mask); anywhere else it is a broken weight.
    """
    if arr.dtype.name not in IR_DTYPES:
        raise CompileError(f"{what} has element type {arr.dtype.name}, which the compiler does "
                           "not support (use float32, int64 or bool)", node=node, op=op)
    if arr.dtype == bool:
        # ONNX stores a bool per byte; other bytes than 0/1 are a corrupt file, and numpy and
        # onnxruntime read them differently (numpy: true, onnxruntime's Where: false)
        bad = int(np.count_nonzero(arr.view(np.uint8) > 1))
        if bad:
            raise CompileError(f"{what} is a bool tensor with {bad} byte(s) other than 0 or 1 "
                               "(the file is corrupt)", node=node, op=op)
        return arr
    if arr.dtype.kind != "f" or arr.size == 0:
        return arr
    nan = int(np.count_nonzero(np.isnan(arr)))
    if nan:
        raise CompileError(f"{what} contains NaN ({nan} of {arr.size} values); the weights are "
                           "broken (re-export the model from a healthy checkpoint)",
                           node=node, op=op)
    inf = np.isinf(arr)
    n_inf = int(np.count_nonzero(inf))
    if n_inf and arr.size > 1 and np.any(arr[~inf] != 0):
        raise CompileError(f"{what} contains inf ({n_inf} of {arr.size} values); only a scalar "
                           "fill value or a 0/-inf mask may be infinite (re-export the model "
                           "from a healthy checkpoint)", node=node, op=op)
    return arr


def _decode(b: bytes, what: str) -> str:
    try:
        return b.decode()
    except UnicodeDecodeError:
        raise CompileError(f"{what} is not valid UTF-8 text") from None


def _attrs(node: onnx.NodeProto) -> dict[str, Any]:
    out = {}
    for a in node.attribute:
        what = f"attribute {a.name!r}"
        try:
            v = helper.get_attribute_value(a)
        except Exception as e:  # noqa: BLE001
            raise CompileError(f"{what} cannot be read: {_first_line(e)}") from None
        if isinstance(v, bytes):
            v = _decode(v, what)
        elif isinstance(v, onnx.TensorProto):
            label = (f"Constant {node.output[0]!r}" if node.op_type == "Constant" and node.output
                     else f"tensor {what}")
            v = _check_array(np.array(numpy_helper.to_array(v)), label)
        elif isinstance(v, list) and v and isinstance(v[0], bytes):
            v = [_decode(x, what) for x in v]
        out[a.name] = v
    return out


def _static_count(shape) -> int:
    """Number of elements counting only the static dims (a lower bound when dims are symbolic)."""
    n = 1
    for d in shape:
        if not is_sym(d):
            n *= int(d)
    return n


def _check_shape(shape, what: str, node: onnx.NodeProto, limit: int = MAX_ELEMENTS) -> None:
    """Every dim is a non-negative int below MAX_DIM or a symbolic expression, and the static
    element count stays below ``limit``."""
    for d in shape:
        if is_sym(d):
            continue
        if isinstance(d, sympy.Basic) and not d.is_integer:
            raise CompileError(f"{what} gets a non-integer dimension {d} (shape {_fmt(shape)})",
                               node=_label(node), op=node.op_type)
        if int(d) < 0:
            raise CompileError(f"{what} gets a negative dimension (shape {_fmt(shape)})",
                               node=_label(node), op=node.op_type)
        if int(d) > MAX_DIM:
            raise CompileError(f"{what} gets dimension {int(d)}, above the limit of {MAX_DIM} "
                               f"(shape {_fmt(shape)})", node=_label(node), op=node.op_type)
    n = _static_count(shape)
    if n > limit:
        raise CompileError(f"{what} would have {n} elements (shape {_fmt(shape)}), above the "
                           f"limit of {limit}", node=_label(node), op=node.op_type)


def _label(node: onnx.NodeProto) -> str:
    """The node's name for messages (unnamed nodes are named by their first output)."""
    if node.name:
        return node.name
    first = next((o for o in node.output if o), None)
    return f"<unnamed, output {first!r}>" if first else "<unnamed>"


def _fmt(shape, limit: int = 8) -> str:
    dims = [str(d) for d in shape]
    if len(dims) > limit:  # keep one-line messages readable
        dims = dims[:limit // 2] + [f"... ({len(dims)} dims) ..."] + dims[-(limit // 2):]
    return "[" + ", ".join(dims) + "]"


_SYMPY_NAMES = set(vars(sympy))


def _dim_symbol(raw: str, fallback: str):
    """A sympy symbol for a dynamic axis, named after the ONNX dim_param where possible."""
    name = "".join(c if c.isalnum() else "_" for c in (raw or fallback))[:64] or "d"
    if not name[0].isalpha():
        name = "d" + name
    if name in _SYMPY_NAMES or keyword.iskeyword(name):  # "N", "E", "I", "beta", "lambda", ...
        name = "d_" + name
    return sym(name)


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
                    "operands may depend on dynamic axes", node=_label(node), op=node.op_type,
                    hint="export with static shapes, or compute this tensor from a constant")
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
                               op=op, hint=SUPPORTED_HINT)
        if op not in SUPPORTED_OPS:
            raise CompileError("this op is not supported", node=_label(node), op=op,
                               hint=SUPPORTED_HINT)
        ins = list(node.input)
        for i in ins:
            if i and i not in self.known and i not in self.g.values:
                raise CompileError(f"input {i!r} is used before it is produced (the graph is not "
                                   "topologically sorted or has a cycle)", node=_label(node), op=op)
        if not node.output or not node.output[0]:
            raise CompileError("the node has no output", node=_label(node), op=op)
        for o in node.output:
            if o and (o in self.known or o in self.g.values):
                raise CompileError(f"value {o!r} is produced twice", node=_label(node), op=op)
        try:
            a = _attrs(node)
            self._import(node, op, a, ins)
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
            a = {"to": _np_dtype(a["to"], "the Cast target")}
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
        for shape, _ in results:
            _check_shape(shape, "the constant computed at compile time", node,
                         limit=MAX_FOLD_ELEMENTS)

    def emit(self, op, ins, outs, attrs, node) -> None:
        od = OPS[op]
        in_vals = [self.g.values[i] if i else None for i in ins]
        results = od.shape(in_vals, with_defaults(op, attrs))
        for o, (shape, _) in zip(outs, results):
            _check_shape(shape, f"output {o!r}", node)
            if any(not is_sym(d) and int(d) == 0 for d in shape):
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


# 0/1 flags (onnxruntime reads other values differently from "nonzero is true")
BOOL_ATTRS = {"keepdims", "upper", "transA", "transB", "exclusive", "reverse",
              "noop_with_empty_axes", "allowzero"}

# ONNX ops that take any number of inputs, with the IR op's maximum
VARIADIC = {"Max": 2, "Min": 2, "Concat": 64}

# the smallest rank of an op's first data input (ONNX's rule, which shape inference skips)
MIN_RANK = {"Slice": 1, "Split": 1, "Concat": 1, "Gather": 1, "CumSum": 1, "Softmax": 1,
            "LayerNormalization": 1, "Trilu": 2}

# ops whose single ``axis`` attribute their shape function does not check (default axis)
AXIS_OPS = {"CumSum": 0, "Softmax": -1, "LayerNormalization": -1}


def _check_axis(axis, rank: int, node) -> None:
    if is_sym(axis) or not -max(rank, 1) <= int(axis) < max(rank, 1):
        raise CompileError(f"axis {axis} is out of range for an input of rank {rank}",
                           node=_label(node), op=node.op_type)


def _check_norm_params(in_vals, axis, node) -> None:
    """LayerNormalization's scale and bias must broadcast to the normalised shape X[axis:]."""
    x = in_vals[0]
    _check_axis(axis, x.rank, node)
    norm = x.shape[int(axis) % max(x.rank, 1):]
    for v, what in zip(in_vals[1:], ("scale", "bias")):
        if v is None:
            continue
        s = v.shape
        ok = len(s) <= len(norm) and all(
            (not is_sym(d) and d == 1) or _same_dim(d, n) for d, n in zip(s[::-1], norm[::-1]))
        if not ok:
            raise CompileError(f"LayerNormalization {what} {v.name!r} has shape {_fmt(s)}, which "
                               f"does not broadcast to the normalised shape {_fmt(norm)}",
                               node=_label(node), op=node.op_type)


def _einsum_equation(eq: str, n_inputs: int) -> str:
    """An explicit ``lhs->rhs`` equation (ONNX allows the implicit form ``ij,jk``)."""
    eq = eq.replace(" ", "")
    if "." in eq:
        raise CompileError(f"Einsum equation {eq!r} uses an ellipsis, which is not supported")
    lhs, arrow, rhs = eq.partition("->")
    terms = lhs.split(",")
    if len(terms) != n_inputs:
        raise CompileError(f"Einsum equation {eq!r} has {len(terms)} operand(s) for "
                           f"{n_inputs} input(s)")
    if not all(t.isalpha() and t.isascii() for t in terms if t) or \
            not (rhs == "" or (rhs.isalpha() and rhs.isascii())):
        raise CompileError(f"Einsum equation {eq!r} is malformed")
    if not arrow:
        letters = "".join(terms)
        rhs = "".join(sorted(c for c in set(letters) if letters.count(c) == 1))
    if len(set(rhs)) != len(rhs) or not set(rhs) <= set("".join(terms)):
        raise CompileError(f"Einsum equation {eq!r} has a bad output term {rhs!r}")
    return f"{lhs}->{rhs}"


def _validate(op: str, shapes: list, attrs: dict, n_out: int) -> None:
    """ONNX rules that the IR's shape functions do not check (they would give a wrong shape
    instead of an error, and numpy would compute something else or fail at run time)."""
    s0 = shapes[0] if shapes else None
    if op == "Concat":
        _check_concat_shapes([s for s in shapes], attrs["axis"])
    elif op == "Split" and s0 is not None:
        ax = int(attrs.get("axis", 0))
        if not -len(s0) <= ax < len(s0):
            raise CompileError(f"axis {ax} is out of range for an input of rank {len(s0)}")
        sizes = attrs.get("split")
        if sizes is not None:
            if len(sizes) != n_out:
                raise CompileError(f"Split has {len(sizes)} sizes for {n_out} outputs")
            if any(not is_sym(d) and d < 0 for d in sizes) or \
                    _dims_differ(_sum(sizes), s0[ax]):
                raise CompileError(f"Split sizes {_fmt(sizes)} do not add up to the split "
                                   f"dim {s0[ax]}")
    elif op == "Transpose" and s0 is not None and attrs.get("perm") is not None:
        if sorted(int(p) % max(len(s0), 1) for p in attrs["perm"]) != list(range(len(s0))) or \
                any(not -len(s0) <= int(p) < len(s0) for p in attrs["perm"]):
            raise CompileError(f"Transpose perm {list(attrs['perm'])} is not a permutation of "
                               f"the {len(s0)} axes")
    elif op in ("Unsqueeze", "Squeeze", "ReduceMean", "ReduceSum", "ReduceMax") and \
            s0 is not None and attrs.get("axes") is not None:
        rank = len(s0) + (len(attrs["axes"]) if op == "Unsqueeze" else 0)
        axes = [int(x) for x in attrs["axes"]]
        if any(not -max(rank, 1) <= x < max(rank, 1) for x in axes):
            raise CompileError(f"axes {axes} out of range for rank {rank}")
        norm = [x % max(rank, 1) for x in axes]
        if len(set(norm)) != len(norm):
            raise CompileError(f"axes {axes} repeat an axis")
        if op == "Squeeze":
            for x in norm:
                if not is_sym(s0[x]) and int(s0[x]) != 1:
                    raise CompileError(f"Squeeze axis {x} has size {s0[x]}, not 1")
    elif op == "Gemm" and len(shapes) >= 2 and shapes[1] is not None:
        a, b = s0, shapes[1]
        if len(a) != 2 or len(b) != 2:
            raise CompileError(f"Gemm needs rank-2 inputs, got {_fmt(a)} and {_fmt(b)}")
        k1 = a[0] if attrs.get("transA") else a[1]
        k2 = b[1] if attrs.get("transB") else b[0]
        if _dims_differ(k1, k2):
            raise CompileError(f"Gemm inner dims differ: {_fmt(a)} x {_fmt(b)} (transA="
                               f"{attrs.get('transA', 0)}, transB={attrs.get('transB', 0)})")
    elif op == "Einsum":
        terms = attrs["equation"].split("->")[0].split(",")
        dims: dict[str, Any] = {}
        for t, s in zip(terms, shapes):
            if s is None or len(t) != len(s):
                raise CompileError(f"Einsum term {t!r} does not match an input of shape "
                                   f"{_fmt(s or ())}")
            for c, d in zip(t, s):
                if c in dims and not (_is_one(d) or _is_one(dims[c])) and _dims_differ(d, dims[c]):
                    raise CompileError(f"Einsum index {c!r} has sizes {dims[c]} and {d}")
                if c not in dims or _is_one(dims[c]):
                    dims[c] = d


def _is_one(d) -> bool:
    return not is_sym(d) and int(d) == 1


def _sum(dims):
    total = 0
    for d in dims:
        total = total + d
    return norm_dim(total) if isinstance(total, sympy.Basic) else total


def _check_concat_shapes(shapes, axis) -> None:
    if any(s is None for s in shapes):
        return  # an empty input name: reported elsewhere
    rank = len(shapes[0])
    if is_sym(axis) or not -max(rank, 1) <= int(axis) < max(rank, 1):
        raise CompileError(f"axis {axis} is out of range for an input of rank {rank}")
    ax = int(axis) % max(rank, 1)
    for k, s in enumerate(shapes[1:], 1):
        if len(s) != rank:
            raise CompileError(f"Concat input {k} has rank {len(s)}, input 0 has rank {rank}")
        for i, (a, b) in enumerate(zip(shapes[0], s)):
            if i != ax and _dims_differ(a, b):
                raise CompileError(f"Concat input {k} has shape {_fmt(s)}, input 0 has "
                                   f"{_fmt(shapes[0])}: they differ in dim {i}, not only in the "
                                   f"concatenation axis {ax}")


def _dims_differ(a, b) -> bool:
    """True when two dims differ for every value of the (positive integer) dim symbols.

    ``seq`` and ``16`` may be equal at run time, so they do not differ; ``24*batch*seq`` and
    ``288*batch*seq`` always do.  (sympy's assumptions decide; unknown means "may be equal".)
    """
    if not is_sym(a) and not is_sym(b):
        return int(a) != int(b)
    return sympy.expand(sympy.sympify(a) - sympy.sympify(b)).is_zero is False


def _same_dim(a, b) -> bool:
    if is_sym(a) or is_sym(b):
        return sympy.expand(sympy.sympify(a) - sympy.sympify(b)) == 0
    return int(a) == int(b)


def _check_reshape(in_shape, out_shape, node) -> None:
    """Reshape must keep the element count (a -1 that does not divide evenly is an error)."""
    a, b = _prod(in_shape), _prod(out_shape)
    if _dims_differ(a, b):  # counts that may agree at run time are checked there
        raise CompileError(f"cannot reshape {_fmt(in_shape)} ({a} elements) into "
                           f"{_fmt(out_shape)} ({b} elements)", node=_label(node), op=node.op_type)


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
    "Div": lambda x, y: _sym_div(x, y),
    "Max": lambda x, y: sympy.Max(x, y), "Min": lambda x, y: sympy.Min(x, y),
    "Equal": lambda x, y: bool(sympy.simplify(sympy.sympify(x) - y) == 0),
}


def _sym_div(x, y):
    if not is_sym(y) and y == 0:
        raise CompileError(f"shape arithmetic divides {x} by 0")
    return sympy.floor(sympy.sympify(x) / y)


def _fold_symbolic(op: str, xs: list, a: dict) -> list[np.ndarray] | None:
    """Shape arithmetic on arrays of symbolic dims.  None = cannot fold (emit the op)."""
    xs = [_obj(x) if x is not None else None for x in xs]
    if op == "Gather" and has_sym(xs[1]):
        raise CompileError("Gather indices depend on a dynamic axis; they must be constants")
    if op == "Where" and has_sym(xs[0]):
        raise CompileError("a Where condition depends on a dynamic axis in shape arithmetic")
    if op in _SYM_BINARY:
        f = np.frompyfunc(_SYM_BINARY[op], 2, 1)
        return [_simplify(np.asarray(f(xs[0], xs[1]), dtype=object))]
    if op == "Cast":
        return [_simplify(xs[0])] if np.dtype(a["to"]).kind in "iu" else None
    if op == "Neg":
        return [_simplify(np.asarray(np.negative(xs[0]), dtype=object))]
    if op in ("Gather", "Concat", "Unsqueeze", "Squeeze", "Slice", "Reshape", "Where",
              "Expand", "Transpose"):
        if op == "Gather":
            xs[1] = xs[1].astype(np.int64)
        if op == "Where":
            xs[0] = xs[0].astype(bool)
        return [_simplify(np.asarray(r, dtype=object)) for r in OPS[op].compute(xs, a)]
    return None


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
