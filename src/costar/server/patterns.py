"""Redaction patterns run in linear time: they are applied at ingest to untrusted text of any length
(up to the sanitizer's 256K characters per value), so a pattern with nested or overlapping repeats
(``[\\w.]+@[\\w.]+`` on a long run of letters) must not stall a server for minutes as Python's
backtracking ``re`` does. RE2 (``google-re2``; also the engine of the OpenTelemetry Collector's
redaction processor) guarantees time linear in the text; the price is its syntax: no lookaround and
no backreferences, and ``\\w``, ``\\d`` and ``\\b`` are ASCII-only.
"""

from __future__ import annotations

from typing import Any, Protocol, cast

import re2

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False  # a bad pattern is reported once, by PatternError, not also on stderr


class LinearPattern(Protocol):
    """A compiled RE2 pattern: the subset of ``re.Pattern`` that redaction uses."""

    def search(self, text: str) -> Any | None: ...

    def match(self, text: str) -> Any | None: ...

    def sub(self, repl: str, text: str) -> str: ...


class PatternError(ValueError):
    """A redaction pattern that RE2 cannot compile; the message says why and what RE2 does not support."""


def compile_linear(pattern: str) -> LinearPattern:
    """``pattern`` compiled by RE2, or :class:`PatternError`."""
    try:
        return cast(LinearPattern, re2.compile(pattern, _OPTIONS))
    except re2.error as exc:
        reason = exc.args[0].decode(errors="replace") if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        raise PatternError(f"{reason} (patterns use RE2 syntax, which runs in linear time: no lookaround "
                           "(?=…) (?<=…) and no backreferences \\1)") from None
