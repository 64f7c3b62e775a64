"""Shared Lava pieces of the custom neuron processes that host :class:`units.Bank` s.

``BankProcess`` declares ``max_ports`` numbered input ports ``in0 … in{max_ports-1}`` (Lava needs
every port declared on both the process and its model; ports the plan does not use stay
unconnected and are never read), the output ``s_out`` and, if the bank hosts the program's output
population, ``y_out`` (those rows only, for the sink).  ``bank_model_ports`` declares the matching
``LavaPyType`` s on a process model class; ``BankModelMixin.run_bank`` is the per-step body.

This module is outside ``procs/`` on purpose: Lava imports every module of a custom process's
folder while it looks up models.
"""
from __future__ import annotations

import numpy as np
from lava.magma.core.model.py.ports import PyInPort, PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.process.ports.ports import InPort, OutPort
from lava.magma.core.process.process import AbstractProcess
from lava.magma.core.process.variable import Var

from ...semantics.fixed import PAYLOAD_BITS
from .units import Bank


class BankProcess(AbstractProcess):
    max_ports = 32

    def __init__(self, *, bank: dict, name: str | None = None, **params) -> None:
        ports = list(bank["ports"])
        if len(ports) > self.max_ports:
            raise ValueError(f"{type(self).__name__} {name}: {len(ports)} input ports needed, at "
                             f"most {self.max_ports} are declared")
        super().__init__(bank=bank, name=name, **params)
        for i in range(self.max_ports):
            setattr(self, f"in{i}", InPort(shape=(ports[i] if i < len(ports) else 1,)))
        self.s_out = OutPort(shape=(max(1, int(bank["out_size"])),))
        y = bank.get("y")
        self.y_out = OutPort(shape=((y[1] - y[0]) if y else 1,))
        self.origin = Var(shape=(1,), init=0)  # the step a stream (re)started at (see stream.py)


def bank_model_ports(model_cls, fixed: bool, max_ports: int, extra_out: tuple[str, ...] = ()):
    """Declare ``in*``, ``s_out``, ``y_out`` (and ``extra_out``) LavaPyTypes on a model class."""
    dt = np.int32 if fixed else float
    kw = {"precision": PAYLOAD_BITS} if fixed else {}
    for i in range(max_ports):
        setattr(model_cls, f"in{i}", LavaPyType(PyInPort.VEC_DENSE, dt, **kw))
    for name in ("s_out", "y_out", *extra_out):
        setattr(model_cls, name, LavaPyType(PyOutPort.VEC_DENSE, dt, **kw))
    model_cls.origin = LavaPyType(np.ndarray, int)
    return model_cls


class BankModelMixin:
    """Per-step body of a bank process model: receive, integrate, fire, send."""

    _bank: Bank | None = None

    def bank(self) -> Bank:
        if self._bank is None:
            self._bank = Bank(self.proc_params["bank"])
        return self._bank

    def recv_bank(self) -> dict:
        b = self.bank()
        inputs = [getattr(self, f"in{i}").recv() for i in range(len(b.spec["ports"]))]
        return b.step(self.time_step - int(self.origin[0]), inputs)

    def send_bank(self, fired: dict) -> None:
        b = self.bank()
        out = b.output(fired)
        if out.size == 0:
            out = np.zeros(1, out.dtype)
        self.s_out.send(out)
        y = b.spec.get("y")
        self.y_out.send(out[y[0]:y[1]] if y else np.zeros(1, out.dtype))
