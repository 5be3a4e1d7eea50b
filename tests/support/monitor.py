"""Helpers for the monitor tests: traces at chosen times, and a webhook receiver on loopback."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from costar._util.server import BackgroundServer
from costar.trace.model import Span, SpanKind, Trace, TraceStatus


def make_trace(trace_id: str, *, at: float, output: str = "ok", project: str | None = "shop",
               service: str | None = "bot", status: TraceStatus = TraceStatus.OK, agent: str = "support",
               version: str | None = "2.0", spans: Sequence[Span] = (), input: Any = None,
               tokens: int = 0, cost: float = 0.0, latency: float = 0.0) -> Trace:
    """A production-like trace that ended at ``at`` (Unix seconds)."""
    metadata: dict[str, Any] = {}
    if project is not None:
        metadata["costar.project"] = project
    if service is not None:
        metadata["otel.resource"] = {"service.name": service, "deployment.environment": "prod"}
    end = int(at * 1e9)
    trace = Trace(trace_id=trace_id, start_ns=end - 1_000_000_000, end_ns=end, output=output, status=status,
                  input=input, metadata=metadata, spans=list(spans))
    trace.agent.name = agent
    trace.agent.version = version
    trace.totals.total_tokens = tokens
    trace.totals.cost_usd = cost
    trace.totals.latency_s = latency
    return trace


def span(trace_id: str, span_id: str, name: str, kind: SpanKind = SpanKind.AGENT, *, parent: str | None = None,
         at: float = 0.0, attributes: dict[str, Any] | None = None) -> Span:
    start = int(at * 1e9)
    return Span(trace_id=trace_id, span_id=span_id, parent_id=parent, name=name, kind=kind, start_ns=start,
                end_ns=start + 1000, attributes=attributes or {})


class WebhookReceiver:
    """A real HTTP server on 127.0.0.1 that records every JSON body posted to it. ``statuses`` are
    answered to the next requests in order (then 200)."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.attempts = 0
        self.statuses: list[int] = []
        self._lock = threading.Lock()
        app = FastAPI()

        @app.post("/hook")
        async def hook(request: Request) -> Response:
            body = await request.json()
            with self._lock:
                self.attempts += 1
                status = self.statuses.pop(0) if self.statuses else 200
                if status < 300:
                    self.received.append(body)
            if status >= 300:
                return JSONResponse({"error": "scripted failure"}, status_code=status)
            return JSONResponse({"ok": True})

        self._server = BackgroundServer(app)

    def __enter__(self) -> WebhookReceiver:
        self._server.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.stop()

    @property
    def url(self) -> str:
        return f"{self._server.url}/hook"

    def wait_for(self, predicate: Callable[[list[dict[str, Any]]], bool], timeout: float = 20.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                got = list(self.received)
            if predicate(got):
                return got
            time.sleep(0.05)
        raise AssertionError(f"the webhook did not receive what was expected within {timeout}s; got {got}")


NOW = 1_800_000_000.0
"""The tests' "now" (Unix seconds), far from any real clock."""


class Clock:
    """A clock the test moves by hand (``clock.t += 60``)."""

    def __init__(self, t: float = NOW) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t
