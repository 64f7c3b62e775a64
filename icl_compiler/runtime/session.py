"""Streaming sessions: feed a program one token per sequence at a time, keeping what the plastic
synapses learned between calls (``Program.session``).

    s = prog.session(batch=B, backend="numpy")   # or backend="lava"
    y_t = s.step(x_t)       # x_t: [B] token ids or [B, F] features → y_t [B, n_out] (dequantised;
                            # prog.onnx_outputs(np.stack(ys, 1)) gives T steps in run()'s layout)
    s.state()               # {K/V synapse name: [B, …]} the weights the learning rules wrote
    s.reset()               # fresh plastic state: the next step is position 0 again
    s.close()               # (also on garbage collection, at interpreter exit, and by ``with``)

The outputs of T steps equal ``prog.run`` on the same T tokens: bit for bit in fixed point, and
in float mode too on the NumPy backend (the interpreter's float products compute each row alike
however many rows there are; Lava's float mode agrees to float rounding).  A session holds at
most T_max tokens per sequence (the context capacity); ``reset`` starts again.

The NumPy session runs the interpreter on one token per sequence (``backends.numpy.Stream``).
The Lava session keeps one network running across steps (``backends.lava.stream``): the start-up
is paid once per session, and each step runs the steps one token needs to reach the output.
"""
from __future__ import annotations

import atexit
import weakref

import numpy as np

_LIVE: "weakref.WeakSet[Session]" = weakref.WeakSet()


def _close_all() -> None:
    for s in list(_LIVE):
        s.close()


def _close_at_exit() -> None:
    """(Re-)register :func:`_close_all` as the last exit handler, so that it runs first: before
    multiprocessing's, which joins the Lava network's processes and would wait for ever."""
    atexit.unregister(_close_all)
    atexit.register(_close_all)


class Session:
    def __init__(self, prog, batch: int = 1, backend: str = "numpy", **kw):
        if not isinstance(batch, (int, np.integer)) or batch < 1:
            raise ValueError(f"batch must be a positive integer, got {batch!r}")
        self.prog = prog
        self.batch = int(batch)
        self.backend = backend
        self._closed = False
        self._stream = None
        if backend == "numpy":
            if kw:
                raise TypeError(f"unexpected options for the numpy session: {sorted(kw)}")
            from ..backends.numpy import Stream

            self._stream = Stream(prog.ng, self.batch)
        elif backend == "lava":
            from ..backends.lava import open_stream

            self._stream = open_stream(prog, self.batch, **kw)
        else:
            raise ValueError(f"unknown backend {backend!r} (choose numpy or lava)")
        _LIVE.add(self)
        _close_at_exit()

    @property
    def position(self) -> int:
        """Tokens fed to every sequence since the start or the last ``reset``."""
        return self._stream.position

    def _check(self, x_t) -> np.ndarray:
        if self._closed:
            raise RuntimeError("the session is closed")
        x_t = np.asarray(x_t)
        if x_t.ndim == 0 or x_t.shape[0] != self.batch:
            raise ValueError(f"expected one token for each of the {self.batch} sequences "
                             f"(shape [{self.batch}] or [{self.batch}, features]), got "
                             f"{list(x_t.shape)}")
        cap = self.prog.t_max
        if cap is not None and self.position >= cap:
            raise ValueError(f"the session already holds {self.position} tokens, the program's "
                             f"context capacity T_max = {cap}; call reset() to start again "
                             "(or recompile with a larger max_context, --max-context N)")
        return self.prog.check_input(x_t[:, None])[:, 0]

    def step(self, x_t, *, return_payload: bool = False) -> np.ndarray:
        """One token per sequence → the outputs at that position [B, n_out] (dequantised unless
        ``return_payload``)."""
        x_t = self._check(x_t)
        y = self._stream.step(x_t)
        return y if return_payload else self.prog.dequantise(y)

    def reset(self) -> None:
        """Forget what the plastic synapses learned: the next step is position 0."""
        if self._closed:
            raise RuntimeError("the session is closed")
        self._stream.reset()

    def state(self) -> dict[str, np.ndarray]:
        """The K/V weights held in the plastic synapses, {synapse name: [B, …]} (the layout of
        ``Program.last_state``)."""
        if self._closed:
            raise RuntimeError("the session is closed")
        return self._stream.state()

    def close(self) -> None:
        """Release the backend (stop the Lava network).  Idempotent."""
        if self._closed:
            return
        self._closed = True
        _LIVE.discard(self)
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.close()

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:  # noqa: BLE001 - never raise from the garbage collector
            pass
