"""SWE-agent trajectories (``.traj``) -> Trace.

Two shapes exist. Older runs have a ``trajectory`` list of steps (response, thought, action,
observation, state) beside the raw ``history``; function-calling runs may have only ``history``,
where assistant messages carry ``tool_calls`` and tool messages answer them by ``tool_call_ids``.
Either way each step becomes a CHAIN span "step N" with an LLM child (what the model said) and a
TOOL child per action (the command, answered by the observation). ``info.model_stats`` gives the
cost and token totals, which the steps themselves do not record.
"""

from __future__ import annotations

from dataclasses import dataclass, field
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
    load_json,
    match_tool_results,
    stable_id,
    tool_attributes,
)
from costar.trace.genai import as_dict, message_text, parse_json, to_parts_message
from costar.trace.model import AgentInfo, Span, SpanKind, Trace, TraceStatus, compute_totals

AGENT = "swe-agent"


@dataclass
class _Step:
    output: dict[str, Any]
    inputs: list[dict[str, Any]] | None = None
    # (tool_call part, result, whether a result was recorded)
    calls: list[tuple[dict[str, Any], Any, bool]] = field(default_factory=list)
    state: Any = None
    tool_seconds: float | None = None


def _command_call(action: str, n: int) -> dict[str, Any] | None:
    """SWE-agent's text actions are command lines; the first word names the command."""
    words = action.strip().split()
    if not words:
        return None
    return {"type": "tool_call", "id": f"step-{n}", "name": words[0], "arguments": {"command": action.strip()}}


def _parts(msg: Any) -> dict[str, Any]:
    return to_parts_message(msg) or {"role": "user", "parts": []}


def _history(data: dict[str, Any]) -> list[dict[str, Any]]:
    history = data.get("history")
    return [m for m in history if isinstance(m, dict)] if isinstance(history, list) else []


# SWE-agent's own message fields: a history without any of them is some other program's log.
SWE_MESSAGE_KEYS = ("agent", "message_type", "action", "thought", "is_demo", "tool_call_ids")


def looks_like_sweagent(data: Any) -> bool:
    """A ``trajectory`` of steps with an ``action``, or a ``history`` written by SWE-agent (its messages
    carry SWE-agent's fields, or the file has SWE-agent's ``info``)."""
    if not isinstance(data, dict):
        return False
    trajectory = data.get("trajectory")
    if isinstance(trajectory, list) and trajectory:
        return all(isinstance(s, dict) and "action" in s for s in trajectory)
    history = data.get("history")
    if not isinstance(history, list) or not history or not all(isinstance(m, dict) and "role" in m for m in history):
        return False
    return isinstance(data.get("info"), dict) or any(k in m for m in history for k in SWE_MESSAGE_KEYS)


def _steps_from_trajectory(data: dict[str, Any]) -> list[_Step]:
    history = _history(data)
    assistant_at = [i for i, m in enumerate(history) if m.get("role") == "assistant"]
    trajectory = [s for s in data["trajectory"] if isinstance(s, dict)]
    # The history holds what the model was sent; use it only when it lines up step for step.
    aligned = len(assistant_at) == len(trajectory)
    steps: list[_Step] = []
    prev = 0
    for n, raw in enumerate(trajectory, 1):
        call = _command_call(str(raw.get("action") or ""), n)
        said = raw.get("response") or raw.get("thought") or ""
        output = {"role": "assistant", "parts": [{"type": "text", "content": str(said)}, *([call] if call else [])]}
        inputs = None
        if aligned:
            inputs = [_parts(m) for m in history[prev:assistant_at[n - 1]]]
            prev = assistant_at[n - 1] + 1
        seconds = raw.get("execution_time")
        steps.append(_Step(output=output, inputs=inputs,
                           calls=[(call, raw.get("observation"), "observation" in raw)] if call else [],
                           state=parse_json(raw.get("state")),
                           tool_seconds=float(seconds) if isinstance(seconds, int | float) else None))
    return steps


def _function_calls(msgs: list[dict[str, Any]], i: int,
                    answers: dict[tuple[int, int], tuple[int, Any]]) -> list[tuple[dict[str, Any], Any, bool]]:
    calls = []
    for j, part in enumerate(msgs[i]["parts"]):
        if part["type"] == "tool_call":
            answer = answers.get((i, j))
            calls.append((part, answer[1] if answer else None, answer is not None))
    return calls


def _trailing(data: dict[str, Any]) -> list[dict[str, Any]]:
    """History messages after the last assistant turn: they belong to no step (e.g. a final observation)."""
    history = _history(data)
    last = max((i for i, m in enumerate(history) if m.get("role") == "assistant"), default=-1)
    return [_parts(m) for m in history[last + 1:]]


def _steps_from_history(data: dict[str, Any]) -> list[_Step]:
    history = _history(data)
    msgs = [_parts(m) for m in history]
    answers = match_tool_results(msgs)
    steps: list[_Step] = []
    prev = 0
    for i, raw in enumerate(history):
        if raw.get("role") != "assistant":
            continue
        n = len(steps) + 1
        output = msgs[i]
        calls = _function_calls(msgs, i, answers)
        if not calls and raw.get("action"):  # text actions: the next message is the observation
            call = _command_call(str(raw["action"]), n)
            nxt = history[i + 1] if i + 1 < len(history) else None
            if call:
                output = {**output, "parts": [*output["parts"], call]}
                calls = [(call, message_text(nxt) if nxt else None, nxt is not None)]
        steps.append(_Step(output=output, inputs=msgs[prev:i], calls=calls))
        prev = i + 1
    return steps


