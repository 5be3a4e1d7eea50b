"""ModelClient against the scripted server over real loopback HTTP."""

from __future__ import annotations

import asyncio
import socket
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from pydantic import BaseModel

from costar.errors import ConfigError
from costar.models import (
    Cassette,
    CassetteMissError,
    EndpointUnreachableError,
    MissingAPIKeyError,
    ModelClient,
    ModelNotFoundError,
    ModelOutputError,
    ModelRateLimitError,
    ModelServerError,
    ModelTimeoutError,
    RetryPolicy,
    UnknownProviderError,
)
from costar.testing import Rule, ScriptedModelServer
from costar.trace.model import SpanKind, StatusCode, compute_totals
from costar.trace.recorder import Recording

FAST = RetryPolicy(max_retries=3, base_delay=0.01, max_delay=0.05)
WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
PERSON = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
          "required": ["name", "age"]}


@pytest.fixture(scope="module")
def shared_server() -> ScriptedModelServer:
    # One server for the module: starting and stopping uvicorn per test would dominate the run time.
    with ScriptedModelServer() as server:
        yield server


@pytest.fixture
def srv(shared_server: ScriptedModelServer) -> ScriptedModelServer:
    shared_server.set_rules([])
    shared_server.default = Rule(text="Hello from the script")
    shared_server.reset()
    return shared_server


def client(srv: ScriptedModelServer, model: str = "gpt-4.1-mini", **kw: object) -> ModelClient:
    kw.setdefault("retry", FAST)
    return ModelClient(srv.model_uri(model), **kw)


def test_text_reply_with_usage_cost_and_latency(srv: ScriptedModelServer) -> None:
    r = client(srv).chat([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}])
    assert r.text == "Hello from the script"
    assert r.finish_reason == "stop"
    assert r.tool_calls == []
    assert r.parsed is None
    assert r.usage.input_tokens > 0
    assert r.usage.output_tokens > 0
    assert r.cost_known
    assert r.cost_usd > 0  # gpt-4.1-mini is in the built-in price table
    assert r.latency_s > 0
    assert r.retries == 0
    assert not r.cache_hit
    assert r.provider == "openai-compatible"
    assert r.model == "gpt-4.1-mini"
    assert srv.requests[0].body["messages"][0] == {"role": "system", "content": "Be brief."}


def test_unknown_model_costs_zero_and_says_so(srv: ScriptedModelServer) -> None:
    r = client(srv, "my-finetune").chat("Hi")
    assert r.cost_usd == 0
    assert r.cost_known is False


def test_price_overrides_from_a_dict(srv: ScriptedModelServer) -> None:
    srv.set_rules([Rule(text="x", input_tokens=1_000_000, output_tokens=500_000)])
    r = client(srv, "my-finetune", prices={"my-finetune": {"input": 1.0, "output": 4.0}}).chat("Hi")
    assert r.cost_known
    assert r.cost_usd == pytest.approx(3.0)


def test_tool_calls_are_parsed_and_round_trip_as_a_message(srv: ScriptedModelServer) -> None:
    srv.set_rules([Rule(has_tools=True, tool_calls=[{"name": "get_weather", "arguments": {"city": "Paris"}}])])
    r = client(srv).chat("Weather in Paris?", tools=[WEATHER_TOOL])
    assert r.finish_reason == "tool_calls"
    (call,) = r.tool_calls
    assert call.name == "get_weather"
    assert call.arguments == {"city": "Paris"}
    assert call.id
    sent = srv.requests[0].body
    assert sent["tools"][0]["function"]["name"] == "get_weather"
    msg = r.message()
    assert msg["role"] == "assistant"
    assert msg["tool_calls"][0]["function"]["name"] == "get_weather"
    # The assistant message and a tool result go back in the next turn unchanged.
    history = [{"role": "user", "content": "Weather in Paris?"}, msg,
               {"role": "tool", "tool_call_id": call.id, "content": "rainy"}]
    srv.set_rules([Rule(any_message="rainy", text="It is rainy.")])
    assert client(srv).chat(history, tools=[WEATHER_TOOL]).text == "It is rainy."


