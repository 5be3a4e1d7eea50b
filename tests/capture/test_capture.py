"""Zero-code capture: agents using the openai/anthropic SDKs get LLM spans without code changes."""

from __future__ import annotations

import asyncio
import sys
import textwrap
from pathlib import Path

from costar.run.agents import make_agent
from costar.run.harness import Harness, HarnessOptions
from costar.scenario import Scenario
from costar.store.base import Run
from costar.store.sqlite import SQLiteStore
from costar.testing import ScriptedModelServer
from costar.trace.model import SpanKind, Trace
from costar.trace.recorder import current_span

RULES = [
    {"any_message": "rainy", "text": "It is rainy in Paris.", "input_tokens": 40, "output_tokens": 8},
    {"last_user": "weather", "tool_calls": [{"name": "get_weather", "arguments": {"city": "Paris"}, "id": "c1"}]},
    {"text": "hello from the model", "input_tokens": 12, "output_tokens": 5},
]

SDK_AGENT = """
import json, os, sys
from openai import OpenAI
client = OpenAI(base_url=os.environ["MODEL_URL"], api_key="sk-test-not-a-real-key-0000000000")
messages = [{"role": "user", "content": "What is the weather in Paris?"}]
tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
first = client.chat.completions.create(model="gpt-4o-mini", messages=messages, tools=tools)
call = first.choices[0].message.tool_calls[0]
messages += [first.choices[0].message.model_dump(exclude_none=True),
             {"role": "tool", "tool_call_id": call.id, "content": "rainy, 12C"}]
second = client.chat.completions.create(model="gpt-4o-mini", messages=messages, tools=tools)
print(second.choices[0].message.content)
"""


def run_one(store: SQLiteStore, agent: dict, prompt: str = "go") -> Trace:
    a = make_agent(agent)
    run = Run(agent=a.info)
    store.create_run(run)
    res = asyncio.run(Harness(a, store, HarnessOptions()).run([Scenario(id="cap", prompt=prompt)], run))
    return store.get_trace(res.trace_ids[0])


def llm_spans(t: Trace) -> list:
    return [s for s in t.spans if s.kind == SpanKind.LLM]


def test_command_agent_using_the_openai_sdk_is_captured(project: Path, store: SQLiteStore) -> None:
    (project / "agent.py").write_text(textwrap.dedent(SDK_AGENT))
    with ScriptedModelServer(RULES) as srv:
        t = run_one(store, {"type": "command", "command": [sys.executable, "agent.py"],
                            "env": {"MODEL_URL": srv.base_url}})
    assert t.status.value == "ok", t.error
    assert t.output.strip() == "It is rainy in Paris."
    spans = llm_spans(t)
    assert len(spans) == 2
    first, second = spans
    assert first.attributes["gen_ai.request.model"] == "gpt-4o-mini"
    out = first.attributes["gen_ai.output.messages"][0]["parts"]
    assert out[0]["type"] == "tool_call"
    assert out[0]["name"] == "get_weather"
    assert out[0]["arguments"] == {"city": "Paris"}
    assert second.attributes["gen_ai.usage.input_tokens"] == 40
    assert second.attributes["gen_ai.usage.output_tokens"] == 8
    assert second.attributes["costar.usage.cost_usd"] > 0  # gpt-4o-mini is in the price table
    assert t.totals.llm_calls == 2
    assert t.totals.input_tokens > 40
    assert "sk-test-not-a-real-key" not in str([s.attributes for s in t.spans])


def test_capture_can_be_switched_off(project: Path, store: SQLiteStore) -> None:
    (project / "agent.py").write_text(textwrap.dedent(SDK_AGENT))
    with ScriptedModelServer(RULES) as srv:
        t = run_one(store, {"type": "command", "command": [sys.executable, "agent.py"], "capture_sdk": False,
                            "env": {"MODEL_URL": srv.base_url}})
    assert t.status.value == "ok"
    assert llm_spans(t) == []


