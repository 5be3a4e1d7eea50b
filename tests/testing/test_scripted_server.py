"""The scripted model server over real loopback HTTP: matching, faults, consumption, recording."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import pytest

from costar.errors import ConfigError
from costar.testing import Rule, ScriptedModelServer, load_rules
from tests.support.paths import REPO
from tests.support.waiting import wait_for


def _chat(srv: ScriptedModelServer, text: str, *, model: str = "m", system: str | None = None,
          tools: bool = False, timeout: float = 5.0) -> httpx.Response:
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": text}]
    body: dict = {"model": model, "messages": messages}
    if tools:
        body["tools"] = [{"type": "function", "function": {"name": "t", "parameters": {"type": "object"}}}]
    return httpx.post(f"{srv.base_url}/chat/completions", json=body, timeout=timeout)


def _content(resp: httpx.Response) -> str:
    return resp.json()["choices"][0]["message"]["content"]


def test_rules_match_by_user_message_system_model_tools_and_index() -> None:
    rules = [
        Rule(call_index=0, text="first"),
        Rule(model="gpt-4o.*", text="by model"),
        Rule(system="(?i)pirate", text="arr"),
        Rule(has_tools=True, text="with tools"),
        Rule(last_user=r"\bweather\b", text="sunny"),
        Rule(any_message="secret", text="by any message"),
    ]
    with ScriptedModelServer(rules, default="fallback") as srv:
        assert _content(_chat(srv, "weather")) == "first"  # index 0 wins over everything below it
        assert _content(_chat(srv, "hi", model="gpt-4o-mini")) == "by model"
        assert _content(_chat(srv, "hi", system="You are a PIRATE")) == "arr"
        assert _content(_chat(srv, "hi", tools=True)) == "with tools"
        assert _content(_chat(srv, "what's the weather")) == "sunny"
        assert _content(_chat(srv, "hi", system="the secret word")) == "by any message"
        assert _content(_chat(srv, "nothing matches")) == "fallback"
        assert srv.request_count == 7
        assert [r.rule for r in srv.requests] == ["rule 0", "rule 1", "rule 2", "rule 3", "rule 4", "rule 5", None]
        assert srv.requests[1].model == "gpt-4o-mini"


def test_times_consumes_rules_so_sequences_are_scriptable() -> None:
    rules = [Rule(status=500, times=2), Rule(text="finally")]
    with ScriptedModelServer(rules) as srv:
        codes = [_chat(srv, "x").status_code for _ in range(3)]
        assert codes == [500, 500, 200]
        srv.reset()  # rule uses and history start again
        assert _chat(srv, "x").status_code == 500
        assert srv.request_count == 1


def test_tool_calls_json_and_malformed_arguments() -> None:
    rules = [
        Rule(last_user="call", tool_calls=[{"name": "get_weather", "arguments": {"city": "Paris"}}]),
        Rule(last_user="json", json={"answer": 42}),
        Rule(last_user="broken", tool_calls=[{"name": "get_weather"}], malformed_tool_args=True),
    ]
    with ScriptedModelServer(rules) as srv:
        msg = _chat(srv, "call it").json()["choices"][0]
        assert msg["finish_reason"] == "tool_calls"
        assert msg["message"]["tool_calls"][0]["function"] == {"name": "get_weather",
                                                               "arguments": '{"city": "Paris"}'}
        assert _content(_chat(srv, "json")) == '{"answer": 42}'
        args = _chat(srv, "broken").json()["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"]
        with pytest.raises(ValueError):
            __import__("json").loads(args)


def test_error_status_with_retry_after_and_malformed_body() -> None:
    rules = [Rule(last_user="limit", status=429, retry_after=7), Rule(last_user="garbage", malformed_body=True),
             Rule(last_user="gone", status=404, error_message="no such model")]
    with ScriptedModelServer(rules) as srv:
        r = _chat(srv, "limit")
        assert r.status_code == 429
        assert r.headers["retry-after"] == "7"
        r = _chat(srv, "garbage")
        assert r.status_code == 200
        with pytest.raises(ValueError):
            r.json()
        r = _chat(srv, "gone")
        assert r.status_code == 404
        assert r.json()["error"]["message"] == "no such model"


def test_hang_outlasts_client_timeout_and_stop_is_prompt() -> None:
    srv = ScriptedModelServer([Rule(hang=30)]).start()
    try:
        with pytest.raises(httpx.ReadTimeout):
            _chat(srv, "x", timeout=0.3)
        # The abandoned request is dropped once the client hangs up, as a real server would.
        wait_for(lambda: srv.in_flight == 0, timeout=5, what="the abandoned request to be dropped")
    finally:
        t0 = time.perf_counter()
        srv.stop()
    assert time.perf_counter() - t0 < 3.0


def test_latency_does_not_block_other_requests() -> None:
    async def burst(srv: ScriptedModelServer) -> float:
        async with httpx.AsyncClient(limits=httpx.Limits(max_connections=100)) as client:
            body = {"model": "m", "messages": [{"role": "user", "content": "x"}]}
            t0 = time.perf_counter()
            rs = await asyncio.gather(*[client.post(f"{srv.base_url}/chat/completions", json=body)
                                        for _ in range(64)])
            elapsed = time.perf_counter() - t0
        assert all(r.status_code == 200 for r in rs)
        return elapsed

    with ScriptedModelServer([Rule(latency=0.2, text="slow")]) as srv:
        elapsed = asyncio.run(burst(srv))
        assert srv.max_in_flight > 32  # they really overlapped
    assert elapsed < 2.0, f"64 x 200 ms took {elapsed:.2f}s; serial would be 12.8s"


def test_anthropic_route_text_tool_use_and_forced_json_tool() -> None:
    rules = [Rule(last_user="tool", tool_calls=[{"name": "lookup", "arguments": {"q": "x"}}]),
             Rule(last_user="json", json={"ok": True})]
    with ScriptedModelServer(rules, default="hello") as srv:
        def post(text: str, **extra: object) -> dict:
            body = {"model": "claude", "max_tokens": 10, "system": "sys",
                    "messages": [{"role": "user", "content": [{"type": "text", "text": text}]}], **extra}
            return httpx.post(f"{srv.url}/v1/messages", json=body).json()

        assert post("hi")["content"] == [{"type": "text", "text": "hello"}]
        tool = post("tool")
        assert tool["stop_reason"] == "tool_use"
        assert tool["content"][0]["input"] == {"q": "x"}
        forced = post("json", tool_choice={"type": "tool", "name": "answer"})
        assert forced["content"][0] == {"type": "tool_use", "id": forced["content"][0]["id"], "name": "answer",
                                        "input": {"ok": True}}
        assert srv.requests[0].api == "anthropic"


def test_models_route_and_request_recording() -> None:
    with ScriptedModelServer([Rule(model="gpt-x", text="y")]) as srv:
        ids = [m["id"] for m in httpx.get(f"{srv.base_url}/models").json()["data"]]
        assert "gpt-x" in ids
        _chat(srv, "remember me")
        (req,) = srv.requests
        assert req.body["messages"][-1]["content"] == "remember me"
        assert req.index == 0


def test_rules_file_yaml_and_errors(tmp_path: Path) -> None:
    f = tmp_path / "rules.yaml"
    f.write_text(textwrap.dedent("""\
        default: {text: nothing scripted}
        rules:
          - {last_user: weather, tool_calls: [{name: get_weather, arguments: {city: Paris}}]}
          - {call_index: [0, 1], status: 429, retry_after: 1, times: 1}
          - {last_user: data, json: {rows: 3}}
    """))
    rules, default = load_rules(f)
    assert len(rules) == 3
    assert default is not None
    assert default.text == "nothing scripted"
    assert rules[2].json_value == {"rows": 3}
    assert rules[1].call_index == [0, 1]
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules:\n  - {last_user: x, latency: soon}\n")
    with pytest.raises(ConfigError, match=r"rule 0: latency"):
        load_rules(bad)


@pytest.mark.parametrize(("text", "fragment"), [
    ("foo: bar\n", "unknown key 'foo'; a rules file has 'rules'"),
    ("rules: [hello]\n", "rule 0: a rule is a mapping like"),
    ("rules:\n  - {lastuser: hi, text: x}\n", "rule 0: unknown field 'lastuser' (did you mean 'last_user'?)"),
    ("rules:\n  - {last_user: '(', text: x}\n", "rule 0: last_user: invalid regular expression '('"),
    ("rules:\n  - {text: x, jsno: {a: 1}, times: many}\n", "unknown field 'jsno' (did you mean 'json'?); times:"),
    ("just text\n", "a rules file is a mapping"),
])
def test_junk_in_a_rules_file_is_refused_with_where_and_what(tmp_path: Path, text: str, fragment: str) -> None:
    f = tmp_path / "rules.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_rules(f)
    assert fragment in str(err.value)
    assert str(f) in str(err.value)
    assert "\n" not in str(err.value)
    served = subprocess.run([sys.executable, "-m", "costar.cli", "testing", "serve", str(f), "--port", "0"],
                            capture_output=True, text=True, timeout=60)
    assert served.returncode == 2
    assert served.stderr.startswith("error: ")
    assert fragment in served.stderr


def _documented() -> str:
    return (REPO / "docs" / "TESTING.md").read_text(encoding="utf-8")


def test_testing_md_rules_table_is_generated_from_the_rule_model() -> None:
    from costar.testing.rules import rules_reference

    doc = _documented()
    start = doc.index("<!-- rules: generated by costar.testing.rules.rules_reference() -->\n")
    end = doc.index("<!-- end of rules -->")
    assert doc[start:end].split("\n", 1)[1] == rules_reference(), "update docs/TESTING.md from rules_reference()"
    for name, info in Rule.model_fields.items():
        assert f"`{info.alias or name}`" in doc


def test_documented_judge_replies_make_the_real_judges_decide() -> None:
    """The rules docs/TESTING.md gives for each judge's model work against the judges themselves."""
    import re as _re

    import yaml

    from costar.judges.agentic import AgenticJudge
    from costar.judges.base import JudgeContext
    from costar.judges.llm import LlmJudge
    from costar.testing.rules import parse_rules
    from costar.trace.model import Trace

    doc = _documented()
    section = doc[doc.index("<!-- judge replies"):]
    blocks = [yaml.safe_load(b) for b in _re.findall(r"```yaml\n(.*?)```", section, _re.DOTALL)]
    assert len(blocks) == 4
    llm_rules, agentic_rules, distil_rules, refine_rules = (parse_rules(b)[0] for b in blocks)
    trace = Trace(trace_id="t" * 32, output="The total is 42 USD.")
    with ScriptedModelServer(llm_rules + agentic_rules, default={"status": 500}) as srv:
        llm = LlmJudge("states-total", "Does it state the total? {{outputs}}", model=srv.model_uri(), retries=0)
        agentic = AgenticJudge("wrote-file", "Did the agent write total.json?", model=srv.model_uri())
        verdicts = [asyncio.run(j.judge(JudgeContext(trace=trace))) for j in (llm, agentic)]
    assert [v.outcome for v in verdicts] == ["pass", "pass"], [v.error for v in verdicts]
    from costar.align.memalign import DISTILL_SYSTEM
    from costar.refine.assistants import REFLECTION_PROMPT

    assert _re.search(distil_rules[0].system or "", DISTILL_SYSTEM)
    assert _re.search(refine_rules[0].any_message or "", REFLECTION_PROMPT)
    assert set(refine_rules[0].json_value) == {"component", "new_text", "rationale"}