def test_json_schema_output_dict_and_pydantic(srv: ScriptedModelServer) -> None:
    srv.set_rules([Rule(json={"name": "Bob", "age": 30})])
    r = client(srv).chat("Bob is 30", json_schema=PERSON)
    assert r.parsed == {"name": "Bob", "age": 30}
    fmt = srv.requests[0].body["response_format"]
    assert fmt["type"] == "json_schema"
    assert fmt["json_schema"]["schema"] == PERSON

    class Person(BaseModel):
        name: str
        age: int

    r = client(srv).chat("Bob is 30", json_schema=Person)
    assert Person.model_validate(r.parsed) == Person(name="Bob", age=30)
    assert srv.requests[1].body["response_format"]["json_schema"]["name"] == "Person"


def test_429_honours_retry_after_then_succeeds(srv: ScriptedModelServer) -> None:
    srv.set_rules([Rule(status=429, retry_after=0.4, times=1)])
    t0 = time.perf_counter()
    r = client(srv).chat("Hi")
    elapsed = time.perf_counter() - t0
    assert r.text == "Hello from the script"
    assert r.retries == 1
    assert elapsed >= 0.4, "Retry-After was not honoured"
    assert srv.request_count == 2


def test_500_twice_then_success_counts_retries(srv: ScriptedModelServer) -> None:
    srv.set_rules([Rule(status=500, times=2)])
    r = client(srv).chat("Hi")
    assert r.retries == 2
    assert srv.request_count == 3


def test_malformed_body_is_retried(srv: ScriptedModelServer) -> None:
    srv.set_rules([Rule(malformed_body=True, times=1)])
    assert client(srv).chat("Hi").retries == 1


def test_retry_exhaustion_raises_one_line_errors(srv: ScriptedModelServer) -> None:
    srv.set_rules([Rule(status=503)])
    with pytest.raises(ModelServerError) as err:
        client(srv, retry=RetryPolicy(max_retries=2, base_delay=0.01)).chat("Hi")
    assert srv.request_count == 3
    msg = str(err.value)
    assert "\n" not in msg
    assert "HTTP 503" in msg
    assert "3 attempts" in msg
    assert srv.base_url in msg

    srv.set_rules([Rule(status=429, retry_after=0)])
    with pytest.raises(ModelRateLimitError, match="requests_per_minute"):
        client(srv, retry=RetryPolicy(max_retries=1, base_delay=0.01)).chat("Hi")


def test_retry_after_longer_than_the_policy_allows_gives_up_at_once(srv: ScriptedModelServer) -> None:
    srv.set_rules([Rule(status=429, retry_after=3600)])
    t0 = time.perf_counter()
    with pytest.raises(ModelRateLimitError):
        client(srv, retry=RetryPolicy(max_retries=3, max_retry_after=5)).chat("Hi")
    assert time.perf_counter() - t0 < 2
    assert srv.request_count == 1


def test_timeout_is_retried_then_raised(srv: ScriptedModelServer) -> None:
    srv.set_rules([Rule(hang=30, times=1)])
    r = client(srv, timeout=0.3).chat("Hi")
    assert r.retries == 1
    assert r.text == "Hello from the script"

    srv.set_rules([Rule(hang=30)])
    with pytest.raises(ModelTimeoutError, match=r"within 0.3s \(2 attempts\)"):
        client(srv, timeout=0.3, retry=RetryPolicy(max_retries=1, base_delay=0.01)).chat("Hi")


