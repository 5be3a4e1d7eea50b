"""OTLP/HTTP ingest: decode (the harness receiver's code), route to a project, redact, commit to the
write-ahead log, and only then acknowledge.

Routing, first match wins: the ingest token's project; the ``X-Costar-Project`` header; the
resource attribute ``costar.project``; ``service.name`` through ``services:`` in server.yaml; the
default project. A token's project cannot be overridden: a header naming another project is
refused (403).

Durability: concurrent requests are committed together (one transaction for everything waiting,
a *group commit*), and each request is answered 200 only after its transaction committed; a
failed commit answers 503, so the exporter retries and nothing acknowledged is lost.

Backpressure: a request is refused with 503 and ``Retry-After`` (OpenTelemetry exporters retry on
it) when request bodies in flight exceed ``limits.max_inflight_bytes`` or the assembler holds more
than ``limits.max_open_spans`` spans; nothing is ever dropped after it was accepted.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request
from fastapi.responses import Response
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from costar._util.web import same_origin
from costar.server.assembler import Assembler
from costar.server.assembly_process import AssemblerProcess
from costar.server.auth import Authenticator, AuthFailure
from costar.server.config import PROJECT_ATTRIBUTE, PROJECT_HEADER, ServerConfig, check_project_name
from costar.server.redaction import ProjectRedactors, Redactor
from costar.server.wal import SpanGroup, encode
from costar.store.server_tables import ServerTables
from costar.trace.otlp import OtlpDecodeError, PayloadTooLarge, decode_request, from_key_values, span_row_from_pb
from costar.trace.receiver import (
    SUPPORTED_TYPES,
    otlp_error,
    otlp_success,
    read_body,
    request_content_type,
)

log = logging.getLogger("costar.server")

_Routed = tuple[str, dict[str, Any], list[list[Any]]]
"""A resource's project, its attributes and its spans as rows."""


@dataclass
class IngestStats:
    requests: int = 0
    accepted: int = 0
    spans_accepted: int = 0
    rejected: dict[int, int] = field(default_factory=dict)
    """Refused requests by status code (400, 401, 403, 413, 415, 503)."""
    inflight_bytes: int = 0
    commits: int = 0
    commit_errors: int = 0
    last_error: str | None = None
    ack_latencies: deque[float] = field(default_factory=lambda: deque(maxlen=4096))
    """Seconds from a request's arrival to its acknowledgement, the most recent ones."""

    def refuse(self, status: int) -> None:
        self.rejected[status] = self.rejected.get(status, 0) + 1


class _Overloaded(Exception):
    pass


class GroupCommitter:
    """Commits write-ahead rows for many requests in one transaction; each waits for its own."""

    def __init__(self, tables: ServerTables, stats: IngestStats, *, max_rows: int = 256) -> None:
        self.tables = tables
        self.stats = stats
        self.max_rows = max_rows
        self._pending: list[tuple[int, bytes, asyncio.Future[int]]] = []
        self._committing: list[tuple[int, bytes, asyncio.Future[int]]] = []
        """The batch in the transaction now (stop() answers its requests too)."""
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._wakeup = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name="costar-group-commit")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        for _, _, fut in [*self._committing, *self._pending]:
            if not fut.done():
                fut.set_exception(RuntimeError("the server is stopping"))
        self._pending.clear()
        self._committing = []

    async def commit(self, spans: int, payload: bytes) -> int:
        """Commit one row; returns its id once it is durable."""
        assert self._wakeup is not None, "start() the committer first"
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._pending.append((spans, payload, fut))
        self._wakeup.set()
        return await fut

    async def _run(self) -> None:
        assert self._wakeup is not None
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._pending:
                batch, self._pending = self._pending[:self.max_rows], self._pending[self.max_rows:]
                self._committing = batch
                try:
                    ids = await asyncio.to_thread(self.tables.append_batches, [(n, data) for n, data, _ in batch])
                except Exception as exc:
                    self.stats.commit_errors += 1
                    self.stats.last_error = f"{type(exc).__name__}: {exc}"
                    log.error("could not commit %d ingest request(s): %s", len(batch), exc)
                    for _, _, fut in batch:
                        if not fut.done():
                            fut.set_exception(exc)
                    continue
                self.stats.commits += 1
                for (_, _, fut), row_id in zip(batch, ids, strict=True):
                    if not fut.done():
                        fut.set_result(row_id)


