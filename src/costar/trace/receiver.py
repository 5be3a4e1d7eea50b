"""An OTLP/HTTP trace receiver (protobuf and JSON) that routes spans to the trial that sent them.

Each command-agent trial gets its own endpoint path (``/costar/<key>``), set in the child's
``OTEL_EXPORTER_OTLP_ENDPOINT``; the SDK appends ``/v1/traces``. Spans posted to the plain
``/v1/traces`` are routed by the resource attribute ``costar.trial.key``.

Posts are untrusted (an agent, or anything else on the machine, can send them): keys the receiver
did not hand out are refused (404) and never buffered; what waits for the harness is bounded per
trial and in total (beyond, spans are refused with 413 and counted, and the trace records what was
dropped); bodies are bounded before and after decompression.
"""

from __future__ import annotations

import threading
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from costar._util.server import BackgroundServer
from costar._util.text import valid_unicode
from costar.trace.otlp import OtlpDecodeError, PayloadTooLarge, ReceivedSpan, parse_export_request

DEFAULT_MAX_BODY = 16 * 1024 * 1024
# What may wait in memory between a trial's posts and the harness taking its spans, in payload bytes
# (decoded, uncompressed request bodies): per trial and for all trials together.
DEFAULT_MAX_TRIAL_BYTES = 64 * 1024 * 1024
DEFAULT_MAX_TOTAL_BYTES = 256 * 1024 * 1024
DEFAULT_MAX_TRIAL_SPANS = 200_000
MAX_ERRORS_KEPT = 20  # per trial; the rest are counted
TRIAL_KEY_ATTR = "costar.trial.key"


@dataclass
class ReceiverStats:
    requests: int = 0
    spans: int = 0
    rejected: int = 0
    dropped_spans: int = 0
    last_error: str | None = None


@dataclass
class _Trial:
    """What one trial key has sent and not been taken yet, and what was refused."""

    spans: list[ReceivedSpan] = field(default_factory=list)
    bytes: int = 0
    errors: list[str] = field(default_factory=list)
    more_errors: int = 0
    dropped_spans: int = 0
    dropped_bytes: int = 0
    seen: set[tuple[str, str]] = field(default_factory=set)
    """(trace id, span id) of every span taken in: an exporter that re-sends a batch it had delivered
    (its retry after a lost answer) must not count its model calls twice."""

    def note(self, message: str) -> None:
        if len(self.errors) < MAX_ERRORS_KEPT:
            self.errors.append(message)
        else:
            self.more_errors += 1


SUPPORTED_TYPES = ("application/json", "application/x-protobuf", "application/protobuf")


def request_content_type(request: Request) -> str:
    """The request's media type, lower case (protobuf when it names none, as OTLP/HTTP says)."""
    return request.headers.get("content-type", "application/x-protobuf").split(";")[0].strip().lower()


async def read_body(request: Request, max_body: int, on_chunk: Callable[[int], None] | None = None) -> bytes:
    """An OTLP/HTTP request body, inflated when gzip-encoded; at most ``max_body`` bytes either way
    (:class:`PayloadTooLarge` beyond it, read no further), :class:`OtlpDecodeError` for bad gzip.
    ``on_chunk`` is told the size of each chunk as it arrives (and may raise to stop reading)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_body:
        raise PayloadTooLarge(f"payload of {declared} bytes exceeds the {max_body}-byte limit")
    chunks = bytearray()
    async for chunk in request.stream():
        if on_chunk is not None:
            on_chunk(len(chunk))
        chunks += chunk
        if len(chunks) > max_body:
            raise PayloadTooLarge(f"payload exceeds the {max_body}-byte limit")
    body = bytes(chunks)
    if request.headers.get("content-encoding", "").lower() == "gzip":
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            body = inflater.decompress(body, max_body + 1)
        except zlib.error as exc:
            raise OtlpDecodeError(f"invalid gzip body: {exc}") from None
        if len(body) > max_body or inflater.unconsumed_tail:
            raise PayloadTooLarge(f"decompressed payload exceeds the {max_body}-byte limit")
    return body


def otlp_error(status: int, message: str, json_body: bool) -> Response:
    """An OTLP/HTTP error answer (JSON for JSON requests, plain text otherwise)."""
    return _error(status, message, json_body)


def otlp_success(json_body: bool) -> Response:
    """An OTLP/HTTP success answer: an empty ExportTraceServiceResponse in the request's encoding."""
    if json_body:
        return JSONResponse({})
    return Response(ExportTraceServiceResponse().SerializeToString(), media_type="application/x-protobuf")


def _error(status: int, message: str, json_body: bool) -> Response:
    message = valid_unicode(message)[:2000]  # it may quote the body
    if json_body:
        return JSONResponse({"code": status, "message": message}, status_code=status)
    return Response(message, status_code=status, media_type="text/plain")


def _trace_key(trace_id: str) -> str:
    # Trial keys are path segments (no slash); a trace's key can never collide with one.
    return f"trace/{trace_id}"


