"""Process models of GradedNeurons (fixed_pt and floating_pt); semantics in process.py."""
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol

from icl_compiler.backends.lava.base import BankModelMixin, bank_model_ports
from icl_compiler.backends.lava.procs.graded_neuron.process import GradedNeurons


class _GradedModel(BankModelMixin, PyLoihiProcessModel):
    def run_spk(self) -> None:
        self.send_bank(self.recv_bank())


@implements(proc=GradedNeurons, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyGradedNeuronsFixed(_GradedModel):
    pass


@implements(proc=GradedNeurons, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyGradedNeuronsFloat(_GradedModel):
    pass


bank_model_ports(PyGradedNeuronsFixed, True, GradedNeurons.max_ports)
bank_model_ports(PyGradedNeuronsFloat, False, GradedNeurons.max_ports)
