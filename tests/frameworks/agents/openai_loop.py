"""A plain tool loop over the official ``openai`` SDK: sync or async, streamed or not.

As a command agent: ``python openai_loop.py`` (prompt on stdin, mode in ``LOOP_MODE``).
In-process: ``openai_loop:run_sync`` / ``run_async`` / ``run_sync_stream`` / ``run_async_stream``.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

from openai import AsyncOpenAI, OpenAI
from shop import OPENAI_TOOLS, SYSTEM, Shop

MODEL = "gpt-4.1-mini"


def _collect(chunks: list[Any]) -> dict[str, Any]:
    """Rebuild the assistant message from streamed chunks (what a streaming agent does)."""
    text, calls = [], {}
    for chunk in chunks:
        for choice in chunk.choices:
            if choice.delta.content:
                text.append(choice.delta.content)
            for tc in choice.delta.tool_calls or []:
                slot = calls.setdefault(tc.index, {"id": tc.id, "type": "function",
                                                   "function": {"name": "", "arguments": ""}})
                slot["function"]["name"] += tc.function.name or ""
                slot["function"]["arguments"] += tc.function.arguments or ""
    msg: dict[str, Any] = {"role": "assistant", "content": "".join(text)}
    if calls:
        msg["tool_calls"] = [calls[i] for i in sorted(calls)]
    return msg


def _message(resp: Any) -> dict[str, Any]:
    return resp.choices[0].message.model_dump(exclude_none=True)


def _step(messages: list[dict[str, Any]], msg: dict[str, Any], shop: Shop) -> str | None:
    messages.append(msg)
    if not msg.get("tool_calls"):
        return msg.get("content") or ""
    for call in msg["tool_calls"]:
        result, _failed = shop.call(call["function"]["name"], call["function"]["arguments"])
        messages.append({"role": "tool", "tool_call_id": call["id"], "content": result})
    return None


def loop(prompt: str, workspace: Path, base_url: str, *, stream: bool) -> str:
    client = OpenAI(base_url=base_url, api_key="sk-test-scripted")
    shop = Shop(workspace)
    messages: list[dict[str, Any]] = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": prompt}]
    while True:
        if stream:
            chunks = list(client.chat.completions.create(model=MODEL, messages=messages, tools=OPENAI_TOOLS,
                                                         stream=True, stream_options={"include_usage": True}))
            msg = _collect(chunks)
        else:
            msg = _message(client.chat.completions.create(model=MODEL, messages=messages, tools=OPENAI_TOOLS))
        answer = _step(messages, msg, shop)
        if answer is not None:
            shop.write_answer(answer)
            return answer


async def aloop(prompt: str, workspace: Path, base_url: str, *, stream: bool) -> str:
    client = AsyncOpenAI(base_url=base_url, api_key="sk-test-scripted")
    shop = Shop(workspace)
    messages: list[dict[str, Any]] = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": prompt}]
    while True:
        if stream:
            response = await client.chat.completions.create(model=MODEL, messages=messages, tools=OPENAI_TOOLS,
                                                            stream=True, stream_options={"include_usage": True})
            msg = _collect([c async for c in response])
        else:
            msg = _message(await client.chat.completions.create(model=MODEL, messages=messages, tools=OPENAI_TOOLS))
        answer = _step(messages, msg, shop)
        if answer is not None:
            shop.write_answer(answer)
            return answer


def run_sync(task: Any) -> str:
    return loop(task.prompt, task.workspace, task.env["MODEL_BASE_URL"], stream=False)


def run_sync_stream(task: Any) -> str:
    return loop(task.prompt, task.workspace, task.env["MODEL_BASE_URL"], stream=True)


async def run_async(task: Any) -> str:
    return await aloop(task.prompt, task.workspace, task.env["MODEL_BASE_URL"], stream=False)


async def run_async_stream(task: Any) -> str:
    return await aloop(task.prompt, task.workspace, task.env["MODEL_BASE_URL"], stream=True)


if __name__ == "__main__":
    mode = os.environ.get("LOOP_MODE", "sync")
    prompt, base = sys.stdin.read(), os.environ["MODEL_BASE_URL"]
    if mode.startswith("async"):
        print(asyncio.run(aloop(prompt, Path.cwd(), base, stream=mode.endswith("stream"))))
    else:
        print(loop(prompt, Path.cwd(), base, stream=mode.endswith("stream")))
