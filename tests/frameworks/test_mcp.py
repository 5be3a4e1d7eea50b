"""An agent calling the tools of a real MCP server (the official ``mcp`` SDK, stdio) from an ``openai`` SDK loop.

The MCP server is started by the agent, as stdio MCP servers are; its failing call comes back with
``isError`` and the server's error text, which is what the model sees. coSTAR's MCP capture records
each call as a TOOL span (the real execution: the model's view of the same call adds no second
span) and the tools the agent listed, with their fingerprints."""

from __future__ import annotations

from pathlib import Path

import pytest

from costar.testing import ScriptedModelServer
from costar.trace.tool_definition import tool_fingerprint
from tests.frameworks.matrix import AGENTS, assert_matrix_trace, need, rules, run_matrix, tool_spans


@pytest.mark.slow
def test_agent_calling_mcp_server_tools(tmp_path: Path) -> None:
    need("mcp")
    with ScriptedModelServer(rules()) as srv:
        results = run_matrix({"type": "command", "command": ["python", "mcp_agent.py"], "cwd": str(AGENTS)},
                             tmp_path / ".costar", {"MODEL_BASE_URL": srv.base_url})
    for trace, verdicts in results:
        # mcp 2 masks a tool's exception text ("Error executing tool list_orders").
        assert_matrix_trace(trace, verdicts, inferred=False, failure_text=False)
        tools = tool_spans(trace)
        assert {s.attributes["costar.capture"] for s in tools} == {"mcp"}
        assert {s.attributes["costar.mcp.server.name"] for s in tools} == {"shop"}
        assert {s.attributes["mcp.method.name"] for s in tools} == {"tools/call"}
        assert tools[1].attributes["error.type"] == "tool_error"
        # The model's call ids reached the MCP spans (they covered the model's requests).
        assert all(str(s.attributes.get("gen_ai.tool.call.id", "")).startswith("call_") for s in tools)

        assert sorted(d.name for d in trace.tools) == ["list_orders", "lookup_customer"]
        lookup = next(d for d in trace.tools if d.name == "lookup_customer")
        assert (lookup.server, lookup.source) == ("shop", "mcp")
        assert lookup.description == "Look up a customer by id."
        assert lookup.input_schema["required"] == ["customer_id"]
        assert lookup.fingerprint == tool_fingerprint(lookup.name, lookup.description, lookup.input_schema,
                                                      lookup.output_schema)
        assert tools[0].attributes["costar.tool.fingerprint"] == lookup.fingerprint
