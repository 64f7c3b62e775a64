"""Shared test helpers: fixture discovery, small hand-built graphs, and the in-process CLI with
the checks of the hardening tests (one-line errors, no leftover temporaries)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

from icl_compiler.ir.graph import Graph
from icl_compiler.ir.symbolic import sym

FIXTURES = Path(__file__).parent / "fixtures"


def cli(*args, cwd=None) -> subprocess.CompletedProcess:
    """Run ``icl-compile`` in a subprocess; a traceback on stderr fails the calling test."""
    r = subprocess.run([sys.executable, "-m", "icl_compiler.cli", *map(str, args)],
                       capture_output=True, text=True, cwd=cwd, timeout=300)
    assert "Traceback" not in r.stderr, r.stderr
    return r


def manifest() -> list[dict]:
    return json.loads((FIXTURES / "manifest.json").read_text())


def fixture_names(softmax: bool | None = False) -> list[str]:
    return [m["name"] for m in manifest() if softmax is None or m["softmax"] == softmax]


def fixture(name: str) -> tuple[Path, np.ndarray, dict]:
    meta = next(m for m in manifest() if m["name"] == name)
    return FIXTURES / meta["file"], np.load(FIXTURES / f"{name}.input.npy"), meta


def attention_graph(rng: np.random.Generator, *, feat=6, heads=2, dk=4, dv=4, f="relu",
                    norm="none", t_max=10, out=5, residual=True, lowering="auto") -> Graph:
    """x → q,k,v Linears → PlasticAttention → Linear (+ residual) → Relu → Linear → y."""
    g = Graph("attn")
    B, T = sym("batch"), sym("seq")
    d = heads * dk
    g.add_value("x", (B, T, feat), "float32")
    g.inputs = ["x"]

    def const(a, base):
        return g.add_const(np.asarray(a, np.float32), base).name

    def linear(x, n_in, n_out, name, bias=True):
        w = const(rng.normal(0, 1 / np.sqrt(n_in), (n_in, n_out)), name + "_w")
        ins = [x, w] + ([const(rng.normal(0, 0.1, n_out), name + "_b")] if bias else [])
        g.add_value(name, (B, T, n_out), "float32")
        g.add_node("Linear", ins, [name])
        return name

    q, k, v = (linear("x", feat, d if n != "v" else heads * dv, n) for n in "qkv")
    g.add_value("att", (B, T, heads * dv), "float32")
    g.add_node("PlasticAttention", [q, k, v], ["att"],
               dict(heads=heads, d_k=dk, d_v=dv, f=f, scale=0.5, normalisation=norm,
                    eps=1e-3 if norm != "none" else 0.0, T_max=t_max, lowering=lowering,
                    layer=0))
    o = linear("att", heads * dv, feat, "o")
    if residual:
        g.add_value("res", (B, T, feat), "float32")
        g.add_node("Add", [o, "x"], ["res"])
        o = "res"
    g.add_value("h", (B, T, feat), "float32")
    g.add_node("Relu", [o], ["h"])
    y = linear("h", feat, out, "y")
    g.outputs = [y]
    return g


# -- hardening: the in-process CLI, one-line errors, no temporaries ------------------------------

SMALL = "tok_identity_trilmul_1l1h"  # softmax-free, one head: the quickest full compile
CTX = ("--max-context", "16")  # its mask is built at run time, so T_max must be given
FEAT = "feat_identity_trilmul_1l4h_noMLP"  # feature input (float): for NaN calibration data
SOFTMAX = "tok_softmax_2h"


def run_cli(capsys, *args) -> tuple[int, str, str]:
    """``icl-compile args`` in-process (``cli.main``): (exit code, stdout, stderr)."""
    from icl_compiler import cli

    args = [str(a) for a in args]
    if "--max-context" not in args:
        args += list(CTX)
    code = cli.main(args)
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def leftovers(parent: Path) -> list[str]:
    """Temporary directories that Program.save leaves behind (there must be none)."""
    return sorted(p.name for p in parent.iterdir() if ".tmp-" in p.name or ".old-" in p.name)


def with_tensor(name: str, tensor: str, value: float, index: int = 0) -> onnx.ModelProto:
    path, _, _ = fixture(name)
    m = onnx.load(str(path))
    t = next(t for t in m.graph.initializer if t.name == tensor)
    arr = numpy_helper.to_array(t).copy()
    arr.reshape(-1)[index] = value
    t.CopyFrom(numpy_helper.from_array(arr, t.name))
    return m


def first_matrix(name: str) -> str:
    path, _, _ = fixture(name)
    m = onnx.load(str(path))
    return next(t.name for t in m.graph.initializer
                if t.data_type == TensorProto.FLOAT and len(t.dims) == 2)
