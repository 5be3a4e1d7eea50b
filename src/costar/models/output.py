"""Check a provider reply against what was asked for: well-formed tool calls, JSON matching the schema."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from costar.models.schema import first_violation
from costar.models.types import ChatRequest, ProviderReply, ToolCall

_FENCE = re.compile(r"^\s*```(?:json|JSON)?\s*\n?(.*?)\n?\s*```\s*$", re.DOTALL)


class MalformedOutput(Exception):
    """The reply cannot be used as asked; the client retries, then raises ModelOutputError."""


@dataclass(frozen=True)
class ParsedReply:
    text: str
    tool_calls: list[ToolCall]
    parsed: Any


def parse_reply(request: ChatRequest, reply: ProviderReply) -> ParsedReply:
    calls = [_tool_call(request, i, c.id, c.name, c.arguments) for i, c in enumerate(reply.tool_calls)]
    text = reply.text or ""
    parsed: Any = None
    if request.output is not None and (text.strip() or not calls):
        # A tool call instead of an answer is a legitimate turn; JSON is only owed when the model answers.
        parsed = _json_value(text)
        if request.output.schema is not None:
            problem = first_violation(request.output.schema, parsed)
            if problem is not None:
                raise MalformedOutput(f"JSON does not match the schema ({problem})")
    return ParsedReply(text=text, tool_calls=calls, parsed=parsed)


def _tool_call(request: ChatRequest, index: int, call_id: str, name: str, arguments: Any) -> ToolCall:
    known = {t.name for t in request.tools}
    if known and name not in known:
        raise MalformedOutput(f"tool call {index} names unknown tool '{name}' (offered: {', '.join(sorted(known))})")
    if isinstance(arguments, dict):
        args = arguments
    elif arguments is None or (isinstance(arguments, str) and not arguments.strip()):
        args = {}  # some servers send "" for a tool without parameters
    elif isinstance(arguments, str):
        try:
            args = json.loads(arguments)
        except json.JSONDecodeError as exc:
            raise MalformedOutput(f"tool call '{name}' has arguments that are not JSON ({exc.msg})") from exc
    else:
        args = arguments
    if not isinstance(args, dict):
        raise MalformedOutput(f"tool call '{name}' has arguments that are not a JSON object")
    return ToolCall(id=call_id or f"call_{index}", name=name, arguments=args)


def _json_value(text: str) -> Any:
    m = _FENCE.match(text)
    body = m.group(1) if m else text
    try:
        return json.loads(body)
    except json.JSONDecodeError as exc:
        raise MalformedOutput(f"reply is not valid JSON ({exc.msg} at char {exc.pos})") from exc
