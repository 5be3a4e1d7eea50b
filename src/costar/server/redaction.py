"""PII redaction at ingest: a project's patterns and attribute names, on top of the secret redaction
every stored trace gets (:class:`costar.trace.sanitize.Sanitizer`), in one pass over each span.

It runs on the decoded spans before the write-ahead batch is committed, so no unredacted byte of a
request reaches the store, not even the write-ahead log.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field
from typing import Any

from costar.server.config import RedactionRules
from costar.trace.model import Span
from costar.trace.sanitize import REDACTED, Sanitizer


@dataclass
class Redactor(Sanitizer):
    """A :class:`Sanitizer` that also applies a project's :class:`RedactionRules`."""

    rules: RedactionRules = field(default_factory=RedactionRules)

    def __post_init__(self) -> None:
        super().__post_init__()
        self._patterns = [(re.compile(p), f"[REDACTED:{name}]") for name, p in self.rules.patterns.items()]
        globs = self.rules.attributes
        self._names = re.compile("|".join(fnmatch.translate(g) for g in globs)) if globs else None
        self._anchored = any(re.search(r"\^|\$|\\[AZz]", p) for p in self.rules.patterns.values())

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

    def _dict(self, v: dict[Any, Any], depth: int) -> dict[Any, Any]:
        if self._names is not None:
            hidden = [k for k, x in v.items() if x is not None and x != REDACTED and self._hidden(k)]
            if hidden:
                v = {k: (REDACTED if k in hidden else x) for k, x in v.items()}
        return super()._dict(v, depth)

    def resource(self, attrs: dict[str, Any]) -> dict[str, Any]:
        """Resource attributes, redacted like span attributes."""
        return self.attributes(attrs)


class RedactedAtIngest(Sanitizer):
    """For traces assembled from spans the :class:`Redactor` already redacted and bounded at ingest:
    the spans are stored as they are (walking them again would find nothing), the trace-level fields
    (input, output, error, metadata, tools) are still sanitised."""

    def span(self, s: Span) -> Span:
        return s
