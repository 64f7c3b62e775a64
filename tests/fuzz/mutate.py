"""Mutators for fuzzing the frontend with hostile ONNX models.

Two families:

* byte mutations of a fixture's serialised bytes (bit flips, truncation, splices, junk);
* structural mutations of a parsed ``ModelProto`` (dims, attributes, op types, input/output
  names, element types, initialiser data, cycles, huge dims, NaN/inf weights, ...).

Every mutator takes a :class:`random.Random` so that a case is reproducible from
``(fixture, kinds, seed)``; hypothesis draws those three and shrinks them.  A mutator edits the
model in place and returns a short description used in failure messages.
"""
from __future__ import annotations

import functools
import random
from pathlib import Path

import numpy as np
import onnx
from onnx import AttributeProto, TensorProto, numpy_helper

from icl_compiler.frontend import SUPPORTED_OPS
from tests.helpers import FIXTURES, manifest

SPECIAL_INTS = [0, 1, 2, 3, -1, -2, 7, 16, 17, 255, 2**31 - 1, 2**31, 2**40, 2**62, 2**63 - 1,
                -(2**31), -(2**40), -(2**63)]
SPECIAL_DIMS = [0, 1, 2, 3, 5, 7, 16, 2**20, 2**31, 2**40, 2**62, 2**63 - 1, -1, -7]
SPECIAL_FLOATS = [0.0, -0.0, 1.0, -1.0, 0.5, 1e-45, 1e30, -1e30, 3.4e38, float("nan"),
                  float("inf"), float("-inf")]
UNSUPPORTED_OPS = ["Cos", "Loop", "If", "Scan", "Conv", "Resize", "NonZero", "TopK", "Clip",
                   "Softplus", "", "NotAnOp", "Relu6"]
# every TensorProto.DataType value plus junk; 0 is UNDEFINED
ELEM_TYPES = sorted(TensorProto.DataType.values()) + [99, 12345, -1]


# ---------------------------------------------------------------------------------------------
# fixtures

@functools.lru_cache(maxsize=None)
def fixtures() -> dict[str, dict]:
    """name -> manifest entry (cached)."""
    return {m["name"]: m for m in manifest()}


@functools.lru_cache(maxsize=None)
def fixture_bytes(name: str) -> bytes:
    """The serialised model with external data folded in (self-contained bytes)."""
    m = fixtures()[name]
    model = onnx.load(str(FIXTURES / m["file"]), load_external_data=True)
    if m["external_data"]:
        from onnx.external_data_helper import convert_model_from_external_data

        convert_model_from_external_data(model)
    return model.SerializeToString()


def fixture_model(name: str) -> onnx.ModelProto:
    """A fresh, self-contained ModelProto of a fixture (external data loaded)."""
    m = onnx.ModelProto()
    m.ParseFromString(fixture_bytes(name))
    return m


def raw_file_bytes(name: str) -> bytes:
    return (FIXTURES / fixtures()[name]["file"]).read_bytes()


# ---------------------------------------------------------------------------------------------
# byte mutations

