"""The lowering's driver: token values as affine forms, found by probing what each op computes
(see the package docstring)."""
from __future__ import annotations

import copy

import numpy as np

from ...errors import CompileError
from ...ir import layout as L
from ...ir.graph import Graph, Node
from ...ir.interpreter import run as interpret
from ...ir.neuro import (Encoding, NeuroGraph, NeuronModel, Placement, ProgramIO, Role)
from ...ir.ops import OPS, with_defaults
from ...ir.symbolic import is_sym, resolve
from ..classify import Info, Kind, classify
from ..util import ancestors
from .forms import (AFFINE, CONV_OPS, MAPPED, MOVES, NEURON_HINTS, Affine, _add, _compose,
                    _monomial, _op, _short, _stack)
from .neurons import NeuronOps
from .products import PerPosition, ProductOps


class Lowerer(NeuronOps, ProductOps):
    def __init__(self, graph: Graph, precision: str):
        self.t = graph
        self.final_precision = precision  # the graph is built in float; quantise comes after
        self.ng = NeuroGraph("float")
        self.info: dict[str, Info] = classify(graph)
        self.forms: dict[str, Affine] = {}
        self.pop_of: dict[str, str] = {}  # value -> materialised population
        self.ids: set[str] = set()  # values that are the token ids (one feature per token)
        self.fast_weight_heads = 0
        self.input_pop: str | None = None
        self.tokens_pop: str | None = None
        self.pos_pop: str | None = None
        self.vocab: int | None = None
        self._pos_cache: dict = {}
        self.token_ops: list[dict] = []  # the report's token_ops: convolutions and pooling

    # -- helpers ------------------------------------------------------------------------------
    def err(self, node: Node, reason: str, hint: str | None = None) -> CompileError:
        return CompileError(reason, node=node.onnx_name or node.name, op=_op(node), hint=hint)

    def new_pop(self, name: str, size: int, model: NeuronModel, layer: int | None, **kw) -> str:
        return self.ng.new_population(name, size, model, layer=layer, **kw).name

    def connect(self, pre: str, post: str, W: np.ndarray, role: Role = Role.STATIC, rule=None,
                port: int = 0):
        return self.ng.connect(pre, post, np.asarray(W, np.float64), role=role,
                               rule=copy.deepcopy(rule), port=port)

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
        pop = self.materialise_form(form, _short(value), NeuronModel.GRADED, layer)
        self.pop_of[value] = pop
        return pop

    def form_of(self, value: str) -> Affine:
        if value in self.forms:
            return self.forms[value]
        if value in self.pop_of:
            p = self.pop_of[value]
            n = self.ng.pop(p).size
            return Affine(n, [(p, np.eye(n))], None, selection=True)
        raise KeyError(value)

    def set_pop(self, value: str, pop: str) -> None:
        self.pop_of[value] = pop
        self.forms[value] = Affine(self.ng.pop(pop).size, [(pop, np.eye(self.ng.pop(pop).size))],
                                   None, selection=True)

    # -- dims and position-only values --------------------------------------------------------
    def _setup_dims(self) -> None:
        x = self.t.values[self.x]
        self.batch_sym = x.shape[0] if is_sym(x.shape[0]) else None
        self.seq_sym = x.shape[1] if is_sym(x.shape[1]) else None
        caps = [int(n.attrs["T_max"]) for n in self.t.nodes.values()
                if n.op == "PlasticAttention"]
        self.t_max = min(caps) if caps else None
        if self.seq_sym is None:
            self.T = int(x.shape[1])
        else:
            self.T = self.t_max or self._positions_available()

    def _positions_available(self, cap: int = 4096) -> int:
        """Without attention (no T_max): the most positions at which every position-only value
        that a token value reads can be evaluated (e.g. a positional table's rows), else 16."""
        feeds = {i for n in self.t.nodes.values()
                 if any(self.info.get(o) is not None and self.info[o].kind == Kind.TOKEN
                        for o in n.outputs)
                 for i in n.inputs if i and self.info.get(i) is not None
                 and self.info[i].kind == Kind.POS}
        best = None
        for v in sorted(feeds):
            def works(T: int) -> bool:
                try:
                    self.value_at(v, self.env(T))
                    return True
                except Exception:  # noqa: BLE001
                    return False
            if works(cap):
                continue
            lo, hi = 0, cap - 1
            while lo < hi:
                mid = (lo + hi + 1) // 2
                lo, hi = (mid, hi) if works(mid) else (lo, mid - 1)
            best = lo if best is None else min(best, lo)
        return best or 16

    def env(self, T: int | None = None, batch: int = 1) -> dict[str, int]:
        env: dict[str, int] = {}
        for d in (self.batch_sym, self.seq_sym):
            if d is not None and len(d.free_symbols) == 1:
                name = next(iter(d.free_symbols)).name
                env[name] = batch if d is self.batch_sym else (T or self.T)
        return env

    def value_at(self, v: str, env: dict[str, int]) -> np.ndarray:
        """A constant or position-only value evaluated at concrete dims."""
        key = (v, tuple(sorted(env.items())))
        if key in self._pos_cache:
            return self._pos_cache[key]
        c = self.t.values[v].data
        if c is not None:
            out = np.asarray(c)
        else:
            nodes = ancestors(self.t, v)
            sub = Graph("pos")
            for n in nodes:
                for w in n.inputs + n.outputs:
                    if w:
                        sub.values[w] = self.t.values[w]
                sub.add_node(n.op, n.inputs, n.outputs, n.attrs, name=n.name)
            sub.outputs = [v]
            out = np.asarray(interpret(sub, {}, float_dtype="float64", env=env)[v])
        self._pos_cache[key] = out
        return out

    # -- main -----------------------------------------------------------------------------------
    def run(self) -> NeuroGraph:
        g = self.t
        if len(g.inputs) != 1 or not g.outputs:
            raise CompileError("the compiler handles models with exactly one input and one output "
                               f"or more (this one has inputs {', '.join(g.inputs)} and outputs "
                               f"{', '.join(g.outputs)})",
                               hint="bind extra inputs with --bind NAME=ones|zeros|arange|FILE.npy")
        bad = [o for o in g.outputs if self.info[o].kind != Kind.TOKEN]
        if bad:
            good = [o for o in g.outputs if o not in bad]
            i = self.info[bad[0]]
            where = i.node  # the op where the value stopped being token-local, if known
            raise CompileError(f"the model output {bad[0]!r} is not computed token by token "
                               f"({i.kind.value}{': ' + i.reason if i.reason else ''}), so the "
                               "program cannot produce it",
                               node=None if where is None else (where.onnx_name or where.name),
                               op=None if where is None else where.attrs.get("op_type", where.op),
                               hint=(f"compile the others with --outputs {','.join(good)}"
                                     if good else None))
        self.x = x = g.inputs[0]
        xv = g.values[x]
        self._setup_dims()
        self.consts = {k: v.data for k, v in g.values.items() if v.data is not None}
        if np.dtype(xv.dtype).kind in "iu":
            if xv.rank != 2:
                raise CompileError(f"token-id input {x!r} must be [batch, seq], got {xv.shape}")
            self.input_kind = "tokens"
            self.ids.add(x)
        else:
            if xv.rank < 3:
                raise CompileError(f"feature input {x!r} must be [batch, seq, features], got "
                                   f"{xv.shape}")
            self.input_kind = "features"
            pop = self.new_pop("input", L.n_features(self.info[x].layout), NeuronModel.INPUT,
                               None, placement=Placement.HOST)
            self.input_pop = pop
            self.set_pop(x, pop)
        layer = 0
        for node in g.topo_nodes():
            kinds = {self.info[o].kind for o in node.outputs if o in self.info}
            if kinds <= {Kind.CONST, Kind.POS}:
                continue  # evaluated where a token value needs it
            if Kind.MIXED in kinds or Kind.PAIR in kinds:
                raise self._mixing(node)
            layer = self.lower_node(node, layer)
            for v in node.outputs:
                self._share(v)
        # one output population holds every ONNX output, each in its own rows
        forms, specs, off = [], [], 0
        for out in g.outputs:
            f = self.form_of(out)
            specs.append({"name": out, "offset": off, "size": f.n,
                          "layout": L.to_json(self.info[out].layout)})
            forms.append(f)
            off += f.n
        form = forms[0] if len(forms) == 1 else _stack(forms)
        pop = self.materialise_form(form, "output", NeuronModel.OUTPUT, None,
                                    placement=Placement.HOST)
        self.ng.io = ProgramIO(input=x, input_kind=self.input_kind, output=g.outputs[0],
                               output_pop=pop, vocab=self.vocab, input_pop=self.input_pop,
                               outputs=specs)
        return self.ng

    def _mixing(self, node: Node) -> CompileError:
        for o in node.outputs:
            i = self.info.get(o)
            if i is not None and i.kind == Kind.PAIR:
                return self.err(node, "attention scores outside a recognised attention (the "
                                      "attention pass left this product of activations)")
            if i is not None and i.kind == Kind.MIXED:
                src = i.node or node
                return CompileError(f"{i.reason or 'mixes positions'}; a program computes each "
                                    "token from its own features, attention and position tables",
                                    node=src.onnx_name or src.name, op=_op(src))
        return self.err(node, "mixes positions")

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
            self.set_pop(value, self.materialise_form(form, _short(value), NeuronModel.GRADED,
                                                      None))

    # -- dispatch ---------------------------------------------------------------------------------
    def lower_node(self, node: Node, layer: int) -> int:
        op = _op(node)
        handler = getattr(self, f"op_{node.op}", None) or (
            getattr(self, f"op_{op}", None) if node.op == "Onnx" else None)
        if handler is not None:
            return handler(node, layer)
        if any(i in self.ids for i in node.inputs if i):
            self._ids_move(node)
            return layer
        if len(self._tokens(node)) == 2 and self._bilinear(node, layer):
            return layer
        if op in AFFINE:
            self._affine(node)
            return layer
        raise self.err(node, f"{op} cannot be lowered to neurons yet",
                       (NEURON_HINTS[op] + "; " if op in NEURON_HINTS else "") + MAPPED)

    def _tokens(self, node: Node) -> list[int]:
        return [k for k, i in enumerate(node.inputs) if i and self.info[i].kind == Kind.TOKEN]

    def _feed(self, node: Node, env: dict[str, int], zero: set[int]) -> list:
        """Inputs of ``node`` at ``env``: token inputs in ``zero`` as zeros, others evaluated."""
        xs = []
        for k, i in enumerate(node.inputs):
            if not i:
                xs.append(None)
            elif k in zero:
                shape = resolve(tuple(self.t.values[i].shape), env)
                xs.append(np.zeros(shape))
            else:
                try:
                    xs.append(self.value_at(i, env))
                except Exception as e:  # noqa: BLE001 - the model's own position arithmetic
                    T = next((v for k, v in env.items() if self.seq_sym is not None
                              and k == str(self.seq_sym)), None)
                    raise self.err(node, f"cannot evaluate the position-dependent input {i!r}"
                                         + (f" at {T} positions" if T else "")
                                         + f" ({type(e).__name__}: {str(e)[:120]})",
                                   "the model may support fewer positions: compile with a "
                                   "smaller --max-context" if T else None) from None
        return xs

    def _eval(self, node: Node, xs: list, env: dict[str, int], j: int) -> np.ndarray:
        attrs = resolve(with_defaults(node.op, node.attrs), env)
        if node.op == "Cast" and np.dtype(attrs["to"]).kind == "f":
            return np.asarray(xs[0], np.float64)  # the lowering computes in float64
        with np.errstate(divide="ignore", invalid="ignore"):  # probes may divide by zero
            return np.asarray(OPS[node.op].compute(xs, attrs)[j], np.float64)

    def _affine(self, node: Node) -> None:
        """Every token output of a linear op: Σ_k M_k·form_k + C(t), found by probing."""
        toks = self._tokens(node)
        fast = self._linear_fast(node, toks[0], self.info[node.inputs[toks[0]]].layout) \
            if len(toks) == 1 else None
        if fast is not None:  # a Linear/MatMul/Gemm with its weight: no probe needed
            v = node.inputs[toks[0]]
            form = self._combine(node, [(self.form_of(v), fast, v)], fast.shape[0])
            self.forms[node.outputs[0]] = Affine(form.n, form.terms,
                                                 _add(form.bias, self._fast_bias(node)))
            return
        env = self.env()
        for j, o in enumerate(node.outputs):
            oi = self.info.get(o)
            if oi is None or oi.kind != Kind.TOKEN:
                continue
            out_lay = oi.layout
            zero = set(toks)
            base = self._feed(node, env, zero)
            try:
                y0 = self._eval(node, base, env, j)
            except Exception as e:  # noqa: BLE001 - e.g. a table too short for T_max
                raise self._length_error(node, j, zero, e) from None
            C = L.token_view(y0, out_lay, env)
            parts: list | None = []
            for k in toks:
                v = node.inputs[k]
                in_lay = self.info[v].layout

                def fn(x, k=k):
                    xs = list(base)
                    xs[k] = x
                    return self._eval(node, xs, env, j) - y0

                try:
                    M = self._matrix(node, k, j, fn, in_lay, out_lay, env)
                except PerPosition as e:  # e.g. rotary embeddings: product neurons
                    form = self._per_position(node, k, j, fn, in_lay, out_lay, env, str(e))
                    parts = None
                    break
                parts.append((self.form_of(v), M, v))
            if parts is not None:
                if len(parts) > 1:
                    self._check_jointly(node, j, base, toks, [M for _, M, _ in parts], C, env)
                if _op(node) in CONV_OPS:
                    self._note_conv(node, parts)
                form = self._combine(node, parts, L.n_features(out_lay))
            terms = form.terms
            bias, table = self._constant(node, C, j, zero)
            if table is not None:
                terms = terms + [(self._position_pop(node), table.T)]
            self.forms[o] = Affine(form.n, terms, _add(form.bias, bias),
                                   selection=form.selection and bias is None and table is None)

    def _note_conv(self, node: Node, parts) -> None:
        """The report's token_ops entry of a convolution or average pooling within a token."""
        M = parts[0][1]
        conv = _op(node) in ("Conv", "ConvTranspose")
        self.token_ops.append({
            "node": node.onnx_name or node.name, "op": _op(node),
            "lowered_as": ("a Dense with the unrolled kernel" if conv else
                           "a Dense with the averaging weights (a linear map)"),
            "in_features": int(M.shape[1]), "out_features": int(M.shape[0]),
            "nonzero_weights": int(np.count_nonzero(M))})

    def _length_error(self, node: Node, j: int, zero: set[int], e: Exception) -> CompileError:
        """The op cannot be evaluated at T_max positions: say up to how many it can."""
        if self.seq_sym is None:
            return self.err(node, f"cannot evaluate this op ({type(e).__name__}: {e})")

        def works(T: int) -> bool:
            env = self.env(T)
            try:
                self._eval(node, self._feed(node, env, zero), env, j)
                return True
            except Exception:  # noqa: BLE001
                return False

        lo, hi = 0, self.T - 1  # largest T in [1, T_max) that works, by bisection
        while lo < hi:
            mid = (lo + hi + 1) // 2
            lo, hi = (mid, hi) if works(mid) else (lo, mid - 1)
        if lo == 0:
            return self.err(node, f"cannot evaluate this op ({type(e).__name__}: {e})")
        return self.err(node, f"the model's position-dependent values cover {lo} positions, "
                              f"fewer than the context capacity T_max = {self.T}",
                        f"compile with --max-context {lo}")

    def _check_jointly(self, node: Node, j: int, base, toks, Ms, C, env) -> None:
        """With several token inputs, the op must be affine in all of them at once (a product of
        two activations is linear in each alone)."""
        rng = np.random.default_rng(1)
        xs, want = list(base), C.copy()
        for k, M in zip(toks, Ms):
            lay = self.info[node.inputs[k]].layout
            nb, nt = L._bt(lay, env)
            x = rng.normal(size=(nb, nt, L.n_features(lay)))
            xs[k] = L.from_token_view(x, lay, env)
            want = want + x @ M.T
        y = L.token_view(self._eval(node, xs, env, j), self.info[node.outputs[j]].layout, env)
        if not np.allclose(y, want, rtol=1e-6, atol=1e-9 * max(1.0, float(np.abs(want).max()))):
            raise self._two_activations(node)

    def _matrix(self, node: Node, k: int, j: int, fn, in_lay, out_lay, env) -> np.ndarray:
        """The op's matrix for token input k (data movement: a selection, exact)."""
        if _op(node) in MOVES:
            try:
                idx = L.index_map(lambda xs: fn(xs[0]), [(in_lay, None)], out_lay, env)
                M = np.zeros((len(idx), L.n_features(in_lay)))
                ok = idx >= 0
                M[np.nonzero(ok)[0], idx[ok]] = 1.0
                return M
            except L.LayoutError:
                pass
        fast = self._linear_fast(node, k, in_lay)
        if fast is not None:
            return fast
        try:
            M, _ = L.linear_map(fn, in_lay, out_lay, env)
        except L.LayoutError as e:
            toks = self._tokens(node)
            if len(toks) > 1:
                raise self._two_activations(node) from None
            raise PerPosition(f"cannot map this op to synapses: {e}") from None
        return M

    def _two_activations(self, node: Node) -> CompileError:
        """The refusal of an op that combines two token values non-linearly."""
        op = _op(node)
        if op in ("Div", "Reciprocal"):
            return self.err(node, "a division by a value computed from the input has no neuron "
                                  "mapping (only norms and attention's row sum divide, on an "
                                  "embedded core)")
        if op in ("Mul", "MatMul", "Einsum", "Pow"):
            return self.err(node, "this product of two activations is not elementwise (each "
                                  "output must be a product of one feature of each operand); "
                                  "product neurons map elementwise products such as gated MLPs")
        return self.err(node, "the op is not a linear function of its token inputs")

    def _linear_fast(self, node: Node, k: int, in_lay) -> np.ndarray | None:
        """Linear/MatMul/Gemm with a constant 2-D weight on the last axis, when the token's
        features are all on that axis: the weight itself (no probing)."""
        op = node.op
        if k != 0 or op not in ("Linear", "MatMul", "Gemm") or len(in_lay[-1]) == 0:
            return None
        if L.n_features(in_lay) != L.n_features((in_lay[-1],)):
            return None
        W = self.consts.get(node.inputs[1])
        if W is None or W.ndim != 2:
            return None
        if op == "Gemm":
            a = with_defaults(op, node.attrs)
            if a["transA"]:
                return None
            W = (W.T if a["transB"] else W) * a["alpha"]
        if op in ("Linear", "Gemm") and len(node.inputs) > 2 and node.inputs[2]:
            b = self.consts.get(node.inputs[2])
            if b is None or b.size != W.shape[1]:
                return None  # a bias that is not one number per output feature: probe
        return np.asarray(W, np.float64).T

    def _fast_bias(self, node: Node) -> np.ndarray | None:
        """The bias of a Linear/Gemm on the fast path (a constant over the output features)."""
        if node.op not in ("Linear", "Gemm") or len(node.inputs) < 3 or not node.inputs[2]:
            return None
        b = np.asarray(self.consts[node.inputs[2]], np.float64).reshape(-1)
        if node.op == "Gemm":
            b = b * with_defaults("Gemm", node.attrs)["beta"]
        return b

    def _combine(self, node: Node, parts, n: int) -> Affine:
        """Σ M_k·form_k: selections and scalings compose into the forms; a dense matrix on a
        form that is not a selection reads a population (materialised once)."""
        terms: list = []
        bias = None
        selection = True
        for form, M, v in parts:
            rows = _monomial(M)
            if rows is not None:
                idx, scale = rows
                keep = idx >= 0
                for p, W in form.terms:
                    Wn = np.zeros((n, W.shape[1]))
                    Wn[keep] = W[idx[keep]] * scale[keep, None]
                    terms.append((p, Wn))
                if form.bias is not None:
                    b = np.zeros(n)
                    b[keep] = form.bias[idx[keep]] * scale[keep]
                    bias = _add(bias, b)
                selection = selection and form.selection and bool(np.all(scale[keep] == 1))
                continue
            selection = False
            if form.selection:
                for p, S in form.terms:
                    terms.append((p, _compose(M, S)))
            else:
                terms.append((self.pop_for(v), M))
        return Affine(n, terms, bias, selection=selection and bias is None)

    def _constant(self, node: Node, C: np.ndarray, j: int, zero: set[int]):
        """(bias, table): the op's output with zero token inputs, constant over the batch; a
        per-position table [T_max, n] where it changes with the position."""
        if C.shape[0] > 1 and not np.allclose(C, C[:1]):
            raise self.err(node, "a value that changes with the batch index")
        c = C[0]
        if not np.any(c):
            return None, None
        if np.allclose(c, c[:1], rtol=0, atol=0):
            return c[0].copy(), None
        # position-dependent: the program's T_max rows, and the same rows at a shorter length
        if self.seq_sym is not None:
            T2 = max(1, self.T // 2)
            env2 = self.env(T2)
            C2 = L.token_view(self._eval(node, self._feed(node, env2, zero), env2, j),
                              self.info[node.outputs[j]].layout, env2)[0]
            if not np.allclose(C2, c[:T2], rtol=1e-9, atol=1e-12):
                raise self.err(node, "a position-dependent value changes with the sequence "
                                     "length (position t must not depend on later tokens)")
        cap = self.t_max or c.shape[0]
        if c.shape[0] < cap:
            raise self.err(node, f"the positional table has {c.shape[0]} positions, fewer than "
                                 f"the context capacity T_max = {cap}",
                           f"compile with --max-context {c.shape[0]}")
        return None, c[:cap]

    def _position_pop(self, node: Node) -> str:
        if self.pos_pop is None:
            cap = self.t_max or self.T
            self.pos_pop = self.new_pop("position", cap, NeuronModel.INPUT, None,
                                        placement=Placement.HOST, encoding=Encoding.POSITION)
        return self.pos_pop

    def _ids_move(self, node: Node) -> None:
        """Token ids through data movement (e.g. Reshape(input_ids, [-1, seq])) stay ids."""
        if _op(node) not in MOVES or len(self._tokens(node)) != 1:
            raise self.err(node, "the token ids are used as numbers; they can only select an "
                                 "embedding row")
        for o in node.outputs:
            lay = self.info[o].layout
            if lay is None or L.n_features(lay) != 1:
                raise self.err(node, "the token ids are rearranged across tokens")
            self.ids.add(o)

