"""CoreNeurons: every neuron population of a program on the neuro cores, in one Lava process — the
graded populations and, for up to ``MAX_HEADS`` plastic heads, their k/q, slot and value neurons
(``plan.py``, ``layout="merged"``).

It is the four processes of the separate layout in one (GradedNeurons, KQNeuron, SlotNeuron,
ValueNeuron) with the same code: a :class:`~icl_compiler.backends.lava.units.Bank` integrates
the ``Dense`` inputs (ports ``in0 …``, delay lines) and fires the graded, k, q and v units at
their schedule steps; per head i, ``units.slot_step`` and ``units.value_step`` drive the
plastic synapses exactly as SlotNeuron and ValueNeuron do.  Ports of head i:

* ``kq{i}`` → the K LearningDense's ``s_in``: the sign-split k payload at phase A, the q read
  payload at phase B, zeros otherwise;
* ``ka{i}`` ← the K synapses' scores; ``bap{i}`` → their ``s_in_bap``;
* ``s{i}`` → the V LearningDense's ``s_in`` (slot outputs / one-hot write spike);
* ``va{i}`` ← the V synapses' sums; ``y1_{i}``, ``y2_{i}``, ``y3_{i}`` → their third factors.

``s_out`` carries the graded populations and the head outputs (to the ``Dense`` s), ``y_out``
the program's output population (to the sink).  Every input is sent by its sender before that
sender receives anything in a step (``Dense`` and ``LearningDense`` send the previous step's
sums first), so one process can receive all of them, then send all of its outputs.

``heads``: per head ``{"width": k/q payload lanes, "slot": SlotNeuron head dict, "value":
ValueNeuron head dict}`` (with their defaults).
"""
from __future__ import annotations

from lava.magma.core.process.ports.ports import InPort, OutPort

from icl_compiler.backends.lava.base import BankProcess
from icl_compiler.backends.lava.procs.slot_neuron.process import SLOT_DEFAULTS
from icl_compiler.backends.lava.procs.value_neuron.process import VALUE_DEFAULTS
from icl_compiler.backends.lava.units import MAX_HEADS


class CoreNeurons(BankProcess):
    max_ports = 16
    max_heads = MAX_HEADS

    def __init__(self, *, bank: dict, heads: list[dict], name: str | None = None) -> None:
        if not 1 <= len(heads) <= self.max_heads:
            raise ValueError(f"CoreNeurons hosts 1..{self.max_heads} heads, got {len(heads)}")
        hs = [{"width": int(h["width"]), "slot": {**SLOT_DEFAULTS, **h["slot"]},
               "value": {**VALUE_DEFAULTS, **h["value"]}} for h in heads]
        for h in hs:
            if h["slot"]["clear"] and h["slot"]["anchor"] < 1:
                raise ValueError("the clear step needs anchor >= 1")
        super().__init__(bank=bank, heads=hs, name=name)
        for i in range(self.max_heads):
            used = i < len(hs)
            t_max = hs[i]["slot"]["size"] if used else 1
            rows = hs[i]["value"]["size"] if used else 1
            setattr(self, f"kq{i}", OutPort(shape=(hs[i]["width"] if used else 1,)))
            setattr(self, f"ka{i}", InPort(shape=(t_max,)))
            setattr(self, f"bap{i}", OutPort(shape=(t_max,)))
            setattr(self, f"s{i}", OutPort(shape=(t_max,)))
            setattr(self, f"va{i}", InPort(shape=(rows,)))
            for y in ("y1", "y2", "y3"):
                setattr(self, f"{y}_{i}", OutPort(shape=(rows,)))
