"""Shared pieces of the importers: stable ids, synthetic timing, canonical LLM/TOOL attributes."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from costar.errors import ConfigError
from costar.trace.genai import finish_reason, parse_json
from costar.trace.model import Span, SpanKind

# Formats without timestamps get 1 ms per message; every such trace says so in its metadata.
STEP_NS = 1_000_000
SYNTHETIC_TIMING = "costar.synthetic_timing"
# What an importer read and what it kept, in the trace metadata: an importer never drops input silently.
IMPORT_STATS = "costar.import"


def import_stats(read: int, stored: int, unit: str, notes: list[str] | None = None) -> dict[str, Any]:
    """The ``costar.import`` metadata entry: ``read`` records (messages, steps, …), ``stored`` of them."""
    return {"read": read, "stored": stored, "unit": unit, "skipped": read - stored, "notes": list(notes or [])}


def stable_id(*parts: Any, size: int = 16) -> str:
    """A hex id of ``size`` bytes derived from content, so re-importing a file is idempotent."""
    h = hashlib.sha256()
    for p in parts:
        h.update(json.dumps(p, sort_keys=True, default=str, ensure_ascii=False).encode())
        h.update(b"\0")
    return h.hexdigest()[: 2 * size]


def load_json(path: str | Path) -> Any:
    p = Path(path)
    try:
        with p.open("rb") as f:
            return json.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{p}: no such file; check the path") from None
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ConfigError(f"{p}: not valid JSON ({' '.join(str(exc).split())[:200]}); "
                          "export it again or fix the file") from None


class SpanBuilder:
    """Collects the spans of one imported trace, numbering span ids deterministically."""

    def __init__(self, trace_id: str) -> None:
        self.trace_id = trace_id
        self.spans: list[Span] = []
        self._count = 0

    def new_id(self) -> str:
        self._count += 1
        return stable_id(self.trace_id, self._count, size=8)

    def add(self, name: str, kind: SpanKind, start_ns: int, end_ns: int, attributes: dict[str, Any], *,
            parent_id: str | None = None) -> Span:
        span = Span(trace_id=self.trace_id, span_id=self.new_id(), parent_id=parent_id, name=name,
                    kind=kind, start_ns=start_ns, end_ns=max(end_ns, start_ns), attributes=attributes)
        self.spans.append(span)
        return span


def output_message(msg: dict[str, Any]) -> dict[str, Any]:
    """A parts message as an output message: the schema requires a finish reason."""
    reason = finish_reason(msg.get("finish_reason"))
    if not reason:
        reason = "tool_call" if any(p["type"] == "tool_call" for p in msg["parts"]) else "stop"
    return {**msg, "finish_reason": reason}


def llm_attributes(inputs: list[dict[str, Any]], output: dict[str, Any], *, model: str | None = None,
                   delta: bool = True) -> dict[str, Any]:
    out_msg = output_message(output)
    attrs: dict[str, Any] = {"gen_ai.operation.name": "chat"}
    if model:
        attrs["gen_ai.request.model"] = model
    attrs["gen_ai.input.messages"] = inputs
    attrs["gen_ai.output.messages"] = [out_msg]
    attrs["gen_ai.response.finish_reasons"] = [out_msg["finish_reason"]]
    if delta:
        # Inputs hold only the messages since the previous LLM call, not the whole history.
        attrs["costar.messages.delta"] = True
    return attrs


def llm_span_name(model: str | None) -> str:
    return f"chat {model}" if model else "chat"


def tool_attributes(call: dict[str, Any], result: Any = None, *, has_result: bool = False) -> dict[str, Any]:
    """Canonical TOOL span attributes from a ``tool_call`` part and (when known) its result."""
    attrs: dict[str, Any] = {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": call["name"],
                             "gen_ai.tool.type": "function"}
    if call.get("id") is not None:
        attrs["gen_ai.tool.call.id"] = call["id"]
    attrs["gen_ai.tool.call.arguments"] = parse_json(call.get("arguments"))
    if has_result:
        attrs["gen_ai.tool.call.result"] = parse_json(result)
    return attrs


def match_tool_results(messages: list[dict[str, Any]]) -> dict[tuple[int, int], tuple[int, Any]]:
    """Pair each tool call with the response that answers it: (message, part) -> (message, response).

    Ids are not unique in real transcripts (tau-bench reuses them within a run), so a response
    answers the earliest still-unanswered call with its id, walking the conversation in order.
    """
    pending: dict[str, list[tuple[int, int]]] = {}
    matched: dict[tuple[int, int], tuple[int, Any]] = {}
    for i, m in enumerate(messages):
        for j, p in enumerate(m["parts"]):
            if p["type"] == "tool_call" and p.get("id") is not None:
                pending.setdefault(str(p["id"]), []).append((i, j))
            elif p["type"] == "tool_call_response" and pending.get(str(p.get("id"))):
                matched[pending[str(p["id"])].pop(0)] = (i, p.get("response"))
    return matched
