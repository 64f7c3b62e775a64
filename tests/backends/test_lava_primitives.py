"""Lava 0.10 fixed_pt vs the numpy integer primitives, bit for bit (small networks, ~10 s in all)."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("lava")

from icl_compiler.backends.lava import primitives as P
from icl_compiler.semantics import fixed

pytestmark = pytest.mark.lava


def _run_learning_dense(rule, W0, pre, ports, steps, **kw):
    """LearningDense fed by RingBuffer sources: pre [P, S] into s_in, ports {name: [N, S]}."""
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.dense.process import LearningDense
    from lava.proc.io.source import RingBuffer as Source

    ld = LearningDense(weights=W0.astype(np.int32), learning_rule=rule, num_message_bits=24, **kw)
    src = Source(data=fixed.wrap32(pre).astype(np.int32))
    src.s_out.connect(ld.s_in)
    for name, data in ports.items():
        s = Source(data=np.asarray(data, np.int32))
        s.s_out.connect(getattr(ld, name))
    try:
        ld.run(condition=RunSteps(num_steps=steps), run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
        return np.rint(ld.weights.get()).astype(np.int64)
    finally:
        ld.stop()


def test_dense_chain_bit_exact():
    rng = np.random.default_rng(0)
    w1 = rng.integers(-128, 128, (4, 5))
    w1[0, :2] = [-128, 127]
    w2 = -rng.integers(0, 129, (3, 4))  # all <= 0: Lava would pick INHIBITORY and clip -256
    w2[0, 0] = -128
    w3 = rng.integers(-128, 128, (2, 3))
    layers = [(w1, -3, "graded_relu"), (w2, 1, "graded"), (w3, -6, "graded")]
    x = rng.integers(-300, 300, (6, 5))
    x[0] = [-(2**13), 2**13, 7, -7, 1]
    x[1] = [2**22, 0, 0, 0, 0]  # int32 wrap inside the chain
    got = P.run_dense_chain(layers, x)
    want = P.dense_chain_reference(layers, x)
    assert np.abs(want).max() > 0
    np.testing.assert_array_equal(got, want)


def test_dense_int32_wrap_of_doubled_weights():
    x = np.array([[2**30], [2**30 - 1], [-(2**30)]])
    got = P.run_dense_chain([(np.array([[1]]), 0, "graded")], x)
    np.testing.assert_array_equal(got[:, 0], [-(2**30), 2**30 - 1, -(2**30)])
    np.testing.assert_array_equal(got, P.dense_chain_reference([(np.array([[1]]), 0, "graded")], x))


def _random_head(rng, T, d, dv, qmax):
    ks = rng.integers(-127, 128, (T, d))
    ks[0, :2] = [127, -127]
    ks[1, :2] = [-127, 0]
    ks[2, 0] = 200  # saturates to 127
    qs = rng.integers(-qmax, qmax + 1, (T, d))
    vs = rng.integers(-128, 128, (T, dv))
    vs[0, :2] = [-128, 127]
    vs[1, 0] = -129  # saturates to -128
    vs[3, 1] = 1000  # saturates to 127
    return ks, qs, vs


@pytest.mark.parametrize("qmax, cfg", [
    (127, {"f": "relu", "r": 2, "r2": 0, "k_exp": 0, "v_exp": -4}),
    (2**10, {"f": "relu2", "r": 1, "r2": 6, "k_exp": -2, "v_exp": -8}),
    (2**23, {"f": "identity", "r": 0, "r2": 0, "k_exp": 0, "v_exp": 0}),  # int32 wrap + 24-bit clip
])
def test_head_bit_exact(qmax, cfg):
    rng = np.random.default_rng(qmax)
    T, d, dv, t_max = 5, 4, 3, 6
    ks, qs, vs = _random_head(rng, T, d, dv, qmax)
    res = P.run_head(ks, qs, vs, t_max, **cfg)
    out, K, V, sat = fixed.head_sequence(ks[None], qs[None], vs[None], t_max, cfg["f"], cfg["r"],
                                         cfg["r2"], cfg["k_exp"], cfg["v_exp"])
    assert sat == 3
    assert res.steps == P.HEAD_STEPS_PER_TOKEN * T + 2 and res.processes == 7
    assert np.count_nonzero(out) > T  # the comparison is not vacuous
    np.testing.assert_array_equal(res.K, K[0])
    np.testing.assert_array_equal(res.V, V[0])
    np.testing.assert_array_equal(res.outputs, out[0])


def test_k_synapses_raw_payloads():
    """x1 = clip(round_half_even(p/2) mod 256, 0, 127) and the rule's row overwrite, vs Lava."""
    payloads = np.array([
        [1, 3, 5, 7, -2, -254, 255, 257, 512, 600, 2**24 + 2, 0],
        [254, 0, 9, 0, 11, 0, 0, 13, 0, 0, -1, 6],
        [2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24],
        [0] * 12,
    ]).T  # [2d = 12, steps]
    slots = [0, 1, 0, 1]  # the third step rewrites row 0, the last clears row 1
    bap = np.zeros((3, 4), np.int64)
    bap[slots, range(4)] = 1
    from lava.magma.core.learning.constants import GradedSpikeCfg

    W = _run_learning_dense(P.k_rule(), np.zeros((3, 12)), payloads, {"s_in_bap": bap}, 4,
                            graded_spike_cfg=GradedSpikeCfg.OVERWRITE)
    K = fixed.k_init(1, 3, 6)
    for step, t in enumerate(slots):
        K, inexact = fixed.k_write_payload(K, payloads[:, step][None], t)
        assert inexact == 0
        if step == 0:
            assert K[0, 0].tolist() == [0, 2, 2, 4, 127, 127, 127, 127, 0, 44, 1, 0]
    np.testing.assert_array_equal(W, K[0])


def test_v_rule_needs_no_decay_taus():
    """Loihi3FLearningRule hard-wires y taus = 65535: with rng_seed 223 the first write is off by one."""
    from lava.magma.core.learning.learning_rule import Loihi3FLearningRule

    pre = np.eye(2, 2, dtype=np.int64)
    y1 = np.array([[127, 127], [-128, -128], [5, 5]])
    y2, y3 = np.full((3, 2), fixed.V_Y2), np.full((3, 2), fixed.V_Y3)
    ports = {"s_in_y1": y1, "s_in_y2": y2, "s_in_y3": y3}
    stock = Loihi3FLearningRule(dw=fixed.V_DW, t_epoch=1, rng_seed=223)
    W_stock = _run_learning_dense(stock, np.zeros((3, 2)), pre, ports, 2)
    ours = P.v_rule()
    ours.rng_seed = 223
    W_ours = _run_learning_dense(ours, np.zeros((3, 2)), pre, ports, 2)
    assert W_stock[0, 0] == 126  # stochastic decay of y1 = 127
    V = fixed.v_init(1, 3, 2)
    for t in range(2):
        V, _ = fixed.v_write(V, y1[:, t][None], t)
    np.testing.assert_array_equal(W_ours, V[0])


def test_custom_neurons_floating_pt():
    rng = np.random.default_rng(3)
    T, dv, t_max = 3, 2, 4
    sc, vs = rng.normal(size=(T, t_max)), rng.normal(size=(T, dv))
    out, V = P.run_value_stage(sc, vs, t_max, f="relu2", tag="floating_pt", scale=0.5)
    Vr, ref = np.zeros((dv, t_max)), []
    for t in range(T):
        Vr[:, t] = vs[t]
        ref.append(Vr @ np.maximum(0.5 * sc[t], 0) ** 2)
    np.testing.assert_allclose(out, np.array(ref), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(V, Vr)
