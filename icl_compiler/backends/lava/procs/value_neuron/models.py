"""Process models of ValueNeuron (fixed_pt and floating_pt); semantics in process.py."""
import numpy as np
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.ports import PyInPort, PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol

from icl_compiler.backends.lava.procs.value_neuron.process import ValueNeuron
from icl_compiler.backends.numpy.fixed import V_Y2, V_Y3, value_out


class _AbstractValueModel(PyLoihiProcessModel):
    a_in = None
    v_in = None
    s_out = None
    y1 = None
    y2 = None
    y3 = None
    out = None
    default_y = (1, 1)

    def _out(self, a):
        return a

    def run_spk(self) -> None:
        a = self.a_in.recv()
        v = self.v_in.recv()
        p = self.proc_params
        n = self.time_step - p["t0"]
        dt = self.out.dtype
        zero = np.zeros(self.out.shape, dt)
        s, y1, y2, y3 = zero, zero, zero, zero
        if n >= 0:
            tok, phase = divmod(n, p["steps_per_token"])
            if phase == 1:
                c2 = self.default_y[0] if p["y2"] is None else p["y2"]
                c3 = self.default_y[1] if p["y3"] is None else p["y3"]
                y1 = v.astype(dt)
                y2 = np.full(self.out.shape, c2, dt)
                y3 = np.full(self.out.shape, c3, dt)
                if tok >= 1:
                    s = self._out(a).astype(dt)
        self.out = s
        self.s_out.send(s)
        self.y1.send(y1)
        self.y2.send(y2)
        self.y3.send(y3)


@implements(proc=ValueNeuron, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyValueNeuronModelFixed(_AbstractValueModel):
    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    v_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
    y1: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=7)
    y2: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=7)
    y3: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=7)
    out: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)
    default_y = (V_Y2, V_Y3)

    def _out(self, a):
        return value_out(a)


@implements(proc=ValueNeuron, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyValueNeuronModelFloat(_AbstractValueModel):
    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    v_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    y1: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    y2: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    y3: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    out: np.ndarray = LavaPyType(np.ndarray, float)

