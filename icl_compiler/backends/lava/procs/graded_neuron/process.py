"""GradedNeurons: a program's static graded populations (graded, graded_relu, output, activation,
product), one process.

Each population is a *unit* of a :class:`icl_compiler.backends.lava.units.Bank`: every step the
process receives its numbered input ports ``in0 …`` (one ``Dense`` each), pushes them into its
delay lines, and each unit whose step has come (once per token, at its schedule step τ) integrates
its current ``Σ delayed Dense outputs + bias`` and applies the emulator's neuron model
(``semantics.neurons.neuron``: optional rounding shift ``q.shift``, ReLU, an activation's exact
function or integer response, 24-bit saturation in fixed point; ``semantics.neurons.product`` for a
product unit, whose second operand integrates the Dense rows of the graph's port-1 synapses).
A product unit is Lava's ``ProdNeuron`` (``int32(a·b) >> exp``) with 16-bit operands and the
program's bias, delay lines and 24-bit clip; an activation unit is a graded neuron with the
response of ``semantics.neurons.activation``.  ``s_out`` carries every unit's output in its rows (0 when the unit does not fire);
``y_out`` carries the program's output population (for the sink).

Why not stock ``GradedVec``: it has no bias, no rounding shift, no 24-bit clip, fires every step
and cannot align inputs that arrive at different steps (residual paths), so it fits almost no
population of a compiled transformer; hosting all of them in one process also keeps the number of
Lava (OS) processes small.
"""
from __future__ import annotations

from icl_compiler.backends.lava.base import BankProcess


class GradedNeurons(BankProcess):
    max_ports = 32
