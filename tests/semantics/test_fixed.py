"""Hand-computed integer cases of the fixed-point contract (semantics/fixed.py, docs/semantics.md)."""
from __future__ import annotations

import numpy as np
import pytest

from icl_compiler.semantics import fixed


def arr(*x):
    return np.array(x, dtype=np.int64)


# -- helpers ---------------------------------------------------------------------------------------

def test_wrap32_and_shift():
    assert fixed.wrap32(arr(2**31, -(2**31) - 1, 5)).tolist() == [-(2**31), 2**31 - 1, 5]
    assert fixed.shift(arr(7, -7), -1).tolist() == [3, -4]  # floor toward -inf
    assert fixed.shift(arr(7, -7), 0).tolist() == [7, -7]
    assert fixed.shift(arr(3), 2).tolist() == [12]
    assert fixed.shift(arr(2**30), 1).tolist() == [-(2**31)]  # left shift wraps in int32


def test_round_half_even_half():
    p = arr(-5, -3, -1, 0, 1, 2, 3, 5, 7)
    assert fixed.round_half_even_half(p).tolist() == np.round(p / 2).astype(int).tolist()


# -- Dense -----------------------------------------------------------------------------------------

def test_to_lava_dense_params():
    p = fixed.to_lava_dense_params(np.array([[127, -128], [0, 3]]), -2)
    assert p["weights"].tolist() == [[254, -256], [0, 6]]
    assert p["weight_exp"] == -3
    assert (p["num_weight_bits"], p["sign_mode"], p["num_message_bits"]) == (8, "MIXED", 24)
    with pytest.raises(ValueError):
        fixed.to_lava_dense_params(np.array([[128]]), 0)


def test_dense_exact_and_floor():
    w = np.array([[1, -1], [127, -128]])
    # e = 0: exact
    assert fixed.dense(w, 0, arr(3, 2)).tolist() == [1, 381 - 256]
    # e = -1: floor(x / 2) toward -inf: 1.5 -> 1, -1.5 -> -2, (3*127)/2 = 190.5 -> 190
    assert fixed.dense(w, -1, arr(3, 0)).tolist() == [1, 190]
    assert fixed.dense(w, -1, arr(0, 3)).tolist() == [-2, -192]
    assert fixed.dense(w, -3, arr(-1, 0)).tolist() == [-1, -16]  # -1/8 -> -1, -127/8 -> -16
    # e > 0: left shift
    assert fixed.dense(w, 2, arr(1, 1)).tolist() == [0, -4]
    assert fixed.dense(w, 3, arr(5, 0)).tolist() == [40, 5080]
    # batch axes
    out = fixed.dense(w, 0, np.array([[[1, 0]], [[0, 1]]]))
    assert out.shape == (2, 1, 2) and out[:, 0].tolist() == [[1, 127], [-1, -128]]


def test_dense_int32_headroom_is_halved_by_the_doubled_weights():
    # Lava sums 2*m*s in int32: 2 * 2**30 wraps to -2**31, then >> 1 -> -2**30
    assert fixed.dense(np.array([[1]]), 0, arr(2**30)).tolist() == [-(2**30)]
    assert fixed.dense(np.array([[1]]), 0, arr(2**30 - 1)).tolist() == [2**30 - 1]


def test_lava_dense_weights_clip_and_lsb():
    assert fixed.lava_dense_weights(np.array([[-128, 127, 200, -200]])).tolist() == [
        [-256, 254, 254, -256]]


# -- graded neurons ----------------------------------------------------------------------------------

def test_graded_neurons():
    v = arr(-3, -1, 0, 1, 5)
    assert fixed.graded(v).tolist() == [-3, -1, 0, 1, 5]
    assert fixed.graded_relu(v).tolist() == [0, 0, 0, 1, 5]
    assert fixed.graded(v, vth=1).tolist() == [-3, 0, 0, 0, 5]  # Lava's default vth = 1
    assert fixed.graded(arr(2**31, 2**24)).tolist() == [0, 2**24]  # int32 min: |v| stays < 0
    assert fixed.graded_relu(arr(2**31 + 4)).tolist() == [0]  # wraps negative
    assert fixed.clip_payload(arr(2**23, -(2**23) - 1)).tolist() == [2**23 - 1, -(2**23)]


# -- traces ----------------------------------------------------------------------------------------

def test_x1_from_payload():
    p = arr(0, 1, 3, 5, 7, 254, 255, 257, 512, 600, -1, -2, -254, 2**24 + 2)
    assert fixed.x1_from_payload(p).tolist() == [0, 0, 2, 2, 4, 127, 127, 127, 0, 44, 0, 127, 127, 1]


