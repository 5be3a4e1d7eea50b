"""Reading the conversation: which calls were made, which succeeded, calls a model wrote as text."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

from analyst.errors import FAILED, NOT_RUN
from analyst.loop import ToolCall

Message = dict[str, Any]

_TEXT_CALL = re.compile(r"functions\.(?P<name>\w+):\s*(?P<args>\{.*\})", re.DOTALL)
_TAGGED_CALL = re.compile(r"<tool_call>\s*(?P<json>\{.*\})\s*</tool_call>", re.DOTALL)


def succeeded(result: Any) -> bool:
    """A tool result that is neither an error nor a call deferred until its skill was read."""
    return not str(result or "").startswith((FAILED, NOT_RUN))


def calls_made(messages: list[Message]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(call id, tool name, arguments) of every tool call in the conversation, oldest first."""
    for m in messages:
        for c in m.get("tool_calls") or []:
            fn = c.get("function") or {}
            raw = fn.get("arguments")
            try:
                args = raw if isinstance(raw, dict) else json.loads(raw or "{}")
            except (TypeError, json.JSONDecodeError):
                continue
            if isinstance(args, dict):
                yield str(c.get("id")), str(fn.get("name", "")), args


def results(messages: list[Message]) -> dict[str, str]:
    return {str(m.get("tool_call_id")): str(m.get("content") or "") for m in messages if m["role"] == "tool"}


def repeats(call: ToolCall, messages: list[Message]) -> bool:
    """True when the same call already succeeded: running it again cannot tell the model anything new.
    (Repeating a call that failed is allowed; in between, the model may have read the skill it lacked.)"""
    done = results(messages)
    return any(name == call.name and args == call.arguments and succeeded(done.get(cid))
               for cid, name, args in calls_made(messages))


def last_step_succeeded_with(messages: list[Message], tools: frozenset[str]) -> bool:
    """Did the newest assistant turn call one of ``tools``, and did that call succeed?"""
    turn = next((m for m in reversed(messages) if m["role"] == "assistant"), None)
    if turn is None:
        return False
    done = results(messages)
    return any(name in tools and cid in done and succeeded(done[cid]) for cid, name, _ in calls_made([turn]))


def calls_in_text(text: str, offered: set[str], id_prefix: str) -> list[ToolCall]:
    """Small models sometimes write the call instead of making it, in their training format:
    ``functions.NAME: {...}`` or ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``."""
    candidates: list[tuple[str, Any]] = []
    m = _TEXT_CALL.search(text)
    if m:
        candidates.append((m.group("name"), m.group("args")))
    for tagged in _TAGGED_CALL.finditer(text):
        try:
            doc = json.loads(tagged.group("json"))
        except json.JSONDecodeError:
            continue
        if isinstance(doc, dict):
            candidates.append((str(doc.get("name", "")), doc.get("arguments", {})))
    calls = []
    for i, (name, raw) in enumerate(candidates):
        try:
            args = json.loads(raw) if isinstance(raw, str) else raw
        except json.JSONDecodeError:
            continue
        if name in offered and isinstance(args, dict):
            calls.append(ToolCall(id=f"{id_prefix}_{i}", name=name, arguments=args))
    return calls
