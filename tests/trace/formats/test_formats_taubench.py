"""All 200 real tau-bench runs import: scenarios, trials, rewards and tool calls survive."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import jsonschema
import pytest

from costar.trace.formats.taubench import import_taubench
from costar.trace.genai import parse_json
from costar.trace.model import SpanKind, Trace
from costar.verdict import Verdict, VerdictSource
from tests.support.paths import EXTERNAL

PATH = EXTERNAL / "tau-bench" / "gpt-4o-airline.json"


@pytest.fixture(scope="module")
def raw() -> list[dict[str, Any]]:
    return json.loads(PATH.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def imported() -> tuple[list[Trace], list[Verdict]]:
    return import_taubench(PATH)


def test_every_run_becomes_a_trace_and_a_verdict(raw: list[dict[str, Any]],
                                                 imported: tuple[list[Trace], list[Verdict]]) -> None:
    traces, verdicts = imported
    assert len(traces) == len(verdicts) == len(raw) == 200
    per_scenario = Counter(t.scenario_id for t in traces)
    assert len(per_scenario) == 50
    assert set(per_scenario.values()) == {4}
    assert {(t.scenario_id, t.trial) for t in traces} == {
        (f"tau-bench/airline/task-{r['task_id']}", r["trial"]) for r in raw}
    assert len({t.trace_id for t in traces}) == 200
    assert all(t.run_id is None for t in traces)
    assert all(t.metadata["costar.synthetic_timing"] is True for t in traces)


def test_rewards_become_verdicts(raw: list[dict[str, Any]], imported: tuple[list[Trace], list[Verdict]]) -> None:
    traces, verdicts = imported
    for run, trace, verdict in zip(raw, traces, verdicts, strict=True):
        assert verdict.name == "tau-bench.reward"
        assert verdict.trace_id == trace.trace_id
        assert verdict.value == float(run["reward"])
        assert isinstance(verdict.value, float)
        assert verdict.passed is (run["reward"] == 1.0)
        assert (verdict.source, verdict.source_id) == (VerdictSource.CODE, "tau-bench")
        assert verdict.rationale.startswith("reward ")
        assert trace.metadata["reward"] == run["reward"]
        assert trace.metadata["reward_info"] == run["info"].get("reward_info")
        assert trace.metadata["instruction"] == run["info"]["task"]["instruction"]
    assert sum(bool(v.passed) for v in verdicts) == sum(r["reward"] == 1.0 for r in raw) == 84
    failed_outputs = next(v for v, r in zip(verdicts, raw, strict=True)
                          if "r_outputs" in ((r["info"].get("reward_info") or {}).get("info") or {})
                          and r["reward"] == 0)
    assert "missing outputs" in failed_outputs.rationale


def _answers(traj: list[dict[str, Any]]) -> list[str | None]:
    """For each tool call in order, the content of the first later tool message with its id.

    tau-bench reuses call ids within a run, so a lookup by id alone would pair the wrong result.
    """
    out: list[str | None] = []
    used: set[int] = set()
    for i, m in enumerate(traj):
        for call in m.get("tool_calls") or []:
            j = next((j for j in range(i + 1, len(traj)) if j not in used and traj[j]["role"] == "tool"
                      and traj[j]["tool_call_id"] == call["id"]), None)
            if j is not None:
                used.add(j)
            out.append(None if j is None else traj[j]["content"])
    return out


def test_tool_calls_and_llm_calls_match_the_raw_messages(raw: list[dict[str, Any]],
                                                         imported: tuple[list[Trace], list[Verdict]]) -> None:
    traces, _ = imported
    for run, trace in zip(raw, traces, strict=True):
        traj = run["traj"]
        raw_calls = [c for m in traj for c in m.get("tool_calls") or []]
        tool_spans = trace.spans_of_kind(SpanKind.TOOL)
        assert len(tool_spans) == len(raw_calls) == trace.totals.tool_calls
        assert [s.attributes["gen_ai.tool.call.id"] for s in tool_spans] == [c["id"] for c in raw_calls]
        answers = _answers(traj)
        for span, call, answer in zip(tool_spans, raw_calls, answers, strict=True):
            assert span.attributes["gen_ai.tool.call.arguments"] == json.loads(call["function"]["arguments"])
            if answer is None:
                assert "gen_ai.tool.call.result" not in span.attributes
            else:
                assert span.attributes["gen_ai.tool.call.result"] == parse_json(answer)
        assert len(trace.spans_of_kind(SpanKind.LLM)) == sum(m["role"] == "assistant" for m in traj)
        assert trace.input == next(m["content"] for m in traj if m["role"] == "user")
        assert trace.metadata["transcript_messages"] == len(traj)


def test_llm_inputs_are_deltas_that_cover_the_conversation_once(raw: list[dict[str, Any]],
                                                                imported: tuple[list[Trace], list[Verdict]]) -> None:
    traces, _ = imported
    for run, trace in zip(raw, traces, strict=True):
        traj = run["traj"]
        llm = trace.spans_of_kind(SpanKind.LLM)
        assert llm[0].attributes["gen_ai.input.messages"][0]["role"] == "system"
        assert all(s.attributes["costar.messages.delta"] is True for s in llm)
        assert all(s.attributes["gen_ai.input.messages"][0]["role"] != "system" for s in llm[1:])
        last_assistant = max(i for i, m in enumerate(traj) if m["role"] == "assistant")
        seen = sum(len(s.attributes["gen_ai.input.messages"]) + 1 for s in llm)
        assert seen + len(traj) - last_assistant - 1 == len(traj)


def test_messages_follow_the_otel_schemas(imported: tuple[list[Trace], list[Verdict]]) -> None:
    semconv = EXTERNAL / "otel-genai-semconv"
    inputs = jsonschema.Draft202012Validator(json.loads((semconv / "gen-ai-input-messages.json").read_text()))
    outputs = jsonschema.Draft202012Validator(json.loads((semconv / "gen-ai-output-messages.json").read_text()))
    for trace in imported[0][:20]:
        for span in trace.spans_of_kind(SpanKind.LLM):
            inputs.validate(span.attributes["gen_ai.input.messages"])
            outputs.validate(span.attributes["gen_ai.output.messages"])


def test_reimport_is_idempotent(imported: tuple[list[Trace], list[Verdict]]) -> None:
    again, _ = import_taubench(PATH)
    assert [t.trace_id for t in again] == [t.trace_id for t in imported[0]]
    assert again[7] == imported[0][7]
