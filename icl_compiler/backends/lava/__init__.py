"""Lava backend: a compiled program as a Lava 0.10 process network on ``Loihi2SimCfg``.

``run_program(prog, x)`` builds the network of ``plan.py`` (static ``Dense`` synapses,
``LearningDense`` K/V synapses per head, custom neuron processes in ``procs/<name>/``), streams
the batch through it token by token and returns the raw outputs: integer payloads in fixed mode
(``select_tag="fixed_pt"``, bit-exact with the NumPy emulator), floats in float mode
(``select_tag="floating_pt"``; the K/V storage is then the custom ``FloatPlasticDense`` because
Lava's floating-point learning engine cannot evaluate the K rule).

Lava is imported lazily: the package (and ``backend="numpy"``) works without it; on a Python
where lava-nc 0.10 cannot be imported (it needs Python 3.10), ``run_program`` raises
:class:`LavaUnavailableError` (an ImportError) that says so.
"""
from __future__ import annotations

import math
import sys
import time

import numpy as np

from ...errors import OptionError

LAVA_PYTHON = (3, 10)


class LavaUnavailableError(ImportError):
    """Lava (lava-nc 0.10, Python 3.10) cannot be imported here."""


def _import_lava() -> None:
    """Import Lava's runtime.  Lava calls ``multiprocessing.set_start_method('fork')`` at import,
    which raises if anything (tqdm's lock, for one) already fixed the start method; on Linux
    that method is 'fork' anyway, so the call is forced here."""
    import multiprocessing as mp

    orig = mp.set_start_method
    if mp.get_start_method(allow_none=True) is not None:
        mp.set_start_method = lambda method, force=False: orig(method, force=True)
    try:
        import lava.magma.core.run_configs  # noqa: F401
        import lava.magma.runtime.message_infrastructure.multiprocessing  # noqa: F401
        import lava.proc.dense.process  # noqa: F401
    finally:
        mp.set_start_method = orig


def lava_unavailable_reason() -> str | None:
    """None if Lava can be used, else why not (one line)."""
    if sys.version_info[:2] != LAVA_PYTHON:
        try:
            _import_lava()
        except Exception as e:  # noqa: BLE001 - lava 0.10 fails with ValueError on 3.11
            return (f"the Lava backend needs lava-nc 0.10 on Python 3.10; this is Python "
                    f"{sys.version_info.major}.{sys.version_info.minor} and importing Lava "
                    f"failed ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})")
        return None
    try:
        _import_lava()
    except Exception as e:  # noqa: BLE001
        return (f"the Lava backend needs lava-nc 0.10 (Python 3.10): importing Lava failed "
                f"({type(e).__name__}: {e}); install it with `pip install lava-nc==0.10.0`")
    return None


def lava_available() -> bool:
    return lava_unavailable_reason() is None


def _require_lava() -> None:
    why = lava_unavailable_reason()
    if why is not None:
        raise LavaUnavailableError(why)


def __getattr__(name):  # LavaTimeoutError / LavaRunError live with the Lava imports
    if name in ("LavaTimeoutError", "LavaRunError"):
        _require_lava()
        from . import network

        return getattr(network, name)
    raise AttributeError(name)


def _source_data(prog, plan, x: np.ndarray, seqs: range) -> np.ndarray:
    """Input payloads of sequences ``seqs``, one column per Lava step ([n_in, len(seqs)·L])."""
    from ...semantics.neurons import input_payload

    T = x.shape[1]
    xs = x[list(seqs)]
    dtype = np.int64 if plan.fixed else np.float64
    data = np.zeros((plan.procs["source"].size, len(seqs) * plan.L), dtype)
    for t in range(T):
        for name, off, size in plan.inputs:
            pay = input_payload(prog.ng.pop(name), xs[:, t], t, plan.fixed)
            for j in range(len(xs)):
                data[off:off + size, j * plan.L + plan.S * t] = pay[j]
    return data


