"""Process models of StreamSource (fixed_pt and floating_pt): the stock Injector's, typed."""
import numpy as np
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.ports import PyInPort, PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol

from icl_compiler.backends.lava.procs.stream_source.process import StreamSource
from icl_compiler.semantics.fixed import PAYLOAD_BITS


class _StreamSourceModel(PyLoihiProcessModel):
    dtype = np.int32

    def __init__(self, proc_params: dict) -> None:
        super().__init__(proc_params=proc_params)
        cfg = self.proc_params["channel_config"]
        self._zeros = np.zeros(self.proc_params["shape"], self.dtype)
        self._receive_when_empty = cfg.get_receive_empty_function()
        self._receive_when_not_empty = cfg.get_receive_not_empty_function()

    def run_spk(self) -> None:  # == lava.proc.io.injector.PyLoihiInjectorModel.run_spk
        self._zeros.fill(0)
        n = self.in_port.csp_ports[-1]._queue.qsize()
        if n == 0:
            data = self._receive_when_empty(self.in_port, self._zeros)
        else:
            data = self._receive_when_not_empty(self.in_port, self._zeros, n)
        self.out_port.send(data)


@implements(proc=StreamSource, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyStreamSourceFixed(_StreamSourceModel):
    in_port: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=PAYLOAD_BITS)
    out_port: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=PAYLOAD_BITS)


@implements(proc=StreamSource, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyStreamSourceFloat(_StreamSourceModel):
    dtype = np.float64
    in_port: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    out_port: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
