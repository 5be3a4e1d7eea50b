"""In-process agents that emit OpenTelemetry through their own tracer provider: coSTAR records their
spans without their exporter pointing at it, and their exporter keeps receiving them."""

from __future__ import annotations

from pathlib import Path

import pytest

from costar.testing import ScriptedModelServer
from costar.trace.model import SpanKind
from tests.frameworks.matrix import assert_matrix_trace, need, rules, run_matrix

AGENT = {"type": "python", "target": "pydantic_ai_in_process:run", "cwd": str(Path(__file__).parent / "agents")}


def test_pydantic_ai_in_process_with_its_own_tracer_provider(tmp_path: Path) -> None:
    need("pydantic_ai")
    with ScriptedModelServer(rules()) as srv:
        results = run_matrix(AGENT, tmp_path / ".costar", {"MODEL_BASE_URL": srv.base_url})
    for trace, verdicts in results:
        assert_matrix_trace(trace, verdicts, inferred=False)
        agent = [s for s in trace.spans if s.kind == SpanKind.AGENT and s.name.startswith("invoke_agent")]
        assert len(agent) == 1, [s.name for s in trace.spans]
        assert agent[0].parent_id == trace.root_spans()[0].span_id
        inside = {s.parent_id for s in trace.spans if s.kind in (SpanKind.LLM, SpanKind.TOOL)}
        assert inside == {agent[0].span_id}
        # Pydantic AI's chat spans and coSTAR's SDK capture describe the same calls: merged, not doubled.
        assert all(s.attributes.get("costar.merged") == ["sdk"] for s in trace.spans if s.kind == SpanKind.LLM)

    import pydantic_ai_in_process

    exported = pydantic_ai_in_process.EXPORTED.get_finished_spans()
    assert len([s for s in exported if s.name.startswith("invoke_agent")]) == 2
    assert len([s for s in exported if s.name.startswith("execute_tool")]) == 6


def test_capture_otel_off_records_only_the_sdk_calls(tmp_path: Path) -> None:
    need("pydantic_ai")
    with ScriptedModelServer(rules()) as srv:
        results = run_matrix({**AGENT, "capture_otel": False}, tmp_path / ".costar", {"MODEL_BASE_URL": srv.base_url})
    for trace, verdicts in results:
        assert not [s for s in trace.spans if s.name.startswith("invoke_agent")]
        assert_matrix_trace(trace, verdicts, inferred=True)


@pytest.mark.parametrize("mode", ["plain", "stream-helper"])
def test_anthropic_sdk_own_spans_merge_with_sdk_capture(mode: str, tmp_path: Path) -> None:
    need("anthropic")
    with ScriptedModelServer(rules()) as srv:
        results = run_matrix({"type": "python", "target": "anthropic_loop:run_traced", "cwd": AGENT["cwd"]},
                             tmp_path / ".costar", {"ANTHROPIC_BASE_URL": srv.anthropic_base_url, "LOOP_MODE": mode})
    for trace, verdicts in results:
        # Four model calls, each seen twice (the SDK's CLIENT span and coSTAR's capture), stored once.
        assert_matrix_trace(trace, verdicts, inferred=True, provider_model="claude-haiku-4-5")
        llm = [s for s in trace.spans if s.kind == SpanKind.LLM]
        assert all(s.attributes.get("costar.merged") for s in llm), [s.attributes.get("costar.merged") for s in llm]


@pytest.mark.slow
def test_anthropic_sdk_own_spans_exported_by_a_command_agent_merge_with_sdk_capture(tmp_path: Path) -> None:
    need("anthropic")
    with ScriptedModelServer(rules()) as srv:
        results = run_matrix({"type": "command", "command": ["python", "anthropic_loop.py"], "cwd": AGENT["cwd"],
                              "env": {"ANTHROPIC_OTEL": "1"}},
                             tmp_path / ".costar", {"ANTHROPIC_BASE_URL": srv.anthropic_base_url})
    for trace, verdicts in results:
        assert_matrix_trace(trace, verdicts, inferred=True, provider_model="claude-haiku-4-5")
        llm = [s for s in trace.spans if s.kind == SpanKind.LLM]
        assert all(s.attributes.get("costar.merged") for s in llm), [s.attributes.get("costar.merged") for s in llm]
