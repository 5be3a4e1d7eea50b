"""The payload of one write-ahead row: a request's spans, grouped by resource, already redacted.

Compact JSON (orjson): each span is a list of its fields, so a row costs little more than the spans'
attributes themselves, and decoding it rebuilds :class:`~costar.trace.model.Span` objects without
validation (they were valid when encoded).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from costar.trace.model import Span, SpanEvent, SpanKind, StatusCode, make_span

FORMAT = 1
_KINDS = {k.value: k for k in SpanKind}
_CODES = {c.value: c for c in StatusCode}


@dataclass(slots=True)
class SpanGroup:
    """Spans of one OTLP resource, routed to one project."""

    project: str
    """The project the spans go to."""
    pinned: bool
    """True when a token or the ``X-Costar-Project`` header chose the project (it then may not join a
    trace of another project); False when the resource attributes or the default did."""
    resource: dict[str, Any] = field(default_factory=dict)
    """The resource's attributes (redacted)."""
    spans: list[Span] = field(default_factory=list)


def span_fields(s: Span) -> list[Any]:
    """A span as the list of its fields (what a row stores; :func:`span_from_fields` reverses it)."""
    events = [[e.name, e.time_ns, e.attributes] for e in s.events] if s.events else None
    return [s.trace_id, s.span_id, s.parent_id, s.name, s.kind.value, s.start_ns, s.end_ns, s.status.code.value,
            s.status.message, s.attributes, events]


def span_from_fields(f: list[Any]) -> Span:
    """The span :func:`span_fields` gave the fields of, rebuilt without validation."""
    events = [SpanEvent.model_construct(name=e[0], time_ns=e[1], attributes=e[2]) for e in f[10]] if f[10] else []
    return make_span(f[0], f[1], f[2], f[3], _KINDS.get(f[4], SpanKind.UNKNOWN), f[5], f[6],
                     _CODES.get(f[7], StatusCode.UNSET), f[8], f[9], events)


def _default(value: Any) -> Any:
    return str(value)


def dumps(doc: Any) -> bytes:
    """Compact JSON of span data (attribute values of any JSON type; anything else as text)."""
    try:
        return orjson.dumps(doc, default=_default, option=orjson.OPT_NON_STR_KEYS)
    except TypeError:  # integers beyond 64 bits, which orjson refuses: the standard library keeps them
        import json

        return json.dumps(doc, default=_default, separators=(",", ":")).encode()


def encode(groups: list[SpanGroup]) -> bytes:
    return dumps({"v": FORMAT, "g": [{"p": g.project, "x": g.pinned, "r": g.resource,
                                      "s": [span_fields(s) for s in g.spans]} for g in groups]})


def decode(data: bytes) -> list[SpanGroup]:
    doc = orjson.loads(data)
    if not isinstance(doc, dict) or doc.get("v") != FORMAT:
        raise ValueError(f"unknown write-ahead format {doc.get('v') if isinstance(doc, dict) else '?'!r}")
    return [SpanGroup(project=g["p"], pinned=bool(g["x"]), resource=g["r"], spans=[span_from_fields(f) for f in g["s"]])
            for g in doc["g"]]
