"""Request parsing and response rendering for the two APIs the scripted server speaks."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any, Literal

from costar.testing.rules import IncomingRequest, Rule

# Deliberately truncated JSON: what a model emits when it stops mid-object.
BROKEN_JSON = '{"location": "Par'


Api = Literal["openai", "anthropic", "responses"]


def incoming(index: int, api: Api, body: dict[str, Any]) -> IncomingRequest:
    raw_messages = body.get("input" if api == "responses" else "messages")
    if api == "responses" and isinstance(raw_messages, str):
        raw_messages = [{"role": "user", "content": raw_messages}]
    messages: list[Any] = raw_messages if isinstance(raw_messages, list) else []
    texts: list[str] = []
    last_user = ""
    system_parts: list[str] = []
    tool_results = 0
    if api == "anthropic":
        system_parts.append(_text(body.get("system")))
    if api == "responses":
        system_parts.append(_text(body.get("instructions")))
    for m in messages:
        if not isinstance(m, dict):
            continue
        if m.get("type") == "function_call_output":  # a Responses API tool result
            tool_results += 1
            texts.append(_text(m.get("output")))
            continue
        content = m.get("content")
        if isinstance(content, list):
            tool_results += sum(1 for b in content if isinstance(b, dict) and b.get("type") == "tool_result")
        text = _text(content)
        texts.append(text)
        role = m.get("role")
        if role == "tool":
            tool_results += 1
        elif role == "system" or role == "developer":
            system_parts.append(text)
        elif role == "user" and text and not (isinstance(content, list) and any(
                isinstance(b, dict) and b.get("type") == "tool_result" for b in content)):
            # Anthropic tool results arrive as user turns: they are not "the user's message".
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
                           forced_tool=forced, body=body, tool_results=tool_results)


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        out = []
        for block in content:
            if isinstance(block, dict):
                if block.get("type") in ("text", "input_text", "output_text"):
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
    """(the whole prompt's tokens, cached ones included; the completion's tokens)."""
    prompt = "".join(req.texts) + req.system
    cached = rule.cache_read_tokens + rule.cache_write_tokens
    inp = rule.input_tokens if rule.input_tokens is not None else _estimate_tokens(prompt) + cached
    out = rule.output_tokens if rule.output_tokens is not None else _estimate_tokens(completion)
    return max(inp, cached), out


def _openai_usage(rule: Rule, inp: int, out: int) -> dict[str, Any]:
    # OpenAI counts the cached parts inside prompt_tokens and details them.
    return {"prompt_tokens": inp, "completion_tokens": out, "total_tokens": inp + out,
            "prompt_tokens_details": {"cached_tokens": rule.cache_read_tokens,
                                      "cache_write_tokens": rule.cache_write_tokens}}


def _anthropic_usage(rule: Rule, inp: int, out: int) -> dict[str, Any]:
    # Anthropic's input_tokens counts only the prompt outside the cache.
    return {"input_tokens": inp - rule.cache_read_tokens - rule.cache_write_tokens, "output_tokens": out,
            "cache_read_input_tokens": rule.cache_read_tokens,
            "cache_creation_input_tokens": rule.cache_write_tokens,
            "cache_creation": {"ephemeral_5m_input_tokens": rule.cache_write_tokens, "ephemeral_1h_input_tokens": 0}}


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
        "usage": _openai_usage(rule, inp, out),
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
            "usage": _anthropic_usage(rule, inp, out)}


def _sse(events: list[dict[str, Any]]) -> list[str]:
    return [f"event: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in events]


def anthropic_stream_events(rule: Rule, req: IncomingRequest) -> list[str]:
    """The same message as Anthropic server-sent events (``stream: true``)."""
    doc = anthropic_message(rule, req)
    start = {**doc, "content": [], "stop_reason": None, "usage": {**doc["usage"], "output_tokens": 1}}
    events: list[dict[str, Any]] = [{"type": "message_start", "message": start}]
    for i, block in enumerate(doc["content"]):
        if block["type"] == "text":
            events.append({"type": "content_block_start", "index": i, "content_block": {"type": "text", "text": ""}})
            text = block["text"]
            step = max(1, len(text) // 3)
            events += [{"type": "content_block_delta", "index": i,
                        "delta": {"type": "text_delta", "text": text[j:j + step]}} for j in range(0, len(text), step)]
        else:
            events.append({"type": "content_block_start", "index": i,
                           "content_block": {**block, "input": {}}})
            raw = block["input"] if isinstance(block["input"], str) else json.dumps(block["input"])
            events.append({"type": "content_block_delta", "index": i,
                           "delta": {"type": "input_json_delta", "partial_json": raw}})
        events.append({"type": "content_block_stop", "index": i})
    events.append({"type": "message_delta", "delta": {"stop_reason": doc["stop_reason"], "stop_sequence": None},
                   "usage": {"output_tokens": doc["usage"]["output_tokens"]}})
    events.append({"type": "message_stop"})
    return _sse(events)


def responses_document(rule: Rule, req: IncomingRequest) -> dict[str, Any]:
    """An OpenAI Responses API ``response`` object: output items for the text and the tool calls."""
    content = _content(rule)
    output: list[dict[str, Any]] = []
    if content is not None:
        output.append({"type": "message", "id": f"msg_{req.index}", "status": "completed", "role": "assistant",
                       "content": [{"type": "output_text", "text": content, "annotations": []}]})
    for i, c in enumerate(rule.tool_calls or []):
        output.append({"type": "function_call", "id": f"fc_{req.index}_{i}", "status": "completed",
                       "call_id": c.id or f"call_{req.index}_{i}", "name": c.name,
                       "arguments": _arguments(rule, c.arguments)})
    inp, out = _usage(rule, req, (content or "") + json.dumps([o for o in output if o["type"] == "function_call"]))
    return {"id": f"resp_{uuid.uuid4().hex[:24]}", "object": "response", "created_at": int(time.time()),
            "status": "completed", "model": req.model or "scripted", "output": output,
            "parallel_tool_calls": True, "tool_choice": "auto", "tools": [], "error": None,
            "incomplete_details": None, "instructions": None, "metadata": {}, "temperature": None, "top_p": None,
            "text": {"format": {"type": "text"}},
            "usage": {"input_tokens": inp, "output_tokens": out, "total_tokens": inp + out,
                      "input_tokens_details": {"cached_tokens": rule.cache_read_tokens,
                                               "cache_write_tokens": rule.cache_write_tokens},
                      "output_tokens_details": {"reasoning_tokens": 0}}}


def responses_stream_events(rule: Rule, req: IncomingRequest) -> list[str]:
    """The same response as Responses API server-sent events, ending in ``response.completed``."""
    doc = responses_document(rule, req)
    seq = iter(range(1 << 30))
    events: list[dict[str, Any]] = [{"type": "response.created", "response": {**doc, "status": "in_progress",
                                                                                "output": [], "usage": None}}]
    for i, item in enumerate(doc["output"]):
        if item["type"] == "message":
            text = item["content"][0]["text"]
            events.append({"type": "response.output_item.added", "output_index": i,
                           "item": {**item, "status": "in_progress", "content": []}})
            events.append({"type": "response.content_part.added", "item_id": item["id"], "output_index": i,
                           "content_index": 0, "part": {"type": "output_text", "text": "", "annotations": []}})
            events.append({"type": "response.output_text.delta", "item_id": item["id"], "output_index": i,
                           "content_index": 0, "delta": text, "logprobs": []})
            events.append({"type": "response.output_text.done", "item_id": item["id"], "output_index": i,
                           "content_index": 0, "text": text, "logprobs": []})
            events.append({"type": "response.content_part.done", "item_id": item["id"], "output_index": i,
                           "content_index": 0, "part": item["content"][0]})
        else:
            events.append({"type": "response.output_item.added", "output_index": i,
                           "item": {**item, "status": "in_progress", "arguments": ""}})
            events.append({"type": "response.function_call_arguments.delta", "item_id": item["id"],
                           "output_index": i, "delta": item["arguments"]})
            events.append({"type": "response.function_call_arguments.done", "item_id": item["id"],
                           "output_index": i, "arguments": item["arguments"], "name": item["name"]})
        events.append({"type": "response.output_item.done", "output_index": i, "item": item})
    events.append({"type": "response.completed", "response": doc})
    return _sse([{**e, "sequence_number": next(seq)} for e in events])


_ANTHROPIC_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                          404: "not_found_error", 429: "rate_limit_error", 529: "overloaded_error"}


def error_body(api: Api, status: int, message: str) -> dict[str, Any]:
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
