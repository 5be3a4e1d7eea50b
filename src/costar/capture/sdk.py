"""Zero-code capture of model calls made through the ``openai`` and ``anthropic`` SDKs (and, through
the same import hook, MCP tool use through the ``mcp`` SDK: ``costar.capture.mcp``).

``instrument()`` wraps, sync and async, plain and streamed: OpenAI ``chat.completions.create`` /
``parse`` / ``stream`` and ``responses.create`` / ``parse`` / ``stream`` (the Responses API the
OpenAI Agents SDK uses by default), and Anthropic ``messages.create`` / ``parse`` / ``stream``.
While a coSTAR recording is active each call becomes an LLM span with gen_ai.* attributes,
tokens and cost; with no recording the wrappers only pass the call through. An SDK imported
after ``instrument()`` is wrapped when its import completes.
"""

from __future__ import annotations

import functools
import importlib.abc
import importlib.machinery
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any, Protocol

from costar.trace.genai import (
    CACHE_CREATION_1H_TOKENS,
    CACHE_CREATION_TOKENS,
    CACHE_READ_TOKENS,
    INPUT_TOKENS,
    OUTPUT_TOKENS,
    finish_reason,
    openai_messages_to_parts,
)
from costar.trace.model import SpanKind, StatusCode
from costar.trace.recorder import LiveSpan, current_span

if TYPE_CHECKING:
    from costar.pricing import PriceTable

PRICES_ENV = "COSTAR_PRICES_FILE"
"""Names the JSON price file the harness writes for a command agent's process (the project's table)."""

_PATCHED: set[str] = set()
_LOCK = threading.Lock()
_PRICES: PriceTable | None = None
_PARAMS = {"temperature": "gen_ai.request.temperature", "max_tokens": "gen_ai.request.max_tokens",
           "max_completion_tokens": "gen_ai.request.max_tokens", "top_p": "gen_ai.request.top_p",
           "seed": "gen_ai.request.seed"}


def _prices() -> PriceTable:
    global _PRICES
    table = _PRICES
    if table is None:
        table = _PRICES = _default_prices()
    return table


def _default_prices() -> PriceTable:
    """The built-in table, or the one the harness handed this process in ``COSTAR_PRICES_FILE``.

    Loaded only once a call is recorded. A file that cannot be read or parsed never fails the agent:
    its calls are priced with the built-in table (a model only the file knew stays unknown)."""
    from costar.pricing import PriceTable, load_price_table

    path = os.environ.get(PRICES_ENV)
    if path:
        try:
            return load_price_table(path)
        except Exception as exc:  # the agent under test must run whatever happens here
            print(f"costar: the project's prices could not be read ({exc}); pricing with the built-in table",
                  file=sys.stderr)
    return PriceTable()


def set_prices(table: PriceTable | None) -> PriceTable | None:
    """Price this process's captured calls with ``table`` (None: back to the default, the built-in table
    or ``COSTAR_PRICES_FILE``); returns the table set before. The harness sets the project's table for
    a run of in-process agents."""
    global _PRICES
    with _LOCK:
        previous, _PRICES = _PRICES, table
    return previous


@contextmanager
def prices_set_to(table: PriceTable | None) -> Iterator[None]:
    """Captured calls are priced with ``table`` inside the block, as before it after (None: no change)."""
    if table is None:
        yield
        return
    previous = set_prices(table)
    try:
        yield
    finally:
        set_prices(previous)


def _dump(obj: Any) -> Any:
    return obj.model_dump() if hasattr(obj, "model_dump") else obj


def _start(provider: str, kwargs: dict[str, Any], messages: list[dict[str, Any]]) -> LiveSpan | None:
    parent = current_span()
    # Inside an LLM span the call is already being recorded (coSTAR's own ModelClient uses the SDKs).
    if parent is None or parent.kind == SpanKind.LLM:
        return None
    model = str(kwargs.get("model", ""))
    attrs: dict[str, Any] = {"gen_ai.operation.name": "chat", "gen_ai.provider.name": provider,
                             "gen_ai.request.model": model, "costar.capture": "sdk",
                             "gen_ai.input.messages": openai_messages_to_parts([_dump(m) for m in messages])}
    for name, key in _PARAMS.items():
        if kwargs.get(name) is not None:
            attrs[key] = kwargs[name]
    if kwargs.get("tools"):
        attrs["gen_ai.tool.definitions"] = [_dump(t) for t in kwargs["tools"]]
    span = parent.recording.start_span(f"chat {model}", SpanKind.LLM, attrs, parent=parent)
    return span


