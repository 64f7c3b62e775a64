"""The neuron arithmetic of the Lava backend's custom processes, in plain NumPy (no Lava import).

A custom neuron process of the Lava network (``procs/graded_neuron``, ``procs/embedded_op``,
``procs/kq_neuron``, ``procs/value_neuron``) hosts one or more *units*; a unit is one population
of the neuromorphic graph.  A :class:`Bank` holds a process's units and its input *ports*:

* port i receives, every step, one vector: the output of one ``Dense`` (whose rows are the rows
  of one or more synapse groups, each group in rows of its own, so Lava's per-row floor/int32
  wrap is the emulator's per-group ``fixed.dense``) or of a direct connection.  With
  ``exp_in="neuron"`` (see ``plan.py``) the Dense delivers the unshifted int32 sums and the
  contribution carries the group's shift ``e − 1``, applied here exactly as Lava's Dense would
  (``fixed.shift``);
* every port keeps a short history (a ring buffer: the *delay lines*).  A unit's operand is the
  sum of its contributions ``(port, rows, delay)``, each read ``delay`` steps after it arrived, so
  inputs that travelled paths of different depths (residual connections) are added for the same
  token (see ``semantics/timing.py``);
* a unit fires once per token, at its step ``τ`` (sequence-local step ``n`` with
  ``n − τ ≥ 0``, ``(n − τ) % S == 0`` and token ``(n − τ) // S < T``); its rows of the process's
  output are 0 in every other step.

The value a unit computes is the reference interpreter's, by calling the neuron models of the
semantics layer (``semantics.neurons.neuron``, ``neurons.product``, ``neurons.divide``, ``fixed.k_payload`` …) on the
integrated current, so the Lava network and the NumPy backend share one definition of every
neuron model (docs/semantics.md).
"""
from __future__ import annotations

import numpy as np

from ...semantics import fixed, neurons


MAX_HEADS = 16  # heads per KQNeuron / SlotNeuron / ValueNeuron process (numbered ports)


class Bank:
    """Units + delay lines of one custom process (see the module docstring).

    ``spec`` (built by ``plan.py``): ``fixed`` (bool), ``S``, ``T``, ``L`` (steps per token,
    tokens per sequence, steps per sequence; ``L = 0`` means one unbounded sequence), ``ports``
    (list of port sizes), ``units`` (list of unit dicts: ``name, kind, size, tau, out`` (slice
    of the output vector or None), ``pop`` (the Population: model, bias, attrs, scale),
    ``operands`` {name: [(port, r0, r1, delay[, shift])]} and kind-specific entries).
    """

    def __init__(self, spec: dict):
        self.spec = spec
        self.fixed = bool(spec["fixed"])
        self.dtype = np.int64 if self.fixed else np.float64
        self.S, self.T, self.L = int(spec["S"]), spec["T"], int(spec.get("L") or 0)
        depth = [0] * len(spec["ports"])
        for u in spec["units"]:
            for contribs in u["operands"].values():
                for p, _, _, d, *_ in contribs:
                    if d < 0:
                        raise ValueError(f"unit {u['name']}: negative delay {d} on port {p}")
                    depth[p] = max(depth[p], d)
        self.hist = [np.zeros((d + 1, n), self.dtype) for d, n in zip(depth, spec["ports"])]
        self.out = np.zeros(spec.get("out_size", 0), self.dtype)

    # -- time -----------------------------------------------------------------------------------
    def local_step(self, time_step: int) -> int:
        n = int(time_step) - 1
        return n % self.L if self.L else n

    def token(self, unit: dict, time_step: int) -> int | None:
        """The token this unit fires for at ``time_step``, or None."""
        m = self.local_step(time_step) - unit["tau"]
        if m < 0 or m % self.S:
            return None
        t = m // self.S
        if self.T is not None and t >= self.T:
            return None
        return t

    # -- inputs ---------------------------------------------------------------------------------
    def push(self, time_step: int, inputs) -> None:
        for h, x in zip(self.hist, inputs):
            h[int(time_step) % h.shape[0]] = x

    def operand(self, unit: dict, name: str, time_step: int) -> np.ndarray:
        u0 = unit["operands"].get(name, [])
        size = unit["sizes"][name] if "sizes" in unit else unit["size"]
        acc = np.zeros(size, self.dtype)
        for p, r0, r1, d, *sh in u0:
            h = self.hist[p]
            v = h[(int(time_step) - d) % h.shape[0], r0:r1]
            if sh and sh[0] is not None:  # the group's exponent, applied on the dendrite
                v = fixed.shift(v, sh[0])
            acc += v
        return acc

    # -- units ----------------------------------------------------------------------------------
    def current(self, unit: dict, time_step: int) -> np.ndarray:
        cur = self.operand(unit, "cur", time_step)
        bias = unit["pop"].bias
        if bias is not None:
            cur = cur + np.asarray(bias).astype(self.dtype)
        return cur

    def compute(self, unit: dict, time_step: int) -> np.ndarray:
        """The unit's output for the token it fires for (the emulator's arithmetic)."""
        kind = unit["kind"]
        pop = unit["pop"]
        if kind == "product":
            return neurons.product(pop, self.current(unit, time_step)[None],
                                   self.operand(unit, "b", time_step)[None], self.fixed)[0][0]
        if kind in ("graded", "graded_relu", "output", "activation", "k", "q", "v", "norm"):
            val = neurons.neuron(pop, self.current(unit, time_step)[None], self.fixed)[0][0]
            if kind == "k" and self.fixed:
                return fixed.k_payload(val, unit.get("residual", False))
            if kind == "q" and self.fixed:
                return fixed.q_payload(val, unit.get("residual", False))
            return val
        if kind == "divide":
            p = unit["divide"]
            return neurons.divide(self.operand(unit, "acc", time_step),
                                  self.operand(unit, "a", time_step), self.fixed, p["eps"],
                                  p["s_v"], p["s_a"], p["scale"],
                                  p.get("norm", "rowsum"))[0]
        raise ValueError(f"unit {unit['name']}: unknown kind {kind!r}")

    def step(self, time_step: int, inputs) -> dict[str, np.ndarray]:
        """Push this step's inputs; return {unit name: output} for the units that fire now."""
        self.push(time_step, inputs)
        fired = {}
        for u in self.spec["units"]:
            if self.token(u, time_step) is not None:
                fired[u["name"]] = self.compute(u, time_step)
        return fired

    def output(self, fired: dict[str, np.ndarray]) -> np.ndarray:
        """The process's output vector: fired units in their rows, zeros elsewhere."""
        out = np.zeros_like(self.out)
        for u in self.spec["units"]:
            if u["out"] is not None and u["name"] in fired:
                out[u["out"][0]:u["out"][1]] = fired[u["name"]]
        return out


