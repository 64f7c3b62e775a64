"""Exact integer products on float64 BLAS (both branches) and the row invariance of float
products that the two evaluation orders of the interpreter rely on."""
import numpy as np
import pytest

from icl_compiler.semantics import products
from icl_compiler.semantics.products import (F64_EXACT, absmax, int_matmul, one_call_exact,
                                             rows_matmul, token_matmul, uses_blas,
                                             whole_call_exact)


def _colsum(b):
    return int(np.abs(b).sum(axis=-2).max())


@pytest.mark.parametrize("shape", [((7, 50), (50, 9)), ((3, 5, 40), (3, 40, 6))])
def test_blas_branch_is_exact_under_the_bound(shape):
    rng = np.random.default_rng(0)
    a = rng.integers(-2**31, 2**31, size=shape[0])
    b = rng.integers(-256, 256, size=shape[1])
    assert uses_blas(absmax(a), _colsum(b))  # 2^31 · 50 · 256 < 2^53
    ref = np.matmul(a, b)  # int64, exact
    got = int_matmul(a, b.astype(np.float64), _colsum(b))
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, ref)
    np.testing.assert_array_equal(int_matmul(a.astype(np.float64), b, _colsum(b)), ref)


def test_int64_branch_when_the_bound_fails():
    # (2^52 + 1) + (2^52 + 1) + 1 = 2^53 + 3: every term is exact in float64, the sum is not
    a = np.array([[2**52 + 1, 2**52 + 1, 1]], np.int64)
    b = np.ones((3, 1), np.int64)
    exact = 2**53 + 3
    assert not uses_blas(absmax(a), _colsum(b))
    assert int_matmul(a, b, _colsum(b))[0, 0] == exact  # the fallback
    forced = int_matmul(a, b, _colsum(b), limit=float("inf"))  # float64 forced: wrong
    assert forced[0, 0] != exact
    small = np.array([[5, -7]]), np.array([[3], [2]])
    assert int_matmul(*small, 5, limit=0)[0, 0] == 1  # the int64 branch forced on a small case


