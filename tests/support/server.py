"""Helpers for the server tests: OTLP batches made by the real OpenTelemetry SDK, a server in a
thread (in-process) or in a subprocess, and waiting on conditions with a deadline."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.support.cli import child_env, costar_cmd
from tests.support.waiting import wait_for

__all__ = ["OTEL_AGENT", "PROTOBUF", "ServerProcess", "agent_spans", "costar_cmd", "encode", "run_otel_agent",
           "server_process", "span_ids", "store_location", "stored_span_ids", "trace_ids", "wait_for"]

def agent_spans(n_traces: int = 1, *, service: str = "shop-agent", resource: dict[str, Any] | None = None,
                text: str = "Where is my order?", root: bool = True) -> list[ReadableSpan]:
    """Spans of ``n_traces`` agent runs (an agent span, a model call and a tool call each), recorded by
    the OpenTelemetry SDK. ``root=False`` leaves out each trace's root span."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": service, **(resource or {})}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("tests")
    for _ in range(n_traces):
        with tracer.start_as_current_span("invoke_agent shop") as agent:
            agent.set_attribute("gen_ai.operation.name", "invoke_agent")
            agent.set_attribute("input.value", text)
            with tracer.start_as_current_span("chat gpt-4.1-mini") as chat:
                chat.set_attribute("gen_ai.operation.name", "chat")
                chat.set_attribute("gen_ai.request.model", "gpt-4.1-mini")
                chat.set_attribute("gen_ai.usage.input_tokens", 120)
                chat.set_attribute("gen_ai.usage.output_tokens", 30)
                chat.set_attribute("gen_ai.input.messages", json.dumps(
                    [{"role": "user", "parts": [{"type": "text", "content": text}]}]))
            with tracer.start_as_current_span("execute_tool lookup_order") as tool:
                tool.set_attribute("gen_ai.operation.name", "execute_tool")
                tool.set_attribute("gen_ai.tool.name", "lookup_order")
            agent.set_attribute("output.value", "It has shipped.")
    provider.shutdown()
    spans = list(exporter.get_finished_spans())
    return spans if root else [s for s in spans if s.parent is not None]


def encode(spans: Sequence[ReadableSpan]) -> bytes:
    """OTLP/protobuf, exactly as the SDK's exporter encodes it."""
    return encode_spans(list(spans)).SerializeToString()


def span_ids(spans: Sequence[ReadableSpan]) -> set[str]:
    return {format(s.context.span_id, "016x") for s in spans}


def trace_ids(spans: Sequence[ReadableSpan]) -> set[str]:
    return {format(s.context.trace_id, "032x") for s in spans}


PROTOBUF = {"Content-Type": "application/x-protobuf"}


OTEL_AGENT = """
import json, sys
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

provider = TracerProvider(resource=Resource.create({"service.name": "weather-agent"}))
provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
trace.set_tracer_provider(provider)
tracer = trace.get_tracer("weather-agent")
broken = sys.argv[1:2] == ["--broken"]
for city in sys.argv[2 if broken else 1:]:
    with tracer.start_as_current_span("invoke_agent weather") as agent:
        agent.set_attribute("gen_ai.operation.name", "invoke_agent")
        agent.set_attribute("gen_ai.agent.name", "weather")
        with tracer.start_as_current_span("chat gpt-4.1-mini") as chat:
            chat.set_attribute("gen_ai.operation.name", "chat")
            chat.set_attribute("gen_ai.request.model", "gpt-4.1-mini")
            chat.set_attribute("gen_ai.usage.input_tokens", 50)
            chat.set_attribute("gen_ai.usage.output_tokens", 12)
            chat.set_attribute("gen_ai.input.messages", json.dumps(
                [{"role": "user", "parts": [{"type": "text", "content": f"Weather in {city}?"}]}]))
            chat.set_attribute("gen_ai.output.messages", json.dumps([{"role": "assistant", "parts": [
                {"type": "tool_call", "id": "c1", "name": "get_weather", "arguments": {"city": city}}]}]))
        with tracer.start_as_current_span("execute_tool get_weather") as tool:
            tool.set_attribute("gen_ai.operation.name", "execute_tool")
            tool.set_attribute("gen_ai.tool.name", "get_weather")
            tool.set_attribute("gen_ai.tool.call.id", "c1")
            tool.set_attribute("gen_ai.tool.call.result", "error" if broken else "rainy")
        answer = "Sorry, I could not get the weather." if broken else f"It is rainy in {city}."
        agent.set_attribute("output.value", answer)
provider.shutdown()
"""
"""A weather agent instrumented with the OpenTelemetry SDK and its own OTLP exporter, unmodified:
one trace per city on its command line (``--broken`` first: its tool fails and it apologises)."""


def run_otel_agent(folder: Path, url: str, cities: Sequence[str], *, broken: bool = False, **env: str) -> None:
    """Run :data:`OTEL_AGENT` in ``folder`` against the OTLP endpoint ``url`` until it has exported."""
    (folder / "agent.py").write_text(OTEL_AGENT)
    res = subprocess.run([sys.executable, "agent.py", *(["--broken"] if broken else []), *cities], cwd=folder,
                         capture_output=True, text=True, timeout=120,
                         env=child_env(OTEL_EXPORTER_OTLP_ENDPOINT=url, OTEL_BSP_SCHEDULE_DELAY="100",
                                       OTEL_TRACES_EXPORTER="otlp", **env))
    assert res.returncode == 0, res.stderr[-2000:]


def stored_span_ids(store: Any) -> set[str]:
    """The ids of every span stored in ``store``."""
    out: set[str] = set()
    for t in store.get_traces(store.trace_ids()):
        out |= {s.span_id for s in t.spans}
    return out


def store_location(store: Any) -> str:
    """How a server process opens the test's store: its folder or its URL."""
    return str(store.root) if store.backend == "sqlite" else store.url


# --------------------------------------------------------------------------- a server in a subprocess


class ServerProcess:
    """``costar server --port 0`` in its own process (group); ``url`` once it listens."""

    def __init__(self, store: str, cwd: Path, *, args: Sequence[str] = (), env: dict[str, str] | None = None) -> None:
        self.store = store
        self.cwd = cwd
        self.args = list(args)
        self.env = {**os.environ, "NO_COLOR": "1", **(env or {})}
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""
        self.log = cwd / f"server-{time.monotonic_ns()}.log"

    def start(self, timeout: float = 60.0) -> ServerProcess:
        self._log_file = open(self.log, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([*costar_cmd(), "server", "--port", "0", "--store", self.store, *self.args],
                                     cwd=self.cwd, env=self.env, stdout=subprocess.PIPE, stderr=self._log_file,
                                     text=True, start_new_session=True)
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        line = ""
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line and self.proc.poll() is not None:
                break
            m = re.search(r"listening on (http://\S+)", line)
            if m:
                self.url = m.group(1)
                return self
        self.kill()
        raise AssertionError(f"costar server did not start: {line!r} {self.log.read_text()[-2000:]}")

    def kill(self) -> None:
        """kill -9, the whole process group."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)
        self._close()

    def stop(self) -> None:
        """SIGTERM and wait for a clean exit."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(30)
        self._close()

    def _close(self) -> None:
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()
        if getattr(self, "_log_file", None) is not None:
            self._log_file.close()

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return httpx.get(self.url + path, timeout=30, **kw)


@contextmanager
def server_process(store: str, cwd: Path, **kw: Any) -> Iterator[ServerProcess]:
    srv = ServerProcess(store, cwd, **kw).start()
    try:
        yield srv
    finally:
        srv.stop()
