"""Build the Lava process network of a :class:`plan.Plan` and run it under a deadline.

Imports Lava at module level: import this module only through ``backends.lava`` (which checks
that Lava can be imported and says why not).
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import numpy as np
from lava.magma.core.learning.constants import GradedSpikeCfg
from lava.magma.core.run_conditions import RunSteps
from lava.magma.core.run_configs import Loihi2SimCfg
from lava.proc.dense.process import Dense, LearningDense
from lava.proc.io.sink import RingBuffer as Sink
from lava.proc.io.source import RingBuffer as Source
from lava.utils.weightutils import SignMode

from ...semantics import fixed
from .plan import Plan
from .primitives import k_rule, v_rule
from . import lifecycle
from .procs.core_neuron.process import CoreNeurons
from .procs.embedded_op.process import EmbeddedOps
from .procs.graded_neuron.process import GradedNeurons
from .procs.kq_neuron.process import KQNeuron
from .procs.plastic_float.process import FloatPlasticDense
from .procs.slot_neuron.process import SlotNeuron
from .procs.stream_source.process import StreamSource
from .procs.value_neuron.process import ValueNeuron


class LavaTimeoutError(TimeoutError):
    """A Lava run exceeded its time limit (the network was killed and cleaned up)."""


class LavaRunError(RuntimeError):
    """A Lava process model failed (the message holds its traceback)."""


@dataclass
class Network:
    plan: Plan
    procs: dict = field(default_factory=dict)  # plan process name -> Lava process
    dense: list = field(default_factory=list)
    sink: object = None
    steps: int = 0
    tag: str = "fixed_pt"
    guard: lifecycle.Guard | None = None  # its OS processes die with ours (compile..shutdown)

    @property
    def anchor(self):
        """A process of the network to call run/stop on (all share one runtime)."""
        return self.procs["source"]

    @property
    def runtime(self):
        return self.anchor.runtime

    def lava_processes(self) -> int:
        return len(self.procs) + len(self.dense) + (self.sink is not None)


def source_array(data: np.ndarray, fixed_mode: bool) -> np.ndarray:
    """The source RingBuffer's data: int32 payloads in fixed point, floats otherwise."""
    return fixed.wrap32(data).astype(np.int32) if fixed_mode else np.asarray(data, float)


def build(plan: Plan, source_data: np.ndarray | None, buffer: int,
          stream: bool = False) -> Network:
    """Create and connect the Lava processes (not compiled yet).  ``stream``: the source is a
    :class:`StreamSource` the host feeds one vector per step (``stream.py``) instead of a
    ``RingBuffer`` playing ``source_data``."""
    fixed_mode = plan.fixed
    net = Network(plan, tag="fixed_pt" if fixed_mode else "floating_pt")
    dt = np.int32 if fixed_mode else np.float64
    P = net.procs
    if stream:
        P["source"] = StreamSource(shape=(plan.procs["source"].size,), buffer_size=buffer + 1)
        P["source"].s_out = P["source"].out_port
    else:
        P["source"] = Source(data=source_array(source_data, fixed_mode))
    for name, spec in plan.procs.items():
        if spec.kind == "source":
            continue
        if spec.kind == "graded":
            P[name] = GradedNeurons(bank=spec.bank, name=name)
        elif spec.kind == "core":
            P[name] = CoreNeurons(bank=spec.bank, heads=spec.params["heads"], name=name)
        elif spec.kind == "embedded":
            P[name] = EmbeddedOps(bank=spec.bank, name=name)
        elif spec.kind == "kq":
            P[name] = KQNeuron(bank=spec.bank, heads=spec.params["heads"], name=name)
        elif spec.kind == "slots":
            P[name] = SlotNeuron(heads=spec.params["heads"], name=name)
        elif spec.kind == "value":
            P[name] = ValueNeuron(heads=spec.params["heads"], bank=spec.bank, name=name)
        elif spec.kind in ("k_syn", "v_syn"):
            shape = spec.params["shape"]
            if not fixed_mode:
                P[name] = FloatPlasticDense(shape=shape, rule=spec.kind[0], name=name)
            elif spec.kind == "k_syn":
                P[name] = LearningDense(weights=np.zeros(shape, dt),
                                        weight_exp=spec.params["weight_exp"],
                                        num_message_bits=24, learning_rule=k_rule(),
                                        graded_spike_cfg=GradedSpikeCfg.OVERWRITE, name=name)
            else:
                P[name] = LearningDense(weights=np.zeros(shape, dt),
                                        weight_exp=spec.params["weight_exp"],
                                        num_message_bits=24, learning_rule=v_rule(), name=name)
        else:
            raise ValueError(f"unknown process kind {spec.kind!r}")
    for d in plan.dense:
        if fixed_mode:
            kw = fixed.to_lava_dense_params(d.weights, d.exp)
            kw["sign_mode"] = SignMode[kw["sign_mode"]]
        else:
            kw = {"weights": d.weights.astype(float), "num_message_bits": 24}
        dp = Dense(name=d.name, **kw)
        P[d.pre].s_out.connect(dp.s_in)
        dp.a_out.connect(getattr(P[d.post], f"in{d.port}"))
        net.dense.append(dp)
    for c in plan.direct:
        getattr(P[c.pre], c.pre_port).connect(getattr(P[c.post], f"in{c.port}"))
    for hd in plan.heads:
        n, i = hd["name"], hd["index"]
        kq, slots, val = P[hd["kq"]], P[hd["slots"]], P[hd["value"]]
        K, V = P[f"{n}.K"], P[f"{n}.V"]
        getattr(kq, f"kq{i}").connect(K.s_in)
        K.a_out.connect(getattr(slots, f"{hd['k_in']}{i}"))
        getattr(slots, f"bap{i}").connect(K.s_in_bap)
        getattr(slots, f"s{i}").connect(V.s_in)
        V.a_out.connect(getattr(val, f"{hd['v_in']}{i}"))
        for y in ("y1", "y2", "y3"):
            getattr(val, f"{y}_{i}").connect(getattr(V, f"s_in_{y}"))
    proc, r0, r1 = plan.output
    net.sink = Sink(shape=(r1 - r0,), buffer=buffer)
    P[proc].y_out.connect(net.sink.a_in)
    return net


