"""Builders and checks shared by the pass tests."""
from __future__ import annotations

import numpy as np

from icl_compiler.ir.graph import Graph
from icl_compiler.ir.interpreter import run
from icl_compiler.ir.symbolic import sym
from icl_compiler.ir.verify import verify
from icl_compiler.passes.manager import PassContext, run_pass
from icl_compiler.passes.util import add_op

B, T = sym("batch"), sym("seq")


class Builder:
    """Tiny graph builder: every method returns the output value's name."""

    def __init__(self, name: str = "test", seed: int = 0):
        self.g = Graph(name)
        self.rng = np.random.default_rng(seed)

    def input(self, name: str, shape, dtype: str = "float32") -> str:
        self.g.add_value(name, shape, dtype)
        self.g.inputs.append(name)
        return name

    def const(self, data, base: str = "c", dtype: str = "float32") -> str:
        return self.g.add_const(np.asarray(data, dtype=dtype), base).name

    def rand(self, *shape, scale: float = 0.5, base: str = "w") -> str:
        return self.const(self.rng.normal(0, scale, shape), base)

    def op(self, op: str, *ins: str, onnx_name: str | None = None, **attrs) -> str:
        return add_op(self.g, op, list(ins), attrs, onnx_name=onnx_name)

    def linear(self, x: str, n_in: int, n_out: int, bias: bool = True) -> str:
        y = self.op("Linear", x, self.rand(n_in, n_out), *([self.rand(n_out)] if bias else []))
        return y

    def output(self, *names: str) -> Graph:
        self.g.outputs = list(names)
        verify(self.g)
        return self.g


def feeds_for(g: Graph, seq: int = 5, batch: int = 2, seed: int = 1) -> dict:
    rng = np.random.default_rng(seed)
    out = {}
    for name in g.inputs:
        v = g.values[name]
        shape = [batch if str(d) == "batch" else seq if str(d) == "seq" else int(d) for d in v.shape]
        if np.dtype(v.dtype).kind in "iu":
            out[name] = rng.integers(0, 4, shape).astype(v.dtype)
        else:
            out[name] = rng.normal(0, 1, shape).astype(v.dtype)
    return out


def assert_same_numbers(before: Graph, after: Graph, seqs=(5, 8)) -> None:
    """Interpreter outputs agree in float64 to a relative tolerance of 1e-9."""
    for seq in seqs:
        feeds = feeds_for(before, seq=seq)
        a = run(before, feeds, float_dtype="float64")
        b = run(after, feeds, float_dtype="float64")
        for oa, ob in zip(before.outputs, after.outputs):
            scale = max(1.0, float(np.max(np.abs(a[oa]))))
            np.testing.assert_allclose(b[ob], a[oa], rtol=1e-9, atol=1e-12 * scale)


def apply(name: str, g: Graph, ctx: PassContext | None = None) -> tuple[Graph, str]:
    """Run one pass on a copy (verifying the result); returns (new graph, summary)."""
    h = g.copy()
    summary = run_pass(name, h, ctx)
    return h, summary
