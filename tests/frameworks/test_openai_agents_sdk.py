"""The OpenAI Agents SDK, over the Responses API (its default) and chat completions, its own tracing on and off.

Tracing on: coSTAR records the SDK's agent and tool spans (the tool span carries the error the
SDK attached to the failing call), and infers nothing twice. Tracing off: the tool runs are
inferred from the model's messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from costar.testing import ScriptedModelServer
from costar.trace.model import SpanKind
from tests.frameworks.matrix import AGENTS, assert_matrix_trace, need, rules, run_matrix


@pytest.mark.slow
@pytest.mark.parametrize(("api", "tracing"), [("responses", "on"), ("responses", "off"),
                                              ("chat_completions", "on"), ("chat_completions", "off")])
def test_openai_agents_sdk(api: str, tracing: str, tmp_path: Path) -> None:
    need("agents")
    with ScriptedModelServer(rules()) as srv:
        results = run_matrix({"type": "command", "command": ["python", "agents_sdk_agent.py"], "cwd": str(AGENTS),
                              "env": {"AGENTS_API": api, "AGENTS_TRACING": tracing}},
                             tmp_path / ".costar", {"MODEL_BASE_URL": srv.base_url})
        assert {r.api for r in srv.requests} == {"responses" if api == "responses" else "openai"}
    for trace, verdicts in results:
        # The SDK redacts tool errors by default: the model is told "An error occurred while running
        # the tool", and its tool span carries "Error details are redacted".
        assert_matrix_trace(trace, verdicts, inferred=tracing == "off", failure_text=False)
        agents = [s for s in trace.spans if s.kind == SpanKind.AGENT and s.attributes.get("costar.capture")]
        assert len(agents) == (1 if tracing == "on" else 0)
        if tracing == "on":  # the SDK's tool spans and the model calls sit in its turns, under its agent span
            turns = {s.span_id for s in trace.spans if s.parent_id == agents[0].span_id}
            assert {s.parent_id for s in trace.spans if s.kind in (SpanKind.TOOL, SpanKind.LLM)} <= turns