@pytest.mark.parametrize("residual", [False, True])
def test_k_traces_equal_the_traces_of_the_write_payloads(residual):
    """k_traces (the first write's shortcut) == x1_from_payload(k_payload(k)) for keys in and far
    out of range, the int32 wrap of 2·m included (±2^30, ±2^31, ±2^32 + 3, ±2^40 + 129)."""
    rng = np.random.default_rng(3)
    edges = [0, 1, 126, 127, 128, 255, 256, 300, 2**23, 2**30, 2**30 + 5, 2**31 - 1, 2**31,
             2**31 + 1, 2**32 + 3, 2**40 + 129]
    k = np.array(edges + [-e for e in edges], np.int64)
    for ks in (k[:, None], rng.integers(-2**33, 2**33, size=(64, 21, 5)),
               rng.integers(-300, 300, size=(4, 7, 3)), rng.integers(-127, 128, size=(4, 7, 3))):
        np.testing.assert_array_equal(fixed.k_traces(ks, residual),
                                      fixed.x1_from_payload(fixed.k_payload(ks, residual)))


@pytest.mark.parametrize("residual", [False, True])
def test_fresh_writes_equal_the_rules(residual):
    """``fresh=True`` (the sequence path: the slots written hold nothing yet) skips looking at
    them; K, V and the counts equal the rules' own on those zero slots, keys and values far out
    of range included; slots already written before stay as they were."""
    rng = np.random.default_rng(8)
    B, T, d, t_max = 3, 5, 4, 9
    for lim in (100, 300, 2**20):
        k = rng.integers(-lim, lim, size=(B, T, d))
        K0, _ = fixed.k_write(fixed.k_init(B, t_max, d, residual), k[:, :2], 0, residual)
        V0, _ = fixed.v_write(fixed.v_init(B, d, t_max, residual), k[:, :2], 0, residual=residual)
        for t in (2, 6):  # slots t … t+T−1 are fresh; 6: two writes past T_max are lost
            Kr, sk = fixed.k_write(K0, k, t, residual)
            Kf, sf = fixed.k_write(K0, k, t, residual, fresh=True)
            np.testing.assert_array_equal(Kf, Kr)
            assert sf == sk
            Vr, sv = fixed.v_write(V0, k, t, residual=residual)
            Vf, sw = fixed.v_write(V0, k, t, residual=residual, fresh=True)
            np.testing.assert_array_equal(Vf, Vr)
            assert sw == sv


# -- K write / read ----------------------------------------------------------------------------------

def test_k_payloads():
    assert fixed.k_payload(arr(3, -2, 0)).tolist() == [6, 0, 0, 0, 4, 0]
    assert fixed.q_payload(arr(3, -2)).tolist() == [3, -2, -3, 2]


def test_k_write_range_edges():
    K = fixed.k_init(1, 3, 3)
    K, sat = fixed.k_write(K, arr(127, -127, 0)[None], 1)
    assert sat == 0
    assert K[0].tolist() == [[0] * 6, [127, 0, 0, 0, 127, 0], [0] * 6]
    assert fixed.k_signed(K)[0, 1].tolist() == [127, -127, 0]


def test_k_write_saturation_and_wrap():
    K = fixed.k_init(1, 2, 5)
    K, sat = fixed.k_write(K, arr(128, -200, 255, 256, 300)[None], 0)
    assert K[0, 0].tolist() == [127, 0, 127, 0, 44, 0, 127, 0, 0, 0]
    assert sat == 5


def test_k_write_other_rows_untouched_and_row_overwritten():
    K = fixed.k_init(2, 3, 2)
    K[:, 0] = [[5, 0, 0, 7], [1, 2, 3, 4]]
    K[:, 2] = 9
    Kn, sat = fixed.k_write(K, np.array([[-4, 0], [1, 2]]), 0)
    assert sat == 0
    assert Kn[:, 0].tolist() == [[0, 0, 4, 0], [1, 2, 0, 0]]
    assert (Kn[:, 1:] == K[:, 1:]).all()


def test_k_write_accumulator_saturation_is_counted():
    # w_old + x1 >= 256: the 16-bit accumulator saturates and Lava rounds stochastically
    K = fixed.k_init(1, 1, 1)
    K[0, 0, 0] = 200
    Kn, sat = fixed.k_write(K, arr(100)[None], 0)
    assert sat == 1 and Kn[0, 0, 0] == 55  # (32767 - 25600) >> 7; Lava gives 55 or 56


def test_k_write_past_capacity_is_lost():
    K = fixed.k_init(1, 2, 2)
    Kn, sat = fixed.k_write(K, arr(1, 2)[None], 2)
    assert sat == 2 and (Kn == 0).all()


