"""SlotNeuron: the T_max attention slot neurons of one plastic head (gated, applying f, driving bAPs).

Schedule (``steps_per_token = 2``; step n ≥ t0, token ``tok = (n − t0) // 2``, phase ``(n − t0) % 2``):

* phase A (K write of token tok): ``s_out = slot_f(a_in)`` — the scores of the previous token's query
  (the K LearningDense delivers them one step after the read) — and ``bap`` = one-hot(tok), which
  marks row tok of the K synapses for the two-factor write.
* phase B (read of token tok, V write): ``s_out`` = one-hot(tok)·``onehot`` (the pre spike x0 of the
  three-factor V write; the real slot outputs, which are the garbage scores of the K write step, are
  gated off); no bAP.

Slots ≥ T_max are never marked.  Fixed point: ``slot_f`` of ``icl_compiler.backends.numpy.fixed``
(``s = a >> r``; identity | relu | relu2 = max(s,0)² >> r2; 24-bit saturation).  Floating point:
``f(scale · a)`` with relu2 = relu(x)².
"""
from __future__ import annotations

from lava.magma.core.process.ports.ports import InPort, OutPort
from lava.magma.core.process.process import AbstractProcess
from lava.magma.core.process.variable import Var


class SlotNeuron(AbstractProcess):
    def __init__(self, *, shape: tuple[int], f: str = "relu", r: int = 0, r2: int = 0,
                 scale: float = 1.0, onehot: int = 1, steps_per_token: int = 2, t0: int = 1,
                 name: str | None = None) -> None:
        if steps_per_token != 2:
            raise ValueError("SlotNeuron implements the 2-step schedule only")
        if f not in ("identity", "relu", "relu2"):
            raise ValueError(f"unknown slot function {f!r}")
        if onehot == 0:
            raise ValueError("onehot payload must be non-zero (it is the V write's pre spike)")
        super().__init__(shape=shape, f=f, r=r, r2=r2, scale=scale, onehot=onehot,
                         steps_per_token=steps_per_token, t0=t0, name=name)
        self.a_in = InPort(shape=shape)
        self.s_out = OutPort(shape=shape)
        self.bap = OutPort(shape=shape)
        self.out = Var(shape=shape, init=0)  # last s_out, for probing
