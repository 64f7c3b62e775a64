"""The few-shot showcase: the fixed emulator and Lava predict the classes onnxruntime does."""
import sys
from pathlib import Path

import numpy as np
import pytest

import icl_compiler as icl
from icl_compiler.runtime.reference import onnxruntime_run

ROOT = Path(__file__).resolve().parents[2]
FEWSHOT = ROOT / "examples" / "fewshot"
OMNIGLOT = ROOT.parent / "shared" / "data" / "omniglot"
pytest.importorskip("PIL")
sys.path.insert(0, str(FEWSHOT))
import data as fsdata  # noqa: E402


def _compile(calib_classes):
    calib = fsdata.make_episodes(calib_classes, 5, 5, 8, np.random.default_rng(7))[0]
    return icl.compile(FEWSHOT / "model.onnx", precision="fixed", calibration=calib,
                       max_context=26)


@pytest.mark.lava
def test_fixed_and_lava_predict_like_float_on_held_out_omniglot():
    """On the committed pack (no ../shared needed), calibrated on training-alphabet episodes."""
    pytest.importorskip("lava")
    test = fsdata.load_pack()
    prog = icl.compile(FEWSHOT / "model.onnx", precision="fixed",
                       calibration=fsdata.load_calib_pack()[:8], max_context=26)
    x, target = fsdata.make_episodes(test, 5, 1, 6, np.random.default_rng(11))
    p_float = onnxruntime_run(str(FEWSHOT / "model.onnx"), x)[:, -1, :5].argmax(-1)
    payload = prog.run(x, return_payload=True)
    p_fixed = prog.run(x)[:, -1, :5].argmax(-1)
    lava_payload = prog.run(x, backend="lava", return_payload=True)
    assert np.array_equal(lava_payload, payload)
    assert np.array_equal(p_fixed, p_float)
    assert (p_float == target).mean() >= 0.5  # the model does learn in context


@pytest.mark.lava
def test_lava_equals_emulator_on_digit_episodes():
    """Cross-domain episodes (no Omniglot needed): Lava and the emulator agree bit for bit."""
    pytest.importorskip("lava")
    digits = fsdata.load_sklearn_digits()
    prog = _compile(digits)
    x, _ = fsdata.make_episodes(digits, 5, 1, 3, np.random.default_rng(3))
    assert np.array_equal(prog.run(x, backend="lava", return_payload=True),
                          prog.run(x, return_payload=True))


# --- the committed held-out pack, the calibration episodes and `make run`'s table (issue 17) ---

sys.path.insert(0, str(ROOT))
import make_pack  # noqa: E402

from examples import run as demo  # noqa: E402


def test_the_pack_holds_the_held_out_alphabets_as_documented():
    chars = fsdata.load_pack()
    assert len(chars) == 64
    assert sorted({k.split("/")[0] for k in chars}) == ["Greek", "Korean"]
    for v in chars.values():
        assert v.shape == (20, 784) and v.dtype == np.float32
        assert v.min() >= 0 and v.max() <= 1 and v.max() > 0.5  # ink = 1 on a 0 background
        assert np.array_equal(fsdata.from_u8(make_pack.to_u8(v)), v)  # values are 1 - a/255
    with np.load(fsdata.PACK) as z:
        assert z["images"].dtype == np.uint8 and z["images"].shape == (64, 20, 28, 28)
    assert Path(fsdata.PACK).stat().st_size + Path(fsdata.CALIB_PACK).stat().st_size < 300_000
    assert "Brenden Lake" in (FEWSHOT / "LICENCE-omniglot").read_text()


def test_the_calibration_pack_is_5_way_5_shot_episodes():
    c = fsdata.load_calib_pack()
    assert c.shape == (16, 26, 804) and c.dtype == np.float32
    labels = c[:, :, 784:]
    assert np.array_equal(labels[:, :-1].sum(-1), np.ones((16, 25)))  # one-hot context labels
    assert not labels[:, -1].any()  # the query's label slots are zero
    assert np.array_equal(labels[:, :-1].sum(1)[:, :5], np.full((16, 5), 5.0))  # 5 shots × 5 ways
    assert not labels[..., 5:].any()


def test_to_u8_refuses_values_it_cannot_store_losslessly():
    with pytest.raises(ValueError, match="lossless"):
        make_pack.to_u8(np.array([0.5], np.float32))


@pytest.mark.skipif(not OMNIGLOT.is_dir(), reason=f"Omniglot not found at {OMNIGLOT}")
def test_the_packs_rebuild_byte_identically_from_the_zips(tmp_path):
    held, calib = make_pack.build(str(OMNIGLOT), str(tmp_path))
    assert Path(held).read_bytes() == Path(fsdata.PACK).read_bytes()
    assert Path(calib).read_bytes() == Path(fsdata.CALIB_PACK).read_bytes()
    train, test = fsdata.split_alphabets(fsdata.load_omniglot(str(OMNIGLOT)))
    pack = fsdata.load_pack()
    assert sorted(pack) == sorted(test)
    assert all(np.array_equal(pack[k], test[k]) for k in test)  # bit for bit, not within noise
    assert np.array_equal(fsdata.load_calib_pack(), demo.calibration(train))
    assert not set(train) & set(pack)  # calibration never sees a held-out character


