"""Multi-agent group chats (AutoGen-style logs, the Who&When benchmark) -> Trace.

A log is an object whose ``history`` lists the conversation, every message naming the agent that
spoke (``{"role", "name", "content"}``). Each message becomes an AGENT span ``invoke_agent {name}``
under one root span, in order, with the agent's words as ``output.value`` and the message's index
as ``costar.step`` (Who&When's ``mistake_step`` counts the same way). The log's other fields (the
question, the ground truth, Who&When's human labels of which agent and step caused a failure) are
kept in the trace metadata. Logs carry no clock, so timing is synthetic.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from costar.errors import ConfigError
from costar.trace.formats._common import STEP_NS, SYNTHETIC_TIMING, SpanBuilder, load_json, stable_id
from costar.trace.genai import message_text
from costar.trace.model import AgentInfo, Span, SpanKind, Trace, compute_totals

AGENT = "group-chat"
REQUIRED_MESSAGE_KEYS = ("role", "name", "content")


def is_group_chat_message(m: Any) -> bool:
    return isinstance(m, dict) and all(k in m for k in REQUIRED_MESSAGE_KEYS) and isinstance(m["name"], str)


def looks_like_group_chat(data: Any) -> bool:
    """Every message of a non-empty ``history`` names its speaker (and there is no SWE-agent ``info``)."""
    if not isinstance(data, dict) or "info" in data or "trajectory" in data:
        return False
    history = data.get("history")
    return isinstance(history, list) and bool(history) and all(map(is_group_chat_message, history))


def group_chat_from_data(data: Any, *, source: str = "<data>") -> Trace:
    history = data.get("history") if isinstance(data, dict) else None
    if not isinstance(history, list) or not history:
        raise ConfigError(f"{source}: not a group chat (expected an object whose 'history' lists messages with "
                          "'role', 'name' and 'content')")
    trace_id = stable_id(AGENT, data)
    b = SpanBuilder(trace_id)
    root_id = b.new_id()
    skipped: list[int] = []
    last_text: str | None = None
    for i, m in enumerate(history):
        if not is_group_chat_message(m):
            skipped.append(i)
            continue
        text = message_text(m) if not isinstance(m["content"], str) else m["content"]
        attrs: dict[str, Any] = {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": m["name"],
                                 "costar.step": i, "costar.message.role": str(m["role"]), "output.value": text}
        b.add(f"invoke_agent {m['name']}", SpanKind.AGENT, i * STEP_NS, (i + 1) * STEP_NS, attrs, parent_id=root_id)
        last_text = text or last_text
    question = data.get("question")
    first = next((message_text(m) for m in history if isinstance(m, dict)), None)
    task = question if isinstance(question, str) and question else first
    end = len(history) * STEP_NS
    root_attrs: dict[str, Any] = {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": AGENT}
    if task is not None:
        root_attrs["input.value"] = task
    if last_text is not None:
        root_attrs["output.value"] = last_text
    root = Span(trace_id=trace_id, span_id=root_id, name=f"invoke_agent {AGENT}", kind=SpanKind.AGENT,
                start_ns=0, end_ns=end, attributes=root_attrs)
    spans = [root, *b.spans]
    extra = {k: v for k, v in data.items() if k != "history"}
    ident = data.get("question_ID") or Path(source).stem
    notes = [f"messages {', '.join(map(str, skipped[:10]))} lack a 'role', 'name' or 'content' and were not "
             "imported"] if skipped else []
    return Trace(trace_id=trace_id, scenario_id=f"{AGENT}/{ident}", agent=AgentInfo(name=AGENT), input=task,
                 output=last_text, start_ns=0, end_ns=end, totals=compute_totals(spans, 0.0), spans=spans,
                 metadata={**extra, "source": AGENT, "messages": len(history), SYNTHETIC_TIMING: True,
                           "costar.import": {"read": len(history), "stored": len(history) - len(skipped),
                                             "unit": "messages", "skipped": len(skipped), "notes": notes}})


def import_group_chat(path: str | Path) -> list[Trace]:
    return [group_chat_from_data(load_json(path), source=str(path))]
