"""ValueNeuron: the value (output) neurons of up to ``MAX_HEADS`` plastic heads, and their v
populations.  Head i: ``a{i}`` ← its V synapses, ``y1_{i}``, ``y2_{i}``, ``y3_{i}`` → their
third-factor ports, ``vin{i}`` an optional direct v payload input; ``s_out`` carries every head's
output in the head's rows (``out``).

They drive the V write's third factors and emit the head output.  Per-head schedule
(``units.value_step``; P = ``period`` steps per token, 2 in a pipelined batch; ``n`` = step within
the sequence, counted from the ``origin`` Var, ``m = n − anchor``, token ``tok = m // P`` in phase
B, m = P·tok + 1; the output of token j leaves at m = P·j + 3, for P = 2 the next token's phase
B):

* phase B (m odd; V write of token tok, ``tok < tokens``): sends the post traces ``y1 = v_tok``,
  ``y2``, ``y3`` to the V LearningDense (three-factor rule ``x0·y1·y2 − x0·y3·w``; y3 is the write
  enable of the −w term).  v_tok is ``vin{i}`` (received this step) plus, if the bank hosts the
  head's v population (unit ``v{i}``), that unit's output: a graded neuron with the quantiser's
  rounding shift, integrated from its Dense inputs through delay lines and fired at this step
  (see ``procs/graded_neuron``).  In the same step it emits the head output of token tok − 1
  (``1 ≤ tok ≤ tokens``): ``a{i}`` = V·f(scores_{tok−1}) (computed by the V synapses in the
  previous A step) saturated to 24 bits in fixed point — or, with ``raw``, unsaturated: the
  accumulator for the embedded row-sum divide (``procs/embedded_op``).
* ``m = −1`` with ``clear`` (the reset before a sequence's first token): y1 = 0 with the write
  enable y2, y3, while the slot neuron spikes on every slot: V is cleared.
* all other steps: y1 = y2 = y3 = 0 and the head's output rows are 0 (``a{i}`` then holds the
  garbage read of the one-hot write spike).
* ``tokens = None``: one unbounded stream.

16-bit V (``residual``, fixed_pt): the V synapses have ``size = 2·d_v`` posts, high rows then
low rows; y1 = ``fixed.v_third_factor(v)`` = [hi, lo] of v = hi·2^7 + lo, and the output is
``fixed.value_combine(a)`` = high + (low >> 7) (``out`` spans d_v rows).

Defaults: fixed_pt y2 = 8, y3 = 32 (they cancel the learning engine's product shifts 3 and 5);
floating_pt y2 = y3 = 1.  ``heads``: dicts with ``size`` (d_v), ``out`` (rows in s_out) and
optionally ``anchor, tokens, seq_len, clear, raw, y2, y3``.
"""
from __future__ import annotations

from lava.magma.core.process.ports.ports import InPort, OutPort

from icl_compiler.backends.lava.base import BankProcess
from icl_compiler.backends.lava.units import MAX_HEADS

VALUE_DEFAULTS = {"anchor": 0, "tokens": None, "seq_len": 0, "clear": False, "raw": False,
                  "y2": None, "y3": None, "residual": False, "period": 2}


class ValueNeuron(BankProcess):
    max_ports = 8
    max_heads = MAX_HEADS

    def __init__(self, *, heads: list[dict], bank: dict | None = None, fixed: bool = True,
                 name: str | None = None) -> None:
        if not 1 <= len(heads) <= self.max_heads:
            raise ValueError(f"ValueNeuron hosts 1..{self.max_heads} heads, got {len(heads)}")
        hs = []
        for h in heads:
            h = {**VALUE_DEFAULTS, **h}
            if h["clear"] and h["anchor"] < 1:
                raise ValueError("the clear step needs anchor >= 1")
            hs.append(h)
        size = max(h["out"][1] for h in hs)
        if bank is None:
            bank = {"fixed": fixed, "S": 2, "T": None, "L": 0, "ports": [], "units": []}
        bank = dict(bank, out_size=size)
        super().__init__(bank=bank, heads=hs, name=name)
        for i in range(self.max_heads):
            shape = (hs[i]["size"],) if i < len(hs) else (1,)
            setattr(self, f"a{i}", InPort(shape=shape))
            if i < len(hs) and hs[i]["residual"]:
                if hs[i]["size"] % 2 or hs[i]["out"][1] - hs[i]["out"][0] != hs[i]["size"] // 2:
                    raise ValueError("a 16-bit V head has size 2·d_v and d_v output rows")
                setattr(self, f"vin{i}", InPort(shape=(hs[i]["size"] // 2,)))
            else:
                setattr(self, f"vin{i}", InPort(shape=shape))
            for y in ("y1", "y2", "y3"):
                setattr(self, f"{y}_{i}", OutPort(shape=shape))
