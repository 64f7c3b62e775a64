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
               Its Table 2 (Loihi 1, 14 nm) gives the per-operation energies and times the latency
               and energy estimate uses (``passes/estimate.py``): 23.6 pJ / 3.5 ns per synaptic
               spike op, 120 pJ per synaptic (learning) update, 81 / 52 pJ per active / inactive
               neuron update, 1.7 pJ per spike within a tile, 3.0 / 4.0 pJ per tile hop (E-W /
               N-S), 113–465 ns barrier synchronisation (1–32 tiles).  No Loihi 2 per-op figure is
               published: these are Loihi 1 PROXIES for Loihi 2.
* [LAVA-DL-PILOTNET] lava-dl ``tutorials/lava/lib/dl/netx/pilotnet_sdnn/benchmark.ipynb`` and
               ``pilotnet_snn/benchmark.ipynb`` (``loihi2_profiler.Loihi2Power``, measured on an
               Oheo Gulch board): static power 0.23–0.28 W with the workload loaded.

Tags of the estimate's figures: MEASURED (a published measurement, of Loihi 1 unless it says
Loihi 2), ASSUMED (no published figure; the comment gives the reason for the value).

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

# -- latency and energy estimate (passes/estimate.py) -------------------------------------------------
# Loihi 1 per-op figures, [DAVIES] Table 2, used as PROXIES for Loihi 2 (Intel publishes none).
E_SYNOP_J = 23.6e-12  # MEASURED (Loihi 1) [DAVIES] energy per synaptic spike op
T_SYNOP_S = 3.5e-9  # MEASURED (Loihi 1) [DAVIES] time per synaptic spike op
E_LEARN_J = 120e-12  # MEASURED (Loihi 1) [DAVIES] energy per synaptic (plastic) update
E_NEURON_ACTIVE_J = 81e-12  # MEASURED (Loihi 1) [DAVIES] energy per active neuron update
E_NEURON_INACTIVE_J = 52e-12  # MEASURED (Loihi 1) [DAVIES] energy per inactive neuron update
E_SPIKE_TILE_J = 1.7e-12  # MEASURED (Loihi 1) [DAVIES] energy per spike within a tile
E_HOP_EW_J = 3.0e-12  # MEASURED (Loihi 1) [DAVIES] energy per tile hop, east-west
E_HOP_NS_J = 4.0e-12  # MEASURED (Loihi 1) [DAVIES] energy per tile hop, north-south
E_HOP_J = (E_HOP_EW_J + E_HOP_NS_J) / 2  # ASSUMED: hops are as often E-W as N-S (mean)
T_BARRIER_MIN_S = 113e-9  # MEASURED (Loihi 1) [DAVIES] barrier synchronisation, 1 tile
T_BARRIER_MAX_S = 465e-9  # MEASURED (Loihi 1) [DAVIES] barrier synchronisation, 32 tiles
# Times per neuron update and per learning update: Table 2's time column for these rows could not
# be checked against the paper in this session, so they are ASSUMED, with the reason:
T_NEURON_ACTIVE_S = 2 * T_SYNOP_S  # ASSUMED: an active update (integrate, fire) costs about two
# synaptic ops' time (the 81/23.6 pJ energy ratio is 3.4; we take the smaller time ratio 2)
T_NEURON_INACTIVE_S = T_SYNOP_S  # ASSUMED: an inactive update (decay only) ~ one synaptic op
T_LEARN_S = 2 * T_SYNOP_S  # ASSUMED: a plastic update is a read-modify-write of one synapse
# Mesh geometry for hops: Loihi 2's floor plan is not public.
CORES_PER_TILE = 4  # ASSUMED (Loihi 1 proxy): 128 cores in 32 tiles ([DAVIES]'s barrier range
# "1–32 tiles" for a 128-core chip)
TILE_MESH = (8, 4)  # ASSUMED: the 32 tiles as an 8 × 4 mesh; a core's tile is core // 4, its
# position (tile % 8, tile // 8); hops between two cores = Manhattan distance of their tiles
INTERCHIP_SPIKE_HOPS = TILE_MESH[0] + TILE_MESH[1]  # ASSUMED: no inter-chip energy is
# published; a spike between chips is charged a full mesh diameter of hops on top of its tile
# spike (it leaves one chip's mesh and crosses the next one's)
# Measured Loihi 2 board static power (an Oheo Gulch board, one chip).
P_STATIC_MIN_W = 0.23  # MEASURED (Loihi 2) [LAVA-DL-PILOTNET] static power, low end
P_STATIC_MAX_W = 0.28  # MEASURED (Loihi 2) [LAVA-DL-PILOTNET] static power, high end
P_STATIC_W = (P_STATIC_MIN_W + P_STATIC_MAX_W) / 2  # ASSUMED: the middle of the measured range,
# per chip used (the measurement is of a one-chip board; multi-chip systems scale per chip)
ESTIMATE_SOURCES = {
    "DAVIES": "M. Davies et al., \"Loihi: a neuromorphic manycore processor with on-chip "
              "learning\", IEEE Micro 38(1), 2018, Table 2 (Loihi 1, 14 nm) — Loihi 1 PROXY",
    "LAVA-DL-PILOTNET": "lava-dl tutorials/lava/lib/dl/netx/pilotnet_sdnn/benchmark.ipynb and "
                        "pilotnet_snn/benchmark.ipynb, Loihi2Power profiler on Oheo Gulch "
                        "(Loihi 2, measured static power 0.23–0.28 W)",
    "ASSUMED": "no published figure; the value and its reason are in targets/loihi2.py",
}
# name -> (value, tag, source): what the estimate uses, as the report lists it
ESTIMATE_CONSTANTS = {
    "E_SYNOP_J": (E_SYNOP_J, "MEASURED, Loihi 1 proxy", "DAVIES"),
    "T_SYNOP_S": (T_SYNOP_S, "MEASURED, Loihi 1 proxy", "DAVIES"),
    "E_LEARN_J": (E_LEARN_J, "MEASURED, Loihi 1 proxy", "DAVIES"),
    "E_NEURON_ACTIVE_J": (E_NEURON_ACTIVE_J, "MEASURED, Loihi 1 proxy", "DAVIES"),
    "E_NEURON_INACTIVE_J": (E_NEURON_INACTIVE_J, "MEASURED, Loihi 1 proxy", "DAVIES"),
    "E_SPIKE_TILE_J": (E_SPIKE_TILE_J, "MEASURED, Loihi 1 proxy", "DAVIES"),
    "E_HOP_J": (E_HOP_J, "ASSUMED mean of the MEASURED 3.0 / 4.0 pJ, Loihi 1 proxy", "DAVIES"),
    "T_BARRIER_MIN_S": (T_BARRIER_MIN_S, "MEASURED, Loihi 1 proxy", "DAVIES"),
    "T_BARRIER_MAX_S": (T_BARRIER_MAX_S, "MEASURED, Loihi 1 proxy", "DAVIES"),
    "T_NEURON_ACTIVE_S": (T_NEURON_ACTIVE_S, "ASSUMED (2 × T_SYNOP_S)", "ASSUMED"),
    "T_NEURON_INACTIVE_S": (T_NEURON_INACTIVE_S, "ASSUMED (1 × T_SYNOP_S)", "ASSUMED"),
    "T_LEARN_S": (T_LEARN_S, "ASSUMED (2 × T_SYNOP_S)", "ASSUMED"),
    "CORES_PER_TILE": (CORES_PER_TILE, "ASSUMED, Loihi 1 proxy", "ASSUMED"),
    "TILE_MESH": (TILE_MESH, "ASSUMED, Loihi 1 proxy", "ASSUMED"),
    "INTERCHIP_SPIKE_HOPS": (INTERCHIP_SPIKE_HOPS, "ASSUMED", "ASSUMED"),
    "P_STATIC_W": (P_STATIC_W, "ASSUMED middle of the MEASURED Loihi 2 range 0.23–0.28 W",
                   "LAVA-DL-PILOTNET"),
}


def core_hops(a: int, b: int, cores_per_chip: int = NEURO_CORES_PER_CHIP) -> int:
    """Tile hops between cores ``a`` and ``b`` of one chip on the assumed mesh (TILE_MESH)."""
    ta, tb = (a % cores_per_chip) // CORES_PER_TILE, (b % cores_per_chip) // CORES_PER_TILE
    w = TILE_MESH[0]
    return abs(ta % w - tb % w) + abs(ta // w - tb // w)


def barrier_s(tiles: int) -> float:
    """Barrier synchronisation of one step over ``tiles`` tiles: [DAVIES]'s 113 ns (1 tile) to
    465 ns (32 tiles), linear in between (ASSUMED), 465 ns beyond."""
    n = TILE_MESH[0] * TILE_MESH[1]
    f = min(max(tiles - 1, 0), n - 1) / (n - 1)
    return T_BARRIER_MIN_S + f * (T_BARRIER_MAX_S - T_BARRIER_MIN_S)


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
