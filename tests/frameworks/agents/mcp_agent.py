"""An agent whose tools live on a real MCP server: it starts the server over stdio with the official
``mcp`` SDK, offers the server's tools to the model (``openai`` SDK), and calls them through MCP.

A failed MCP call (``isError``) goes back to the model as the text the server returned.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

from mcp import Client, StdioServerParameters
from openai import AsyncOpenAI
from shop import SYSTEM, Shop

MODEL = "gpt-4.1-mini"
SERVER = StdioServerParameters(command=sys.executable, args=[str(Path(__file__).with_name("mcp_shop_server.py"))],
                               env={**os.environ}, cwd=str(Path.cwd()))


def _text(result: Any) -> str:
    parts = [c.text for c in result.content if getattr(c, "type", None) == "text"]
    if parts:
        return "\n".join(parts)
    return json.dumps(result.structured_content)


async def main(prompt: str) -> str:
    model = AsyncOpenAI(base_url=os.environ["MODEL_BASE_URL"], api_key="sk-test-scripted")
    async with Client(SERVER) as mcp:
        listed = await mcp.list_tools()
        tools = [{"type": "function", "function": {"name": t.name, "description": t.description or "",
                                                    "parameters": t.input_schema}} for t in listed.tools]
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


if __name__ == "__main__":
    answer = asyncio.run(main(sys.stdin.read()))
    Shop(Path.cwd()).write_answer(answer)
    print(answer)
