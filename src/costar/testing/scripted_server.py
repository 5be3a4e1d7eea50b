"""A scripted model server on loopback: OpenAI chat completions, OpenAI responses and Anthropic messages
(each plain or streamed), answered by rules.

    with ScriptedModelServer([Rule(last_user="weather", tool_calls=[...])]) as srv:
        client = ModelClient(srv.model_uri("gpt-4.1-mini"))

Latency and hangs are asyncio sleeps, so a slow rule never blocks other requests; they end at once
when the server stops, so a test that provokes a hang does not wait for it at teardown.
"""

from __future__ import annotations

import asyncio
import json
import math
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from costar._util.server import BackgroundServer
from costar.testing.rules import IncomingRequest, Rule, load_rules
from costar.testing.wire import (
    Api,
    anthropic_message,
    anthropic_stream_events,
    default_error_message,
    error_body,
    incoming,
    openai_completion,
    openai_stream_events,
    responses_document,
    responses_stream_events,
)

DEFAULT_REPLY = Rule(name="default", text="OK")


@dataclass(frozen=True)
class ReceivedRequest:
    index: int
    api: Api
    model: str
    body: dict[str, Any]
    headers: dict[str, str]
    rule: str | None  # the matching rule's name (or "rule N"), None for the default reply
    received_at: float = field(default_factory=time.time)


