"""The plain ``anthropic`` SDK tool loop, plain and streamed (both streaming APIs), in-process and as a command agent."""

from __future__ import annotations

from pathlib import Path

import pytest

from costar.testing import ScriptedModelServer
from tests.frameworks.matrix import AGENTS, assert_matrix_trace, rules, run_matrix

MODES = ["plain", "stream", "stream-helper"]


@pytest.mark.parametrize("mode", MODES)
def test_anthropic_sdk_loop_in_process(mode: str, tmp_path: Path) -> None:
    with ScriptedModelServer(rules()) as srv:
        results = run_matrix({"type": "python", "target": "anthropic_loop:run", "cwd": str(AGENTS)},
                             tmp_path / ".costar", {"ANTHROPIC_BASE_URL": srv.anthropic_base_url, "LOOP_MODE": mode})
    for trace, verdicts in results:
        assert_matrix_trace(trace, verdicts, inferred=True, provider_model="claude-haiku-4-5")
        # The tool_result's own is_error flag is kept on the message part the inference reads.
        flags = [p.get("is_error") for s in trace.spans if s.kind.value == "LLM"
                 for m in s.attributes["gen_ai.input.messages"] for p in m["parts"] if p["type"] == "tool_call_response"]
        assert True in flags
        assert False in flags


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["plain", "stream-helper"])
def test_anthropic_sdk_loop_as_command_agent(mode: str, tmp_path: Path) -> None:
    with ScriptedModelServer(rules()) as srv:
        results = run_matrix({"type": "command", "command": ["python", "anthropic_loop.py"], "cwd": str(AGENTS)},
                             tmp_path / ".costar", {"ANTHROPIC_BASE_URL": srv.anthropic_base_url, "LOOP_MODE": mode})
    for trace, verdicts in results:
        assert_matrix_trace(trace, verdicts, inferred=True, provider_model="claude-haiku-4-5")