def test_pytest_plugin_fixture_in_a_real_pytest_run(tmp_path: Path) -> None:
    test_file = tmp_path / "test_uses_plugin.py"
    test_file.write_text(textwrap.dedent("""\
        import httpx
        from costar.testing import Rule

        def test_fixture(scripted_model_server):
            srv = scripted_model_server([Rule(text="from fixture")])
            body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
            r = httpx.post(srv.base_url + "/chat/completions", json=body)
            assert r.json()["choices"][0]["message"]["content"] == "from fixture"
    """))
    # The plugin is registered through the package's pytest11 entry point: no -p needed.
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(test_file)],
                          capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 passed" in proc.stdout


def test_scripted_server_in_its_own_process() -> None:
    import httpx as _httpx

    from costar.testing import scripted_server_process

    with scripted_server_process([{"last_user": "ping", "text": "pong"}]) as base:
        body = {"model": "m", "messages": [{"role": "user", "content": "ping"}]}
        r = _httpx.post(f"{base}/chat/completions", json=body, timeout=10)
        assert r.json()["choices"][0]["message"]["content"] == "pong"
    try:
        _httpx.get(f"{base}/models", timeout=1)
    except _httpx.HTTPError:
        pass
    else:
        raise AssertionError("the server process is still serving after the block")


