"""Pass ``fuse_linear``: MatMul (+ bias Add) and Gemm with constant weights → ``Linear``.

Matches:
- ``Add(MatMul(x, W), b)`` (either operand order) with W a constant 2-D float matrix [in, out]
  and b a constant per-feature vector of size out ([out] or [1, ..., out]), and the MatMul used
  only by the Add;
- ``MatMul(x, W)`` with W as above (no bias);
- ``Gemm(a, B[, C])`` with constant B (and C of size N, if given) and transA = 0.

Produces: ``Linear(x, W[, b])`` computing the root's output value; for Gemm, W = alpha·B (or
alpha·Bᵀ with transB) and b = beta·C.

Invariants: the output value keeps its name, shape and dtype; numbers are unchanged up to
float rounding of the alpha/beta scaling (exact when alpha = beta = 1).
"""
from __future__ import annotations

import numpy as np

from ..ir.graph import Graph
from ..ir.ops import with_defaults
from .pattern import Match, Pattern, Var, op, rewrite_all
from .util import add_const, const, is_const_2d, is_nonconst, is_vector_const, replace_node

X, W, B = Var("x", is_nonconst), Var("W", is_const_2d), Var("b", is_vector_const)
MATMUL = op("MatMul", X, W, name="mm", commutative=False)


def _bias_fits(g: Graph, m: Match) -> bool:
    return const(g, m["b"]).size == const(g, m["W"]).shape[1]


MATMUL_ADD = Pattern(op("Add", MATMUL, B, name="add"), check=_bias_fits)
MATMUL_ONLY = Pattern(MATMUL)
GEMM = Pattern(op("Gemm", Var("a", is_nonconst), Var("B", is_const_2d), name="gemm", transA=0))
GEMM_C = Pattern(op("Gemm", Var("a", is_nonconst), Var("B", is_const_2d), Var("C", is_vector_const),
                    name="gemm", transA=0),
                 check=lambda g, m: const(g, m["C"]).size == const(g, m["B"]).shape[
                     0 if with_defaults("Gemm", m.root.attrs)["transB"] else 1])


def run(g: Graph, ctx=None) -> str:
    counts = {"MatMul+Add": 0, "MatMul": 0, "Gemm": 0}

    def dtype_of(v):
        return g.values[v].dtype

    def fuse(g: Graph, m: Match):
        x = m["x"] if "x" in m.values else m["a"]
        dt = dtype_of(x)
        if m.root.op == "Gemm":
            a = with_defaults("Gemm", m.root.attrs)
            Bm = const(g, m["B"])
            Wm = (Bm.T if a["transB"] else Bm) * np.asarray(a["alpha"], Bm.dtype)
            ins = [x, add_const(g, Wm.astype(dt), m["B"] + "_linear")]
            if "C" in m.values:
                c = (const(g, m["C"]).reshape(-1) * np.asarray(a["beta"], dt)).astype(dt)
                ins.append(add_const(g, c, m["C"] + "_linear"))
            counts["Gemm"] += 1
        else:
            ins = [x, m["W"]]
            if "b" in m.values:
                b = const(g, m["b"])
                ins.append(m["b"] if b.ndim == 1 else add_const(g, b.reshape(-1), m["b"]))
                counts["MatMul+Add"] += 1
            else:
                counts["MatMul"] += 1
        replace_node(g, m.root, "Linear", ins, onnx_name=(m.node("mm") or m.root).onnx_name)

    rewrite_all(g, [MATMUL_ADD, GEMM_C, GEMM], fuse)
    rewrite_all(g, MATMUL_ONLY, fuse)
    g.prune()
    done = {k: v for k, v in counts.items() if v}
    if not done:
        return "no MatMul/Gemm with constant weights"
    return "fused " + ", ".join(f"{v} {k}" for k, v in done.items()) + " into Linear"