def _unique(spans: list[ReceivedSpan]) -> list[ReceivedSpan]:
    """The spans with one of each (trace id, span id): a payload may itself hold a span twice."""
    if len({(rs.span.trace_id, rs.span.span_id) for rs in spans}) == len(spans):
        return spans
    last = {(rs.span.trace_id, rs.span.span_id): rs for rs in spans}
    return list(last.values())


def _mb(n: int) -> str:
    return f"{n / (1024 * 1024):.1f} MB"


class OtlpReceiver:
    """Accepts spans only for the trial keys it handed out (``endpoint_for``/``child_env``) and
    buffers them, bounded per trial and in total, until the harness ``take``s them."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, max_body: int | None = None,
                 max_trial_bytes: int | None = None, max_total_bytes: int | None = None,
                 max_trial_spans: int | None = None) -> None:
        self.max_body = max_body or DEFAULT_MAX_BODY
        self.max_trial_bytes = max_trial_bytes or DEFAULT_MAX_TRIAL_BYTES
        self.max_total_bytes = max_total_bytes or DEFAULT_MAX_TOTAL_BYTES
        self.max_trial_spans = max_trial_spans or DEFAULT_MAX_TRIAL_SPANS
        self._lock = threading.Lock()
        self._trials: dict[str, _Trial] = {}
        self._buffered = 0
        self._arriving = 0  # bytes of request bodies being read now
        self.stats = ReceiverStats()
        self._server = BackgroundServer(self._app(), host, port)

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> OtlpReceiver:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    def __enter__(self) -> OtlpReceiver:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        return self._server.base_url

    def endpoint_for(self, key: str) -> str:
        """The endpoint of one trial; from now on the receiver accepts spans for ``key``."""
        with self._lock:
            self._trials.setdefault(key, _Trial())
        return f"{self.base_url}/costar/{key}"

    def child_env(self, key: str) -> dict[str, str]:
        """Environment that points any OpenTelemetry SDK in the child at this receiver."""
        endpoint = self.endpoint_for(key)
        return {
            "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"{endpoint}/v1/traces",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf",
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_METRICS_EXPORTER": "none",
            "OTEL_LOGS_EXPORTER": "none",
            # Short batch delay so spans arrive while the trial is still being recorded.
            "OTEL_BSP_SCHEDULE_DELAY": "200",
            "COSTAR_OTLP_ENDPOINT": endpoint,
        }

    # ------------------------------------------------------------------ spans

    def take(self, key: str) -> list[ReceivedSpan]:
        """The spans ``key`` sent since the last take (the key stays open for more)."""
        with self._lock:
            trial = self._trials.get(key)
            if trial is None:
                return []
            spans, trial.spans = trial.spans, []
            self._buffered -= trial.bytes
            trial.bytes = 0
            return spans

    def expect_trace(self, trace_id: str) -> None:
        """Accept spans posted without a trial key that belong to ``trace_id``: a server continuing the
        trace the harness propagated to it (``traceparent``). Bounded like a trial's buffer."""
        with self._lock:
            self._trials.setdefault(_trace_key(trace_id), _Trial())

    def take_trace(self, trace_id: str) -> list[ReceivedSpan]:
        """The spans of an expected trace (``expect_trace``) that arrived since the last take."""
        return self.take(_trace_key(trace_id))

    def release_trace(self, trace_id: str) -> None:
        self.release(_trace_key(trace_id))

    def errors(self, key: str) -> list[str]:
        """Why posts of ``key`` were refused (bounded), and what was dropped, since the last call."""
        with self._lock:
            trial = self._trials.get(key)
            if trial is None:
                return []
            out = list(trial.errors)
            if trial.more_errors:
                out.append(f"… and {trial.more_errors} more refused posts")
            if trial.dropped_spans:
                out.append(f"dropped {trial.dropped_spans} spans ({_mb(trial.dropped_bytes)}) beyond the span "
                           f"buffer (per trial {_mb(self.max_trial_bytes)} / {self.max_trial_spans} spans, "
                           f"all trials {_mb(self.max_total_bytes)})")
            trial.errors, trial.more_errors, trial.dropped_spans, trial.dropped_bytes = [], 0, 0, 0
            return out

    def release(self, key: str) -> None:
        """The trial is over: forget its key (later posts to it are refused) and whatever it left."""
        with self._lock:
            trial = self._trials.pop(key, None)
            if trial is not None:
                self._buffered -= trial.bytes

    @property
    def buffered_bytes(self) -> int:
        with self._lock:
            return self._buffered

    def _accept(self, key: str | None, spans: list[ReceivedSpan], size: int) -> tuple[int, str | None]:
        """Buffer the spans of known keys; (spans refused, why) for the response."""
        groups: dict[str, list[ReceivedSpan]] = {}
        unknown = 0
        with self._lock:
            self.stats.requests += 1
            for rs in spans:
                k = key or str(rs.resource_attributes.get(TRIAL_KEY_ATTR) or "")
                if k not in self._trials and key is None:
                    k = _trace_key(rs.span.trace_id)  # an expected trace continued by a server
                if k in self._trials:
                    groups.setdefault(k, []).append(rs)
                else:
                    unknown += 1
            refused, reasons = unknown, []
            if unknown:
                reasons.append(f"{unknown} spans carry no known '{TRIAL_KEY_ATTR}' resource attribute and belong "
                               "to no trace a trial propagated; post to the endpoint in OTEL_EXPORTER_OTLP_ENDPOINT")
            for k, group in groups.items():
                trial = self._trials[k]
                share = size * len(group) // max(1, len(spans))
                if (trial.bytes + share > self.max_trial_bytes or self._buffered + share > self.max_total_bytes
                        or len(trial.spans) + len(group) > self.max_trial_spans):
                    trial.dropped_spans += len(group)
                    trial.dropped_bytes += share
                    refused += len(group)
                    reasons.append(f"the span buffer is full ({_mb(trial.bytes)} of {_mb(self.max_trial_bytes)} for "
                                   f"this trial, {_mb(self._buffered)} of {_mb(self.max_total_bytes)} in all); "
                                   f"{len(group)} spans dropped")
                    continue
                fresh = [rs for rs in group if (rs.span.trace_id, rs.span.span_id) not in trial.seen]
                trial.seen.update((rs.span.trace_id, rs.span.span_id) for rs in fresh)
                # A repeat is acknowledged like the first delivery (the exporter must not retry it).
                trial.spans.extend(_unique(fresh))
                trial.bytes += share
                self._buffered += share
            self.stats.spans += len(spans) - refused
            self.stats.dropped_spans += refused
        return refused, "; ".join(reasons) or None

    def _reject(self, key: str | None, message: str) -> None:
        with self._lock:
            self.stats.rejected += 1
            self.stats.last_error = message
            trial = self._trials.get(key) if key is not None else None
            if trial is not None:  # unknown keys get an answer, never a place in memory
                trial.note(message)

    # ------------------------------------------------------------------ HTTP

    def _known(self, key: str) -> bool:
        with self._lock:
            return key in self._trials

    async def _handle(self, request: Request, key: str | None) -> Response:
        ctype = request_content_type(request)
        is_json = ctype == "application/json"
        if key is not None and not self._known(key):
            self._reject(None, f"unknown trial key {key[:80]!r}")
            return _error(404, "unknown trial key: this receiver only accepts spans from the trials it runs "
                               "(use the endpoint in OTEL_EXPORTER_OTLP_ENDPOINT)", is_json)
        if ctype not in SUPPORTED_TYPES:
            self._reject(key, f"unsupported content type {ctype!r}")
            return _error(415, "use application/x-protobuf or application/json", is_json)
        counted = 0

        def count(n: int) -> None:
            # Bodies still arriving count against the buffer too: many slow uploads at once would
            # otherwise each hold up to max_body unaccounted.
            nonlocal counted
            with self._lock:
                if self._buffered + self._arriving + n > self.max_total_bytes:
                    raise PayloadTooLarge(f"the span buffer is full ({_mb(self._buffered + self._arriving)} of "
                                          f"{_mb(self.max_total_bytes)} with the requests arriving); try again later")
                self._arriving += n
                counted += n

        try:
            try:
                body = await read_body(request, self.max_body, count)
                spans = parse_export_request(body, ctype, max_bytes=self.max_body)
            finally:
                with self._lock:
                    self._arriving -= counted
        except PayloadTooLarge as exc:
            self._reject(key, str(exc))
            return _error(413, str(exc), is_json)
        except OtlpDecodeError as exc:
            self._reject(key, f"malformed OTLP payload: {exc}")
            return _error(400, f"malformed OTLP payload: {exc}", is_json)
        refused, why = self._accept(key, spans, len(body))
        if refused and refused == len(spans):
            full = key is not None or "buffer is full" in (why or "")
            self._reject(key, why or "refused")
            # 413 for a full buffer: OTLP exporters do not retry it (they would for 429/503).
            return _error(413 if full else 400, why or "refused", is_json)
        if refused:
            self._reject(key, why or "refused")
        return self._ok(is_json, refused, why)

    @staticmethod
    def _ok(is_json: bool, refused: int, why: str | None) -> Response:
        # OTLP's partial success: the spans that were not kept, and why.
        if is_json:
            body = {"partialSuccess": {"rejectedSpans": str(refused), "errorMessage": why}} if refused else {}
            return JSONResponse(body)
        resp = ExportTraceServiceResponse()
        if refused:
            resp.partial_success.rejected_spans = refused
            resp.partial_success.error_message = why or ""
        return Response(resp.SerializeToString(), media_type="application/x-protobuf")

    def _app(self) -> FastAPI:
        app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)

        @app.post("/v1/traces")
        async def traces(request: Request) -> Response:
            return await self._handle(request, None)

        @app.post("/costar/{key}/v1/traces")
        async def keyed(key: str, request: Request) -> Response:
            return await self._handle(request, key)

        return app
