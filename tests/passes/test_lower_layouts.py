"""The lowering on layouts exporters really use (ONNX graphs built with onnx.helper, compiled
end to end and compared with onnxruntime): sequence-first heads with batch×heads merged,
position tables in any form, a convolution within each token, and the refusals that name the
node."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import icl_compiler as icl
from icl_compiler.errors import CompileError
from icl_compiler.ir.neuro import Encoding
from icl_compiler.runtime.reference import onnxruntime_run

RNG = np.random.default_rng(7)
D, H = 8, 2


class G:
    """A tiny ONNX graph builder (every method returns the output name)."""

    def __init__(self, shape, dtype=TensorProto.FLOAT):
        self.nodes, self.inits, self.n = [], [], 0
        self.inp = helper.make_tensor_value_info("x", dtype, shape)

    def c(self, arr):
        self.n += 1
        name = f"c{self.n}"
        self.inits.append(numpy_helper.from_array(np.asarray(arr), name))
        return name

    def op(self, op, *ins, name=None, **attrs):
        self.n += 1
        out = f"v{self.n}"
        self.nodes.append(helper.make_node(op, list(ins), [out], name=name or f"/{op}_{self.n}",
                                           **attrs))
        return out

    def w(self, *shape):
        return self.c(RNG.normal(0, 1 / np.sqrt(shape[0]), shape).astype(np.float32))

    def model(self, y, out_shape):
        out = helper.make_tensor_value_info(y, TensorProto.FLOAT, out_shape)
        g = helper.make_graph(self.nodes, "m", [self.inp], [out], self.inits)
        return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def _causal(g: G, s: str, T) -> str:
    """relu(s) with the upper triangle zeroed by a Trilu mask built from the length."""
    ones = g.op("ConstantOfShape", g.op("Concat", T, T, axis=0),
                value=numpy_helper.from_array(np.ones(1, np.float32)))
    return g.op("Mul", g.op("Relu", s), g.op("Trilu", ones, upper=0))


def _length(g: G, x: str, axis: int) -> str:
    return g.op("Gather", g.op("Shape", x), g.c(np.array([axis], np.int64)), axis=0)


def _check(model, x, **kw):
    prog = icl.compile(model, **kw)
    ref = onnxruntime_run(model, x)
    y = prog.run(x)
    assert np.abs(y - ref).max() <= 1e-5 * np.abs(ref).max()
    return prog


def test_sequence_first_heads_with_batch_times_heads_merged():
    """nn.MultiheadAttention's internal layout: [T, B, d] → [T, B·H, d_h] → [B·H, T, d_h]."""
    g = G(["batch", "seq", D])
    xs = g.op("Transpose", "x", perm=[1, 0, 2])  # [T, B, d]
    T = _length(g, "x", 1)
    heads = g.op("Concat", g.c(np.array([0], np.int64)), g.c(np.array([-1, D // H], np.int64)),
                 axis=0)

    def proj():
        p = g.op("MatMul", xs, g.w(D, D))
        return g.op("Transpose", g.op("Reshape", p, heads), perm=[1, 0, 2])  # [B·H, T, d_h]
    q, k, v = proj(), proj(), proj()
    s = g.op("Mul", g.op("MatMul", q, g.op("Transpose", k, perm=[0, 2, 1])),
             g.c(np.float32(0.5)))
    o = g.op("MatMul", _causal(g, s, T), v)  # [B·H, T, d_h]
    o = g.op("Reshape", g.op("Transpose", o, perm=[1, 0, 2]),
             g.op("Concat", T, g.c(np.array([-1, D], np.int64)), axis=0))  # [T, B, d]
    y = g.op("Add", "x", g.op("Transpose", o, perm=[1, 0, 2]))
    m = g.model(g.op("MatMul", y, g.w(D, 5)), ["batch", "seq", 5])
    prog = _check(m, RNG.normal(size=(3, 6, D)).astype(np.float32), max_context=8)
    assert prog.report["attention"][0]["T_max"] == 8 and len(prog.report["attention"]) == H


@pytest.mark.parametrize("form", ["folded_constant", "sliced_parameter", "offset_lookup"])
def test_position_tables_in_any_form_enter_as_a_one_hot_position_input(form):
    static = form == "folded_constant"
    g = G([1 if static else "batch", 6 if static else "seq", D])
    T = _length(g, "x", 1)
    table = RNG.normal(size=(16, D)).astype(np.float32)
    if form == "folded_constant":  # a static export folded the lookup into a [1, T, d] constant
        pos = g.c(table[None, :6])
    elif form == "sliced_parameter":  # a learned nn.Parameter [1, 16, d] sliced to the length
        pos = g.op("Slice", g.c(table[None]), g.c(np.array([0], np.int64)), T,
                   g.c(np.array([1], np.int64)))
    else:  # OPT: positions arange(T) + 2 looked up in a table
        ar = g.op("Range", g.c(np.int64(0)), g.op("Squeeze", T), g.c(np.int64(1)))
        pos = g.op("Gather", g.c(table), g.op("Add", ar, g.c(np.int64(2))))
    h = g.op("Add", "x", pos)
    q, k = g.op("MatMul", h, g.w(D, D)), g.op("MatMul", h, g.w(D, D))
    s = g.op("MatMul", q, g.op("Transpose", k, perm=[0, 2, 1]))
    o = g.op("MatMul", _causal(g, s, T), h)
    m = g.model(g.op("MatMul", o, g.w(D, 4)), [1 if static else "batch", 6 if static else "seq",
                                                 4])
    x = RNG.normal(size=(1 if static else 2, 6, D)).astype(np.float32)
    prog = _check(m, x, max_context=None if static else 12)
    pos_pops = [p for p in prog.ng.populations() if p.encoding == Encoding.POSITION]
    assert len(pos_pops) == 1 and pos_pops[0].size == (6 if static else 12)


def test_convolution_within_each_token():
    """A patch embedding: each token's 16 features as a 4×4 image through a 3×3 Conv."""
    g = G(["batch", "seq", 16])
    T = _length(g, "x", 1)
    img = g.op("Reshape", "x", g.c(np.array([-1, 1, 4, 4], np.int64)))
    conv = g.op("Conv", img, g.c(RNG.normal(size=(2, 1, 3, 3)).astype(np.float32)),
                g.c(RNG.normal(size=2).astype(np.float32)), pads=[1, 1, 1, 1])
    h = g.op("Reshape", conv, g.op("Concat", g.c(np.array([0], np.int64)),
                                   T, g.c(np.array([32], np.int64)), axis=0))
    h = g.op("Reshape", conv, g.op("Concat", _length(g, "x", 0), T,
                                   g.c(np.array([32], np.int64)), axis=0))
    s = g.op("MatMul", h, g.op("Transpose", h, perm=[0, 2, 1]))
    o = g.op("MatMul", _causal(g, g.op("Mul", s, g.c(np.float32(0.1))), T), h)
    m = g.model(g.op("MatMul", o, g.w(32, 3)), ["batch", "seq", 3])
    _check(m, RNG.normal(size=(2, 5, 16)).astype(np.float32), max_context=8)


def test_refusals_name_the_node():
    g = G(["batch", "seq", D])
    T = _length(g, "x", 1)
    a = g.op("MatMul", "x", g.w(D, D))
    gated = g.op("Div", a, g.op("Add", g.op("Relu", a), g.c(np.float32(1.0))),
                 name="/mlp/gate")  # a quotient of two activations
    s = g.op("MatMul", gated, g.op("Transpose", gated, perm=[0, 2, 1]))
    m = g.model(g.op("MatMul", _causal(g, s, T), gated), ["batch", "seq", D])
    with pytest.raises(CompileError, match="division by a value computed from the input") as e:
        icl.compile(m, max_context=8)
    assert e.value.node == "/mlp/gate"
    g = G(["batch", "seq", D])
    T = _length(g, "x", 1)
    h = g.op("Add", "x", g.op("Slice", g.c(RNG.normal(size=(1, 4, D)).astype(np.float32)),
                              g.c(np.array([0], np.int64)), T, g.c(np.array([1], np.int64))),
             name="/pos/add")
    s = g.op("MatMul", h, g.op("Transpose", h, perm=[0, 2, 1]))
    m = g.model(g.op("MatMul", _causal(g, s, T), h), ["batch", "seq", D])
    with pytest.raises(CompileError, match="cover 4 positions") as e:
        icl.compile(m, max_context=8)
    assert e.value.node == "/pos/add" and "--max-context 4" in e.value.hint
    onnx.checker.check_model(m)
