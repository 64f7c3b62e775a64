"""Process models of SlotNeuron (fixed_pt and floating_pt); semantics in process.py."""
import numpy as np
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.ports import PyInPort, PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol

from icl_compiler.backends.lava.procs.slot_neuron.process import SlotNeuron
from icl_compiler.backends.numpy.fixed import slot_f


class _AbstractSlotModel(PyLoihiProcessModel):
    a_in = None
    s_out = None
    bap = None
    out = None

    def _f(self, a):
        raise NotImplementedError

    def run_spk(self) -> None:
        a = self.a_in.recv()
        p = self.proc_params
        n = self.time_step - p["t0"]
        shape = self.out.shape
        s = np.zeros(shape, self.out.dtype)
        bap = np.zeros(shape, np.int32)
        if n >= 0:
            tok, phase = divmod(n, p["steps_per_token"])
            if phase == 0:
                s = self._f(a)
                if tok < shape[0]:
                    bap[tok] = 1
            elif tok < shape[0]:
                s[tok] = p["onehot"]
        self.out = s
        self.s_out.send(s)
        self.bap.send(bap)


@implements(proc=SlotNeuron, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PySlotNeuronModelFixed(_AbstractSlotModel):
    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
    bap: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=1)
    out: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)

    def _f(self, a):
        p = self.proc_params
        return slot_f(a, p["f"], p["r"], p["r2"]).astype(np.int32)


@implements(proc=SlotNeuron, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PySlotNeuronModelFloat(_AbstractSlotModel):
    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    bap: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=1)
    out: np.ndarray = LavaPyType(np.ndarray, float)

    def _f(self, a):
        p = self.proc_params
        x = np.asarray(a, float) * p["scale"]
        if p["f"] == "identity":
            return x
        x = np.maximum(x, 0.0)
        return x * x if p["f"] == "relu2" else x
