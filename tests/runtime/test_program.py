"""Program API on every softmax-free fixture: float == onnxruntime, fixed within recorded bounds,
save/load round trip, T_max errors."""
import json

import numpy as np
import pytest

import icl_compiler as icl
from icl_compiler.errors import OptionError
from icl_compiler.runtime.reference import onnxruntime_run
from tests.helpers import FEAT, fixture, fixture_names, leftovers, one_line, run_cli

# Fixed-point relative error (max |y - ort| / max |ort|), calibrated on the fixture's own input,
# measured when this test was written.  The test fails if a figure worsens by more than 10 %.
# 8-bit = one int8 synapse per weight and per K/V entry; 16-bit = two (high and residual).
FIXED_ERROR = {
    # name: (8-bit, 16-bit)
    "tok_identity_trilmul_1l1h": (0.0351, 0.00024),
    "tok_identity_fill0_2l2h_ln": (0.0379, 0.00033),
    "tok_relu_fillneg_2l2h_ln_pos": (0.0454, 0.00025),
    "feat_relu_where_1l2h_rms": (0.0271, 0.00086),
    "feat_relu2_additive_2l4h_lndec": (0.0298, 0.00042),
    "tok_relu_rownorm_trilmul_1l2h": (0.023, 0.00014),
    "tok_relu_perhead_fillneginf_1l2h": (0.0258, 0.00025),
    "feat_relu_wherearange_fused_2l2h": (0.0276, 0.00038),
    "feat_identity_trilmul_1l4h_noMLP": (0.0183, 0.00027),
    "dyn_tok_relu_fillneg_2l2h_ln": (0.0373, 0.00046),
    # ill-conditioned at 8 bits: RMSNorm rescales a low-norm token whose residual carries the
    # global 8-bit weight and K/V quantisation steps; the default (auto) picks 16 bits for it
    "dyn_feat_relu_trilmul_2l2h_rms_ext": (0.4637, 0.00064),
}
NAMES = fixture_names(softmax=False)


def _compile(name, **kw):
    path, x, meta = fixture(name)
    return path, x, meta, icl.compile(path, max_context=meta["t_max"], **kw)


def _rel(y, ref):
    return float(np.max(np.abs(y - ref)) / np.max(np.abs(ref)))


def _inputs(meta, x0, rng):
    yield x0
    for T in (1, 11, meta["t_max"]):
        if meta["input"] == "tokens":
            yield rng.integers(0, meta["in_dim"], size=(2, T)).astype(np.int64)
        else:
            yield rng.uniform(0, 1, size=(2, T, meta["in_dim"])).astype(np.float32)


def test_every_fixture_has_a_recorded_figure():
    assert set(NAMES) == set(FIXED_ERROR)


@pytest.mark.parametrize("name", NAMES)
def test_float_matches_onnxruntime(name):
    path, x0, meta, prog = _compile(name, precision="float")
    rng = np.random.default_rng(1)
    for x in _inputs(meta, x0, rng):
        ref = onnxruntime_run(str(path), x)
        y = prog.run(x)
        assert y.shape == ref.shape
        assert _rel(y, ref) <= 1e-4, (name, x.shape)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("bits", [8, 16])
def test_fixed_error_within_recorded_bound(name, bits):
    path, x, meta, prog = _compile(name, precision="fixed", calibration=x_of(name), weight_bits=bits)
    err = _rel(prog.run(x), onnxruntime_run(str(path), x))
    bound = FIXED_ERROR[name][0 if bits == 8 else 1]
    assert err <= bound * 1.1 + 1e-5, f"{name}: fixed error {err:.5f} worse than recorded {bound}"
    assert prog.report["quantisation"]["weight_bits"] == bits
    assert all(h.kv_bits == bits for h in prog.ng.heads)
    if bits == 16:
        assert err <= 0.005


