"""Compile options, validated once: from Python keyword arguments and from the CLI.

:class:`CompileOptions` is the one place that checks what a compile may be asked for;
``compile()`` builds it from its keyword arguments (:meth:`CompileOptions.from_kwargs`), the CLI
from its parsed arguments (:meth:`CompileOptions.from_cli`), and every pass reads the validated
values (through :class:`~icl_compiler.passes.base.PassContext`).  A bad value is an
:class:`~icl_compiler.errors.OptionError` (a ValueError; the CLI exits 2 with its one-line
message).  The allowed values of each choice are defined here too, so the CLI's ``choices`` and
the checks cannot disagree.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Any, Literal

from .errors import OptionError
from .targets import loihi2 as L2
from .targets.loihi2 import Target, as_target

PRECISIONS = ("float", "fixed")
LOWERINGS = ("auto", "kv_slot", "fast_weight")
WEIGHT_BITS = (8, 16, "auto")
ERROR_TARGET = 0.05  # auto weight bits: the largest output error of 8-bit on the calibration data
# The context capacity T_max is a number of slot neurons per attention head.  A limit of this
# compiler (it holds each head's K/V as dense T_max-row arrays on the host, and so does the
# emulator per sequence): one Loihi 2 chip's neurons, 2^20.  The target's own limit is its
# neurons (max_context_limit); the lowering checks the K/V synapse memory once d_k is known
# (passes/partition/cost.py: check_heads_fit).
MAX_CONTEXT = L2.NEURONS_PER_CHIP


def choice(name: str, value, allowed: tuple):
    if isinstance(value, bool) or value not in allowed:
        raise OptionError(f"{name} must be one of {allowed}, got {value!r}")
    return value


def positive_int(name: str, value, *, optional: bool = True) -> int | None:
    """A positive integer (an integral float such as 16.0 is accepted), or None if optional."""
    if value is None and optional:
        return None
    ok = not isinstance(value, bool) and isinstance(value, Real) and math.isfinite(value) \
        and int(value) == value and value >= 1
    if not ok:
        raise OptionError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def positive_number(name: str, value) -> float:
    """A positive finite number (NaN, inf, zero, negatives and booleans are refused)."""
    if isinstance(value, bool) or not isinstance(value, Real) or not 0 < value < math.inf:
        raise OptionError(f"{name} must be a positive number, got {value!r}")
    return float(value)


def valid_weight_bits(value) -> int | str:
    """8, 16 or "auto" (numpy integers are accepted)."""
    if isinstance(value, bool) or not (value == "auto" or (isinstance(value, Integral)
                                                           and value in (8, 16))):
        raise OptionError(f"weight_bits must be 8, 16 or 'auto', got {value!r}")
    return value if value == "auto" else int(value)


BIND_KINDS = ("ones", "zeros", "arange")


def valid_bind(value) -> dict | None:
    """{input name: "ones" | "zeros" | "arange" | an array} for the model's auxiliary inputs
    (``frontend/bind.py``), or None (the defaults by name)."""
    if value is None:
        return None
    import numpy as np

    if not isinstance(value, dict):
        raise OptionError(f"bind must be a dict {{input name: how}}, got {type(value).__name__}")
    out = {}
    for k, v in value.items():
        if not isinstance(k, str) or not k:
            raise OptionError(f"bind: input names must be strings, got {k!r}")
        if isinstance(v, np.ndarray):
            out[k] = v
        elif v in BIND_KINDS:
            out[k] = v
        else:
            raise OptionError(f"bind {k}: choose one of {BIND_KINDS} or an array, got {v!r}")
    return out


def parse_bind(specs) -> dict | None:
    """The CLI's ``--bind NAME=ones|zeros|arange|FILE.npy`` strings → a binding dict."""
    if not specs:
        return None
    import numpy as np

    out: dict = {}
    for spec in specs:
        name, sep, how = spec.partition("=")
        if not sep or not name or not how:
            raise OptionError(f"--bind {spec!r}: expected NAME=ones|zeros|arange|FILE.npy")
        if how in BIND_KINDS:
            out[name] = how
            continue
        try:
            out[name] = np.load(how, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise OptionError(f"--bind {spec!r}: cannot read {how} ({e})") from None
        if not isinstance(out[name], np.ndarray):
            raise OptionError(f"--bind {spec!r}: {how} holds several arrays; give one .npy")
    return out


def valid_outputs(value) -> tuple | None:
    """The ONNX outputs to compile: names (a list, or one comma-separated string), or None."""
    if value is None:
        return None
    if isinstance(value, str):
        value = [v for v in value.split(",") if v]
    if not isinstance(value, (list, tuple)) or not value or not all(
            isinstance(v, str) and v for v in value):
        raise OptionError(f"outputs must be a list of output names, got {value!r}")
    return tuple(value)


def valid_target(value) -> Target:
    """The hardware target: None (one Loihi 2 chip), a Target, or a dict of
    ``targets.loihi2.get_target`` keywords (system, chips, cores_per_chip, …).  The cores per
    chip can only be lowered (a Loihi 2 chip has 128; Hala Point makes 122 usable)."""
    try:
        t = as_target(value)
    except (ValueError, TypeError, OverflowError) as e:
        raise OptionError(f"target: {e}") from None
    if t.cores_per_chip > L2.NEURO_CORES_PER_CHIP:
        raise OptionError(f"cores_per_chip {t.cores_per_chip} exceeds the "
                          f"{L2.NEURO_CORES_PER_CHIP} neuro cores of a Loihi 2 chip (it can "
                          "only lower them)")
    return t


def max_context_limit(target: Target) -> tuple[int, str]:
    """The largest context capacity T_max a compile may ask for on ``target``, and what it is."""
    slots = target.cores * target.neurons_per_core
    if slots < MAX_CONTEXT:
        return slots, (f"the {slots} neurons of {target.name} ({target.chips} chip(s) × "
                       f"{target.cores_per_chip} cores × {target.neurons_per_core} neurons), "
                       "which one head's T_max slot neurons must fit")
    return MAX_CONTEXT, (f"this compiler's limit of {MAX_CONTEXT} slots per head (the neurons "
                         f"of one Loihi 2 chip: {L2.NEURO_CORES_PER_CHIP} cores × "
                         f"{L2.NEURONS_PER_CORE})")


def valid_max_context(value, target: Target) -> int | None:
    """None (from the model) or a positive integer within :func:`max_context_limit`."""
    n = positive_int("max_context", value)
    if n is not None:
        limit, what = max_context_limit(target)
        if n > limit:
            raise OptionError(f"max_context {n} exceeds {what}")
    return n


@dataclass(frozen=True)
class CompileOptions:
    precision: Literal["float", "fixed"] = "float"
    lowering: Literal["auto", "kv_slot", "fast_weight"] = "auto"
    max_context: int | None = None  # T_max; None: from the model (static length or mask buffer)
    weight_bits: int | Literal["auto"] = "auto"
    error_target: float = ERROR_TARGET
    strict: bool = False  # fixed mode: saturation on the calibration data is an error
    target: Target | None = None  # None: one Loihi 2 chip (oheo-gulch)
    dump_ir: str | None = None  # print the IR after this pass (checked against the pipeline)
    verify_ir: bool = False  # run the tensor IR verifier after every pass
    bind: dict | None = None  # auxiliary model inputs → "ones" | "zeros" | "arange" | array
    outputs: tuple | None = None  # the ONNX outputs to compile (None: all of them)

    @classmethod
    def from_kwargs(cls, *, precision: str = "float", lowering: str = "auto",
                    max_context: Any = None, weight_bits: Any = "auto",
                    error_target: Any = ERROR_TARGET, strict: bool = False, target: Any = None,
                    dump_ir: str | None = None, verify_ir: bool = False,
                    bind: Any = None, outputs: Any = None) -> CompileOptions:
        """Validate Python arguments (``compile()``'s keywords)."""
        if dump_ir is not None and not isinstance(dump_ir, str):
            raise OptionError(f"dump_ir must be a pass name, got {dump_ir!r}")
        hw = valid_target(target)
        return cls(precision=choice("precision", precision, PRECISIONS),
                   lowering=choice("lowering", lowering, LOWERINGS),
                   max_context=valid_max_context(max_context, hw),
                   weight_bits=valid_weight_bits(weight_bits),
                   error_target=positive_number("error_target", error_target),
                   strict=bool(strict), target=hw, dump_ir=dump_ir, verify_ir=bool(verify_ir),
                   bind=valid_bind(bind), outputs=valid_outputs(outputs))

    @classmethod
    def from_cli(cls, args) -> CompileOptions:
        """Validate the CLI's parsed arguments (argparse has converted the strings to numbers;
        the ranges are checked here, like Python arguments)."""
        hw = {k: v for k, v in (("system", args.system), ("chips", args.chips),
                                ("cores_per_chip", args.cores_per_chip)) if v is not None}
        return cls.from_kwargs(precision=args.precision, lowering=args.lowering,
                               max_context=args.max_context, weight_bits=args.weight_bits,
                               error_target=args.error_target, strict=args.strict,
                               target=hw or None, dump_ir=args.dump_ir, verify_ir=args.verify_ir,
                               bind=parse_bind(getattr(args, "bind", None)),
                               outputs=getattr(args, "outputs", None))
