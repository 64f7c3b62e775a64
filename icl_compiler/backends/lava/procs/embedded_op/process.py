"""EmbeddedOps: the off-core operations of a program (LayerNorm/RMSNorm, attention row-sum divide).

On Loihi 2 these run on an embedded x86 core (DESIGN §6); here one process hosts all of them as
units of a :class:`icl_compiler.backends.lava.units.Bank` (integrate-and-fire at the unit's
schedule step, delay lines for inputs of different depths, see ``procs/graded_neuron``).

* ``norm`` units compute exactly ``semantics.neurons.norm``: float64 statistics of the integrated
  current (scaled by ``q.in_scale`` in fixed point), affine, then rounding to the output payload
  scale and 24-bit saturation.
* ``divide`` units (a head's output with ``normalise="rowsum"`` or ``"rowsum_max"``) compute
  exactly ``semantics.neurons.divide``: ``acc·s_v·s_a / (Σ a·s_a + eps)`` (or ``max(Σ a·s_a, eps)``) rounded to the output scale, with
  ``acc`` the head's raw V accumulator (from its ValueNeuron, same step) and ``a`` the slot
  outputs (from its SlotNeuron, one step earlier).  Float mode: ``acc / (Σ a + eps)``.
"""
from __future__ import annotations

from icl_compiler.backends.lava.base import BankProcess


class EmbeddedOps(BankProcess):
    max_ports = 32