def test_malformed_json_is_retried_then_model_output_error(srv: ScriptedModelServer) -> None:
    srv.set_rules([Rule(text="Sure! Here is the JSON: {name: Bob", times=1),
                   Rule(json={"name": "Bob"}, times=1),  # valid JSON, but "age" is missing
                   Rule(json={"name": "Bob", "age": 30})])
    r = client(srv).chat("Bob", json_schema=PERSON)
    assert r.parsed == {"name": "Bob", "age": 30}
    assert r.retries == 2

    srv.set_rules([Rule(text="not json at all")])
    srv.reset()
    with pytest.raises(ModelOutputError, match="not valid JSON") as err:
        client(srv, output_retries=2).chat("Bob", json_schema=PERSON)
    assert srv.request_count == 3
    assert "\n" not in str(err.value)


def test_malformed_tool_arguments_are_retried_then_model_output_error(srv: ScriptedModelServer) -> None:
    call = [{"name": "get_weather", "arguments": {"city": "Paris"}}]
    srv.set_rules([Rule(tool_calls=call, malformed_tool_args=True, times=1), Rule(tool_calls=call)])
    r = client(srv).chat("Weather?", tools=[WEATHER_TOOL])
    assert r.tool_calls[0].arguments == {"city": "Paris"}
    assert r.retries == 1

    srv.set_rules([Rule(tool_calls=call, malformed_tool_args=True)])
    with pytest.raises(ModelOutputError, match="arguments that are not JSON"):
        client(srv, output_retries=1).chat("Weather?", tools=[WEATHER_TOOL])

    srv.set_rules([Rule(tool_calls=[{"name": "launch_missiles"}])])
    with pytest.raises(ModelOutputError, match="unknown tool 'launch_missiles'"):
        client(srv, output_retries=0).chat("Weather?", tools=[WEATHER_TOOL])


def test_unreachable_endpoint_names_the_url_and_the_fix() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1"
    c = ModelClient(f"openai-compatible:/m?base_url={url}", retry=RetryPolicy(max_retries=1, base_delay=0.01))
    with pytest.raises(EndpointUnreachableError) as err:
        c.chat("Hi")
    msg = str(err.value)
    assert url in msg
    assert "start the model server" in msg
    assert "\n" not in msg


def test_model_not_found_names_the_model_and_where_to_look(srv: ScriptedModelServer) -> None:
    srv.set_rules([Rule(model="no-such-model", status=404)])
    with pytest.raises(ModelNotFoundError) as err:
        client(srv, "no-such-model").chat("Hi")
    msg = str(err.value)
    assert "'no-such-model' not found" in msg
    assert f"{srv.base_url}/models" in msg
    assert srv.request_count == 1  # 404 is not retried


