"""Matrix products of the interpreter: exact integer products on float64 BLAS, and float products
whose every row is computed the same way whatever the number of rows.

Integer products (fixed point).  NumPy has no BLAS for integers: an int64 ``a @ b`` runs a plain
loop, about 25× slower than the same product in float64 BLAS.  A float64 product of integer
matrices is *exact* when every partial sum is an integer below 2**53 in magnitude, whatever order
and fusion (FMA) the BLAS uses: each partial sum of ``c_ij = Σ_k a_ik·b_kj`` is bounded by
``Σ_k |a_ik|·|b_kj| ≤ max|a| · max_j Σ_k |b_kj|``, and so is every product.  :func:`int_matmul`
checks that bound (``max|a|`` from the data, the column sums of ``|b|`` from the caller, who
computes them once per weight matrix) and falls back to int64 otherwise.

Float products (float mode).  OpenBLAS computes a row of ``a @ b`` with code that depends on the
shape of the call and on the row's place in it (measured on OpenBLAS 0.3.23: with Haswell
kernels, padding the rows to a multiple of 8 was enough for any row count; with the
SkylakeX/Cooperlake kernels an AMD EPYC host selects, calls of 8 or 16 rows round differently
from the same rows in a longer call, and with 804 output columns a row's result depends on its
place in the call).  So :func:`rows_matmul` never lets either vary between the two evaluation
orders: it computes a float static synapse group one token at a time — each token's batch rows
one BLAS call of shape [⌈B/8⌉·8, K] × [K, N], sequence i at row i, zero rows padding it (one
stacked ``np.matmul`` of the T tokens' blocks, which numpy runs as T calls of that shape) — so
evaluating a token alone ([B, n]) or with the rest of its sequence ([B·T, n]) gives
bit-identical rows.  That is the reference layout; where it is not needed, one call is faster
(one BLAS call instead of T per group, 10–15 % of a float run of the few-shot model):
:func:`one_call_exact` tries, once per shape and process, whether a single call of all the
chunk's rows against the stacked weights of every group leaving a population gives the
reference bits on this BLAS, and the interpreter uses it only where it does (with the Haswell
kernels every shape we tried does; elsewhere the reference layout stays).  The heads' float
reductions (K·q over d, V·a over the slots) use the same idea along the other axis
(:func:`token_matmul`): each sequence's K·q and V·a is W·Aᵀ with the plastic weights W as
they are stored and token t as column t mod 8 of a BLAS call of fixed shape [r, k] × [k, 8]
(the columns of tokens not being computed are zero), so a token's scores and read come out the
same whether it is evaluated alone, in a chunk or with the whole sequence — several times
faster than the einsums they replace, whose per-dot-product loop was the cost, and a streaming
step copies no weights.  For a chunk of several tokens one call per sequence ([r, k] × [k, n])
is faster again; :func:`whole_call_exact` checks it the same way as :func:`one_call_exact`,
and the blocks stay where it does not agree (the transposed form A · Wᵀ, which would need no
copy of its result, does not agree with the blocks here).  Every result is C-contiguous:
numpy's own reductions round a strided axis differently from a contiguous one, so a layout
that depended on the chunk would leak into, e.g., the row-sum divide's Σa.
``tests/semantics/test_products.py`` checks these properties on the installed BLAS for several
shapes, batch sizes and chunkings.

Allocator.  The interpreter's arrays are a few hundred KiB to a few MiB.  glibc serves such blocks
by ``mmap`` until a large block has been freed once (its *dynamic* threshold) and returns freed
heap memory to the system as soon as 128 KiB are free at the top, so a NumPy expression with a few
temporaries of that size page-faults its memory in again and again (measured: the K rule on a
[64, 21, 64] chunk 4.4 ms, 1.0 ms without the churn).  :func:`tune_allocator` sets the thresholds
to the values glibc's own dynamic scheme converges to after the first 32 MiB block is freed
(mmap above 32 MiB, trim above 64 MiB): the process keeps up to 64 MiB of freed heap for reuse.
It is called once, by the first interpreter; results never depend on it.
"""
from __future__ import annotations

import ctypes
import sys

import numpy as np

F64_EXACT = 2**53  # integers of magnitude below this are exact in float64
ROW_BLOCK = 8  # a token's rows of a float product are padded to a multiple of this
TOKEN_BLOCK = 8  # tokens per BLAS call of the heads' float products (token_matmul)


def absmax(x: np.ndarray) -> int | float:
    """max |x| (0 for an empty array), without a temporary array."""
    if x.size == 0:
        return 0
    if x.dtype.kind in "iu":  # (Python ints: -min of int64 would overflow at -2**63)
        return max(-int(x.min()), int(x.max()))
    return max(-x.min(), x.max())


