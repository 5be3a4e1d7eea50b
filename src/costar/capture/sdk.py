"""Zero-code capture of model calls made through the ``openai`` and ``anthropic`` SDKs.

``instrument()`` wraps the SDKs' chat-completion and messages calls (sync and async, plain and
streamed). While a coSTAR recording is active each call becomes an LLM span with gen_ai.*
attributes, tokens and cost; with no recording the wrappers only pass the call through. An SDK
imported after ``instrument()`` is wrapped when its import completes.
"""

from __future__ import annotations

import functools
import importlib.abc
import importlib.machinery
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

from costar.trace.genai import finish_reason, openai_messages_to_parts
from costar.trace.model import SpanKind, StatusCode
from costar.trace.recorder import LiveSpan, current_span

_PATCHED: set[str] = set()
_LOCK = threading.Lock()
_PRICES = None
_PARAMS = {"temperature": "gen_ai.request.temperature", "max_tokens": "gen_ai.request.max_tokens",
           "max_completion_tokens": "gen_ai.request.max_tokens", "top_p": "gen_ai.request.top_p",
           "seed": "gen_ai.request.seed"}


def _prices() -> Any:
    global _PRICES
    if _PRICES is None:
        from costar.models.pricing import load_price_table  # only once a call is recorded

        _PRICES = load_price_table(None)
    return _PRICES


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


def _finish(span: LiveSpan, provider: str, model: str, message: dict[str, Any], reason: str | None,
            input_tokens: int, output_tokens: int, response_id: str | None) -> None:
    cost, known = _prices().cost(provider, model, input_tokens, output_tokens)
    otel_reason = finish_reason(reason) if reason else None
    span.set_attributes({
        "gen_ai.response.model": model,
        "gen_ai.usage.input_tokens": input_tokens,
        "gen_ai.usage.output_tokens": output_tokens,
        "gen_ai.response.finish_reasons": [otel_reason] if otel_reason else [],
        "gen_ai.output.messages": openai_messages_to_parts([{**message, "finish_reason": reason or "stop"}]),
        "costar.usage.cost_usd": cost,
        "costar.cost_known": known,
        **({"gen_ai.response.id": response_id} if response_id else {}),
    })
    span.set_status(StatusCode.OK)
    span.end()


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
            getattr(choice, "finish_reason", None), getattr(usage, "prompt_tokens", 0) or 0,
            getattr(usage, "completion_tokens", 0) or 0, getattr(resp, "id", None))


class _OpenAIStreamAccumulator:
    """Rebuilds the assistant message from streamed chunks, so a streamed call is recorded whole."""

    def __init__(self) -> None:
        self.text: list[str] = []
        self.tool_calls: dict[int, dict[str, Any]] = {}
        self.reason: str | None = None
        self.model = ""
        self.id: str | None = None
        self.usage = (0, 0)

    def add(self, chunk: Any) -> None:
        self.model = getattr(chunk, "model", None) or self.model
        self.id = getattr(chunk, "id", None) or self.id
        usage = getattr(chunk, "usage", None)
        if usage is not None:
            self.usage = (usage.prompt_tokens or 0, usage.completion_tokens or 0)
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


class _StreamProxy:
    """Wraps an SDK stream: iterating it accumulates the chunks; its end (or close) ends the span."""

    def __init__(self, stream: Any, span: LiveSpan, kwargs: dict[str, Any]) -> None:
        self._stream = stream
        self._span = span
        self._kwargs = kwargs
        self._acc = _OpenAIStreamAccumulator()
        self._closed = False

    def _done(self) -> None:
        if not self._closed:
            self._closed = True
            acc = self._acc
            _finish(self._span, "openai", acc.model or str(self._kwargs.get("model", "")), acc.message(),
                    acc.reason, acc.usage[0], acc.usage[1], acc.id)

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


def _wrap(cls: Any, *, is_async: bool, start: Start, finish: Finish) -> None:
    """Replace ``cls.create`` so each call made while recording becomes a span: ``start`` opens it
    (or declines with None), ``finish`` records the response and returns what the caller gets."""
    original = cls.create

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

        cls.create = acreate
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

    cls.create = create


def _openai_start(kwargs: dict[str, Any]) -> LiveSpan | None:
    return _start("openai", kwargs, list(kwargs.get("messages") or []))


def _openai_finish(span: LiveSpan, kwargs: dict[str, Any], resp: Any) -> Any:
    if kwargs.get("stream"):
        return _StreamProxy(resp, span, kwargs)
    _openai_done(span, kwargs, resp)
    return resp