def mutate_bytes(data: bytes, r: random.Random) -> tuple[bytes, str]:
    kind = r.choice(["flip", "flip", "flip", "truncate", "splice", "zero", "junk", "dup"])
    b = bytearray(data)
    n = len(b)
    if kind == "flip":
        k = r.choice([1, 1, 2, 4, 16])
        pos = [r.randrange(n) for _ in range(k)]
        for p in pos:
            b[p] ^= 1 << r.randrange(8)
        return bytes(b), f"flip bits at {pos[:4]}{'...' if k > 4 else ''}"
    if kind == "truncate":
        cut = r.choice([0, 1, 2, 7, r.randrange(n), n - 1, n // 2])
        return bytes(b[:cut]), f"truncate to {cut} of {n} bytes"
    if kind == "splice":
        i, j = sorted(r.randrange(n) for _ in range(2))
        k = r.randrange(n)
        return bytes(b[:k] + b[i:j] + b[k:]), f"splice [{i}:{j}] at {k}"
    if kind == "zero":
        i = r.randrange(n)
        j = min(n, i + r.choice([1, 4, 64, 1024]))
        b[i:j] = bytes(j - i)
        return bytes(b), f"zero [{i}:{j}]"
    if kind == "junk":
        i = r.randrange(n)
        junk = bytes(r.randrange(256) for _ in range(r.choice([1, 3, 10, 100])))
        return bytes(b[:i] + junk + b[i:]), f"insert {len(junk)} junk bytes at {i}"
    i, j = sorted(r.randrange(n) for _ in range(2))
    return bytes(b[:j] + b[i:j] + b[j:]), f"duplicate [{i}:{j}]"


# ---------------------------------------------------------------------------------------------
# structural mutations

def _value_infos(m: onnx.ModelProto):
    g = m.graph
    return list(g.input) + list(g.output) + list(g.value_info)


def _all_value_names(m: onnx.ModelProto) -> list[str]:
    g = m.graph
    names = [v.name for v in g.input] + [t.name for t in g.initializer]
    for n in g.node:
        names += [o for o in n.output if o]
    return names


def _float_tensors(m: onnx.ModelProto) -> list[tuple[str, TensorProto]]:
    """(owner, tensor) for float initialisers and Constant 'value' tensors."""
    out = [("initializer", t) for t in m.graph.initializer
           if t.data_type in (TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16)]
    for n in m.graph.node:
        for a in n.attribute:
            if a.type == AttributeProto.TENSOR and a.t.data_type in (TensorProto.FLOAT,
                                                                     TensorProto.DOUBLE):
                out.append((f"node {n.name}", a.t))
    return out


def _int_tensors(m: onnx.ModelProto) -> list[TensorProto]:
    out = [t for t in m.graph.initializer if t.data_type in (TensorProto.INT64, TensorProto.INT32)]
    for n in m.graph.node:
        for a in n.attribute:
            if a.type == AttributeProto.TENSOR and a.t.data_type in (TensorProto.INT64,
                                                                     TensorProto.INT32):
                out.append(a.t)
    return out


def _set_array(t: TensorProto, arr: np.ndarray) -> None:
    new = numpy_helper.from_array(np.ascontiguousarray(arr), t.name)
    t.CopyFrom(new)


def m_dim(m, r):
    """Change a dim of a graph input/output/value_info or an initialiser's dims."""
    if r.random() < 0.7:
        vis = [v for v in _value_infos(m) if v.type.tensor_type.shape.dim]
        if not vis:
            return "no dims"
        v = r.choice(vis)
        dims = v.type.tensor_type.shape.dim
        d = dims[r.randrange(len(dims))]
        choice = r.random()
        if choice < 0.7:
            d.dim_value = r.choice(SPECIAL_DIMS)
            return f"{v.name}: dim_value={d.dim_value}"
        if choice < 0.85:
            d.dim_param = r.choice(["batch", "seq", "s0", "N", "", "1", "a b", "é", "x" * 200])
            return f"{v.name}: dim_param={d.dim_param!r}"
        if choice < 0.93:
            dims.add().dim_value = r.choice(SPECIAL_DIMS)
            return f"{v.name}: extra dim"
        del dims[r.randrange(len(dims))]
        return f"{v.name}: drop a dim"
    inits = list(m.graph.initializer)
    if not inits:
        return "no initialisers"
    t = r.choice(inits)
    if t.dims and r.random() < 0.7:
        i = r.randrange(len(t.dims))
        t.dims[i] = r.choice(SPECIAL_DIMS)
    elif r.random() < 0.5:
        t.dims.append(r.choice([1, 2, 2**40]))
    else:
        del t.dims[:]
    return f"initialiser {t.name}: dims={list(t.dims)}"


def _mutate_tensor_attr(t: TensorProto, r: random.Random) -> str:
    choice = r.random()
    if choice < 0.3 and t.dims:
        t.dims[r.randrange(len(t.dims))] = r.choice(SPECIAL_DIMS)
        return f"tensor dims={list(t.dims)}"
    if choice < 0.5:
        t.data_type = r.choice(ELEM_TYPES)
        return f"tensor data_type={t.data_type}"
    try:
        arr = numpy_helper.to_array(t).copy()
    except Exception:  # noqa: BLE001 - already broken
        return "tensor unreadable"
    if arr.size == 0:
        return "empty tensor"
    flat = arr.reshape(-1)
    i = r.randrange(flat.size)
    if arr.dtype.kind == "f":
        flat[i] = r.choice(SPECIAL_FLOATS)
    elif arr.dtype.kind in "iu":
        info = np.iinfo(arr.dtype)
        flat[i] = min(max(r.choice(SPECIAL_INTS), info.min), info.max)
    elif arr.dtype.kind == "b":
        flat[i] = not flat[i]
    _set_array(t, arr)
    return f"tensor[{i}]={flat[i]!r}"


def m_attr(m, r):
    """Change, retype, drop or add a node attribute."""
    nodes = [n for n in m.graph.node if n.attribute]
    n = r.choice(nodes or list(m.graph.node))
    if not n.attribute or r.random() < 0.1:
        a = n.attribute.add()
        a.name = r.choice(["axis", "perm", "to", "value", "bogus", "keepdims", "epsilon", "upper"])
        a.type = AttributeProto.INT
        a.i = r.choice(SPECIAL_INTS)
        return f"{n.name}: add attribute {a.name}={a.i}"
    a = n.attribute[r.randrange(len(n.attribute))]
    choice = r.random()
    if choice < 0.08:
        n.attribute.remove(a)
        return f"{n.name}: drop attribute {a.name}"
    if choice < 0.16:
        old = a.type
        a.type = r.choice([t for t in AttributeProto.AttributeType.values() if t != old])
        return f"{n.name}: attribute {a.name} type {old}->{a.type}"
    if a.type == AttributeProto.INT:
        a.i = r.choice(SPECIAL_INTS)
        return f"{n.name}: {a.name}={a.i}"
    if a.type == AttributeProto.FLOAT:
        a.f = r.choice(SPECIAL_FLOATS)
        return f"{n.name}: {a.name}={a.f}"
    if a.type == AttributeProto.INTS:
        if a.ints and r.random() < 0.6:
            a.ints[r.randrange(len(a.ints))] = r.choice(SPECIAL_INTS)
        elif r.random() < 0.5:
            a.ints.append(r.choice(SPECIAL_INTS))
        else:
            del a.ints[:]
        return f"{n.name}: {a.name}={list(a.ints)}"
    if a.type == AttributeProto.STRING:
        a.s = r.choice([b"", b"tanh", b"none", b"\xff\xfe", b"ij,jk->ik", b"...", b"x" * 50])
        return f"{n.name}: {a.name}={a.s!r}"
    if a.type == AttributeProto.TENSOR:
        return f"{n.name}: {a.name}: " + _mutate_tensor_attr(a.t, r)
    a.i = r.choice(SPECIAL_INTS)
    return f"{n.name}: {a.name} set i={a.i}"


def m_op_type(m, r):
    n = r.choice(list(m.graph.node))
    old = n.op_type
    if r.random() < 0.1:
        n.domain = r.choice(["com.microsoft", "ai.onnx.ml", "custom", "ai.onnx"])
        return f"{n.name}: domain={n.domain!r}"
    n.op_type = r.choice(SUPPORTED_OPS if r.random() < 0.75 else UNSUPPORTED_OPS)
    return f"{n.name}: op {old}->{n.op_type}"


def m_input_name(m, r):
    """Rewire a node input: another value (maybe later: a cycle), '', unknown, graph input."""
    nodes = [n for n in m.graph.node if n.input]
    n = r.choice(nodes)
    k = r.randrange(len(n.input))
    names = _all_value_names(m)
    choice = r.random()
    if choice < 0.6:
        n.input[k] = r.choice(names)
    elif choice < 0.75:
        n.input[k] = ""
    elif choice < 0.9:
        n.input[k] = r.choice(["nope", "x ", "/blocks.0/missing", "y"])
    else:
        n.input.append(r.choice(names))
        return f"{n.name}: extra input {n.input[-1]!r}"
    return f"{n.name}: input[{k}]={n.input[k]!r}"


def m_cycle(m, r):
    """Feed a node from itself or from a later node (a cycle or a forward reference)."""
    nodes = list(m.graph.node)
    i = r.randrange(len(nodes))
    n = nodes[i]
    if not n.input or not n.output:
        return "no inputs"
    j = r.randrange(i, len(nodes))
    later = nodes[j]
    if not later.output:
        return "no outputs"
    k = r.randrange(len(n.input))
    n.input[k] = later.output[r.randrange(len(later.output))]
    if r.random() < 0.3:  # also move the node after its new producer: a true cycle, sorted
        m.graph.node.remove(n)
        m.graph.node.insert(j, n)
    return f"{n.name}: input[{k}] <- output of later node {later.name}"


def m_output_name(m, r):
    """Duplicate an output name, rename an output, or hit a graph input/initialiser name."""
    n = r.choice(list(m.graph.node))
    if not n.output:
        return "no outputs"
    k = r.randrange(len(n.output))
    choice = r.random()
    names = _all_value_names(m)
    if choice < 0.6:
        n.output[k] = r.choice(names)
    elif choice < 0.7:
        n.output[k] = ""
    elif choice < 0.85:
        n.output[k] = r.choice([o.name for o in m.graph.output])
    else:
        n.output.append(r.choice(names + ["fresh_out"]))
        return f"{n.name}: extra output {n.output[-1]!r}"
    return f"{n.name}: output[{k}]={n.output[k]!r}"


def m_node_name(m, r):
    nodes = list(m.graph.node)
    a, b = r.choice(nodes), r.choice(nodes)
    a.name = b.name if r.random() < 0.8 else r.choice(["", "x", "é/ü", "a" * 300])
    return f"node name {a.name!r} duplicated"


def m_dtype(m, r):
    """Change an elem_type / data_type / Cast 'to'."""
    choice = r.random()
    t = r.choice(ELEM_TYPES)
    if choice < 0.4:
        v = r.choice(_value_infos(m))
        v.type.tensor_type.elem_type = t
        return f"{v.name}: elem_type={t}"
    if choice < 0.7 and m.graph.initializer:
        init = r.choice(list(m.graph.initializer))
        init.data_type = t
        return f"initialiser {init.name}: data_type={t}"
    casts = [n for n in m.graph.node if n.op_type == "Cast"]
    if casts:
        n = r.choice(casts)
        for a in n.attribute:
            if a.name == "to":
                a.i = t
        return f"{n.name}: Cast to={t}"
    v = r.choice(_value_infos(m))
    v.type.tensor_type.elem_type = t
    return f"{v.name}: elem_type={t}"


def m_raw_data(m, r):
    """Change an initialiser's raw data length, or move it to a typed field with a bad count."""
    inits = [t for t in m.graph.initializer if t.HasField("raw_data")]
    if not inits:
        return "no raw data"
    t = r.choice(inits)
    raw = t.raw_data
    choice = r.random()
    if choice < 0.35:
        cut = r.randrange(len(raw)) if raw else 0
        t.raw_data = raw[:cut]
        return f"{t.name}: raw_data {len(raw)}->{cut} bytes"
    if choice < 0.6:
        t.raw_data = raw + bytes(r.choice([1, 3, 4, 8, 1000]))
        return f"{t.name}: raw_data +bytes"
    if choice < 0.75:
        t.ClearField("raw_data")
        return f"{t.name}: no data"
    if choice < 0.9:
        t.ClearField("raw_data")
        t.float_data.extend([1.0] * r.choice([0, 1, 3]))
        return f"{t.name}: float_data with bad count"
    t.data_location = TensorProto.EXTERNAL
    return f"{t.name}: data_location=EXTERNAL without external_data"


def m_remove_init(m, r):
    if not m.graph.initializer:
        return "no initialisers"
    t = r.choice(list(m.graph.initializer))
    m.graph.initializer.remove(t)
    return f"remove initialiser {t.name}"


def m_remove_node(m, r):
    n = r.choice(list(m.graph.node))
    m.graph.node.remove(n)
    return f"remove node {n.name}"


def m_swap_nodes(m, r):
    nodes = m.graph.node
    i, j = r.randrange(len(nodes)), r.randrange(len(nodes))
    a, b = onnx.NodeProto(), onnx.NodeProto()
    a.CopyFrom(nodes[i])
    b.CopyFrom(nodes[j])
    nodes[i].CopyFrom(b)
    nodes[j].CopyFrom(a)
    return f"swap nodes {i} and {j}"


def m_huge(m, r):
    """Put a huge value where shapes come from: shape constants, input dims, initialiser dims."""
    choice = r.random()
    big = r.choice([2**31, 2**40, 2**62, 2**63 - 1, -(2**40)])
    if choice < 0.6:
        ts = [t for t in _int_tensors(m) if 0 < len(numpy_helper.to_array(t).ravel()) <= 8]
        if ts:
            t = r.choice(ts)
            arr = numpy_helper.to_array(t).copy()
            arr.reshape(-1)[r.randrange(arr.size)] = big if arr.dtype == np.int64 else 2**31 - 1
            _set_array(t, arr)
            return f"shape tensor {t.name or '(Constant)'} = {arr.ravel().tolist()}"
    if choice < 0.8:
        v = r.choice(list(m.graph.input))
        dims = v.type.tensor_type.shape.dim
        if dims:
            dims[r.randrange(len(dims))].dim_value = abs(big)
            return f"input {v.name}: dim {abs(big)}"
    inits = list(m.graph.initializer)
    if inits:
        t = r.choice(inits)
        if t.dims:
            t.dims[r.randrange(len(t.dims))] = abs(big)
            return f"initialiser {t.name}: dims {list(t.dims)}"
    return "no target"


def m_nonfinite(m, r):
    """Put NaN/inf into a float weight (initialiser or Constant)."""
    ts = _float_tensors(m)
    if not ts:
        return "no float tensors"
    owner, t = r.choice(ts)
    arr = numpy_helper.to_array(t).copy()
    if arr.size == 0:
        return "empty"
    flat = arr.reshape(-1)
    val = r.choice([float("nan"), float("inf"), float("-inf")])
    for _ in range(r.choice([1, 1, 3])):
        flat[r.randrange(flat.size)] = val
    _set_array(t, arr)
    return f"{owner} {t.name}: {val}"


def m_opset(m, r):
    choice = r.random()
    if choice < 0.5:
        for o in m.opset_import:
            if o.domain in ("", "ai.onnx"):
                o.version = r.choice([0, 1, 6, 11, 13, 17, 18, 21, 23, 99, 10**6])
                return f"opset {o.version}"
    if choice < 0.8:
        m.ir_version = r.choice([0, 1, 3, 7, 10, 11, 99])
        return f"ir_version {m.ir_version}"
    if choice < 0.9:
        del m.opset_import[:]
        return "no opset_import"
    o = m.opset_import.add()
    o.domain, o.version = r.choice([("", 13), ("com.microsoft", 1), ("x", 0)])
    return f"extra opset {o.domain!r}"


def m_graph_io(m, r):
    g = m.graph
    choice = r.random()
    if choice < 0.2 and g.input:
        g.input.remove(g.input[0])
        return "remove graph input"
    if choice < 0.35 and g.output:
        g.output.remove(g.output[0])
        return "remove graph output"
    if choice < 0.5:
        g.input.add().CopyFrom(g.input[0])
        return "duplicate graph input"
    if choice < 0.65:
        o = g.output.add()
        o.CopyFrom(g.output[0])
        o.name = r.choice(_all_value_names(m))
        return f"extra graph output {o.name!r}"
    if choice < 0.75:
        g.output[0].name = r.choice(_all_value_names(m))
        return f"graph output renamed {g.output[0].name!r}"
    if choice < 0.85 and g.initializer:
        t = r.choice(list(g.initializer))
        vi = g.input.add()
        vi.CopyFrom(onnx.helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)))
        return f"initialiser {t.name} also a graph input"
    del g.value_info[:]
    vi = g.value_info.add()
    vi.CopyFrom(onnx.helper.make_tensor_value_info(
        r.choice(_all_value_names(m)), r.choice([TensorProto.FLOAT, TensorProto.INT64]),
        [r.choice([1, 3, 2**40, "q"]) for _ in range(r.randrange(4))]))
    return f"conflicting value_info for {vi.name!r}"


