"""Neuron models with typed parameters (semantics/neurons.py) and the token timing
(semantics/timing.py), by hand: what each model outputs and how many entries it saturates."""
from __future__ import annotations

import numpy as np

from icl_compiler.ir.neuro import (Encoding, HeadSpec, NeuronModel, NormParams, Population,
                                   QuantParams)
from icl_compiler.passes.lower import lower
from icl_compiler.semantics import fixed, neurons, timing
from tests.helpers import attention_graph

MAX = fixed.PAYLOAD_MAX


def test_input_payloads():
    tok = Population("tokens", 5, NeuronModel.INPUT, encoding=Encoding.ONE_HOT,
                     q=QuantParams(one=127))
    pos = Population("position", 4, NeuronModel.INPUT, encoding=Encoding.POSITION)
    feat = Population("input", 3, NeuronModel.INPUT, scale=0.5)
    ids = np.array([4, 0])
    assert neurons.input_payload(tok, ids, 0, True).tolist() == [[0, 0, 0, 0, 127],
                                                                 [127, 0, 0, 0, 0]]
    assert neurons.input_payload(tok, ids, 0, False)[0, 4] == 1.0
    assert neurons.input_payload(pos, ids, 2, True).tolist() == [[0, 0, 1, 0]] * 2  # no q: 1
    x = np.array([[0.74, -0.25, 1e9]])
    assert neurons.input_payload(feat, x, 0, True).tolist() == [[1, -0, MAX]]  # half to even
    assert np.array_equal(neurons.input_payload(feat, x, 0, False), x)
    assert neurons.dequantise(np.array([3]), 0.5, True).tolist() == [1.5]


def test_static_neurons_shift_clip_and_count():
    k = Population("k", 3, NeuronModel.GRADED, q=QuantParams(shift=2))
    cur = np.array([[7, -7, 4 * (MAX + 10)]])
    out, sat = neurons.neuron(k, cur, True)
    assert out.tolist() == [[1, -2, MAX]] and sat == 1  # floor shift, then the 24-bit clip
    relu = Population("r", 3, NeuronModel.GRADED_RELU)
    out, sat = neurons.neuron(relu, np.array([[-3.5, 0.0, 2.5]]), False)
    assert out.tolist() == [[0.0, 0.0, 2.5]] and sat == 0
    norm = Population("n", 2, NeuronModel.NORM, norm=NormParams("rmsnorm", 0.0, np.ones(2),
                                                                np.zeros(2)))
    out, _ = neurons.neuron(norm, np.array([[3.0, 4.0]]), False)
    assert np.allclose(out, np.array([[3.0, 4.0]]) / np.sqrt(12.5))


def test_divide_float_and_fixed():
    acc, a = np.array([[6.0, -3.0]]), np.array([[1.0, 2.0]])
    out, _ = neurons.divide(acc, a, False, eps=1.0)
    assert out.tolist() == [[1.5, -0.75]]
    # fixed: (V·a)·s_v·s_a / (Σa·s_a + eps), rounded to the output scale, then clipped
    out, sat = neurons.divide(np.array([[40, -40]]), np.array([[2, 2]]), True, eps=0.0,
                              s_v=0.5, s_a=0.25, scale=0.1)
    assert out.tolist() == [[50, -50]] and sat == 0  # 40·0.125 / 1.0 = 5.0 = 50 units of 0.1
    out, sat = neurons.divide(np.array([[2**30]]), np.array([[1]]), True, eps=0.0, s_v=1.0,
                              s_a=1.0, scale=1.0)
    assert out.tolist() == [[MAX]] and sat == 1


def test_divide_by_a_clamped_row_sum():
    """rowsum_max: ÷ max(Σa, eps) (float) and max(Σa·s_a, eps) (fixed); Σ + eps would differ."""
    acc, a = np.array([[6.0], [6.0]]), np.array([[1.0, 2.0], [0.0, 0.5]])
    out, _ = neurons.divide(acc, a, False, eps=1.0, norm="rowsum_max")
    assert out.ravel().tolist() == [2.0, 6.0]  # 6/max(3, 1), 6/max(0.5, 1)
    # (V·a)·s_v·s_a = 5.0; Σa·s_a = 2 and 0.25: 5/max(2, 1) = 2.5, 5/max(0.25, 1) = 5.0
    out, _ = neurons.divide(np.array([[40], [40]]), np.array([[4, 4], [0, 1]]), True, eps=1.0,
                            s_v=0.5, s_a=0.25, scale=0.1, norm="rowsum_max")
    assert out.ravel().tolist() == [25, 50]


def test_sixteen_bit_value_read_combines_high_and_low_rows():
    h = HeadSpec(0, 0, "k", "q", "v", "slots", "out", "ks", "vs", "identity", 1.0, 2, kv_bits=16)
    out = Population("out", 1, NeuronModel.GRADED, q=QuantParams(e_v=0))
    V = np.array([[[3, 0], [64, 0]]])  # [B, 2·d_v, T_max]: high row, low row
    y, sat = neurons.value_read(h, out, V, np.array([[2, 0]]), True)
    assert y.tolist() == [[6 + (128 >> 7)]] and sat == 0


def test_timing_of_a_head_and_a_sequence():
    ng = lower(attention_graph(np.random.default_rng(0), heads=1))
    tau, (A,) = timing.timing(ng)
    h = ng.heads[0]
    assert tau[h.out] - A == timing.HEAD_LATENCY and tau[h.q] == A + 1
    depth = tau[ng.io.output_pop]
    assert timing.sequence_steps(5, depth) == timing.STEPS_PER_TOKEN * 4 + depth + 1


def test_activation_neurons_float_exact_fixed_integer():
    from icl_compiler.ir.neuro import ActivationParams

    act = Population("g", 3, NeuronModel.ACTIVATION, act=ActivationParams("gelu"))
    x = np.array([[-1.0, 0.5, 2.0]])
    out, sat = neurons.activation(act, x, False)
    assert np.allclose(out, [[-0.15865525393145707, 0.34573123063700656, 1.9544997361036416]],
                       rtol=1e-14) and sat == 0
    pwl = Population("g", 3, NeuronModel.ACTIVATION,
                     act=ActivationParams("gelu", "pwl", breaks=[0], slopes=[8], c0=0, c1=0,
                                          frac=3))
    out, sat = neurons.neuron(pwl, np.array([[-7, 5, 40000]]), True)  # relu(u) exactly
    assert out.tolist() == [[0, 5, 32767]] and sat == 1  # the operand saturated
    sq = Population("r", 2, NeuronModel.ACTIVATION, act=ActivationParams("relu2", "square",
                                                                          frac=1))
    assert neurons.neuron(sq, np.array([[-3, 3]]), True)[0].tolist() == [[0, 5]]


def test_product_neurons_float_and_fixed():
    p = Population("p", 2, NeuronModel.PRODUCT, q=QuantParams(prod_shift=3))
    out, sat = neurons.product(p, np.array([[1.5, -2.0]]), np.array([[2.0, 4.0]]), False)
    assert out.tolist() == [[3.0, -8.0]] and sat == 0
    out, sat = neurons.product(p, np.array([[100, -100]]), np.array([[7, 40000]]), True)
    assert out.tolist() == [[87, (-100 * 32767) >> 3]] and sat == 1