@dataclass(frozen=True)
class _Tokens:
    """A call's usage as the OpenTelemetry GenAI conventions count it: ``input`` is the whole prompt,
    the parts read from (``cache_read``) and written to (``cache_write``) the prompt cache included."""

    input: int = 0
    output: int = 0
    cache_read: int = 0
    cache_write: int = 0
    cache_write_1h: int = 0  # the part of cache_write kept for an hour (Anthropic), priced apart


def _count(obj: Any, *path: str) -> int:
    for name in path:
        obj = obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)
    return obj if isinstance(obj, int) and not isinstance(obj, bool) and obj > 0 else 0


def _openai_tokens(usage: Any) -> _Tokens:
    """Chat completions usage: ``prompt_tokens`` already includes ``cached_tokens``."""
    return _Tokens(_count(usage, "prompt_tokens"), _count(usage, "completion_tokens"),
                   _count(usage, "prompt_tokens_details", "cached_tokens"),
                   _count(usage, "prompt_tokens_details", "cache_write_tokens"))


def _responses_tokens(usage: Any) -> _Tokens:
    """Responses API usage: ``input_tokens`` already includes ``cached_tokens``."""
    return _Tokens(_count(usage, "input_tokens"), _count(usage, "output_tokens"),
                   _count(usage, "input_tokens_details", "cached_tokens"),
                   _count(usage, "input_tokens_details", "cache_write_tokens"))


def _anthropic_tokens(usage: Any) -> _Tokens:
    """Anthropic usage: ``input_tokens`` counts only the prompt after the last cache breakpoint, so
    the cached parts are added to it."""
    read = _count(usage, "cache_read_input_tokens")
    write = _count(usage, "cache_creation_input_tokens")
    return _Tokens(_count(usage, "input_tokens") + read + write, _count(usage, "output_tokens"), read, write,
                   min(write, _count(usage, "cache_creation", "ephemeral_1h_input_tokens")))


def _finish(span: LiveSpan, provider: str, model: str, message: dict[str, Any], reason: str | None,
            tokens: _Tokens, response_id: str | None) -> None:
    # The call ended when its response did: pricing it (the first time, loading the price table)
    # is not the model's latency.
    ended = time.time_ns()
    cost, known = _prices().cost(provider, model, tokens.input, tokens.output, cache_read=tokens.cache_read,
                                 cache_write=tokens.cache_write, cache_write_1h=tokens.cache_write_1h)
    otel_reason = finish_reason(reason) if reason else None
    span.set_attributes({
        "gen_ai.response.model": model,
        INPUT_TOKENS: tokens.input,
        OUTPUT_TOKENS: tokens.output,
        CACHE_READ_TOKENS: tokens.cache_read,
        CACHE_CREATION_TOKENS: tokens.cache_write,
        **({CACHE_CREATION_1H_TOKENS: tokens.cache_write_1h} if tokens.cache_write_1h else {}),
        "gen_ai.response.finish_reasons": [otel_reason] if otel_reason else [],
        "gen_ai.output.messages": openai_messages_to_parts([{**message, "finish_reason": reason or "stop"}]),
        "costar.usage.cost_usd": cost,
        "costar.cost_known": known,
        **({"gen_ai.response.id": response_id} if response_id else {}),
    })
    span.set_status(StatusCode.OK)
    span.end(ended)


def _parsed(resp: Any) -> Any:
    """The response object behind ``with_raw_response`` (LangChain calls the SDK that way); the
    SDK caches what ``parse()`` returns, so the caller parsing it again costs nothing."""
    if hasattr(resp, "http_response") and callable(getattr(resp, "parse", None)):
        return resp.parse()
    return resp


