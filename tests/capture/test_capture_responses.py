"""SDK capture of the OpenAI Responses API (sync and async, plain, ``stream=True`` and ``.stream()``),
``chat.completions.parse``, and the Anthropic async stream helper: each call is one LLM span with
the request's messages, the response's tool calls, tokens and cost."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from anthropic import AsyncAnthropic
from openai import AsyncOpenAI, OpenAI

from costar.capture import instrument
from costar.testing import Rule, ScriptedModelServer
from costar.trace.model import SpanKind
from costar.trace.recorder import Recording

RULES = [Rule(tool_results=0, tool_calls=[{"name": "lookup", "arguments": {"id": "C-42"}}], input_tokens=50,
              output_tokens=7),
         Rule(tool_results=1, text="Ada Lovelace", input_tokens=60, output_tokens=3)]
FOLLOW_UP = [{"role": "user", "content": "who is C-42?"},
             {"type": "function_call", "call_id": "call_x", "name": "lookup", "arguments": '{"id": "C-42"}'},
             {"type": "function_call_output", "call_id": "call_x", "output": '{"name": "Ada"}'}]


def _llm(rec: Recording) -> list[Any]:
    return [s for s in rec.spans() if s.kind == SpanKind.LLM]


def _check_pair(first: Any, second: Any) -> None:
    parts = first.attributes["gen_ai.output.messages"][0]["parts"]
    assert parts == [{"type": "tool_call", "id": parts[0]["id"], "name": "lookup", "arguments": {"id": "C-42"}}]
    assert (first.attributes["gen_ai.usage.input_tokens"], first.attributes["gen_ai.usage.output_tokens"]) == (50, 7)
    assert first.attributes["costar.usage.cost_usd"] > 0
    inputs = second.attributes["gen_ai.input.messages"]
    assert [m["role"] for m in inputs] == ["system", "user", "assistant", "tool"]
    assert inputs[3]["parts"] == [{"type": "tool_call_response", "id": "call_x", "response": '{"name": "Ada"}'}]
    assert second.attributes["gen_ai.output.messages"][0]["parts"] == [{"type": "text", "content": "Ada Lovelace"}]


def test_responses_api_sync_plain_streamed_and_stream_helper() -> None:
    instrument()
    with ScriptedModelServer(RULES) as srv:
        client = OpenAI(base_url=srv.base_url, api_key="sk-test")
        args: dict[str, Any] = {"model": "gpt-4.1-mini", "instructions": "be brief"}
        for mode in ("plain", "stream", "helper"):
            with Recording("agent") as rec:
                if mode == "plain":
                    client.responses.create(input="who is C-42?", **args)
                    client.responses.create(input=FOLLOW_UP, **args)
                elif mode == "stream":
                    list(client.responses.create(input="who is C-42?", stream=True, **args))
                    list(client.responses.create(input=FOLLOW_UP, stream=True, **args))
                else:
                    for given in ("who is C-42?", FOLLOW_UP):
                        with client.responses.stream(input=given, **args) as stream:
                            stream.get_final_response()
            spans = _llm(rec)
            assert len(spans) == 2, mode
            _check_pair(*spans)


def test_responses_api_async_plain_and_streamed() -> None:
    instrument()

    async def main(client: AsyncOpenAI) -> Recording:
        with Recording("agent") as rec:
            await client.responses.create(model="gpt-4.1-mini", instructions="be brief", input="who is C-42?")
            stream = await client.responses.create(model="gpt-4.1-mini", instructions="be brief", input=FOLLOW_UP,
                                                   stream=True)
            async for _ in stream:
                pass
        return rec

    with ScriptedModelServer(RULES) as srv:
        rec = asyncio.run(main(AsyncOpenAI(base_url=srv.base_url, api_key="sk-test")))
    _check_pair(*_llm(rec))


def test_chat_completions_parse_is_captured() -> None:
    instrument()
    with ScriptedModelServer([Rule(json={"name": "Ada"}, input_tokens=9, output_tokens=4)]) as srv:
        client = OpenAI(base_url=srv.base_url, api_key="sk-test")
        with Recording("agent") as rec:
            parsed = client.chat.completions.parse(model="gpt-4.1-mini", messages=[{"role": "user", "content": "x"}])
    assert json.loads(parsed.choices[0].message.content) == {"name": "Ada"}
    (span,) = _llm(rec)
    assert (span.attributes["gen_ai.usage.input_tokens"], span.attributes["gen_ai.usage.output_tokens"]) == (9, 4)


def test_anthropic_async_stream_helper_is_captured() -> None:
    instrument()

    async def main(client: AsyncAnthropic) -> Recording:
        with Recording("agent") as rec:
            async with client.messages.stream(model="claude-haiku-4-5", max_tokens=64,
                                              messages=[{"role": "user", "content": "who?"}]) as stream:
                async for _ in stream:
                    pass
        return rec

    with ScriptedModelServer(RULES) as srv:
        rec = asyncio.run(main(AsyncAnthropic(base_url=srv.anthropic_base_url, api_key="sk-ant-test")))
    (span,) = _llm(rec)
    assert span.attributes["gen_ai.provider.name"] == "anthropic"
    assert span.attributes["gen_ai.output.messages"][0]["parts"][0]["name"] == "lookup"
    assert (span.attributes["gen_ai.usage.input_tokens"], span.attributes["gen_ai.usage.output_tokens"]) == (50, 7)
