"""Anthropic Messages API through the official ``anthropic`` SDK.

OpenAI-style messages are translated at this edge. Structured output uses a forced tool whose input
schema is the requested schema: the model must "call" it, and its input is the JSON answer.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import weakref
from typing import Any

import anthropic

from costar.models.errors import MissingAPIKeyError
from costar.models.providers.base import Failure, ProviderSettings, classify_sdk_error
from costar.models.types import ChatRequest, Message, OutputFormat, ProviderReply, RawToolCall, message_text
from costar.models.uri import ModelSpec

JSON_TOOL = "structured_output"
DEFAULT_MAX_TOKENS = 4096
_FINISH = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length", "tool_use": "tool_calls",
           "refusal": "content_filter"}


class AnthropicFactory:
    name = "anthropic"

    def configure(self, spec: ModelSpec) -> ModelSpec:
        return spec.model_copy(update={
            "base_url": (spec.base_url or "https://api.anthropic.com").rstrip("/"),
            "api_key_env": spec.api_key_env or "ANTHROPIC_API_KEY",
            "api_key_required": True,
        })

    def create(self, spec: ModelSpec, settings: ProviderSettings) -> AnthropicProvider:
        var = spec.api_key_env or "ANTHROPIC_API_KEY"
        key = settings.api_key or os.environ.get(var)
        if not key:
            raise MissingAPIKeyError(f"{var} is not set: export {var}=<your key> or pass api_key= "
                                     f"(needed for {spec.uri})")
        return AnthropicProvider(spec, key, settings.timeout)


class AnthropicProvider:
    name = "anthropic"

    def __init__(self, spec: ModelSpec, api_key: str, timeout: float) -> None:
        self.endpoint = spec.base_url or "https://api.anthropic.com"
        self._spec = spec
        self._api_key = api_key
        self._timeout = timeout
        self._sync = anthropic.Anthropic(api_key=api_key, base_url=self.endpoint, max_retries=0, timeout=timeout)
        self._async: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, anthropic.AsyncAnthropic] = (
            weakref.WeakKeyDictionary())
        self._async_lock = threading.Lock()

    def complete(self, request: ChatRequest, *, timeout: float) -> ProviderReply:
        resp = self._sync.messages.create(**to_anthropic(self._spec.model, request), timeout=timeout)
        return from_anthropic(resp, request)

    async def acomplete(self, request: ChatRequest, *, timeout: float) -> ProviderReply:
        client = self._async_client()
        resp = await client.messages.create(**to_anthropic(self._spec.model, request), timeout=timeout)
        return from_anthropic(resp, request)

    def classify(self, exc: BaseException) -> Failure | None:
        return classify_sdk_error(exc, anthropic)

    def close(self) -> None:
        self._sync.close()

    def _async_client(self) -> anthropic.AsyncAnthropic:
        loop = asyncio.get_running_loop()
        with self._async_lock:
            client = self._async.get(loop)
            if client is None:
                client = anthropic.AsyncAnthropic(api_key=self._api_key, base_url=self.endpoint, max_retries=0,
                                                  timeout=self._timeout)
                self._async[loop] = client
            return client


def to_anthropic(model: str, request: ChatRequest) -> dict[str, Any]:
    system = "\n\n".join(message_text(m) for m in request.messages if m["role"] == "system")
    kw: dict[str, Any] = {
        "model": model,
        "messages": _messages([m for m in request.messages if m["role"] != "system"]),
        "max_tokens": int(request.params.get("max_tokens") or DEFAULT_MAX_TOKENS),
    }
    if system:
        kw["system"] = system
    tools = [{"name": t.name, "description": t.description, "input_schema": t.parameters} for t in request.tools]
    if request.output is not None:
        tools.append({"name": JSON_TOOL, "description": "Give the final answer as JSON through this tool.",
                      "input_schema": _json_tool_schema(request.output)})
    if tools:
        kw["tools"] = tools
    choice = _tool_choice(request.tool_choice)
    if choice is None and request.output is not None:
        choice = {"type": "tool", "name": JSON_TOOL}
    if choice is not None:
        kw["tool_choice"] = choice
    stop = request.params.get("stop")
    if stop:
        kw["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    # The 2.x SDK dropped sampling parameters from its signature; models that accept them still
    # read them from the body.
    body: dict[str, Any] = {k: request.params[k] for k in ("temperature", "top_p") if k in request.params}
    body.update(request.extra)
    if body:
        kw["extra_body"] = body
    return kw


def from_anthropic(resp: Any, request: ChatRequest) -> ProviderReply:
    texts: list[str] = []
    calls: list[RawToolCall] = []
    for block in resp.content or []:
        kind = getattr(block, "type", None)
        if kind == "text":
            texts.append(block.text)
        elif kind == "tool_use" and block.name == JSON_TOOL and request.output is not None:
            texts = [json.dumps(_unwrap(request.output, block.input), ensure_ascii=False)]
        elif kind == "tool_use":
            calls.append(RawToolCall(id=block.id, name=block.name, arguments=block.input))
    finish = _FINISH.get(resp.stop_reason or "", resp.stop_reason)
    if finish == "tool_calls" and not calls:
        finish = "stop"  # only the structured-output tool was used: to the caller that is a plain answer
    u = resp.usage
    # Anthropic's input_tokens leaves out the cached parts of the prompt; coSTAR counts the prompt whole.
    read = getattr(u, "cache_read_input_tokens", 0) or 0
    write = getattr(u, "cache_creation_input_tokens", 0) or 0
    write_1h = getattr(getattr(u, "cache_creation", None), "ephemeral_1h_input_tokens", 0) or 0
    return ProviderReply(
        text="".join(texts) or None, tool_calls=calls, finish_reason=finish,
        input_tokens=(u.input_tokens or 0) + read + write, output_tokens=u.output_tokens or 0,
        cache_read_tokens=read, cache_write_tokens=write, cache_write_1h_tokens=min(write, write_1h),
        model=resp.model, response_id=resp.id, raw=resp.model_dump(mode="json", exclude_none=True, warnings=False))


def _json_tool_schema(output: OutputFormat) -> dict[str, Any]:
    schema = output.schema
    if schema is None:
        return {"type": "object"}
    if schema.get("type") == "object":
        return schema
    # Tool inputs must be objects; anything else is wrapped and unwrapped again on the way back.
    return {"type": "object", "properties": {"value": schema}, "required": ["value"]}


def _unwrap(output: OutputFormat, value: Any) -> Any:
    if output.schema is not None and output.schema.get("type") != "object" and isinstance(value, dict):
        return value.get("value")
    return value


def _tool_choice(choice: str | dict[str, Any] | None) -> dict[str, Any] | None:
    if choice is None:
        return None
    if isinstance(choice, str):
        return {"auto": {"type": "auto"}, "required": {"type": "any"}, "none": {"type": "none"}}.get(
            choice, {"type": "auto"})
    name = (choice.get("function") or {}).get("name") or choice.get("name")
    return {"type": "tool", "name": name} if name else None


def _messages(messages: list[Message]) -> list[dict[str, Any]]:
    """Anthropic wants strictly alternating user/assistant turns; tool results travel in user turns."""
    out: list[dict[str, Any]] = []
    for m in messages:
        role = "assistant" if m["role"] == "assistant" else "user"
        blocks = _blocks(m)
        if not blocks:
            continue
        if out and out[-1]["role"] == role:
            out[-1]["content"].extend(blocks)
        else:
            out.append({"role": role, "content": blocks})
    return out


def _blocks(m: Message) -> list[dict[str, Any]]:
    if m["role"] == "tool":
        return [{"type": "tool_result", "tool_use_id": m.get("tool_call_id", ""), "content": message_text(m)
                 or json.dumps(m.get("content"))}]
    blocks: list[dict[str, Any]] = []
    content = m.get("content")
    if isinstance(content, str):
        if content:
            blocks.append({"type": "text", "text": content})
    elif isinstance(content, list):
        for part in content:
            block = _part(part)
            if block is not None:
                blocks.append(block)
    for call in m.get("tool_calls") or []:
        fn = call.get("function") or {}
        args = fn.get("arguments")
        if isinstance(args, str):
            try:
                args = json.loads(args) if args.strip() else {}
            except json.JSONDecodeError:
                args = {"_raw": args}
        blocks.append({"type": "tool_use", "id": call.get("id", ""), "name": fn.get("name", ""),
                       "input": args if isinstance(args, dict) else {"value": args}})
    return blocks


def _part(part: Any) -> dict[str, Any] | None:
    if not isinstance(part, dict):
        return None
    if part.get("type") == "text":
        return {"type": "text", "text": str(part.get("text", ""))}
    if part.get("type") == "image_url":
        url = (part.get("image_url") or {}).get("url", "")
        if url.startswith("data:") and ";base64," in url:
            media, data = url[5:].split(";base64,", 1)
            return {"type": "image", "source": {"type": "base64", "media_type": media, "data": data}}
        return {"type": "image", "source": {"type": "url", "url": url}}
    return None


ANTHROPIC = AnthropicFactory()
