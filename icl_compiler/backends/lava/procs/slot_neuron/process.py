"""SlotNeuron: the attention slot neurons of up to ``MAX_HEADS`` plastic heads (gated, applying f,
driving the bAPs).  Head i uses ports ``a{i}`` (scores from its K synapses), ``s{i}`` (slot outputs
to its V synapses) and ``bap{i}`` (back-propagating spikes to its K synapses).

Per-head schedule (``units.slot_step``; P = ``period`` steps per token, 2 in a pipelined batch,
``pipeline_depth + 1`` in a streaming session).  ``n`` = the step within the sequence
(``(time_step − 1 − origin) mod seq_len`` when ``seq_len`` is given, else
``time_step − 1 − origin``; ``origin`` is a Var a stream moves on reset), ``m = n − anchor``,
token ``tok = m // P``, phase ``m % P``:

* phase A (m = P·tok; K write of token tok): ``bap`` = one-hot(tok) (``tok < tokens``), which
  marks row tok of the K synapses for the two-factor write.
* phase B (m = P·tok + 1; read of token tok, V write): ``s`` = one-hot(tok)·``onehot`` (the pre
  spike x0 of the three-factor V write; the real slot outputs, which are the garbage scores of
  the K write step, are gated off); no bAP.
* m = P·j + 2: ``s = slot_f(a)`` for ``j < tokens`` — the scores of token j's query, which the K
  LearningDense delivers one step after the read (for P = 2: the next token's phase A).
* ``m = −1`` with ``clear``: the reset before a sequence's first token: a bAP on every slot with
  no K pre spike clears K (``dw = −y0·w``), and ``s = onehot`` on every slot with the value
  neuron's write enable and y1 = 0 clears V.
* ``tokens = None``: one unbounded stream (bAP/one-hot while tok < T_max).

Fixed point: ``slot_f`` of ``icl_compiler.semantics.fixed`` (``s = a >> r``;
identity | relu | relu2 = max(s,0)² >> r2; 24-bit saturation).  Floating point: ``f(scale · a)``
with relu2 = relu(x)².

``heads``: one dict per head with ``size`` (T_max) and optionally ``f, r, r2, scale, onehot,
anchor, tokens, seq_len, clear, period`` (defaults: relu, 0, 0, 1.0, 1, 0, None, 0, False, 2).
"""
from __future__ import annotations

from lava.magma.core.process.ports.ports import InPort, OutPort
from lava.magma.core.process.process import AbstractProcess
from lava.magma.core.process.variable import Var

from icl_compiler.backends.lava.units import MAX_HEADS

SLOT_DEFAULTS = {"f": "relu", "r": 0, "r2": 0, "scale": 1.0, "onehot": 1, "anchor": 0,
                 "tokens": None, "seq_len": 0, "clear": False, "period": 2}


class SlotNeuron(AbstractProcess):
    max_heads = MAX_HEADS

    def __init__(self, *, heads: list[dict], name: str | None = None) -> None:
        if not 1 <= len(heads) <= self.max_heads:
            raise ValueError(f"SlotNeuron hosts 1..{self.max_heads} heads, got {len(heads)}")
        hs = []
        for h in heads:
            h = {**SLOT_DEFAULTS, **h}
            if h["f"] not in ("identity", "relu", "relu2"):
                raise ValueError(f"unknown slot function {h['f']!r}")
            if h["onehot"] == 0:
                raise ValueError("onehot payload must be non-zero (it is the V write's pre spike)")
            if h["clear"] and h["anchor"] < 1:
                raise ValueError("the clear step needs anchor >= 1")
            hs.append(h)
        super().__init__(heads=hs, name=name)
        self.origin = Var(shape=(1,), init=0)  # the step a stream (re)started at
        for i in range(self.max_heads):
            shape = (hs[i]["size"],) if i < len(hs) else (1,)
            setattr(self, f"a{i}", InPort(shape=shape))
            setattr(self, f"s{i}", OutPort(shape=shape))
            setattr(self, f"bap{i}", OutPort(shape=shape))
