"""A support agent whose tools live on an MCP server, driven by an OpenAI-compatible model.

Nothing in it knows about coSTAR. ``SHOP_MCP`` says where the server is: a URL (streamable HTTP)
or the path of a server script (started over stdio with this Python). ``SHOP_CLIENT`` picks how it
talks MCP: ``client`` (the SDK's high-level ``Client``, async; the default), ``session`` (a
``ClientSession`` over ``stdio_client`` / ``streamable_http_client``, async), or ``sync`` (a
synchronous agent loop over the sync ``openai`` client, with the MCP session running in a
background thread's event loop). ``MODEL_BASE_URL`` is the model endpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import threading
from collections.abc import AsyncIterator
from typing import Any

from mcp import Client, ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from openai import AsyncOpenAI, OpenAI

MODEL = "gpt-4.1-mini"
SYSTEM = "You are a support agent for the shop. Use the tools."


def _target() -> str | StdioServerParameters:
    where = os.environ["SHOP_MCP"]
    if where.startswith("http"):
        return where
    return StdioServerParameters(command=sys.executable, args=[where], env={**os.environ})


def _openai_tools(listed: Any) -> list[dict[str, Any]]:
    return [{"type": "function", "function": {"name": t.name, "description": t.description or "",
                                              "parameters": t.input_schema}} for t in listed.tools]


def _text(result: Any) -> str:
    parts = [c.text for c in result.content if getattr(c, "type", None) == "text"]
    return "\n".join(parts) if parts else json.dumps(result.structured_content)


@contextlib.asynccontextmanager
async def _session() -> AsyncIterator[Any]:
    """A ready MCP session: the high-level Client, or a ClientSession over a transport."""
    target = _target()
    if os.environ.get("SHOP_CLIENT", "client") == "client":
        async with Client(target) as client:
            yield client
        return
    transport = streamable_http_client(target) if isinstance(target, str) else stdio_client(target)
    async with transport as streams, ClientSession(streams[0], streams[1]) as session:
        await session.initialize()
        yield session


async def run_async(prompt: str) -> str:
    model = AsyncOpenAI(base_url=os.environ["MODEL_BASE_URL"], api_key="sk-test-scripted")
    async with _session() as mcp:
        tools = _openai_tools(await mcp.list_tools())
        messages: list[dict[str, Any]] = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": prompt}]
        while True:
            resp = await model.chat.completions.create(model=MODEL, messages=messages, tools=tools)
            msg = resp.choices[0].message
            messages.append(msg.model_dump(exclude_none=True))
            if not msg.tool_calls:
                return msg.content or ""
            for call in msg.tool_calls:
                result = await mcp.call_tool(call.function.name, json.loads(call.function.arguments))
                messages.append({"role": "tool", "tool_call_id": call.id, "content": _text(result)})


class _BackgroundSession:
    """A synchronous facade: the MCP session lives in its own thread's event loop."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.stop: asyncio.Event | None = None
        self.session: Any = None
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    async def _hold(self) -> None:
        self.stop = asyncio.Event()
        async with _session() as session:
            self.session = session
            self.ready.set()
            await self.stop.wait()

    def __enter__(self) -> _BackgroundSession:
        self.thread.start()
        self.held = asyncio.run_coroutine_threadsafe(self._hold(), self.loop)
        if not self.ready.wait(30):
            raise RuntimeError("the MCP session did not start")
        return self

    def call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def __exit__(self, *exc: Any) -> None:
        assert self.stop is not None
        self.loop.call_soon_threadsafe(self.stop.set)
        self.held.result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(30)


def run_sync(prompt: str) -> str:
    model = OpenAI(base_url=os.environ["MODEL_BASE_URL"], api_key="sk-test-scripted")
    with _BackgroundSession() as bg:
        tools = _openai_tools(bg.call(bg.session.list_tools()))
        messages: list[dict[str, Any]] = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": prompt}]
        while True:
            resp = model.chat.completions.create(model=MODEL, messages=messages, tools=tools)
            msg = resp.choices[0].message
            messages.append(msg.model_dump(exclude_none=True))
            if not msg.tool_calls:
                return msg.content or ""
            for call in msg.tool_calls:
                result = bg.call(bg.session.call_tool(call.function.name, json.loads(call.function.arguments)))
                messages.append({"role": "tool", "tool_call_id": call.id, "content": _text(result)})


def run(prompt: str) -> str:
    if os.environ.get("SHOP_CLIENT") == "sync":
        return run_sync(prompt)
    return asyncio.run(run_async(prompt))


if __name__ == "__main__":
    print(run(sys.stdin.read()))
