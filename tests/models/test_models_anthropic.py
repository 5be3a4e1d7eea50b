"""The Anthropic provider through the official SDK, against the scripted server's /v1/messages route."""

from __future__ import annotations

import pytest

from costar.models import ModelClient, ModelOutputError, ModelRateLimitError, RetryPolicy
from costar.testing import Rule, ScriptedModelServer

TOOL = {"type": "function", "function": {"name": "lookup_order", "description": "Find an order",
                                         "parameters": {"type": "object", "properties": {"id": {"type": "string"}},
                                                        "required": ["id"]}}}
FAST = RetryPolicy(max_retries=2, base_delay=0.01)


@pytest.fixture(scope="module")
def srv() -> ScriptedModelServer:
    with ScriptedModelServer() as server:
        yield server


def claude(srv: ScriptedModelServer, **kw: object) -> ModelClient:
    return ModelClient(srv.model_uri("claude-haiku-4-5", provider="anthropic"), api_key="sk-ant-test",
                       retry=FAST, **kw)


def test_text_with_system_prompt_and_cost(srv: ScriptedModelServer) -> None:
    srv.set_rules([Rule(system="terse", last_user="Hello", text="Hi.")])
    srv.reset()
    r = claude(srv).chat([{"role": "system", "content": "Be terse."}, {"role": "user", "content": "Hello"}],
                         max_tokens=100, temperature=0)
    assert r.text == "Hi."
    assert r.finish_reason == "stop"
    assert r.provider == "anthropic"
    assert r.cost_known
    assert r.cost_usd > 0
    body = srv.requests[0].body
    assert body["system"] == "Be terse."
    assert body["max_tokens"] == 100
    assert body["messages"] == [{"role": "user", "content": [{"type": "text", "text": "Hello"}]}]
    assert "sk-ant-test" in srv.requests[0].headers["authorization"]


def test_tool_use_and_tool_result_round_trip(srv: ScriptedModelServer) -> None:
    srv.set_rules([Rule(any_message="shipped", text="Your order has shipped."),
                   Rule(has_tools=True, tool_calls=[{"name": "lookup_order", "arguments": {"id": "A1"}}])])
    srv.reset()
    c = claude(srv)
    r = c.chat("Where is order A1?", tools=[TOOL])
    assert r.finish_reason == "tool_calls"
    (call,) = r.tool_calls
    assert call.name == "lookup_order"
    assert call.arguments == {"id": "A1"}
    sent_tool = srv.requests[0].body["tools"][0]
    assert sent_tool["name"] == "lookup_order"
    assert sent_tool["input_schema"]["required"] == ["id"]

    history = [{"role": "user", "content": "Where is order A1?"}, r.message(),
               {"role": "tool", "tool_call_id": call.id, "content": "shipped"}]
    final = c.chat(history, tools=[TOOL])
    assert final.text == "Your order has shipped."
    turns = srv.requests[1].body["messages"]
    assert [t["role"] for t in turns] == ["user", "assistant", "user"]
    assert turns[1]["content"][0] == {"type": "tool_use", "id": call.id, "name": "lookup_order", "input": {"id": "A1"}}
    assert turns[2]["content"][0]["type"] == "tool_result"
    assert turns[2]["content"][0]["tool_use_id"] == call.id


def test_json_schema_through_a_forced_tool(srv: ScriptedModelServer) -> None:
    srv.set_rules([Rule(json={"sentiment": "positive", "score": 0.9})])
    srv.reset()
    schema = {"type": "object", "properties": {"sentiment": {"enum": ["positive", "negative"]},
                                               "score": {"type": "number"}}, "required": ["sentiment", "score"]}
    r = claude(srv).chat("I love it", json_schema=schema)
    assert r.parsed == {"sentiment": "positive", "score": 0.9}
    assert r.tool_calls == []
    body = srv.requests[0].body
    assert body["tool_choice"] == {"type": "tool", "name": "structured_output"}
    assert body["tools"][-1]["input_schema"] == schema


def test_malformed_tool_input_and_rate_limits(srv: ScriptedModelServer) -> None:
    srv.set_rules([Rule(tool_calls=[{"name": "lookup_order"}], malformed_tool_args=True)])
    with pytest.raises(ModelOutputError):
        claude(srv, output_retries=1).chat("x", tools=[TOOL])
    srv.set_rules([Rule(status=429, retry_after=0)])
    with pytest.raises(ModelRateLimitError):
        claude(srv).chat("x")