def m_node_inputs(m, r):
    """Drop an input, or change a node into one with too many inputs/outputs."""
    n = r.choice([n for n in m.graph.node if n.input] or list(m.graph.node))
    if n.input and r.random() < 0.6:
        k = r.randrange(len(n.input))
        del n.input[k]
        return f"{n.name}: drop input {k}"
    if n.output and r.random() < 0.5:
        del n.output[r.randrange(len(n.output))]
        return f"{n.name}: drop an output"
    n.output.append(f"{n.name}_extra_out")
    return f"{n.name}: extra output"


def m_constant(m, r):
    """Rewrite a Constant node with another attribute kind (sparse, string, floats, ...)."""
    consts = [n for n in m.graph.node if n.op_type == "Constant"]
    if not consts:
        inits = list(m.graph.initializer)
        if not inits:
            return "no constants"
        t = r.choice(inits)  # turn an initialiser into a Constant node, prepended
        node = onnx.helper.make_node("Constant", [], [t.name], value=t)
        m.graph.initializer.remove(t)
        m.graph.node.insert(0, node)
        return f"initialiser {t.name} -> Constant"
    n = r.choice(consts)
    del n.attribute[:]
    kind = r.choice(["value_float", "value_floats", "value_int", "value_ints", "value_string",
                     "value_strings", "sparse_value", "none", "two"])
    if kind == "value_float":
        n.attribute.append(onnx.helper.make_attribute(kind, r.choice(SPECIAL_FLOATS)))
    elif kind == "value_floats":
        n.attribute.append(onnx.helper.make_attribute(kind, [r.choice(SPECIAL_FLOATS)] * 3))
    elif kind == "value_int":
        n.attribute.append(onnx.helper.make_attribute(kind, r.choice(SPECIAL_INTS)))
    elif kind == "value_ints":
        n.attribute.append(onnx.helper.make_attribute(kind, [r.choice(SPECIAL_INTS)] * 2))
    elif kind == "value_string":
        n.attribute.append(onnx.helper.make_attribute(kind, "abc"))
    elif kind == "value_strings":
        n.attribute.append(onnx.helper.make_attribute(kind, ["a", "b"]))
    elif kind == "sparse_value":
        vals = numpy_helper.from_array(np.array([1.0], np.float32), "v")
        idx = numpy_helper.from_array(np.array([r.choice([0, 5, 2**40])], np.int64), "i")
        sp = onnx.helper.make_sparse_tensor(vals, idx, [4])
        n.attribute.append(onnx.helper.make_attribute(kind, sp))
    elif kind == "two":
        n.attribute.append(onnx.helper.make_attribute("value_int", 1))
        n.attribute.append(onnx.helper.make_attribute("value_float", 1.0))
    return f"{n.name}: Constant -> {kind}"


