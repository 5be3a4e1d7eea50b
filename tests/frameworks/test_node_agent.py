"""A Node.js agent (``openai`` npm package) instrumented with the OpenTelemetry JS SDK, as a command agent.

Its packages are installed by ``scripts/setup --dev`` (``npm ci`` from the committed lock file); nothing
is fetched at run time. It emits its model calls as GenAI spans; its tool runs are inferred."""

from __future__ import annotations

from pathlib import Path

import pytest

from costar.testing import ScriptedModelServer
from costar.trace.model import SpanKind
from tests.frameworks.matrix import assert_matrix_trace, node_ready, rules, run_matrix

NODE_AGENT = Path(__file__).resolve().parent / "node_agent"


@pytest.mark.slow
def test_node_agent_with_opentelemetry_js(tmp_path: Path) -> None:
    node_ready(NODE_AGENT)
    with ScriptedModelServer(rules()) as srv:
        results = run_matrix({"type": "command", "command": ["node", "agent.mjs"], "cwd": str(NODE_AGENT)},
                             tmp_path / ".costar", {"MODEL_BASE_URL": srv.base_url})
    for trace, verdicts in results:
        assert_matrix_trace(trace, verdicts, inferred=True)
        agent = [s for s in trace.spans if s.name == "invoke_agent node-support"]
        assert len(agent) == 1
        assert agent[0].kind == SpanKind.AGENT
        assert {s.parent_id for s in trace.spans if s.kind in (SpanKind.LLM, SpanKind.TOOL)} == {agent[0].span_id}