# -- the plastic heads' neurons (SlotNeuron, ValueNeuron and the merged CoreNeurons) -----------

def head_step(h: dict, time_step: int, origin: int = 0) -> int:
    """``m = n − anchor`` of a head at ``time_step``: n is the step within the sequence
    (``(time_step − 1 − origin) mod seq_len``, or unbounded without ``seq_len``)."""
    n = int(time_step) - 1 - int(origin)
    if h["seq_len"]:
        n %= h["seq_len"]
    return n - h["anchor"]


def slot_step(h: dict, m: int, a: np.ndarray, f, dtype) -> tuple[np.ndarray, np.ndarray]:
    """One step of a head's slot neurons: (slot outputs s, bAPs).  ``m`` = step − anchor,
    ``period`` = steps per token P (2 in a pipelined batch; a stream spaces its tokens by more),
    ``f(h, a)`` the slot function of the scores ``a`` from the K synapses.

    * m = P·tok (phase A, K write of token tok): bAP on slot tok;
    * m = P·tok + 1 (phase B, V write): s = one-hot(tok)·onehot, the gated garbage scores dropped;
    * m = P·j + 2: s = f(scores of token j's query) (for P = 2 the next token's phase A);
    * m = −1 with ``clear``: bAP and one-hot on every slot (clears K and V).
    """
    size, P = h["size"], h.get("period", 2)
    limit = size if h["tokens"] is None else min(size, h["tokens"])
    s = np.zeros(size, dtype)
    bap = np.zeros(size, np.int32)
    if m == -1 and h["clear"]:
        bap[:] = 1
        s[:] = h["onehot"]
        return s, bap
    if m < 0:
        return s, bap
    tok, phase = divmod(m, P)
    if phase == 0 and tok < limit:
        bap[tok] = 1
    j, r = divmod(m - 2, P)
    if r == 0 and j >= 0 and (h["tokens"] is None or j < h["tokens"]):
        s = np.asarray(f(h, a), dtype)
    if phase == 1 and tok < limit:
        s = np.zeros(size, dtype)
        s[tok] = h["onehot"]
    return s, bap


def value_step(h: dict, m: int, a: np.ndarray, v, c2, c3, y1_of, out_of, dtype):
    """One step of a head's value neurons: (y1, y2, y3, head output or None).

    * m = P·tok + 1 (phase B, ``tok < tokens``): third factors y1 = ``y1_of(v)``, y2 = c2,
      y3 = c3 (the V write of token tok; v = the head's v population this step);
    * m = P·j + 3 (``j < tokens``): the head output of token j, ``out_of(a)`` of the V synapses'
      sums ``a`` (for P = 2 the next token's phase B);
    * m = −1 with ``clear``: y1 = 0 with the write enable y2, y3 (clears V).
    """
    size, P, T = h["size"], h.get("period", 2), h["tokens"]
    zero = np.zeros(size, dtype)
    y1 = y2 = y3 = zero
    out = None
    if m == -1 and h["clear"]:
        y2, y3 = np.full(size, c2, dtype), np.full(size, c3, dtype)
    elif m >= 1:
        tok, phase = divmod(m, P)
        if phase == 1 and (T is None or tok < T):
            y1 = np.asarray(y1_of(v), dtype)
            y2, y3 = np.full(size, c2, dtype), np.full(size, c3, dtype)
        j, r = divmod(m - 3, P)
        if r == 0 and j >= 0 and (T is None or j < T):
            out = out_of(a)
    return y1, y2, y3, out
