"""Import of the ops the registry has no entry for, and of ONNX sequences.

* Any standard ONNX op is imported: folded at compile time with onnx's reference implementation
  when its inputs are known (``ir/onnx_op.py``), within the growth bound of every fold (an output
  much larger than its inputs is refused before it is allocated), else kept as an ``Onnx`` IR node
  that the interpreter evaluates and the passes see by its op type.  Mask builders and shape
  plumbing then import whatever ops they use (``Mod``, ``IsNaN``, ``GatherND``, ``Cos`` ...); the
  lowering refuses such a node, naming it, only where it would have to run on neurons.
* ``SplitToSequence`` / ``SequenceAt`` / ``SequenceLength`` / ``ConcatFromSequence`` with
  constant indices (``torch.split`` exported without optimisation): a sequence is a list of the
  values of a ``Split``.
"""
from __future__ import annotations

import numpy as np
import onnx

from ..errors import CompileError
from .decode import MAX_FOLD_ELEMENTS, _check_array, _check_shape, _label

SEQUENCE_OPS = {"SplitToSequence", "SequenceAt", "SequenceLength", "ConcatFromSequence"}
RANDOM_OPS = {"Bernoulli", "RandomNormal", "RandomNormalLike", "RandomUniform",
              "RandomUniformLike", "Multinomial"}


def import_generic(imp, node: onnx.NodeProto, op: str, a: dict, ins: list[str]) -> None:
    from ..ir import onnx_op

    if any(isinstance(v, onnx.GraphProto) or (isinstance(v, list) and v and isinstance(
            v[0], onnx.GraphProto)) for v in a.values()):
        raise CompileError("ops with subgraphs (control flow) are not supported",
                           hint="export without data-dependent control flow")
    if op in RANDOM_OPS:
        raise CompileError(f"{op} draws random numbers; a compiled program is deterministic",
                           hint="export the model in eval mode")
    outs = [o or f"{_label(node)}/unused_output{i}" for i, o in enumerate(node.output)]
    data = [i or None for i in ins]
    known = all(d is None or d in imp.known for d in data)
    symbolic = any(d is not None and d in imp.known and imp.known[d].dtype == object
                   for d in data)
    if known and not symbolic:
        xs = [None if d is None else imp.known[d] for d in data]
        types = [None if x is None else (x.shape, x.dtype.name) for x in xs]
        try:
            shapes = onnx_op.infer(op, a, types, len(outs), imp.opset,
                                   {k: x for k, x in enumerate(xs) if x is not None})
        except ValueError as e:
            raise CompileError(str(e)) from None
        size_in = sum(int(np.prod(x.shape)) for x in xs if x is not None)
        for shape, _ in shapes:
            _check_shape(shape, "the constant computed at compile time", node,
                         limit=max(MAX_FOLD_ELEMENTS, size_in))
        with np.errstate(all="ignore"):
            res = onnx_op.evaluate(op, a, xs, len(outs), imp.opset)
        for o, r in zip(outs, res):
            imp.known[o] = _check_array(np.array(r), f"constant {o!r} (computed at compile time)")
        return
    if symbolic:
        raise CompileError(f"{op} on shape arithmetic of a dynamic axis is not supported",
                           hint="export with static shapes")
    types = [None if d is None else (imp.shape_of(d), imp.dtype_of(d)) for d in data]
    try:
        onnx_op.check_implemented(op, a, types, len(outs), imp.opset)
    except ValueError as e:
        raise CompileError(str(e)) from None
    attrs = {"op_type": op, "opset": imp.opset, "onnx_attrs": a, "n_outputs": len(outs)}
    imp.emit("Onnx", [imp.as_value(d, node) if d else "" for d in data], outs, attrs, node)


def import_sequence(imp, node: onnx.NodeProto, op: str, a: dict, ins: list[str]) -> None:
    """Sequences with a constant structure, as lists of values (``imp.sequences``)."""
    out = node.output[0]
    if op == "SplitToSequence":
        x = ins[0]
        shape = imp.shape_of(x)
        ax = int(a.get("axis", 0))
        ax = ax + len(shape) if ax < 0 else ax
        keep = bool(a.get("keepdims", 1))
        if len(ins) > 1 and ins[1]:
            sp = imp.known.get(ins[1])
            if sp is None or sp.dtype == object:
                raise CompileError("SplitToSequence with split sizes computed at run time")
            sp = np.asarray(sp).astype(np.int64)
            dim = shape[ax]
            if sp.ndim == 0:  # a chunk size
                if not isinstance(dim, (int, np.integer)):
                    raise CompileError("SplitToSequence of a dynamic axis by a chunk size")
                sizes = [int(sp)] * (int(dim) // int(sp)) + (
                    [int(dim) % int(sp)] if int(dim) % int(sp) else [])
            else:
                sizes = [int(s) for s in sp]
            keep = True
        else:
            if not isinstance(shape[ax], (int, np.integer)):
                raise CompileError("SplitToSequence of a dynamic axis into single elements")
            sizes = [1] * int(shape[ax])
        parts = [f"{out}/part{i}" for i in range(len(sizes))]
        split = onnx.helper.make_node("Split", [x, f"{out}/sizes"], parts, axis=ax,
                                      name=node.name)
        imp.known[f"{out}/sizes"] = np.array(sizes, np.int64)
        imp.import_node(split)
        if not keep:
            squeezed = []
            for p in parts:
                sq = onnx.helper.make_node("Squeeze", [p, f"{out}/axis"], [f"{p}/sq"],
                                           name=node.name)
                imp.known[f"{out}/axis"] = np.array([ax], np.int64)
                imp.import_node(sq)
                squeezed.append(f"{p}/sq")
            parts = squeezed
        imp.sequences[out] = parts
        return
    seq = imp.sequences.get(ins[0])
    if seq is None:
        raise CompileError(f"{op} of a sequence that is not a split of a tensor")
    if op == "SequenceLength":
        imp.known[out] = np.array(len(seq), np.int64)
        return
    if op == "SequenceAt":
        pos = imp.known.get(ins[1])
        if pos is None or pos.dtype == object:
            raise CompileError("SequenceAt with a position computed at run time")
        i = int(np.asarray(pos).ravel()[0])
        if not -len(seq) <= i < len(seq):
            raise CompileError(f"SequenceAt position {i} outside the sequence of {len(seq)}")
        imp.import_node(onnx.helper.make_node("Identity", [seq[i]], [out], name=node.name))
        return
    # ConcatFromSequence
    ax = int(a.get("axis"))
    if int(a.get("new_axis", 0)):
        parts = []
        for k, p in enumerate(seq):
            imp.known[f"{out}/axis"] = np.array([ax], np.int64)
            imp.import_node(onnx.helper.make_node("Unsqueeze", [p, f"{out}/axis"],
                                                  [f"{out}/u{k}"], name=node.name))
            parts.append(f"{out}/u{k}")
        seq = parts
    imp.import_node(onnx.helper.make_node("Concat", seq, [out], axis=ax, name=node.name))