def test_k_read():
    K = fixed.k_init(1, 3, 2)
    K, _ = fixed.k_write(K, arr(127, -127)[None], 0)
    K, _ = fixed.k_write(K, arr(-3, 5)[None], 1)
    q = arr(2, 3)[None]
    assert fixed.k_read(K, q).tolist() == [[254 - 381, -6 + 15, 0]]
    assert fixed.k_read(K, q, exp=-1).tolist() == [[-64, 4, 0]]  # floor(-63.5), floor(4.5)
    assert fixed.k_read(K, q, exp=2).tolist() == [[-508, 36, 0]]


# -- V write / read ----------------------------------------------------------------------------------

def test_v_write_range_edges_and_saturation():
    V = fixed.v_init(1, 6, 2)
    V, sat = fixed.v_write(V, arr(-128, 127, 0, -129, 128, 1000)[None], 1)
    assert V[0, :, 1].tolist() == [-128, 127, 0, -128, 127, 127]
    assert (V[0, :, 0] == 0).all()
    assert sat == 3


def test_v_write_overwrite_and_accumulator_saturation():
    V = fixed.v_init(1, 2, 1)
    V[0, :, 0] = [100, 200]
    Vn, sat = fixed.v_write(V, arr(-50, 100)[None], 0)
    assert Vn[0, 0, 0] == -50  # 128*(100 - 50) then -128*100: exact
    assert sat == 1  # 128*(200 + 100) saturates the accumulator
    assert Vn[0, 1, 0] == (32767 - 25600) >> 7


def test_v_read():
    V = fixed.v_init(1, 2, 3)
    V, _ = fixed.v_write(V, arr(3, -4)[None], 0)
    V, _ = fixed.v_write(V, arr(-128, 127)[None], 2)
    a = arr(5, 9, 2)[None]
    assert fixed.v_read(V, a).tolist() == [[15 - 256, -20 + 254]]
    assert fixed.v_read(V, a, exp=-2).tolist() == [[-61, 58]]  # floor(-241/4), floor(234/4)


# -- 16-bit K/V: a high and a low plastic synapse per entry ------------------------------------------

def test_kv_split():
    hi, lo = fixed.kv_split(arr(300, -1, 0, 127, -128), True, -127, 127)
    assert hi.tolist() == [2, -1, 0, 0, -1] and lo.tolist() == [44, 127, 0, 127, 0]
    # saturation to [-127·128, 127·128 + 127] before the split
    hi, lo = fixed.kv_split(arr(16384, -16257, 16383, -16256), True, -127, 127)
    assert hi.tolist() == [127, -127, 127, -127] and lo.tolist() == [127, 0, 127, 0]
    x, none = fixed.kv_split(arr(300), False, -127, 127)
    assert x.tolist() == [300] and none is None


def test_k_payloads_16bit():
    # k = 300 = 2·128 + 44, k = −1 = −1·128 + 127
    assert fixed.k_payload(arr(300, -1), True).tolist() == [4, 0, 0, 2, 88, 254]
    assert fixed.q_payload(arr(1000, -300), True).tolist() == [1000, -300, -1000, 300, 7, -3]


def test_k_write_16bit_range_edges_and_saturation():
    K = fixed.k_init(1, 2, 4, residual=True)
    assert K.shape == (1, 2, 12)
    k = arr(-16256, 16383, 0, -1)
    K, sat = fixed.k_write(K, k[None], 1, residual=True)
    assert sat == 0
    assert K[0, 1].tolist() == [0, 127, 0, 0, 127, 0, 0, 1, 0, 127, 0, 127]
    assert fixed.k_signed(K, residual=True)[0, 1].tolist() == k.tolist()
    assert (K[0, 0] == 0).all()
    K2, sat = fixed.k_write(fixed.k_init(1, 1, 2, True), arr(16384, -16257)[None], 0, True)
    assert sat == 2 and fixed.k_signed(K2, True)[0, 0].tolist() == [16383, -16256]


def test_k_read_16bit():
    K, _ = fixed.k_write(fixed.k_init(1, 2, 1, True), arr(300)[None], 0, True)
    # hi·q + lo·(q >> 7) = 2·1000 + 44·7 = 2308 ≈ 300·1000 / 128 = 2343.75
    assert fixed.k_read(K, arr(1000)[None], residual=True).tolist() == [[2308, 0]]
    assert fixed.k_read(K, arr(-1000)[None], residual=True).tolist() == [[-2000 + 44 * -8, 0]]


def test_v_write_16bit_range_edges_and_saturation():
    V = fixed.v_init(1, 3, 2, residual=True)
    assert V.shape == (1, 6, 2)
    V, sat = fixed.v_write(V, arr(300, -16384, 16383)[None], 1, residual=True)
    assert sat == 0
    assert V[0, :, 1].tolist() == [2, -128, 127, 44, 0, 127]  # high rows, then low rows
    assert (V[0, :, 0] == 0).all()
    V, sat = fixed.v_write(V, arr(-16385, 16384, 0)[None], 0, residual=True)
    assert sat == 2 and V[0, :, 0].tolist() == [-128, 127, 0, 0, 127, 0]
    assert fixed.v_third_factor(arr(-1), True).tolist() == [-1, 127]


