"""OpenAI-style message lists (assistant tool_calls answered by tool messages) -> Trace.

Each assistant message becomes an LLM span whose inputs are the messages since the previous
assistant message (``costar.messages.delta``; repeating the whole history on every call would
make a long transcript quadratic in size); the first LLM span therefore carries the system
prompt. Each tool call becomes a TOOL span whose result is the tool message answering its id
(status ERROR when that result reports an error, by the rule of ``costar.trace.tool_inference``).
All spans hang under one AGENT root span. Transcripts carry no clock, so timing is synthetic.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from costar.errors import ConfigError
from costar.trace.formats._common import (
    IMPORT_STATS,
    STEP_NS,
    SYNTHETIC_TIMING,
    SpanBuilder,
    import_stats,
    llm_attributes,
    llm_span_name,
    load_json,
    match_tool_results,
    stable_id,
    tool_attributes,
)
from costar.trace.genai import message_text, openai_messages_to_parts
from costar.trace.model import AgentInfo, Span, SpanKind, SpanStatus, StatusCode, Trace, compute_totals
from costar.trace.tool_inference import is_error_result


def _first_text(messages: Sequence[dict[str, Any]], role: str, *, last: bool = False) -> str | None:
    ordered = reversed(messages) if last else iter(messages)
    return next((t for m in ordered if m["role"] == role and (t := message_text(m))), None)


def _add_tool_spans(b: SpanBuilder, msg: dict[str, Any], at: int, root_id: str,
                    results: Mapping[tuple[int, int], tuple[int, Any]]) -> None:
    for j, call in enumerate(msg["parts"]):
        if call["type"] != "tool_call":
            continue
        answered = results.get((at, j))
        start = at * STEP_NS + STEP_NS // 2
        end = answered[0] * STEP_NS + STEP_NS // 2 if answered else start + STEP_NS // 4
        attrs = tool_attributes(call, answered[1] if answered else None, has_result=answered is not None)
        span = b.add(f"execute_tool {call['name']}", SpanKind.TOOL, start, end, attrs, parent_id=root_id)
        if answered is not None and is_error_result(answered[1]):  # e.g. tau-bench's "Error: ..." results
            span.status = SpanStatus(code=StatusCode.ERROR, message=str(answered[1])[:200])


def _root_attributes(agent: str, first_user: str | None, final: str | None,
                     trailing: list[dict[str, Any]]) -> dict[str, Any]:
    attrs: dict[str, Any] = {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": agent}
    if first_user is not None:
        attrs["input.value"] = first_user
    if final is not None:
        attrs["output.value"] = final
    if trailing:
        # Messages after the last assistant turn (e.g. the user's goodbye) belong to no LLM call.
        attrs["costar.messages.trailing"] = trailing
    return attrs


def transcript_to_trace(messages: Sequence[Any], *, trace_id: str | None = None, agent: str = "agent",
                        model: str | None = None, tools: list[Any] | None = None,
                        scenario_id: str | None = None, trial: int = 0,
                        metadata: Mapping[str, Any] | None = None) -> Trace:
    """One conversation -> one Trace (``run_id`` is left None for the caller to assign)."""
    msgs = openai_messages_to_parts(list(messages))
    trace_id = trace_id or stable_id("transcript", list(messages))
    b = SpanBuilder(trace_id)
    root_id = b.new_id()
    results = match_tool_results(msgs)
    prev = 0
    for i, m in enumerate(msgs):
        if m["role"] != "assistant":
            continue
        attrs = llm_attributes(msgs[prev:i], m, model=model)
        if prev == 0 and tools:
            attrs["gen_ai.tool.definitions"] = tools
        b.add(llm_span_name(model), SpanKind.LLM, i * STEP_NS, i * STEP_NS + STEP_NS // 2, attrs,
              parent_id=root_id)
        _add_tool_spans(b, m, i, root_id, results)
        prev = i + 1
    trailing = [m for m in msgs[prev:] if m["role"] != "tool"]
    # Tool messages after the last assistant turn are kept only as the result of a call they answer.
    answers = {at for at, _ in results.values()}
    lost_tools = [i for i in range(prev, len(msgs)) if msgs[i]["role"] == "tool" and i not in answers]
    not_messages = len(messages) - len(msgs)
    notes = []
    if not_messages:
        notes.append(f"{not_messages} item{'s are' if not_messages > 1 else ' is'} not a message (no object "
                     "with a 'role')")
    if lost_tools:
        notes.append(f"{len(lost_tools)} tool result{'s' if len(lost_tools) > 1 else ''} after the last assistant "
                     f"turn answer{'' if len(lost_tools) > 1 else 's'} no tool call")
    first_user, final = _first_text(msgs, "user"), _first_text(msgs, "assistant", last=True)
    end = len(msgs) * STEP_NS
    root = Span(trace_id=trace_id, span_id=root_id, name=f"invoke_agent {agent}", kind=SpanKind.AGENT,
                start_ns=0, end_ns=end, attributes=_root_attributes(agent, first_user, final, trailing))
    spans = [root, *b.spans]
    return Trace(trace_id=trace_id, scenario_id=scenario_id, trial=trial, agent=AgentInfo(name=agent),
                 input=first_user, output=final, start_ns=0, end_ns=end,
                 # Synthetic timing says nothing about latency, so it is reported as unknown (0).
                 totals=compute_totals(spans, 0.0), spans=spans,
                 metadata={**(metadata or {}), "transcript_messages": len(messages), SYNTHETIC_TIMING: True,
                           IMPORT_STATS: import_stats(len(messages), len(messages) - not_messages - len(lost_tools),
                                                      "messages", notes)})


def transcripts_from_data(data: Any, source: str = "<data>") -> list[Trace]:
    """A message list, ``{"messages": [...]}``, or a list of either -> traces."""
    if isinstance(data, dict) and isinstance(data.get("messages"), list):
        return [transcript_to_trace(data["messages"], tools=data.get("tools"), model=data.get("model"))]
    if isinstance(data, list) and data and all(isinstance(m, dict) and "role" in m for m in data):
        return [transcript_to_trace(data)]
    if isinstance(data, list) and data and all(isinstance(x, dict | list) for x in data):
        return [t for x in data for t in transcripts_from_data(x, source)]
    raise ConfigError(f"{source}: not a transcript (expected a list of messages with 'role', "
                      "or an object with a 'messages' list)")


def import_transcript(path: str | Path) -> list[Trace]:
    return transcripts_from_data(load_json(path), str(path))
