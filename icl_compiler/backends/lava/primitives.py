"""Small Lava 0.10 networks for the integer primitives of ``semantics.fixed`` (bit-exact twins).

* ``run_dense_chain``: RingBuffer source → [Dense → GradedVec | GradedReluVec] × L → RingBuffer sink.
* ``run_head``: one plastic attention head (KV-slot lowering, DESIGN §4) streaming a token sequence:

      kq source ─▶ K LearningDense (2d → T_max, Loihi2F) ─▶ SlotNeuron ─▶ V LearningDense ─▶ ValueNeuron ─▶ sink
                         ▲ s_in_bap ◀──────────────────────── bap           (T_max → d_v, Loihi3F)  │
                                                                              ▲ s_in_y1..3 ◀────────┘
      v source ─▶ ValueNeuron.vin0

  (the slot and value neurons host one head here: ports ``a0``/``s0``/``bap0`` and
  ``a0``/``vin0``/``y*_0``; a compiled program's network is ``backends.lava.plan``).

  7 Lava processes (4 for the head itself: 2 LearningDense + 2 custom neurons; 3 for I/O).
  ``HEAD_STEPS_PER_TOKEN = 2``: step A_t = t0 + 2t writes k_t (source sends ``k_payload(k_t)``, the
  slot neuron marks slot t with a bAP), step B_t = A_t + 1 reads with ``q_payload(q_t)`` and writes
  v_t (one-hot slot spike + third factors).  The scores of q_t reach the slots at A_{t+1}, the slot
  outputs reach the V synapses at A_{t+1}, and the head output of token t leaves the value neurons
  at B_{t+1}: ``HEAD_LATENCY = 3`` steps after A_t.  A sequence of T tokens needs 2T + 2 steps.

Always ``Loihi2SimCfg(select_tag="fixed_pt")``.  ``run_head`` refuses ``floating_pt``: Lava 0.10's
floating-point learning applier cannot evaluate ``x0`` as a factor (``"y0 * x0 * x1"`` raises
"Unknown Factor in LearningRuleFloatApplier" inside the model process, and the run then hangs).  The
custom neurons' floating_pt models work with the float V LearningDense (see ``run_value_stage``).
Every learning rule object is created fresh per synapse group (LearningDense mutates it).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...semantics import fixed
from ...semantics.timing import HEAD_LATENCY
from ...semantics.timing import STEPS_PER_TOKEN as HEAD_STEPS_PER_TOKEN

HEAD_PROCESSES = 4  # K LearningDense, SlotNeuron, V LearningDense, ValueNeuron
HEAD_IO_PROCESSES = 3  # kq source, v source, output sink (run_head only)
RNG_SEED = 0


def _lava():
    """Import Lava lazily (the package must import without it)."""
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg

    return RunSteps, Loihi2SimCfg


def dense_process(w_mant, exp: int, name: str | None = None):
    """A stock ``Dense`` with the exact parameters of ``fixed.to_lava_dense_params``."""
    from lava.proc.dense.process import Dense
    from lava.utils.weightutils import SignMode

    p = fixed.to_lava_dense_params(w_mant, exp)
    p["sign_mode"] = SignMode[p["sign_mode"]]
    return Dense(name=name, **p)


def graded_process(size: int, model: str):
    from lava.proc.graded.process import GradedReluVec, GradedVec

    if model == "graded":
        return GradedVec(shape=(size,), vth=0)
    if model == "graded_relu":
        return GradedReluVec(shape=(size,), vth=0)
    raise ValueError(f"unknown graded neuron model {model!r}")


def k_rule():
    """Fresh two-factor K rule (never share: LearningDense mutates it)."""
    from lava.magma.core.learning.learning_rule import Loihi2FLearningRule

    return Loihi2FLearningRule(dw=fixed.K_DW, x1_impulse=0, x1_tau=fixed.TAU_NO_DECAY,
                               t_epoch=1, rng_seed=RNG_SEED)


def v_rule():
    """Fresh three-factor V rule; the y taus (hard-wired to 65535 by Lava) are set to no decay."""
    from lava.magma.core.learning.learning_rule import Loihi3FLearningRule

    rule = Loihi3FLearningRule(dw=fixed.V_DW, t_epoch=1, rng_seed=RNG_SEED)
    rule.y1_tau = fixed.TAU_NO_DECAY
    rule.y2_tau = fixed.TAU_NO_DECAY
    rule.y3_tau = fixed.TAU_NO_DECAY
    return rule


def _run(proc, steps: int, tag: str, fetch):
    RunSteps, Loihi2SimCfg = _lava()
    try:
        proc.run(condition=RunSteps(num_steps=steps), run_cfg=Loihi2SimCfg(select_tag=tag))
        return fetch()
    finally:
        proc.stop()


# -- (a) Dense chain --------------------------------------------------------------------------------

def run_dense_chain(layers, x, tag: str = "fixed_pt") -> np.ndarray:
    """Stream vectors x [N, in] through L layers of (w_mant [out, in], exp, neuron model).

    One vector per step; layer l's Dense adds one step of delay, so vector i leaves the last neuron
    at step i + 1 + L.  Returns [N, out_last] int64 (the last neurons' graded spikes).
    """
    from lava.proc.io.sink import RingBuffer as Sink
    from lava.proc.io.source import RingBuffer as Source

    x = np.asarray(x, np.int64)
    n, L = x.shape[0], len(layers)
    steps = n + L
    data = np.zeros((x.shape[1], steps), np.int64)
    data[:, :n] = x.T
    src = Source(data=fixed.wrap32(data).astype(np.int32))
    prev = src.s_out
    for w, e, model in layers:
        d = dense_process(np.asarray(w), e)
        nrn = graded_process(np.shape(w)[0], model)
        prev.connect(d.s_in)
        d.a_out.connect(nrn.a_in)
        prev = nrn.s_out
    sink = Sink(shape=(np.shape(layers[-1][0])[0],), buffer=steps)
    prev.connect(sink.a_in)
    out = _run(src, steps, tag, lambda: sink.data.get())
    return np.rint(out.T[L:]).astype(np.int64)


def dense_chain_reference(layers, x) -> np.ndarray:
    """``fixed`` twin of ``run_dense_chain``."""
    s = np.asarray(x, np.int64)
    for w, e, model in layers:
        s = (fixed.graded if model == "graded" else fixed.graded_relu)(fixed.dense(w, e, s))
    return s


# -- (b) one plastic head -----------------------------------------------------------------------------

@dataclass
class HeadRun:
    outputs: np.ndarray  # [T, d_v] head output per token (value neuron spikes)
    K: np.ndarray  # [T_max, 2d] final K weights (sign split)
    V: np.ndarray  # [d_v, T_max] final V weights
    steps: int
    processes: int


def head_schedule(ks, qs, vs, t_max: int):
    """Per-step source data of ``run_head``: kq [2d, S] and v [d_v, S] payloads, S = 2T + 2 steps."""
    ks, qs, vs = (np.asarray(a, np.int64) for a in (ks, qs, vs))
    T, d = ks.shape
    if T > t_max:
        raise ValueError(f"{T} tokens exceed the head's capacity T_max = {t_max}")
    steps = HEAD_STEPS_PER_TOKEN * T + 2
    kq = np.zeros((2 * d, steps), np.int64)
    v = np.zeros((vs.shape[1], steps), np.int64)
    kq[:, 0 : 2 * T : 2] = fixed.k_payload(ks).T  # step A_t (index 2t)
    kq[:, 1 : 2 * T : 2] = fixed.q_payload(qs).T  # step B_t
    v[:, 1 : 2 * T : 2] = vs.T
    return kq, v, steps


def run_head(ks, qs, vs, t_max: int, f: str = "relu", r: int = 0, r2: int = 0,
             k_exp: int = 0, v_exp: int = 0) -> HeadRun:
    """Stream one sequence (ks, qs [T, d], vs [T, d_v] ints) through one plastic head in Lava.

    The numpy twin is ``fixed.head_sequence``; ``k_exp`` / ``v_exp`` are the weight_exp of the K / V
    LearningDense, ``f, r, r2`` the slot neuron's parameters.
    """
    from lava.magma.core.learning.constants import GradedSpikeCfg
    from lava.proc.dense.process import LearningDense
    from lava.proc.io.sink import RingBuffer as Sink
    from lava.proc.io.source import RingBuffer as Source

    from .procs.slot_neuron.process import SlotNeuron
    from .procs.value_neuron.process import ValueNeuron

    ks, qs, vs = (np.asarray(a, np.int64) for a in (ks, qs, vs))
    T, d = ks.shape
    dv = vs.shape[1]
    kq, vdata, steps = head_schedule(ks, qs, vs, t_max)

    kq_src = Source(data=fixed.wrap32(kq).astype(np.int32))
    v_src = Source(data=fixed.wrap32(vdata).astype(np.int32))
    k_syn = LearningDense(weights=np.zeros((t_max, 2 * d), np.int32), weight_exp=int(k_exp),
                          num_message_bits=fixed.PAYLOAD_BITS, learning_rule=k_rule(),
                          graded_spike_cfg=GradedSpikeCfg.OVERWRITE, name="K")
    slots = SlotNeuron(heads=[{"size": t_max, "f": f, "r": r, "r2": r2}], name="slots")
    v_syn = LearningDense(weights=np.zeros((dv, t_max), np.int32), weight_exp=int(v_exp),
                          num_message_bits=fixed.PAYLOAD_BITS, learning_rule=v_rule(), name="V")
    vals = ValueNeuron(heads=[{"size": dv, "out": (0, dv)}], name="values")
    sink = Sink(shape=(dv,), buffer=steps)

    kq_src.s_out.connect(k_syn.s_in)
    k_syn.a_out.connect(slots.a0)
    slots.bap0.connect(k_syn.s_in_bap)
    _connect_value_stage(slots, v_syn, vals, v_src, sink)

    def fetch():
        return sink.data.get(), k_syn.weights.get(), v_syn.weights.get()

    out, K, V = _run(kq_src, steps, "fixed_pt", fetch)
    out, K, V = (np.rint(a).astype(np.int64) for a in (out, K, V))  # sink data is float64
    outputs = out.T[HEAD_LATENCY : HEAD_LATENCY + HEAD_STEPS_PER_TOKEN * T : 2]
    return HeadRun(outputs, K, V, steps, HEAD_PROCESSES + HEAD_IO_PROCESSES)


def _connect_value_stage(slots, v_syn, vals, v_src, sink) -> None:
    """Slots → V LearningDense → value neurons (which drive the third factors y1..y3) → sink."""
    slots.s0.connect(v_syn.s_in)
    v_syn.a_out.connect(vals.a0)
    v_src.s_out.connect(vals.vin0)
    vals.y1_0.connect(v_syn.s_in_y1)
    vals.y2_0.connect(v_syn.s_in_y2)
    vals.y3_0.connect(v_syn.s_in_y3)
    vals.s_out.connect(sink.a_in)


def run_value_stage(scores, vs, t_max: int, f: str = "relu", tag: str = "fixed_pt", **slot_kw):
    """The head without its K synapses (scores source → SlotNeuron → V LearningDense → ValueNeuron).

    ``scores[t]`` [T, T_max] is what the slots receive at A_{t+1}.  Used to smoke-test the custom
    neurons' floating_pt models; returns (outputs [T, d_v], V [d_v, T_max]) as float64.
    """
    from lava.proc.dense.process import LearningDense
    from lava.proc.io.sink import RingBuffer as Sink
    from lava.proc.io.source import RingBuffer as Source

    from .procs.slot_neuron.process import SlotNeuron
    from .procs.value_neuron.process import ValueNeuron

    scores, vs = np.asarray(scores), np.asarray(vs)
    T, dv = vs.shape
    steps = HEAD_STEPS_PER_TOKEN * T + 2
    dt = np.int32 if tag == "fixed_pt" else np.float64
    sdata = np.zeros((t_max, steps), dt)
    sdata[:, 2 : 2 * T + 2 : 2] = scores.T  # step A_{t+1}
    vdata = np.zeros((dv, steps), dt)
    vdata[:, 1 : 2 * T : 2] = vs.T
    s_src, v_src = Source(data=sdata), Source(data=vdata)
    slots = SlotNeuron(heads=[{"size": t_max, "f": f, **slot_kw}])
    v_syn = LearningDense(weights=np.zeros((dv, t_max), dt), num_message_bits=fixed.PAYLOAD_BITS,
                          learning_rule=v_rule())
    vals = ValueNeuron(heads=[{"size": dv, "out": (0, dv)}], fixed=tag == "fixed_pt")
    sink = Sink(shape=(dv,), buffer=steps)
    s_src.s_out.connect(slots.a0)
    _connect_value_stage(slots, v_syn, vals, v_src, sink)
    out, V = _run(s_src, steps, tag, lambda: (sink.data.get(), v_syn.weights.get()))
    return (np.asarray(out.T)[HEAD_LATENCY : HEAD_LATENCY + HEAD_STEPS_PER_TOKEN * T : 2],
            np.asarray(V))
