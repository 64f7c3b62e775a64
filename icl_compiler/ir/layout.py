"""Token layouts: where the batch, the sequence and the features of a tensor live.

A value that the compiler maps to neurons is a function of the token: at batch b and position t
its elements are computed from the input at (b, t) only (*token-local*).  Exporters put those
elements anywhere: ``[B, T, d]``, ``[B, H, T, d_h]``, ``[T, B·H, d_h]`` (torch's
``nn.MultiheadAttention``), ``[B·T, d]`` (Hugging Face's Conv1D), ``[B, d, T]`` for keys, ...
A :data:`Layout` says, for every axis of the value, which *factors* it is made of (row-major,
outermost first):

* ``B`` the batch (absent when the export fixed the batch to 1),
* ``T`` the token's position, ``S`` the key position of a pairwise (attention-score) value,
* ``F`` a feature factor of a static size (``dup=True``: a broadcast copy the value does not vary
  along, e.g. K heads repeated for grouped-query attention).

The *feature vector* of a token is the value's elements at fixed (b, t) in row-major order of the
value's own axes with the B/T factors taken out; every token-local value is an affine map of
populations onto that vector.  Layouts are derived structurally (:func:`reshape`,
:func:`transpose`, ...); the maps between feature vectors are computed *numerically* by running
the op on probe tensors (:func:`index_map` for data movement, :func:`linear_map` for linear
ops), so any op that moves or linearly combines features is handled by what it computes, not by
its name.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Sequence

import numpy as np
import sympy

from .symbolic import Dim, dims_equal, is_sym

B, T, S, F = "B", "T", "S", "F"
TIME = (T, S)


@dataclass(frozen=True)
class Factor:
    kind: str  # B | T | S | F
    size: Dim
    dup: bool = False  # F: broadcast copy

    def __repr__(self) -> str:
        return f"{self.kind}{'' if self.kind != F else self.size}{'*' if self.dup else ''}"


Axis = tuple  # tuple[Factor, ...]
Layout = tuple  # tuple[Axis, ...]


class LayoutError(ValueError):
    """The op does not keep the value token-local (the message says why; ``code`` names the
    kind of problem for diagnosis: layout | data_mask | swap | sum_positions | op)."""

    def __init__(self, message: str, code: str = "layout"):
        super().__init__(message)
        self.code = code


# -- basics ----------------------------------------------------------------------------------

def _eq(a: Dim, b: Dim) -> bool:
    return dims_equal(a, b)


def _prod(xs) -> Dim:
    p: Dim = 1
    for x in xs:
        p = p * x
    return sympy.expand(p) if isinstance(p, sympy.Basic) else p


def axis_size(axis: Axis) -> Dim:
    return _prod(f.size for f in axis)


def kinds(layout: Layout) -> list[str]:
    return [f.kind for ax in layout for f in ax]


def has(layout: Layout, kind: str) -> bool:
    return kind in kinds(layout)


def feature_factors(layout: Layout) -> list[Factor]:
    return [f for ax in layout for f in ax if f.kind == F]


def n_features(layout: Layout) -> int:
    n = 1
    for f in feature_factors(layout):
        n *= int(f.size)
    return n


def is_feature_axis(axis: Axis) -> bool:
    return all(f.kind == F for f in axis)


def matches(layout: Layout, shape: Sequence[Dim]) -> bool:
    return len(layout) == len(shape) and all(_eq(axis_size(a), d) for a, d in zip(layout, shape))


def token_input(shape: Sequence[Dim]) -> Layout:
    """The layout of the model's data input: token ids [B, T] or features [B, T, F...]."""
    if len(shape) < 2:
        raise LayoutError(f"the model input must be [batch, seq, ...], got rank {len(shape)}")
    b = () if (not is_sym(shape[0]) and int(shape[0]) == 1) else (Factor(B, shape[0]),)
    lay = [b, (Factor(T, shape[1]),)]
    for d in shape[2:]:
        if is_sym(d):
            raise LayoutError(f"the model input has a dynamic feature axis {d}")
        lay.append(() if int(d) == 1 else (Factor(F, int(d)),))
    return tuple(lay)


def to_json(layout: Layout) -> list:
    """A JSON-able layout: axes of [kind, size, dup] (symbolic sizes as their text)."""
    return [[[f.kind, f.size if not is_sym(f.size) else str(f.size), f.dup] for f in ax]
            for ax in layout]


