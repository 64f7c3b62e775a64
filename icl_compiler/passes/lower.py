"""Lowering: tensor IR (after the default pipeline) → neuromorphic graph.

Matches: a graph whose ops act per token along the last axis ([B, T, n] values) —
Linear, Relu, Add, Sub?, Mul by a constant, LayerNorm, RMSNorm, Gather (token embedding and
positional embedding indexed by Range(0, seq)) — plus PlasticAttention, which mixes tokens.

Produces: a :class:`NeuroGraph` where every materialised value is a population, Linear becomes
Dense synapses, ReLU a graded ReLU neuron, identity a graded neuron, residual Adds are extra
synapse groups into the same population, LayerNorm/RMSNorm are ``norm`` populations on an
embedded core, token ids enter one-hot through a Dense (the embedding table), and each attention
head becomes k/q/v populations, T_max slot neurons and plastic K/V synapse groups (DESIGN §4).

Values are built lazily as *affine forms* Σ W_i·pop_i + b and only materialised into a
population where a neuron is needed (a nonlinearity, a norm, an attention input, the output).
A Linear applied to a form that is a pure 0/1 selection of populations (e.g. the merged
heads) composes exactly, so no extra population or delay step is added there.

Invariants: float semantics are unchanged (checked against the interpreter in tests);
the result passes ``verify_neuro``.  As the pipeline's ``lower`` pass (:data:`PASS`) it also
writes the report's ``attention`` section (lowering and encodings per head) and ``offcore``.
"""
from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field

import numpy as np

from ..errors import CompileError
from ..ir.graph import Graph, Node
from ..ir.neuro import (Encoding, HeadSpec, Lowering, NeuroGraph, NeuronModel, NormParams,
                        OffcoreOp, Placement, ProgramIO, Role)
from ..ir.symbolic import is_sym
from ..semantics.neurons import K_WRITE_RULE, V_WRITE_RULE, encodings
from .attention import attention_report
from .base import Module, Pass, PassContext


@dataclass
class Affine:
    """Σ_i W_i @ pop_i + bias, W_i: [n, size(pop_i)]."""

    n: int
    terms: list[tuple[str, np.ndarray]] = field(default_factory=list)
    bias: np.ndarray | None = None
    selection: bool = False  # every W is 0/1 with at most one 1 per row, no bias

    def scaled(self, c: float) -> Affine:
        return Affine(self.n, [(p, W * c) for p, W in self.terms],
                      None if self.bias is None else self.bias * c)

    def rows(self, idx: np.ndarray) -> Affine:
        return Affine(len(idx), [(p, W[idx]) for p, W in self.terms],
                      None if self.bias is None else self.bias[idx], self.selection)