@pytest.fixture(scope="module")
def pack_prog():
    return icl.compile(FEWSHOT / "model.onnx", precision="fixed",
                       calibration=fsdata.load_calib_pack()[:4], max_context=demo.T_MAX)


def _float_run():
    import onnxruntime as ort

    sess = ort.InferenceSession(str(FEWSHOT / "model.onnx"), providers=["CPUExecutionProvider"])
    return lambda b: sess.run(None, {"x": b})[0]


def test_the_table_on_a_few_episodes(pack_prog):
    pack = fsdata.load_pack()
    res = demo.evaluate(pack_prog, _float_run(), pack, demo.TASKS, 6, 2024)
    assert sorted(res) == sorted(demo.TASKS)
    for (n, k), r in res.items():
        assert r["tokens"] == n * k + 1 and len(r["float"]) == len(r["fixed"]) == 6
        x, t = fsdata.make_episodes(pack, n, k, 6, np.random.default_rng(demo.task_seed(2024, n, k)))
        assert np.array_equal(r["target"], t)
        assert np.array_equal(r["fixed"], pack_prog.run(x)[:, -1, :n].argmax(-1) == t)
    table = demo.format_table(res, pack_prog.report, "the pack", 0, "skipped")
    lines = table.splitlines()
    assert lines[2].split("  ")[1].strip() == "task"
    for (n, k), line in zip(demo.TASKS, lines[3:6]):
        assert line.strip().startswith(f"{n}-way {k}-shot")
        assert line.count("n=6") == 2 and "n/a (skipped)" in line
        acc = 100 * res[(n, k)]["float"].mean()
        assert f"{acc:5.1f}%" in line
    assert "Lava =" not in table  # no Lava episodes, no claim about them


def test_the_estimate_column_uses_the_report_or_says_it_is_missing(pack_prog):
    cell = demo.estimate_cell(pack_prog.report, 6)
    try:
        from icl_compiler.passes.estimate import episode_estimate
    except ImportError:
        assert cell == "n/a (estimate not available)"
        return
    e = episode_estimate(pack_prog.report["estimate"], 6)
    assert cell.startswith(demo._si(e["latency_s"], "s")) and "(6 tokens)" in cell
    assert demo.estimate_cell({}, 6) == "n/a (estimate not available)"


def test_si_prefixes():
    assert demo._si(2.5e-6, "s") == "2.5 µs"
    assert demo._si(0.0123, "J") == "12.3 mJ"
    assert demo._si(3.0, "s") == "3 s"


def test_the_curve_svg_is_well_formed_and_holds_every_point(pack_prog):
    import xml.etree.ElementTree as ET

    res = demo.evaluate(pack_prog, _float_run(), fsdata.load_pack(), demo.CURVE, 3, 5)
    svg = demo.curve_svg(res, "the pack")
    root = ET.fromstring(svg)
    ns = "{http://www.w3.org/2000/svg}"
    assert root.tag == ns + "svg"
    titles = [t.text for t in root.iter(ns + "title")]
    assert len(titles) == 2 * len(demo.CURVE)  # float and fixed at every (N, K)
    assert demo.CURVE == [(5, 1), (5, 2), (5, 3), (5, 4), (5, 5), (10, 1), (10, 2), (20, 1)]
    r = res[(10, 2)]["fixed"]
    assert f"10-way fixed, K=2: {100 * r.mean():.1f}%" in " ".join(titles)
    assert len(root.findall(ns + "polyline")) == 4  # 5- and 10-way, float and fixed; 20-way: one K
    assert "41 tokens" in svg
    committed = ET.parse(ROOT / "docs" / "fewshot_accuracy_vs_shots.svg").getroot()  # README's
    assert len([t for t in committed.iter(ns + "title")]) == 2 * len(demo.CURVE)


def test_make_run_end_to_end_on_two_episodes(tmp_path, capsys):
    assert demo.main(["--episodes", "2", "--lava-episodes", "0", "-o", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    assert "held-out alphabets Greek, Korean" in out and "5-way 5-shot" in out
    assert out.rstrip().splitlines()[-1].startswith("picture:")
    assert (tmp_path / "o" / "report.json").is_file()
    assert (tmp_path / "o" / demo.PICTURE).read_text().startswith("<svg")


@pytest.mark.lava
def test_lava_column_compares_whole_output_arrays(pack_prog):
    pytest.importorskip("lava")
    res = demo.evaluate(pack_prog, _float_run(), fsdata.load_pack(), [(5, 1)], 4, 2024,
                        lava_episodes=2)
    r = res[(5, 1)]
    assert len(r["lava"]) == len(r["lava_equal"]) == 2 and r["lava_equal"].all()
    assert np.array_equal(r["lava"], r["fixed"][:2])  # same outputs, same predictions
