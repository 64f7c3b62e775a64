"""Affine forms over populations, and the helpers of the lowering that need no graph: the op
families, names, the canonical output layout, monomial matrices and selection composition."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..util import op_type as _op  # noqa: F401 - re-exported to the lowering modules

# ops that only move data: their feature map is an index map (exact, cheap to probe)
MOVES = {"Reshape", "Transpose", "Squeeze", "Unsqueeze", "Expand", "Flatten", "Slice", "Split",
         "Concat", "Gather", "SplitHeads", "MergeHeads", "Identity", "Cast", "Pad", "Tile",
         "DepthToSpace", "SpaceToDepth", "GatherElements"}
# ops that may be affine in their token inputs (checked numerically)
AFFINE = MOVES | {"Add", "Sub", "Neg", "Mul", "Div", "MatMul", "Gemm", "Linear", "Einsum",
                  "Conv", "ConvTranspose", "AveragePool", "GlobalAveragePool", "ReduceMean",
                  "ReduceSum", "CumSum", "Sum", "Mean", "Where"}
CONV_OPS = ("Conv", "ConvTranspose", "AveragePool", "GlobalAveragePool")
MAPPED = ("the lowering maps Linear, Relu, the smooth activations it recognises (GELU, SiLU, "
          "sigmoid, tanh, softplus …), elementwise products (gated MLPs, rotary embeddings), "
          "LayerNorm/RMSNorm/L2 norms, data movement and other linear ops, embeddings and "
          "attention")
_OUTSIDE = ("outside a recognised activation (the fuse_activation pass matches whole elementwise "
            "functions of one value: GELU, SiLU, sigmoid, tanh, softplus, mish, ELU, ReLU²)")
NEURON_HINTS = {
    "Gelu": "Gelu " + _OUTSIDE,
    "Erf": "Erf " + _OUTSIDE,
    "Tanh": "Tanh " + _OUTSIDE,
    "Sigmoid": "Sigmoid " + _OUTSIDE,
    "Pow": "Pow " + _OUTSIDE,
    "Exp": "Exp " + _OUTSIDE,
}



@dataclass
class Affine:
    """Σ_i W_i @ pop_i + bias, W_i: [n, size(pop_i)]."""

    n: int
    terms: list[tuple[str, np.ndarray]] = field(default_factory=list)
    bias: np.ndarray | None = None
    selection: bool = False  # every W is 0/1 with at most one 1 per row, no bias

    def scaled(self, c: float) -> Affine:
        return Affine(self.n, [(p, W * c) for p, W in self.terms],
                      None if self.bias is None else self.bias * c)

    def rows(self, idx: np.ndarray) -> Affine:
        return Affine(len(idx), [(p, W[idx]) for p, W in self.terms],
                      None if self.bias is None else self.bias[idx], self.selection)


def _short(value: str) -> str:
    """A population name from a value name (ONNX names can be long paths)."""
    return value if len(value) <= 48 else "…" + value[-47:]


def _stack(forms: list[Affine]) -> Affine:
    """One form holding the given forms' rows one after the other."""
    n = sum(f.n for f in forms)
    terms, bias, off = [], None, 0
    for f in forms:
        for p, W in f.terms:
            Wn = np.zeros((n, W.shape[1]))
            Wn[off:off + f.n] = W
            terms.append((p, Wn))
        if f.bias is not None:
            bias = np.zeros(n) if bias is None else bias
            bias[off:off + f.n] = f.bias
        off += f.n
    return Affine(n, terms, bias)


def _monomial(M: np.ndarray):
    """(row source index or −1, row scale) when every row of M has at most one non-zero."""
    nz = M != 0
    counts = nz.sum(axis=1)
    if np.any(counts > 1):
        return None
    idx = np.where(counts == 1, nz.argmax(axis=1), -1)
    scale = np.where(idx >= 0, M[np.arange(len(idx)), np.maximum(idx, 0)], 0.0)
    return idx, scale


def _compose(Wt: np.ndarray, S: np.ndarray) -> np.ndarray:
    """Wt @ S for a 0/1 selection S (at most one 1 per row), without a dense matrix product
    (GPT-2 small: 13.5 s of products with identity matrices)."""
    n_in, n_out = S.shape
    if n_in == n_out and np.count_nonzero(S) == n_in and np.all(S.diagonal() == 1):
        return Wt
    rows, cols = np.nonzero(S)
    out = np.zeros((Wt.shape[0], n_out))
    np.add.at(out.T, cols, Wt[:, rows].T)
    return out


def _add(a, b):
    if a is None:
        return b
    if b is None:
        return a
    return a + b


