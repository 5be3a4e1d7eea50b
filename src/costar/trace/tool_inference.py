"""Tool executions proven by the model's own messages, recorded as TOOL spans marked inferred.

A plain tool loop over a model SDK leaves only LLM spans: the model asks for a tool (a
``tool_call`` part in an LLM span's output), the agent runs it, and the result comes back in the
next request (a ``tool_call_response`` part with the same call id in a later LLM span's input).
That pair is enough to record the execution: name, arguments, result, call id, and whether the
result reports an error. Such spans carry ``costar.inferred = true``.

Rules (docs/CONVENTIONS.md, "Inferred TOOL spans"):

* a call is inferred only when its result was seen: a request that was never answered proves no
  execution (``requested_tool_calls`` still lists it, so a check can say what the model asked for);
* a call is never recorded twice: a TOOL span the agent or its framework emitted covers the
  request when it has the same call id, or, when that span has no call id, the same tool name (for
  an MCP call, the server's tool name or that name behind a prefix, ``shop__list_orders``), the
  same arguments (or none recorded) and a start between the requesting LLM call's start and the
  end of the LLM call that received the result (the trace's end when none did); each emitted span
  covers at most one request; a bare value recorded for a one-argument tool (LangChain's form)
  matches that argument;
* the inferred span sits beside the requesting LLM span (same parent) and spans the time between
  that call's end and the start of the call that received the result;
* an emitted span that covers a request gets what it lacks from the model's side (the call id,
  structured arguments where it recorded a bare value, the result a failed call sent back), listed
  in ``costar.completed_from_messages``; what it recorded itself is never overwritten (arguments it
  recorded unstructured are kept in ``costar.tool.call.arguments.recorded``).

A result counts as an error (span status ERROR) when it says so explicitly (an ``is_error`` /
``isError`` flag, as Anthropic ``tool_result`` blocks and MCP results carry, or a JSON object with a
non-empty ``error`` field), or when its text starts with ``error``, ``exception``, ``traceback`` or
``an error occurred`` (case-insensitive; LangGraph's ToolNode and the OpenAI Agents SDK report
failures that way), or ends with Pydantic AI's retry request ``Fix the errors and try again.``.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from costar.trace.genai import parse_json, string_items
from costar.trace.model import Span, SpanKind, StatusCode, make_span
from costar.trace.tools import is_mcp_call, tool_name_matches

INFERRED = "costar.inferred"
INFERRED_FROM = "costar.inferred.requested_by"

_ERROR_START = re.compile(r"^\s*(error\b|exception\b|traceback\b|an error occurred)", re.IGNORECASE)
_ERROR_END = re.compile(r"fix the errors and try again\.?\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class RequestedCall:
    """A tool call the model asked for in one LLM span's output."""

    llm: Span
    """The LLM span whose output message requested the call."""
    index: int
    """Position of the call among the tool calls of that output (0-based)."""
    call_id: str | None
    name: str
    arguments: Any


@dataclass(frozen=True)
class SeenResult:
    """A tool result sent back to the model in a later request."""

    llm: Span
    """The first LLM span whose input carried the result."""
    response: Any
    flagged_error: bool | None
    """The result's own error flag when it has one (``is_error``), else None."""


def is_error_result(response: Any, flagged: bool | None = None) -> bool:
    """Whether a tool result reports a failure (see the module docstring for the rule)."""
    if flagged is not None:
        return flagged
    value = parse_json(response) if isinstance(response, str) else response
    if isinstance(value, dict):
        if value.get("isError") is True or value.get("is_error") is True:
            return True
        return bool(value.get("error")) and not value.get("result")
    if isinstance(value, list):  # content blocks: judge their text
        value = " ".join(str(b.get("text", "")) for b in value if isinstance(b, dict)) or json.dumps(value)
    text = value if isinstance(value, str) else str(value)
    return bool(_ERROR_START.search(text) or _ERROR_END.search(text))


def _messages(span: Span, key: str) -> list[dict[str, Any]]:
    value = span.attributes.get(key)
    return [m for m in value if isinstance(m, dict)] if isinstance(value, list) else []


def _parts(message: dict[str, Any]) -> list[dict[str, Any]]:
    parts = message.get("parts")
    return [p for p in parts if isinstance(p, dict)] if isinstance(parts, list) else []


