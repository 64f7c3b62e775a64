"""The lowering (passes/lower.py) on small tensor graphs: the neuromorphic graph it builds — which
populations, which synapse groups with which weights, the heads, the I/O contract, the off-core
operations, the generated names — and the errors that name the node.  (Its numbers against the
tensor interpreter: tests/semantics/test_interpreter.py.)"""
from __future__ import annotations

import re

import numpy as np
import pytest

from icl_compiler.errors import CompileError
from icl_compiler.ir.neuro import (Encoding, Lowering, NeuronModel, Placement, Role,
                                   verify_neuro)
from icl_compiler.passes.lower import lower
from icl_compiler.semantics.neurons import K_WRITE_RULE, V_WRITE_RULE
from tests.helpers import attention_graph
from tests.passes.common import B, Builder, T


def _mlp(norm: bool = False):
    b = Builder(seed=3)
    x = b.input("x", (B, T, 4))
    w1, b1, w2 = b.rand(4, 6), b.rand(6), b.rand(6, 3)
    h = b.op("Linear", x, w1, b1)
    if norm:
        h = b.op("LayerNorm", h, b.rand(6), b.rand(6), epsilon=1e-3)
    y = b.op("Linear", b.op("Relu", h), w2)
    g = b.output(y)
    return g, (w1, b1, w2)


def test_linear_relu_linear_becomes_dense_groups_and_a_graded_relu():
    g, (w1, b1, w2) = _mlp()
    ng = lower(g)
    verify_neuro(ng)
    models = {p.name: p.model for p in ng.populations()}
    assert sorted(models.values()) == sorted([NeuronModel.INPUT, NeuronModel.GRADED_RELU,
                                              NeuronModel.OUTPUT])
    relu = next(p for p in ng.populations() if p.model == NeuronModel.GRADED_RELU)
    inp, out = ng.pop(ng.io.input_pop), ng.pop(ng.io.output_pop)
    assert inp.placement == out.placement == Placement.HOST and relu.placement == Placement.NEUROCORE
    # the first Linear is the Dense into the ReLU population, its bias the population's bias
    (s1,), (s2,) = ng.incoming(relu.name), ng.incoming(out.name)
    assert (s1.pre, s1.role) == (inp.name, Role.STATIC) and s2.pre == relu.name
    assert np.array_equal(s1.weights, g.values[w1].data.astype(np.float64).T)
    assert np.array_equal(relu.bias, g.values[b1].data.astype(np.float64))
    assert np.array_equal(s2.weights, g.values[w2].data.astype(np.float64).T)
    assert ng.io.input_kind == "features" and ng.io.vocab is None and not ng.heads


def test_synapse_names_are_generated_by_the_graph():
    ng = lower(attention_graph(np.random.default_rng(0), heads=2))
    names = [s.name for s in ng.synapses()]
    assert len(set(names)) == len(names)
    assert all(re.fullmatch(r"s\d+:.+->.+", n) for n in names)
    for s in ng.synapses():
        assert ng.syn(s.name) is s and s.name.endswith(f":{s.pre}->{s.post}")
    for h in ng.heads:  # the head refers to the groups the graph made, not to predicted names
        assert ng.syn(h.k_syn).role == Role.K and ng.syn(h.v_syn).role == Role.V


