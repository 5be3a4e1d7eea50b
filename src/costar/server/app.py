"""``costar server``: one process with OTLP ingest at ``/v1/traces``, trace assembly, retention, the
JSON API under ``/api/v1``, health (``/healthz``, ``/readyz``) and metrics (``/metrics``).

The FastAPI app is built from routers, so the web pages (issue 15) mount beside the API later
(pages under ``/``, the API under ``/api/v1``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from costar._util.web import HostGuard, loopback_names
from costar._version import __version__
from costar.server.api import build_router
from costar.server.assembler import Assembler, Listener, assembler_settings
from costar.server.assembly_process import AssemblerProcess
from costar.server.auth import Authenticator, tokens_required
from costar.server.config import ServerConfig
from costar.server.ingest import Ingestor
from costar.server.metrics import prometheus_text, server_metrics
from costar.server.retention import prune
from costar.store.base import Store
from costar.store.server_tables import ServerTables
from costar.store.span_tree import SpanTrees

if TYPE_CHECKING:
    from costar.monitor.service import MonitorService

log = logging.getLogger("costar.server")




class CostarServer:
    """The server's parts over one store. ``app`` is the ASGI application; its lifespan recovers
    the write-ahead log, starts the assembler, the group committer and the retention loop, and on
    shutdown stores what is complete and stops them.

    ``monitors`` (a :class:`~costar.monitor.MonitorService` over the same store) score the traces the
    server stores: it is registered as a listener and its workers run on the server's event loop."""

    def __init__(self, config: ServerConfig, store: Store, *, listeners: Sequence[Listener] = (),
                 monitors: MonitorService | None = None) -> None:
        self.config = config
        self.store = store
        self.tables = ServerTables(store)  # type: ignore[arg-type]
        self.version = __version__
        self.started_at = time.time()
        self.ready = False
        self.recovered_spans = 0
        self.retention_runs = 0
        self.auth = Authenticator(self.tables, required=tokens_required(config.host, config.require_tokens))
        self.trees = SpanTrees()
        from costar.models.pricing import PriceTable

        settings = assembler_settings(config)
        self.assembler: Assembler | AssemblerProcess = AssemblerProcess(self.tables, settings) \
            if config.assembly == "process" else Assembler(self.tables, **settings, price=PriceTable().cost)
        for listener in listeners:
            self.assembler.add_listener(listener)
        self.monitors = monitors
        if monitors is not None:
            self.assembler.add_listener(monitors.listener)
        self.ingestor = Ingestor(config, self.tables, self.assembler, self.auth)
        self._retention_task: asyncio.Task[None] | None = None
        self.app = self._build_app()

    def add_listener(self, listener: Listener) -> None:
        """Called with every batch of traces the server stores (the monitors score them)."""
        self.assembler.add_listener(listener)

    # ------------------------------------------------------------------ lifecycle

    async def startup(self) -> None:
        # A server takes writes: its store exists from the start (`costar server traces` and the
        # token commands can open it before the first span arrives).
        await asyncio.to_thread(self.tables.store.create_if_missing)
        if self.config.assembly == "process":  # the assembler process, which writes most, checkpoints
            self.tables.store.defer_checkpoints()
        else:
            self.tables.store.checkpoint_in_background()
        self.recovered_spans = await asyncio.to_thread(self.assembler.recover)
        if self.recovered_spans:
            log.info("recovered %d span(s) from the write-ahead log", self.recovered_spans)
        self.assembler.start()
        self.ingestor.committer.start()
        if self.monitors is not None:  # its first sweep picks up what a previous run left unscored
            await self.monitors.start()
        if self.config.retention_interval > 0 and any(not r.retention.empty for r in self.config.projects.values()):
            self._retention_task = asyncio.create_task(self._retention_loop(), name="costar-retention")
        self.ready = True

    async def shutdown(self) -> None:
        self.ready = False
        if self._retention_task is not None:
            self._retention_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._retention_task
        await self.ingestor.committer.stop()
        try:
            await asyncio.to_thread(self.assembler.stop)
        except Exception as exc:  # what could not be stored stays in the write-ahead log
            log.error("stopping: some traces stay in the write-ahead log for the next start: %s", exc)
        if self.monitors is not None:  # what is not scored now stays pending for the next start
            await self.monitors.stop(drain=True, timeout=10.0)

    async def _retention_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.retention_interval)
            try:
                await asyncio.to_thread(prune, self.tables, self.config)
                self.retention_runs += 1
            except Exception as exc:
                log.error("retention failed (it is tried again in %gs): %s", self.config.retention_interval, exc)

    def metrics(self) -> dict[str, Any]:
        return server_metrics(self)

    # ------------------------------------------------------------------ the app

    def _build_app(self) -> FastAPI:
        @contextlib.asynccontextmanager
        async def lifespan(app: FastAPI) -> AsyncIterator[None]:
            await self.startup()
            try:
                yield
            finally:
                await self.shutdown()

        # No Swagger page: FastAPI's loads its script from a CDN, which would run on this origin with the
        # session of whoever opens it. The OpenAPI description is served; any viewer can read it.
        app = FastAPI(title="coSTAR server", version=self.version, lifespan=lifespan, docs_url=None,
                      openapi_url="/api/openapi.json", redoc_url=None)

        @app.post("/v1/traces", include_in_schema=False)
        async def ingest(request: Request) -> Response:
            if not self.ready:
                return JSONResponse({"code": 503, "message": "the server is starting"}, status_code=503,
                                    headers={"Retry-After": "1"})
            return await self.ingestor.handle(request)

        @app.get("/healthz", include_in_schema=False)
        async def healthz() -> dict[str, str]:
            return {"status": "ok"}

        @app.get("/readyz", include_in_schema=False)
        async def readyz() -> Response:
            if not self.ready:
                return JSONResponse({"status": "starting"}, status_code=503)
            try:
                await asyncio.to_thread(self.tables.pending_counts)
            except Exception as exc:
                # The probe needs no token: the error (a database's host and user) goes to the log only.
                log.warning("readiness: the store does not answer: %s", exc)
                return JSONResponse({"status": "store unavailable", "detail": type(exc).__name__}, status_code=503)
            return JSONResponse({"status": "ready"})

        @app.get("/metrics", include_in_schema=False)
        async def metrics(request: Request) -> Response:
            if self.auth.required:
                from costar.server.auth import AuthFailure

                try:
                    await asyncio.to_thread(self.auth.check, request.headers.get("authorization"), "api")
                except AuthFailure as exc:
                    return PlainTextResponse(exc.message, status_code=exc.status)
            return PlainTextResponse(prometheus_text(self.metrics()), media_type="text/plain; version=0.0.4")

        app.include_router(build_router(self))

        @app.middleware("http")
        async def api_headers(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
            response = await call_next(request)
            # Trace content in JSON must never be sniffed as HTML, nor kept by a shared cache.
            response.headers.setdefault("X-Content-Type-Options", "nosniff")
            if request.url.path.startswith("/api/"):
                response.headers.setdefault("Cache-Control", "no-store")
            return response

        if not self.auth.required:
            # No tokens: only this machine may call, and a page elsewhere rebinding its DNS name to
            # 127.0.0.1 must not either (its requests carry its own Host name). Covers ingest, the API
            # and the web pages mounted later.
            app.add_middleware(HostGuard, names=loopback_names(self.config.host))
        return app

