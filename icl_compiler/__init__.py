"""icl-compiler: softmax-free decoder-only transformers (ONNX) → Loihi 2 programs whose
attention KV cache lives in plastic synapses (Finkbeiner & Neftci, 2024).

    import icl_compiler as icl
    prog = icl.compile("model.onnx", precision="fixed", calibration=x_calib)
    y = prog.run(x, backend="numpy")
"""
from .compiler import compile
from .errors import CompileError
from .runtime.program import Program, load

__all__ = ["compile", "load", "Program", "CompileError"]
__version__ = "0.1.0"
