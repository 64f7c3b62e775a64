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
