"""Process models of CoreNeurons (fixed_pt and floating_pt); semantics in process.py."""
import numpy as np
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.ports import PyInPort, PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol

from icl_compiler.backends.lava.base import BankModelMixin, bank_model_ports
from icl_compiler.backends.lava.procs.core_neuron.process import CoreNeurons
from icl_compiler.backends.lava.units import head_step, slot_step, value_step
from icl_compiler.semantics.fixed import (PAYLOAD_BITS, V_Y2, V_Y3, slot_f, v_third_factor,
                                          value_combine, value_out)
from icl_compiler.targets.loihi2 import TRACE_BITS


class _CoreModel(BankModelMixin, PyLoihiProcessModel):
    dtype = np.int32
    default_y = (1, 1)

    def _f(self, h, a):
        raise NotImplementedError

    def _y1(self, h, v):
        return v

    def _acc(self, h, a):
        return a

    def _out(self, h, a):
        return a

    def run_spk(self) -> None:
        fired = self.recv_bank()
        out = self.bank().output(fired)
        origin = self.origin[0]
        for i, h in enumerate(self.proc_params["heads"]):
            ka = getattr(self, f"ka{i}").recv()
            va = getattr(self, f"va{i}").recv()
            sh, vh = h["slot"], h["value"]
            s, bap = slot_step(sh, head_step(sh, self.time_step, origin), ka, self._f,
                               self.dtype)
            v = fired.get(f"v{i}")
            c2 = self.default_y[0] if vh["y2"] is None else vh["y2"]
            c3 = self.default_y[1] if vh["y3"] is None else vh["y3"]
            y1, y2, y3, o = value_step(
                vh, head_step(vh, self.time_step, origin), va,
                np.zeros(vh["size"] // (2 if vh["residual"] else 1)) if v is None else v,
                c2, c3, lambda v_, vh=vh: self._y1(vh, v_),
                lambda a_, vh=vh: self._acc(vh, a_) if vh["raw"] else self._out(vh, a_),
                self.dtype)
            if o is not None:
                out[vh["out"][0]:vh["out"][1]] = o
            kq = fired.get(f"k{i}")
            kq = fired.get(f"q{i}") if kq is None else kq
            getattr(self, f"kq{i}").send(np.zeros(h["width"], self.dtype) if kq is None else kq)
            getattr(self, f"bap{i}").send(bap)
            getattr(self, f"s{i}").send(s)
            getattr(self, f"y1_{i}").send(y1)
            getattr(self, f"y2_{i}").send(y2)
            getattr(self, f"y3_{i}").send(y3)
        self.s_out.send(out if out.size else np.zeros(1, out.dtype))
        y = self.bank().spec.get("y")
        self.y_out.send(out[y[0]:y[1]] if y else np.zeros(1, out.dtype))


@implements(proc=CoreNeurons, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyCoreNeuronsFixed(_CoreModel):
    default_y = (V_Y2, V_Y3)

    def _f(self, h, a):
        return slot_f(a, h["f"], h["r"], h["r2"]).astype(np.int32)

    def _y1(self, h, v):
        return v_third_factor(v, h["residual"])

    def _acc(self, h, a):
        return value_combine(a, h["residual"])

    def _out(self, h, a):
        return value_out(a, h["residual"])


@implements(proc=CoreNeurons, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyCoreNeuronsFloat(_CoreModel):
    dtype = np.float64

    def _f(self, h, a):
        x = np.asarray(a, float) * h["scale"]
        if h["f"] == "identity":
            return x
        x = np.maximum(x, 0.0)
        return x * x if h["f"] == "relu2" else x


bank_model_ports(PyCoreNeuronsFixed, True, CoreNeurons.max_ports)
bank_model_ports(PyCoreNeuronsFloat, False, CoreNeurons.max_ports)
_I32 = {"precision": PAYLOAD_BITS}
for _i in range(CoreNeurons.max_heads):
    for _m, _dt, _kw in ((PyCoreNeuronsFixed, np.int32, _I32), (PyCoreNeuronsFloat, float, {})):
        for _p in ("kq", "s"):
            setattr(_m, f"{_p}{_i}", LavaPyType(PyOutPort.VEC_DENSE, _dt, **_kw))
        for _p in ("ka", "va"):
            setattr(_m, f"{_p}{_i}", LavaPyType(PyInPort.VEC_DENSE, _dt, **_kw))
        setattr(_m, f"bap{_i}", LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=1))
        for _y in ("y1", "y2", "y3"):
            setattr(_m, f"{_y}_{_i}", LavaPyType(PyOutPort.VEC_DENSE, _dt,
                                                 **({"precision": TRACE_BITS} if _kw else {})))
