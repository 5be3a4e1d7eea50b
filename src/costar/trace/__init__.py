"""Trace model and in-process recording."""

from costar.trace.model import (
    AgentInfo,
    Artifact,
    Span,
    SpanEvent,
    SpanKind,
    SpanStatus,
    StatusCode,
    Totals,
    Trace,
    TraceStatus,
)
from costar.trace.recorder import Recording, current_span, propagate, span, traced, unrecorded

__all__ = [
    "AgentInfo", "Artifact", "Recording", "Span", "SpanEvent", "SpanKind", "SpanStatus", "StatusCode", "Totals",
    "Trace", "TraceStatus", "current_span", "propagate", "span", "traced", "unrecorded",
]
