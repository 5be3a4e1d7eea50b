"""An OTLP/HTTP trace receiver (protobuf and JSON) that routes spans to the trial that sent them.

Each command-agent trial gets its own endpoint path (``/costar/<key>``), set in the child's
``OTEL_EXPORTER_OTLP_ENDPOINT``; the SDK appends ``/v1/traces``. Spans posted to the plain
``/v1/traces`` are routed by the resource attribute ``costar.trial.key`` when present.
"""

from __future__ import annotations

import threading
import zlib
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from costar._util.server import BackgroundServer
from costar.trace.otlp import OtlpDecodeError, ReceivedSpan, parse_export_request

DEFAULT_MAX_BODY = 16 * 1024 * 1024
UNROUTED = "_unrouted"


class PayloadTooLarge(Exception):
    pass


@dataclass
class ReceiverStats:
    requests: int = 0
    spans: int = 0
    rejected: int = 0
    last_error: str | None = None
    errors_by_key: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))


def _error(status: int, message: str, json_body: bool) -> Response:
    if json_body:
        return JSONResponse({"code": status, "message": message}, status_code=status)
    return Response(message, status_code=status, media_type="text/plain")


class OtlpReceiver:
    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, max_body: int | None = None) -> None:
        self.max_body = max_body or DEFAULT_MAX_BODY
        self._lock = threading.Lock()
        self._spans: dict[str, list[ReceivedSpan]] = defaultdict(list)
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
        with self._lock:
            return self._spans.pop(key, [])

    def take_trace(self, trace_id: str) -> list[ReceivedSpan]:
        """Spans posted without a trial key that belong to ``trace_id``: a server continuing the
        trace the harness propagated to it (``traceparent``)."""
        with self._lock:
            pending = self._spans.get(UNROUTED, [])
            mine = [rs for rs in pending if rs.span.trace_id == trace_id]
            if mine:
                self._spans[UNROUTED] = [rs for rs in pending if rs.span.trace_id != trace_id]
            return mine

    def errors(self, key: str) -> list[str]:
        with self._lock:
            return self.stats.errors_by_key.pop(key, [])

    def _accept(self, key: str | None, spans: list[ReceivedSpan]) -> None:
        with self._lock:
            self.stats.requests += 1
            self.stats.spans += len(spans)
            for rs in spans:
                k = key or str(rs.resource_attributes.get("costar.trial.key") or UNROUTED)
                self._spans[k].append(rs)

    def _reject(self, key: str | None, message: str) -> None:
        with self._lock:
            self.stats.rejected += 1
            self.stats.last_error = message
            self.stats.errors_by_key[key or UNROUTED].append(message)

    # ------------------------------------------------------------------ HTTP

    async def _read_body(self, request: Request) -> bytes:
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > self.max_body:
            raise PayloadTooLarge(f"payload of {declared} bytes exceeds the {self.max_body}-byte limit")
        chunks = bytearray()
        async for chunk in request.stream():
            chunks += chunk
            if len(chunks) > self.max_body:
                raise PayloadTooLarge(f"payload exceeds the {self.max_body}-byte limit")
        body = bytes(chunks)
        if request.headers.get("content-encoding", "").lower() == "gzip":
            inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
            try:
                body = inflater.decompress(body, self.max_body + 1)
            except zlib.error as exc:
                raise OtlpDecodeError(f"invalid gzip body: {exc}") from None
            if len(body) > self.max_body or inflater.unconsumed_tail:
                raise PayloadTooLarge(f"decompressed payload exceeds the {self.max_body}-byte limit")
        return body

    async def _handle(self, request: Request, key: str | None) -> Response:
        ctype = request.headers.get("content-type", "application/x-protobuf").split(";")[0].strip().lower()
        is_json = ctype == "application/json"
        if ctype not in ("application/json", "application/x-protobuf", "application/protobuf"):
            self._reject(key, f"unsupported content type {ctype!r}")
            return _error(415, "use application/x-protobuf or application/json", is_json)
        try:
            body = await self._read_body(request)
            spans = parse_export_request(body, ctype)
        except PayloadTooLarge as exc:
            self._reject(key, str(exc))
            return _error(413, str(exc), is_json)
        except OtlpDecodeError as exc:
            self._reject(key, f"malformed OTLP payload: {exc}")
            return _error(400, f"malformed OTLP payload: {exc}", is_json)
        self._accept(key, spans)
        if is_json:
            return JSONResponse({})
        return Response(ExportTraceServiceResponse().SerializeToString(), media_type="application/x-protobuf")

    def _app(self) -> FastAPI:
        app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)

        @app.post("/v1/traces")
        async def traces(request: Request) -> Response:
            return await self._handle(request, None)

        @app.post("/costar/{key}/v1/traces")
        async def keyed(key: str, request: Request) -> Response:
            return await self._handle(request, key)

        return app
