"""Trace contents are untrusted: secrets are redacted and sizes bounded before anything is stored.

Every store applies a Sanitizer to every trace it writes, whoever produced it (the recorder, the
OTLP receiver, an importer, SDK capture, library code), so this is also where numbers are bounded
for the last time: out-of-range times and counts are clamped and flagged (``costar.clamped``),
integers beyond 64 bits and non-finite floats in attributes are kept as text, and values nested
deeper than ``Limits.max_depth`` are cut.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson
import re2

from costar._util.text import valid_unicode
from costar.trace.model import (
    INT64_MAX,
    Artifact,
    Span,
    SpanEvent,
    Trace,
    bound_event,
    bound_span,
    bound_trace_fields,
)
from costar.trace.tool_definition import ToolDefinition

REDACTED = "[REDACTED]"

# Well-known credential shapes. Kept specific so ordinary text (hashes, ids) is left alone.
_SECRET_PATTERNS = [
    r"sk-(?:proj-|ant-(?:api\d\d-)?)?[A-Za-z0-9_\-]{20,}",  # OpenAI / Anthropic keys
    r"(?:ghp|gho|ghu|ghs|ghr|github_pat)_[A-Za-z0-9_]{20,}",  # GitHub tokens
    r"xox[abpors]-[A-Za-z0-9\-]{10,}",  # Slack tokens
    r"AKIA[0-9A-Z]{16}",  # AWS access key ids
    r"AIza[0-9A-Za-z_\-]{35}",  # Google API keys
    r"dapi[0-9a-f]{32}",  # Databricks personal access tokens
    r"hf_[A-Za-z0-9]{30,}",  # Hugging Face tokens
    r"eyJ[A-Za-z0-9_\-]{10,}\.eyJ[A-Za-z0-9_\-]{10,}\.[A-Za-z0-9_\-]{10,}",  # JWTs
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----",
]
# "Authorization: Bearer x", "api_key=x", '"password": "x"': keep the name, hide the value.
_ASSIGNMENT = re.compile(
    r"(?i)(\b(?:bearer|authorization|api[_-]?key|x-api-key|access[_-]?token|secret|password|passwd|token)"
    r"\b[\"']?\s*[:=]?\s*(?:bearer\s+)?[\"']?)([A-Za-z0-9_\-./+=]{12,})"
)
_SECRETS = re.compile("|".join(f"(?:{p})" for p in _SECRET_PATTERNS))
_SECRETS_BYTES = re.compile("|".join(f"(?:{p})" for p in _SECRET_PATTERNS).encode())


def _id(s: str | None) -> str | None:
    return s if s is None else valid_unicode(s)


# Cheap pre-filter: most strings contain none of these, and skip both regexes.
_HINTS = ("sk-", "ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat", "xox", "akia", "aiza", "dapi", "hf_", "eyj",
          "private key", "bearer", "authorization", "token", "secret", "passw")
# Short text: one alternation over its lower-cased form. Past _LONG_TEXT characters one RE2 pass is
# cheaper (Python's engine tries every alternative at every position; RE2's call has a fixed cost).
_LONG_TEXT = 64
NAME_MAX = 1024
"""Characters kept of a span's or an event's name."""
_HINTS_LOWER = re.compile("|".join(map(re.escape, _HINTS)) + "|api.?key")
# Long text and JSON text, case-insensitive. lower() turns only two non-ASCII letters into ASCII ones:
# the Kelvin sign, which RE2 folds to k, and "İ", which becomes "i" + U+0307 and so can complete "dapi"
# or "api.?key" (spelled out). In JSON text api.?key's one free character may be an escape (\t, \").
_HINTS_RE2 = re2.compile(("(?i)" + "|".join(map(re2.escape, _HINTS))
                          + "|api.?key|dap\u0130|ap\u0130.?key" + r'|api\\["\\/bfrt]key').encode())


def _hinted(text: str) -> bool:
    """Whether ``text`` holds any hint of a credential (case-insensitive)."""
    if len(text) > _LONG_TEXT:
        # Finds at least what the short path finds (RE2 also folds the long s): a pre-filter may say
        # yes too often, never too rarely.
        return _HINTS_RE2.search(text.encode("utf-8", "surrogatepass")) is not None
    return _HINTS_LOWER.search(text.lower()) is not None


# JSON's two-character escapes, undone so patterns see each string as it is ("\\u" ones are rare:
# control characters only, and left as they are).
_ESCAPE = re.compile(r'\\(["\\/bfnrt])')
_UNESCAPED = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


def _unescape(m: re.Match[str]) -> str:
    return _UNESCAPED[m.group(1)]


@dataclass
class Limits:
    max_string: int = 256 * 1024  # characters per attribute or output value
    max_attributes: int = 256  # per span
    max_events: int = 512  # per span
    max_spans: int = 200_000  # per trace
    max_depth: int = 64  # nesting of lists and dicts in one value
    max_value: int = 4 * 1024 * 1024  # characters of one list or dict attribute value, as JSON


@dataclass
class Sanitizer:
    """Redacts known credential shapes and any literal secret values it is given (e.g. env vars)."""

    secrets: Iterable[str] = ()
    limits: Limits = field(default_factory=Limits)

    def __post_init__(self) -> None:
        literals = sorted({s for s in self.secrets if s and len(s) >= 8}, key=len, reverse=True)
        self._literal = re.compile("|".join(map(re.escape, literals))) if literals else None
        self._literal_bytes = (re.compile(b"|".join(re.escape(s.encode()) for s in literals))
                               if literals else None)
        # The quick check below reads values as JSON text; a literal that JSON escapes could hide there.
        self._quick = not any(c in lit for lit in literals for c in '"\\' + "".join(map(chr, range(32))))
        self._hints_only = self._literal is None
        """Whether only the credential hints decide if a text needs redacting (no literals, no patterns)."""

    def _needs_walk(self, text: str) -> bool:
        """Whether any string in the values dumped as ``text`` (JSON, unescaped) may need redacting."""
        if self._literal is not None and self._literal.search(text):
            return True
        return _hinted(text)

    def _quick_clean(self, attrs: dict[str, Any]) -> bool:
        """True when no attribute value can need changing (redaction, truncation, bounds), checked on the
        values' JSON text in one pass: most spans hold no secret, and walking them is the cost of storing."""
        if not self._quick or not all(type(k) is str and k.isascii() for k in attrs):
            return False
        try:  # lone surrogates and integers beyond 53 bits raise: walk those
            raw = orjson.dumps(list(attrs.values()), option=orjson.OPT_STRICT_INTEGER)
        except TypeError:
            return False
        if len(raw) > min(self.limits.max_string, self.limits.max_value) or b"null" in raw:
            return False  # a string may be too long; NaN and Infinity dump as null
        if raw.count(b"[") + raw.count(b"{") > self.limits.max_depth:
            return False  # it may nest deeper than the limit
        if self._hints_only:
            # Every hint is made of letters, digits, "-", "_" and " ", which JSON never escapes, so a hint
            # in a string is in its JSON text too (api.?key's one free character aside, which the JSON
            # pattern also takes escaped): no decoding or unescaping needed.
            return _HINTS_RE2.search(raw) is None
        text = raw.decode()
        if "\\" in text:
            text = _ESCAPE.sub(_unescape, text)
        return not self._needs_walk(text)

    def redact(self, s: str) -> str:
        """``s`` with every secret value replaced, never shortened otherwise (file contents, paths)."""
        s = valid_unicode(s)
        if len(s) < 8:  # too short to hold any credential we know
            return s
        if self._literal is not None:
            s = self._literal.sub(REDACTED, s)
        if _hinted(s):
            s = _SECRETS.sub(REDACTED, s)
            s = _ASSIGNMENT.sub(lambda m: m.group(1) + REDACTED, s)
        return s

    def holds_secret(self, data: bytes) -> bool:
        """Whether raw bytes (a binary file) contain a known secret value or credential shape."""
        if self._literal_bytes is not None and self._literal_bytes.search(data):
            return True
        return _SECRETS_BYTES.search(data) is not None

    def text(self, s: str) -> str:
        if not s.isascii():
            s = valid_unicode(s)
        if len(s) < 8:  # too short to hold any credential we know
            return s
        if self._literal is not None:
            s = self._literal.sub(REDACTED, s)
        if _hinted(s):
            s = _SECRETS.sub(REDACTED, s)
            s = _ASSIGNMENT.sub(lambda m: m.group(1) + REDACTED, s)
        if len(s) > self.limits.max_string:
            # Keep both ends: an agent's final answer is usually at the end of what it printed.
            half = self.limits.max_string // 2
            s = f"{s[:half]}…[truncated {len(s) - 2 * half} characters]…{s[-half:]}"
        return s

    def value(self, v: Any, depth: int = 0) -> Any:
        """The sanitised value; the very same object when nothing needed changing (no copies)."""
        t = type(v)
        if t is str:
            return self.text(v)
        if t is bool or v is None:
            return v
        if t is int:
            # JSON readers turn integers beyond 64 bits into floats: keep the digits as text.
            return v if -INT64_MAX <= v <= INT64_MAX else str(v)
        if t is float:
            return v if math.isfinite(v) else str(v)  # JSON has no NaN or Infinity
        if t is dict or t is list or (t is not tuple and isinstance(v, dict | list)) or isinstance(v, tuple):
            if depth >= self.limits.max_depth:
                return f"[a value nested deeper than {self.limits.max_depth} levels was cut here]"
            return self._dict(v, depth) if isinstance(v, dict) else self._list(v, depth)
        if isinstance(v, str):
            return self.text(v)
        if isinstance(v, bool):
            return v
        if isinstance(v, int):  # subclasses (IntEnum, …) get the same bounds
            return v if -INT64_MAX <= v <= INT64_MAX else str(int(v))
        if isinstance(v, float):
            return v if math.isfinite(v) else str(float(v))
        return v

    def _dict(self, v: dict[Any, Any], depth: int) -> dict[Any, Any]:
        out: dict[Any, Any] | None = None
        for k, x in v.items():
            y = self.value(x, depth + 1)
            key = k if type(k) is not str or k.isascii() else valid_unicode(k)
            if y is not x or key is not k:
                if out is None:  # copy what came before, then continue in the copy
                    out = {}
                    for k2, x2 in v.items():
                        if k2 is k:
                            break
                        out[k2] = x2
                out[key] = y
            elif out is not None:
                out[k] = x
        return v if out is None else out

    def _list(self, v: list[Any] | tuple[Any, ...], depth: int) -> list[Any]:
        items = [self.value(x, depth + 1) for x in v]
        if isinstance(v, list) and all(a is b for a, b in zip(items, v, strict=True)):
            return v
        return items

    def attributes(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if len(attrs) > self.limits.max_attributes:
            kept = dict(list(attrs.items())[: self.limits.max_attributes])
            kept["costar.dropped_attributes"] = len(attrs) - self.limits.max_attributes
            attrs = kept
        elif attrs and self._quick_clean(attrs):
            return attrs
        sanitized: dict[str, Any] = self.value(attrs)
        return self._bound_values(sanitized)

    def _bound_values(self, attrs: dict[str, Any]) -> dict[str, Any]:
        """Each string is bounded on its own; a list or dict value is bounded as a whole too (20,000
        strings of a few KB each would otherwise be stored whole): past ``max_value`` characters of
        JSON it is kept as its JSON text, bounded like any string."""
        out = attrs
        for k, v in attrs.items():
            if isinstance(v, dict | list):
                try:
                    raw = orjson.dumps(v, option=orjson.OPT_NON_STR_KEYS, default=str)
                except TypeError:  # a key JSON has no form for: the store writes it another way
                    continue
                if len(raw) > self.limits.max_value:
                    if out is attrs:
                        out = dict(attrs)
                    out[k] = self.text(raw.decode())
        return out

    def span(self, s: Span) -> Span:
        s = bound_span(s)
        update: dict[str, Any] = {}
        attrs = self.attributes(s.attributes)
        if attrs is not s.attributes:
            update["attributes"] = attrs
        if s.events:
            events = s.events[: self.limits.max_events]
            new_events = []
            for e in events:
                e = bound_event(e)
                ea = self.attributes(e.attributes)
                # An event's name is text the agent chose (an exception message, a log line): redacted too.
                en = self.text(e.name)[:NAME_MAX]
                new_events.append(e if ea is e.attributes and en == e.name else
                                  SpanEvent.model_construct(name=en, time_ns=e.time_ns, attributes=ea))
            if len(events) != len(s.events) or any(a is not b for a, b in zip(new_events, events, strict=True)):
                update["events"] = new_events
        if s.status.message:
            message = self.text(s.status.message)
            if message is not s.status.message:
                update["status"] = s.status.model_copy(update={"message": message})
        name = self.text(s.name)[:NAME_MAX]
        if name != s.name:
            update["name"] = name
        if not (s.span_id.isascii() and s.trace_id.isascii() and (s.parent_id is None or s.parent_id.isascii())):
            for key in ("trace_id", "span_id", "parent_id"):
                value = getattr(s, key)
                if value is not None and _id(value) is not value:
                    update[key] = _id(value)
        return s.model_copy(update=update) if update else s

    def tool(self, d: ToolDefinition) -> ToolDefinition:
        """Redacted like any trace content; the fingerprint stays the one of what the agent saw."""
        data = d.model_dump()
        clean = self.value(data)
        return d if clean is data else ToolDefinition.model_validate(clean)

    def artifact(self, a: Artifact) -> Artifact:
        """The artifact with secret values out of its path (its bytes are redacted where they are stored)."""
        path = self.redact(a.path)
        return a if path == a.path else a.model_copy(update={"path": path})

    def trace(self, t: Trace) -> Trace:
        t = bound_trace_fields(t)
        spans = t.spans[: self.limits.max_spans]
        metadata = self.value(t.metadata)
        if len(t.spans) > self.limits.max_spans:
            metadata = {**metadata, "costar.dropped_spans": len(t.spans) - self.limits.max_spans}
        agent = t.agent
        if any(isinstance(v, str) and valid_unicode(v) is not v for v in (agent.name, agent.version, agent.git_sha)):
            agent = agent.model_copy(update={k: _id(getattr(agent, k)) for k in ("name", "version", "git_sha")})
        return t.model_copy(update={
            "trace_id": valid_unicode(t.trace_id), "run_id": _id(t.run_id), "scenario_id": _id(t.scenario_id),
            "agent": agent,
            "artifacts": [self.artifact(a) for a in t.artifacts],
            "spans": [self.span(s) for s in spans],
            "input": self.value(t.input),
            "output": None if t.output is None else self.text(t.output),
            "error": None if t.error is None else self.text(t.error),
            "metadata": metadata,
            "tools": [self.tool(d) for d in t.tools],
        })


DEFAULT_SANITIZER = Sanitizer()

SECRET_ENV_NAME = re.compile(r"(?i)(key|token|secret|password|passwd|credential|auth)")


def secret_env_values(env: dict[str, str]) -> list[str]:
    """Values of environment variables whose names suggest credentials."""
    return [v for k, v in env.items() if SECRET_ENV_NAME.search(k) and v]


def redact_env(env: dict[str, str]) -> dict[str, str]:
    """The mapping with credential-like values replaced, for storing a configuration."""
    return {k: REDACTED if SECRET_ENV_NAME.search(k) and v else v for k, v in env.items()}


def restore_env(env: dict[str, str], source: dict[str, str]) -> tuple[dict[str, str], list[str]]:
    """Put redacted values back from ``source`` (the current environment); names it lacks."""
    out, missing = dict(env), []
    for k, v in env.items():
        if v == REDACTED:
            if k in source:
                out[k] = source[k]
            else:
                missing.append(k)
    return out, missing
