"""Request parsing and response rendering for the two APIs the scripted server speaks."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any, Literal

from costar.testing.rules import IncomingRequest, Rule

# Deliberately truncated JSON: what a model emits when it stops mid-object.
BROKEN_JSON = '{"location": "Par'


def incoming(index: int, api: Literal["openai", "anthropic"], body: dict[str, Any]) -> IncomingRequest:
    raw_messages = body.get("messages")
    messages: list[Any] = raw_messages if isinstance(raw_messages, list) else []
    texts: list[str] = []
    last_user = ""
    system_parts: list[str] = []
    if api == "anthropic":
        system_parts.append(_text(body.get("system")))
    for m in messages:
        if not isinstance(m, dict):
            continue
        text = _text(m.get("content"))
        texts.append(text)
        role = m.get("role")
        if role == "system" or role == "developer":
            system_parts.append(text)
        elif role == "user" and text:
            # Anthropic tool results arrive as user turns with no text: they are not "the user's message".
            last_user = text
    raw_tools = body.get("tools")
    tools: list[Any] = raw_tools if isinstance(raw_tools, list) else []
    names = [str((t.get("function") or t).get("name", "")) for t in tools if isinstance(t, dict)]
    choice = body.get("tool_choice")
    forced = None
    if isinstance(choice, dict):
        forced = choice.get("name") or (choice.get("function") or {}).get("name")
    return IncomingRequest(index=index, api=api, model=str(body.get("model") or ""), last_user=last_user,
                           system="\n".join(p for p in system_parts if p), texts=texts, tool_names=names,
                           forced_tool=forced, body=body)


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        out = []
        for block in content:
            if isinstance(block, dict):
                if block.get("type") == "text":
                    out.append(str(block.get("text", "")))
                elif block.get("type") == "tool_result":
                    out.append(_text(block.get("content")))
        return "".join(out)
    return ""


def _estimate_tokens(text: str) -> int:
    # Roughly four characters per token: enough for cost arithmetic in tests to be non-zero and stable.
    return max(1, len(text) // 4)


def _arguments(rule: Rule, args: dict[str, Any] | str) -> str:
    if rule.malformed_tool_args:
        return BROKEN_JSON
    return args if isinstance(args, str) else json.dumps(args)


def _content(rule: Rule) -> str | None:
    if rule.text is not None:
        return rule.text
    if rule.json_value is not None:
        return json.dumps(rule.json_value)
    return None


def _usage(rule: Rule, req: IncomingRequest, completion: str) -> tuple[int, int]:
    prompt = "".join(req.texts) + req.system
    inp = rule.input_tokens if rule.input_tokens is not None else _estimate_tokens(prompt)
    out = rule.output_tokens if rule.output_tokens is not None else _estimate_tokens(completion)
    return inp, out


def openai_completion(rule: Rule, req: IncomingRequest) -> dict[str, Any]:
    content = _content(rule)
    message: dict[str, Any] = {"role": "assistant", "content": content}
    calls = rule.tool_calls or []
    if calls:
        message["tool_calls"] = [
            {"id": c.id or f"call_{req.index}_{i}", "type": "function",
             "function": {"name": c.name, "arguments": _arguments(rule, c.arguments)}}
            for i, c in enumerate(calls)]
    finish = rule.finish_reason or ("tool_calls" if calls else "stop")
    inp, out = _usage(rule, req, (content or "") + json.dumps(message.get("tool_calls", [])))
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "object": "chat.completion", "created": int(time.time()),
        "model": req.model or "scripted",
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": {"prompt_tokens": inp, "completion_tokens": out, "total_tokens": inp + out},
    }


def openai_stream_events(rule: Rule, req: IncomingRequest) -> list[str]:
    """The same completion as server-sent events (``stream: true``), text in a few pieces."""
    doc = openai_completion(rule, req)
    message, finish = doc["choices"][0]["message"], doc["choices"][0]["finish_reason"]
    base = {"id": doc["id"], "object": "chat.completion.chunk", "created": doc["created"], "model": doc["model"]}
    chunks: list[dict[str, Any]] = [{**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                                          "finish_reason": None}]}]
    text = message.get("content") or ""
    step = max(1, len(text) // 3)
    for i in range(0, len(text), step):
        chunks.append({**base, "choices": [{"index": 0, "delta": {"content": text[i:i + step]},
                                            "finish_reason": None}]})
    for i, call in enumerate(message.get("tool_calls") or []):
        chunks.append({**base, "choices": [{"index": 0, "finish_reason": None, "delta": {"tool_calls": [
            {"index": i, "id": call["id"], "type": "function", "function": call["function"]}]}}]})
    chunks.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
    if (req.body.get("stream_options") or {}).get("include_usage"):
        chunks.append({**base, "choices": [], "usage": doc["usage"]})
    return [f"data: {json.dumps(c)}\n\n" for c in chunks] + ["data: [DONE]\n\n"]


def anthropic_message(rule: Rule, req: IncomingRequest) -> dict[str, Any]:
    blocks: list[dict[str, Any]] = []
    if rule.text is not None:
        blocks.append({"type": "text", "text": rule.text})
    for i, c in enumerate(rule.tool_calls or []):
        args: Any = c.arguments
        if rule.malformed_tool_args:
            args = BROKEN_JSON
        elif isinstance(args, str):
            try:
                args = json.loads(args)
            except json.JSONDecodeError:
                pass  # a deliberately broken string is sent as is
        blocks.append({"type": "tool_use", "id": c.id or f"toolu_{req.index}_{i}", "name": c.name, "input": args})
    if rule.json_value is not None:
        if req.forced_tool:  # structured output through a forced tool, as Anthropic clients ask for it
            blocks.append({"type": "tool_use", "id": f"toolu_{req.index}_json", "name": req.forced_tool,
                           "input": BROKEN_JSON if rule.malformed_tool_args else rule.json_value})
        elif rule.text is None:
            blocks.append({"type": "text", "text": json.dumps(rule.json_value)})
    uses_tool = any(b["type"] == "tool_use" for b in blocks)
    stop = rule.finish_reason or ("tool_use" if uses_tool else "end_turn")
    inp, out = _usage(rule, req, json.dumps(blocks))
    return {"id": f"msg_{uuid.uuid4().hex[:24]}", "type": "message", "role": "assistant",
            "model": req.model or "scripted", "content": blocks, "stop_reason": stop, "stop_sequence": None,
            "usage": {"input_tokens": inp, "output_tokens": out}}


_ANTHROPIC_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                          404: "not_found_error", 429: "rate_limit_error", 529: "overloaded_error"}


def error_body(api: Literal["openai", "anthropic"], status: int, message: str) -> dict[str, Any]:
    if api == "anthropic":
        return {"type": "error", "error": {"type": _ANTHROPIC_ERROR_TYPES.get(status, "api_error"),
                                           "message": message}}
    kind = "rate_limit_exceeded" if status == 429 else "not_found_error" if status == 404 else "server_error"
    return {"error": {"message": message, "type": kind, "code": status}}


def default_error_message(status: int, model: str) -> str:
    if status == 404:
        return f"The model '{model}' does not exist"
    if status == 429:
        return "Rate limit reached (scripted)"
    return f"Scripted failure (HTTP {status})"
