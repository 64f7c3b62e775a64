"""Process models of EmbeddedOps (fixed_pt and floating_pt); semantics in process.py."""
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol

from icl_compiler.backends.lava.base import BankModelMixin, bank_model_ports
from icl_compiler.backends.lava.procs.embedded_op.process import EmbeddedOps


class _EmbeddedModel(BankModelMixin, PyLoihiProcessModel):
    def run_spk(self) -> None:
        self.send_bank(self.recv_bank())


@implements(proc=EmbeddedOps, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyEmbeddedOpsFixed(_EmbeddedModel):
    pass


@implements(proc=EmbeddedOps, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyEmbeddedOpsFloat(_EmbeddedModel):
    pass


bank_model_ports(PyEmbeddedOpsFixed, True, EmbeddedOps.max_ports)
bank_model_ports(PyEmbeddedOpsFloat, False, EmbeddedOps.max_ports)