def compile_network(net: Network) -> None:
    net.guard = lifecycle.Guard()
    net.guard.start()
    with net.guard.forking():  # the actors Lava forks here die with this process
        net.anchor.create_runtime(run_cfg=Loihi2SimCfg(select_tag=net.tag))


# -- running under a deadline -------------------------------------------------------------------

POLL_S = 0.002


def _actor_failures(runtime) -> list[str]:
    out = []
    for a in runtime._messaging_infrastructure.actors:
        try:
            exc = a.exception
        except Exception:  # noqa: BLE001 - a closed pipe: the actor is gone
            exc = None
        if exc:
            out.append(exc[1] if isinstance(exc, tuple) else str(exc))
    return out


def run_steps(net: Network, steps: int, deadline: float, timeout: float) -> None:
    """Run ``steps`` more steps; raise LavaTimeoutError past ``deadline`` (time.monotonic())."""
    rt = net.runtime
    net.anchor.run(condition=RunSteps(num_steps=steps, blocking=False))
    ports = list(rt.service_to_runtime)
    while not all(p.probe() for p in ports):
        fails = _actor_failures(rt)
        if fails:
            raise LavaRunError("a Lava process model failed:\n" + "\n".join(fails))
        if time.monotonic() > deadline:
            raise LavaTimeoutError(
                f"the Lava run exceeded its timeout of {timeout:g} s (after "
                f"{net.steps} completed steps, during a run of {steps} steps); the network "
                "was stopped and its processes killed")
        time.sleep(POLL_S)
    try:
        rt.wait()
    except RuntimeError as e:
        raise LavaRunError(f"Lava run failed: {e}\n" + "\n".join(_actor_failures(rt))) from e
    net.steps += steps


def shutdown(net: Network, graceful: bool) -> dict:
    """Stop the network (see ``_shutdown``), then let its lifecycle guard kill whatever is left,
    unlink its shared memory, restore the signal handlers and re-deliver a signal received
    meanwhile (KeyboardInterrupt for SIGINT, death for SIGTERM)."""
    try:
        return _shutdown(net, graceful)
    finally:
        if net.guard is not None:
            net.guard.close()


def _shutdown(net: Network, graceful: bool) -> dict:
    """Stop the network and release its OS processes and shared memory, whatever state it is in.

    graceful: the last run completed, so Lava's own ``stop()`` is used; otherwise (timeout,
    error, interrupt) every actor process of this runtime is killed by its pid first.  Returns
    what was released (for tests: ``shm`` names, ``pids``).
    """
    try:
        rt = net.anchor.runtime
    except Exception:  # noqa: BLE001
        rt = None
    if rt is None or rt._messaging_infrastructure is None:
        return {"shm": [], "pids": []}
    infra = rt._messaging_infrastructure
    smm = getattr(infra, "smm", None)
    shm = [h.name for h in getattr(smm, "_shared_memory_handles", [])] if smm else []
    pids = [a.pid for a in infra.actors]
    if graceful and not _actor_failures(rt):
        try:
            net.anchor.stop()
            return {"shm": shm, "pids": pids}
        except BaseException:  # noqa: BLE001 - a signal too: fall through to the forced path
            pass
    for a in infra.actors:
        try:
            if a.is_alive():
                os.kill(a.pid, 9)
        except (OSError, ValueError):
            pass
    for a in infra.actors:
        try:
            a.join()
        except Exception:  # noqa: BLE001
            pass
    rt._is_running = False
    rt._is_started = False
    try:
        smm.shutdown() if smm else None
    except Exception:  # noqa: BLE001
        pass
    try:
        rt._watchdog_manager.stop()
    except Exception:  # noqa: BLE001
        pass
    return {"shm": shm, "pids": pids}