# --------------------------------------------------------------------------- Responses API, Anthropic streaming


TOOL_LOOP = [Rule(tool_results=0, tool_calls=[{"name": "lookup", "arguments": {"id": "C-42"}}]),
             Rule(tool_results=1, text="Ada Lovelace", input_tokens=30, output_tokens=4)]


def test_the_responses_api_plain_and_streamed_with_a_tool_loop() -> None:
    from openai import OpenAI

    with ScriptedModelServer(TOOL_LOOP) as srv:
        client = OpenAI(base_url=srv.base_url, api_key="sk-test")
        first = client.responses.create(model="gpt-4.1-mini", input="who is C-42?", instructions="be brief",
                                        tools=[{"type": "function", "name": "lookup", "parameters": {}}])
        call = first.output[0]
        assert (call.type, call.name, json.loads(call.arguments)) == ("function_call", "lookup", {"id": "C-42"})
        follow_up = [{"role": "user", "content": "who is C-42?"},
                     {"type": "function_call", "call_id": call.call_id, "name": "lookup", "arguments": call.arguments},
                     {"type": "function_call_output", "call_id": call.call_id, "output": '{"name": "Ada"}'}]
        second = client.responses.create(model="gpt-4.1-mini", input=follow_up)
        assert second.output_text == "Ada Lovelace"
        assert (second.usage.input_tokens, second.usage.output_tokens) == (30, 4)
        events = [e.type for e in client.responses.create(model="gpt-4.1-mini", input=follow_up, stream=True)]
        assert events[0] == "response.created"
        assert events[-1] == "response.completed"
        assert "response.output_text.delta" in events
        with client.responses.stream(model="gpt-4.1-mini", input="who is C-42?") as stream:
            final = stream.get_final_response()
        assert final.output[0].type == "function_call"
        assert [r.api for r in srv.requests] == ["responses"] * 4
        assert "be brief" in srv.requests[0].body["instructions"]


