"""ValueNeuron: the d_v value (output) neurons of one plastic head; they drive the V write's third factor.

Schedule (``steps_per_token = 2``; step n ≥ t0, token ``tok = (n − t0) // 2``, phase ``(n − t0) % 2``):

* phase B (V write of token tok): sends the post traces ``y1 = v_in`` (v_tok, received this step),
  ``y2``, ``y3`` to the V LearningDense (three-factor rule ``x0·y1·y2 − x0·y3·w``; y3 is the write
  enable of the −w term).  It also emits the head output of token tok − 1: ``s_out = a_in``, which is
  V·f(scores_{tok−1}) (computed by the V synapses in the previous A step); saturated to 24 bits in
  fixed point.
* phase A and before t0: y1 = y2 = y3 = 0 and s_out = 0 (a_in then holds the garbage read of the
  one-hot write spike).

Defaults: fixed_pt y2 = 8, y3 = 32 (they cancel the learning engine's product shifts 3 and 5);
floating_pt y2 = y3 = 1.
"""
from __future__ import annotations

from lava.magma.core.process.ports.ports import InPort, OutPort
from lava.magma.core.process.process import AbstractProcess
from lava.magma.core.process.variable import Var


class ValueNeuron(AbstractProcess):
    def __init__(self, *, shape: tuple[int], y2: float | None = None,
                 y3: float | None = None, steps_per_token: int = 2, t0: int = 1,
                 name: str | None = None) -> None:
        if steps_per_token != 2:
            raise ValueError("ValueNeuron implements the 2-step schedule only")
        super().__init__(shape=shape, y2=y2, y3=y3, steps_per_token=steps_per_token, t0=t0,
                         name=name)
        self.a_in = InPort(shape=shape)
        self.v_in = InPort(shape=shape)
        self.s_out = OutPort(shape=shape)
        self.y1 = OutPort(shape=shape)
        self.y2 = OutPort(shape=shape)
        self.y3 = OutPort(shape=shape)
        self.out = Var(shape=shape, init=0)  # last s_out, for probing
