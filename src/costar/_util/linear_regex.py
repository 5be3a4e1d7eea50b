"""Regular expressions applied to untrusted text run in linear time. Trace contents reach patterns
in two places: a server's redaction rules at ingest (any attribute, up to 256K characters) and an
agentic judge's search_trace tool (a pattern a model wrote). With Python's backtracking ``re``, a
pattern with nested or overlapping repeats (``[\\w.]+@[\\w.]+`` on a long run of letters, ``(x+x+)+y``)
takes minutes or forever; RE2 (``google-re2``, also the engine of the OpenTelemetry Collector's
redaction processor) guarantees time linear in the text. The price is its syntax: no lookaround and
no backreferences, and ``\\w``, ``\\d`` and ``\\b`` are ASCII-only.
"""

from __future__ import annotations

from typing import Any, Protocol, cast

import re2

from costar._util.text import valid_unicode

__all__ = ["LinearMatch", "LinearRegex", "LinearRegexError"]

_RE2_LACKS = "RE2 syntax, which runs in linear time: no lookaround (?=…) (?<=…) and no backreferences \\1"


class LinearRegexError(ValueError):
    """A pattern RE2 cannot compile; the message says why and what RE2 does not support."""


class LinearMatch(Protocol):
    """Where a :class:`LinearRegex` matched (character offsets, as ``re.Match``)."""

    def start(self) -> int: ...

    def end(self) -> int: ...


class LinearRegex:
    """A pattern compiled by RE2, with the part of ``re.Pattern``'s interface coSTAR uses."""

    def __init__(self, pattern: str, *, ignore_case: bool = False) -> None:
        options = re2.Options()
        options.log_errors = False  # a bad pattern is reported once, by the exception, not also on stderr
        options.case_sensitive = not ignore_case
        try:
            self._rx: Any = re2.compile(pattern, options)
        except re2.error as exc:
            why = exc.args[0].decode(errors="replace") if exc.args and isinstance(exc.args[0], bytes) else str(exc)
            raise LinearRegexError(f"{why} (patterns use {_RE2_LACKS})") from None
        self.pattern = pattern
        """The pattern's text."""

    def search(self, text: str) -> LinearMatch | None:
        """The first match anywhere in ``text``."""
        try:
            return cast("LinearMatch | None", self._rx.search(text))
        except UnicodeEncodeError:  # RE2 reads UTF-8, which has no lone surrogates
            return cast("LinearMatch | None", self._rx.search(valid_unicode(text)))

    def match(self, text: str) -> LinearMatch | None:
        """A match at the start of ``text``."""
        try:
            return cast("LinearMatch | None", self._rx.match(text))
        except UnicodeEncodeError:
            return cast("LinearMatch | None", self._rx.match(valid_unicode(text)))

    def sub(self, replacement: str, text: str) -> str:
        """``text`` with every match replaced by ``replacement`` (backslash escapes expanded as ``re`` does)."""
        try:
            return cast(str, self._rx.sub(replacement, text))
        except UnicodeEncodeError:
            return cast(str, self._rx.sub(replacement, valid_unicode(text)))

