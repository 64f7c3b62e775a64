"""The verifier rejects each broken invariant with a message that says which."""
import numpy as np
import pytest

from icl_compiler.ir.graph import Graph
from icl_compiler.ir.symbolic import sym
from icl_compiler.ir.verify import IRVerifyError, verify


def small():
    g = Graph("g")
    g.add_value("x", (sym("batch"), 4), "float32")
    g.inputs = ["x"]
    g.add_value("y", (sym("batch"), 4), "float32")
    g.add_node("Relu", ["x"], ["y"], name="r")
    g.outputs = ["y"]
    return g


def test_valid():
    verify(small())


@pytest.mark.parametrize("breakage,message", [
    (lambda g: g.nodes["r"].inputs.__setitem__(0, "nope"), "not bound"),
    (lambda g: g.add_node("Relu", ["x"], ["y"], name="r2"), "produced by"),
    (lambda g: setattr(g.values["y"], "shape", (sym("batch"), 5)), "shape function says"),
    (lambda g: setattr(g.values["y"], "dtype", "int64"), "dtype"),
    (lambda g: g.nodes["r"].attrs.__setitem__("bogus", 1), "unknown attributes"),
    (lambda g: setattr(g.nodes["r"], "op", "Frobnicate"), "unknown op"),
    (lambda g: g.outputs.append("ghost"), "not produced"),
])
def test_rejects(breakage, message):
    g = small()
    breakage(g)
    g._dirty()
    with pytest.raises(IRVerifyError, match=message):
        verify(g)


def test_rejects_cycle():
    g = small()
    g.add_value("z", (sym("batch"), 4), "float32")
    g.nodes["r"].inputs = ["z"]
    g.add_node("Relu", ["y"], ["z"], name="back")
    g._dirty()
    with pytest.raises(IRVerifyError, match="cycle"):
        verify(g)


def test_constant_shape_mismatch():
    g = small()
    c = g.add_const(np.zeros(3, np.float32), name="c")
    c.shape = (4,)
    with pytest.raises(IRVerifyError, match="constant"):
        verify(g)


def _one_op(op, in_shapes, out_shapes, **attrs):
    g = Graph("g")
    ins = []
    for i, s in enumerate(in_shapes):
        g.add_value(f"x{i}", s, "float32")
        ins.append(f"x{i}")
    g.inputs = ins
    outs = []
    for i, s in enumerate(out_shapes):
        g.add_value(f"y{i}", s, "float32")
        outs.append(f"y{i}")
    g.add_node(op, ins, outs, attrs, name="n")
    g.outputs = outs
    return g


B = sym("batch")


@pytest.mark.parametrize("op, ins, outs, attrs, message", [
    # graphs built by passes get the checks the frontend does on imported models
    ("Concat", [(B, 2, 3), (B, 4, 3)], [(B, 2, 6)], {"axis": 2}, "differ outside axis"),
    ("Concat", [(B, 2, 3), (B, 2)], [(B, 2, 5)], {"axis": 1}, "rank or dtype"),
    ("Transpose", [(B, 2, 3)], [(B, 3, 3)], {"perm": [0, 2, 2]}, "not a permutation"),
    ("Split", [(B, 6)], [(B, 2), (B, 2)], {"axis": 1, "split": [2, 2], "num_outputs": 2},
     "add up"),
    ("Split", [(B, 6)], [(B, 3), (B, 3)], {"axis": 1, "split": [3, 3], "num_outputs": 3},
     "outputs"),
])
def test_shape_functions_check_their_inputs(op, ins, outs, attrs, message):
    with pytest.raises(IRVerifyError, match=message):
        verify(_one_op(op, ins, outs, **attrs))


@pytest.mark.parametrize("op, ins, outs, attrs", [
    ("Concat", [(B, 2, 3), (B, 4, 3)], [(B, 6, 3)], {"axis": 1}),
    ("Transpose", [(B, 2, 3)], [(3, 2, B)], {}),
    ("Split", [(B, 6)], [(B, 2), (B, 4)], {"axis": 1, "split": [2, 4], "num_outputs": 2}),
])
def test_shape_functions_accept_valid_inputs(op, ins, outs, attrs):
    verify(_one_op(op, ins, outs, **attrs))
