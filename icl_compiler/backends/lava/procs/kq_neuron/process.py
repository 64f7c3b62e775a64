"""KQNeuron: the k and q populations of up to ``MAX_HEADS`` plastic heads, each pair merged into
the pre side of its head's K synapses (port ``kq{i}``).

Units of a :class:`icl_compiler.backends.lava.units.Bank` (integrate-and-fire with delay lines,
see ``procs/graded_neuron``), graded neurons with the quantiser's rounding shift:

* unit ``k{i}`` fires at head i's anchor step A of token t (phase A) and sends the sign-split
  write payload ``fixed.k_payload(k_t) = [2·max(k,0), 2·max(−k,0)]`` (2d neurons) to the K
  ``LearningDense`` (two-factor rule, bAP from the slot neuron on slot t);
* unit ``q{i}`` fires at A + 1 (phase B) and sends the read payload ``fixed.q_payload(q_t) =
  [q, −q]``.

Float mode: d neurons carrying k_t, then q_t, unchanged (the float K storage is
``procs/plastic_float``).  ``kq{i}`` is 0 in every other step.  ``heads``: the rows ``(r0, r1)``
of head i's pair in the bank's output vector.
"""
from __future__ import annotations

from lava.magma.core.process.ports.ports import OutPort

from icl_compiler.backends.lava.base import BankProcess
from icl_compiler.backends.lava.units import MAX_HEADS


class KQNeuron(BankProcess):
    max_ports = 16
    max_heads = MAX_HEADS

    def __init__(self, *, bank: dict, heads: list[tuple[int, int]], name: str | None = None):
        if not 1 <= len(heads) <= self.max_heads:
            raise ValueError(f"KQNeuron hosts 1..{self.max_heads} heads, got {len(heads)}")
        super().__init__(bank=bank, heads=[tuple(h) for h in heads], name=name)
        for i in range(self.max_heads):
            shape = (heads[i][1] - heads[i][0],) if i < len(heads) else (1,)
            setattr(self, f"kq{i}", OutPort(shape=shape))
