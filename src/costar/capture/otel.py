"""Record the OpenTelemetry spans an in-process agent emits through its own tracer providers.

A command agent exports its spans over OTLP to the harness's receiver. An in-process agent
(``type: python``) has no such exporter pointed at coSTAR: the spans of Pydantic AI's
``instrument_all()``, OpenInference instrumentors or the agent's own tracer go wherever the
agent's OpenTelemetry SDK sends them. :func:`instrument_otel` adds one span processor to every SDK
``TracerProvider`` in the process (the ones that exist and the ones created later, since agents
often set theirs up on the first call); the processor keeps the spans started while a coSTAR
recording is current inside :func:`capturing_otel` (the harness wraps the agent's call in it) and
hands them to that recording, mapped exactly as spans received over OTLP
are. Spans started anywhere else (judges run unrecorded, other threads, other libraries) are left
alone, and the agent's own processors and exporters keep working.

A span the agent's sampler drops is never started as a recording span, so it is not recorded here
either. This module needs the OpenTelemetry SDK (``opentelemetry-sdk``); an agent without it emits
no spans, and the harness does not import this module then.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.proto.trace.v1.trace_pb2 import Span as PbSpan
from opentelemetry.proto.trace.v1.trace_pb2 import Status as PbStatus
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace import Span as SdkSpan

from costar._util.text import valid_unicode
from costar.trace.otlp import span_from_pb, to_key_values
from costar.trace.recorder import Recording, current_span

__all__ = ["UNENDED", "capturing_otel", "instrument_otel", "readable_to_pb"]

_Key = tuple[int, int]
"""An OpenTelemetry span's (trace id, span id)."""
_log = logging.getLogger("costar.capture.otel")
UNENDED = "costar.unended"
"""Set (True) on a span the agent started and had not ended when its call returned."""
MAX_OPEN = 100_000
"""Most started, unended spans remembered; past it the oldest are forgotten (an agent that never
ends its spans cannot grow this without bound)."""

_lock = threading.Lock()
_processor: _RecordingProcessor | None = None
# Set where an agent that wants its spans recorded runs; instrumentation itself is process-wide.
_capturing: ContextVar[bool] = ContextVar("costar_otel_capturing", default=False)


@contextlib.contextmanager
def capturing_otel() -> Iterator[None]:
    """Record the OpenTelemetry spans started in this block (and the tasks and threads it hands its
    context to) into the coSTAR recording current there. Spans still open when the block ends are
    recorded as they are then, with no end time and ``costar.unended`` set: an agent that forgets to
    end a span still shows it, and the spans inside it keep their parent."""
    token = _capturing.set(True)
    owner = current_span()
    try:
        yield
    finally:
        _capturing.reset(token)
        if owner is not None and _processor is not None:
            _processor.record_unended(owner.recording)


def readable_to_pb(span: ReadableSpan) -> PbSpan:
    """An OpenTelemetry SDK span as the OTLP protobuf span an exporter would send."""
    ctx = span.get_span_context()
    pb = PbSpan(name=valid_unicode(span.name), start_time_unix_nano=span.start_time or 0,
                end_time_unix_nano=span.end_time or 0,
                # The SDK's kinds start at INTERNAL = 0; OTLP's at UNSPECIFIED = 0, INTERNAL = 1.
                kind=span.kind.value + 1,  # type: ignore[arg-type]  # an int the enum accepts
                attributes=to_key_values(dict(span.attributes or {})),
                status=PbStatus(code=span.status.status_code.value,  # type: ignore[arg-type]
                                message=valid_unicode(span.status.description or "")))
    if ctx is not None:
        pb.trace_id = ctx.trace_id.to_bytes(16, "big")
        pb.span_id = ctx.span_id.to_bytes(8, "big")
    if span.parent is not None:
        pb.parent_span_id = span.parent.span_id.to_bytes(8, "big")
    for event in span.events:
        pb.events.add(time_unix_nano=event.timestamp, name=valid_unicode(event.name),
                      attributes=to_key_values(dict(event.attributes or {})))
    for link in span.links:
        pb.links.add(trace_id=link.context.trace_id.to_bytes(16, "big"),
                     span_id=link.context.span_id.to_bytes(8, "big"),
                     attributes=to_key_values(dict(link.attributes or {})))
    return pb