@pytest.mark.parametrize("name", NAMES)
def test_default_fixed_is_within_five_percent(name):
    """The acceptance bound with default options: auto weight bits keep 8 where 8-bit meets the
    5 % target on the calibration data and take 16 where it does not."""
    path, x, meta, prog = _compile(name, precision="fixed", calibration=x_of(name))
    err = _rel(prog.run(x), onnxruntime_run(str(path), x))
    assert err <= 0.05, f"{name}: default fixed error {err:.4f}"
    q = prog.report["quantisation"]
    want = 8 if FIXED_ERROR[name][0] <= 0.05 else 16
    assert q["weight_bits"] == want and q["weight_bits_choice"].startswith("auto")
    assert q["calibration_error"]["8"] == pytest.approx(FIXED_ERROR[name][0], rel=0.1)
    if want == 16:
        assert "> target 5.00%" in q["weight_bits_choice"]
        assert any(s.name.endswith(":lo") for s in prog.ng.synapses())
        assert all("hi·2^7 + lo" in h["encodings"]["K"] for h in prog.report["attention"])


def test_error_target_moves_the_auto_choice():
    name = "feat_identity_trilmul_1l4h_noMLP"  # 8-bit error 1.8 %
    path, x, meta = fixture(name)
    loose = icl.compile(path, precision="fixed", calibration=x, max_context=16, error_target=0.05)
    tight = icl.compile(path, precision="fixed", calibration=x, max_context=16, error_target=0.01)
    assert loose.report["quantisation"]["weight_bits"] == 8
    assert tight.report["quantisation"]["weight_bits"] == 16
    with pytest.raises(OptionError, match="error_target"):
        icl.compile(path, precision="fixed", calibration=x, max_context=16, error_target=0)
    with pytest.raises(OptionError, match="weight_bits"):
        icl.compile(path, precision="fixed", calibration=x, max_context=16, weight_bits=12)


def x_of(name):
    return fixture(name)[1]


def test_fixed_payloads_are_integers_and_outputs_dequantised():
    path, x, meta, prog = _compile("tok_relu_perhead_fillneginf_1l2h", precision="fixed",
                                   calibration=x_of("tok_relu_perhead_fillneginf_1l2h"))
    raw = prog.run(x, return_payload=True)
    assert raw.dtype.kind == "i"
    assert np.allclose(prog.run(x), raw * prog.ng.pop("output").scale)


@pytest.mark.parametrize("precision, bits", [("float", 8), ("fixed", 8), ("fixed", 16)])
def test_save_load_roundtrip(tmp_path, precision, bits):
    name = "feat_relu2_additive_2l4h_lndec"
    path, x, meta, prog = _compile(name, precision=precision, weight_bits=bits)
    prog.save(tmp_path / "p")
    prog2 = icl.load(tmp_path / "p")
    assert [h.kv_bits for h in prog2.ng.heads] == [h.kv_bits for h in prog.ng.heads]
    assert np.array_equal(prog.run(x), prog2.run(x))
    assert prog2.report == json.loads(json.dumps(prog.report, default=str))


def test_sequence_longer_than_t_max_names_it():
    path, x, meta, prog = _compile("tok_identity_trilmul_1l1h", precision="float")
    long = np.zeros((1, meta["t_max"] + 1), np.int64)
    with pytest.raises(ValueError, match=r"T_max = 16.*--max-context"):
        prog.run(long)


def test_dynamic_mask_without_capacity_asks_for_max_context():
    path, _, _ = fixture("tok_identity_trilmul_1l1h")
    with pytest.raises(icl.CompileError, match="max-context"):
        icl.compile(path)


def test_report_keys():
    name = "tok_relu_rownorm_trilmul_1l2h"
    path, x, meta, prog = _compile(name, precision="fixed", calibration=x_of(name))
    r = prog.report
    for key in ("model", "precision", "passes", "attention", "resources", "schedule", "ops",
                "quantisation"):
        assert key in r
    assert r["precision"] == "fixed"
    assert len(r["attention"]) == meta["layers"] * meta["heads"]
    assert all(h["lowering"] == "kv_slot" and "auto" in h["lowering_reason"] for h in r["attention"])
    assert r["schedule"]["steps_per_token"] == 2 and r["schedule"]["pipeline_depth"] >= 3
    assert r["ops"]["learning_updates_per_token"] > 0 and r["ops"]["synaptic_ops_per_token"] > 0
    assert {o["op"] for o in r["offcore"]} == {"divide"}  # the row-sum normalisation


