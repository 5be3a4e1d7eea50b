"""Prompt caching through SDK capture: every provider path, plain and streamed, records the whole
prompt as ``gen_ai.usage.input_tokens`` (the OpenTelemetry GenAI convention), the cached parts as
``gen_ai.usage.cache_read.input_tokens`` / ``gen_ai.usage.cache_creation.input_tokens``, and prices
each part at its own rate. Real HTTP to the scripted server through the real openai and anthropic SDKs.

The prices below are the built-in table's, written out so the arithmetic can be checked by hand:
gpt-4o 2.50 input / 1.25 cached / 10.00 output; gpt-4.1 2.00 / 0.50 cached / 8.00 output (no cache
write price: writes cost the input price); claude-sonnet-4-5 3.00 input / 0.30 read / 3.75 write /
15.00 output (USD per million tokens).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from costar.capture import instrument
from costar.testing import Rule, ScriptedModelServer
from costar.trace.model import Span, SpanKind
from costar.trace.recorder import Recording

anthropic = pytest.importorskip("anthropic")
openai = pytest.importorskip("openai")

# The whole prompt is 1000 tokens; 600 of them were read from the cache, 300 written to it.
PROMPT, READ, WRITE, OUT = 1000, 600, 300, 50

# gpt-4o: 400 uncached at 2.50, 600 cached at 1.25, 50 out at 10.00.
GPT_4O_COST = (400 * 2.50 + 600 * 1.25 + 50 * 10.00) / 1e6
# gpt-4.1 with an OpenAI cache write of 100: 300 uncached and 100 written at 2.00, 600 cached at 0.50, 50 out at 8.
GPT_41_COST = (300 * 2.00 + 100 * 2.00 + 600 * 0.50 + 50 * 8.00) / 1e6
# claude-sonnet-4-5: 100 uncached at 3.00, 600 read at 0.30, 300 written at 3.75, 50 out at 15.00.
CLAUDE_COST = (100 * 3.00 + 600 * 0.30 + 300 * 3.75 + 50 * 15.00) / 1e6

RULES = [
    Rule(api="openai", text="cached answer", input_tokens=PROMPT, output_tokens=OUT, cache_read_tokens=READ),
    Rule(api="responses", text="cached answer", input_tokens=PROMPT, output_tokens=OUT, cache_read_tokens=READ,
         cache_write_tokens=100),
    Rule(api="anthropic", text="cached answer", input_tokens=PROMPT, output_tokens=OUT, cache_read_tokens=READ,
         cache_write_tokens=WRITE),
]
MESSAGES = [{"role": "user", "content": "the long shared context, then a question"}]


@pytest.fixture(scope="module")
def server() -> Iterator[ScriptedModelServer]:
    instrument()
    with ScriptedModelServer(RULES) as srv:
        yield srv


def recorded(call: Callable[[], Any]) -> Span:
    """The one LLM span ``call`` records."""
    with Recording("trial") as rec:
        call()
    spans = [s for s in rec.spans() if s.kind == SpanKind.LLM]
    assert len(spans) == 1
    return spans[0]


def assert_usage(span: Span, *, read: int, write: int, cost: float) -> None:
    a = span.attributes
    assert a["gen_ai.usage.input_tokens"] == PROMPT
    assert a["gen_ai.usage.output_tokens"] == OUT
    assert a["gen_ai.usage.cache_read.input_tokens"] == read
    assert a["gen_ai.usage.cache_creation.input_tokens"] == write
    assert a["costar.cost_known"] is True
    assert a["costar.usage.cost_usd"] == pytest.approx(cost, rel=1e-12)


# --------------------------------------------------------------------------- OpenAI chat completions


def test_openai_chat_plain(server: ScriptedModelServer) -> None:
    client = openai.OpenAI(base_url=server.base_url, api_key="sk-test")
    span = recorded(lambda: client.chat.completions.create(model="gpt-4o", messages=MESSAGES))
    assert_usage(span, read=READ, write=0, cost=GPT_4O_COST)


def test_openai_chat_streamed(server: ScriptedModelServer) -> None:
    client = openai.OpenAI(base_url=server.base_url, api_key="sk-test")

    def call() -> None:
        stream = client.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True,
                                                stream_options={"include_usage": True})
        assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "cached answer"

    assert_usage(recorded(call), read=READ, write=0, cost=GPT_4O_COST)


def test_openai_chat_streamed_async(server: ScriptedModelServer) -> None:
    async def call() -> None:
        client = openai.AsyncOpenAI(base_url=server.base_url, api_key="sk-test")
        stream = await client.chat.completions.create(model="gpt-4o-2024-08-06", messages=MESSAGES, stream=True,
                                                      stream_options={"include_usage": True})
        async for _ in stream:
            pass

    assert_usage(recorded(lambda: asyncio.run(call())), read=READ, write=0, cost=GPT_4O_COST)


# --------------------------------------------------------------------------- OpenAI Responses API


def test_openai_responses_plain(server: ScriptedModelServer) -> None:
    client = openai.OpenAI(base_url=server.base_url, api_key="sk-test")
    span = recorded(lambda: client.responses.create(model="gpt-4.1", input="the long shared context"))
    assert_usage(span, read=READ, write=100, cost=GPT_41_COST)


def test_openai_responses_streamed(server: ScriptedModelServer) -> None:
    client = openai.OpenAI(base_url=server.base_url, api_key="sk-test")

    def call() -> None:
        for _ in client.responses.create(model="gpt-4.1", input="the long shared context", stream=True):
            pass

    assert_usage(recorded(call), read=READ, write=100, cost=GPT_41_COST)


# --------------------------------------------------------------------------- Anthropic messages


def anthropic_client(server: ScriptedModelServer) -> Any:
    return anthropic.Anthropic(base_url=server.anthropic_base_url, api_key="sk-ant-test")


def test_anthropic_plain(server: ScriptedModelServer) -> None:
    client = anthropic_client(server)
    reply: list[Any] = []
    span = recorded(lambda: reply.append(client.messages.create(model="claude-sonnet-4-5", max_tokens=100,
                                                                messages=MESSAGES)))
    # What Anthropic reports: input_tokens without the cached parts, which coSTAR adds back.
    assert reply[0].usage.input_tokens == PROMPT - READ - WRITE
    assert_usage(span, read=READ, write=WRITE, cost=CLAUDE_COST)


def test_anthropic_create_streamed(server: ScriptedModelServer) -> None:
    client = anthropic_client(server)

    def call() -> None:
        for _ in client.messages.create(model="claude-sonnet-4-5", max_tokens=100, messages=MESSAGES, stream=True):
            pass

    assert_usage(recorded(call), read=READ, write=WRITE, cost=CLAUDE_COST)


def test_anthropic_stream_helper(server: ScriptedModelServer) -> None:
    client = anthropic_client(server)

    def call() -> None:
        with client.messages.stream(model="claude-sonnet-4-5", max_tokens=100, messages=MESSAGES) as stream:
            assert stream.get_final_text() == "cached answer"

    assert_usage(recorded(call), read=READ, write=WRITE, cost=CLAUDE_COST)


def test_anthropic_stream_helper_async(server: ScriptedModelServer) -> None:
    async def call() -> None:
        client = anthropic.AsyncAnthropic(base_url=server.anthropic_base_url, api_key="sk-ant-test")
        async with client.messages.stream(model="claude-sonnet-4-5", max_tokens=100, messages=MESSAGES) as stream:
            await stream.get_final_message()

    assert_usage(recorded(lambda: asyncio.run(call())), read=READ, write=WRITE, cost=CLAUDE_COST)


def test_anthropic_one_hour_cache_writes_are_priced_apart() -> None:
    """A 1-hour cache write costs 2x the input price, a 5-minute one 1.25x."""
    from costar.capture.sdk import _anthropic_tokens

    usage = anthropic.types.Usage(input_tokens=100, output_tokens=OUT, cache_read_input_tokens=READ,
                                  cache_creation_input_tokens=WRITE,
                                  cache_creation={"ephemeral_5m_input_tokens": 200, "ephemeral_1h_input_tokens": 100})
    tokens = _anthropic_tokens(usage)
    assert (tokens.input, tokens.cache_read, tokens.cache_write, tokens.cache_write_1h) == (PROMPT, READ, WRITE, 100)
    from costar.models.pricing import PriceTable

    cost, known = PriceTable().cost("anthropic", "claude-sonnet-4-5", PROMPT, OUT, cache_read=READ,
                                    cache_write=WRITE, cache_write_1h=100)
    assert known
    assert cost == pytest.approx((100 * 3.00 + 600 * 0.30 + 200 * 3.75 + 100 * 6.00 + 50 * 15.00) / 1e6, rel=1e-12)


def test_a_call_without_caching_records_zero_cached_tokens(server: ScriptedModelServer) -> None:
    """No cache in the usage: the cache attributes say 0 and the prompt is priced at the input price."""
    client = openai.OpenAI(base_url=server.base_url, api_key="sk-test")
    server.set_rules([Rule(api="openai", text="x", input_tokens=PROMPT, output_tokens=OUT), *RULES])
    try:
        span = recorded(lambda: client.chat.completions.create(model="gpt-4o", messages=MESSAGES))
    finally:
        server.set_rules(RULES)
    assert span.attributes["gen_ai.usage.cache_read.input_tokens"] == 0
    assert span.attributes["gen_ai.usage.cache_creation.input_tokens"] == 0
    assert span.attributes["costar.usage.cost_usd"] == pytest.approx((1000 * 2.50 + 50 * 10.00) / 1e6, rel=1e-12)


def test_a_rule_whose_cached_parts_exceed_the_prompt_is_refused() -> None:
    from costar.errors import ConfigError
    from costar.testing.rules import parse_rules

    with pytest.raises(ConfigError) as err:
        parse_rules([{"text": "x", "input_tokens": 100, "cache_read_tokens": 80, "cache_write_tokens": 30}])
    assert "\n" not in str(err.value)
    assert "rule 0: <rule>: cache_read_tokens + cache_write_tokens (110) exceed input_tokens (100)" in str(err.value)