class ScriptedModelServer:
    """``context_window``: enforce a context like a real server's: a chat request whose messages and
    tools (counted at ``chars_per_token`` characters of their JSON per token) plus the tokens it asks
    for exceed it gets the 400 "maximum context length" error OpenAI sends, and answered requests
    report that count as their input tokens."""

    def __init__(self, rules: Iterable[Rule | dict[str, Any]] = (), *,
                 default: Rule | dict[str, Any] | str | None = None,
                 host: str = "127.0.0.1", port: int = 0, context_window: int | None = None,
                 chars_per_token: float = 2.0) -> None:
        self.context_window = context_window
        self.chars_per_token = chars_per_token
        self._lock = threading.Lock()
        self._rules: list[Rule] = [_as_rule(r) for r in rules]
        self._uses: list[int] = [0] * len(self._rules)
        self.default = DEFAULT_REPLY if default is None else _as_rule(default)
        self._requests: list[ReceivedRequest] = []
        self._count = 0
        self._in_flight = 0
        self._max_in_flight = 0
        self._stopping = asyncio.Event()
        self.app = self._build_app()
        self._server = BackgroundServer(self.app, host=host, port=port)

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> ScriptedModelServer:
        self._stopping = asyncio.Event()
        self._server.start()
        return self

    def stop(self) -> None:
        loop = self._server.loop
        if loop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(self._stopping.set)
            except RuntimeError:
                pass  # the loop closed between the check and the call
        self._server.stop()

    def __enter__(self) -> ScriptedModelServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # -- addresses ---------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return self._server.url

    @property
    def base_url(self) -> str:
        """OpenAI-style base URL (``.../v1``)."""
        return f"{self._server.url}/v1"

    @property
    def anthropic_base_url(self) -> str:
        """The Anthropic SDK appends ``/v1/messages`` itself."""
        return self._server.url

    def model_uri(self, model: str = "scripted", provider: str = "openai-compatible") -> str:
        base = self.anthropic_base_url if provider == "anthropic" else self.base_url
        return f"{provider}:/{model}?base_url={base}"

    # -- script ------------------------------------------------------------------------------------

    def add_rule(self, rule: Rule | dict[str, Any]) -> None:
        with self._lock:
            self._rules.append(_as_rule(rule))
            self._uses.append(0)

    def set_rules(self, rules: Iterable[Rule | dict[str, Any]]) -> None:
        with self._lock:
            self._rules = [_as_rule(r) for r in rules]
            self._uses = [0] * len(self._rules)

    def reset(self) -> None:
        """Forget received requests and rule uses (the rules themselves stay)."""
        with self._lock:
            self._uses = [0] * len(self._rules)
            self._requests.clear()
            self._count = 0
            self._max_in_flight = 0

    # -- observations ------------------------------------------------------------------------------

    def prompt_tokens(self, body: dict[str, Any]) -> int:
        """A request's prompt as this server counts it against ``context_window``: the text of every
        message (content, tool-call names and arguments) and the tools' JSON at ``chars_per_token``,
        plus 4 tokens a message for its role and framing, as chat templates add."""
        messages = body.get("messages") or body.get("input") or []
        chars = len(json.dumps(body.get("tools") or []))
        for m in messages if isinstance(messages, list) else []:
            if not isinstance(m, dict):
                continue
            content = m.get("content")
            chars += len(content) if isinstance(content, str) else len(json.dumps(content or ""))
            for call in m.get("tool_calls") or []:
                fn = call.get("function") or {}
                args = fn.get("arguments")
                chars += len(str(fn.get("name") or "")) + len(args if isinstance(args, str) else json.dumps(args))
        return math.ceil(chars / self.chars_per_token) + 4 * len(messages)

    @property
    def requests(self) -> list[ReceivedRequest]:
        with self._lock:
            return list(self._requests)

    @property
    def request_count(self) -> int:
        with self._lock:
            return self._count

    @property
    def in_flight(self) -> int:
        with self._lock:
            return self._in_flight

    @property
    def max_in_flight(self) -> int:
        with self._lock:
            return self._max_in_flight

    # -- serving -----------------------------------------------------------------------------------

    def _begin(self, api: Api, body: dict[str, Any],
               headers: dict[str, str]) -> tuple[IncomingRequest, Rule]:
        with self._lock:
            req = incoming(self._count, api, body)
            self._count += 1
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)
            chosen, label = self.default, None
            for i, rule in enumerate(self._rules):
                if rule.times is not None and self._uses[i] >= rule.times:
                    continue
                if rule.matches(req):
                    self._uses[i] += 1
                    chosen, label = rule, rule.name or f"rule {i}"
                    break
            self._requests.append(ReceivedRequest(index=req.index, api=api, model=req.model, body=body,
                                                  headers=headers, rule=label))
            return req, chosen

    def _end(self) -> None:
        with self._lock:
            self._in_flight -= 1

    async def _pause(self, seconds: float, request: Request) -> bool:
        """Sleep without blocking other requests. Ends early, returning False, when the client hangs up
        (as a real server abandons a request whose caller timed out) or the server stops."""
        stopping = asyncio.ensure_future(self._stopping.wait())
        hangup = asyncio.ensure_future(_disconnected(request))
        try:
            done, _ = await asyncio.wait({stopping, hangup}, timeout=seconds,
                                         return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
            hangup.cancel()
        return not done

    async def _answer(self, request: Request, api: Api) -> Response:
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            return JSONResponse(error_body(api, 400, "request body is not valid JSON"), status_code=400)
        if not isinstance(body, dict):
            return JSONResponse(error_body(api, 400, "request body must be a JSON object"), status_code=400)
        req, rule = self._begin(api, body, dict(request.headers))
        try:
            if self.context_window is not None:
                prompt = self.prompt_tokens(body)
                asked = int(body.get("max_tokens") or body.get("max_completion_tokens") or 0)
                if prompt + asked > self.context_window:
                    message = (f"This model's maximum context length is {self.context_window} tokens. However, you "
                               f"requested {prompt + asked} tokens ({prompt} in the messages, {asked} in the "
                               "completion). Please reduce the length of the messages or completion.")
                    return JSONResponse(error_body(api, 400, message), status_code=400)
                if rule.input_tokens is None:
                    rule = rule.model_copy(update={"input_tokens": prompt})
            if rule.latency > 0 and not await self._pause(rule.latency, request):
                return Response(status_code=499)
            if rule.hang and not await self._pause(rule.hang, request):
                return Response(status_code=499)
            if rule.status is not None and rule.status >= 400:
                headers = {"retry-after": _header_value(rule.retry_after)} if rule.retry_after is not None else None
                message = rule.error_message or default_error_message(rule.status, req.model)
                return JSONResponse(error_body(api, rule.status, message), status_code=rule.status,
                                    headers=headers)
            if rule.malformed_body:
                return Response('{"id": "broken", "choices": [', media_type="application/json")
            if body.get("stream"):
                render = {"openai": openai_stream_events, "anthropic": anthropic_stream_events,
                          "responses": responses_stream_events}[api]
                return StreamingResponse(iter(render(rule, req)), media_type="text/event-stream")
            answer = {"openai": openai_completion, "anthropic": anthropic_message, "responses": responses_document}
            return JSONResponse(answer[api](rule, req))
        finally:
            self._end()

    def _models(self) -> dict[str, Any]:
        with self._lock:
            names = sorted({r.model for r in self._rules if r.model} | {"scripted"})
        return {"object": "list", "data": [{"id": n, "object": "model", "created": 0, "owned_by": "costar"}
                                           for n in names]}

    def _build_app(self) -> FastAPI:
        app = FastAPI(title="coSTAR scripted model server")

        @app.post("/v1/chat/completions")
        async def chat_completions(request: Request) -> Response:
            return await self._answer(request, "openai")

        @app.post("/v1/messages")
        async def messages(request: Request) -> Response:
            return await self._answer(request, "anthropic")

        @app.post("/v1/responses")
        async def responses(request: Request) -> Response:
            return await self._answer(request, "responses")

        @app.get("/v1/models")
        async def models() -> dict[str, Any]:
            return self._models()

        return app


async def _disconnected(request: Request) -> None:
    # The body has been read, so the next ASGI message can only be the client's disconnect.
    while (await request.receive())["type"] != "http.disconnect":
        pass


def _header_value(value: float | str) -> str:
    # Integral seconds are written as the integer HTTP requires; fractions are kept for fast tests.
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _as_rule(rule: Rule | dict[str, Any] | str) -> Rule:
    if isinstance(rule, Rule):
        return rule
    if isinstance(rule, str):
        return Rule(text=rule)
    return Rule.model_validate(rule)


def serve_scripted(rules_file: str | Path | None, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Serve rules from a YAML/JSON file until interrupted (what `costar testing serve` runs)."""
    import uvicorn

    rules, default = load_rules(rules_file) if rules_file is not None else ([], None)
    server = ScriptedModelServer(rules, default=default, host=host, port=port)
    uvicorn.run(server.app, host=host, port=port, log_level="info")
