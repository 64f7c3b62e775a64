"""User-facing errors.  A CompileError is printed as one line by the CLI (exit code 3)."""
from __future__ import annotations


class CompileError(Exception):
    """The model cannot be compiled.  Names the ONNX node and op where known, and a remedy."""

    def __init__(self, reason: str, *, node: str | None = None, op: str | None = None,
                 hint: str | None = None):
        self.reason = reason
        self.node = node
        self.op = op
        self.hint = hint
        super().__init__(self.message())

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