def rows_matmul(a: np.ndarray, b: np.ndarray, batch: int | None = None) -> np.ndarray:
    """``a @ b`` in float64 for a [M, K] and b [K, N], computed one token at a time: ``a``'s rows
    are ``batch`` sequences × M/batch tokens (row ``i·T + t``; default: one token, M = batch), and
    each token's ``batch`` rows are one BLAS call of the same shape [ROW_BLOCK·⌈batch/ROW_BLOCK⌉,
    K] × [K, N] (zero rows pad it), with sequence i at row i — so a token's results do not depend
    on how many tokens are computed with it (see the module docstring)."""
    a = np.asarray(a, np.float64)
    M, K = a.shape
    batch = M if batch is None else batch
    if batch == 0 or M == 0:
        return np.zeros((M, b.shape[-1]), np.float64)
    T = M // batch
    if T * batch != M:
        raise ValueError(f"{M} rows are not {batch} sequences of whole tokens")
    N = b.shape[-1]
    if batch % ROW_BLOCK == 0:  # no padding: strided views, BLAS reads and writes in place
        res = np.empty((batch, T, N), np.float64)
        np.matmul(a.reshape(batch, T, K).transpose(1, 0, 2), b, out=res.transpose(1, 0, 2))
        return res.reshape(M, N)
    Bp = -(-batch // ROW_BLOCK) * ROW_BLOCK
    blocks = np.zeros((T, Bp, K), np.float64)
    blocks[:, :batch] = a.reshape(batch, T, K).transpose(1, 0, 2)
    out = np.matmul(blocks, np.ascontiguousarray(b, np.float64))  # T calls of [Bp, K] x [K, N]
    return out[:, :batch].transpose(1, 0, 2).reshape(M, -1)


def _same_bits(x: np.ndarray, y: np.ndarray) -> bool:
    return bool(np.array_equal(x.view(np.int64), y.view(np.int64)))


def _checked(cache: dict, key: tuple, matmul, probe) -> bool:
    """``probe(matmul)`` (does the fast layout give the reference bits on random data?), run once
    per key and remembered for the process; a test's own ``matmul`` is tried, never remembered."""
    if matmul is not None:
        return probe(matmul)
    if key not in cache:
        cache[key] = probe(np.matmul)
    return cache[key]


_ONE_CALL: dict = {}  # (batch, T, K, widths) -> whether one BLAS call gives the per-token bits


def one_call_exact(batch: int, T: int, K: int, widths: tuple, matmul=None) -> bool:
    """Whether, on the installed BLAS, one call ``a @ b`` of shape [batch·T, K] × [K, ΣN] gives
    every row of every column block ``widths`` bit for bit as :func:`rows_matmul` gives it (one
    token at a time, one block at a time: the reference layout).  Tried once per shape on random
    data and remembered for the process: the rounding of a BLAS row depends on the code path the
    shape selects, never on the values (no data-dependent branches), so a shape that agrees on
    random normals agrees on any input.  Assumes the BLAS configuration (kernels, thread count)
    is not changed while the process runs.  ``matmul`` exists so that tests can give a BLAS that
    disagrees."""
    def probe(mm) -> bool:
        rng = np.random.default_rng(0)
        a = rng.standard_normal((batch * T, K))
        b = rng.standard_normal((K, sum(widths)))
        one, c = mm(a, b), 0
        for w in widths:
            if not _same_bits(one[:, c:c + w],
                              rows_matmul(a, np.ascontiguousarray(b[:, c:c + w]), batch)):
                return False
            c += w
        return True
    key = (int(batch), int(T), int(K), tuple(int(w) for w in widths))
    return _checked(_ONE_CALL, key, matmul, probe)


def token_matmul(W: np.ndarray, a: np.ndarray, t0: int,
                 visible: np.ndarray | None = None) -> np.ndarray:
    """``a @ Wᵀ`` per sequence for the tokens t0 … t0+n−1: ``W`` [B, r, k] (a plastic weight
    array in its own C order: K [B, T_max, d] or V [B, d_v, T_max]), ``a`` [B, n, k] (queries or
    slot outputs) → [B, n, r].  The reference layout: each sequence's product is computed as
    W · Aᵀ in calls of shape [r, k] × [k, TOKEN_BLOCK] where token t is column t mod
    TOKEN_BLOCK of its block (the other columns zero or other tokens'), so a token's result does
    not depend on which tokens are computed with it (see the module docstring); the big operand W
    is never copied, so one token (a streaming step) costs little.  Where
    :func:`whole_call_exact` has found that one call per sequence ([r, k] × [k, n]) gives the
    same bits for this shape, that call is made instead (several times faster for a chunk).
    ``visible`` [n, k] (bool): the entries of ``a`` to use, the others taken as zero."""
    B, n, k = a.shape
    if n > 1 and whole_call_exact(B, W.shape[1], k, n, t0):
        return _whole_call(W, a, visible)
    return _token_blocks(W, a, t0, visible)


def _whole_call(W: np.ndarray, a: np.ndarray, visible: np.ndarray | None,
                matmul=np.matmul) -> np.ndarray:
    """A · Wᵀ per sequence in one call, computed as W · Aᵀ as the blocks are (the other
    orientation, A · Wᵀ, rounds otherwise on OpenBLAS's Haswell kernels), made C-ordered."""
    A = np.ascontiguousarray(a, np.float64) if visible is None else \
        np.where(visible, a, 0.0)  # (C order, +0.0 where hidden: as the blocks' copy)
    out = matmul(np.ascontiguousarray(W, np.float64), A.transpose(0, 2, 1))  # [B, r, n]
    return np.ascontiguousarray(out.transpose(0, 2, 1))


def _token_blocks(W: np.ndarray, a: np.ndarray, t0: int,
                  visible: np.ndarray | None) -> np.ndarray:
    """The reference layout of :func:`token_matmul`."""
    B, n, k = a.shape
    R = TOKEN_BLOCK
    lo = t0 - t0 % R
    nb = -(-(t0 + n - lo) // R)
    if n == nb * R and lo == t0 and visible is None and a.dtype == np.float64 \
            and a.flags.c_contiguous:
        blocks = a  # whole blocks of a's own rows, laid out as the zero-padded copy would be
    else:
        blocks = np.zeros((B, nb * R, k), np.float64)
        blocks[:, t0 - lo:t0 - lo + n] = a
        if visible is not None:
            np.copyto(blocks[:, t0 - lo:t0 - lo + n], 0.0, where=~visible)
    Wc = np.ascontiguousarray(W, np.float64)
    # B·nb calls of [r, k] x [k, R] (the block transposed: a view, always the same layout)
    out = np.matmul(Wc[:, None], blocks.reshape(B, nb, R, k).transpose(0, 1, 3, 2))
    # C order: what follows must not see the layout (numpy's sum, for one, rounds a strided
    # axis differently from a contiguous one)
    return np.ascontiguousarray(out.transpose(0, 1, 3, 2).reshape(B, nb * R, -1)
                                [:, t0 - lo:t0 - lo + n])


_WHOLE_CALL: dict = {}  # (B, r, k, n, t0 mod TOKEN_BLOCK) -> whether one call gives the bits


def whole_call_exact(B: int, r: int, k: int, n: int, t0: int, matmul=None) -> bool:
    """Whether, on the installed BLAS, :func:`token_matmul`'s one call per sequence for n tokens
    from t0 gives every token's row bit for bit as the reference blocks do.  Tried once per shape
    and process on random data (like :func:`one_call_exact`, whose reasons hold here too);
    ``matmul`` exists so that tests can give a BLAS that disagrees."""
    def probe(mm) -> bool:
        rng = np.random.default_rng(0)
        W = rng.standard_normal((B, r, k))
        a = rng.standard_normal((B, n, k))
        return _same_bits(_whole_call(W, a, None, mm), _token_blocks(W, a, t0, None))
    key = (int(B), int(r), int(k), int(n), int(t0) % TOKEN_BLOCK, TOKEN_BLOCK)
    return _checked(_WHOLE_CALL, key, matmul, probe)


def int_matmul(a: np.ndarray, b: np.ndarray, b_colsum: int, a_max: int | None = None,
               limit: int | float = F64_EXACT, b_int: np.ndarray | None = None) -> np.ndarray:
    """Exact ``a @ b`` of integer-valued arrays (int64, or float64 holding integers), as int64.

    ``b_colsum`` bounds ``max_j Σ_k |b_kj|`` (per matrix of a stack); ``a_max`` bounds ``max|a|``
    (computed from ``a`` if None).  If ``a_max · b_colsum < limit`` (2**53) the product runs in
    float64 BLAS, exact by the bound (module docstring); otherwise in int64 (``b_int``: b as int64,
    if the caller keeps one).  ``limit`` exists so that tests can force either branch.
    """
    if a_max is None:
        a_max = absmax(a)
    if float(a_max) * float(b_colsum) < limit:
        af = a if a.dtype == np.float64 else a.astype(np.float64)
        bf = b if b.dtype == np.float64 else b.astype(np.float64)
        return np.matmul(af, bf).astype(np.int64)
    bi = b_int if b_int is not None else np.asarray(b).astype(np.int64)
    return np.matmul(np.asarray(a).astype(np.int64), bi)


def uses_blas(a_max: int | float, b_colsum: int | float, limit: int | float = F64_EXACT) -> bool:
    """Whether :func:`int_matmul` takes the float64 BLAS branch for these bounds."""
    return float(a_max) * float(b_colsum) < limit


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc mallopt parameters
_tuned = False


def tune_allocator() -> bool:
    """Set glibc's mmap / trim thresholds once (see the module docstring).  False where there is
    no glibc (then nothing changes)."""
    global _tuned
    if _tuned:
        return True
    _tuned = True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        ok = libc.mallopt(_M_MMAP_THRESHOLD, 32 * 2**20) and libc.mallopt(_M_TRIM_THRESHOLD,
                                                                         64 * 2**20)
    except (OSError, AttributeError):
        return False
    return bool(ok)
