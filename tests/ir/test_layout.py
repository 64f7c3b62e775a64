"""ir/layout.py: token layouts, their transfer functions and the numeric feature maps."""
import numpy as np
import pytest

from icl_compiler.ir import layout as L
from icl_compiler.ir.symbolic import sym

B, T = sym("batch"), sym("seq")
ENV = {"batch": 2, "seq": 3}


def test_reshape_merges_and_splits_features_not_positions():
    x = L.token_input((B, T, 32))
    assert L.fmt(x) == "[B, T, F32]"
    flat = L.reshape(x, (B * T, 32))  # HF Conv1D: [B·T, d]
    assert L.fmt(flat) == "[B·T, F32]"
    assert L.fmt(L.reshape(flat, (B, T, 32))) == "[B, T, F32]"
    heads = L.reshape(x, (B, T, 2, 16))
    assert L.fmt(L.transpose(heads, [0, 2, 1, 3])) == "[B, F2, T, F16]"
    merged = L.reshape(L.transpose(heads, [0, 2, 1, 3]), (B * 2, T, 16))  # MHA: batch×heads
    assert L.fmt(merged) == "[B·F2, T, F16]"
    with pytest.raises(L.LayoutError, match="splits the sequence axis"):
        L.reshape(L.token_input((1, 8, 32)), (1, 4, 2, 32))


def test_static_batch_one_has_no_batch_factor():
    x = L.token_input((1, 8, 32))
    assert L.fmt(x) == "[1, T, F32]"
    assert L.fmt(L.reshape(x, (8, 32))) == "[T, F32]"


def test_broadcast_takes_the_token_operand_and_refuses_dynamic_broadcast():
    x = L.token_input((B, T, 4))
    assert L.broadcast([(x, (B, T, 4)), (None, (1, T, 4))], (B, T, 4)) == x
    with pytest.raises(L.LayoutError, match="dynamic axis"):
        L.broadcast([(L.token_input((B, T)) + ((),), (B, T, 1))], (B, T, T))


def test_token_view_round_trip_in_any_layout():
    lay = L.transpose(L.reshape(L.token_input((B, T, 6)), (B, T, 2, 3)), [1, 0, 3, 2])
    fs = L.factor_shape(lay, ENV)
    arr = np.arange(np.prod(fs), dtype=float).reshape(3, 2, 3, 2)
    tv = L.token_view(arr, lay, ENV)
    assert tv.shape == (2, 3, 6)
    np.testing.assert_array_equal(L.from_token_view(tv, lay, ENV), arr)


def test_index_map_of_a_head_split_and_errors():
    x = L.token_input((B, T, 6))
    out = L.transpose(L.reshape(x, (B, T, 2, 3)), [0, 2, 1, 3])
    idx = L.index_map(lambda xs: np.transpose(xs[0].reshape(2, 3, 2, 3), (0, 2, 1, 3)),
                      [(x, None)], out, ENV)
    np.testing.assert_array_equal(idx, np.arange(6))
    rev = L.token_input((B, T, 6))
    idx = L.index_map(lambda xs: xs[0][..., ::-1], [(x, None)], rev, ENV)
    np.testing.assert_array_equal(idx, np.arange(6)[::-1])
    with pytest.raises(L.LayoutError, match="between tokens"):
        L.index_map(lambda xs: np.roll(xs[0], 1, axis=1), [(x, None)], x, ENV)
    with pytest.raises(L.LayoutError, match="new values"):
        L.index_map(lambda xs: xs[0] * 0.5, [(x, None)], x, ENV)


def test_linear_map_finds_weights_bias_and_refuses_nonlinear():
    rng = np.random.default_rng(0)
    x = L.token_input((B, T, 5))
    W, b = rng.normal(size=(5, 3)), rng.normal(size=3)
    M, C = L.linear_map(lambda a: a @ W + b, x, L.token_input((B, T, 3)), ENV)
    np.testing.assert_allclose(M, W.T, atol=1e-12)
    np.testing.assert_allclose(C, np.broadcast_to(b, (2, 3, 3)), atol=1e-12)
    with pytest.raises(L.LayoutError, match="not an affine function"):
        L.linear_map(np.tanh, x, x, ENV)
    pos = np.arange(3.0)[None, :, None]
    with pytest.raises(L.LayoutError, match="not an affine function"):
        L.linear_map(lambda a: a * pos, x, x, ENV)  # weights that change with the position