def _raw_stream(span: LiveSpan, kwargs: dict[str, Any], resp: Any) -> bool:
    """A raw streamed response is read by the caller through ``parse()``: its content cannot be
    seen here, so the span says so instead of pretending the answer was empty."""
    if not hasattr(resp, "http_response"):
        return False
    span.set_attribute("costar.capture.incomplete", "raw streamed response: content and usage not seen")
    span.set_status(StatusCode.OK)
    span.end()
    return True


def _fail(span: LiveSpan, exc: BaseException) -> None:
    span.set_attribute("error.type", type(exc).__name__)
    span.record_exception(exc)
    span.end()


# --------------------------------------------------------------------------- openai


def _openai_done(span: LiveSpan, kwargs: dict[str, Any], resp: Any) -> None:
    choice = resp.choices[0] if getattr(resp, "choices", None) else None
    message = _dump(choice.message) if choice is not None else {"role": "assistant", "content": ""}
    usage = getattr(resp, "usage", None)
    _finish(span, "openai", getattr(resp, "model", None) or str(kwargs.get("model", "")),
            {k: v for k, v in message.items() if v is not None},
            getattr(choice, "finish_reason", None), _openai_tokens(usage), getattr(resp, "id", None))


class _OpenAIStreamAccumulator:
    """Rebuilds the assistant message from streamed chunks, so a streamed call is recorded whole."""

    def __init__(self) -> None:
        self.text: list[str] = []
        self.tool_calls: dict[int, dict[str, Any]] = {}
        self.reason: str | None = None
        self.model = ""
        self.id: str | None = None
        self.usage = _Tokens()

    def add(self, chunk: Any) -> None:
        self.model = getattr(chunk, "model", None) or self.model
        self.id = getattr(chunk, "id", None) or self.id
        usage = getattr(chunk, "usage", None)
        if usage is not None:
            self.usage = _openai_tokens(usage)
        for choice in getattr(chunk, "choices", None) or []:
            delta = choice.delta
            if getattr(delta, "content", None):
                self.text.append(delta.content)
            for tc in getattr(delta, "tool_calls", None) or []:
                slot = self.tool_calls.setdefault(tc.index, {"id": None, "type": "function",
                                                             "function": {"name": "", "arguments": ""}})
                slot["id"] = tc.id or slot["id"]
                if tc.function is not None:
                    slot["function"]["name"] += tc.function.name or ""
                    slot["function"]["arguments"] += tc.function.arguments or ""
            self.reason = choice.finish_reason or self.reason

    def message(self) -> dict[str, Any]:
        msg: dict[str, Any] = {"role": "assistant", "content": "".join(self.text)}
        if self.tool_calls:
            msg["tool_calls"] = [self.tool_calls[i] for i in sorted(self.tool_calls)]
        return msg


class _Accumulator(Protocol):
    def add(self, chunk: Any) -> None: ...
    def finish(self, span: LiveSpan, kwargs: dict[str, Any]) -> None: ...


class _ChatAccumulator(_OpenAIStreamAccumulator):
    def finish(self, span: LiveSpan, kwargs: dict[str, Any]) -> None:
        _finish(span, "openai", self.model or str(kwargs.get("model", "")), self.message(), self.reason,
                self.usage, self.id)


class _StreamProxy:
    """Wraps an SDK stream: iterating it accumulates the chunks; its end (or close) ends the span."""

    def __init__(self, stream: Any, span: LiveSpan, kwargs: dict[str, Any], acc: _Accumulator) -> None:
        self._stream = stream
        self._span = span
        self._kwargs = kwargs
        self._acc = acc
        self._closed = False

    def _done(self) -> None:
        if not self._closed:
            self._closed = True
            self._acc.finish(self._span, self._kwargs)

    def _failed(self, exc: BaseException) -> None:
        if not self._closed:
            self._closed = True
            _fail(self._span, exc)

    def __iter__(self) -> Iterator[Any]:
        try:
            for chunk in self._stream:
                self._acc.add(chunk)
                yield chunk
        except BaseException as exc:
            self._failed(exc)
            raise
        self._done()

    async def __aiter__(self) -> Any:
        try:
            async for chunk in self._stream:
                self._acc.add(chunk)
                yield chunk
        except BaseException as exc:
            self._failed(exc)
            raise
        self._done()

    def close(self) -> None:
        self._done()
        self._stream.close()

    def __enter__(self) -> _StreamProxy:
        return self

    def __exit__(self, *exc: Any) -> None:
        self._done()
        self._stream.close()

    async def __aenter__(self) -> _StreamProxy:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self._done()
        await self._stream.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


