"""Process models of SlotNeuron (fixed_pt and floating_pt); semantics in process.py."""
import numpy as np
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.ports import PyInPort, PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol

from icl_compiler.backends.lava.procs.slot_neuron.process import SlotNeuron
from icl_compiler.backends.lava.units import head_step, slot_step
from icl_compiler.semantics.fixed import PAYLOAD_BITS, slot_f


class _AbstractSlotModel(PyLoihiProcessModel):
    dtype = np.int32
    origin: np.ndarray = LavaPyType(np.ndarray, int)

    def _f(self, h, a):
        raise NotImplementedError

    def run_spk(self) -> None:
        for i, h in enumerate(self.proc_params["heads"]):
            a = getattr(self, f"a{i}").recv()
            s, bap = slot_step(h, head_step(h, self.time_step, self.origin[0]), a, self._f,
                               self.dtype)
            getattr(self, f"s{i}").send(s)
            getattr(self, f"bap{i}").send(bap)


@implements(proc=SlotNeuron, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PySlotNeuronModelFixed(_AbstractSlotModel):
    def _f(self, h, a):
        return slot_f(a, h["f"], h["r"], h["r2"]).astype(np.int32)


@implements(proc=SlotNeuron, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PySlotNeuronModelFloat(_AbstractSlotModel):
    dtype = np.float64

    def _f(self, h, a):
        x = np.asarray(a, float) * h["scale"]
        if h["f"] == "identity":
            return x
        x = np.maximum(x, 0.0)
        return x * x if h["f"] == "relu2" else x


_I32 = {"precision": PAYLOAD_BITS}
for _i in range(SlotNeuron.max_heads):
    setattr(PySlotNeuronModelFixed, f"a{_i}", LavaPyType(PyInPort.VEC_DENSE, np.int32, **_I32))
    setattr(PySlotNeuronModelFixed, f"s{_i}", LavaPyType(PyOutPort.VEC_DENSE, np.int32, **_I32))
    setattr(PySlotNeuronModelFloat, f"a{_i}", LavaPyType(PyInPort.VEC_DENSE, float))
    setattr(PySlotNeuronModelFloat, f"s{_i}", LavaPyType(PyOutPort.VEC_DENSE, float))
    for _m in (PySlotNeuronModelFixed, PySlotNeuronModelFloat):
        setattr(_m, f"bap{_i}", LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=1))
