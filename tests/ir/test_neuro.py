"""The neuromorphic IR (ir/neuro.py): typed records, generated names, the synapse index, the
save format, and a verifier that rejects each broken invariant with a message that says which."""
from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from icl_compiler.errors import CompileError
from icl_compiler.ir import neuro_serialize
from icl_compiler.ir.neuro import (Encoding, Lowering, NeuroGraph, NeuroVerifyError, NeuronModel,
                                   NormParams, OffcoreOp, Placement, Population, ProgramIO,
                                   QuantParams, Role, SynapseGroup, verify_neuro)
from icl_compiler.passes.lower import lower
from icl_compiler.passes.quantise import quantise
from tests.helpers import attention_graph


@pytest.fixture(scope="module")
def graphs():
    rng = np.random.default_rng(0)
    ng = lower(attention_graph(rng, heads=2, norm="rowsum", t_max=8))
    q, _ = quantise(ng, rng.uniform(0, 1, (2, 8, 6)), weight_bits=8)
    return ng, q


def test_enumerations_compare_print_and_serialise_as_their_values():
    p = Population("p", 3, "graded_relu", placement="embedded")
    assert p.model is NeuronModel.GRADED_RELU and p.placement is Placement.EMBEDDED
    assert p.model == "graded_relu" and f"{p.model}@{p.placement}" == "graded_relu@embedded"
    assert repr(p.model) == "'graded_relu'" and json.dumps([p.model]) == '["graded_relu"]'
    assert p.model in {"graded_relu"} and "embedded" in {p.placement: 1}
    with pytest.raises(ValueError):
        Population("p", 3, "sigmoid")
    assert SynapseGroup("s", "a", "b", np.zeros((1, 1)), role="k").role is Role.K
    assert Lowering("fast_weight") is Lowering.FAST_WEIGHT and Encoding("position").value == "position"


def test_new_population_and_connect_generate_names():
    ng = NeuroGraph()
    a = ng.new_population("x", 2, NeuronModel.INPUT, placement=Placement.HOST)
    b = ng.new_population("x", 3, NeuronModel.GRADED)
    c = ng.new_population("x", 3, NeuronModel.GRADED)
    assert (a.name, b.name, c.name) == ("x", "x.1", "x.2")
    s1 = ng.connect(a.name, b.name, np.ones((3, 2)))
    s2 = ng.connect(b.name, c.name, np.ones((3, 3)))
    assert (s1.name, s2.name) == ("s1:x->x.1", "s2:x.1->x.2")
    assert ng.syn("s2:x.1->x.2") is s2 and [s.name for s in ng.incoming("x.2")] == [s2.name]
    with pytest.raises(ValueError, match="duplicate synapse group"):
        ng.add_synapses(SynapseGroup(s1.name, a.name, b.name, np.ones((3, 2))))
    with pytest.raises(ValueError, match="duplicate population"):
        ng.add_population(Population("x", 1, NeuronModel.GRADED))


@pytest.mark.parametrize("which", [0, 1])
def test_save_format_round_trip(graphs, which):
    ng = graphs[which]
    desc, arrays = neuro_serialize.to_dict(ng)
    json.dumps(desc)  # the description is plain JSON
    back = neuro_serialize.from_dict(json.loads(json.dumps(desc)), arrays)
    verify_neuro(back)
    assert back.to_text() == ng.to_text()
    assert back.io == ng.io and back.offcore == ng.offcore and back.heads == ng.heads
    for p in ng.populations():
        r = back.pop(p.name)
        assert (r.model, r.placement, r.encoding, r.q, r.scale) == (p.model, p.placement,
                                                                    p.encoding, p.q, p.scale)
        assert (r.norm is None) == (p.norm is None)
    for s in ng.synapses():
        assert np.array_equal(back.syn(s.name).weights, s.weights) and back.syn(s.name).rule == s.rule
    # the quantiser's parameters are typed, not a dict in attrs
    assert all("q" not in p.attrs for p in ng.populations())
    if which == 1:
        assert all(isinstance(back.pop(h.slots).q, QuantParams) for h in back.heads)


def _break(ng, how):
    h = ng.heads[0]
    if how == "model":
        ng.pop(h.k).model = "sigmoid"
    elif how == "offcore_on_neurocore":
        ng.pop(h.out).placement = Placement.NEUROCORE
    elif how == "bias":
        ng.pop(h.k).bias = np.zeros(7)
    elif how == "weights":
        ng.incoming(h.k)[0].weights = np.zeros((1, 1))
    elif how == "encoding":
        ng.pop(h.k).encoding = Encoding.ONE_HOT
    elif how == "norm":
        ng.pop(h.k).norm = NormParams("layernorm", 1e-5, np.ones(4), np.zeros(4))
    elif how == "q_in_float":
        ng.pop(h.k).q = QuantParams(shift=8)
    elif how == "plastic_static":
        ng.syn(h.k_syn).role = Role.STATIC
    elif how == "slots":
        h.t_max += 1
    elif how == "f":
        h.f = "sigmoid"
    elif how == "k_joins":
        h.q = h.k
    elif how == "k_syn":
        h.k_syn = "s999:nowhere"
    elif how == "kv_bits":
        h.kv_bits = 16
    elif how == "io":
        ng.io = None
    elif how == "io_pop":
        ng.io = ProgramIO("x", "features", "y", "ghost", input_pop="input")
    elif how == "io_kind":
        ng.io = ProgramIO("x", "tokens", "y", "output", input_pop="input")
    elif how == "offcore":
        ng.offcore.append(OffcoreOp("output", "divide", Placement.EMBEDDED, "?"))
    elif how == "index":
        ng._syns.pop(h.v_syn)
    elif how == "cycle":
        ng.connect("h", "L0.h0.k", np.zeros((4, 6)))
    return ng


