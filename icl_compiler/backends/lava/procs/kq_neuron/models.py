"""Process models of KQNeuron (fixed_pt and floating_pt); semantics in process.py."""
import numpy as np
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.ports import PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol

from icl_compiler.backends.lava.base import BankModelMixin, bank_model_ports
from icl_compiler.backends.lava.procs.kq_neuron.process import KQNeuron
from icl_compiler.semantics.fixed import PAYLOAD_BITS


class _KQModel(BankModelMixin, PyLoihiProcessModel):
    def run_spk(self) -> None:
        out = self.bank().output(self.recv_bank())
        for i, (r0, r1) in enumerate(self.proc_params["heads"]):
            getattr(self, f"kq{i}").send(out[r0:r1])


@implements(proc=KQNeuron, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyKQNeuronFixed(_KQModel):
    pass


@implements(proc=KQNeuron, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyKQNeuronFloat(_KQModel):
    pass


bank_model_ports(PyKQNeuronFixed, True, KQNeuron.max_ports)
bank_model_ports(PyKQNeuronFloat, False, KQNeuron.max_ports)
for _i in range(KQNeuron.max_heads):
    setattr(PyKQNeuronFixed, f"kq{_i}", LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=PAYLOAD_BITS))
    setattr(PyKQNeuronFloat, f"kq{_i}", LavaPyType(PyOutPort.VEC_DENSE, float))
