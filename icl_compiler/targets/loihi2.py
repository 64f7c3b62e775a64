"""Loihi 2 hardware description: every constant the compiler uses, each with its source.

Correct a number here and every pass picks it up.  Sources, abbreviated in the comments:

* [LAVA-RES]   lava-nc 0.10 ``lava/magma/core/resources.py`` (installed; class docstrings of the
               Loihi 2 systems ``OheoGulch``, ``KapohoPoint``).
* [LAVA-CONST] lava-nc 0.10 ``lava/magma/compiler/subcompilers/constants.py``
               (``NUM_VIRTUAL_CORES_L2 = 128``, ``MAX_EMBEDDED_CORES_PER_CHIP = 3``).
* [LAVA-LRN]   lava-nc 0.10 ``lava/magma/core/learning/constants.py`` (``W_TRACE = 7``,
               ``W_TRACE_FRACTIONAL_PART = 8``, ``W_WEIGHTS_S = 9``, ``W_ACCUMULATOR_S = 16``,
               ``W_S_MANT = 4``).
* [LAVA-DENSE] lava-nc 0.10 ``lava/proc/dense/models.py`` (``clip_weights(..., num_bits=8)``) and
               ``lava/utils/weightutils.py`` (``max_num_weight_bits = 8``).
* [LAVA-GRADED] lava-nc 0.10 ``lava/proc/graded/models.py`` ("Span the 24 bits") and the
               fixed-point contract ``docs/semantics.md`` (24-bit payload saturation).
* [BRIEF]      Intel Labs, "Taking Neuromorphic Computing to the Next Level with Loihi 2",
               technology brief (2021): 128 neuro cores and 6 embedded x86 (Lakemont) cores per
               chip, up to 1 M neurons and 120 M synapses per chip, graded spikes up to 32 bits,
               1–8 bit weights.  (Read via the open-neuromorphic.org Loihi 2 summary.)
* [LAUNCH]     Intel's Loihi 2 launch material (Sept 2021) as reported in the press: 128 KB SRAM per
               core "flexibly partitioned"; "Kapoho Point ... eight neuromorphic processors".
* [HALA]       Intel/Sandia Hala Point announcement (April 2024): 1,152 Loihi 2 chips, 140,544
               neuromorphic cores, 1.15 B neurons, 128 B synapses, > 2,300 embedded x86 cores.
* [NENGO]      nengo-loihi ``nengo_loihi/block.py`` (Loihi 1 core limits, the only public per-core
               numbers): ``MAX_COMPARTMENTS = 1024``, ``MAX_IN_AXONS = 4096``,
               ``MAX_OUT_AXONS = 4096``, ``MAX_SYNAPSE_BITS = 1048576`` (= 128 KiB), and the synapse
               memory format in ``SynapseConfig.bits_per_axon`` (see SYNAPSE_* below).
* [DAVIES]     Davies et al., "Loihi: a neuromorphic manycore processor with on-chip learning",
               IEEE Micro 2018 (Loihi 1: 128 cores, 3 x86 cores, 128 KB synaptic memory per core).

Numbers without a public Loihi 2 figure (fan-in/fan-out per core, the synapse memory format) take
the Loihi 1 value and say so; they are assumptions, overridable through :func:`get_target`.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace

# -- chip ------------------------------------------------------------------------------------------
NEURO_CORES_PER_CHIP = 128  # [BRIEF]; [LAVA-CONST] NUM_VIRTUAL_CORES_L2 = 128
# Hala Point's 140,544 cores / 1,152 chips = 122 usable cores per chip [HALA]: some cores are
# reserved by the system.  We keep 128 (the chip's count) and let --cores-per-chip lower it.
HALA_POINT_CORES_PER_CHIP_ANNOUNCED = 140_544 / 1_152
EMBEDDED_CORES_PER_CHIP = 3  # [LAVA-CONST] MAX_EMBEDDED_CORES_PER_CHIP = 3 (what Lava allocates)
EMBEDDED_CORES_PER_CHIP_BRIEF = 6  # [BRIEF] "6 embedded microprocessor cores (Lakemont x86)"
NEURONS_PER_CHIP = 1_048_576  # [BRIEF] "up to 1 million neurons" (= 128 cores × 8192)
SYNAPSES_PER_CHIP_BRIEF = 120_000_000  # [BRIEF]; assumes 1-bit/compressed weights (see below)

# -- neuro core ------------------------------------------------------------------------------------
NEURONS_PER_CORE = 8192  # [BRIEF] 1 M neurons / 128 cores; DESIGN §6 "up to 8,192 neurons per core"
SYNAPSE_BYTES_PER_CORE = 128 * 1024  # [LAUNCH] 128 KB SRAM per core; [NENGO] MAX_SYNAPSE_BITS
# = 1,048,576 bits = 128 KiB (Loihi 1, same as [DAVIES]).  Loihi 2 partitions the core's SRAM
# flexibly between synapses and neuron state; we budget 128 KiB for synapses and count neuron
# state only through NEURONS_PER_CORE.  Consistency check: 120 M synapses per chip [BRIEF] /
# 128 cores = 0.94 M synapses per core = 1 Mbit / 1 bit — the brief's maximum assumes 1-bit
# weights; with 8-bit dense weights a core holds ~116 k synapses (see the format below).
FAN_IN_PER_CORE = 4096  # input axons per core: [NENGO] MAX_IN_AXONS (Loihi 1).  ASSUMPTION for
# Loihi 2 (no public figure).  Enforced: a core's tiles never need more distinct input axons.
FAN_OUT_PER_CORE = 4096  # output axons per core: [NENGO] MAX_OUT_AXONS (Loihi 1).  ASSUMPTION;
# reported as a usage figure only (Loihi 2's axon routing is compressed/multicast and its limit
# is not public), never enforced.

# -- synapse memory format (per input axon) — [NENGO] SynapseConfig.bits_per_axon, Loihi 1 -----------
# An axon's synapse list is stored in blocks of up to 64 synapses; each block holds
# n × (weight bits [+ index bits if sparse]) + a 4-bit synapse-index field + a 6-bit count field,
# rounded up to a 64-bit memory word.  ASSUMPTION: Loihi 2's (unpublished) format costs the same.
SYNAPSES_PER_BLOCK = 64  # n_synapses field is 6 bits → 63 + 1 synapses per block
SYNAPSE_BLOCK_HEADER_BITS = 4 + 6  # synapse_idx_bits + n_synapses_bits
SYNAPSE_WORD_BITS = 64  # blocks are rounded up to 64-bit words

# -- weights and spikes -----------------------------------------------------------------------------
WEIGHT_BITS = 8  # static weights: [LAVA-DENSE] num_bits=8; [BRIEF] 1–8 bit weights
WEIGHT_MIN, WEIGHT_MAX = -(2 ** (WEIGHT_BITS - 1)), 2 ** (WEIGHT_BITS - 1) - 1  # signed mantissas
PAYLOAD_BITS = 24  # graded spike payload the backends use: [LAVA-GRADED]
PAYLOAD_BITS_MAX = 32  # [BRIEF] "graded spikes ... up to 32 bits"

# -- learning engine ([LAVA-LRN]) ------------------------------------------------------------------
PLASTIC_WEIGHT_BITS = 9  # W_WEIGHTS_S = 8 + 1 (signed learned weights, clipped to [-256, 255])
TRACE_BITS = 7  # W_TRACE (x1, x2, y1, y2, y3)
TRACE_FRACTION_BITS = 8  # W_TRACE_FRACTIONAL_PART (traces keep 8 fraction bits for decay)
LEARNING_ACCUMULATOR_BITS = 16  # W_ACCUMULATOR_S = 15 + 1
LEARNING_SCALE_MANTISSA_BITS = 4  # W_S_MANT: products are shifted right by
# max(0, Σ factor widths + W_S_MANT − W_ACCUMULATOR_U) before they are accumulated
PRE_TRACES = 2  # x1, x2 per pre-synaptic axon
POST_TRACES = 3  # y1, y2, y3 per post-synaptic neuron
# ASSUMPTIONS (no public figure): each trace takes TRACE_BITS + TRACE_FRACTION_BITS = 15 bits,
# stored per axon (pre) / per neuron (post) in the core's synapse memory, rounded up to 64-bit
# words; the learning rule's microcode (two product terms for our rules) takes 4 words per plastic
# synapse group on a core.
LEARNING_RULE_BITS = 4 * SYNAPSE_WORD_BITS

# -- systems ----------------------------------------------------------------------------------------
SYSTEMS = {
    # [LAVA-RES] OheoGulch: "Development and test system with a single Loihi 2 chip."
    "oheo-gulch": {"chips": 1, "source": "lava/magma/core/resources.py: OheoGulch, a single "
                                         "Loihi 2 chip"},
    # [LAVA-RES] KapohoPoint: "The smallest form-factor system with four Loihi 2 chips."
    # [LAUNCH] (2021 press) announced Kapoho Point with eight chips.  We use 4: it is what the
    # Lava release we target declares, photos of the shipped board show four chips, and it is the
    # conservative choice (a model that fits 4 chips fits 8).  --chips 8 selects the other figure.
    "kapoho-point": {"chips": 4, "chips_other_source": 8,
                     "source": "lava/magma/core/resources.py: KapohoPoint, four Loihi 2 chips "
                               "(Intel's 2021 launch material said eight)"},
    # [HALA] 1,152 Loihi 2 chips (not in Lava 0.10's resources.py).
    "hala-point": {"chips": 1152, "source": "Intel/Sandia Hala Point announcement (2024): 1,152 "
                                            "Loihi 2 chips, 140,544 cores"},
}
DEFAULT_SYSTEM = "oheo-gulch"


@dataclass(frozen=True)
class Target:
    """The hardware the partition pass maps onto (one Loihi 2 system)."""

    system: str = DEFAULT_SYSTEM
    chips: int = 1
    cores_per_chip: int = NEURO_CORES_PER_CHIP
    neurons_per_core: int = NEURONS_PER_CORE
    synapse_bytes_per_core: int = SYNAPSE_BYTES_PER_CORE
    fan_in_per_core: int = FAN_IN_PER_CORE
    fan_out_per_core: int = FAN_OUT_PER_CORE
    embedded_cores_per_chip: int = EMBEDDED_CORES_PER_CHIP
    weight_bits: int = WEIGHT_BITS
    plastic_weight_bits: int = PLASTIC_WEIGHT_BITS
    payload_bits: int = PAYLOAD_BITS
    overrides: tuple = field(default_factory=tuple)

    @property
    def synapse_bits_per_core(self) -> int:
        return self.synapse_bytes_per_core * 8

    @property
    def cores(self) -> int:
        return self.chips * self.cores_per_chip

    @property
    def name(self) -> str:
        return f"loihi2/{self.system}"

    def to_dict(self) -> dict:
        d = asdict(self)
        d["overrides"] = list(self.overrides)
        d["name"] = self.name
        d["synapse_bits_per_core"] = self.synapse_bits_per_core
        d["cores"] = self.cores
        return d


def _positive(name: str, v) -> int:
    if isinstance(v, bool) or int(v) != v or v < 1:
        raise ValueError(f"{name} must be a positive integer, got {v!r}")
    return int(v)


def get_target(system: str | None = DEFAULT_SYSTEM, chips: int | None = None,
               cores_per_chip: int | None = None, neurons_per_core: int | None = None,
               synapse_bytes_per_core: int | None = None, *, fan_in_per_core: int | None = None,
               fan_out_per_core: int | None = None) -> Target:
    """A :class:`Target` for a named Loihi 2 system, with optional overrides (CLI --chips …).

    ``chips`` overrides the system's chip count (e.g. ``kapoho-point`` with ``chips=8``).
    """
    system = system or DEFAULT_SYSTEM
    if system not in SYSTEMS:
        raise ValueError(f"unknown Loihi 2 system {system!r} (choose one of {sorted(SYSTEMS)})")
    t = Target(system=system, chips=SYSTEMS[system]["chips"])
    over = {}
    for name, v in (("chips", chips), ("cores_per_chip", cores_per_chip),
                    ("neurons_per_core", neurons_per_core),
                    ("synapse_bytes_per_core", synapse_bytes_per_core),
                    ("fan_in_per_core", fan_in_per_core), ("fan_out_per_core", fan_out_per_core)):
        if v is not None:
            over[name] = _positive(name, v)
    return replace(t, **over, overrides=tuple(sorted(over)))


def as_target(target) -> Target:
    """Accept a Target, a dict of :func:`get_target` keyword arguments (the driver's form), or None."""
    if target is None:
        return get_target()
    if isinstance(target, Target):
        return target
    if isinstance(target, dict):
        known = {"system", "chips", "cores_per_chip", "neurons_per_core", "synapse_bytes_per_core",
                 "fan_in_per_core", "fan_out_per_core"}
        bad = set(target) - known
        if bad:
            raise ValueError(f"unknown target option(s) {sorted(bad)} (known: {sorted(known)})")
        return get_target(**target)
    raise TypeError(f"target must be a Target, a dict or None, not {type(target).__name__}")


def chips_needed(cores: int, target: Target) -> int:
    return max(1, math.ceil(cores / target.cores_per_chip))