def test_fast_weight_lowering_float_only():
    name = "feat_identity_trilmul_1l4h_noMLP"
    path, x, meta, prog = _compile(name, precision="float", lowering="fast_weight")
    assert _rel(prog.run(x), onnxruntime_run(str(path), x)) <= 1e-4
    with pytest.raises(icl.CompileError, match="float"):
        _compile(name, precision="fixed", lowering="fast_weight")


def test_strict_turns_saturation_into_an_error():
    # with 8-bit weights this fixture's own input saturates one plastic write (recorded above)
    name = "tok_relu_rownorm_trilmul_1l2h"
    path, x, meta = fixture(name)
    prog = icl.compile(path, precision="fixed", calibration=x, max_context=16)
    sat = prog.report["quantisation"]["saturation_events"]
    assert sat >= 1 and prog.report["quantisation"]["saturations"]
    with pytest.raises(icl.CompileError, match=r"--strict: \d+ saturation events"):
        icl.compile(path, precision="fixed", calibration=x, max_context=16, strict=True)
    # 16-bit weights keep the same data inside the ranges: strict passes
    icl.compile(path, precision="fixed", calibration=x, max_context=16, strict=True,
                weight_bits=16)


def test_cli_nonfinite_run_input_is_a_usage_error(tmp_path, capsys):
    path, x, _ = fixture(FEAT)
    x = x.astype(np.float32).copy()
    x[0, 0, 0] = np.inf
    np.save(tmp_path / "x.npy", x)
    code, _, err = run_cli(capsys, path, "-o", tmp_path / "out", "--run", tmp_path / "x.npy")
    line = one_line(err)
    assert code == 2 and "NaN or inf" in line
    assert not (tmp_path / "out").exists() and not leftovers(tmp_path)


def test_programs_of_the_previous_format_are_refused_with_a_hint_to_recompile(tmp_path):
    path, x, meta, prog = _compile("tok_identity_trilmul_1l1h", precision="float")
    prog.save(tmp_path / "p")
    doc = json.loads((tmp_path / "p" / "program.json").read_text())
    assert doc["format"] == "icl-program/2"
    doc["format"] = "icl-program/1"
    (tmp_path / "p" / "program.json").write_text(json.dumps(doc))
    with pytest.raises(icl.CompileError, match=r"old format 'icl-program/1'.*recompile"):
        icl.load(tmp_path / "p")
    prog.save(tmp_path / "p")  # an old program's folder is ours: it is replaced without --force
    assert np.array_equal(icl.load(tmp_path / "p").run(x), prog.run(x))


def test_a_corrupt_program_is_a_compile_error(tmp_path):
    path, x, meta, prog = _compile("tok_identity_trilmul_1l1h", precision="float")
    prog.save(tmp_path / "p")
    doc = json.loads((tmp_path / "p" / "program.json").read_text())
    doc["neuro"]["populations"][0]["model"] = "sigmoid"
    (tmp_path / "p" / "program.json").write_text(json.dumps(doc))
    with pytest.raises(icl.CompileError, match="corrupt.*sigmoid"):
        icl.load(tmp_path / "p")
    (tmp_path / "p" / "weights.npz").unlink()
    with pytest.raises(icl.CompileError, match="weights.npz"):
        icl.load(tmp_path / "p")


def test_activation_and_product_neurons_survive_save_and_load(tmp_path):
    from tests.test_corpus import CORPUS

    name = "llama_swiglu_rope_relu_attn__dynamo18_dynamic"
    x = np.load(CORPUS / f"{name}.input.npy")[:2, :6]
    prog = icl.compile(CORPUS / f"{name}.onnx", precision="fixed", calibration=x,
                       max_context=32)
    back = icl.load(prog.save(tmp_path / "out"))
    acts = [p.name for p in prog.ng.populations() if p.model in ("activation", "product")]
    assert acts and all(back.ng.pop(a).act == prog.ng.pop(a).act for a in acts)
    np.testing.assert_array_equal(back.run(x, return_payload=True),
                                  prog.run(x, return_payload=True))
    assert back.report["activations"] == prog.report["activations"]
