"""OpenInference (or OTel GenAI) span attributes -> Trace.

Accepted: one span's attribute dict, a list of them (one span each, in order, as siblings), or
an OTLP/JSON document (handed to ``costar.trace.otlp``). Bare attribute dicts carry no ids or
clock, so ids are derived from the content and timing is synthetic.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from costar.errors import ConfigError
from costar.trace.formats._common import STEP_NS, SYNTHETIC_TIMING, load_json, stable_id
from costar.trace.genai import default_span_name, infer_kind, normalize_attributes
from costar.trace.model import Span, Trace
from costar.trace.otlp import OtlpDecodeError, assemble_trace, otlp_json_to_traces

# Keys that mark a dict as span attributes rather than some other JSON document.
_ATTRIBUTE_PREFIXES = ("gen_ai.", "llm.", "openinference.", "input.", "output.", "tool.", "tool_call.",
                       "embedding.", "retrieval.", "reranker.", "session.", "agent.")


def looks_like_attributes(value: Any) -> bool:
    return isinstance(value, dict) and any(isinstance(k, str) and k.startswith(_ATTRIBUTE_PREFIXES)
                                           for k in value)


def span_from_attributes(attrs: Mapping[str, Any], *, trace_id: str, span_id: str, start_ns: int,
                         end_ns: int, parent_id: str | None = None) -> Span:
    """One attribute dict -> one normalised span, named the OTel way (``chat gpt-4``)."""
    kind = infer_kind(attrs)
    normalized = normalize_attributes(attrs, kind)
    return Span(trace_id=trace_id, span_id=span_id, parent_id=parent_id, name=default_span_name(normalized, kind),
                kind=kind, start_ns=start_ns, end_ns=end_ns, attributes=normalized)


def attributes_to_trace(items: list[Mapping[str, Any]]) -> Trace:
    trace_id = stable_id("openinference", items)
    spans = [span_from_attributes(a, trace_id=trace_id, span_id=stable_id(trace_id, i, size=8),
                                  start_ns=i * STEP_NS, end_ns=(i + 1) * STEP_NS)
             for i, a in enumerate(items)]
    trace = assemble_trace(trace_id, spans)
    trace.totals.latency_s = 0.0  # the clock is synthetic
    trace.metadata = {**trace.metadata, "source": "openinference", SYNTHETIC_TIMING: True}
    return trace


def openinference_from_data(data: Any, *, source: str = "<data>") -> list[Trace]:
    if isinstance(data, dict) and ("resourceSpans" in data or "resource_spans" in data):
        try:
            return otlp_json_to_traces(data)
        except OtlpDecodeError as exc:
            raise ConfigError(f"{source}: {exc}") from None
    items = [data] if isinstance(data, dict) else data
    if not isinstance(items, list) or not items or not all(looks_like_attributes(a) for a in items):
        raise ConfigError(f"{source}: not OpenInference span attributes (expected an object of "
                          "'llm.*'/'gen_ai.*'/'input.value' keys, a list of them, or OTLP JSON)")
    return [attributes_to_trace(items)]


def import_openinference(path: str | Path) -> list[Trace]:
    return openinference_from_data(load_json(path), source=str(path))