@pytest.mark.parametrize("norm", ["none", "rowsum"])
def test_each_head_is_kqv_slots_and_plastic_kv(norm):
    heads, dk, dv, t_max = 2, 4, 3, 10
    ng = lower(attention_graph(np.random.default_rng(1), heads=heads, dk=dk, dv=dv, t_max=t_max,
                               norm=norm, f="relu2"))
    verify_neuro(ng)
    assert [(h.layer, h.head) for h in ng.heads] == [(0, 0), (0, 1)]
    rules = []
    for h in ng.heads:
        assert (ng.pop(h.k).size, ng.pop(h.q).size, ng.pop(h.v).size) == (dk, dk, dv)
        assert ng.pop(h.slots).model == NeuronModel.SLOT and ng.pop(h.slots).size == t_max
        assert (h.f, h.t_max, h.scale, h.lowering) == ("relu2", t_max, 0.5, Lowering.KV_SLOT)
        ks, vs = ng.syn(h.k_syn), ng.syn(h.v_syn)
        assert (ks.pre, ks.post, ks.weights.shape) == (h.q, h.slots, (t_max, dk))
        assert (vs.pre, vs.post, vs.weights.shape) == (h.slots, h.out, (dv, t_max))
        assert not ks.weights.any() and not vs.weights.any()  # empty KV cache
        assert ks.rule == K_WRITE_RULE and vs.rule == V_WRITE_RULE
        rules += [ks.rule, vs.rule]
        out = ng.pop(h.out)
        if norm == "rowsum":
            assert (out.model, out.placement, h.normalise) == (NeuronModel.DIVIDE,
                                                              Placement.EMBEDDED, "rowsum")
        else:
            assert (out.model, out.placement) == (NeuronModel.GRADED, Placement.NEUROCORE)
    # LearningDense mutates its rule: every group has a rule object of its own
    ids = {id(r) for r in rules}
    assert len(ids) == len(rules) and not ids & {id(K_WRITE_RULE), id(V_WRITE_RULE)}
    divides = [o.population for o in ng.offcore if o.op == "divide"]
    assert divides == ([h.out for h in ng.heads] if norm == "rowsum" else [])


def test_merged_heads_compose_into_the_next_linear():
    # the o Linear on the merged heads (a 0/1 selection) composes exactly: no population for the
    # merged value, each head's output feeds the next population directly
    ng = lower(attention_graph(np.random.default_rng(2), heads=2, residual=False))
    assert "att" not in ng.g and not any(p.name.startswith("att") for p in ng.populations())
    relu = ng.pop("h")
    assert {s.pre for s in ng.incoming("h")} == {h.out for h in ng.heads}
    assert relu.model == NeuronModel.GRADED_RELU


def test_layernorm_is_an_embedded_norm_population_with_its_parameters():
    g, _ = _mlp(norm=True)
    ln = next(n for n in g.topo_nodes() if n.op == "LayerNorm")
    ng = lower(g)
    verify_neuro(ng)
    p = ng.pop(ln.outputs[0])
    assert (p.model, p.placement) == (NeuronModel.NORM, Placement.EMBEDDED)
    assert p.norm.kind == "layernorm" and p.norm.eps == pytest.approx(1e-3)
    assert np.array_equal(p.norm.gamma, g.values[ln.inputs[1]].data.astype(np.float64))
    assert np.array_equal(p.norm.beta, g.values[ln.inputs[2]].data.astype(np.float64))
    assert [(o.population, o.op, o.placement) for o in ng.offcore] == [
        (p.name, "layernorm", Placement.EMBEDDED)]


def test_token_and_position_embeddings_enter_one_hot_through_their_tables():
    b = Builder(seed=4)
    ids = b.input("ids", (B, T), "int64")
    table, pos_table = b.rand(7, 4), b.rand(9, 4)
    tok = b.op("Gather", table, ids)
    pos = b.op("Unsqueeze", b.op("Gather", pos_table, b.op("Range", start=0, limit=T, delta=1,
                                                            dtype="int64")), axes=[0])
    y = b.op("Linear", b.op("Relu", b.op("Add", tok, pos)), b.rand(4, 3))
    g = b.output(y)
    ng = lower(g)
    verify_neuro(ng)
    tokens = next(p for p in ng.populations() if p.encoding == Encoding.ONE_HOT)
    position = next(p for p in ng.populations() if p.encoding == Encoding.POSITION)
    assert (tokens.size, position.size) == (7, 9)
    assert ng.io.input_kind == "tokens" and ng.io.vocab == 7 and ng.io.input_pop is None
    by_pre = {s.pre: s for s in ng.synapses()}
    assert np.array_equal(by_pre[tokens.name].weights, g.values[table].data.astype(np.float64).T)
    assert np.array_equal(by_pre[position.name].weights,
                          g.values[pos_table].data.astype(np.float64).T)


