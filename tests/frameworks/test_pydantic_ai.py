"""Pydantic AI instrumented with OpenTelemetry (GenAI spans over OTLP), as a command agent, streamed and not.

Pydantic AI emits the model calls and the tool runs itself (with call ids, and the ModelRetry of
the failing call as an error): SDK capture's copies of the model calls are merged into its spans,
and nothing is inferred."""

from __future__ import annotations

from pathlib import Path

import pytest

from costar.testing import ScriptedModelServer
from costar.trace.model import SpanKind
from tests.frameworks.matrix import AGENTS, assert_matrix_trace, need, rules, run_matrix


@pytest.mark.slow
@pytest.mark.parametrize("stream", ["0", "1"])
def test_pydantic_ai_with_opentelemetry(stream: str, tmp_path: Path) -> None:
    need("pydantic_ai")
    with ScriptedModelServer(rules()) as srv:
        results = run_matrix({"type": "command", "command": ["python", "pydantic_ai_agent.py"], "cwd": str(AGENTS),
                              "env": {"PYDANTIC_AI_STREAM": stream}},
                             tmp_path / ".costar", {"MODEL_BASE_URL": srv.base_url})
    for trace, verdicts in results:
        assert_matrix_trace(trace, verdicts, inferred=False)
        agent = [s for s in trace.spans if s.kind == SpanKind.AGENT and s.name.startswith("invoke_agent")]
        assert len(agent) == 1
        inside = {s.parent_id for s in trace.spans if s.kind in (SpanKind.LLM, SpanKind.TOOL)}
        assert inside == {agent[0].span_id}
        assert all(s.attributes.get("costar.merged") == ["sdk"] for s in trace.spans if s.kind == SpanKind.LLM)