def test_in_process_agent_sync_async_stream_and_anthropic(project: Path, store: SQLiteStore) -> None:
    (project / "inproc.py").write_text(textwrap.dedent("""
        import anthropic, openai

        def run(task):
            url = task.env["MODEL_URL"]
            oa = openai.OpenAI(base_url=url + "/v1", api_key="x")
            oa.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
            text = "".join(c.choices[0].delta.content or "" for c in oa.chat.completions.create(
                model="gpt-4o", messages=[{"role": "user", "content": "stream please"}], stream=True,
                stream_options={"include_usage": True}) if c.choices)
            import asyncio
            async def a():
                client = openai.AsyncOpenAI(base_url=url + "/v1", api_key="x")
                r = await client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "async"}])
                return r.choices[0].message.content
            asyncio.run(a())
            an = anthropic.Anthropic(base_url=url, api_key="x")
            m = an.messages.create(model="claude-opus-4-1", max_tokens=50, system="be brief",
                                   messages=[{"role": "user", "content": "hi claude"}])
            return text + " | " + m.content[0].text
        """))
    with ScriptedModelServer(RULES) as srv:
        sc = Scenario.model_validate({"id": "cap", "prompt": "go", "setup": {"env": {"MODEL_URL": srv.url}}})
        a = make_agent({"type": "python", "target": "inproc:run"})
        run = Run(agent=a.info)
        store.create_run(run)
        res = asyncio.run(Harness(a, store, HarnessOptions()).run([sc], run))
    t = store.get_trace(res.trace_ids[0])
    assert t.status.value == "ok", t.error
    assert t.output == "hello from the model | hello from the model"
    spans = llm_spans(t)
    assert len(spans) == 4
    providers = sorted(s.attributes["gen_ai.provider.name"] for s in spans)
    assert providers == ["anthropic", "openai", "openai", "openai"]
    streamed = next(s for s in spans if s.attributes["gen_ai.input.messages"][0]["parts"][0]["content"] == "stream please")
    assert streamed.attributes["gen_ai.output.messages"][0]["parts"][0]["content"] == "hello from the model"
    assert streamed.attributes["gen_ai.usage.output_tokens"] == 5
    claude = next(s for s in spans if s.attributes["gen_ai.provider.name"] == "anthropic")
    assert claude.attributes["gen_ai.input.messages"][0]["role"] == "system"
    assert all(s.parent_id == t.spans[0].span_id for s in spans)


def test_model_client_calls_are_not_recorded_twice(project: Path, store: SQLiteStore) -> None:
    (project / "viaclient.py").write_text(textwrap.dedent("""
        from costar.models import ModelClient
        def run(task):
            client = ModelClient(task.env["MODEL_URI"], cache="off")
            return client.chat([{"role": "user", "content": "hi"}]).text
        """))
    with ScriptedModelServer(RULES) as srv:
        sc = Scenario.model_validate({"id": "cap", "prompt": "go", "setup": {"env": {"MODEL_URI": srv.model_uri("m")}}})
        a = make_agent({"type": "python", "target": "viaclient:run"})
        run = Run(agent=a.info)
        store.create_run(run)
        res = asyncio.run(Harness(a, store, HarnessOptions()).run([sc], run))
    t = store.get_trace(res.trace_ids[0])
    assert t.output == "hello from the model"
    assert len(llm_spans(t)) == 1


def test_sdk_calls_outside_a_recording_pass_through() -> None:
    from costar.capture import instrument

    instrument()
    import openai

    with ScriptedModelServer(RULES) as srv:
        r = openai.OpenAI(base_url=srv.base_url, api_key="x").chat.completions.create(
            model="m", messages=[{"role": "user", "content": "hi"}])
    assert r.choices[0].message.content == "hello from the model"
    assert current_span() is None  # nothing was recording, and nothing started to


def test_a_command_agent_stopped_at_its_timeout_still_reports_its_model_calls(project: Path,
                                                                             store: SQLiteStore) -> None:
    # The harness ends a timed-out agent with SIGTERM, which skips atexit, where the captured calls
    # were sent: the trial showed 0 calls and $0 for what was in fact a runaway loop.
    (project / "agent.py").write_text(textwrap.dedent(SDK_AGENT) + "import time\ntime.sleep(120)\n")
    with ScriptedModelServer(RULES) as srv:
        a = make_agent({"type": "command", "command": [sys.executable, "agent.py"],
                        "env": {"MODEL_URL": srv.base_url}})
        run = Run(agent=a.info)
        store.create_run(run)
        sc = Scenario(id="slow", prompt="go", timeout=8)
        res = asyncio.run(Harness(a, store, HarnessOptions()).run([sc], run))
    t = store.get_trace(res.trace_ids[0])
    assert t.status.value == "timeout"
    assert t.totals.llm_calls == 2
    assert t.totals.input_tokens > 40
