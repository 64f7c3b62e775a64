"""A tiny onnx.helper graph builder for tests: small decoders whose parts are written node by
node the way an exporter writes them (no torch needed)."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


class Net:
    """Nodes and initialisers of one graph; ``x`` is its input ``[1, T, d]`` (float features;
    T is a dynamic dim named ``T`` unless ``t`` is an int)."""

    def __init__(self, d: int = 8, t: int | str = "T", seed: int = 0, opset: int = 17):
        self.d, self.t, self.opset = d, t, opset
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.n = 0

    def _name(self, base: str) -> str:
        self.n += 1
        return f"{base}_{self.n}"

    def c(self, arr, dtype=np.float32) -> str:
        name = self._name("c")
        self.inits.append(numpy_helper.from_array(np.asarray(arr, dtype), name))
        return name

    def i64(self, v) -> str:
        return self.c(v, np.int64)

    def op(self, op_type: str, *ins: str, n_out: int = 1, name: str | None = None, **attrs):
        outs = [self._name(op_type.lower()) for _ in range(n_out)]
        self.nodes.append(helper.make_node(op_type, list(ins), outs, name=name or outs[0],
                                           **attrs))
        return outs[0] if n_out == 1 else outs

    def weight(self, *shape, scale=None) -> str:
        scale = 1 / np.sqrt(shape[0]) if scale is None else scale
        return self.c(self.rng.normal(0, scale, shape))

    def linear(self, x: str, n_in: int, n_out: int, bias: bool = True) -> str:
        y = self.op("MatMul", x, self.weight(n_in, n_out))
        return self.op("Add", y, self.c(self.rng.normal(0, 0.1, n_out))) if bias else y

    def seq_len(self, x: str = "x") -> str:
        """T as a 0-d int64 (Shape → Gather), what exporters write for x.shape[1]."""
        return self.op("Gather", self.op("Shape", x), self.i64(1), axis=0)

    def heads(self, x: str, h: int) -> str:
        """[1, T, h·dh] → [1, h, T, dh]."""
        r = self.op("Reshape", x, self.i64([0, 0, h, -1]))
        return self.op("Transpose", r, perm=[0, 2, 1, 3])

    def merge(self, x: str) -> str:
        t = self.op("Transpose", x, perm=[0, 2, 1, 3])
        return self.op("Reshape", t, self.i64([0, 0, -1]))

    def attention(self, x: str, h: int = 2, qk=None) -> str:
        """Causal ReLU attention (tril on the weights); ``qk(q, k)`` may rewrite the per-head
        q and k ([1, h, T, dh]) first."""
        d = self.d
        q, k, v = (self.heads(self.linear(x, d, d), h) for _ in range(3))
        if qk is not None:
            q, k = qk(q, k)
        s = self.op("MatMul", q, self.op("Transpose", k, perm=[0, 1, 3, 2]))
        s = self.op("Mul", s, self.c(1 / np.sqrt(d // h)))
        w = self.op("Trilu", self.op("Relu", s), upper=0)
        return self.linear(self.merge(self.op("MatMul", w, v)), d, d)

    def model(self, y: str, x_shape=None, out=None) -> onnx.ModelProto:
        x_shape = x_shape or [1, self.t, self.d]
        g = helper.make_graph(self.nodes, "net",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
                              [helper.make_tensor_value_info(y, TensorProto.FLOAT, [1, self.t, out or self.d])],
                              self.inits)
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", self.opset)],
                              ir_version=8)
        onnx.checker.check_model(m, full_check=True)
        return m


def ort_run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), so).run(None, {"x": x})[0]


def rel_err(a, b) -> float:
    return float(np.abs(np.asarray(a, np.float64) - b).max() / np.abs(b).max())