def from_json(data) -> Layout:
    from .symbolic import dim_from_json

    out = []
    for ax in data:
        fs = []
        for kind, size, dup in ax:
            if kind not in (B, T, S, F):
                raise ValueError(f"bad layout factor kind {kind!r}")
            fs.append(Factor(kind, dim_from_json("$" + size) if isinstance(size, str)
                             else int(size), bool(dup)))
        out.append(tuple(fs))
    return tuple(out)


def output_view(tv: np.ndarray, layout: Layout, batch: int, seq: int) -> np.ndarray:
    """A program output [B, T, n] (one token's features per row) in the ONNX output's layout.

    A layout without a batch factor (an export with batch 1) gets one such array per sequence,
    stacked on its size-1 leading axis (so B sequences give [B, ...])."""
    # the run's batch and length, whatever sizes the export had
    layout = tuple(tuple(replace(f, size=batch) if f.kind == B else replace(f, size=seq)
                         if f.kind == T else f for f in ax) for ax in layout)
    if has(layout, B):
        return from_token_view(tv, layout, {})
    parts = [from_token_view(tv[b:b + 1], layout, {}) for b in range(tv.shape[0])]
    if parts and parts[0].ndim and parts[0].shape[0] == 1:
        return np.concatenate(parts, axis=0)
    return np.stack(parts)


def fmt(layout: Layout) -> str:
    return "[" + ", ".join("·".join(map(repr, ax)) or "1" for ax in layout) + "]"


# -- structural transfer functions -------------------------------------------------------------

def transpose(layout: Layout, perm: Sequence[int] | None) -> Layout:
    perm = list(reversed(range(len(layout)))) if perm is None else [int(p) % len(layout)
                                                                     for p in perm]
    return tuple(layout[p] for p in perm)


def unsqueeze(layout: Layout, axes: Sequence[int]) -> Layout:
    rank = len(layout) + len(axes)
    lay = list(layout)
    for ax in sorted(int(a) % rank for a in axes):
        lay.insert(ax, ())
    return tuple(lay)


def squeeze(layout: Layout, axes: Sequence[int] | None, shape: Sequence[Dim]) -> Layout:
    if axes is None:
        axes = [i for i, d in enumerate(shape) if not is_sym(d) and int(d) == 1]
    drop = {int(a) % len(layout) for a in axes}
    for a in drop:
        if any(f.kind != F for f in layout[a]):
            raise LayoutError("Squeeze removes the batch or sequence axis")
    return tuple(ax for i, ax in enumerate(layout) if i not in drop)


