"""NumPy backend: a program runs on the reference interpreter of the neuromorphic IR.

The interpreter (``icl_compiler.semantics.interpreter``) is the definition of what a program
computes (docs/semantics.md), so this backend is that interpreter, batched over sequences, each
sequence with its own plastic K/V state: ``run`` evaluates whole sequences (sequence-parallel,
bit-exact with token by token), :class:`Stream` feeds one token per sequence per call and keeps
the plastic state between calls (``runtime.session``).
"""
from __future__ import annotations

import numpy as np

from ...ir.neuro import NeuroGraph
from ...semantics.interpreter import Interpreter, RunStats


def run(ng: NeuroGraph, x: np.ndarray, interp: Interpreter | None = None
        ) -> tuple[np.ndarray, RunStats, dict[str, np.ndarray]]:
    """Run a batch ``x`` ([B, T] token ids or [B, T, F] features) through ``ng``.

    Returns the raw outputs [B, T, n_out] (integer payloads in fixed mode), the run's
    :class:`RunStats` and the final plastic weights of every sequence (by synapse name).
    ``interp``: an interpreter of ``ng`` kept by the caller, so that the weights it prepares
    (transposed, stacked, doubled) are made once for many runs (``Program.run`` keeps one).
    """
    if interp is None or interp.ng is not ng:
        interp = Interpreter(ng)
    y, stats = interp.run(x)
    return y, stats, interp.last_state


class Stream:
    """``batch`` sequences fed one token each per :meth:`step`; the plastic weights persist."""

    def __init__(self, ng: NeuroGraph, batch: int):
        self.interp = Interpreter(ng)
        self.batch = int(batch)
        self.reset()

    def reset(self) -> None:
        self.weights = self.interp.fresh_state(self.batch)
        self.stats = RunStats()
        self.position = 0

    def step(self, x_t: np.ndarray) -> np.ndarray:
        """One token per sequence (x_t [B] ids or [B, F] features) → raw outputs [B, n_out]."""
        # (its own weights: only its earlier steps wrote them, at positions < self.position)
        y = self.interp.advance(x_t[:, None], self.position, self.weights, self.stats,
                                unwritten=True)
        self.position += 1
        return y[:, 0]

    def state(self) -> dict[str, np.ndarray]:
        return {k: v.copy() for k, v in self.weights.items()}

    def close(self) -> None:
        pass


__all__ = ["run", "Stream", "Interpreter"]