def _llm_spans(spans: Iterable[Span]) -> list[Span]:
    return sorted((s for s in spans if s.kind == SpanKind.LLM), key=lambda s: (s.start_ns, s.end_ns or 0))


def requested_tool_calls(spans: Iterable[Span]) -> list[RequestedCall]:
    """Every tool call the model asked for, in order; a call id seen twice (the same response
    recorded by two instrumentations) counts once."""
    out: list[RequestedCall] = []
    seen_ids: set[str] = set()
    for llm in _llm_spans(spans):
        index = 0
        for msg in _messages(llm, "gen_ai.output.messages"):
            for part in _parts(msg):
                if part.get("type") != "tool_call" or not part.get("name"):
                    continue
                cid = None if part.get("id") in (None, "") else str(part["id"])
                if cid is not None and cid in seen_ids:
                    continue
                if cid is not None:
                    seen_ids.add(cid)
                out.append(RequestedCall(llm, index, cid, str(part["name"]), part.get("arguments")))
                index += 1
    return out


def _results_by_id(llms: Sequence[Span]) -> tuple[dict[str, SeenResult], list[tuple[Span, list[SeenResult]]]]:
    """Results keyed by call id (first LLM span that carried each), and per LLM span its results
    without an id, in message order."""
    by_id: dict[str, SeenResult] = {}
    anonymous: list[tuple[Span, list[SeenResult]]] = []
    for llm in llms:
        unnamed: list[SeenResult] = []
        for msg in _messages(llm, "gen_ai.input.messages"):
            for part in _parts(msg):
                if part.get("type") != "tool_call_response":
                    continue
                flag = part.get("is_error")
                seen = SeenResult(llm, part.get("response"), flag if isinstance(flag, bool) else None)
                cid = part.get("id")
                if cid in (None, ""):
                    unnamed.append(seen)
                elif str(cid) not in by_id:
                    by_id[str(cid)] = seen
        if unnamed:
            anonymous.append((llm, unnamed))
    return by_id, anonymous


def _match_anonymous(call: RequestedCall, anonymous: list[tuple[Span, list[SeenResult]]],
                     used: set[int]) -> SeenResult | None:
    """A call without an id takes the first unused id-less result of the first later request."""
    for llm, results in anonymous:
        if llm.start_ns < (call.llm.end_ns or call.llm.start_ns) or llm.span_id == call.llm.span_id:
            continue
        if call.index < len(results) and id(results[call.index]) not in used:
            used.add(id(results[call.index]))
            return results[call.index]
        return None
    return None


def _same_arguments(recorded: Any, requested: Any) -> bool:
    """Equal arguments; or none recorded; or a framework's single-input form (LangChain records a
    one-argument tool's input as the bare value)."""
    if recorded is None or requested is None:
        return True
    recorded, requested = parse_json(recorded), parse_json(requested)
    if recorded == requested:
        return True
    return (not isinstance(recorded, dict | list) and isinstance(requested, dict) and len(requested) == 1
            and str(next(iter(requested.values()))) == str(recorded))


class _Emitted:
    """TOOL spans recorded by the agent or its framework, consumed as requests are matched."""

    def __init__(self, spans: Iterable[Span]) -> None:
        tools = [s for s in spans if s.kind == SpanKind.TOOL]
        self.by_id = {str(s.attributes["gen_ai.tool.call.id"]): s for s in tools
                      if s.attributes.get("gen_ai.tool.call.id") not in (None, "")}
        self.anonymous = sorted((s for s in tools if s.attributes.get("gen_ai.tool.call.id") in (None, "")),
                                key=lambda s: s.start_ns)

    def covering(self, call: RequestedCall, window: tuple[int, int]) -> Span | None:
        if call.call_id is not None and call.call_id in self.by_id:
            return self.by_id[call.call_id]
        for s in self.anonymous:
            name = s.attributes.get("gen_ai.tool.name") or s.name.removeprefix("execute_tool ").strip()
            # An MCP call is recorded under the server's tool name; the model may know it prefixed.
            same = tool_name_matches(call.name, str(name)) if is_mcp_call(s) else name == call.name
            if (same and window[0] <= s.start_ns <= window[1]
                    and _same_arguments(s.attributes.get("gen_ai.tool.call.arguments"), call.arguments)):
                self.anonymous.remove(s)
                return s
        return None


