"""An agent calling the tools of a real MCP server (the official ``mcp`` SDK, stdio) from an ``openai`` SDK loop.

The MCP server is started by the agent, as stdio MCP servers are; its failing call comes back with
``isError`` and the server's error text, which is what the model (and coSTAR) sees."""

from __future__ import annotations

from pathlib import Path

import pytest
from matrix import AGENTS, assert_matrix_trace, need, rules, run_matrix

from costar.testing import ScriptedModelServer


@pytest.mark.slow
def test_agent_calling_mcp_server_tools(tmp_path: Path) -> None:
    need("mcp")
    with ScriptedModelServer(rules()) as srv:
        results = run_matrix({"type": "command", "command": ["python", "mcp_agent.py"], "cwd": str(AGENTS)},
                             tmp_path / ".costar", {"MODEL_BASE_URL": srv.base_url})
    for trace, verdicts in results:
        # mcp 2 masks a tool's exception text ("Error executing tool list_orders").
        assert_matrix_trace(trace, verdicts, inferred=True, failure_text=False)
