"""The lowering's product neurons: products of two token values (gated MLPs: act(x·W1) ⊙ (x·W3))
and linear maps whose weights change with the position (rotary embeddings: q ⊙ cos_t +
rotate(q) ⊙ sin_t, in any layout).

Both are found by probing what the op computes, never by its op sequence:

* an op with two token inputs a and b is *elementwise bilinear* when y = c ⊙ (M_a a) ⊙ (M_b b)
  with M_a, M_b found by probing each input with the other one set to ones, c = y(1, 1), and the
  identity checked on random inputs; it becomes a product population whose port 0 integrates
  M_a·a and port 1 M_b·b / c (both affine forms, so no extra neurons carry the operands);
* an op with one token input x and position-dependent inputs that is linear in x with weights
  M_t that change with the position t: M_t is probed at every position at once (a one-hot
  feature at every token), split into its constant entries (ordinary synapses) and its varying
  ones; each varying entry (i, j) of output i becomes one product neuron whose operand a selects
  x_j and whose operand b is M_t[i, j] from a per-position table: the one-hot position input
  through a Dense, like a positional embedding.  K written into the plastic synapses is then
  already rotated.
"""
from __future__ import annotations

import numpy as np

from ...ir import layout as L
from ...ir.graph import Node
from ...ir.neuro import NeuronModel
from ..classify import Kind
from .forms import Affine, _op, _short

BILINEAR_OPS = ("Mul", "MatMul", "Einsum")


class PerPosition(Exception):
    """Internal: the op is not linear in its token input with the same weights at every position
    (it may be with weights that change with the position; the message is the refusal if not)."""


