"""The plain ``anthropic`` SDK tool loop, plain and streamed (both streaming APIs), in-process and as a command agent."""

from __future__ import annotations

from pathlib import Path

import pytest
from matrix import AGENTS, assert_matrix_trace, rules, run_matrix

from costar.testing import ScriptedModelServer

MODES = ["plain", "stream", "stream-helper"]


@pytest.mark.parametrize("mode", MODES)
def test_anthropic_sdk_loop_in_process(mode: str, tmp_path: Path) -> None:
    with ScriptedModelServer(rules()) as srv:
        results = run_matrix({"type": "python", "target": "anthropic_loop:run", "cwd": str(AGENTS)},
                             tmp_path / ".costar", {"ANTHROPIC_BASE_URL": srv.anthropic_base_url, "LOOP_MODE": mode})
    for trace, verdicts in results:
        assert_matrix_trace(trace, verdicts, inferred=True, provider_model="claude-haiku-4-5")
        failed = [s for s in trace.spans if s.status.code.value == "ERROR"][0]
        assert failed.attributes["error.type"] == "tool_error"  # from the tool_result's is_error flag


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["plain", "stream-helper"])
def test_anthropic_sdk_loop_as_command_agent(mode: str, tmp_path: Path) -> None:
    with ScriptedModelServer(rules()) as srv:
        results = run_matrix({"type": "command", "command": ["python", "anthropic_loop.py"], "cwd": str(AGENTS)},
                             tmp_path / ".costar", {"ANTHROPIC_BASE_URL": srv.anthropic_base_url, "LOOP_MODE": mode})
    for trace, verdicts in results:
        assert_matrix_trace(trace, verdicts, inferred=True, provider_model="claude-haiku-4-5")
