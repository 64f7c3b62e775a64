"""The compiler's errors.  A CompileError is printed as one line by the CLI (exit code 3); an
OptionError is a usage error (exit 2).  The IR verifiers' errors are CompileErrors too, so that
a broken invariant reaches a user as one line, never as a traceback."""
from __future__ import annotations


class CompileError(Exception):
    """The model cannot be compiled.  Names the ONNX node and op where known, and a remedy."""

    def __init__(self, reason: str, *, node: str | None = None, op: str | None = None,
                 hint: str | None = None):
        self.reason = reason
        self.node = node
        self.op = op
        self.hint = hint
        # every problem found, most fundamental first (``--explain`` prints them); this one is
        # the first
        self.blockers: list[CompileError] = [self]
        super().__init__(self.message())

    @classmethod
    def first_of(cls, errors: list[CompileError]) -> CompileError:
        """The most fundamental of several problems (softmax attention, then attention that is
        not causal, then the rest in graph order), carrying all of them."""
        def rank(e: CompileError) -> int:
            text = e.reason.lower()
            return 0 if "softmax attention" in text else 1 if text.startswith(
                "attention is not causal") else 2

        errors = sorted(errors, key=rank)
        first = errors[0]
        first.blockers = list(errors)
        return first

    def message(self) -> str:
        where = ""
        if self.node is not None or self.op is not None:
            where = f"node {self.node!r} ({self.op or '?'}): "
        text = where + self.reason
        if self.hint:
            text += f" Hint: {self.hint}"
        return text


class VerificationError(Exception):
    """The compiled program's output differs from the reference by more than the tolerance."""


class OptionError(ValueError):
    """A compile option has a bad value (the CLI reports it as a usage error, exit 2)."""


INTERNAL_HINT = "this is a bug of the compiler, please report it"


class IRVerifyError(CompileError):
    """The tensor IR breaks an invariant (``ir/verify.py``): a bug of the frontend or of a pass
    when it happens during a compile, so the one-line message says so."""

    def __init__(self, reason: str, **kw):
        kw.setdefault("hint", INTERNAL_HINT)
        super().__init__(reason, **kw)


class NeuroVerifyError(CompileError):
    """The neuromorphic IR breaks an invariant (``ir/neuro.py``): a bug of a pass, or a saved
    program that was edited or is corrupt."""

    def __init__(self, reason: str, **kw):
        kw.setdefault("hint", INTERNAL_HINT + " (or recompile a saved program)")
        super().__init__(reason, **kw)