class Lowerer:
    def __init__(self, graph: Graph, precision: str):
        self.t = graph
        self.final_precision = precision  # the graph is built in float; quantise comes after
        self.ng = NeuroGraph("float")
        self.forms: dict[str, Affine] = {}
        self.pop_of: dict[str, str] = {}  # value -> materialised population
        self.fast_weight_heads = 0
        self.input_pop: str | None = None

    # -- helpers ------------------------------------------------------------------------------
    def err(self, node: Node, reason: str, hint: str | None = None) -> CompileError:
        return CompileError(reason, node=node.onnx_name or node.name, op=node.op, hint=hint)

    def width(self, value: str) -> int:
        d = self.t.values[value].shape[-1]
        if is_sym(d):
            raise CompileError(f"value {value!r} has a dynamic feature axis {d}")
        return int(d)

    def new_pop(self, name: str, size: int, model: NeuronModel, layer: int | None, **kw) -> str:
        return self.ng.new_population(name, size, model, layer=layer, **kw).name

    def connect(self, pre: str, post: str, W: np.ndarray, role: Role = Role.STATIC, rule=None):
        return self.ng.connect(pre, post, np.asarray(W, np.float64), role=role,
                               rule=copy.deepcopy(rule))

    def materialise_form(self, form: Affine, name: str, model: str, layer: int | None,
                         **kw) -> str:
        pop = self.new_pop(name, form.n, model, layer, **kw)
        merged: dict[str, np.ndarray] = {}
        for p, W in form.terms:
            merged[p] = merged[p] + W if p in merged else W
        for p, W in merged.items():
            self.connect(p, pop, W)
        if form.bias is not None and np.any(form.bias != 0):
            self.ng.pop(pop).bias = np.asarray(form.bias, np.float64)
        return pop

    def pop_for(self, value: str, layer: int | None = None) -> str:
        """The population holding ``value`` (materialises a graded neuron if needed)."""
        if value in self.pop_of:
            return self.pop_of[value]
        form = self.forms[value]
        if len(form.terms) == 1 and form.bias is None:
            p, W = form.terms[0]
            if W.shape[0] == W.shape[1] and np.array_equal(W, np.eye(W.shape[0])):
                self.pop_of[value] = p
                return p
        pop = self.materialise_form(form, value, NeuronModel.GRADED, layer)
        self.pop_of[value] = pop
        return pop

    def form_of(self, value: str) -> Affine:
        if value in self.forms:
            return self.forms[value]
        p = self.pop_of[value]
        n = self.ng.pop(p).size
        return Affine(n, [(p, np.eye(n))], None, selection=True)

    def set_pop(self, value: str, pop: str) -> None:
        self.pop_of[value] = pop
        self.forms[value] = Affine(self.ng.pop(pop).size, [(pop, np.eye(self.ng.pop(pop).size))],
                                   None, selection=True)

    # -- main -----------------------------------------------------------------------------------
    def run(self) -> NeuroGraph:
        g = self.t
        if len(g.inputs) != 1 or len(g.outputs) != 1:
            raise CompileError("the compiler handles models with exactly one input and one output "
                               f"(this one has {len(g.inputs)} inputs, {len(g.outputs)} outputs)")
        x = g.inputs[0]
        xv = g.values[x]
        self.consts = {k: v.data for k, v in g.values.items() if v.data is not None}
        if np.dtype(xv.dtype).kind in "iu":
            if xv.rank != 2:
                raise CompileError(f"token-id input {x!r} must be [batch, seq], got {xv.shape}")
            self.input_kind = "tokens"
        else:
            if xv.rank != 3:
                raise CompileError(f"feature input {x!r} must be [batch, seq, features], got {xv.shape}")
            self.input_kind = "features"
            pop = self.new_pop("input", self.width(x), NeuronModel.INPUT, None,
                               placement=Placement.HOST)
            self.input_pop = pop
            self.set_pop(x, pop)
        layer = 0
        for node in g.topo_nodes():
            handler = getattr(self, f"op_{node.op}", None)
            if handler is None:
                raise self.err(node, f"op {node.op} cannot be lowered to neurons yet",
                               "the lowering supports Linear, Relu, Add, Sub, Mul/Div by a constant, "
                               "LayerNorm, RMSNorm, Gather (embeddings) and PlasticAttention")
            layer = handler(node, layer)
            for v in node.outputs:
                self._share(v)
        out = g.outputs[0]
        form = self.form_of(out)
        pop = self.materialise_form(form, "output", NeuronModel.OUTPUT, None,
                                    placement=Placement.HOST)
        self.ng.io = ProgramIO(input=x, input_kind=self.input_kind, output=out, output_pop=pop,
                               vocab=getattr(self, "vocab", None), input_pop=self.input_pop)
        return self.ng

    def _share(self, value: str) -> None:
        """A form read by several consumers (a residual stream) becomes a population once, so
        its terms are not copied into every consumer's synapses (GPT-2 small: 12,968 → ~2,200
        cores).  Costs one step of delay per materialisation."""
        if value in self.pop_of or value not in self.forms:
            return
        form = self.forms[value]
        if len(form.terms) <= 1 and form.bias is None:
            return
        if len(self.t.consumers(value)) + self.t.outputs.count(value) > 1:
            self.set_pop(value, self.materialise_form(form, value, NeuronModel.GRADED, None))

    # -- ops -------------------------------------------------------------------------------------
    def op_Gather(self, node: Node, layer):
        table, idx = node.inputs
        if table not in self.consts:
            raise self.err(node, "Gather from a non-constant table is not supported")
        T = self.consts[table]
        if T.ndim != 2:
            raise self.err(node, "only 2-D embedding tables are supported")
        if idx == self.t.inputs[0]:
            self.vocab = T.shape[0]
            pop = self.new_pop("tokens", T.shape[0], NeuronModel.INPUT, None,
                               placement=Placement.HOST, encoding=Encoding.ONE_HOT)
            self.forms[node.outputs[0]] = Affine(T.shape[1], [(pop, np.ascontiguousarray(T.T, dtype=np.float64))])
            return layer
        prod = self.t.producer(idx)
        if prod is not None and prod.op == "Range" and prod.attrs.get("start") == 0 \
                and prod.attrs.get("delta") == 1:
            pop = self.new_pop("position", T.shape[0], NeuronModel.INPUT, None,
                               placement=Placement.HOST, encoding=Encoding.POSITION)
            self.forms[node.outputs[0]] = Affine(T.shape[1], [(pop, np.ascontiguousarray(T.T, dtype=np.float64))])
            self.pos_value = node.outputs[0]
            return layer
        raise self.err(node, "Gather is supported for token embeddings and positional embeddings "
                             "indexed by arange(seq) only")

    def op_Range(self, node: Node, layer):
        return layer  # consumed by the positional-embedding Gather

    def op_Unsqueeze(self, node: Node, layer):
        # [T, d] positional embedding broadcast over batch
        src = node.inputs[0]
        if src in self.forms and self.t.values[node.outputs[0]].shape[-1] == self.t.values[src].shape[-1]:
            self.forms[node.outputs[0]] = self.forms[src]
            return layer
        raise self.err(node, "Unsqueeze is only supported on a positional embedding")

    def op_Linear(self, node: Node, layer):
        x, W = node.inputs[0], node.inputs[1]
        b = node.inputs[2] if len(node.inputs) > 2 and node.inputs[2] else None
        if W not in self.consts or (b is not None and b not in self.consts):
            raise self.err(node, "Linear needs constant weights")
        Wt = self.consts[W].astype(np.float64).T  # [out, in]; convert first: cheaper than a strided copy
        bias = None if b is None else self.consts[b].astype(np.float64)
        src = self.form_of(x)
        if src.selection:
            terms = [(p, _compose(Wt, S)) for p, S in src.terms]
        else:
            p = self.pop_for(x, layer)
            terms = [(p, Wt)]
        self.forms[node.outputs[0]] = Affine(Wt.shape[0], terms, bias)
        return layer

    def op_Add(self, node: Node, layer):
        a, b = node.inputs
        out_n = self.width(node.outputs[0])
        fa, fb = self._operand(a, out_n), self._operand(b, out_n)
        bias = _add(fa.bias, fb.bias)
        self.forms[node.outputs[0]] = Affine(out_n, fa.terms + fb.terms, bias,
                                             selection=fa.selection and fb.selection and bias is None)
        return layer

    def op_Sub(self, node: Node, layer):
        a, b = node.inputs
        out_n = self.width(node.outputs[0])
        fa, fb = self._operand(a, out_n), self._operand(b, out_n).scaled(-1.0)
        self.forms[node.outputs[0]] = Affine(out_n, fa.terms + fb.terms, _add(fa.bias, fb.bias))
        return layer

    def _operand(self, v: str, n: int) -> Affine:
        if v in self.consts:
            c = self.consts[v].astype(np.float64)
            if c.size not in (1, n) or (c.ndim > 1 and np.prod(c.shape[:-1]) != 1):
                raise CompileError(f"constant {v!r} of shape {c.shape} cannot be added per token")
            return Affine(n, [], np.broadcast_to(c.reshape(-1), (n,)).copy())
        return self.form_of(v)

    def op_Mul(self, node: Node, layer):
        a, b = node.inputs
        if b in self.consts and self.consts[b].size == 1:
            c, v = float(self.consts[b].ravel()[0]), a
        elif a in self.consts and self.consts[a].size == 1:
            c, v = float(self.consts[a].ravel()[0]), b
        else:
            raise self.err(node, "Mul is only supported by a scalar constant (elementwise products "
                                 "of two activations have no neuron mapping)")
        self.forms[node.outputs[0]] = self.form_of(v).scaled(c)
        return layer

    def op_Div(self, node: Node, layer):
        a, b = node.inputs
        if b in self.consts and self.consts[b].size == 1:
            self.forms[node.outputs[0]] = self.form_of(a).scaled(1.0 / float(self.consts[b].ravel()[0]))
            return layer
        raise self.err(node, "Div is only supported by a scalar constant here")

    def op_Identity(self, node: Node, layer):
        self.forms[node.outputs[0]] = self.form_of(node.inputs[0])
        if node.inputs[0] in self.pop_of:
            self.pop_of[node.outputs[0]] = self.pop_of[node.inputs[0]]
        return layer

    def op_Relu(self, node: Node, layer):
        form = self.form_of(node.inputs[0])
        pop = self.materialise_form(form, node.outputs[0], NeuronModel.GRADED_RELU, layer)
        self.set_pop(node.outputs[0], pop)
        return layer

    def _norm(self, node: Node, layer, kind: str):
        form = self.form_of(node.inputs[0])
        gamma = self.consts.get(node.inputs[1]) if len(node.inputs) > 1 and node.inputs[1] else None
        beta = self.consts.get(node.inputs[2]) if len(node.inputs) > 2 and node.inputs[2] else None
        n = form.n
        params = NormParams(
            kind=kind, eps=float(node.attrs.get("epsilon", 1e-5)),
            gamma=np.ones(n) if gamma is None else np.asarray(gamma, np.float64).reshape(n),
            beta=np.zeros(n) if beta is None else np.asarray(beta, np.float64).reshape(n))
        pop = self.materialise_form(form, node.outputs[0], NeuronModel.NORM, layer,
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

    def op_PlasticAttention(self, node: Node, layer):
        a = node.attrs
        H, dk, dv = int(a["heads"]), int(a["d_k"]), int(a["d_v"])
        L = int(a.get("layer", layer))
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
            tag = f"L{L}.h{h}"
            kp = self.materialise_form(k.rows(sk), f"{tag}.k", NeuronModel.GRADED, L)
            qp = self.materialise_form(q.rows(sk), f"{tag}.q", NeuronModel.GRADED, L)
            vp = self.materialise_form(v.rows(sv), f"{tag}.v", NeuronModel.GRADED, L)
            T = int(a["T_max"])
            slots = self.new_pop(f"{tag}.slots", T, NeuronModel.SLOT, L, attrs={"f": a["f"]})
            norm = a.get("normalisation", "none")
            rowsum = norm == "rowsum"
            out = self.new_pop(f"{tag}.out", dv,
                               NeuronModel.DIVIDE if rowsum else NeuronModel.GRADED, L,
                               placement=Placement.EMBEDDED if rowsum else Placement.NEUROCORE)
            if rowsum:
                self.ng.offcore.append(OffcoreOp(
                    population=out, op="divide", placement=Placement.EMBEDDED,
                    why="attention normalisation by the row sum is a division"))
            ks = self.connect(qp, slots, np.zeros((T, dk)), role=Role.K, rule=K_WRITE_RULE)
            vs = self.connect(slots, out, np.zeros((dv, T)), role=Role.V, rule=V_WRITE_RULE)
            self.ng.heads.append(HeadSpec(
                layer=L, head=h, k=kp, q=qp, v=vp, slots=slots, out=out,
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
        return L + 1


def _compose(Wt: np.ndarray, S: np.ndarray) -> np.ndarray:
    """Wt @ S for a 0/1 selection S (at most one 1 per row), without a dense matrix product
    (GPT-2 small: 13.5 s of products with identity matrices)."""
    n_in, n_out = S.shape
    if n_in == n_out and np.count_nonzero(S) == n_in and np.all(S.diagonal() == 1):
        return Wt
    rows, cols = np.nonzero(S)
    out = np.zeros((Wt.shape[0], n_out))
    np.add.at(out.T, cols, Wt[:, rows].T)
    return out


def _add(a, b):
    if a is None:
        return b
    if b is None:
        return a
    return a + b


def lower(graph: Graph, precision: str = "float") -> NeuroGraph:
    """Lower to a float neuromorphic graph; ``precision`` is the final one (for checks)."""
    return Lowerer(graph, precision).run()


AUTO_REASON = ("auto: kv_slot (exact in Loihi fixed point; fast_weight would need 9-bit weights "
               "to accumulate v·kᵀ)")


def _run(m: Module, ctx: PassContext) -> str:
    """The pipeline's ``lower``: the neuromorphic graph, and the report's ``attention`` (one entry
    per head: the attention pass's findings, the lowering and the encodings) and ``offcore``."""
    attention = attention_report(m.tensor)
    if not attention:
        raise CompileError("no causal softmax-free attention was found; the compiler maps "
                           "attention to plastic synapses, so a model without attention has "
                           "nothing to learn in context")
    ctx.report.setdefault("model", {})["ir_ops"] = m.tensor.op_counts()
    ng = m.neuro = lower(m.tensor, ctx.precision)
    heads = {(h.layer, h.head): h for h in ng.heads}
    for entry in attention:
        if entry["lowering"] == "auto":
            entry["lowering"] = "kv_slot"
            entry["lowering_reason"] = AUTO_REASON
        entry["encodings"] = encodings(heads[entry["layer"], entry["head"]])
    ctx.report["attention"] = attention
    ctx.report["offcore"] = [asdict(o) for o in ng.offcore]
    return (f"{len(ng.populations())} populations, {len(ng.synapses())} synapse groups, "
            f"{len(ng.heads)} plastic heads")


PASS = Pass("lower", ir="tensor", produces="neuro", requires=("attention",), run=_run)
