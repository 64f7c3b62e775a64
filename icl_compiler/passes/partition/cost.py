"""Partition, cost model: the neurons, fan-in and synapse memory of a tile.

Cost model of one tile (a core holds one or more tiles) — all assumptions are next to the
constants in :mod:`icl_compiler.targets.loihi2`
-----------------------------------------------------------------------------------------------
A tile computes a contiguous range of one population's neurons (the synapses live with their
*post* neuron, as on Loihi) from a set of input ranges (synapse group, pre range):

* neurons: the range's width; k and q populations of ``kv_slot`` heads count twice (the sign-split
  encoding of DESIGN §4 carries ``[x, −x]`` on 2·d neurons, fed by ``[W; −W]``).
* fan-in: the number of input axons = Σ pre neurons of its input ranges (an axon per pre neuron;
  the K synapses' pre side is the sign-split 2·d_k).  Not de-duplicated across tiles that share a
  core (conservative).
* synapse memory: dense format (no index bits, every weight stored, zeros too): per input axon
  its targets in blocks of ≤ 64, each block ``n × bits + 10`` header bits rounded up to a 64-bit
  word (nengo-loihi's Loihi 1 format).  Static weights 8 bits, plastic (K, V) 9 bits plus
  learning-engine state: 2 traces per axon, 3 per post neuron, 15 bits each (7 + 8 fraction),
  rounded to words, and 4 words of rule microcode per plastic tile.  A row-sum neuron
  (normalised heads) costs one neuron and one 1-weight axon per slot.
* activation and product neurons are one neuron each (a product neuron has two dendritic
  inputs, like Lava's ProdNeuron; its two synapse groups are counted like any other); their
  per-token microcode operations are the report's ``neuron_ops`` (``partition.neuron_ops``).
"""
from __future__ import annotations

import numpy as np

from ...errors import CompileError
from ...ir.neuro import SynapseGroup
from ...semantics.fixed import k_lanes, v_lanes
from ...targets import loihi2 as L2

_BLOCK = L2.SYNAPSES_PER_BLOCK
_WORD = L2.SYNAPSE_WORD_BITS
_TRACE_BITS = L2.TRACE_BITS + L2.TRACE_FRACTION_BITS


def _words(bits: int) -> int:
    return -(-bits // _WORD) * _WORD


def block_bits(n: int, wbits: int) -> int:
    """Memory of one synapse block of n ≤ 64 weights (header + weights, whole 64-bit words)."""
    return _words(n * wbits + L2.SYNAPSE_BLOCK_HEADER_BITS) if n > 0 else 0


def axon_bits(n_targets: int, wbits: int) -> int:
    """Memory of one input axon's synapse list with n_targets dense weights."""
    full, rem = divmod(n_targets, _BLOCK)
    return full * block_bits(_BLOCK, wbits) + block_bits(rem, wbits)


def dense_bits(n_axons: int, n_targets: int, wbits: int) -> int:
    return n_axons * axon_bits(n_targets, wbits)


def learning_state_bits(n_axons: int, n_post: int) -> int:
    """Learning-engine state of one plastic tile: pre traces, post traces, rule microcode."""
    return (_words(n_axons * L2.PRE_TRACES * _TRACE_BITS)
            + _words(n_post * L2.POST_TRACES * _TRACE_BITS) + L2.LEARNING_RULE_BITS)


def _pre_span(s: SynapseGroup) -> tuple[int, int]:
    """[lo, hi): the pre neurons a group has synapses from.  ``split_graph`` (tests/passes) cuts
    a group at fan-in chunk boundaries inside a pre piece; it stores the piece's weights with zero
    columns outside the segment and records the segment as ``attrs["pre_span"]``, so that
    planning the split graph sees exactly the input axis (and the chunks) of the original plan."""
    n = np.shape(s.weights)[1]
    span = (s.attrs or {}).get("pre_span")
    if s.plastic or not span:
        return 0, n
    return max(0, int(span[0])), min(n, int(span[1]))


def _packing_cost(fills: list[float]) -> tuple:
    """Expected cores for tiles of these fills (their largest normalised demand): a tile over half
    a core rarely shares it (count 1), smaller ones pack with others (count their fill); then
    the total demand, then the number of tiles."""
    return (round(sum(1.0 if f > 0.5 else f for f in fills), 9), round(sum(fills), 9), len(fills))


def head_min_cores(t_max: int, d_k: int, d_v: int, target, kv_bits: int = 8) -> int:
    """A lower bound on the neuro cores one ``kv_slot`` attention head takes, from this cost model
    alone, in integer arithmetic (nothing is allocated, whatever ``t_max``): the head's demand
    of each resource over a core's capacity — neurons (T_max slots, d_v value neurons), synapse
    memory (K: 2·d_k sign-split axons onto the slots, V: T_max axons onto the value neurons,
    9-bit plastic, with their learning state) and fan-in (2·d_k + T_max axons).  Tiles sharing
    cores or splitting the head only add to these demands, so every plan of :mod:`.tiling`
    needs at least this many cores (its k, q, v populations come on top)."""
    ax_k = d_k * k_lanes(kv_bits == 16)
    posts_v = d_v * v_lanes(kv_bits == 16)
    w = target.plastic_weight_bits
    bits = (dense_bits(ax_k, t_max, w) + learning_state_bits(ax_k, t_max)
            + dense_bits(t_max, posts_v, w) + learning_state_bits(t_max, posts_v))
    return max(1, -(-(t_max + posts_v) // target.neurons_per_core),
               -(-bits // target.synapse_bits_per_core),
               -(-(ax_k + t_max) // target.fan_in_per_core))


def check_heads_fit(target, t_max: int, d_k: int, d_v: int, heads: int = 1, *,
                    node: str | None = None) -> None:
    """CompileError, before anything is allocated, when ``heads`` attention heads of this shape
    cannot fit the target's neuro cores at all (:func:`head_min_cores`).  The lowering calls it
    for each attention node before it builds the slot populations and K/V synapses (issue 16,
    item 6: ``--max-context 1000000000`` failed with "Unable to allocate 119 GiB")."""
    need = heads * head_min_cores(t_max, d_k, d_v, target)
    if need > target.cores:
        raise CompileError(
            f"{heads} attention head(s) with T_max = {t_max} slots (d_k = {d_k}, d_v = {d_v}) "
            f"need at least {need} neuro cores for their slot neurons and K/V synapses alone, "
            f"but {target.name} has {target.chips} chip(s) × {target.cores_per_chip} = "
            f"{target.cores} cores", node=node, op="attention",
            hint="reduce the context (--max-context) or choose a larger system (--system, "
                 "--chips)")