def test_a_residual_stream_read_twice_is_one_population():
    b = Builder(seed=5)
    x = b.input("x", (B, T, 4))
    w, w1, w2 = b.rand(4, 4), b.rand(4, 4), b.rand(4, 4)
    r = b.op("Add", b.op("Linear", x, w), x)  # W·x + x, read by two Linears below
    y = b.op("Linear", b.op("Relu", b.op("Add", b.op("Linear", r, w1), b.op("Linear", r, w2))),
             b.rand(4, 2))
    g = b.output(y)
    ng = lower(g)
    W = {k: g.values[k].data.astype(np.float64) for k in (w, w1, w2)}
    # r is materialised once; the terms of one pre population merge into one group
    (into_r,) = ng.incoming(r)
    assert ng.pop(r).model == NeuronModel.GRADED and into_r.pre == ng.io.input_pop
    assert np.allclose(into_r.weights, W[w].T + np.eye(4), rtol=0, atol=1e-15)
    relu = next(p for p in ng.populations() if p.model == NeuronModel.GRADED_RELU)
    (into_relu,) = ng.incoming(relu.name)
    assert into_relu.pre == r
    assert np.allclose(into_relu.weights, W[w1].T + W[w2].T, rtol=0, atol=1e-15)


def _raises(g, match, precision="float"):
    with pytest.raises(CompileError, match=match) as e:
        lower(g, precision)
    return e.value


def test_a_product_of_two_activations_that_is_not_elementwise_names_the_node():
    b = Builder()
    x = b.input("x", (B, T, 4))
    g = b.output(b.op("Einsum", x, b.op("Relu", x), equation="bti,bti->bt",
                      onnx_name="/mlp/Dot"))
    e = _raises(g, "product of two activations is not elementwise")
    assert (e.node, e.op) == ("/mlp/Dot", "Einsum")
    b = Builder()
    x = b.input("x", (B, T, 4))
    g = b.output(b.op("Div", x, b.op("Add", b.op("Relu", x), b.const(np.ones(4))),
                      onnx_name="/mlp/Div"))
    e = _raises(g, "division by a value computed from the input")
    assert (e.node, e.op) == ("/mlp/Div", "Div")


def test_an_op_without_a_neuron_mapping_names_the_node():
    b = Builder()
    x = b.input("x", (B, T, 4))
    g = b.output(b.op("Tanh", x, onnx_name="/act/Tanh"))
    e = _raises(g, "cannot be lowered")
    assert e.node == "/act/Tanh" and "Linear, Relu" in e.hint


def test_fast_weight_lowering_is_float_only():
    g = attention_graph(np.random.default_rng(6), f="identity", lowering="fast_weight")
    assert all(h.lowering == Lowering.FAST_WEIGHT for h in lower(g).heads)
    _raises(g, "exact only in float mode", precision="fixed")
    _raises(attention_graph(np.random.default_rng(6), f="relu", lowering="fast_weight"),
            "linear attention")


def test_several_outputs_share_the_output_population_and_one_input_only():
    b = Builder()
    x = b.input("x", (B, T, 4))
    relu, lin = b.op("Relu", x), b.op("Linear", x, b.rand(4, 2))
    ng = lower(b.output(relu, lin))
    assert ng.pop(ng.io.output_pop).size == 6
    assert [(o["name"], o["offset"], o["size"]) for o in ng.io.outputs] == \
        [(relu, 0, 4), (lin, 4, 2)]
    b = Builder()
    x, y = b.input("x", (B, T, 4)), b.input("y", (B, T, 4))
    _raises(b.output(b.op("Add", x, y)), "exactly one input")


def test_heads_that_cannot_fit_are_refused_before_their_slots_are_allocated():
    """T_max = 300 000 on one chip: the lowering's check (partition.cost.check_heads_fit) names the
    attention node and the cores it would need, instead of allocating the slots first."""
    import icl_compiler as icl
    from tests.helpers import fixture

    path, _, _ = fixture("tok_identity_trilmul_1l1h")
    with pytest.raises(CompileError, match=r"T_max = 300000 slots .* need at least \d+ neuro "
                                           r"cores .* loihi2/oheo-gulch has 1 chip\(s\) × 128 = 128"):
        icl.compile(path, max_context=300_000)
    icl.compile(path, max_context=300_000, target={"system": "kapoho-point"})  # 8 chips: fits
