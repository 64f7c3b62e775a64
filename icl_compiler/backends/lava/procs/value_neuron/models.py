"""Process models of ValueNeuron (fixed_pt and floating_pt); semantics in process.py."""
import numpy as np
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.ports import PyInPort, PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol

from icl_compiler.backends.lava.base import BankModelMixin, bank_model_ports
from icl_compiler.backends.lava.procs.value_neuron.process import ValueNeuron
from icl_compiler.backends.lava.units import head_step, value_step
from icl_compiler.semantics.fixed import (PAYLOAD_BITS, V_Y2, V_Y3, v_third_factor,
                                          value_combine, value_out)
from icl_compiler.targets.loihi2 import TRACE_BITS


class _AbstractValueModel(BankModelMixin, PyLoihiProcessModel):
    default_y = (1, 1)
    dtype = np.int32

    def _y1(self, h, v):
        return v

    def _acc(self, h, a):
        return a

    def _out(self, h, a):
        return a

    def run_spk(self) -> None:
        fired = self.recv_bank()
        out = np.zeros(self.bank().spec["out_size"], self.dtype)
        for i, h in enumerate(self.proc_params["heads"]):
            a = getattr(self, f"a{i}").recv()
            v = getattr(self, f"vin{i}").recv()
            vu = fired.get(f"v{i}")
            c2 = self.default_y[0] if h["y2"] is None else h["y2"]
            c3 = self.default_y[1] if h["y3"] is None else h["y3"]
            y1, y2, y3, o = value_step(
                h, head_step(h, self.time_step, self.origin[0]), a,
                v if vu is None else v + vu, c2, c3, lambda v_, h=h: self._y1(h, v_),
                lambda a_, h=h: self._acc(h, a_) if h["raw"] else self._out(h, a_), self.dtype)
            if o is not None:
                out[h["out"][0]:h["out"][1]] = o
            getattr(self, f"y1_{i}").send(y1)
            getattr(self, f"y2_{i}").send(y2)
            getattr(self, f"y3_{i}").send(y3)
        self.s_out.send(out)


@implements(proc=ValueNeuron, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyValueNeuronModelFixed(_AbstractValueModel):
    default_y = (V_Y2, V_Y3)

    def _y1(self, h, v):
        return v_third_factor(v, h["residual"])

    def _acc(self, h, a):
        return value_combine(a, h["residual"])

    def _out(self, h, a):
        return value_out(a, h["residual"])


@implements(proc=ValueNeuron, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyValueNeuronModelFloat(_AbstractValueModel):
    dtype = np.float64


bank_model_ports(PyValueNeuronModelFixed, True, ValueNeuron.max_ports)
bank_model_ports(PyValueNeuronModelFloat, False, ValueNeuron.max_ports)
for _i in range(ValueNeuron.max_heads):
    for _p in ("a", "vin"):
        setattr(PyValueNeuronModelFixed, f"{_p}{_i}",
                LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=PAYLOAD_BITS))
    setattr(PyValueNeuronModelFloat, f"a{_i}", LavaPyType(PyInPort.VEC_DENSE, float))
    setattr(PyValueNeuronModelFloat, f"vin{_i}", LavaPyType(PyInPort.VEC_DENSE, float))
    for _y in ("y1", "y2", "y3"):
        setattr(PyValueNeuronModelFixed, f"{_y}_{_i}",
                LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=TRACE_BITS))
        setattr(PyValueNeuronModelFloat, f"{_y}_{_i}", LavaPyType(PyOutPort.VEC_DENSE, float))
