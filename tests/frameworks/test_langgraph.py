"""LangGraph (``langgraph`` + ``langchain-openai``) instrumented with OpenInference, as a command agent.

Both OpenInference and SDK capture see every model call: each is stored once (the OpenInference
span, completed with the captured cost). OpenInference records a one-argument tool's input as the
bare value and the failing call without its result or call id: coSTAR completes those from the
model's messages instead of inferring a second span."""

from __future__ import annotations

from pathlib import Path

import pytest

from costar.testing import ScriptedModelServer
from tests.frameworks.matrix import AGENTS, assert_matrix_trace, need, rules, run_matrix, tool_spans


@pytest.mark.slow
@pytest.mark.parametrize("stream", ["0", "1"])
def test_langgraph_with_openinference(stream: str, tmp_path: Path) -> None:
    need("langgraph", "langchain_openai", "openinference.instrumentation.langchain")
    with ScriptedModelServer(rules()) as srv:
        results = run_matrix({"type": "command", "command": ["python", "langgraph_agent.py"], "cwd": str(AGENTS),
                              "env": {"LANGGRAPH_STREAM": stream}},
                             tmp_path / ".costar", {"MODEL_BASE_URL": srv.base_url})
    for trace, verdicts in results:
        assert_matrix_trace(trace, verdicts, inferred=False)
        assert all(s.attributes.get("openinference.span.kind") == "TOOL" for s in tool_spans(trace))
        llm = [s for s in trace.spans if s.kind.value == "LLM"]
        assert all(s.attributes.get("costar.merged") == ["sdk"] for s in llm)  # one span per call, not two