Start = Callable[[dict[str, Any]], LiveSpan | None]
Finish = Callable[[LiveSpan, dict[str, Any], Any], Any]


def _wrap(cls: Any, *, is_async: bool, start: Start, finish: Finish, method: str = "create") -> None:
    """Replace ``cls.<method>`` so each call made while recording becomes a span: ``start`` opens it
    (or declines with None), ``finish`` records the response and returns what the caller gets."""
    original = getattr(cls, method, None)
    if original is None:  # an SDK version without this method
        return

    if is_async:
        @functools.wraps(original)
        async def acreate(self: Any, *args: Any, **kwargs: Any) -> Any:
            span = start(kwargs)
            if span is None:
                return await original(self, *args, **kwargs)
            try:
                resp = await original(self, *args, **kwargs)
            except BaseException as exc:
                _fail(span, exc)
                raise
            return finish(span, kwargs, resp)

        setattr(cls, method, acreate)
        return

    @functools.wraps(original)
    def create(self: Any, *args: Any, **kwargs: Any) -> Any:
        span = start(kwargs)
        if span is None:
            return original(self, *args, **kwargs)
        try:
            resp = original(self, *args, **kwargs)
        except BaseException as exc:
            _fail(span, exc)
            raise
        return finish(span, kwargs, resp)

    setattr(cls, method, create)


def _openai_start(kwargs: dict[str, Any]) -> LiveSpan | None:
    return _start("openai", kwargs, list(kwargs.get("messages") or []))


def _openai_finish(span: LiveSpan, kwargs: dict[str, Any], resp: Any) -> Any:
    if kwargs.get("stream"):
        return resp if _raw_stream(span, kwargs, resp) else _StreamProxy(resp, span, kwargs, _ChatAccumulator())
    _openai_done(span, kwargs, _parsed(resp))
    return resp


# --------------------------------------------------------------------------- openai responses


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(_dump(b).get("text", "")) for b in content if isinstance(_dump(b), dict))
    return ""


def _responses_messages(kwargs: dict[str, Any]) -> list[dict[str, Any]]:
    """A Responses API request (instructions + input items) as OpenAI chat messages."""
    out: list[dict[str, Any]] = []
    if kwargs.get("instructions"):
        out.append({"role": "system", "content": _text_of(kwargs["instructions"])})
    items = kwargs.get("input")
    if isinstance(items, str):
        return [*out, {"role": "user", "content": items}]
    for raw in items or []:
        item = _dump(raw)
        if not isinstance(item, dict):
            continue
        kind = item.get("type")
        if kind == "function_call":
            call = {"id": item.get("call_id"), "type": "function",
                    "function": {"name": item.get("name"), "arguments": item.get("arguments") or ""}}
            if out and out[-1]["role"] == "assistant" and not out[-1]["content"]:
                out[-1].setdefault("tool_calls", []).append(call)  # parallel calls: one assistant turn
            else:
                out.append({"role": "assistant", "content": "", "tool_calls": [call]})
        elif kind == "function_call_output":
            output = item.get("output")
            out.append({"role": "tool", "tool_call_id": item.get("call_id"),
                        "content": output if isinstance(output, str) else _text_of(output) or str(output)})
        elif "role" in item and kind in (None, "message"):
            out.append({"role": item["role"], "content": _text_of(item.get("content"))})
    return out


def _responses_done(span: LiveSpan, kwargs: dict[str, Any], resp: Any) -> None:
    text, calls = [], []
    for item in getattr(resp, "output", None) or []:
        kind = getattr(item, "type", None)
        if kind == "message":
            text.append(_text_of(_dump(item).get("content")))
        elif kind == "function_call":
            calls.append({"id": item.call_id, "type": "function",
                          "function": {"name": item.name, "arguments": item.arguments}})
    message: dict[str, Any] = {"role": "assistant", "content": "".join(text)}
    if calls:
        message["tool_calls"] = calls
    usage = getattr(resp, "usage", None)
    status = getattr(resp, "status", None)
    reason = "tool_calls" if calls else ("length" if status == "incomplete" else "stop")
    _finish(span, "openai", getattr(resp, "model", None) or str(kwargs.get("model", "")), message, reason,
            _responses_tokens(usage), getattr(resp, "id", None))


