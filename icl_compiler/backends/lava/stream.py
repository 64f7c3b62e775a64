"""A streaming session on Lava: one network kept running across steps (``runtime.session``).

``Program.run`` pipelines a batch: token t enters at step 2t and its output leaves
``pipeline_depth`` steps later, long after the next tokens entered.  A session must return y_t
before it sees x_{t+1}, so its network spaces the tokens by ``P = pipeline_depth + 1`` steps
(``plan.build_plan(period=P)``): each :meth:`LavaStream.step` sends the token to the source, runs
P steps (the token reaches the output at the last one) and reads the output from the
sink's buffer.  The schedule is the batch one with a longer period — the same neuron code, the
same K/V write protocol (slot t written at the token's phase A, read at phase B) — so the outputs
equal the emulator's bit for bit in fixed point.  The token goes in through a stock-``Injector``
channel (``procs/stream_source``: one message per step instead of a Var set, which Lava does one
element at a time), the output is read from the sink's buffer.

The network is built, compiled and started once, at :func:`open_stream`; every later step pays
only its P Lava steps.  ``reset`` moves the neuron processes' time origin (their ``origin`` Var)
to the current step: the next step is token 0 of a new sequence, and the heads' clear step
(``units.slot_step``) wipes K and V on chip, as between the sequences of a batch.  ``close`` stops
the network (``network.shutdown``); between steps the user's signal handlers are in place (the
network's processes ignore SIGINT), during a step the network's guard handles them
(``lifecycle``), so an interrupt stops the network cleanly.

One network holds the K/V of one sequence: a session of batch B runs B networks side by side
(B × the processes); use the NumPy backend for large batches.
"""
from __future__ import annotations

import time

import numpy as np

from ...semantics.neurons import input_payload
from . import network as N
from .plan import DEFAULT_EXP_IN, DEFAULT_LAYOUT, build_plan

NEURON_KINDS = ("core", "graded", "embedded", "kq", "slots", "value")


class _Net:
    """One sequence's network."""

    def __init__(self, prog, plan, timeout: float):
        self.prog, self.plan, self.timeout = prog, plan, float(timeout)
        self.fixed = plan.fixed
        self.dtype = np.int32 if self.fixed else np.float64
        self.n_in = plan.procs["source"].size
        self.net = N.build(plan, None, buffer=plan.S, stream=True)
        # Lava sets Vars only on a started runtime: one idle step starts it, so the stream's
        # time begins after it (the neurons see step −1 there: nothing fires)
        self.origin = 1  # the Lava step count at which the current sequence started
        for name, sp in plan.procs.items():
            if sp.kind in NEURON_KINDS:
                self.net.procs[name].origin.init = np.array([self.origin])
        self.closed = False
        ok = False
        try:
            N.compile_network(self.net)
            self._feed(np.zeros(self.n_in), self.origin)
            N.run_steps(self.net, self.origin, time.monotonic() + self.timeout, self.timeout)
            self.net.guard.pause_signals()
            ok = True
        finally:
            if not ok:
                self.close(graceful=False)
        self.position = 0

    def _run(self, fn):
        g = self.net.guard
        g.resume_signals()
        ok = False
        try:
            out = fn()
            ok = True
            return out
        finally:
            if ok:
                g.pause_signals()
            else:
                self.close(graceful=False)

    def _feed(self, vec: np.ndarray, steps: int) -> None:
        """The source's vectors for the next ``steps`` steps: ``vec``, then zeros."""
        src = self.net.procs["source"]
        src.send(N.source_array(vec, self.fixed).astype(self.dtype))
        zero = np.zeros(self.n_in, self.dtype)
        for _ in range(steps - 1):
            src.send(zero)

    def step(self, x_t: np.ndarray) -> np.ndarray:
        plan, P = self.plan, self.plan.S
        vec = np.zeros(self.n_in, np.int64 if self.fixed else np.float64)
        for name, off, size in plan.inputs:
            vec[off:off + size] = input_payload(self.prog.ng.pop(name), x_t, self.position,
                                                self.fixed)[0]

        def go():
            self._feed(vec, P)  # token t enters at the first of its P steps
            deadline = time.monotonic() + self.timeout
            N.run_steps(self.net, P, deadline, self.timeout)
            return np.asarray(self.net.sink.data.get())

        sink = self._run(go)
        self.position += 1
        y = sink[:, (self.origin + plan.depth) % P]
        return np.rint(y).astype(np.int64) if self.fixed else np.array(y, np.float64)

    def reset(self) -> None:
        self.origin = self.net.steps
        procs = [self.net.procs[n] for n, sp in self.plan.procs.items()
                 if sp.kind in NEURON_KINDS]
        self._run(lambda: [p.origin.set(np.array([self.origin])) for p in procs])
        self.position = 0

    def weights(self) -> dict[str, np.ndarray]:
        out = {}

        def read():
            for hd in self.plan.heads:
                for syn, proc in ((hd["spec"].k_syn, f"{hd['name']}.K"),
                                  (hd["spec"].v_syn, f"{hd['name']}.V")):
                    w = self.net.procs[proc].weights.get()
                    out[syn] = np.rint(w).astype(np.int64) if self.fixed else np.array(w, float)

        self._run(read)
        return out

    def close(self, graceful: bool = True) -> None:
        if self.closed:
            return
        self.closed = True
        if self.net.guard is not None:
            self.net.guard.resume_signals()  # the guard restores the user's handlers on close
        N.shutdown(self.net, graceful=graceful)


class LavaStream:
    """``batch`` sequences, one network each, fed one token per :meth:`step`."""

    def __init__(self, prog, batch: int, *, timeout: float = 600.0, exp_in: str | None = None,
                 layout: str | None = None):
        ng = prog.ng
        from ...semantics.timing import timing

        depth = timing(ng)[0][ng.io.output_pop]
        self.plan = build_plan(ng, None, exp_in=exp_in or DEFAULT_EXP_IN,
                               layout=layout or DEFAULT_LAYOUT, period=depth + 1)
        self.nets: list[_Net] = []
        t0 = time.monotonic()
        try:
            for _ in range(int(batch)):
                self.nets.append(_Net(prog, self.plan, timeout))
        except BaseException:
            self.close()
            raise
        self.startup_seconds = time.monotonic() - t0
        self.position = 0

    @property
    def processes(self) -> int:
        return len(self.nets) * (self.plan.n_processes + 1)

    @property
    def steps(self) -> int:
        return sum(n.net.steps for n in self.nets)

    @property
    def starts(self) -> int:
        """Networks compiled and started so far (one per sequence, at open)."""
        return len(self.nets)

    def step(self, x_t: np.ndarray) -> np.ndarray:
        y = np.stack([n.step(x_t[b:b + 1]) for b, n in enumerate(self.nets)])
        self.position += 1
        return y

    def reset(self) -> None:
        for n in self.nets:
            n.reset()
        self.position = 0

    def state(self) -> dict[str, np.ndarray]:
        per = [n.weights() for n in self.nets]
        return {k: np.stack([w[k] for w in per]) for k in per[0]} if per else {}

    def close(self) -> None:
        for n in reversed(self.nets):
            n.close()


def open_stream(prog, batch: int = 1, **kw) -> LavaStream:
    return LavaStream(prog, batch, **kw)