def test_missing_api_key_fails_before_any_network(srv: ScriptedModelServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(MissingAPIKeyError, match=r"^OPENAI_API_KEY is not set: export OPENAI_API_KEY="):
        ModelClient(f"openai:/gpt-4.1-mini?base_url={srv.base_url}")
    with pytest.raises(MissingAPIKeyError, match="ANTHROPIC_API_KEY"):
        monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
        ModelClient("anthropic:/claude-sonnet-4-5")
    assert srv.request_count == 0
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    assert ModelClient(f"openai:/gpt-4.1-mini?base_url={srv.base_url}").chat("Hi").text
    assert srv.requests[0].headers["authorization"] == "Bearer sk-test"


def test_unknown_provider_lists_known_ones() -> None:
    with pytest.raises(UnknownProviderError) as err:
        ModelClient("gemini-ish:/x")
    assert isinstance(err.value, ConfigError)
    assert "openai" in str(err.value)
    assert "anthropic" in str(err.value)
    assert "local" in str(err.value)


def test_cache_hit_is_identical_fast_free_and_sends_nothing(srv: ScriptedModelServer, tmp_path: Path) -> None:
    srv.set_rules([Rule(tool_calls=[{"name": "get_weather", "arguments": {"city": "Oslo"}}])])
    c = client(srv, cache="read_write", cache_dir=tmp_path)
    first = c.chat("Weather in Oslo?", tools=[WEATHER_TOOL], temperature=0)
    assert not first.cache_hit
    assert first.cost_usd > 0
    hits = [c.chat("Weather in Oslo?", tools=[WEATHER_TOOL], temperature=0) for _ in range(50)]
    assert srv.request_count == 1
    hit = hits[-1]
    assert hit.cache_hit
    assert hit.cost_usd == 0
    assert (hit.tool_calls, hit.text, hit.usage, hit.raw) == (first.tool_calls, first.text, first.usage, first.raw)
    assert statistics.median(h.latency_s for h in hits) < 0.003
    # Any change in the request is a different key, and read_only never writes.
    c.chat("Weather in Oslo?", tools=[WEATHER_TOOL], temperature=0.5)
    assert srv.request_count == 2
    ro = client(srv, cache="read_only", cache_dir=tmp_path)
    assert ro.chat("Weather in Oslo?", tools=[WEATHER_TOOL], temperature=0).cache_hit
    ro.chat("never cached")
    ro.chat("never cached")
    assert srv.request_count == 4


def test_cassette_records_then_replays_with_the_server_gone(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    tape = tmp_path / "tapes" / "suite.jsonl"
    rules = [Rule(last_user="weather", tool_calls=[{"name": "get_weather", "arguments": {"city": "Rome"}}]),
             Rule(last_user="again", text="first take", times=1), Rule(last_user="again", text="second take")]
    with ScriptedModelServer(rules) as srv:
        rec = ModelClient(f"openai:/gpt-4.1-mini?base_url={srv.base_url}", api_key="sk-rec",
                          cassette=tape, cassette_mode="record")
        recorded = rec.chat("weather in Rome?", tools=[WEATHER_TOOL])
        takes = [rec.chat("again").text, rec.chat("again").text]
    assert takes == ["first take", "second take"]
    assert len(tape.read_text().splitlines()) == 3

    # Replay needs no server, no API key and no base URL: CI runs it offline and for free.
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    play = ModelClient("openai:/gpt-4.1-mini", cassette=Cassette(tape, "replay"))
    replayed = play.chat("weather in Rome?", tools=[WEATHER_TOOL])
    assert replayed.replayed
    assert replayed.tool_calls == recorded.tool_calls
    assert replayed.usage == recorded.usage
    assert replayed.cost_usd == recorded.cost_usd
    assert [play.chat("again").text, play.chat("again").text] == takes  # repeated requests in recorded order
    with pytest.raises(CassetteMissError) as err:
        play.chat("something never recorded")
    msg = str(err.value)
    assert str(tape) in msg
    assert "COSTAR_CASSETTE_MODE=record_missing" in msg
    assert "\n" not in msg


def test_cassette_record_missing_keeps_old_and_adds_new(tmp_path: Path) -> None:
    tape = tmp_path / "t.jsonl"
    with ScriptedModelServer(default="live") as srv:
        uri = srv.model_uri("gpt-4.1-mini")
        ModelClient(uri, cassette=tape, cassette_mode="record").chat("one")
        c = ModelClient(uri, cassette=tape, cassette_mode="record_missing")
        assert c.chat("one").replayed
        assert not c.chat("two").replayed
        assert srv.request_count == 2
    assert len(tape.read_text().splitlines()) == 2


def test_concurrency_limit_async_and_threads(srv: ScriptedModelServer) -> None:
    srv.set_rules([Rule(latency=0.1, text="slow")])
    # Limits are per model and process-wide: a model name of its own keeps other tests unaffected.
    c = client(srv, "limited-model", max_concurrency=3)

    async def many() -> None:
        await asyncio.gather(*[c.achat(f"q{i}") for i in range(12)])

    asyncio.run(many())
    assert srv.request_count == 12
    assert srv.max_in_flight == 3

    srv.reset()
    c2 = client(srv, "limited-model", max_concurrency=2)
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: c2.chat(f"t{i}"), range(8)))
    assert srv.request_count == 8
    assert srv.max_in_flight == 2


