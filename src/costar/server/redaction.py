"""PII redaction at ingest: a project's patterns and attribute names, on top of the secret redaction
every stored trace gets (:class:`costar.trace.sanitize.Sanitizer`), in one pass over each span.

It runs on the decoded spans before the write-ahead batch is committed, so no unredacted byte of a
request reaches the store, not even the write-ahead log. Ingest decodes spans into rows (the
write-ahead form, :mod:`costar.server.wal`), and :meth:`Redactor.row` redacts a row as
:meth:`~costar.trace.sanitize.Sanitizer.span` redacts a Span, with the same result.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field
from typing import Any

from costar._util.linear_regex import LinearRegex
from costar.server.config import RedactionRules, ServerConfig
from costar.trace.model import INT64_MAX, Span
from costar.trace.otlp import AttributeHook, span_from_row, span_row
from costar.trace.sanitize import NAME_MAX, REDACTED, Sanitizer


@dataclass
class Redactor(Sanitizer):
    """A :class:`Sanitizer` that also applies a project's :class:`RedactionRules`."""

    rules: RedactionRules = field(default_factory=RedactionRules)

    def __post_init__(self) -> None:
        super().__post_init__()
        self._patterns = [(LinearRegex(p), f"[REDACTED:{name}]") for name, p in self.rules.patterns.items()]
        globs = self.rules.attributes
        self._names = re.compile("|".join(fnmatch.translate(g) for g in globs)) if globs else None
        self._anchored = any(re.search(r"\^|\$|\\[AZz]", p) for p in self.rules.patterns.values())
        self._hints_only = self._hints_only and not self._patterns

    def text(self, s: str) -> str:
        for pattern, replacement in self._patterns:
            s = pattern.sub(replacement, s)
        return super().text(s)

    def _needs_walk(self, text: str) -> bool:
        return super()._needs_walk(text) or any(p.search(text) for p, _ in self._patterns)

    def _quick_clean(self, attrs: dict[str, Any]) -> bool:
        if self._anchored:
            return False  # "^…$" in a pattern means a whole string: the quick check cannot see that
        if self._names is not None and (any(self._hidden(k) for k in attrs)
                                        or any(isinstance(v, dict | list) for v in attrs.values())):
            return False  # nested keys may be named by the rules: walk them
        return super()._quick_clean(attrs)

    def _hidden(self, key: Any) -> bool:
        return self._names is not None and isinstance(key, str) and self._names.match(key) is not None

    def _hide_named(self, v: dict[Any, Any]) -> dict[Any, Any]:
        """``v`` with the values of keys the rules name redacted (a copy when any is)."""
        hidden = [k for k, x in v.items() if x is not None and x != REDACTED and self._hidden(k)]
        return {k: (REDACTED if k in hidden else x) for k, x in v.items()} if hidden else v

    @property
    def before_normalize(self) -> AttributeHook | None:
        """For the attributes as received, before GenAI normalisation copies values under canonical
        keys (``input.value`` into ``gen_ai.input.messages``…): a value the rules name by its key
        must be gone before it is copied. None when the rules name no attribute."""
        return self._hide_named if self._names is not None else None

    def _dict(self, v: dict[Any, Any], depth: int) -> dict[Any, Any]:
        if self._names is not None:
            v = self._hide_named(v)
        return super()._dict(v, depth)

    def row(self, f: list[Any]) -> list[Any]:
        """A span as a row (:func:`costar.trace.otlp.span_row_from_pb`) redacted and bounded exactly as
        :meth:`span` does it to the Span; ``f`` itself may be changed and is returned. The common row
        (times in range, ASCII ids, no events) is done here; any other goes through :meth:`span`."""
        start, end = f[5], f[6]
        if (f[10] or not 0 <= start <= INT64_MAX or (end is not None and not 0 <= end <= INT64_MAX)
                or not (f[0].isascii() and f[1].isascii() and (f[2] is None or f[2].isascii()))):
            return span_row(self.span(span_from_row(f)))
        f[9] = self.attributes(f[9])
        if f[8]:
            f[8] = self.text(f[8])
        name = self.text(f[3])[:NAME_MAX]
        if name != f[3]:
            f[3] = name
        return f

    def resource(self, attrs: dict[str, Any]) -> dict[str, Any]:
        """Resource attributes, redacted like span attributes."""
        return self.attributes(attrs)


class ProjectRedactors:
    """Each project's :class:`Redactor` (server.yaml's rules), made once. Project names come from
    requests, so only the most recently made ``kept`` are held."""

    def __init__(self, config: ServerConfig, kept: int = 256) -> None:
        self.config = config
        self.kept = kept
        self._made: dict[str, Redactor] = {}

    def get(self, project: str) -> Redactor:
        red = self._made.get(project)
        if red is None:
            if len(self._made) >= self.kept:
                self._made.pop(next(iter(self._made)))
            red = self._made[project] = Redactor(rules=self.config.redaction(project))
        return red

    def __len__(self) -> int:
        return len(self._made)


class RedactedAtIngest(Sanitizer):
    """For traces assembled from spans the :class:`Redactor` already redacted and bounded at ingest:
    the spans are stored as they are (walking them again would find nothing), the trace-level fields
    (input, output, error, metadata, tools) are still sanitised."""

    def span(self, s: Span) -> Span:
        return s