def test_v_read_and_combine_16bit():
    V, _ = fixed.v_write(fixed.v_init(1, 1, 2, True), arr(300)[None], 0, residual=True)
    V, _ = fixed.v_write(V, arr(-1)[None], 1, residual=True)
    a = arr(10, 4)[None]
    acc = fixed.v_read(V, a)  # rows: high 2·10 − 1·4, low 44·10 + 127·4
    assert acc.tolist() == [[16, 948]]
    assert fixed.value_combine(acc, True).tolist() == [[16 + 7]]  # 948 >> 7 = 7; exact 23.40625
    assert fixed.value_out(arr(2**24, 0), True).tolist() == [2**23 - 1]
    assert fixed.value_combine(acc, False).tolist() == [[16, 948]]


# -- slot neuron and a whole head --------------------------------------------------------------------

def test_slot_f():
    s = arr(-5, -1, 0, 4, 9)
    assert fixed.slot_f(s, "identity", r=1).tolist() == [-3, -1, 0, 2, 4]
    assert fixed.slot_f(s, "relu", r=1).tolist() == [0, 0, 0, 2, 4]
    assert fixed.slot_f(s, "relu2", r=1, r2=1).tolist() == [0, 0, 0, 2, 8]
    assert fixed.slot_f(arr(2**20), "relu2").tolist() == [2**23 - 1]  # 24-bit saturation
    with pytest.raises(ValueError):
        fixed.slot_f(s, "softmax")


@pytest.mark.parametrize("f", fixed.SLOT_FUNCS)
def test_every_slot_function_maps_zero_to_zero(f):
    """The causal V read takes the slot outputs as they are (neurons.value_read): the slots
    after a token score 0 and hold f(0), which must be 0 for every shift."""
    for r in range(0, 9):
        assert fixed.slot_f(arr(0, 0), f, r=r, r2=r).tolist() == [0, 0]


def test_head_sequence_by_hand():
    ks = np.array([[[3], [-2]]])
    qs = np.array([[[1], [2]]])
    vs = np.array([[[5], [-7]]])
    out, K, V, sat = fixed.head_sequence(ks, qs, vs, t_max=3, f="relu")
    # token 0: score 3 -> a = [3, 0, 0] -> 5*3; token 1: scores [6, -4] -> a = [6, 0] -> 5*6
    assert out[0, :, 0].tolist() == [15, 30]
    assert K[0].tolist() == [[3, 0], [0, 2], [0, 0]]
    assert V[0].tolist() == [[5, -7, 0]]
    assert sat == 0
    out, *_ = fixed.head_sequence(ks, qs, vs, t_max=3, f="identity")
    assert out[0, :, 0].tolist() == [15, 5 * 6 + (-7) * (-4)]


# -- multiplying neurons (activations, products) -----------------------------------------------------

def test_operand_saturates_to_16_bits():
    u, sat = fixed.operand(np.array([5, -40000, 32767, 32768, -32767]))
    assert u.tolist() == [5, -32767, 32767, 32767, -32767] and sat == 2


def test_round_shift_rounds_half_up():
    assert fixed.round_shift(np.array([5, 6, 7, -5, -6, -7]), 2).tolist() == [1, 2, 2, -1, -1, -2]
    assert fixed.round_shift(np.array([3, -3]), 0).tolist() == [3, -3]


def test_pwl_by_hand():
    # acc = 4 + 2u + 6·max(u − 1, 0) − 8·max(u − 3, 0), out = round(acc / 4)
    u = np.array([-2, 0, 1, 2, 3, 5])
    acc = [4 - 4, 4, 6, 8 + 6, 10 + 12, 14 + 24 - 16]
    want = [(a + 2) >> 2 for a in acc]
    assert fixed.pwl(u, 4, 2, [1, 3], [6, -8], 2).tolist() == want == [0, 1, 2, 4, 6, 6]


def test_square_by_hand():
    u = np.array([-5, -1, 0, 3, 12])
    assert fixed.square(u, 3).tolist() == [3, 0, 0, 1, 18]  # round(25/8), ... round(144/8)
    assert fixed.square(u, 3, relu=True).tolist() == [0, 0, 0, 1, 18]


def test_product_is_lava_prodneuron():
    # ProdNeuron fixed_pt: v = int32(a·b); v >>= exp (floor)
    a, b = np.array([3, -3, 30000, 2**16]), np.array([5, 5, 30000, 2**16])
    assert fixed.product(a, b, 2).tolist() == [3, -4, 225000000, 0]  # 2^32 wraps to 0
