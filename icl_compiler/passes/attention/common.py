"""What the attention pass's modules share: the refusal texts, the tolerances, the records of one
recognised attention (:class:`Attn`) and of one operand (:class:`Operand`)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...errors import CompileError
from ...ir.graph import Node
from ...ir.layout import B, F, S, T  # noqa: F401 - the factor kinds, for the pass's modules

SOFTMAX_HINT = ("retrain the model with softmax-free attention, e.g. f = ReLU: "
                "out_t = Σ_{s≤t} relu(q_t·k_s/√d) v_s (optionally divided by the row sum)")

SOFTMAX_REASON = ("softmax attention cannot be mapped to plastic synapses: a plastic KV write "
                  "stores one slot per token and each slot applies f(q·k_s) on its own, but "
                  "softmax needs all past scores at once to normalise")

UNSUPPORTED_F = {"Exp", "Sigmoid", "Tanh", "Gelu", "Erf", "Abs", "Neg", "Sqrt", "Reciprocal",
                 "Log", "Softplus"}

F_DEGREE = {"identity": 1, "relu": 1, "relu2": 2}

LAYOUT_OPS = {"Reshape", "Transpose", "SplitHeads", "MergeHeads", "Squeeze", "Unsqueeze",
              "Identity", "Flatten"}

REL = 1e-7  # relative tolerance of the numeric checks (float64 evaluation)

@dataclass
class Operand:
    value: str  # the model's value (any layout)
    idx: np.ndarray  # [heads, d]: feature index of (head, i) in the value's feature vector
    factor: float = 1.0  # scalar scale peeled off (folded into the attention scale)

@dataclass
class Attn:
    p1: Node
    p2: Node
    target: str  # the value the attention computes (read or its normalisation)
    q: Operand
    k: Operand
    v: Operand
    z_idx: np.ndarray  # target feature j -> index in the canonical [heads·d_v] output
    z_layout: tuple
    f: str
    scale: float
    normalisation: str
    eps: float
    t_max: int
    heads: int
    d_k: int
    d_v: int
    q_factor: np.ndarray | None = None  # [T_max]: query t's weights scaled by q_factor[t]

    def key(self):
        qf = None if self.q_factor is None else self.q_factor.tobytes()
        return (self.f, self.scale, self.normalisation, self.eps, self.t_max, self.d_k, self.d_v,
                qf)

def _err(node: Node, reason: str, hint: str | None = None) -> CompileError:
    return CompileError(reason, node=node.onnx_name or node.name, op=node.op, hint=hint)

def _label(node: Node) -> str:
    return node.onnx_name or node.name
