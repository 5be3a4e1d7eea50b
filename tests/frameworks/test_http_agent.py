"""An agent behind an OpenAI-compatible HTTP endpoint (``type: http``), instrumented with OpenTelemetry.

coSTAR sends each request a ``traceparent`` and listens where the server exports
(``otlp_receiver``); the server's own spans (agent, model calls, tool runs) join the trial's trace
under the exchange, recorded as an AGENT span."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from costar.testing import ScriptedModelServer
from costar.trace.model import SpanKind
from tests.frameworks.matrix import AGENTS, assert_matrix_trace, rules, run_matrix


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def model() -> Iterator[ScriptedModelServer]:
    with ScriptedModelServer(rules()) as srv:
        yield srv


def _start_server(model_url: str, otlp_port: int) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    env = {**os.environ, "MODEL_BASE_URL": model_url, "PYTHONPATH": str(AGENTS),
           "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{otlp_port}", "OTEL_BSP_SCHEDULE_DELAY": "100"}
    proc = subprocess.Popen([sys.executable, str(AGENTS / "http_agent_server.py"), str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the agent server exited: {proc.stderr.read().decode()[-2000:] if proc.stderr else ''}")
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("the agent server did not start within 30 s")


@pytest.mark.slow
def test_http_agent_with_opentelemetry(model: ScriptedModelServer, tmp_path: Path) -> None:
    otlp_port = _free_port()
    proc, url = _start_server(model.base_url, otlp_port)
    try:
        results = run_matrix({"type": "http", "url": f"{url}/v1", "model": "support-agent",
                              "otlp_receiver": f"127.0.0.1:{otlp_port}"}, tmp_path / ".costar", {})
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    for trace, verdicts in results:
        assert_matrix_trace(trace, verdicts, inferred=False)
        exchange = [s for s in trace.spans if s.name == "invoke_agent support-agent"]
        assert len(exchange) == 1
        assert exchange[0].kind == SpanKind.AGENT
        server_agent = [s for s in trace.spans if s.name == "invoke_agent support"]
        assert len(server_agent) == 1
        assert server_agent[0].parent_id == exchange[0].span_id