def _split_factor(f: Factor, outer: int) -> tuple[Factor, Factor]:
    return replace(f, size=outer), replace(f, size=int(f.size) // outer)


def reshape(layout: Layout, out_shape: Sequence[Dim]) -> Layout:
    """Regroup the row-major factor sequence into the output dims.  Feature factors may be split
    and merged freely; B/T/S factors only merged (a reshape that splits the batch or the sequence
    axis is not token-local)."""
    seq = [f for ax in layout for f in ax if not (f.kind == F and int(f.size) == 1)]
    out: list[Axis] = []
    i = 0
    for d in out_shape:
        axis: list[Factor] = []
        rem = d
        while not _is_one(rem):
            if i >= len(seq):
                raise LayoutError(f"reshape to {_fmt_shape(out_shape)} does not fit the layout "
                                  f"{fmt(layout)}")
            f = seq[i]
            q = _quotient(rem, f.size)
            if q is None and f.kind == F and not is_sym(rem) and int(f.size) % int(rem) == 0:
                outer, inner = _split_factor(f, int(rem))  # the dim takes the outer part
                axis.append(outer)
                seq[i] = inner
                break
            if q is None:
                what = {B: "batch", T: "sequence", S: "sequence"}.get(f.kind)
                raise LayoutError(f"reshape to {_fmt_shape(out_shape)} "
                                  + (f"splits the {what} axis" if what else
                                     f"cuts a feature axis of size {f.size} unevenly"))
            axis.append(f)
            rem = q
            i += 1
        out.append(tuple(axis))
    if i != len(seq):
        raise LayoutError(f"reshape to {_fmt_shape(out_shape)} does not fit the layout "
                          f"{fmt(layout)}")
    return tuple(out)


def _fmt_shape(shape) -> str:
    return "[" + ", ".join(map(str, shape)) + "]"


def _is_one(d: Dim) -> bool:
    return not is_sym(d) and int(d) == 1


def _is_zero(d: Dim) -> bool:
    return not is_sym(d) and int(d) == 0


def _quotient(a: Dim, b: Dim) -> Dim | None:
    """a / b when b divides a exactly (ints, or polynomials in the dim symbols with integer
    coefficients, e.g. batch*seq / seq = batch); else None."""
    if not is_sym(a) and not is_sym(b):
        a, b = int(a), int(b)
        return a // b if b and a % b == 0 else None
    q = sympy.cancel(sympy.sympify(a) / sympy.sympify(b))
    num, den = sympy.fraction(q)
    if not (den.is_number and den == 1):
        return None
    if q.is_number:
        return int(q) if q.is_Integer else None
    try:
        coeffs = sympy.Poly(num, *sorted(num.free_symbols, key=str)).coeffs()
    except sympy.PolynomialError:
        return None
    return q if all(c.is_Integer for c in coeffs) else None


def broadcast(operands: Sequence[tuple[Layout | None, Sequence[Dim]]],
              out_shape: Sequence[Dim]) -> Layout:
    """The output layout of an elementwise op.  ``operands``: (layout, shape) per input, layout
    None for constant / position-only inputs (which then may only broadcast along axes that the
    layouts do not determine)."""
    rank = len(out_shape)
    out: list[Axis | None] = [None] * rank
    for lay, shape in operands:
        if lay is None:
            continue
        off = rank - len(shape)
        for j, (ax, d) in enumerate(zip(lay, shape)):
            k = off + j
            if not is_sym(d) and int(d) == 1 and not ax:
                continue  # broadcast here
            if out[k] is None:
                out[k] = ax
            elif out[k] != ax:
                a, b = out[k], ax
                if all(f.kind == F for f in a + b) and _eq(axis_size(a), axis_size(b)):
                    continue  # same features, grouped differently: the index maps tell
                raise LayoutError(f"operands disagree on axis {k}: {fmt((a,))} vs {fmt((b,))}")
    res = []
    for k, ax in enumerate(out):
        d = out_shape[k]
        if ax is None:
            if is_sym(d):
                raise LayoutError(f"a token value is broadcast along the dynamic axis {d}")
            ax = () if int(d) == 1 else (Factor(F, int(d), dup=True),)
        res.append(ax)
    return tuple(res)


def with_axis(layout: Layout, axis: int, new: Axis, what: str) -> Layout:
    """Replace a feature axis (Slice/Gather/Split/Concat/Pad along it)."""
    axis = int(axis) % len(layout)
    if not is_feature_axis(layout[axis]):
        raise LayoutError(f"{what} along the {'batch' if has((layout[axis],), B) else 'sequence'} "
                          "axis is not token-local")
    lay = list(layout)
    lay[axis] = new
    return tuple(lay)


def feature_axis(size: Dim) -> Axis:
    if is_sym(size):
        raise LayoutError(f"a feature axis has the dynamic size {size}")
    return () if int(size) == 1 else (Factor(F, int(size)),)


# -- concrete views ------------------------------------------------------------------------------

def factor_shape(layout: Layout, env: dict[str, int]) -> list[int]:
    from .symbolic import resolve

    return [int(resolve(f.size, env)) for ax in layout for f in ax]


def token_view(arr: np.ndarray, layout: Layout, env: dict[str, int]) -> np.ndarray:
    """``arr`` (a concrete value with this layout) as [B, T, (S,) n_features]: the feature
    vector of every token (B = 1 when the layout has no batch factor)."""
    fshape = factor_shape(layout, env)
    ks = kinds(layout)
    x = np.asarray(arr).reshape(fshape)
    order = [ks.index(k) for k in (B, T, S) if k in ks]
    rest = [i for i, k in enumerate(ks) if k == F]
    x = np.transpose(x, order + rest)
    lead = [fshape[i] for i in order]
    x = x.reshape(lead + [-1] if rest else lead + [1])
    if B not in ks:
        x = x[None]
    return x


def from_token_view(tv: np.ndarray, layout: Layout, env: dict[str, int]) -> np.ndarray:
    """Inverse of :func:`token_view`: [B, T, (S,) n] → an array with this layout's shape."""
    fshape = factor_shape(layout, env)
    ks = kinds(layout)
    if B not in ks:
        tv = tv[0]
    order = [ks.index(k) for k in (B, T, S) if k in ks]
    rest = [i for i, k in enumerate(ks) if k == F]
    x = tv.reshape([fshape[i] for i in order] + [fshape[i] for i in rest])
    inv = np.argsort(order + rest)
    x = np.transpose(x, inv)
    shape = []
    pos = 0
    for ax in layout:
        n = 1
        for _ in ax:
            n *= fshape[pos]
            pos += 1
        shape.append(n)
    return x.reshape(shape)


# -- numeric maps ----------------------------------------------------------------------------------

def index_map(fn: Callable[[list[np.ndarray]], np.ndarray], inputs: Sequence[tuple],
              out_layout: Layout, env: dict[str, int]) -> np.ndarray:
    """The feature map of a pure data-movement op, computed by running it on probe tensors.

    ``inputs``: (layout, shape) of each token-local input, or (None, array) for a constant input
    passed through unchanged.  Returns ``idx`` [n_out]: output feature j is the concatenated input
    feature ``idx[j]`` (inputs in order), or −1 where the op writes a value that depends on no
    input (padding; its value is then ``fn`` of all-zero inputs, see :func:`constant_part`).
    Raises LayoutError when the op moves data across tokens or computes something other than a
    copy."""
    sizes = [n_features(lay) for lay, _ in inputs if lay is not None]
    n_tot = sum(sizes)
    probes, off = [], 0
    for lay, shp in inputs:
        if lay is None:
            probes.append(shp)
            continue
        n = n_features(lay)
        nb, nt = _bt(lay, env)
        ids = (np.arange(n)[None, None, :] + off + 1
               + n_tot * (np.arange(nt)[None, :, None] + nt * np.arange(nb)[:, None, None]))
        probes.append(from_token_view(ids.astype(np.float64), lay, env))
        off += n
    out = np.asarray(fn(probes), np.float64)
    tv = token_view(out, out_layout, env)
    nb, nt = tv.shape[0], tv.shape[1]
    ids = np.rint(tv).astype(np.int64)
    if not np.array_equal(ids, tv):
        raise LayoutError("the op computes new values, not a copy of its input's elements")
    src = ids - 1
    feat = np.where(ids > 0, src % max(n_tot, 1), -1)
    tok = np.where(ids > 0, src // max(n_tot, 1), -1)
    want = np.arange(nt)[None, :, None] + nt * np.arange(nb)[:, None, None]
    if np.any((ids > 0) & (tok != want)):
        raise LayoutError("the op moves data between tokens")
    m = feat[0, 0]
    if not np.all(feat == m):
        raise LayoutError("the op moves features differently at different tokens")
    return m


def _bt(layout: Layout, env: dict[str, int]) -> tuple[int, int]:
    from .symbolic import resolve

    nb = int(resolve(next(f.size for ax in layout for f in ax if f.kind == B), env)) \
        if has(layout, B) else 1
    nt = int(resolve(next(f.size for ax in layout for f in ax if f.kind == T), env))
    return nb, nt


def linear_map(fn: Callable[[np.ndarray], np.ndarray], in_layout: Layout, out_layout: Layout,
               env: dict[str, int], *, check: bool = True, seed: int = 0
               ) -> tuple[np.ndarray, np.ndarray]:
    """(M [n_out, n_in], C [B, T, n_out]) with f(x)_{b,t} = M x_{b,t} + C_{b,t} at every token:
    M from one-hot feature vectors (one per token position, the constant part subtracted at its
    position), checked on a random input.  Raises LayoutError when ``fn`` is not affine in x
    with the same M at every token."""
    n_in = n_features(in_layout)
    nb, nt = _bt(in_layout, env)
    per = nb * nt

    def run(x: np.ndarray) -> np.ndarray:
        return token_view(np.asarray(fn(from_token_view(x, in_layout, env)), np.float64),
                          out_layout, env)

    C = run(np.zeros((nb, nt, n_in)))
    Cf = C.reshape(per, -1)
    cols = []
    for start in range(0, n_in, per):
        idx = np.arange(start, min(start + per, n_in))
        x = np.zeros((per, n_in))
        x[np.arange(len(idx)), idx] = 1.0
        y = run(x.reshape(nb, nt, n_in)).reshape(per, -1)
        cols.append((y[:len(idx)] - Cf[:len(idx)]).T)
    M = np.concatenate(cols, axis=1) if cols else np.zeros((Cf.shape[1], 0))
    if check:
        rng = np.random.default_rng(seed)
        x = rng.normal(size=(nb, nt, n_in))
        want = x @ M.T + C
        y = run(x)
        scale = max(1.0, float(np.max(np.abs(want))) if want.size else 1.0)
        if not np.allclose(y, want, rtol=1e-6, atol=1e-9 * scale):
            raise LayoutError("the op is not an affine function of each token's features with "
                              "the same weights at every position")
    return M, C