def _complete(span: Span, call: RequestedCall, result: SeenResult | None) -> None:
    """Fill in what an emitted TOOL span lacks from the model's side of the exchange (the call id,
    structured arguments, the result a failed call sent back), naming what was added."""
    a = span.attributes
    added: list[str] = []
    if a.get("gen_ai.tool.call.id") in (None, "") and call.call_id is not None:
        a["gen_ai.tool.call.id"] = call.call_id
        added.append("gen_ai.tool.call.id")
    if call.arguments is not None and not isinstance(parse_json(a.get("gen_ai.tool.call.arguments")), dict):
        if a.get("gen_ai.tool.call.arguments") is not None:
            a["costar.tool.call.arguments.recorded"] = a["gen_ai.tool.call.arguments"]
        a["gen_ai.tool.call.arguments"] = parse_json(call.arguments)
        added.append("gen_ai.tool.call.arguments")
    if a.get("gen_ai.tool.call.result") is None and result is not None:
        a["gen_ai.tool.call.result"] = result.response
        added.append("gen_ai.tool.call.result")
    if added:
        a["costar.completed_from_messages"] = sorted({*string_items(a.get("costar.completed_from_messages")), *added})


def _span_id(trace_id: str, call: RequestedCall) -> str:
    key = f"{trace_id}:{call.llm.span_id}:{call.index}:{call.call_id}"
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def _text(value: Any, limit: int = 200) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def infer_tool_spans(spans: Sequence[Span]) -> list[Span]:
    """TOOL spans for the tool executions the LLM spans prove and no emitted TOOL span covers."""
    llms = _llm_spans(spans)
    if not llms:
        return []
    emitted = _Emitted(spans)
    results: tuple[dict[str, SeenResult], list[tuple[Span, list[SeenResult]]]] | None = None
    used: set[int] = set()
    out: list[Span] = []
    for call in requested_tool_calls(llms):
        if call.call_id is not None and call.call_id in emitted.by_id:
            recorded = emitted.by_id[call.call_id]
            if recorded.attributes.get("gen_ai.tool.call.result") is not None:
                # The common case (the agent recorded the run, with its result): the model's side of the
                # exchange has nothing to add but what _complete reads from the call, so the results in
                # the messages are not read.
                _complete(recorded, call, None)
                continue
        if results is None:
            results = _results_by_id(llms)
        by_id, anonymous = results
        result = by_id.get(call.call_id) if call.call_id is not None else _match_anonymous(call, anonymous, used)
        if result is not None and result.llm.span_id == call.llm.span_id:
            result = None
        start = call.llm.end_ns or call.llm.start_ns
        window_end = (result.llm.end_ns or result.llm.start_ns) if result is not None else _last_end(spans)
        covering = emitted.covering(call, (call.llm.start_ns, window_end))
        if covering is not None:
            _complete(covering, call, result)
            continue
        if result is None:  # asked for, never answered: no proof that it ran
            continue
        end = max(start, result.llm.start_ns)
        failed = is_error_result(result.response, result.flagged_error)
        attrs: dict[str, Any] = {
            "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": call.name,
            **({"gen_ai.tool.call.id": call.call_id} if call.call_id is not None else {}),
            "gen_ai.tool.call.arguments": parse_json(call.arguments) if call.arguments is not None else {},
            "gen_ai.tool.call.result": result.response,
            INFERRED: True, INFERRED_FROM: call.llm.span_id,
        }
        if failed:
            attrs["error.type"] = "tool_error"
        out.append(make_span(call.llm.trace_id, _span_id(call.llm.trace_id, call), call.llm.parent_id,
                             f"execute_tool {call.name}", SpanKind.TOOL, start, end,
                             StatusCode.ERROR if failed else StatusCode.OK,
                             f"the tool reported an error: {_text(result.response)}" if failed else None,
                             attrs, []))
    return out


def _last_end(spans: Sequence[Span]) -> int:
    return max((s.end_ns or s.start_ns for s in spans), default=0)


def with_inferred_tools(spans: list[Span]) -> list[Span]:
    """``spans`` plus the inferred TOOL spans, in start order (idempotent)."""
    inferred = infer_tool_spans(spans)
    if not inferred:
        return spans
    return sorted([*spans, *inferred], key=lambda s: s.start_ns)