def _patch_openai(module: Any) -> None:
    from openai.resources.chat.completions import AsyncCompletions, Completions

    _wrap(Completions, is_async=False, start=_openai_start, finish=_openai_finish)
    _wrap(AsyncCompletions, is_async=True, start=_openai_start, finish=_openai_finish)


# --------------------------------------------------------------------------- anthropic


def _anthropic_messages(kwargs: dict[str, Any]) -> list[dict[str, Any]]:
    """Anthropic messages (content blocks) in OpenAI shape, for the OTel parts converter."""
    out: list[dict[str, Any]] = []
    system = kwargs.get("system")
    if system:
        text = system if isinstance(system, str) else " ".join(b.get("text", "") for b in system)
        out.append({"role": "system", "content": text})
    for m in kwargs.get("messages") or []:
        m = _dump(m)
        content = m.get("content")
        if isinstance(content, str):
            out.append({"role": m.get("role", "user"), "content": content})
            continue
        text, calls = [], []
        for block in content or []:
            block = _dump(block)
            kind = block.get("type")
            if kind == "text":
                text.append(block.get("text", ""))
            elif kind == "tool_use":
                calls.append({"id": block.get("id"), "type": "function",
                              "function": {"name": block.get("name"), "arguments": block.get("input") or {}}})
            elif kind == "tool_result":
                out.append({"role": "tool", "tool_call_id": block.get("tool_use_id"),
                            "content": block.get("content") if isinstance(block.get("content"), str)
                            else str(block.get("content"))})
        if text or calls:
            msg: dict[str, Any] = {"role": m.get("role", "user"), "content": "\n".join(text)}
            if calls:
                msg["tool_calls"] = calls
            out.append(msg)
    return out


def _anthropic_done(span: LiveSpan, kwargs: dict[str, Any], resp: Any) -> None:
    text, calls = [], []
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
    reason = {"end_turn": "stop", "tool_use": "tool_calls", "max_tokens": "length"}.get(
        getattr(resp, "stop_reason", None) or "", getattr(resp, "stop_reason", None))
    _finish(span, "anthropic", getattr(resp, "model", None) or str(kwargs.get("model", "")), message, reason,
            getattr(usage, "input_tokens", 0) or 0, getattr(usage, "output_tokens", 0) or 0,
            getattr(resp, "id", None))


def _anthropic_start(kwargs: dict[str, Any]) -> LiveSpan | None:
    # Streamed Anthropic calls pass through unrecorded (their event stream is not rebuilt).
    return None if kwargs.get("stream") else _start("anthropic", kwargs, _anthropic_messages(kwargs))


def _anthropic_finish(span: LiveSpan, kwargs: dict[str, Any], resp: Any) -> Any:
    _anthropic_done(span, kwargs, resp)
    return resp


def _patch_anthropic(module: Any) -> None:
    from anthropic.resources.messages import AsyncMessages, Messages

    _wrap(Messages, is_async=False, start=_anthropic_start, finish=_anthropic_finish)
    _wrap(AsyncMessages, is_async=True, start=_anthropic_start, finish=_anthropic_finish)


_PATCHERS: dict[str, Callable[[Any], None]] = {"openai": _patch_openai, "anthropic": _patch_anthropic}


def _patch(name: str) -> None:
    with _LOCK:
        if name in _PATCHED:
            return
        _PATCHED.add(name)
    _PATCHERS[name](sys.modules[name])


class _PatchOnImport(importlib.abc.MetaPathFinder):
    """Wraps an SDK as soon as it is imported, so instrumenting never imports it eagerly."""

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname not in _PATCHERS or fullname in _PATCHED:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return None
        loader = spec.loader
        exec_module = loader.exec_module

        def exec_and_patch(module: Any) -> None:
            exec_module(module)
            sys.modules[fullname] = module
            try:
                _patch(fullname)
            except Exception as exc:  # an SDK version we do not understand: run it unrecorded
                print(f"costar: could not instrument {fullname}: {exc}", file=sys.stderr)

        loader.exec_module = exec_and_patch  # type: ignore[method-assign]
        return spec


_FINDER = _PatchOnImport()


def instrument() -> None:
    """Record openai/anthropic SDK calls as LLM spans (idempotent; cheap when nothing records)."""
    for name in _PATCHERS:
        if name in sys.modules:
            _patch(name)
    if _FINDER not in sys.meta_path:
        sys.meta_path.insert(0, _FINDER)
