"""FloatPlasticDense: the K or V synapses of a plastic head in float mode (floating_pt only).

Why a custom process: Lava 0.10's floating-point learning applier cannot evaluate ``x0`` as a
factor, so a ``LearningDense`` with the K rule ``y0 * x0 * x1 - y0 * w`` raises inside its model
process under ``floating_pt`` (and the run then hangs).  This process keeps LearningDense's
interface (``s_in``, ``a_out``, ``s_in_bap``, ``s_in_y1..3``, ``weights``) and timing (``a_out`` at
step n is ``weights · s_in`` of step n − 1, computed before that step's learning), and applies the
two rules of DESIGN §4 in float with unit factors, every step (t_epoch = 1):

* ``rule="k"`` (two-factor, ``dw = y0·x0·x1 − y0·w``): for every post neuron with a bAP (y0),
  its row becomes ``x0·x1`` with x1 = the graded pre payload and x0 = (payload ≠ 0).
* ``rule="v"`` (three-factor, ``dw = x0·y1·y2 − x0·y3·w``): for every pre neuron that spiked (x0),
  its column becomes ``y1·y2 + (1 − y3)·w`` (the value neuron sends y2 = y3 = 1 in the write step,
  y2 = y3 = 0 otherwise), i.e. ``w ← v`` on a write and unchanged on a read.

Applied as assignments where the rule's dependency is active, so writes are exact in float64.
"""
from __future__ import annotations

import numpy as np
from lava.magma.core.process.ports.ports import InPort, OutPort
from lava.magma.core.process.process import AbstractProcess
from lava.magma.core.process.variable import Var


class FloatPlasticDense(AbstractProcess):
    def __init__(self, *, shape: tuple[int, int], rule: str, name: str | None = None) -> None:
        if rule not in ("k", "v"):
            raise ValueError(f"rule must be 'k' or 'v', got {rule!r}")
        super().__init__(shape=shape, rule=rule, name=name)
        post, pre = shape
        self.s_in = InPort(shape=(pre,))
        self.a_out = OutPort(shape=(post,))
        self.s_in_bap = InPort(shape=(post,))
        self.s_in_y1 = InPort(shape=(post,))
        self.s_in_y2 = InPort(shape=(post,))
        self.s_in_y3 = InPort(shape=(post,))
        self.weights = Var(shape=shape, init=np.zeros(shape))
        self.a_buff = Var(shape=(post,), init=0)
