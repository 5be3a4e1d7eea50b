"""The plain ``openai`` SDK tool loop: sync and async, streamed and not, in-process and as a command agent.

Nothing in the agent knows coSTAR: its LLM spans come from SDK capture, its TOOL spans are
inferred from the tool calls the model requested and the results sent back."""

from __future__ import annotations

from pathlib import Path

import pytest

from costar.testing import ScriptedModelServer
from tests.frameworks.matrix import AGENTS, assert_matrix_trace, rules, run_matrix

MODES = ["sync", "sync-stream", "async", "async-stream"]
IN_PROCESS = {"sync": "run_sync", "sync-stream": "run_sync_stream", "async": "run_async",
              "async-stream": "run_async_stream"}


@pytest.mark.parametrize("mode", MODES)
def test_openai_sdk_loop_in_process(mode: str, tmp_path: Path) -> None:
    with ScriptedModelServer(rules()) as srv:
        results = run_matrix({"type": "python", "target": f"openai_loop:{IN_PROCESS[mode]}", "cwd": str(AGENTS)},
                             tmp_path / ".costar", {"MODEL_BASE_URL": srv.base_url})
    for trace, verdicts in results:
        assert_matrix_trace(trace, verdicts, inferred=True)


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
def test_openai_sdk_loop_as_command_agent(mode: str, tmp_path: Path) -> None:
    with ScriptedModelServer(rules()) as srv:
        results = run_matrix({"type": "command", "command": ["python", "openai_loop.py"], "cwd": str(AGENTS),
                              "env": {"LOOP_MODE": mode}},
                             tmp_path / ".costar", {"MODEL_BASE_URL": srv.base_url})
    for trace, verdicts in results:
        assert_matrix_trace(trace, verdicts, inferred=True)