def test_rate_limit_paces_requests(srv: ScriptedModelServer) -> None:
    c = client(srv, "paced-model", requests_per_minute=1200)  # 20 per second, burst of 20 -> use 25
    t0 = time.perf_counter()
    with ThreadPoolExecutor(25) as pool:
        list(pool.map(lambda i: c.chat(f"r{i}"), range(25)))
    # 20 go at once (one second's burst); the other 5 follow at 50 ms intervals.
    assert time.perf_counter() - t0 >= 0.2


def test_llm_span_follows_the_conventions(srv: ScriptedModelServer) -> None:
    srv.set_rules([Rule(tool_calls=[{"name": "get_weather", "arguments": {"city": "Paris"}}], times=1),
                   Rule(status=500, times=1)])
    c = client(srv)
    with Recording("agent") as rec:
        c.chat([{"role": "system", "content": "sys"}, {"role": "user", "content": "Weather?"}],
               tools=[WEATHER_TOOL], temperature=0.2, max_tokens=50, seed=7)
        c.chat("again")
    spans = [s for s in rec.spans() if s.kind == SpanKind.LLM]
    assert len(spans) == 2
    first, second = spans
    a = first.attributes
    assert first.name == "chat gpt-4.1-mini"
    assert first.parent_id == rec.root.span_id
    assert first.status.code == StatusCode.OK
    assert a["gen_ai.operation.name"] == "chat"
    assert a["gen_ai.provider.name"] == "openai-compatible"
    assert a["gen_ai.request.model"] == "gpt-4.1-mini"
    assert a["gen_ai.response.model"] == "gpt-4.1-mini"
    assert (a["gen_ai.request.temperature"], a["gen_ai.request.max_tokens"], a["gen_ai.request.seed"]) == (0.2, 50, 7)
    assert a["gen_ai.usage.input_tokens"] > 0
    assert a["gen_ai.usage.output_tokens"] > 0
    assert a["gen_ai.response.finish_reasons"] == ["tool_call"]
    assert a["gen_ai.response.id"]
    assert a["gen_ai.input.messages"] == [{"role": "system", "parts": [{"type": "text", "content": "sys"}]},
                                          {"role": "user", "parts": [{"type": "text", "content": "Weather?"}]}]
    (out,) = a["gen_ai.output.messages"]
    assert out["role"] == "assistant"
    assert out["finish_reason"] == "tool_call"
    assert out["parts"] == [{"type": "tool_call", "id": out["parts"][0]["id"], "name": "get_weather",
                             "arguments": {"city": "Paris"}}]
    assert a["gen_ai.tool.definitions"][0]["name"] == "get_weather"
    assert a["costar.usage.cost_usd"] > 0
    assert a["costar.retries"] == 0
    assert a["costar.cache_hit"] is False
    assert second.attributes["costar.retries"] == 1
    totals = compute_totals(rec.spans(), 1.0)
    assert totals.llm_calls == 2
    assert totals.retries == 1
    assert totals.cost_usd > 0


def test_failed_call_is_an_error_span(srv: ScriptedModelServer) -> None:
    srv.set_rules([Rule(status=404)])
    with Recording("agent") as rec, pytest.raises(ModelNotFoundError):
        client(srv).chat("Hi")
    (span,) = [s for s in rec.spans() if s.kind == SpanKind.LLM]
    assert span.status.code == StatusCode.ERROR
    assert "ModelNotFoundError" in (span.status.message or "")
    assert span.attributes["error.type"] == "ModelNotFoundError"


def test_no_recording_means_no_spans_and_still_works(srv: ScriptedModelServer) -> None:
    assert client(srv).chat("Hi").text


def test_async_api_matches_sync(srv: ScriptedModelServer) -> None:
    srv.set_rules([Rule(json={"name": "Ann", "age": 5})])
    c = client(srv)
    sync = c.chat("x", json_schema=PERSON)
    # A fresh event loop each time: the client keeps one HTTP pool per loop.
    for _ in range(2):
        r = asyncio.run(c.achat("x", json_schema=PERSON))
        assert r.parsed == sync.parsed
        assert r.finish_reason == sync.finish_reason
