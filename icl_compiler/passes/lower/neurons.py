"""The lowering's ops that need neurons: the token embedding (one-hot token ids through a Dense),
ReLU (graded ReLU neurons), smooth activations (activation neurons), the norms (embedded-core populations) and the plastic attention heads
(k/q/v populations, slot neurons, plastic K/V synapses; DESIGN §4)."""
from __future__ import annotations

import numpy as np

from ...ir import layout as L
from ...ir.graph import Node
from ...ir.neuro import (ActivationParams, Encoding, HeadSpec, Lowering, NeuronModel, NormParams,
                         OffcoreOp, Placement, Role)
from ...ir.ops import ROW_NORMS, with_defaults
from ...semantics.neurons import K_WRITE_RULE, V_WRITE_RULE
from .forms import Affine, _short, _stack


def _sub(a, b):
    if a is None and b is None:
        return None
    return (0 if a is None else a) - (0 if b is None else b)


def _concat(a: Affine, b: Affine) -> Affine:
    """The rows of a, then the rows of b."""
    return a if b.n == 0 else _stack([a, b])


class NeuronOps:
    """Mixed into :class:`~.lowerer.Lowerer`: one ``op_<Op>`` per op that needs neurons."""

    def op_Gather(self, node: Node, layer):
        table, idx = node.inputs
        if idx not in self.ids:
            self._affine(node)  # a selection of features (constant indices)
            return layer
        T = self.consts.get(table)
        if T is None:
            raise self.err(node, "an embedding lookup from a table computed at run time")
        if self.tokens_pop is None:
            self.vocab = T.shape[0]
            self.tokens_pop = self.new_pop("tokens", T.shape[0], NeuronModel.INPUT, None,
                                           placement=Placement.HOST, encoding=Encoding.ONE_HOT)
        elif T.shape[0] != self.vocab:
            raise self.err(node, f"two embedding tables index the token ids with different "
                                 f"vocabularies ({self.vocab} and {T.shape[0]})")
        W = np.ascontiguousarray(np.asarray(T, np.float64).reshape(T.shape[0], -1).T)
        self.forms[node.outputs[0]] = Affine(W.shape[0], [(self.tokens_pop, W)])
        return layer

    def op_Relu(self, node: Node, layer):
        form = self.form_of(node.inputs[0])
        pop = self.materialise_form(form, _short(node.outputs[0]), NeuronModel.GRADED_RELU,
                                    layer)
        self.set_pop(node.outputs[0], pop)
        return layer

    def op_Activation(self, node: Node, layer):
        """A smooth activation (the fuse_activation pass's op): one activation neuron per
        feature, the exact function in float, an integer response fitted by the quantiser."""
        form = self.form_of(node.inputs[0])
        pop = self.materialise_form(form, _short(node.outputs[0]), NeuronModel.ACTIVATION, layer,
                                    act=ActivationParams(fn=node.attrs["fn"]))
        self.set_pop(node.outputs[0], pop)
        return layer

    def op_MaxPool(self, node: Node, layer):
        """Max pooling within a token, exactly: each output's window (found by probing: a
        one-hot feature shows which outputs read it, checked on a random input) is reduced by a
        tournament of max(a, b) = b + relu(a − b): graded ReLU neurons, ⌈log2 w⌉ levels."""
        from ...ir import layout as L

        x, o = node.inputs[0], node.outputs[0]
        if len(node.outputs) > 1 and any(self.t.consumers(v) for v in node.outputs[1:]):
            raise self.err(node, "MaxPool's indices output has no neuron mapping")
        env = self.env()
        in_lay, out_lay = self.info[x].layout, self.info[o].layout
        n_in, n_out = L.n_features(in_lay), L.n_features(out_lay)
        nb, nt = L._bt(in_lay, env)

        def run(v: np.ndarray) -> np.ndarray:
            xs = [L.from_token_view(v, in_lay, env)]
            return L.token_view(self._eval(node, xs, env, 0), out_lay, env)

        windows: list[list[int]] = [[] for _ in range(n_out)]
        per = nb * nt  # one probed feature per token: tokens are independent
        for start in range(0, n_in, per):
            js = np.arange(start, min(start + per, n_in))
            v = np.zeros((per, n_in))
            v[np.arange(len(js)), js] = 1.0
            y = run(v.reshape(nb, nt, n_in)).reshape(per, n_out)
            for r, j in enumerate(js):
                for i in np.nonzero(y[r] == 1.0)[0]:
                    windows[i].append(int(j))
        v = np.random.default_rng(5).normal(size=(nb, nt, n_in))
        want = np.stack([v[..., w].max(-1) if w else np.full(v.shape[:2], np.nan)
                         for w in windows], -1)
        if any(not w for w in windows) or not np.allclose(run(v), want, rtol=0, atol=1e-12):
            raise self.err(node, "this MaxPool is not a maximum over fixed windows of each "
                                 "token's features")
        form = self.form_of(x)
        sel = np.zeros((sum(len(w) for w in windows), n_in))
        owner, r = [], 0
        for i, w in enumerate(windows):
            sel[np.arange(r, r + len(w)), w] = 1.0
            owner += [i] * len(w)
            r += len(w)
        cand = self._combine(node, [(form, sel, x)], len(owner))  # every window's entries
        owner = np.array(owner)
        relus = 0
        while len(owner) > n_out:
            ia, ib, keep, new_owner = [], [], [], []
            for i in range(n_out):
                rows = np.nonzero(owner == i)[0]
                for a, b in zip(rows[0::2], rows[1::2]):
                    ia.append(a)
                    ib.append(b)
                    new_owner.append(i)
                if len(rows) % 2:
                    keep.append(rows[-1])
            A, Bf = cand.rows(np.array(ia)), cand.rows(np.array(ib))
            diff = Affine(len(ia), A.terms + [(p, -W) for p, W in Bf.terms],
                          _sub(A.bias, Bf.bias))
            r_pop = self.materialise_form(diff, _short(o) + f".max{relus}",
                                          NeuronModel.GRADED_RELU, layer)
            relus += 1
            m = Affine(len(ia), Bf.terms + [(r_pop, np.eye(len(ia)))], Bf.bias)
            kept = cand.rows(np.array(keep, dtype=int))
            cand = _concat(m, kept)
            owner = np.array(new_owner + [int(owner[k]) for k in keep])
        order = np.argsort(owner, kind="stable")
        self.forms[o] = cand.rows(order)
        self.token_ops.append({"node": node.onnx_name or node.name, "op": "MaxPool",
                               "lowered_as": "max(a, b) = b + relu(a − b): a tournament of "
                                             "graded ReLU neurons (exact)",
                               "in_features": n_in, "out_features": n_out,
                               "window": max(len(w) for w in windows), "levels": relus,
                               "neurons": int(sum(len(w) - 1 for w in windows))})
        return layer

    def _norm(self, node: Node, layer, kind: str, axis: int = -1):
        x = node.inputs[0]
        lay = self.info[x].layout
        axes = range(int(axis) % len(lay), len(lay))
        n = L.n_features(lay)
        # the norm's axes are trailing feature axes, so their features are the innermost of the
        # token's feature vector: a per-head norm (over d_head of [B, H, T, d_h]) is one norm
        # per run of `tail` consecutive features
        group = L.n_features(tuple(lay[a] for a in axes))
        if group < 1 or n % group:
            raise self.err(node, f"{kind} over {group} of the token's {n} features does not "
                                 "split them into equal groups")
        form = self.form_of(x)
        shape = self.t.values[x].shape
        tail = int(np.prod([int(shape[a]) for a in axes]))  # == group: feature axes only

        def vec(v, default):
            if not v:
                return np.full(tail, default, np.float64)
            c = self.consts.get(v)
            if c is None:
                raise self.err(node, f"{kind} with a gain or bias computed at run time")
            return np.broadcast_to(np.asarray(c, np.float64).reshape(-1)[-tail:]
                                   if c.size >= tail else np.asarray(c, np.float64).reshape(-1),
                                   (tail,)).reshape(-1).copy()

        gamma = vec(node.inputs[1] if len(node.inputs) > 1 else "", 1.0)
        beta = vec(node.inputs[2] if len(node.inputs) > 2 else "", 0.0)
        if group != n:  # the same gain and bias in every group
            gamma, beta = np.tile(gamma, n // group), np.tile(beta, n // group)
        params = NormParams(kind=kind, eps=float(node.attrs.get("epsilon", 1e-5)), gamma=gamma,
                            beta=beta, group=0 if group == n else group)
        pop = self.materialise_form(form, _short(node.outputs[0]), NeuronModel.NORM, layer,
                                    placement=Placement.EMBEDDED, norm=params)
        self.ng.offcore.append(OffcoreOp(
            population=pop, op=kind, placement=Placement.EMBEDDED,
            why="mean/variance and 1/sqrt need a reduction across neurons"))
        self.set_pop(node.outputs[0], pop)
        return layer

    def op_LayerNorm(self, node, layer):
        return self._norm(node, layer, "layernorm")

    def op_RMSNorm(self, node, layer):
        return self._norm(node, layer, "rmsnorm")

    def op_L2Norm(self, node, layer):
        return self._norm(node, layer, "l2norm")

    def op_LayerNormalization(self, node, layer):
        return self._norm(node, layer, "layernorm", with_defaults(node.op, node.attrs)["axis"])

    def op_PlasticAttention(self, node: Node, layer):
        a = node.attrs
        H, dk, dv = int(a["heads"]), int(a["d_k"]), int(a["d_v"])
        L_ = int(a.get("layer", layer))
        lowering = a.get("lowering", "auto")
        lowering = Lowering.KV_SLOT if lowering == "auto" else Lowering(lowering)
        if lowering == Lowering.FAST_WEIGHT:
            if a["f"] != "identity" or a.get("normalisation", "none") != "none":
                raise self.err(node, "fast_weight lowering needs linear attention (f = identity, "
                                     "no normalisation)", "use lowering='kv_slot'")
            if self.final_precision == "fixed":
                raise self.err(node, "fast_weight lowering is exact only in float mode "
                                     "(9-bit weights accumulate v·kᵀ)", "use lowering='kv_slot'")
        q, k, v = (self.form_of(i) for i in node.inputs)
        outs = []
        for h in range(H):
            sk = np.arange(h * dk, (h + 1) * dk)
            sv = np.arange(h * dv, (h + 1) * dv)
            tag = f"L{L_}.h{h}"
            kp = self.materialise_form(k.rows(sk), f"{tag}.k", NeuronModel.GRADED, L_)
            qp = self.materialise_form(q.rows(sk), f"{tag}.q", NeuronModel.GRADED, L_)
            vp = self.materialise_form(v.rows(sv), f"{tag}.v", NeuronModel.GRADED, L_)
            T = int(a["T_max"])
            slots = self.new_pop(f"{tag}.slots", T, NeuronModel.SLOT, L_, attrs={"f": a["f"]})
            norm = a.get("normalisation", "none")
            rowsum = norm in ROW_NORMS
            out = self.new_pop(f"{tag}.out", dv,
                               NeuronModel.DIVIDE if rowsum else NeuronModel.GRADED, L_,
                               placement=Placement.EMBEDDED if rowsum else Placement.NEUROCORE)
            if rowsum:
                self.ng.offcore.append(OffcoreOp(
                    population=out, op="divide", placement=Placement.EMBEDDED,
                    why="attention normalisation by the row sum is a division"))
            ks = self.connect(qp, slots, np.zeros((T, dk)), role=Role.K, rule=K_WRITE_RULE)
            vs = self.connect(slots, out, np.zeros((dv, T)), role=Role.V, rule=V_WRITE_RULE)
            self.ng.heads.append(HeadSpec(
                layer=L_, head=h, k=kp, q=qp, v=vp, slots=slots, out=out,
                k_syn=ks.name, v_syn=vs.name, f=a["f"], scale=float(a.get("scale", 1.0)),
                t_max=T, normalise=norm, eps=float(a.get("eps", 0.0)), lowering=lowering))
            if lowering == Lowering.FAST_WEIGHT:
                self.fast_weight_heads += 1
            outs.append(out)
        # merged heads: a pure selection form over the head outputs
        terms = []
        for h, out in enumerate(outs):
            E = np.zeros((H * dv, dv))
            E[h * dv:(h + 1) * dv] = np.eye(dv)
            terms.append((out, E))
        self.forms[node.outputs[0]] = Affine(H * dv, terms, None, selection=True)
        return L_ + 1