def _emit_step(b: SpanBuilder, step: _Step, n: int, clock: int, root_id: str) -> int:
    """Adds the CHAIN span and its children starting at ``clock``; returns the clock after them."""
    chain_attrs: dict[str, Any] = {"costar.step": n}
    if step.state is not None:
        chain_attrs["swe_agent.state"] = step.state
    chain = b.add(f"step {n}", SpanKind.CHAIN, clock, clock, chain_attrs, parent_id=root_id)
    attrs = llm_attributes(step.inputs or [], step.output)
    if step.inputs is None:  # unknown, not empty: say nothing rather than claim no input
        attrs.pop("gen_ai.input.messages")
        attrs.pop("costar.messages.delta")
    b.add("chat", SpanKind.LLM, clock, clock + STEP_NS, attrs, parent_id=chain.span_id)
    clock += STEP_NS
    for call, result, has_result in step.calls:
        duration = int(step.tool_seconds * 1e9) if step.tool_seconds is not None else STEP_NS
        b.add(f"execute_tool {call['name']}", SpanKind.TOOL, clock, clock + duration,
              tool_attributes(call, result, has_result=has_result), parent_id=chain.span_id)
        clock += duration
    chain.end_ns = clock
    return clock


def _status(exit_status: Any) -> TraceStatus:
    text = str(exit_status or "").lower()
    if "timeout" in text:
        return TraceStatus.TIMEOUT
    return TraceStatus.ERROR if "error" in text else TraceStatus.OK


def _apply_model_stats(trace: Trace, stats: Any) -> None:
    if not isinstance(stats, dict):
        return
    t = trace.totals
    t.input_tokens = int(stats.get("tokens_sent") or 0)
    t.output_tokens = int(stats.get("tokens_received") or 0)
    t.total_tokens = t.input_tokens + t.output_tokens
    # instance_cost is this instance's cost; older files' total_cost accumulates over a batch run.
    t.cost_usd = float(stats.get("instance_cost") or stats.get("total_cost") or 0.0)
    if stats.get("api_calls") is not None:
        t.llm_calls = int(stats["api_calls"])


def _first_user_text(data: dict[str, Any]) -> str | None:
    users = (m for m in _history(data) if m.get("role") == "user" and not m.get("is_demo"))
    return next((t for m in users if (t := message_text(m))), None)


def sweagent_from_data(data: Any, *, source: str = "<data>") -> Trace:
    if not isinstance(data, dict) or not (isinstance(data.get("trajectory"), list)
                                          or isinstance(data.get("history"), list)):
        raise ConfigError(f"{source}: not a SWE-agent trajectory (expected a 'trajectory' or 'history' list)")
    if not data.get("trajectory") and not any(m.get("role") == "assistant" for m in _history(data)):
        raise ConfigError(f"{source}: the SWE-agent history has no assistant message, so it holds no step; "
                          "is it really a SWE-agent trajectory? (try another --format)")
    from_trajectory = bool(data.get("trajectory"))
    steps = _steps_from_trajectory(data) if from_trajectory else _steps_from_history(data)
    info = as_dict(data.get("info"))
    notes: list[str] = []
    if from_trajectory:
        raw = data["trajectory"]
        read, unit = len(raw), "steps"
        if len(steps) < len(raw):
            notes.append(f"{len(raw) - len(steps)} trajectory steps are not objects")
        if steps and steps[0].inputs is None and _history(data):
            notes.append(f"the history ({len(_history(data))} messages) does not line up with the {len(raw)} steps, "
                         "so the steps carry no model inputs")
        trailing: list[dict[str, Any]] = []
    else:
        raw = data["history"]
        read, unit = len(raw), "messages"
        trailing = _trailing(data)
        if len(_history(data)) < len(raw):
            notes.append(f"{len(raw) - len(_history(data))} history items are not message objects")
    trace_id = stable_id(AGENT, data)
    b = SpanBuilder(trace_id)
    root_id = b.new_id()
    clock = 0
    for n, step in enumerate(steps, 1):
        clock = _emit_step(b, step, n, clock, root_id)
    submission = info.get("submission")
    output = submission if isinstance(submission, str) else None
    first_user = _first_user_text(data)
    root_attrs: dict[str, Any] = {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": AGENT}
    root_attrs |= {k: v for k, v in (("input.value", first_user), ("output.value", output)) if v is not None}
    if trailing:
        root_attrs["costar.messages.trailing"] = trailing  # after the last step: kept, not dropped
    root = Span(trace_id=trace_id, span_id=root_id, name=f"invoke_agent {AGENT}", kind=SpanKind.AGENT,
                start_ns=0, end_ns=clock, attributes=root_attrs)
    spans = [root, *b.spans]
    exit_status = info.get("exit_status")
    trace = Trace(
        trace_id=trace_id, scenario_id=f"swe-agent/{Path(source).stem}", agent=AgentInfo(name=AGENT),
        status=_status(exit_status), error=str(exit_status) if _status(exit_status) != TraceStatus.OK else None,
        input=first_user, output=output, start_ns=0, end_ns=clock, totals=compute_totals(spans, 0.0),
        spans=spans,
        metadata={"source": "swe-agent", "exit_status": exit_status, "environment": data.get("environment"),
                  "model_stats": info.get("model_stats"), "steps": len(steps), SYNTHETIC_TIMING: True,
                  IMPORT_STATS: import_stats(read, len(steps) if from_trajectory else len(_history(data)), unit,
                                             notes)},
    )
    _apply_model_stats(trace, info.get("model_stats"))
    return trace


def import_sweagent(path: str | Path) -> list[Trace]:
    """A ``.traj`` file -> a one-trace list (``run_id`` left None for the caller)."""
    return [sweagent_from_data(load_json(path), source=str(path))]
