"""MCP use by an agent coSTAR cannot instrument (any language): read from its OpenTelemetry spans.

The agent below stands in for a non-Python agent: it uses no SDK coSTAR wraps, only the
OpenTelemetry SDK, and emits what docs/MCP.md asks for: a ``tools/list`` span with the server's name
and version and the listed definitions, an MCP client span per ``tools/call`` (the semantic
conventions' attributes), and, as a server exporting to the same collector would, the MCP server's
span beneath it. The stored trace has one TOOL span per call and the definitions with fingerprints.
"""

from __future__ import annotations

import asyncio
import sys
import textwrap
from pathlib import Path

from costar.run.agents import make_agent
from costar.run.harness import Harness, HarnessOptions
from costar.scenario import Scenario
from costar.store.base import Run
from costar.store.sqlite import SQLiteStore
from costar.trace.model import SpanKind, StatusCode, TraceStatus
from costar.trace.tool_definition import tool_fingerprint

OTEL_MCP_AGENT = '''
import json
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

provider = TracerProvider()
provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
trace.set_tracer_provider(provider)
tracer = trace.get_tracer("weather-agent-in-any-language")
WEATHER = {"type": "function", "name": "get_weather", "description": "Current weather in a city.",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
MCP = {"mcp.protocol.version": "2025-06-18", "network.transport": "tcp", "server.address": "weather.internal",
       "server.port": 8000, "costar.mcp.server.name": "weather", "costar.mcp.server.version": "3.1.0"}

def call(city, request_id, result=None, error=None):
    attrs = {**MCP, "mcp.method.name": "tools/call", "gen_ai.operation.name": "execute_tool",
             "gen_ai.tool.name": "get_weather", "jsonrpc.request.id": request_id,
             "gen_ai.tool.call.arguments": json.dumps({"city": city})}
    with tracer.start_as_current_span("tools/call get_weather", kind=SpanKind.CLIENT, attributes=attrs) as client:
        # The MCP server's span (it continued the trace from params._meta and exports here too).
        with tracer.start_as_current_span("tools/call get_weather", kind=SpanKind.SERVER, attributes=attrs) as server:
            if error:
                for s in (server, client):
                    s.set_attribute("error.type", "tool_error")
                    s.set_status(Status(StatusCode.ERROR, error))
            else:
                server.set_attribute("gen_ai.tool.call.result", json.dumps(result))
                client.set_attribute("gen_ai.tool.call.result", json.dumps(result))

with tracer.start_as_current_span("invoke_agent weather", attributes={"gen_ai.operation.name": "invoke_agent"}):
    with tracer.start_as_current_span("tools/list", kind=SpanKind.CLIENT, attributes={
            **MCP, "mcp.method.name": "tools/list", "gen_ai.tool.definitions": json.dumps([WEATHER])}):
        pass
    call("Paris", "2", result={"sky": "rain"})
    call("Atlantis", "3", error="no such city")
provider.shutdown()
print("It rains in Paris.")
'''


def test_mcp_spans_from_opentelemetry_become_tool_spans_and_tool_definitions(tmp_path: Path) -> None:
    (tmp_path / "agent.py").write_text(textwrap.dedent(OTEL_MCP_AGENT))
    store = SQLiteStore(tmp_path / ".costar")
    try:
        agent = make_agent({"type": "command", "command": [sys.executable, "agent.py"], "cwd": str(tmp_path),
                            "capture_sdk": False})
        run = Run(agent=agent.info)
        store.create_run(run)
        res = asyncio.run(Harness(agent, store, HarnessOptions()).run([Scenario(id="w", prompt="Weather?")], run))
        trace = store.get_trace(res.trace_ids[0])
    finally:
        store.close()
    assert trace.status == TraceStatus.OK, trace.error

    tools = sorted((s for s in trace.spans if s.kind == SpanKind.TOOL), key=lambda s: s.start_ns)
    assert len(tools) == 2  # client and server span of each call fold into one
    assert trace.totals.tool_calls == 2
    paris, atlantis = tools
    assert paris.attributes["gen_ai.tool.call.arguments"] == {"city": "Paris"}
    assert paris.attributes["gen_ai.tool.call.result"] == {"sky": "rain"}
    assert paris.attributes["costar.mcp.server.name"] == "weather"
    assert paris.attributes["costar.merged"] == ["mcp"]
    assert paris.status.code != StatusCode.ERROR
    assert atlantis.status.code == StatusCode.ERROR
    assert atlantis.status.message == "no such city"
    assert atlantis.attributes["error.type"] == "tool_error"

    assert len(trace.tools) == 1
    weather = trace.tools[0]
    assert (weather.name, weather.server, weather.server_version, weather.source) == (
        "get_weather", "weather", "3.1.0", "mcp")
    assert weather.input_schema["required"] == ["city"]
    assert weather.fingerprint == tool_fingerprint("get_weather", "Current weather in a city.",
                                                   weather.input_schema, None)
