"""The payload of one write-ahead row: a request's spans, grouped by resource, already redacted.

Compact JSON (orjson): each span is a *row*, the list of its fields (the layout of
:func:`costar.trace.otlp.span_row_from_pb`, which ingest decodes OTLP into), so a row costs little
more than the spans' attributes themselves, and ingest never builds a
:class:`~costar.trace.model.Span`: the assembler does, without validation (the rows were typed and
bounded when encoded).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from costar.trace.otlp import span_from_row, span_row

FORMAT = 1


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
    spans: list[list[Any]] = field(default_factory=list)
    """The spans as rows (:func:`span_fields`), redacted."""


span_fields = span_row
"""A span as a row (:func:`span_from_fields` reverses it)."""
span_from_fields = span_from_row
"""The span a row holds, built without validation."""


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
    """A row's payload."""
    return dumps({"v": FORMAT, "g": [{"p": g.project, "x": g.pinned, "r": g.resource, "s": g.spans} for g in groups]})


def decode(data: bytes) -> list[SpanGroup]:
    """The groups of a payload, their spans as rows."""
    doc = orjson.loads(data)
    if not isinstance(doc, dict) or doc.get("v") != FORMAT:
        raise ValueError(f"unknown write-ahead format {doc.get('v') if isinstance(doc, dict) else '?'!r}")
    return [SpanGroup(project=g["p"], pinned=bool(g["x"]), resource=g["r"], spans=g["s"]) for g in doc["g"]]