def test_bound_is_checked_against_the_data_maximum():
    b = np.ones((4, 1), np.int64)
    a = np.array([[F64_EXACT // 4, 0, 0, 0]])
    assert not uses_blas(absmax(a), _colsum(b))
    assert uses_blas(absmax(a) - 1, _colsum(b))


@pytest.mark.parametrize("K,N", [(804, 64), (64, 20), (32, 26), (26, 32), (768, 768), (7, 100),
                                 (100, 7), (64, 804)])
def test_float_rows_do_not_depend_on_the_number_of_tokens(K, N):
    """The property both evaluation orders rely on (products.py): a token's rows of a float
    product come out the same computed alone ([B, K]) or with T-1 other tokens ([B·T, K], row
    i·T + t).  If this fails, the installed BLAS breaks it and float mode is exact only to
    rounding."""
    rng = np.random.default_rng(1)
    for B in (1, 2, 5, 8, 13, 64):
        T = 21
        x = rng.normal(size=(B, T, K))
        w = rng.normal(size=(N, K))
        seq = rows_matmul(x.reshape(B * T, K), w.T, batch=B).reshape(B, T, N)
        for t in range(T):
            np.testing.assert_array_equal(rows_matmul(x[:, t], w.T), seq[:, t],
                                          err_msg=f"B={B} t={t}")
        np.testing.assert_allclose(seq, x @ w.T, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("k,m", [(32, 26), (64, 64), (26, 32), (7, 3), (128, 1024), (1, 5)])
def test_token_rows_do_not_depend_on_the_chunking(k, m):
    """The heads' float products (products.token_matmul): a token's row comes out the same
    computed alone, in any chunk of tokens, or with the whole sequence.  If this fails, the
    installed BLAS breaks the property and float mode is exact only to rounding."""
    rng = np.random.default_rng(2)
    for B in (1, 3, 64):
        T = 21
        a = rng.normal(size=(B, T, k))
        W = rng.normal(size=(B, m, k))  # a plastic weight array as it is stored
        whole = token_matmul(W, a, 0)
        assert whole.flags.c_contiguous  # (a strided result would sum differently downstream)
        np.testing.assert_allclose(whole, a @ W.transpose(0, 2, 1), rtol=1e-12, atol=1e-12)
        for t in range(T):
            np.testing.assert_array_equal(token_matmul(W, a[:, t:t + 1], t)[:, 0], whole[:, t])
        for n in (2, 5, 8, 13, 16):
            for t0 in range(0, T - n + 1, 3):
                np.testing.assert_array_equal(token_matmul(W, a[:, t0:t0 + n], t0),
                                              whole[:, t0:t0 + n], err_msg=f"B={B} t0={t0} n={n}")
        np.testing.assert_array_equal(token_matmul(W, a[:, :16], 0), whole[:, :16])  # no copy
        # ``visible``: the hidden entries count as zeros, bit for bit
        vis = rng.random((T, k)) < 0.6
        np.testing.assert_array_equal(token_matmul(W, a, 0, vis),
                                      token_matmul(W, np.where(vis, a, 0.0), 0))


def test_rows_must_be_whole_tokens():
    with pytest.raises(ValueError, match="whole tokens"):
        rows_matmul(np.zeros((7, 3)), np.zeros((3, 2)), batch=2)


def _one_ulp_off(row):
    """A BLAS that rounds one row of a product differently (by one ulp)."""
    def matmul(a, b):
        out = np.matmul(a, b)
        out[row] = np.nextafter(out[row], np.inf)
        return out
    return matmul


@pytest.mark.parametrize("B,T,K,widths", [(64, 21, 804, (64,)), (2, 8, 64, (32,) * 6),
                                          (5, 3, 7, (4, 1)), (1, 1, 3, (2,))])
def test_one_call_is_used_only_where_it_gives_the_reference_bits(B, T, K, widths):
    """``one_call_exact`` (the float static products' one BLAS call per chunk): when it says yes,
    the call reproduces rows_matmul's per-token, per-group bits on fresh data; a BLAS that rounds
    any row otherwise is caught (and not remembered)."""
    rng = np.random.default_rng(4)
    a = rng.normal(size=(B * T, K)) * rng.uniform(0.1, 10, size=(B * T, 1))
    b = rng.normal(size=(K, sum(widths)))
    if one_call_exact(B, T, K, widths):
        one, c = a @ b, 0
        for w in widths:
            np.testing.assert_array_equal(one[:, c:c + w],
                                          rows_matmul(a, np.ascontiguousarray(b[:, c:c + w]), B))
            c += w
    key = (B, T, K, widths)
    assert key in products._ONE_CALL
    for row in (0, B * T - 1):
        assert not one_call_exact(B, T, K, widths, matmul=_one_ulp_off(row))
    assert products._ONE_CALL[key] == one_call_exact(B, T, K, widths)  # the real BLAS' answer


@pytest.mark.parametrize("B,r,k,n,t0", [(64, 26, 32, 21, 0), (3, 32, 26, 5, 3), (1, 7, 3, 2, 9)])
def test_whole_call_is_used_only_where_it_gives_the_reference_bits(B, r, k, n, t0):
    """``whole_call_exact`` (the heads' one call per sequence for a chunk): when it says yes,
    token_matmul's rows equal the reference blocks' on fresh data, masked or not; a BLAS that
    rounds one token's row otherwise is caught (and not remembered)."""
    rng = np.random.default_rng(5)
    W, a = rng.normal(size=(B, r, k)), rng.normal(size=(B, n, k))
    vis = rng.random((n, k)) < 0.5
    if whole_call_exact(B, r, k, n, t0):
        for v in (None, vis):
            np.testing.assert_array_equal(token_matmul(W, a, t0, v),
                                          products._token_blocks(W, a, t0, v))
    key = (B, r, k, n, t0 % products.TOKEN_BLOCK, products.TOKEN_BLOCK)
    assert key in products._WHOLE_CALL

    def off(W, at):  # the last token's column of W · Aᵀ one ulp off
        out = np.matmul(W, at)
        out[..., -1] = np.nextafter(out[..., -1], np.inf)
        return out
    assert not whole_call_exact(B, r, k, n, t0, matmul=off)
    assert products._WHOLE_CALL[key] == whole_call_exact(B, r, k, n, t0)