MUTATORS = {
    "dim": m_dim, "attr": m_attr, "op_type": m_op_type, "input_name": m_input_name,
    "cycle": m_cycle, "output_name": m_output_name, "node_name": m_node_name, "dtype": m_dtype,
    "raw_data": m_raw_data, "remove_init": m_remove_init, "remove_node": m_remove_node,
    "swap_nodes": m_swap_nodes, "huge": m_huge, "nonfinite": m_nonfinite, "opset": m_opset,
    "graph_io": m_graph_io, "node_inputs": m_node_inputs, "constant": m_constant,
}


def mutate_model(m: onnx.ModelProto, kinds: list[str], r: random.Random) -> list[str]:
    """Apply the named mutators in order; returns their descriptions."""
    out = []
    for k in kinds:
        try:
            out.append(f"{k}: {MUTATORS[k](m, r)}")
        except (IndexError, ValueError) as e:  # an empty list to choose from, etc.
            out.append(f"{k}: skipped ({type(e).__name__})")
    return out


def is_finite_model(m: onnx.ModelProto) -> bool:
    for _, t in _float_tensors(m):
        try:
            if not np.all(np.isfinite(numpy_helper.to_array(t))):
                return False
        except Exception:  # noqa: BLE001
            return False
    return True


def write_model(m: onnx.ModelProto, path: Path) -> Path:
    path.write_bytes(m.SerializeToString())
    return path




