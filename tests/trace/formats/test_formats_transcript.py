"""OpenAI-style transcripts -> traces: delta inputs, tool spans, synthetic timing."""

from __future__ import annotations

import pytest

from costar.errors import ConfigError
from costar.trace.formats.transcript import transcript_to_trace, transcripts_from_data
from costar.trace.model import SpanKind

CONVERSATION = [
    {"role": "system", "content": "You are a travel agent."},
    {"role": "user", "content": "Weather in Paris and Rome?"},
    {"role": "assistant", "content": "Checking both.", "tool_calls": [
        {"id": "a", "type": "function", "function": {"name": "weather", "arguments": '{"city": "Paris"}'}},
        {"id": "b", "type": "function", "function": {"name": "weather", "arguments": "Rome"}}]},
    {"role": "tool", "tool_call_id": "b", "content": "sunny"},
    {"role": "tool", "tool_call_id": "a", "content": '{"sky": "rain"}'},
    {"role": "assistant", "content": "Paris: rain. Rome: sun.", "tool_calls": [
        {"id": "c", "type": "function", "function": {"name": "log", "arguments": "{}"}}]},
    {"role": "assistant", "content": "Anything else?"},
    {"role": "user", "content": "No, thanks!"},
]


def test_spans_follow_the_conversation() -> None:
    trace = transcript_to_trace(CONVERSATION, model="gpt-4o", agent="travel")
    (root,) = trace.root_spans()
    assert (root.kind, root.name) == (SpanKind.AGENT, "invoke_agent travel")
    assert all(s.parent_id == root.span_id for s in trace.spans if s is not root)
    llm = trace.spans_of_kind(SpanKind.LLM)
    assert [s.name for s in llm] == ["chat gpt-4o"] * 3
    assert [[m["role"] for m in s.attributes["gen_ai.input.messages"]] for s in llm] == [
        ["system", "user"], ["tool", "tool"], []]
    assert all(s.attributes["costar.messages.delta"] is True for s in llm)
    assert [s.attributes["gen_ai.output.messages"][0]["finish_reason"] for s in llm] == ["tool_call", "tool_call",
                                                                                        "stop"]
    tools = trace.spans_of_kind(SpanKind.TOOL)
    assert [(t.attributes["gen_ai.tool.call.id"], t.attributes["gen_ai.tool.call.arguments"],
             t.attributes.get("gen_ai.tool.call.result")) for t in tools] == [
        ("a", {"city": "Paris"}, {"sky": "rain"}), ("b", "Rome", "sunny"), ("c", {}, None)]
    assert "gen_ai.tool.call.result" not in tools[2].attributes  # never answered
    assert root.attributes["costar.messages.trailing"] == [
        {"role": "user", "parts": [{"type": "text", "content": "No, thanks!"}]}]


def test_trace_level_fields_and_synthetic_timing() -> None:
    trace = transcript_to_trace(CONVERSATION, scenario_id="travel/weather", trial=2)
    assert trace.input == "Weather in Paris and Rome?"
    assert trace.output == "Anything else?"
    assert (trace.scenario_id, trace.trial, trace.run_id) == ("travel/weather", 2, None)
    assert trace.metadata == {"transcript_messages": 8, "costar.synthetic_timing": True,
                              "costar.import": {"read": 8, "stored": 8, "unit": "messages", "skipped": 0, "notes": []}}
    assert (trace.totals.llm_calls, trace.totals.tool_calls, trace.totals.latency_s) == (3, 3, 0.0)
    starts = [s.start_ns for s in sorted(trace.spans, key=lambda s: s.start_ns)]
    assert starts == sorted(starts)
    assert all(s.end_ns is not None for s in trace.spans)
    assert all(s.end_ns >= s.start_ns for s in trace.spans)
    assert trace.end_ns > trace.start_ns
    tools = trace.spans_of_kind(SpanKind.TOOL)
    assert tools[0].end_ns is not None
    assert tools[1].end_ns is not None
    assert tools[0].end_ns > tools[1].end_ns  # "a" was answered after "b"


def test_same_transcript_gives_the_same_ids() -> None:
    assert transcript_to_trace(CONVERSATION) == transcript_to_trace(CONVERSATION)
    assert transcript_to_trace(CONVERSATION).trace_id != transcript_to_trace(CONVERSATION[:3]).trace_id


def test_transcript_shapes_and_errors() -> None:
    (one,) = transcripts_from_data({"messages": CONVERSATION, "model": "m1",
                                    "tools": [{"type": "function", "name": "weather"}]})
    first_llm = one.spans_of_kind(SpanKind.LLM)[0]
    assert first_llm.attributes["gen_ai.tool.definitions"] == [{"type": "function", "name": "weather"}]
    assert len(transcripts_from_data([CONVERSATION, CONVERSATION[:2]])) == 2
    with pytest.raises(ConfigError, match=r"^chat\.json: not a transcript"):
        transcripts_from_data({"rows": []}, "chat.json")
