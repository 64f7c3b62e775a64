"""The semantics layer: what a neuromorphic program computes, below both passes and backends.

* :mod:`.fixed` — the exact integer primitives of Loihi 2 fixed point (Lava 0.10 ``fixed_pt``)
  and the encodings derived from the hardware widths (K/V ranges, the 16-bit split, the
  learning rules' strings);
* :mod:`.neurons` — the neuron models with their typed parameters (graded, graded ReLU, norm,
  slot f, K/V write and read, value combine, divide, input payloads, dequantisation);
* :mod:`.interpreter` — the reference interpreter of the neuromorphic IR (token by token,
  batched over sequences) and its :class:`~.interpreter.RunStats`;
* :mod:`.timing` — the token schedule (the step at which every population fires).

The contract they implement is ``docs/semantics.md``.  This package imports only ``ir/`` and
``targets/``: passes (the quantiser calibrates with the interpreter, the scheduler uses the
timing) and backends (the NumPy backend runs the interpreter, the Lava backend's neurons call
these functions) both import it and never each other.
"""