# ---------------------------------------------------------------------------------------------
# plausible mutations: they keep the model well-formed more often, so that the case gets past
# onnx.checker and strict shape inference and exercises the importer itself

UNARY = ["Relu", "Neg", "Sqrt", "Reciprocal", "Abs", "Tanh", "Sigmoid", "Erf", "Exp", "Identity",
         "Softmax", "Gelu", "Not", "Cos"]
BINARY = ["Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "MatMul", "Equal", "Less", "Greater",
          "And", "Or", "Where", "Gather", "Expand", "Reshape"]
PLAUSIBLE_INTS = [-3, -2, -1, 0, 1, 2, 3, 4, 5, 8, 16, 17, 64, 2**31 - 1, 2**63 - 1, -(2**63)]


def _clear_inferred(m) -> None:
    """Drop recorded intermediate shapes so that shape inference recomputes them."""
    del m.graph.value_info[:]


def _defined_before(m, index: int) -> list[str]:
    g = m.graph
    names = [v.name for v in g.input] + [t.name for t in g.initializer]
    for n in list(g.node)[:index]:
        names += [o for o in n.output if o]
    return names


def m_shape_value(m, r):
    """Change one entry of a small integer tensor (Reshape shapes, Slice bounds, axes, ...)."""
    ts = [t for t in _int_tensors(m) if 0 < np.prod(list(t.dims) or [1]) <= 8]
    if not ts:
        return "no small int tensors"
    t = r.choice(ts)
    arr = numpy_helper.to_array(t).copy()
    flat = arr.reshape(-1)
    i = r.randrange(flat.size)
    info = np.iinfo(arr.dtype)
    flat[i] = min(max(r.choice(PLAUSIBLE_INTS), info.min), info.max)
    _set_array(t, arr)
    _clear_inferred(m)
    return f"int tensor {t.name or '(Constant)'}[{i}] = {flat[i]}"


