"""The corpus of third-party exports (tests/fixtures/corpus: torch.nn, Hugging Face transformers,
x-transformers; both torch exporters; static and dynamic axes; with and without constant folding;
fp16; multi-output use_cache exports), compiled end to end.

* expected "compile": float within 1e-4 of onnxruntime (relative, every output; an fp16 model
  against the float32 reference computed from the same weights), fixed point within 5 %
  calibrated on the input;
* expected "refuse_softmax": a CompileError that names one of the model's Softmax nodes;
* expected "compile_after" (needs an issue-13 neuron kind): with the kinds the compiler maps now
  (:data:`MAPPED_NOW`: smooth activations, gated MLPs, rotary embeddings, convolutions within a
  token) the same strict bounds; the others (sigmoid attention) compile within the same bounds
  or are refused with a CompileError naming an ONNX node (never anything else).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import icl_compiler as icl
from icl_compiler.errors import CompileError
from icl_compiler.runtime.reference import onnxruntime_run

CORPUS = Path(__file__).parent / "fixtures" / "corpus"
MODELS = json.loads((CORPUS / "manifest.json").read_text())["models"]
FLOAT_TOL, FIXED_TOL = 1e-4, 0.05


def _case(m):
    x = np.load(CORPUS / (m["input_file"] or next(iter(m["input_files"].values()))))
    outs = m["output_files"]
    outs = list(outs.values()) if isinstance(outs, dict) else outs
    refs = [np.load(CORPUS / o) for o in outs]
    ctx = m["context"] if m["axes"] == "dynamic" else None
    return CORPUS / m["file"], x, refs, ctx


def _rel(ys, refs) -> float:
    ys = ys if isinstance(ys, tuple) else (ys,)
    assert len(ys) == len(refs)
    return max(float(np.abs(y - r).max() / max(float(np.abs(r).max()), 1e-30))
               for y, r in zip(ys, refs))


def _check_compiles(m):
    path, x, refs, ctx = _case(m)
    prog = icl.compile(path, max_context=ctx)
    if m["dtype"] == "float16":  # the reference: float32 from the same weights
        refs = onnxruntime_run(path, x, prog.io.bound, all_outputs=True)
    assert _rel(prog.run(x), refs) <= FLOAT_TOL
    fixed = icl.compile(path, precision="fixed", calibration=x, max_context=ctx)
    assert _rel(fixed.run(x), refs) <= FIXED_TOL


def _ids(ms):
    return [m["name"] for m in ms]


COMPILE = [m for m in MODELS if m["expected"] == "compile"]
SOFTMAX = [m for m in MODELS if m["expected"] == "refuse_softmax"]
LATER = [m for m in MODELS if m["expected"] == "compile_after"]
# what the compile_after models need that is mapped now (issue 13)
MAPPED_NOW = {"gelu", "silu", "swiglu", "glu", "rope", "rmsnorm", "conv", "relu2_mlp"}
# a measured limit of fixed point, not of the new neurons: ReLU attention normalised by the row
# sum is discontinuous where a row's scores are all ≤ 0 (float output 0 / (0 + eps) = 0); on
# this input one head of one token has all float scores ≤ 0 and one rotated score a quantisation
# step above 0 in fixed point, so its output jumps to v (one of 16 tokens off by 45 %)
FIXED_DISCONTINUITY = {"llama_relu_rownorm_own_mha__ts18_static_nofold"}
STRICT_LATER = [m for m in LATER if set(m["compile_after"]) <= MAPPED_NOW
                and m["name"] not in FIXED_DISCONTINUITY]
OTHER_LATER = [m for m in LATER if not set(m["compile_after"]) <= MAPPED_NOW]


@pytest.mark.parametrize("m", COMPILE, ids=_ids(COMPILE))
def test_in_scope_exports_compile_and_match_onnxruntime(m):
    _check_compiles(m)


@pytest.mark.parametrize("m", SOFTMAX, ids=_ids(SOFTMAX))
def test_softmax_exports_are_refused_naming_their_softmax_node(m):
    path, x, _, ctx = _case(m)
    with pytest.raises(CompileError, match="softmax attention cannot be mapped") as e:
        icl.compile(path, max_context=ctx)
    assert e.value.node in (m["softmax_nodes"] or [m["softmax_node"]])


@pytest.mark.parametrize("m", STRICT_LATER, ids=_ids(STRICT_LATER))
def test_exports_with_activations_products_rotary_and_conv_compile_and_match(m):
    _check_compiles(m)


@pytest.mark.parametrize("name", sorted(FIXED_DISCONTINUITY))
def test_rowsum_relu_discontinuity_costs_one_token_in_fixed_point(name):
    (m,) = [m for m in MODELS if m["name"] == name]
    path, x, refs, ctx = _case(m)
    assert _rel(icl.compile(path, max_context=ctx).run(x), refs) <= FLOAT_TOL
    y = icl.compile(path, precision="fixed", calibration=x, max_context=ctx).run(x)
    err = np.abs(y - refs[0]).max(-1) / np.abs(refs[0]).max()  # per token
    assert np.count_nonzero(err > FIXED_TOL) == 1 and np.sort(err.ravel())[-2] <= 0.01


@pytest.mark.parametrize("m", OTHER_LATER, ids=_ids(OTHER_LATER))
def test_exports_that_need_other_neurons_compile_or_name_the_node(m):
    try:
        _check_compiles(m)
    except CompileError as e:
        assert e.node, f"the refusal names no node: {e}"


def test_the_corpus_covers_the_families_and_exporters():
    fams = {m["family"] for m in COMPILE}
    assert {"torch.nn", "gpt2", "opt", "gpt_bigcode", "x-transformers"} <= fams
    assert {(m["exporter"], m["axes"]) for m in COMPILE} >= {
        ("torchscript", "static"), ("torchscript", "dynamic"), ("dynamo", "static"),
        ("dynamo", "dynamic")}