def _key(span: ReadableSpan) -> _Key | None:
    ctx = span.get_span_context()
    return None if ctx is None else (ctx.trace_id, ctx.span_id)


class _RecordingProcessor(SpanProcessor):
    """Hands the spans started under a coSTAR recording to it; ignores every other span.

    A span whose OpenTelemetry parent is one of the recording's spans keeps that parent; any other
    span hangs under the coSTAR span that was current when it started (the trial's root, or a
    ``@traced`` function), so the agent's spans sit inside the trial's trace."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # Started, not yet ended: whose recording each belongs to, the parent it gets there, the span.
        self._open: dict[_Key, tuple[Recording, str | None, SdkSpan]] = {}

    def on_start(self, span: SdkSpan, parent_context: Context | None = None) -> None:
        if not _capturing.get():
            return
        owner = current_span()
        key = _key(span)
        if owner is None or key is None:
            return
        recording = owner.recording
        parent = span.parent
        with self._lock:
            found = None if parent is None else self._open.get((parent.trace_id, parent.span_id))
            inside = found is not None and found[0] is recording
            self._open[key] = (recording, None if inside else owner.span_id, span)
            if len(self._open) > MAX_OPEN:
                del self._open[next(iter(self._open))]

    def on_end(self, span: ReadableSpan) -> None:
        key = _key(span)
        if key is None:
            return
        with self._lock:
            entry = self._open.pop(key, None)
        if entry is not None:
            recording, parent_id, _ = entry
            _record(span, recording, parent_id)

    def record_unended(self, recording: Recording) -> None:
        """Record the spans of ``recording`` that are still open, as they are now (no end time)."""
        with self._lock:
            keys = [k for k, entry in self._open.items() if entry[0] is recording]
            unended = [self._open.pop(k) for k in keys]
        for _, parent_id, span in unended:
            _record(span, recording, parent_id, unended=True)

    def shutdown(self) -> None:
        """Nothing is buffered: spans reach their recording as they end."""

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Nothing is buffered, so there is nothing to flush."""
        return True


def _record(span: ReadableSpan, recording: Recording, parent_id: str | None, *, unended: bool = False) -> None:
    try:
        mapped = span_from_pb(readable_to_pb(span))
    except Exception as exc:  # on_end runs inside the agent's span.end(): never raise into its code
        _log.warning("coSTAR could not record the OpenTelemetry span %r: %s", span.name, exc)
        return
    mapped.trace_id = recording.trace_id
    if parent_id is not None:
        mapped.parent_id = parent_id
    if unended:
        mapped.end_ns = None
        mapped.attributes = {**mapped.attributes, UNENDED: True}
    recording.add_spans([mapped])


def _attach(provider: TracerProvider, processor: _RecordingProcessor) -> None:
    """Add ``processor`` to an SDK tracer provider once."""
    # The SDK offers no public way to list a provider's processors.
    active = getattr(provider, "_active_span_processor", None)
    if processor in getattr(active, "_span_processors", ()):
        return
    provider.add_span_processor(processor)


def instrument_otel() -> None:
    """Record the spans of every OpenTelemetry SDK tracer provider in this process: the global one
    now, and every provider created from now on (idempotent)."""
    global _processor
    with _lock:
        if _processor is None:
            processor = _RecordingProcessor()
            original = TracerProvider.__init__

            def init(self: TracerProvider, *args: Any, **kwargs: Any) -> None:
                original(self, *args, **kwargs)
                _attach(self, processor)

            TracerProvider.__init__ = init  # type: ignore[method-assign]  # every provider made from now on
            _processor = processor
        current = trace.get_tracer_provider()
        if isinstance(current, TracerProvider):
            _attach(current, _processor)