def m_attr_plausible(m, r):
    """Small in-range changes to integer/float attributes (axis, perm, keepdims, epsilon, ...)."""
    nodes = [n for n in m.graph.node if any(a.type in (AttributeProto.INT, AttributeProto.INTS,
                                                       AttributeProto.FLOAT) for a in n.attribute)]
    if not nodes:
        return "no attributes"
    n = r.choice(nodes)
    a = r.choice([a for a in n.attribute if a.type in (AttributeProto.INT, AttributeProto.INTS,
                                                       AttributeProto.FLOAT)])
    if a.type == AttributeProto.INT:
        a.i = r.choice([-3, -2, -1, 0, 1, 2, 3])
    elif a.type == AttributeProto.FLOAT:
        a.f = r.choice([0.0, 1e-12, 1e-5, 0.5, 2.0, -1.0])
    elif a.ints:
        vals = list(a.ints)
        r.shuffle(vals)
        if r.random() < 0.3:
            vals[r.randrange(len(vals))] = r.choice([-1, 0, 1, 2, 3, 4])
        a.ints[:] = vals
    _clear_inferred(m)
    return f"{n.name}: {a.name} -> {a.i if a.type == AttributeProto.INT else list(a.ints) or a.f}"


def m_op_swap(m, r):
    """Replace an op by another of the same arity (keeps names and wiring)."""
    nodes = [n for n in m.graph.node if len(n.input) in (1, 2) and n.op_type != "Constant"]
    if not nodes:
        return "no candidates"
    n = r.choice(nodes)
    old = n.op_type
    n.op_type = r.choice(UNARY if len(n.input) == 1 else BINARY)
    if r.random() < 0.7:
        del n.attribute[:]
    _clear_inferred(m)
    return f"{n.name}: {old} -> {n.op_type}"


