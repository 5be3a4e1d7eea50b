"""serve_openai_compatible over any client, and the embedded local model (marked local_model)."""

from __future__ import annotations

import httpx
import openai
import pytest

from costar.models import ModelClient, RetryPolicy
from costar.models.serve import start_openai_compatible
from costar.testing import Rule, ScriptedModelServer

WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Get the current weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
PERSON = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
          "required": ["name", "age"]}


def test_served_client_speaks_the_openai_api_to_the_official_sdk() -> None:
    rules = [Rule(has_tools=True, tool_calls=[{"name": "get_weather", "arguments": {"city": "Lima"}}]),
             Rule(last_user="person", json={"name": "Ana", "age": 41}),
             Rule(last_user="missing", status=404)]
    with ScriptedModelServer(rules, default="served text") as upstream:
        backing = ModelClient(upstream.model_uri("gpt-4.1-mini"), retry=RetryPolicy(max_retries=0))
        server = start_openai_compatible(backing)
        try:
            sdk = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)
            assert [m.id for m in sdk.models.list().data] == ["gpt-4.1-mini"]
            r = sdk.chat.completions.create(model="whatever", messages=[{"role": "user", "content": "hi"}])
            assert r.choices[0].message.content == "served text"
            assert r.usage.prompt_tokens > 0
            r = sdk.chat.completions.create(model="x", messages=[{"role": "user", "content": "weather?"}],
                                            tools=[WEATHER_TOOL])
            call = r.choices[0].message.tool_calls[0]
            assert r.choices[0].finish_reason == "tool_calls"
            assert call.function.name == "get_weather"
            assert call.function.arguments == '{"city": "Lima"}'
            r = sdk.chat.completions.create(
                model="x", messages=[{"role": "user", "content": "person"}],
                response_format={"type": "json_schema", "json_schema": {"name": "p", "schema": PERSON}})
            assert r.choices[0].message.content == '{"name": "Ana", "age": 41}'
            assert upstream.requests[-1].body["response_format"]["json_schema"]["schema"] == PERSON
            with pytest.raises(openai.NotFoundError, match="not found"):
                sdk.chat.completions.create(model="x", messages=[{"role": "user", "content": "missing"}])
            bad = httpx.post(f"{server.url}/v1/chat/completions", json={"messages": "nope"})
            assert bad.status_code == 400
        finally:
            server.stop()


@pytest.mark.local_model
def test_local_smollm2_chat_tool_call_and_json_schema() -> None:
    client = ModelClient("local:/smollm2")

    r = client.chat([{"role": "system", "content": "You are concise."},
                     {"role": "user", "content": "Say hello."}], max_tokens=16, temperature=0)
    assert isinstance(r.text, str)
    assert r.text.strip()
    assert r.usage.input_tokens > 0
    assert 0 < r.usage.output_tokens <= 16
    assert r.provider == "local"
    assert r.cost_usd == 0
    assert r.cost_known

    r = client.chat("What is the weather in Paris?", tools=[WEATHER_TOOL], tool_choice="required", temperature=0)
    assert r.finish_reason == "tool_calls"
    (call,) = r.tool_calls
    assert call.name == "get_weather"
    assert isinstance(call.arguments.get("city"), str)
    # The tool result goes back as the next turn and the model answers in text.
    follow = client.chat([{"role": "user", "content": "What is the weather in Paris?"}, r.message(),
                          {"role": "tool", "tool_call_id": call.id, "content": "sunny, 21 C"}],
                         max_tokens=24, temperature=0)
    assert isinstance(follow.text, str)

    r = client.chat("Bob is 30 years old. Give his name and age as JSON.", json_schema=PERSON,
                    max_tokens=64, temperature=0)
    assert isinstance(r.parsed, dict)
    assert isinstance(r.parsed["name"], str)
    assert isinstance(r.parsed["age"], int)
    assert len(r.parsed["name"]) <= 256  # strings are bounded for grammar-constrained decoding
