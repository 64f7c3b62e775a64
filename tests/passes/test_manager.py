"""The pass manager: registry, default pipeline, per-pass report, verify_each, dump_after."""
import pytest

from icl_compiler.ir.verify import IRVerifyError
from icl_compiler.passes import manager
from icl_compiler.passes.manager import (
    DEFAULT_PIPELINE,
    PASS_NAMES,
    PASSES,
    PassContext,
    run_pipeline,
)
from tests.passes.common import B, Builder, T


def small():
    b = Builder()
    x = b.input("x", (B, T, 4))
    y = b.op("Add", b.op("MatMul", b.op("Identity", x), b.rand(4, 4)), b.rand(4))
    return b.output(b.op("Relu", y))


def test_pipeline_is_registered_in_one_place():
    assert PASS_NAMES == DEFAULT_PIPELINE
    assert set(DEFAULT_PIPELINE) <= set(PASSES)
    assert DEFAULT_PIPELINE[0] == "fold_constants" and DEFAULT_PIPELINE[-2:] == ("attention", "fuse_activation")


def test_report_per_pass():
    g = small()
    rep = run_pipeline(g, PassContext(), verify_each=True)
    assert [r["name"] for r in rep] == list(DEFAULT_PIPELINE)
    assert all(set(r) == {"name", "seconds", "summary"} and r["seconds"] >= 0 for r in rep)
    assert all(isinstance(r["summary"], str) and "\n" not in r["summary"] for r in rep)
    by = {r["name"]: r["summary"] for r in rep}
    assert by["fuse_linear"] == "fused 1 MatMul+Add into Linear"
    assert by["remove_noops"] == "removed 1 Identity"
    assert g.op_counts() == {"Linear": 1, "Relu": 1}


def test_dump_after():
    texts = []
    run_pipeline(small(), PassContext(), dump_after="fuse_linear", dump=texts.append)
    assert len(texts) == 1 and "Linear(" in texts[0] and "MatMul(" not in texts[0]


def test_unknown_dump_name_lists_the_passes():
    with pytest.raises(ValueError) as e:
        run_pipeline(small(), PassContext(), dump_after="nope", dump=print)
    assert "nope" in str(e.value) and all(n in str(e.value) for n in PASS_NAMES)


def test_verify_each_names_the_broken_pass(monkeypatch):
    def broken(g, ctx):
        next(iter(g.nodes.values())).inputs[0] = "ghost"
        g._dirty()
        return "broke it"

    monkeypatch.setitem(PASSES, "broken", broken)
    g = small()
    with pytest.raises(IRVerifyError, match="after pass 'broken'"):
        run_pipeline(g, PassContext(), verify_each=True, pipeline=["remove_noops", "broken"])
    assert manager.run_pipeline(small(), PassContext(), pipeline=["broken"])[0]["summary"] == "broke it"
