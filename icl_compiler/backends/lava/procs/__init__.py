"""Custom Lava processes of the backend, one folder each holding nothing but process.py/models.py
(Lava imports every module of a process's folder while it looks up models):

* ``graded_neuron`` — GradedNeurons: static graded populations (bias, rounding shift, ReLU,
  24-bit clip, delay lines, fire once per token);
* ``embedded_op`` — EmbeddedOps: LayerNorm/RMSNorm and the attention row-sum divide (embedded core);
* ``kq_neuron`` — KQNeuron: the heads' k/q populations, sign-split payloads into the K synapses;
* ``slot_neuron`` — SlotNeuron: the heads' slot neurons (f, gating, bAPs, the K/V clear step);
* ``value_neuron`` — ValueNeuron: the heads' v populations (third factors) and outputs;
* ``plastic_float`` — FloatPlasticDense: float-mode K/V storage (Lava's floating-point learning
  engine cannot run the K rule).

The shared machinery (delay lines, neuron arithmetic) is in ``backends/lava/units.py`` and
``base.py``.
"""
