"""Convolutions and pooling within one token (a CNN over an image token), built with onnx.helper
and compiled end to end: Conv as a Dense with the unrolled kernel, average pooling as a linear
map, max pooling exactly as a tournament of graded ReLU neurons (max(a, b) = b + relu(a − b)),
and the report's token_ops."""
from __future__ import annotations

import numpy as np
import pytest

import icl_compiler as icl
from icl_compiler.errors import CompileError
from icl_compiler.ir.neuro import NeuronModel
from icl_compiler.runtime.reference import onnxruntime_run
from tests.passes.test_lower_layouts import G, _causal, _length

RNG = np.random.default_rng(13)
S, CTX = 8, 10  # an 8×8 image per token


def _cnn(pool: str, kernel=2, stride=2, pads=(0, 0, 0, 0)):
    g = G(["batch", "seq", S * S])
    T = _length(g, "x", 1)
    img = g.op("Reshape", "x", g.c(np.array([-1, 1, S, S], np.int64)))
    conv = g.op("Conv", img, g.c(RNG.normal(0, 0.5, (2, 1, 3, 3)).astype(np.float32)),
                g.c(RNG.normal(0, 0.1, 2).astype(np.float32)), pads=[1, 1, 1, 1],
                name="/cnn/conv")
    act = g.op("Relu", conv)
    if pool == "max":
        p = g.op("MaxPool", act, kernel_shape=[kernel, kernel], strides=[stride, stride],
                 pads=list(pads), name="/cnn/maxpool")
    else:
        p = g.op("AveragePool", act, kernel_shape=[kernel, kernel], strides=[stride, stride],
                 pads=list(pads), name="/cnn/avgpool")
    n = 2 * ((S + pads[0] + pads[2] - kernel) // stride + 1) ** 2
    h = g.op("Reshape", p, g.op("Concat", _length(g, "x", 0), T, g.c(np.array([n], np.int64)),
                                axis=0))
    h = g.op("MatMul", h, g.w(n, 8))
    s = g.op("MatMul", h, g.op("Transpose", h, perm=[0, 2, 1]))
    o = g.op("Add", h, g.op("MatMul", _causal(g, g.op("Mul", s, g.c(np.float32(0.2))), T), h))
    return g.model(g.op("MatMul", o, g.w(8, 3)), ["batch", "seq", 3])


def _x():
    return RNG.uniform(0, 1, size=(2, CTX, S * S)).astype(np.float32)


@pytest.mark.parametrize("pool, kernel, stride, pads", [
    ("avg", 2, 2, (0, 0, 0, 0)), ("max", 2, 2, (0, 0, 0, 0)), ("max", 3, 1, (1, 1, 1, 1)),
    ("max", 3, 2, (0, 0, 0, 0))])
def test_a_cnn_over_an_image_token(pool, kernel, stride, pads):
    m = _cnn(pool, kernel, stride, pads)
    x = _x()
    ref = onnxruntime_run(m, x)
    prog = icl.compile(m, max_context=CTX)
    assert np.abs(prog.run(x) - ref).max() <= 1e-5 * np.abs(ref).max()
    ops = {e["op"]: e for e in prog.report["token_ops"]}
    assert ops["Conv"]["lowered_as"] == "a Dense with the unrolled kernel"
    assert (ops["Conv"]["in_features"], ops["Conv"]["out_features"]) == (S * S, 2 * S * S)
    assert ops["Conv"]["nonzero_weights"] == 2 * (9 * 6 * 6 + 6 * 4 * 6 + 4 * 4)  # padding
    n_out = 2 * ((S + pads[0] + pads[2] - kernel) // stride + 1) ** 2
    relus = [p for p in prog.ng.populations() if p.model == NeuronModel.GRADED_RELU]
    if pool == "max":
        e = ops["MaxPool"]
        assert e["out_features"] == n_out and e["window"] == kernel * kernel
        assert e["levels"] == int(np.ceil(np.log2(kernel * kernel)))
        # each output's window of w entries needs w − 1 ReLU neurons (fewer at padded borders)
        assert sum(p.size for p in relus if ".max" in p.name) == e["neurons"]
        assert e["neurons"] <= n_out * (kernel * kernel - 1)
    else:
        assert ops["AveragePool"]["lowered_as"].startswith("a Dense with the averaging")
        assert not any(".max" in p.name for p in relus)
    fixed = icl.compile(m, precision="fixed", calibration=x, max_context=CTX)
    assert np.abs(fixed.run(x) - ref).max() <= 0.05 * np.abs(ref).max()


def test_max_pooling_indices_are_refused_with_the_node():
    g = G(["batch", "seq", S * S])
    T = _length(g, "x", 1)
    img = g.op("Reshape", "x", g.c(np.array([-1, 1, S, S], np.int64)))
    p = g.op("MaxPool", img, kernel_shape=[2, 2], strides=[2, 2], name="/pool")
    g.nodes[-1].output.append("idx")
    n = 16
    h = g.op("Reshape", p, g.op("Concat", _length(g, "x", 0), T, g.c(np.array([n], np.int64)),
                                axis=0))
    hi = g.op("Reshape", g.op("Cast", "idx", to=1),
              g.op("Concat", _length(g, "x", 0), T, g.c(np.array([n], np.int64)), axis=0))
    h = g.op("Add", h, hi)
    s = g.op("MatMul", h, g.op("Transpose", h, perm=[0, 2, 1]))
    m = g.model(g.op("MatMul", _causal(g, s, T), h), ["batch", "seq", n])
    with pytest.raises(CompileError) as e:
        icl.compile(m, max_context=CTX)
    assert e.value.node == "/pool"