@pytest.mark.parametrize("how, message", [
    ("model", "unknown model"),
    ("offcore_on_neurocore", "cannot run on a neurocore"),
    ("bias", "bias shape"),
    ("weights", "weights"),
    ("encoding", "input encoding"),
    ("norm", "norm parameters"),
    ("q_in_float", "quantiser parameters in a float graph"),
    ("plastic_static", "plastic synapses must have role k or v"),
    ("slots", "slots size"),
    ("f", "f 'sigmoid'"),
    ("k_joins", "k/q or v/out sizes differ|K synapses must join"),
    ("k_syn", "unknown synapse group"),
    ("kv_bits", "kv_bits"),
    ("io", "no I/O contract"),
    ("io_pop", "unknown output population"),
    ("io_kind", "input kind"),
    ("offcore", "offcore"),
    ("index", "synapse index"),
    ("cycle", "cycle"),
])
def test_verifier_rejects(graphs, how, message):
    ng = _break(copy.deepcopy(graphs[0]), how)
    with pytest.raises(NeuroVerifyError, match=message) as e:
        verify_neuro(ng)
    assert isinstance(e.value, CompileError) and "\n" not in str(e.value)


def test_verifier_rejects_fixed_mode_specifics(graphs):
    q = copy.deepcopy(graphs[1])
    verify_neuro(q)
    s = next(s for s in q.synapses() if not s.plastic)
    s.weights = s.weights.astype(np.int64) * 4
    with pytest.raises(NeuroVerifyError, match="int8 mantissas"):
        verify_neuro(q)
    q = copy.deepcopy(graphs[1])
    q.heads[0].lowering = Lowering.FAST_WEIGHT
    with pytest.raises(NeuroVerifyError, match="lowering 'fast_weight'"):
        verify_neuro(q)


def _gated():
    """x → gelu(x·W1) ⊙ (x·W3): an activation population and a product population."""
    from tests.passes.common import B, Builder, T

    b = Builder(seed=9)
    x = b.input("x", (B, T, 4))
    a = b.op("Activation", b.linear(x, 4, 6), fn="gelu")
    return b.output(b.linear(b.op("Mul", a, b.linear(x, 4, 6, bias=False)), 6, 3))


def test_activation_and_product_populations_save_verify_and_keep_their_ports():
    ng = lower(_gated())
    verify_neuro(ng)
    act = next(p for p in ng.populations() if p.model == NeuronModel.ACTIVATION)
    prod = next(p for p in ng.populations() if p.model == NeuronModel.PRODUCT)
    assert act.act.fn == "gelu" and act.act.method == "exact"
    assert sorted(s.port for s in ng.incoming(prod.name)) == [0, 1]
    q, _ = quantise(ng, np.random.default_rng(1).uniform(-1, 1, (2, 8, 4)), weight_bits=16)
    assert q.pop(act.name).act.method == "pwl" and q.pop(prod.name).q.in_scale_b > 0
    # the 16-bit residual groups feed the same port as their high groups
    lo = [s for s in q.incoming(prod.name) if s.name.endswith(":lo")]
    assert lo and all(s.port == q.syn(s.name[:-3]).port for s in lo)
    for g in (ng, q):
        desc, arrays = neuro_serialize.to_dict(g)
        back = neuro_serialize.from_dict(json.loads(json.dumps(desc)), arrays)
        verify_neuro(back)
        assert back.pop(act.name).act == g.pop(act.name).act
        assert [s.port for s in back.synapses()] == [s.port for s in g.synapses()]


@pytest.mark.parametrize("how, message", [
    ("port_into_graded", "port 1 into a output population"),
    ("act_on_graded", "activation parameters on a output"),
    ("act_missing", "activation parameters missing"),
    ("one_port", "needs synapses on both ports"),
    ("pwl_in_float", "method 'pwl' in a float graph"),
    ("unknown_fn", "activation 'swish2'"),
])
def test_verifier_rejects_broken_activation_and_product_neurons(how, message):
    from icl_compiler.ir.neuro import ActivationParams

    ng = lower(_gated())
    act = next(p for p in ng.populations() if p.model == NeuronModel.ACTIVATION)
    prod = next(p for p in ng.populations() if p.model == NeuronModel.PRODUCT)
    if how == "port_into_graded":
        ng.incoming(ng.io.output_pop)[0].port = 1
    elif how == "act_on_graded":
        ng.pop(ng.io.output_pop).act = ActivationParams("gelu")
    elif how == "act_missing":
        act.act = None
    elif how == "one_port":
        for s in ng.incoming(prod.name):
            s.port = 0
    elif how == "pwl_in_float":
        act.act = ActivationParams("gelu", "pwl")
    elif how == "unknown_fn":
        act.act = ActivationParams("swish2")
    with pytest.raises(NeuroVerifyError, match=message):
        verify_neuro(ng)
