"""The Lava network plan and the schedule it realises (pure Python: runs without Lava)."""
from __future__ import annotations

import sys

import numpy as np
import pytest

import icl_compiler as icl
from icl_compiler.backends.lava.plan import build_plan
from icl_compiler.semantics.timing import timing
from tests.helpers import fixture

NAMES = ["tok_relu_fillneg_2l2h_ln_pos", "tok_relu_rownorm_trilmul_1l2h",
         "feat_identity_trilmul_1l4h_noMLP"]


@pytest.fixture(scope="module", params=NAMES)
def prog(request):
    path, x, meta = fixture(request.param)
    return icl.compile(path, precision="fixed", calibration=x, max_context=meta["t_max"])


def test_schedule_is_the_plan_timing(prog):
    ng = prog.ng
    T = 5
    plan = build_plan(ng, T)
    s = prog.report["schedule"]
    assert plan.S == s["steps_per_token"] == 2
    assert plan.depth == s["pipeline_depth"]
    assert plan.L == plan.S * (T - 1) + plan.depth + 1
    tau, anchors = timing(ng)
    assert [h["anchor"] for h in s["heads"]] == anchors
    for p in ng.populations():
        assert p.attrs["step"] == tau[p.name]
    for h, a in zip(ng.heads, anchors):
        assert a >= 1  # room for the clear step before the first write
        assert (tau[h.k], tau[h.q], tau[h.v], tau[h.slots], tau[h.out]) == (a, a + 1, a + 1,
                                                                          a + 2, a + 3)
    # every static group arrives no later than its post population fires
    for syn in ng.synapses():
        if syn.role == "static":
            post_tau = tau[syn.post]
            assert post_tau >= tau[syn.pre] + 1, syn.name


@pytest.mark.parametrize("layout,exp_in", [("merged", "neuron"), ("separate", "neuron"),
                                           ("separate", "dense")])
def test_every_static_group_is_in_exactly_one_dense(prog, layout, exp_in):
    ng = prog.ng
    plan = build_plan(ng, 4, exp_in=exp_in, layout=layout)
    static = {s.name for s in ng.synapses() if s.role == "static"}
    carried = [g for d in plan.dense for g in d.groups]
    assert sorted(carried) == sorted(static)
    keys = [(d.pre, d.post, d.exp) for d in plan.dense]
    assert len(keys) == len(set(keys))  # one Dense per (pre process, post process, exponent)
    for d in plan.dense:
        assert d.weights.shape[0] == plan.procs[d.post].bank["ports"][d.port]
        assert d.weights.shape[1] == plan.procs[d.pre].size
        assert d.weights.min() >= -128 and d.weights.max() <= 127
    # delay lines: non-negative delays and every bank port is read
    for p in plan.procs.values():
        if p.bank is None:
            continue
        read = {c[0] for u in p.bank["units"] for cs in u["operands"].values() for c in cs}
        assert read == set(range(len(p.bank["ports"])))
        assert all(c[3] >= 0 for u in p.bank["units"] for cs in u["operands"].values()
                   for c in cs)
    # processes: heads share their neuron processes; K and V are one process each per head
    c = plan.counts()
    assert c["LearningDense"] == 2 * len(ng.heads)
    if layout == "merged":  # one neuron process; a Dense from each pre process to each post
        assert c["CoreNeurons"] == 1 and "KQNeuron" not in c and "GradedNeurons" not in c
        posts = {"core"} | ({"embedded"} if "embedded" in plan.procs else set())
        assert c["Dense"] <= len({d.pre for d in plan.dense}) * len(posts)
    else:
        assert c["KQNeuron"] == c["SlotNeuron"] == c["ValueNeuron"] == c["GradedNeurons"] == 1
    if exp_in == "neuron":
        assert all(d.exp == 1 for d in plan.dense)  # weight_exp 0: the neurons shift
    assert plan.n_processes == sum(c.values())


def test_lava_unavailable_is_a_clear_import_error(monkeypatch):
    """Where Lava cannot be imported (Python >= 3.11), backend="lava" names the requirement."""
    from icl_compiler.backends import lava as L

    if L.lava_available():  # simulate the failing import
        for mod in ("lava.magma.core.run_configs", "lava.proc.dense.process"):
            monkeypatch.setitem(sys.modules, mod, None)
    path, x, meta = fixture("tok_relu_perhead_fillneginf_1l2h")
    prog = icl.compile(path, precision="fixed", calibration=x, max_context=meta["t_max"])
    with pytest.raises(ImportError, match="Python 3.10"):
        prog.run(x[:1, :3], backend="lava")
    assert np.asarray(prog.run(x[:1, :3])).shape[:2] == (1, 3)  # numpy still works


def test_lava_imports_after_multiprocessing_context_was_fixed():
    """tqdm (and others) fix the multiprocessing start method; Lava's import must survive it."""
    import subprocess
    import sys

    code = ("import multiprocessing as mp; mp.RLock(); "
            "from icl_compiler.backends.lava import lava_unavailable_reason as r; "
            "import lava; print(r())")
    pytest.importorskip("lava")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "None", out.stderr


@pytest.mark.parametrize("layout", ["merged", "separate"])
def test_product_units_read_their_second_operand_from_the_port_1_rows(layout):
    from tests.test_corpus import CORPUS

    name = "llama_swiglu_rope_relu_attn__dynamo18_dynamic"
    x = np.load(CORPUS / f"{name}.input.npy")
    ng = icl.compile(CORPUS / f"{name}.onnx", precision="fixed", calibration=x,
                     max_context=32).ng
    plan = build_plan(ng, 3, layout=layout)
    host = plan.procs["core" if layout == "merged" else "graded"]  # where graded units live
    units = {u["name"]: u for u in host.bank["units"]}
    prods = [p for p in ng.populations() if p.model == "product"]
    assert prods and {units[p.name]["kind"] for p in prods} == {"product"}
    for p in prods:
        u = units[p.name]
        assert set(u["operands"]) == {"cur", "b"}
        by_port = {0: 0, 1: 0}
        for s in ng.incoming(p.name):
            by_port[s.port] += 1
        assert len(u["operands"]["b"]) == by_port[1] and len(u["operands"]["cur"]) == by_port[0]
    acts = [p for p in ng.populations() if p.model == "activation"]
    assert acts and {units[p.name]["kind"] for p in acts} == {"activation"}