class _ResponsesAccumulator:
    """A streamed response ends with an event carrying the whole response: keep that one."""

    def __init__(self) -> None:
        self.response: Any = None

    def add(self, event: Any) -> None:
        if getattr(event, "type", None) in ("response.completed", "response.incomplete", "response.failed"):
            self.response = getattr(event, "response", None)

    def finish(self, span: LiveSpan, kwargs: dict[str, Any]) -> None:
        if self.response is None:
            _finish(span, "openai", str(kwargs.get("model", "")), {"role": "assistant", "content": ""},
                    None, _Tokens(), None)
        else:
            _responses_done(span, kwargs, self.response)


def _responses_start(kwargs: dict[str, Any]) -> LiveSpan | None:
    span = _start("openai", kwargs, _responses_messages(kwargs))
    if span is not None and kwargs.get("max_output_tokens") is not None:
        span.set_attribute("gen_ai.request.max_tokens", kwargs["max_output_tokens"])
    return span


def _responses_finish(span: LiveSpan, kwargs: dict[str, Any], resp: Any) -> Any:
    if kwargs.get("stream"):
        return resp if _raw_stream(span, kwargs, resp) else _StreamProxy(resp, span, kwargs, _ResponsesAccumulator())
    _responses_done(span, kwargs, _parsed(resp))
    return resp


def _patch_openai(module: Any) -> None:
    from openai.resources.chat.completions import AsyncCompletions, Completions

    for method in ("create", "parse"):
        _wrap(Completions, is_async=False, start=_openai_start, finish=_openai_finish, method=method)
        _wrap(AsyncCompletions, is_async=True, start=_openai_start, finish=_openai_finish, method=method)
    try:
        from openai.resources.responses import AsyncResponses, Responses
    except ImportError:  # an SDK from before the Responses API
        return
    for method in ("create", "parse"):
        _wrap(Responses, is_async=False, start=_responses_start, finish=_responses_finish, method=method)
        _wrap(AsyncResponses, is_async=True, start=_responses_start, finish=_responses_finish, method=method)


# --------------------------------------------------------------------------- anthropic


def _anthropic_messages(kwargs: dict[str, Any]) -> list[dict[str, Any]]:
    """Anthropic messages (content blocks) in OpenAI shape, for the OTel parts converter."""
    out: list[dict[str, Any]] = []
    system = kwargs.get("system")
    if system:
        system_text = system if isinstance(system, str) else " ".join(b.get("text", "") for b in system)
        out.append({"role": "system", "content": system_text})
    for m in kwargs.get("messages") or []:
        m = _dump(m)
        content = m.get("content")
        if isinstance(content, str):
            out.append({"role": m.get("role", "user"), "content": content})
            continue
        text: list[str] = []
        calls: list[dict[str, Any]] = []
        for block in content or []:
            block = _dump(block)
            kind = block.get("type")
            if kind == "text":
                text.append(block.get("text", ""))
            elif kind == "tool_use":
                calls.append({"id": block.get("id"), "type": "function",
                              "function": {"name": block.get("name"), "arguments": block.get("input") or {}}})
            elif kind == "tool_result":
                result = block.get("content")
                tool_msg = {"role": "tool", "tool_call_id": block.get("tool_use_id"),
                            "content": result if isinstance(result, str) else _text_of(result) or str(result)}
                if isinstance(block.get("is_error"), bool):
                    tool_msg["is_error"] = block["is_error"]
                out.append(tool_msg)
        if text or calls:
            msg: dict[str, Any] = {"role": m.get("role", "user"), "content": "\n".join(text)}
            if calls:
                msg["tool_calls"] = calls
            out.append(msg)
    return out


