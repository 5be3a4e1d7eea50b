"""Both real SWE-agent trajectory shapes import as step CHAIN spans with LLM and TOOL children."""

from __future__ import annotations

import json
from typing import Any

from costar.trace.formats.sweagent import import_sweagent, sweagent_from_data
from costar.trace.model import SpanKind, Trace, TraceStatus
from tests.support.paths import EXTERNAL

SWE = EXTERNAL / "swe-agent"


def _load(name: str) -> dict[str, Any]:
    return json.loads((SWE / name).read_text(encoding="utf-8"))


def _steps(trace: Trace) -> list[tuple[str, list[SpanKind]]]:
    (root,) = trace.root_spans()
    return [(s.name, [c.kind for c in trace.children(s.span_id)]) for s in trace.children(root.span_id)]


def test_trajectory_shape() -> None:
    raw = _load("pydicom__pydicom-1458.traj")
    (trace,) = import_sweagent(SWE / "pydicom__pydicom-1458.traj")
    steps = raw["trajectory"]
    assert _steps(trace) == [(f"step {n}", [SpanKind.LLM, SpanKind.TOOL]) for n in range(1, len(steps) + 1)]
    assert all(s.kind == SpanKind.CHAIN for s in trace.spans if s.name.startswith("step "))
    tools = trace.spans_of_kind(SpanKind.TOOL)
    assert [t.attributes["gen_ai.tool.name"] for t in tools] == [s["action"].split()[0] for s in steps]
    assert [t.attributes["gen_ai.tool.call.result"] for t in tools] == [s["observation"] for s in steps]
    assert tools[0].attributes["gen_ai.tool.call.arguments"] == {"command": "create reproduce_bug.py"}
    llm = trace.spans_of_kind(SpanKind.LLM)
    assert llm[0].attributes["gen_ai.output.messages"][0]["parts"][0]["content"] == steps[0]["response"]
    # The raw history lines up with the steps, so each LLM call also knows what it was sent.
    assert llm[0].attributes["gen_ai.input.messages"][0]["role"] == "system"
    stats = raw["info"]["model_stats"]
    assert trace.totals.input_tokens == stats["tokens_sent"] == 122612
    assert trace.totals.output_tokens == stats["tokens_received"] == 1369
    assert trace.totals.cost_usd == stats["total_cost"]
    assert trace.totals.llm_calls == stats["api_calls"] == 12
    assert trace.totals.tool_calls == 12
    assert trace.output == raw["info"]["submission"]
    assert trace.metadata["exit_status"] == "submitted"
    assert trace.status == TraceStatus.OK
    assert trace.input is not None
    assert trace.input.startswith("We're currently solving the following issue")
    assert trace.spans[1].attributes["swe_agent.state"]["working_dir"] == "/pydicom__pydicom"


def test_function_calling_history_shape_without_info() -> None:
    raw = _load("function_calling_simple.traj")
    (trace,) = import_sweagent(SWE / "function_calling_simple.traj")
    assistants = [m for m in raw["history"] if m["role"] == "assistant"]
    assert _steps(trace) == [(f"step {n}", [SpanKind.LLM, SpanKind.TOOL]) for n in range(1, len(assistants) + 1)]
    tools = trace.spans_of_kind(SpanKind.TOOL)
    calls = [m["tool_calls"][0] for m in assistants]
    assert [t.attributes["gen_ai.tool.name"] for t in tools] == ["find_file", "open", "edit", "bash", "submit"]
    assert [t.attributes["gen_ai.tool.call.id"] for t in tools] == [c["id"] for c in calls]
    assert tools[0].attributes["gen_ai.tool.call.arguments"] == {"file_name": "missing_colon.py"}
    answers = {m["tool_call_ids"][0]: m["content"] for m in raw["history"] if m["role"] == "tool"}
    assert [t.attributes["gen_ai.tool.call.result"] for t in tools] == [answers[c["id"]] for c in calls]
    llm = trace.spans_of_kind(SpanKind.LLM)
    assert llm[1].attributes["gen_ai.input.messages"] == [{"role": "tool", "parts": [
        {"type": "tool_call_response", "id": calls[0]["id"], "response": answers[calls[0]["id"]]}]}]
    assert trace.output is None
    assert trace.metadata["exit_status"] is None
    assert (trace.totals.input_tokens, trace.totals.cost_usd, trace.totals.llm_calls) == (0, 0.0, 5)


def test_text_actions_in_history_without_trajectory() -> None:
    data = {"history": [
        {"role": "system", "content": "You fix bugs."},
        {"role": "user", "content": "Issue: tests fail"},
        {"role": "assistant", "content": "Run the tests.\n```\npytest -x\n```", "action": "pytest -x\n"},
        {"role": "user", "content": "1 failed"},
        {"role": "assistant", "content": "Done.", "action": "submit"},
    ], "info": {"exit_status": "exit_error", "model_stats": {"instance_cost": 0.5, "total_cost": 9.0,
                                                             "tokens_sent": 10, "tokens_received": 2}}}
    trace = sweagent_from_data(data, source="run.traj")
    tools = trace.spans_of_kind(SpanKind.TOOL)
    assert [(t.attributes["gen_ai.tool.name"], t.attributes.get("gen_ai.tool.call.result")) for t in tools] == [
        ("pytest", "1 failed"), ("submit", None)]
    assert "gen_ai.tool.call.result" not in tools[1].attributes  # nothing answered it
    assert trace.status == TraceStatus.ERROR
    assert trace.error == "exit_error"
    assert trace.totals.cost_usd == 0.5  # this instance's cost, not the whole batch's
    assert trace.scenario_id == "swe-agent/run"