def test_anthropic_streaming_both_ways_with_a_tool_loop() -> None:
    from anthropic import Anthropic

    with ScriptedModelServer(TOOL_LOOP) as srv:
        client = Anthropic(base_url=srv.anthropic_base_url, api_key="sk-ant-test")
        with client.messages.stream(model="claude-haiku-4-5", max_tokens=64,
                                    messages=[{"role": "user", "content": "who is C-42?"}]) as stream:
            message = stream.get_final_message()
        use = message.content[0]
        assert (use.type, use.name, use.input, message.stop_reason) == ("tool_use", "lookup", {"id": "C-42"},
                                                                        "tool_use")
        history = [{"role": "user", "content": "who is C-42?"},
                   {"role": "assistant", "content": [use.model_dump(include={"type", "id", "name", "input"})]},
                   {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "Ada"}]}]
        events = list(client.messages.create(model="claude-haiku-4-5", max_tokens=64, messages=history, stream=True))
        assert events[0].type == "message_start"
        assert events[-1].type == "message_stop"
        text = "".join(e.delta.text for e in events if e.type == "content_block_delta")
        assert text == "Ada Lovelace"
        assert next(e for e in events if e.type == "message_delta").usage.output_tokens == 4
        # The tool_result block counts as a tool result: the second rule answered the second request.
        assert [r.rule for r in srv.requests] == ["rule 0", "rule 1"]


def test_tool_results_are_counted_on_every_api() -> None:
    with ScriptedModelServer([Rule(tool_results=2, text="two")], default="other") as srv:
        two_openai = [{"role": "user", "content": "q"}, {"role": "tool", "tool_call_id": "a", "content": "x"},
                      {"role": "tool", "tool_call_id": "b", "content": "y"}]
        r = httpx.post(f"{srv.base_url}/chat/completions", json={"model": "m", "messages": two_openai})
        assert r.json()["choices"][0]["message"]["content"] == "two"
        one_anthropic = [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "a", "content": "x"}]}]
        r = httpx.post(f"{srv.url}/v1/messages", json={"model": "m", "max_tokens": 5, "messages": one_anthropic})
        assert r.json()["content"][0]["text"] == "other"
