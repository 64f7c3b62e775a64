"""Loihi 2 target description: constants, systems, overrides, and agreement with installed Lava."""
import pytest

from icl_compiler.targets import loihi2 as L2
from icl_compiler.targets.loihi2 import Target, as_target, get_target


def test_core_and_chip_constants():
    assert L2.NEURO_CORES_PER_CHIP == 128
    assert L2.NEURONS_PER_CORE == 8192
    assert L2.NEURONS_PER_CORE * L2.NEURO_CORES_PER_CHIP == L2.NEURONS_PER_CHIP
    assert L2.SYNAPSE_BYTES_PER_CORE == 128 * 1024
    assert L2.WEIGHT_BITS == 8 and L2.PLASTIC_WEIGHT_BITS == 9
    assert L2.PAYLOAD_BITS == 24 and L2.PAYLOAD_BITS_MAX == 32
    assert L2.TRACE_BITS == 7 and L2.LEARNING_ACCUMULATOR_BITS == 16
    assert L2.EMBEDDED_CORES_PER_CHIP == 3 and L2.EMBEDDED_CORES_PER_CHIP_BRIEF == 6


def test_constants_agree_with_installed_lava():
    lrn = pytest.importorskip("lava.magma.core.learning.constants")
    sub = pytest.importorskip("lava.magma.compiler.subcompilers.constants")
    res = pytest.importorskip("lava.magma.core.resources")
    assert lrn.W_TRACE == L2.TRACE_BITS
    assert lrn.W_TRACE_FRACTIONAL_PART == L2.TRACE_FRACTION_BITS
    assert lrn.W_WEIGHTS_S == L2.PLASTIC_WEIGHT_BITS
    assert lrn.W_ACCUMULATOR_S == L2.LEARNING_ACCUMULATOR_BITS
    assert sub.NUM_VIRTUAL_CORES_L2 == L2.NEURO_CORES_PER_CHIP
    assert sub.MAX_EMBEDDED_CORES_PER_CHIP == L2.EMBEDDED_CORES_PER_CHIP
    assert "four Loihi 2 chips" in res.KapohoPoint.__doc__
    assert "single Loihi 2 chip" in res.OheoGulch.__doc__


def test_systems_and_defaults():
    t = get_target()
    assert isinstance(t, Target)
    assert (t.system, t.chips, t.cores_per_chip, t.neurons_per_core) == ("oheo-gulch", 1, 128, 8192)
    assert t.synapse_bits_per_core == 128 * 1024 * 8
    assert t.fan_in_per_core == 4096
    assert get_target("kapoho-point").chips == 4
    assert L2.SYSTEMS["kapoho-point"]["chips_other_source"] == 8
    assert get_target("hala-point").chips == 1152
    assert get_target("hala-point").cores == 1152 * 128
    for name, s in L2.SYSTEMS.items():
        assert s["source"], name


def test_overrides_and_driver_dict():
    t = get_target("kapoho-point", chips=8, cores_per_chip=64, neurons_per_core=1024,
                   synapse_bytes_per_core=4096, fan_in_per_core=100)
    assert (t.chips, t.cores_per_chip, t.neurons_per_core, t.synapse_bytes_per_core,
            t.fan_in_per_core) == (8, 64, 1024, 4096, 100)
    assert set(t.overrides) == {"chips", "cores_per_chip", "neurons_per_core",
                                "synapse_bytes_per_core", "fan_in_per_core"}
    assert as_target(None) == get_target()
    assert as_target({"system": "hala-point", "chips": 2}).chips == 2
    assert as_target({"system": None, "chips": 3}).system == "oheo-gulch"
    assert as_target(t) is t
    d = t.to_dict()
    assert d["name"] == "loihi2/kapoho-point" and d["cores"] == 512


@pytest.mark.parametrize("kw", [{"system": "loihi3"}, {"chips": 0}, {"cores_per_chip": -1},
                                {"neurons_per_core": 1.5}, {"chips": True}])
def test_bad_targets(kw):
    with pytest.raises(ValueError):
        get_target(**kw)


def test_bad_target_dict():
    with pytest.raises(ValueError, match="unknown target option"):
        as_target({"cores": 4})
    with pytest.raises(TypeError):
        as_target(4)
