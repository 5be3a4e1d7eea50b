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

    def text(self, s: str) -> str:
        for pattern, replacement in self._patterns:
            s = pattern.sub(replacement, s)
        return super().text(s)

    def _hidden(self, key: Any) -> bool:
        return self._names is not None and isinstance(key, str) and self._names.match(key) is not None

    def value(self, v: Any) -> Any:
        if self._names is not None and isinstance(v, dict):
            out = None
            for k, x in v.items():
                y = REDACTED if self._hidden(k) and x is not None else self.value(x)
                if y is not x:
                    out = out if out is not None else dict(v)
                    out[k] = y
            return v if out is None else out
        return super().value(v)

    def resource(self, attrs: dict[str, Any]) -> dict[str, Any]:
        """Resource attributes, redacted like span attributes."""
        return self.attributes(attrs)
