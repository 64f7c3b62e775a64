"""The token schedule: the 2-step head protocol and the pipeline depth, by hand."""
import numpy as np

from icl_compiler.passes.lower import lower
from icl_compiler.passes.schedule import schedule
from tests.helpers import attention_graph


def test_two_step_protocol_and_depth_by_hand():
    # x(input, τ0) → q,k,v Linears → head; out → o Linear + residual x → Relu → y Linear → output
    ng = lower(attention_graph(np.random.default_rng(0), heads=1))
    s = schedule(ng)
    h = ng.heads[0]
    step = {p.name: p.attrs["step"] for p in ng.populations()}
    assert s["steps_per_token"] == 2
    # k, q, v are one Dense from the input (τ 1); the anchor A is the k write: A = 1
    A = s["heads"][0]["anchor"]
    assert A == 1
    assert (step[h.k], step[h.q], step[h.v], step[h.slots], step[h.out]) == (A, A + 1, A + 1,
                                                                             A + 2, A + 3)
    # the o Linear and the residual x fold into the Relu population h (its only consumer): A+4;
    # the y Linear into the output population: A+5
    assert step["h"] == A + 4
    assert s["pipeline_depth"] == A + 5 == step["output"]
    assert s["steps_per_sequence"] == f"2*(T-1) + {A + 6}"


def test_every_population_fires_after_its_inputs():
    ng = lower(attention_graph(np.random.default_rng(1), heads=2, norm="rowsum", f="relu2"))
    schedule(ng)
    for syn in ng.synapses():
        if syn.role == "static":
            assert ng.pop(syn.post).attrs["step"] >= ng.pop(syn.pre).attrs["step"] + 1
