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

from costar.server.assembler import Assembler
from costar.server.assembly_process import AssemblerProcess
from costar.server.auth import Authenticator, AuthFailure
from costar.server.config import PROJECT_ATTRIBUTE, PROJECT_HEADER, ServerConfig, check_project_name
from costar.server.redaction import Redactor
from costar.server.wal import SpanGroup, encode
from costar.store.server_tables import ServerTables
from costar.trace.otlp import OtlpDecodeError, ResourceRows, parse_export_rows
from costar.trace.receiver import (
    SUPPORTED_TYPES,
    PayloadTooLarge,
    otlp_error,
    otlp_success,
    read_body,
    request_content_type,
)

log = logging.getLogger("costar.server")


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
        for _, _, fut in self._pending:
            if not fut.done():
                fut.set_exception(RuntimeError("the server is stopping"))
        self._pending.clear()

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
        self._redactors: dict[str, Redactor] = {}

    def redactor(self, project: str) -> Redactor:
        r = self._redactors.get(project)
        if r is None:
            r = self._redactors[project] = Redactor(rules=self.config.redaction(project))
        return r

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
        try:
            try:
                body = await read_body(request, self.config.limits.max_body)
                if not size:  # no Content-Length (chunked): count what was read
                    size = len(body)
                    self.stats.inflight_bytes += size
                received = parse_export_rows(body, ctype)
            except PayloadTooLarge as exc:
                return self._refuse(413, str(exc), is_json)
            except OtlpDecodeError as exc:
                return self._refuse(400, f"malformed OTLP payload: {exc}", is_json)
            del body
            groups = self._groups(received, pinned)
            del received
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
            self.stats.inflight_bytes -= size
        self.stats.accepted += 1
        self.stats.spans_accepted += n
        self.stats.ack_latencies.append(time.perf_counter() - started)
        return otlp_success(is_json)

    def _groups(self, received: ResourceRows, pinned: str | None) -> list[SpanGroup]:
        """The spans of each resource (as rows), routed to a project and redacted with its rules."""
        groups: list[SpanGroup] = []
        for resource, rows in received:
            if not rows:
                continue
            project = pinned or self._route(resource)
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