class ProductOps:
    """Mixed into :class:`~.lowerer.Lowerer`."""

    def materialise_product(self, fa: Affine, fb: Affine, name: str, layer: int | None) -> str:
        """A product population out = (fa) ⊙ (fb): port 0 integrates fa (with its bias), port 1
        fb.  A bias on fb alone swaps the operands; biases on both give fb a graded population."""
        if fb.bias is not None and np.any(fb.bias):
            if fa.bias is None or not np.any(fa.bias):
                fa, fb = fb, fa
            else:
                pb = self.materialise_form(fb, name + ".b", NeuronModel.GRADED, layer)
                fb = Affine(fb.n, [(pb, np.eye(fb.n))], None, selection=True)
        pop = self.new_pop(name, fa.n, NeuronModel.PRODUCT, layer)
        for port, form in ((0, fa), (1, fb)):
            merged: dict[str, np.ndarray] = {}
            for p, W in form.terms:
                merged[p] = merged[p] + W if p in merged else W
            if not merged:  # an operand without neurons (a constant): never a product
                raise ValueError("a product operand without a population")
            for p, W in merged.items():
                self.connect(p, pop, W, port=port)
        if fa.bias is not None and np.any(fa.bias):
            self.ng.pop(pop).bias = np.asarray(fa.bias, np.float64)
        return pop

    # -- products of two token values -----------------------------------------------------------
    def _bilinear(self, node: Node, layer) -> bool:
        """Lower an elementwise product of two token values (see the module docstring); False if
        the op is not one (the caller then reports it)."""
        toks = self._tokens(node)
        if _op(node) not in BILINEAR_OPS or len(toks) != 2 or len(node.outputs) != 1:
            return False
        o = node.outputs[0]
        oi = self.info.get(o)
        if oi is None or oi.kind != Kind.TOKEN:
            return False
        env = self.env()
        out_lay = oi.layout
        base = self._feed(node, env, set(toks))
        ones = {k: np.ones_like(base[k]) for k in toks}

        def call(xs_tok: dict) -> np.ndarray:
            xs = list(base)
            for k, x in xs_tok.items():
                xs[k] = x
            return self._eval(node, xs, env, 0)

        maps = []
        for k, other in ((toks[0], toks[1]), (toks[1], toks[0])):
            lay = self.info[node.inputs[k]].layout
            try:
                M, C = L.linear_map(lambda x, k=k, other=other: call({k: x, other: ones[other]}),
                                    lay, out_lay, env)
            except L.LayoutError:
                return False
            if np.any(C):
                return False
            maps.append(M)
        Ma, Mb = maps
        c = L.token_view(call(ones), out_lay, env)[0, 0]
        with np.errstate(divide="ignore", invalid="ignore"):
            inv = np.where(c != 0, 1.0 / c, 0.0)
        Mb = Mb * inv[:, None]
        rng = np.random.default_rng(2)
        xs, views = {}, []
        for k in toks:
            lay = self.info[node.inputs[k]].layout
            nb, nt = L._bt(lay, env)
            x = rng.normal(size=(nb, nt, L.n_features(lay)))
            xs[k] = L.from_token_view(x, lay, env)
            views.append(x)
        y = L.token_view(call(xs), out_lay, env)
        want = (views[0] @ Ma.T) * (views[1] @ Mb.T)
        if not np.allclose(y, want, rtol=1e-6, atol=1e-9 * max(1.0, float(np.abs(want).max()))):
            return False
        n = L.n_features(out_lay)
        va, vb = (node.inputs[k] for k in toks)
        fa = self._combine(node, [(self.form_of(va), Ma, va)], n)
        fb = self._combine(node, [(self.form_of(vb), Mb, vb)], n)
        self.set_pop(o, self.materialise_product(fa, fb, _short(o), layer))
        return True

    # -- weights that change with the position ----------------------------------------------------
    def _per_position(self, node: Node, k: int, j: int, fn, in_lay, out_lay, env,
                      why: str) -> Affine:
        """Σ_t-dependent M_t·x as ordinary synapses (constant entries) plus product neurons
        (varying entries, operand b from a per-position table); see the module docstring.
        ``fn(x)`` is the op's output at input x minus its output at x = 0; ``why``: the
        refusal if the op is not linear at each position either."""
        n_in, n_out = L.n_features(in_lay), L.n_features(out_lay)
        nb, nt = L._bt(in_lay, env)

        def run(x: np.ndarray, f=fn, e=env) -> np.ndarray:
            return L.token_view(np.asarray(f(L.from_token_view(x, in_lay, e)), np.float64),
                                out_lay, e)

        Ms = np.zeros((nt, n_out, n_in))
        for i in range(n_in):
            x = np.zeros((nb, nt, n_in))
            x[:, :, i] = 1.0
            Ms[:, :, i] = run(x)[0]
        rng = np.random.default_rng(3)
        x = rng.normal(size=(nb, nt, n_in))
        want = np.einsum("toi,bti->bto", Ms, x)
        if not np.allclose(run(x), want, rtol=1e-6,
                           atol=1e-9 * max(1.0, float(np.abs(want).max()))):
            raise self.err(node, why + " (nor at each position with its own weights)")
        if self.seq_sym is not None:  # position t must not depend on the sequence length
            T2 = max(1, nt // 2)
            env2 = self.env(T2)
            zero = set(self._tokens(node))
            base2 = self._feed(node, env2, zero)
            y0 = self._eval(node, base2, env2, j)

            def fn2(x, base2=base2, y0=y0):
                xs = list(base2)
                xs[k] = x
                return self._eval(node, xs, env2, j) - y0

            x2 = rng.normal(size=(nb, T2, n_in))
            if not np.allclose(run(x2, fn2, env2), np.einsum("toi,bti->bto", Ms[:T2], x2),
                               rtol=1e-6, atol=1e-9 * max(1.0, float(np.abs(x2).max()))):
                raise self.err(node, "a position-dependent weight changes with the sequence "
                                     "length (position t must not depend on later tokens)")
        cap = self.t_max or nt
        if nt < cap:
            raise self.err(node, f"the position-dependent weights cover {nt} positions, fewer "
                                 f"than the context capacity T_max = {cap}",
                           f"compile with --max-context {nt}")
        Ms = Ms[:cap]
        varies = np.any(Ms != Ms[:1], axis=0)
        v = node.inputs[k]
        form_x = self.form_of(v)
        terms: list = []
        bias = None
        static = np.where(varies, 0.0, Ms[0])
        if np.any(static):
            f = self._combine(node, [(form_x, static, v)], n_out)
            terms, bias = list(f.terms), f.bias
        per_row = varies.sum(axis=1)
        for kk in range(int(per_row.max(initial=0))):
            rows = np.nonzero(per_row > kk)[0]
            cols = np.array([np.nonzero(varies[i])[0][kk] for i in rows])
            S = np.zeros((len(rows), n_in))
            S[np.arange(len(rows)), cols] = 1.0
            fa = self._combine(node, [(form_x, S, v)], len(rows))
            fb = Affine(len(rows), [(self._position_pop(node), Ms[:, rows, cols].T.copy())])
            name = _short(node.outputs[j]) + (f".p{kk}" if kk else ".p")
            pop = self.materialise_product(fa, fb, name, None)
            E = np.zeros((n_out, len(rows)))
            E[rows, np.arange(len(rows))] = 1.0
            terms.append((pop, E))
        return Affine(n_out, terms, bias)