def m_rewire_earlier(m, r):
    """Feed a node input from another value defined earlier (the graph stays sorted)."""
    nodes = list(m.graph.node)
    cands = [i for i, n in enumerate(nodes) if n.input]
    if not cands:
        return "no inputs"
    i = r.choice(cands)
    n = nodes[i]
    k = r.randrange(len(n.input))
    n.input[k] = r.choice(_defined_before(m, i))
    _clear_inferred(m)
    return f"{n.name}: input[{k}] <- {n.input[k]!r}"


def m_bypass(m, r):
    """Remove a node and let its consumers read its first input instead."""
    nodes = [n for n in m.graph.node if n.input and n.input[0] and n.output]
    if not nodes:
        return "no candidates"
    n = r.choice(nodes)
    src, out = n.input[0], n.output[0]
    m.graph.node.remove(n)
    for other in m.graph.node:
        for k, name in enumerate(other.input):
            if name == out:
                other.input[k] = src
    for o in m.graph.output:
        if o.name == out:
            o.name = src
    _clear_inferred(m)
    return f"bypass {n.op_type} {n.name}"


def m_static_dims(m, r):
    """Make dynamic input dims static (batch/seq = small ints, or huge), or static ones dynamic."""
    v = r.choice([v for v in m.graph.input if v.type.tensor_type.shape.dim] or list(m.graph.input))
    dims = v.type.tensor_type.shape.dim
    if not dims:
        return "no dims"
    d = dims[r.randrange(len(dims))]
    if d.HasField("dim_param") or r.random() < 0.5:
        d.dim_value = r.choice([1, 2, 3, 8, 16, 17, 64, 2**31 - 1, 2**31, 2**40])
    else:
        d.dim_param = r.choice(["batch", "seq", "N", "I", "lambda", "f", "s 0"])
    for o in m.graph.output:
        for od in o.type.tensor_type.shape.dim:
            od.dim_param = "out_" + str(r.randrange(3))
    _clear_inferred(m)
    return f"{v.name}: dims {[x.dim_value or x.dim_param for x in dims]}"