def _anthropic_done(span: LiveSpan, kwargs: dict[str, Any], resp: Any) -> None:
    text: list[str] = []
    calls: list[dict[str, Any]] = []
    for block in getattr(resp, "content", None) or []:
        if getattr(block, "type", None) == "text":
            text.append(block.text)
        elif getattr(block, "type", None) == "tool_use":
            calls.append({"id": block.id, "type": "function",
                          "function": {"name": block.name, "arguments": block.input}})
    message: dict[str, Any] = {"role": "assistant", "content": "\n".join(text)}
    if calls:
        message["tool_calls"] = calls
    usage = getattr(resp, "usage", None)
    stop = getattr(resp, "stop_reason", None)
    reason = {"end_turn": "stop", "tool_use": "tool_calls", "max_tokens": "length"}.get(stop or "", stop)
    _finish(span, "anthropic", getattr(resp, "model", None) or str(kwargs.get("model", "")), message, reason,
            _anthropic_tokens(usage), getattr(resp, "id", None))


class _AnthropicStreamAccumulator:
    """Rebuilds the message from Anthropic's stream events (``messages.create(stream=True)``)."""

    def __init__(self) -> None:
        self.message: Any = None
        self.blocks: dict[int, dict[str, Any]] = {}
        self.json: dict[int, list[str]] = {}
        self.stop: str | None = None
        # message_start's usage, updated by message_delta's (cumulative counts; recent APIs send the
        # prompt's counts there too, and a proxy may send them only there).
        self.usage: dict[str, Any] = {}

    def add(self, event: Any) -> None:
        kind = getattr(event, "type", None)
        if kind == "message_start":
            self.message = event.message
            usage = _dump(getattr(event.message, "usage", None))
            if isinstance(usage, dict):
                self.usage.update({k: v for k, v in usage.items() if v is not None})
        elif kind == "content_block_start":
            self.blocks[event.index] = _dump(event.content_block)
        elif kind == "content_block_delta":
            delta = event.delta
            block = self.blocks.setdefault(event.index, {"type": "text", "text": ""})
            if getattr(delta, "type", None) == "text_delta":
                block["text"] = block.get("text", "") + delta.text
            elif getattr(delta, "type", None) == "input_json_delta":
                self.json.setdefault(event.index, []).append(delta.partial_json)
        elif kind == "message_delta":
            self.stop = getattr(event.delta, "stop_reason", None) or self.stop
            usage = _dump(getattr(event, "usage", None))
            if isinstance(usage, dict):
                self.usage.update({k: v for k, v in usage.items() if v is not None})

    def finish(self, span: LiveSpan, kwargs: dict[str, Any]) -> None:
        text, calls = [], []
        for i in sorted(self.blocks):
            block = self.blocks[i]
            if block.get("type") == "text":
                text.append(block.get("text", ""))
            elif block.get("type") == "tool_use":
                raw = "".join(self.json.get(i, []))
                calls.append({"id": block.get("id"), "type": "function",
                              "function": {"name": block.get("name"), "arguments": raw or block.get("input") or {}}})
        message: dict[str, Any] = {"role": "assistant", "content": "\n".join(text)}
        if calls:
            message["tool_calls"] = calls
        reason = {"end_turn": "stop", "tool_use": "tool_calls", "max_tokens": "length"}.get(self.stop or "", self.stop)
        _finish(span, "anthropic", getattr(self.message, "model", None) or str(kwargs.get("model", "")), message,
                reason, _anthropic_tokens(self.usage), getattr(self.message, "id", None))


def _anthropic_start(kwargs: dict[str, Any]) -> LiveSpan | None:
    return _start("anthropic", kwargs, _anthropic_messages(kwargs))


def _anthropic_finish(span: LiveSpan, kwargs: dict[str, Any], resp: Any) -> Any:
    if kwargs.get("stream"):
        return resp if _raw_stream(span, kwargs, resp) else _StreamProxy(resp, span, kwargs,
                                                                         _AnthropicStreamAccumulator())
    _anthropic_done(span, kwargs, _parsed(resp))
    return resp