def run_program(prog, x, *, timeout: float = 600.0, fresh_network: bool = False,
                exp_in: str | None = None, layout: str | None = None, read_weights: bool = True):
    """Run a batch through the program's Lava network.

    Returns ``(y, extra)``: ``y`` [B, T, n_out] raw outputs (int64 payloads in fixed mode, float64
    in float mode — ``Program.dequantise`` converts them), and ``extra`` with the figures of the
    run: ``steps_per_token``, ``pipeline_depth``, ``steps_per_sequence``, ``steps`` (Lava steps
    run), ``processes`` (Lava processes = OS processes of the model; ``process_counts`` by
    kind; ``os_processes`` adds Lava's runtime service), ``weights`` ({K/V synapse name:
    [B, …] final weights of each sequence}, the layout of ``Program.last_state``), ``seconds``
    and ``ms_per_token`` / ``ms_per_step`` (stepping only).

    Each sequence starts with zero K/V weights: with one network for the whole batch (default),
    the step before each head's first write clears its K and V synapses on-chip (bAP / one-hot
    spike on every slot with the write enable); ``fresh_network=True`` builds, compiles and stops
    a new network per sequence instead (slower; for measurement).  ``timeout`` (seconds) bounds
    the whole call; past it the network is killed and :class:`LavaTimeoutError` (a TimeoutError)
    is raised.  Every exit path stops the network (no leaked processes or shared memory).
    ``read_weights=False`` skips reading the K/V weights after each sequence (``extra["weights"]``
    is then empty).  ``exp_in`` ("neuron", the default, or "dense") and ``layout`` ("merged",
    the default, or "separate") choose between bit-identical network layouts
    (``plan.build_plan``; "dense" + "separate" is the layout before issue 15, 30 processes on the
    few-shot model instead of 13).  ``extra["sink"]`` holds the raw sink buffers (the output population
    at every Lava step: it fires at steps ``pipeline_depth + steps_per_token·t`` of each
    sequence and nowhere else).
    """
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float, np.integer,
                                                              np.floating)) \
            or not math.isfinite(float(timeout)) or float(timeout) <= 0:
        raise OptionError(f"timeout must be a positive number of seconds, got {timeout!r}")
    _require_lava()
    from . import network as N
    from .plan import DEFAULT_EXP_IN, DEFAULT_LAYOUT, build_plan

    x = prog.check_input(x)
    ng = prog.ng
    B, T = x.shape[0], x.shape[1]
    t_start = time.monotonic()
    deadline = t_start + float(timeout)
    plan = build_plan(ng, T, exp_in=exp_in or DEFAULT_EXP_IN, layout=layout or DEFAULT_LAYOUT)
    out_rows = plan.output[2] - plan.output[1]
    fixed_mode = plan.fixed
    y = np.zeros((B, T, out_rows), np.int64 if fixed_mode else np.float64)
    weights: dict[str, list] = {}
    for hd in plan.heads:
        weights[hd["spec"].k_syn] = []
        weights[hd["spec"].v_syn] = []
    secs = {"build": 0.0, "compile": 0.0, "run": 0.0, "read": 0.0, "stop": 0.0}
    extra_run: dict = {}
    groups = [range(b, b + 1) for b in range(B)] if fresh_network else [range(B)]
    steps_total = 0
    released = []
    os_procs = 0
    for seqs in groups:
        t0 = time.monotonic()
        data = _source_data(prog, plan, x, seqs)
        net = N.build(plan, data, buffer=len(seqs) * plan.L)
        secs["build"] += time.monotonic() - t0
        ok = False
        try:
            t0 = time.monotonic()
            N.compile_network(net)
            secs["compile"] += time.monotonic() - t0
            os_procs = len(net.runtime._messaging_infrastructure.actors)
            if time.monotonic() > deadline:
                raise N.LavaTimeoutError(f"the Lava run exceeded its timeout of {timeout:g} s "
                                         "while compiling the network")
            for _ in seqs:
                t0 = time.monotonic()
                N.run_steps(net, plan.L, deadline, timeout)
                secs["run"] += time.monotonic() - t0
                t0 = time.monotonic()
                for hd in plan.heads if read_weights else ():
                    n = hd["name"]
                    for syn, proc in ((hd["spec"].k_syn, f"{n}.K"), (hd["spec"].v_syn, f"{n}.V")):
                        w = net.procs[proc].weights.get()
                        weights[syn].append(np.rint(w).astype(np.int64) if fixed_mode
                                            else np.array(w, np.float64))
                secs["read"] += time.monotonic() - t0
            t0 = time.monotonic()
            sink = np.asarray(net.sink.data.get())
            secs["read"] += time.monotonic() - t0
            for j, b in enumerate(seqs):
                cols = j * plan.L + plan.depth + plan.S * np.arange(T)
                blk = sink[:, cols].T
                y[b] = np.rint(blk).astype(np.int64) if fixed_mode else blk
            extra_run.setdefault("sink", []).append(sink)
            steps_total += net.steps
            ok = True
        finally:
            t0 = time.monotonic()
            released.append(N.shutdown(net, graceful=ok))
            secs["stop"] += time.monotonic() - t0
    n_tok = B * T
    extra = {
        "steps_per_token": plan.S,
        "pipeline_depth": plan.depth,
        "steps_per_sequence": plan.L,
        "steps": steps_total,
        "processes": plan.n_processes + 1,  # + the sink
        "process_counts": {**plan.counts(), "RingBuffer(sink)": 1},
        "os_processes": os_procs,
        "networks": len(groups),
        "weights": {k: np.stack(v) for k, v in weights.items() if v},
        "seconds": {k: round(v, 4) for k, v in secs.items()},
        "ms_per_token": 1000 * secs["run"] / n_tok,
        "ms_per_step": 1000 * secs["run"] / max(steps_total, 1),
        "sink": extra_run.get("sink", []),
        "released": released,
        "tau": plan.tau,
        "layout": plan.layout,
        "exp_in": plan.exp_in,
    }
    return y, extra


def open_stream(prog, batch: int = 1, **kw):
    """A streaming session's Lava side (``runtime.session``; see ``stream.py``): ``batch``
    networks started once, fed one token per sequence per ``step``.  Options: ``timeout`` (s per
    step), ``exp_in``, ``layout`` (as for :func:`run_program`)."""
    _require_lava()
    from .stream import open_stream as _open

    return _open(prog, batch, **kw)


__all__ = ["run_program", "open_stream", "lava_available", "lava_unavailable_reason", "LavaUnavailableError",
           "LavaTimeoutError", "LavaRunError"]
