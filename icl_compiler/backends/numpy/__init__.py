"""NumPy backend: a program runs on the reference interpreter of the neuromorphic IR.

The interpreter (``icl_compiler.semantics.interpreter``) is the definition of what a program
computes (docs/semantics.md), so this backend is that interpreter, token by token and batched
over sequences, each sequence with its own plastic K/V state.
"""
from __future__ import annotations

import numpy as np

from ...ir.neuro import NeuroGraph
from ...semantics.interpreter import Interpreter, RunStats


def run(ng: NeuroGraph, x: np.ndarray) -> tuple[np.ndarray, RunStats, dict[str, np.ndarray]]:
    """Run a batch ``x`` ([B, T] token ids or [B, T, F] features) through ``ng``.

    Returns the raw outputs [B, T, n_out] (integer payloads in fixed mode), the run's
    :class:`RunStats` and the final plastic weights of every sequence (by synapse name).
    """
    interp = Interpreter(ng)
    y, stats = interp.run(x)
    return y, stats, interp.last_state


__all__ = ["run"]