class _MessageStreamManager:
    """Wraps ``messages.stream(...)``: the span covers the ``with`` block, and the message the SDK
    accumulated while it was read is what gets recorded."""

    def __init__(self, manager: Any, kwargs: dict[str, Any]) -> None:
        self._manager = manager
        self._kwargs = kwargs
        self._span: LiveSpan | None = None
        self._stream: Any = None

    def _end(self, exc: BaseException | None) -> None:
        span, self._span = self._span, None
        if span is None:
            return
        if exc is not None:
            _fail(span, exc)
            return
        snapshot = getattr(self._stream, "_current_snapshot_or_none", lambda: None)()
        if snapshot is None:
            _finish(span, "anthropic", str(self._kwargs.get("model", "")), {"role": "assistant", "content": ""},
                    None, _Tokens(), None)
        else:
            _anthropic_done(span, self._kwargs, snapshot)

    def __enter__(self) -> Any:
        self._span = _anthropic_start(self._kwargs)
        self._stream = self._manager.__enter__()
        return self._stream

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> Any:
        self._end(exc)
        return self._manager.__exit__(exc_type, exc, tb)

    async def __aenter__(self) -> Any:
        self._span = _anthropic_start(self._kwargs)
        self._stream = await self._manager.__aenter__()
        return self._stream

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> Any:
        self._end(exc)
        return await self._manager.__aexit__(exc_type, exc, tb)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._manager, name)


def _wrap_stream_helper(cls: Any) -> None:
    original = getattr(cls, "stream", None)
    if original is None:
        return

    @functools.wraps(original)
    def stream(self: Any, *args: Any, **kwargs: Any) -> Any:
        return _MessageStreamManager(original(self, *args, **kwargs), kwargs)

    cls.stream = stream


def _patch_anthropic(module: Any) -> None:
    from anthropic.resources.messages import AsyncMessages, Messages

    for method in ("create", "parse"):
        _wrap(Messages, is_async=False, start=_anthropic_start, finish=_anthropic_finish, method=method)
        _wrap(AsyncMessages, is_async=True, start=_anthropic_start, finish=_anthropic_finish, method=method)
    _wrap_stream_helper(Messages)
    _wrap_stream_helper(AsyncMessages)


def _patch_openai_agents(module: Any) -> bool:
    from costar.capture.openai_agents import install

    return install(module)


def _patch_mcp(module: Any) -> bool:
    from costar.capture.mcp import install

    return install(module)


# A patcher returns False when the module is not (yet) the SDK it expects: it is tried again later.
_PATCHERS: dict[str, Callable[[Any], bool | None]] = {
    "openai": _patch_openai, "anthropic": _patch_anthropic, "agents": _patch_openai_agents, "mcp": _patch_mcp}


def _patch(name: str) -> None:
    with _LOCK:
        if name in _PATCHED:
            return
        _PATCHED.add(name)
    if _PATCHERS[name](sys.modules[name]) is False:
        with _LOCK:
            _PATCHED.discard(name)


class _PatchOnImport(importlib.abc.MetaPathFinder):
    """Wraps an SDK as soon as it is imported, so instrumenting never imports it eagerly."""

    def find_spec(self, fullname: str, path: Sequence[str] | None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if fullname not in _PATCHERS or fullname in _PATCHED:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return None
        loader = spec.loader
        exec_module = loader.exec_module

        def exec_and_patch(module: ModuleType) -> None:
            exec_module(module)
            sys.modules[fullname] = module
            try:
                _patch(fullname)
            except Exception as exc:  # an SDK version we do not understand: run it unrecorded
                print(f"costar: could not instrument {fullname}: {exc}", file=sys.stderr)

        # Patching this one loader instance is the point: the SDK is wrapped right after it loads.
        loader.exec_module = exec_and_patch  # type: ignore[method-assign]
        return spec


_FINDER = _PatchOnImport()


def instrument() -> None:
    """Record openai/anthropic SDK calls as LLM spans, the OpenAI Agents SDK's own trace spans, and
    MCP tool listings and calls made through the ``mcp`` SDK (idempotent; cheap when nothing records)."""
    for name in _PATCHERS:
        if name in sys.modules:
            _patch(name)
    if _FINDER not in sys.meta_path:
        sys.meta_path.insert(0, _FINDER)
