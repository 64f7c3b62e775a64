"""The compile driver (compiler.py): one pipeline over both IRs, one loop that times, verifies
and dumps every stage, and each stage's report section."""
from __future__ import annotations

import pytest

import icl_compiler as icl
from icl_compiler.compiler import REPORT_ORDER, STAGES
from icl_compiler.passes.manager import DEFAULT_PIPELINE, PIPELINE
from tests.helpers import SMALL, fixture

NEURO = ("lower", "quantise", "schedule", "partition", "estimate")


def test_the_stages_are_the_frontend_then_the_pipeline():
    names = [p.name for p in STAGES]
    assert names == ["load", "import", *DEFAULT_PIPELINE, *NEURO]
    assert [p.name for p in PIPELINE][-len(NEURO):] == list(NEURO)
    irs = [(p.ir, p.result) for p in STAGES]
    assert irs[:2] == [("source", "onnx"), ("onnx", "tensor")]
    assert ("tensor", "neuro") in irs and irs[-1] == ("neuro", "neuro")
    for i, p in enumerate(STAGES):  # every requirement runs earlier
        assert set(p.requires) <= set(names[:i]), p.name


@pytest.mark.parametrize("precision", ["float", "fixed"])
def test_report_passes_and_sections(precision):
    path, x, _ = fixture(SMALL)
    prog = icl.compile(path, precision=precision, calibration=x, max_context=16)
    ran = [p["name"] for p in prog.report["passes"]]
    assert ran == [p.name for p in STAGES if precision == "fixed" or p.name != "quantise"]
    assert all(p["seconds"] >= 0 and p["summary"] for p in prog.report["passes"])
    assert list(prog.report) == [k for k in REPORT_ORDER
                                 if precision == "fixed" or k != "quantisation"]
    assert prog.report["schedule"] is prog.ng.schedule
    assert all("encodings" in h for h in prog.report["attention"])


@pytest.mark.parametrize("stage", [p.name for p in STAGES])
def test_dump_ir_after_every_stage(stage):
    path, x, _ = fixture(SMALL)
    texts = []
    icl.compile(path, precision="fixed", calibration=x, max_context=16, dump_after=stage,
                dump=texts.append)
    assert len(texts) == 1
    text = texts[0]
    if stage == "load":
        assert "Trilu" in text  # the ONNX model, printed by onnx.printer
    elif stage in NEURO:
        assert text.startswith("neuro graph (" + ("float" if stage == "lower" else "fixed"))
        assert ("schedule {" in text) == (stage in ("schedule", "partition", "estimate"))
    else:
        assert "PlasticAttention(" in text if stage == "attention" else "(" in text


def test_verify_ir_names_the_pass_that_broke_the_ir(monkeypatch):
    import icl_compiler.compiler as driver
    from icl_compiler.errors import CompileError, IRVerifyError
    from icl_compiler.passes.base import tensor_pass

    def broken(g, ctx):
        next(iter(g.nodes.values())).inputs[0] = "ghost"
        g._dirty()
        return "broke it"

    stages = [tensor_pass("remove_noops", broken) if p.name == "remove_noops" else p
              for p in driver.STAGES]
    monkeypatch.setattr(driver, "STAGES", tuple(stages))
    path, _, _ = fixture(SMALL)
    with pytest.raises(IRVerifyError, match="after pass 'remove_noops'.*not bound") as e:
        icl.compile(path, max_context=16, verify_ir=True)
    assert isinstance(e.value, CompileError) and "\n" not in str(e.value)