PLAUSIBLE = {
    "shape_value": m_shape_value, "attr_plausible": m_attr_plausible, "op_swap": m_op_swap,
    "rewire_earlier": m_rewire_earlier, "bypass": m_bypass, "static_dims": m_static_dims,
}
MUTATORS.update(PLAUSIBLE)


def m_gelu(m, r):
    """Turn a unary op into Gelu (opset 20) with a valid, unknown or non-UTF-8 'approximate'."""
    nodes = [n for n in m.graph.node if n.op_type in ("Relu", "Sigmoid", "Tanh", "Erf")]
    if not nodes:
        return "no unary ops"
    n = r.choice(nodes)
    n.op_type = "Gelu"
    del n.attribute[:]
    approx = r.choice([None, b"none", b"tanh", b"bogus", b"\xff\xfe"])
    if approx is not None:
        n.attribute.append(onnx.helper.make_attribute("approximate", approx))
    for o in m.opset_import:
        if o.domain in ("", "ai.onnx") and o.version < 20:
            o.version = 20
    _clear_inferred(m)
    return f"{n.name}: Gelu approximate={approx!r}"


def m_variadic(m, r):
    """Give a variadic op (Max, Min, Concat) one, three or very many inputs."""
    nodes = [n for n in m.graph.node if n.op_type in ("Relu", "Concat", "Add", "Max", "Min")]
    if not nodes:
        return "no candidates"
    n = r.choice(nodes)
    x = n.input[0]
    if n.op_type == "Concat":
        copies = r.choice([1, 2, 65, 70, 130])
        n.input[:] = [x] * copies if r.random() < 0.5 else (list(n.input) * copies)[:copies]
        _clear_inferred(m)
        return f"{n.name}: Concat of {copies} inputs"
    n.op_type = r.choice(["Max", "Min"])
    del n.attribute[:]
    k = r.choice([1, 1, 3, 5])
    n.input[:] = ([x] + list(n.input[1:2]) * k)[:k] if k > 1 else [x]
    if k > 1 and len(n.input) < k:
        n.input.extend([x] * (k - len(n.input)))
    _clear_inferred(m)
    return f"{n.name}: {n.op_type} of {len(n.input)} inputs"


def m_dup_init(m, r):
    """An initialiser defined twice (same name, maybe other data)."""
    if not m.graph.initializer:
        return "no initialisers"
    t = r.choice(list(m.graph.initializer))
    dup = m.graph.initializer.add()
    dup.CopyFrom(t)
    if r.random() < 0.5 and dup.dims:
        dup.dims[0] = dup.dims[0] + 1
    return f"initialiser {t.name} twice"


MUTATORS.update({"gelu": m_gelu, "variadic": m_variadic, "dup_init": m_dup_init})
PLAUSIBLE.update({"gelu": m_gelu, "variadic": m_variadic})
