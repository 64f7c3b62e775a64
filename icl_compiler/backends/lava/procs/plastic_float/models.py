"""floating_pt process model of FloatPlasticDense; semantics in process.py."""
import numpy as np
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.ports import PyInPort, PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol

from icl_compiler.backends.lava.procs.plastic_float.process import FloatPlasticDense


@implements(proc=FloatPlasticDense, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyFloatPlasticDenseModel(PyLoihiProcessModel):
    s_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    a_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    s_in_bap: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    s_in_y1: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    s_in_y2: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    s_in_y3: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    weights: np.ndarray = LavaPyType(np.ndarray, float)
    a_buff: np.ndarray = LavaPyType(np.ndarray, float)

    def run_spk(self) -> None:
        self.a_out.send(self.a_buff)
        s = self.s_in.recv()
        bap = self.s_in_bap.recv()
        y1, y2, y3 = self.s_in_y1.recv(), self.s_in_y2.recv(), self.s_in_y3.recv()
        W = self.weights
        self.a_buff = W.dot(s)
        x0 = s != 0
        if self.proc_params["rule"] == "k":
            rows = bap != 0
            if rows.any():
                W[rows] = np.where(x0, s, 0.0)[None, :]
        elif x0.any() and (np.any(y2) or np.any(y3)):
            cols = np.flatnonzero(x0)
            W[:, cols] = (y1 * y2)[:, None] + (1.0 - y3)[:, None] * W[:, cols]
        self.weights = W