class Ingestor:
    """The ``/v1/traces`` handler."""

    def __init__(self, config: ServerConfig, tables: ServerTables, assembler: Assembler | AssemblerProcess,
                 auth: Authenticator) -> None:
        self.config = config
        self.tables = tables
        self.assembler = assembler
        self.auth = auth
        self.stats = IngestStats()
        self.committer = GroupCommitter(tables, self.stats)
        self._redactors = ProjectRedactors(config)

    def redactor(self, project: str) -> Redactor:
        return self._redactors.get(project)

    def _retry_after(self) -> dict[str, str]:
        return {"Retry-After": str(max(1, round(self.config.limits.retry_after)))}

    def _refuse(self, status: int, message: str, json_body: bool, headers: dict[str, str] | None = None) -> Response:
        self.stats.refuse(status)
        response = otlp_error(status, message, json_body)
        if headers:
            response.headers.update(headers)
        return response

    def _admit(self, declared: int) -> None:
        limits = self.config.limits
        if not self.assembler.accepting:
            raise _Overloaded("the server's assembler is restarting; retry later")
        if self.assembler.open_spans >= limits.max_open_spans:
            raise _Overloaded(f"the server holds {self.assembler.open_spans} spans not yet stored; retry later")
        if self.stats.inflight_bytes + declared > limits.max_inflight_bytes and self.stats.inflight_bytes > 0:
            raise _Overloaded("the server is busy with other requests; retry later")

    async def handle(self, request: Request) -> Response:
        started = time.perf_counter()
        self.stats.requests += 1
        ctype = request_content_type(request)
        is_json = ctype == "application/json"
        try:
            caller = await asyncio.to_thread(self.auth.check, request.headers.get("authorization"), "ingest") \
                if request.headers.get("authorization") or self.auth.required else None
        except AuthFailure as exc:
            return self._refuse(exc.status, exc.message, is_json)
        if not same_origin(request):
            # An exporter sends no Origin; a web page can post here without a CORS preflight.
            return self._refuse(403, "cross-site requests are refused: send spans from an OpenTelemetry exporter, "
                                     "not from a web page", is_json)
        header_project = request.headers.get(PROJECT_HEADER)
        pinned = caller.project if caller is not None and caller.project else None
        if header_project:
            try:
                check_project_name(header_project)
            except ValueError as exc:
                return self._refuse(400, f"{PROJECT_HEADER}: {exc}", is_json)
            if pinned and header_project != pinned:
                return self._refuse(403, f"this token sends to project {pinned!r}, not {header_project!r}; drop the "
                                         f"{PROJECT_HEADER} header or use that project's token", is_json)
            pinned = header_project
        if ctype not in SUPPORTED_TYPES:
            return self._refuse(415, f"unsupported content type {ctype!r}; use application/x-protobuf or "
                                     "application/json", is_json)
        declared = request.headers.get("content-length")
        size = int(declared) if declared and declared.isdigit() else 0
        try:
            self._admit(size)
        except _Overloaded as exc:
            return self._refuse(503, str(exc), is_json, self._retry_after())
        self.stats.inflight_bytes += size
        counted = size
        if not size:  # no Content-Length (chunked): count the bytes as they arrive, refused past the limit

            def count(n: int) -> None:
                nonlocal counted
                others = self.stats.inflight_bytes - counted
                if others > 0 and others + counted + n > self.config.limits.max_inflight_bytes:
                    raise _Overloaded("the server is busy with other requests; retry later")
                self.stats.inflight_bytes += n
                counted += n
        n = 0
        try:
            try:
                body = await read_body(request, self.config.limits.max_body, None if size else count)
                # Decoding a large request takes a while: off the event loop, the server answers others.
                groups = await asyncio.to_thread(self._groups, body, ctype, pinned)
            except PayloadTooLarge as exc:
                return self._refuse(413, str(exc), is_json)
            except OtlpDecodeError as exc:
                return self._refuse(400, f"malformed OTLP payload: {exc}", is_json)
            except _Overloaded as exc:
                return self._refuse(503, str(exc), is_json, self._retry_after())
            del body
            n = sum(len(g.spans) for g in groups)
            if n:
                payload = encode(groups)
                try:
                    row_id = await self.committer.commit(n, payload)
                except Exception as exc:  # not stored, so not acknowledged: the exporter retries
                    return self._refuse(503, f"the store could not take the spans ({type(exc).__name__}); retry later",
                                        is_json, self._retry_after())
                self.assembler.take(row_id, groups, payload)
        finally:
            self.stats.inflight_bytes -= counted
        self.stats.accepted += 1
        self.stats.spans_accepted += n
        self.stats.ack_latencies.append(time.perf_counter() - started)
        return otlp_success(is_json)

    def _groups(self, body: bytes, content_type: str, pinned: str | None) -> list[SpanGroup]:
        """A request body's spans: decoded, routed to a project and redacted with its rules."""
        req = decode_request(body, content_type, max_bytes=self.config.limits.max_body)
        return self._redacted(self._routed(req, pinned), pinned)

    def _routed(self, req: ExportTraceServiceRequest, pinned: str | None = None) -> list[_Routed]:
        """Each resource's project, its attributes and its spans as rows, normalised after the project's
        attribute-name rules were applied (normalisation copies values under other keys)."""
        out: list[_Routed] = []
        for rs in req.resource_spans:
            resource = from_key_values(rs.resource.attributes)
            project = pinned or self._route(resource)
            hook = self.redactor(project).before_normalize
            rows = [span_row_from_pb(pb, before_normalize=hook) for ss in rs.scope_spans for pb in ss.spans]
            if rows:
                out.append((project, resource, rows))
        return out

    def _redacted(self, routed: list[_Routed], pinned: str | None) -> list[SpanGroup]:
        """The spans of each resource (as rows) redacted with their project's rules."""
        groups: list[SpanGroup] = []
        for project, resource, rows in routed:
            red = self.redactor(project)
            groups.append(SpanGroup(project=project, pinned=pinned is not None, resource=red.resource(resource),
                                    spans=[red.row(f) for f in rows]))
        return groups

    def _route(self, resource: dict[str, Any]) -> str:
        named = resource.get(PROJECT_ATTRIBUTE)
        if isinstance(named, str) and named:
            try:
                return check_project_name(named)
            except ValueError:
                log.warning("resource attribute %s=%r is not a project name; using the default", PROJECT_ATTRIBUTE,
                            named)
        service = resource.get("service.name")
        return self.config.project_for_service(service if isinstance(service, str) else None) \
            or self.config.default_project
