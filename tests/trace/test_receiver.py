"""The OTLP receiver, end to end: real OpenTelemetry SDKs in real child processes."""

from __future__ import annotations

import asyncio
import gzip
import json
import sys
import textwrap
from pathlib import Path

import httpx

from costar.run.agents import make_agent
from costar.run.harness import Harness, HarnessOptions
from costar.scenario import Scenario
from costar.store.base import Run
from costar.store.sqlite import SQLiteStore
from costar.trace.model import SpanKind, TraceStatus
from costar.trace.receiver import OtlpReceiver
from tests.support.waiting import wait_for

OTEL_AGENT = """
import json, sys
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

provider = TracerProvider()
provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
trace.set_tracer_provider(provider)
tracer = trace.get_tracer("weather-agent")
question = sys.stdin.read().strip()
with tracer.start_as_current_span("invoke_agent weather") as agent:
    agent.set_attribute("gen_ai.operation.name", "invoke_agent")
    with tracer.start_as_current_span("chat gpt-4") as chat:
        chat.set_attribute("gen_ai.operation.name", "chat")
        chat.set_attribute("gen_ai.request.model", "gpt-4")
        chat.set_attribute("gen_ai.usage.input_tokens", 97)
        chat.set_attribute("gen_ai.usage.output_tokens", 52)
        chat.set_attribute("gen_ai.input.messages", json.dumps(
            [{"role": "user", "parts": [{"type": "text", "content": question}]}]))
        chat.set_attribute("gen_ai.output.messages", json.dumps([{"role": "assistant", "parts": [
            {"type": "tool_call", "id": "c1", "name": "get_weather", "arguments": {"city": "Paris"}}],
            "finish_reason": "tool_call"}]))
    with tracer.start_as_current_span("execute_tool get_weather") as tool:
        tool.set_attribute("gen_ai.operation.name", "execute_tool")
        tool.set_attribute("gen_ai.tool.name", "get_weather")
        tool.set_attribute("gen_ai.tool.call.id", "c1")
provider.shutdown()
print("It is rainy in Paris.")
"""

HOSTILE_AGENT = """
import os, httpx
url = os.environ["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"]
codes = []
codes.append(httpx.post(url, content=b"\\x0a\\xff\\xff garbage", headers={"Content-Type": "application/x-protobuf"}).status_code)
codes.append(httpx.post(url, content=b"{not json", headers={"Content-Type": "application/json"}).status_code)
codes.append(httpx.post(url, content=b"x" * (300 * 1024), headers={"Content-Type": "application/x-protobuf"}).status_code)
codes.append(httpx.post(url, content=b"{}", headers={"Content-Type": "text/plain"}).status_code)
print(" ".join(map(str, codes)))
"""


def run_command_agent(project: Path, store: SQLiteStore, script: str, prompt: str, **agent_cfg) -> object:
    (project / "agent.py").write_text(textwrap.dedent(script))
    agent = make_agent({"type": "command", "command": [sys.executable, "agent.py"], **agent_cfg})
    run = Run(agent=agent.info)
    store.create_run(run)
    res = asyncio.run(Harness(agent, store, HarnessOptions()).run([Scenario(id="otel", prompt=prompt)], run))
    return store.get_trace(res.trace_ids[0])


def test_an_otel_instrumented_agent_is_captured_without_code_changes(project: Path, store: SQLiteStore) -> None:
    t = run_command_agent(project, store, OTEL_AGENT, "Weather in Paris?")
    assert t.status == TraceStatus.OK, t.error
    names = {s.name: s for s in t.spans}
    assert {"invoke_agent weather", "chat gpt-4", "execute_tool get_weather"} <= set(names)
    turn = names["command"]
    assert names["invoke_agent weather"].parent_id == turn.span_id  # re-homed under the harness's span
    chat = names["chat gpt-4"]
    assert chat.parent_id == names["invoke_agent weather"].span_id
    assert chat.kind == SpanKind.LLM
    assert names["execute_tool get_weather"].kind == SpanKind.TOOL
    assert chat.attributes["gen_ai.input.messages"][0]["parts"][0]["content"] == "Weather in Paris?"
    assert all(s.trace_id == t.trace_id for s in t.spans)
    assert t.totals.input_tokens == 97
    assert t.totals.output_tokens == 52
    assert t.totals.llm_calls == 1
    assert t.totals.tool_calls == 1


def test_malformed_and_oversized_payloads_are_rejected_and_the_run_goes_on(project: Path, store: SQLiteStore,
                                                                           monkeypatch) -> None:
    monkeypatch.setattr("costar.trace.receiver.DEFAULT_MAX_BODY", 256 * 1024)
    t = run_command_agent(project, store, HOSTILE_AGENT, "go")
    assert t.status == TraceStatus.OK, t.error
    assert t.output.split() == ["400", "400", "413", "415"]
    rejected = t.metadata["otlp_rejected"]
    assert len(rejected) == 4
    assert any("exceeds" in r for r in rejected)


def test_receiver_accepts_json_and_gzip_and_routes_by_path_or_resource() -> None:
    from costar.trace.model import Span
    from costar.trace.otlp import spans_to_export_request

    span = Span(trace_id="1" * 32, span_id="2" * 16, name="chat m", kind=SpanKind.LLM, start_ns=1, end_ns=2,
                attributes={"gen_ai.operation.name": "chat"})
    body = spans_to_export_request([span], {"service.name": "x", "costar.trial.key": "k2"}).SerializeToString()
    from google.protobuf.json_format import MessageToDict

    with OtlpReceiver(max_body=1 << 20) as rx:
        r1 = httpx.post(rx.endpoint_for("k1") + "/v1/traces", content=gzip.compress(body),
                        headers={"Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"})
        assert r1.status_code == 200
        as_json = MessageToDict(spans_to_export_request([span], {}))
        # OTLP/JSON carries ids as hex, not base64
        for rs in as_json["resourceSpans"]:
            for ss in rs["scopeSpans"]:
                for sp in ss["spans"]:
                    sp["traceId"], sp["spanId"] = "1" * 32, "3" * 16  # another span: a repeat counts once
        r2 = httpx.post(rx.endpoint_for("k1") + "/v1/traces", content=json.dumps(as_json),
                        headers={"Content-Type": "application/json"})
        assert r2.status_code == 200
        assert r2.json() == {}
        rx.endpoint_for("k2")  # handing out a key opens it; spans for other keys are refused
        r3 = httpx.post(rx.base_url + "/v1/traces", content=body, headers={"Content-Type": "application/x-protobuf"})
        assert r3.status_code == 200
        bomb = gzip.compress(b"\0" * (4 << 20))
        r4 = httpx.post(rx.endpoint_for("k3") + "/v1/traces", content=bomb,
                        headers={"Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"})
        assert r4.status_code == 413
        got1, got2 = rx.take("k1"), rx.take("k2")
        assert [rs.span.name for rs in got1] == ["chat m", "chat m"]
        assert [rs.span.kind for rs in got1] == [SpanKind.LLM, SpanKind.LLM]
        assert [rs.span.span_id for rs in got2] == ["2" * 16]
        assert rx.take("k1") == []
        assert rx.stats.rejected == 1


def test_a_batch_the_exporter_sends_again_is_counted_once() -> None:
    # An exporter whose answer got lost re-sends the batch; the model call must not count twice.
    from costar.trace.model import Span
    from costar.trace.otlp import spans_to_export_request

    spans = [Span(trace_id="1" * 32, span_id=f"{i:016x}", name="chat m", kind=SpanKind.LLM, start_ns=1, end_ns=2,
                  attributes={"gen_ai.operation.name": "chat", "gen_ai.usage.input_tokens": 1000}) for i in (1, 2)]
    once = spans_to_export_request(spans[:1], {}).SerializeToString()
    both = spans_to_export_request(spans, {}).SerializeToString()
    with OtlpReceiver(max_body=1 << 20) as rx:
        url = rx.endpoint_for("k") + "/v1/traces"
        for body in (once, once, both):
            r = httpx.post(url, content=body, headers={"Content-Type": "application/x-protobuf"})
            assert r.status_code == 200
        assert sorted(rs.span.span_id for rs in rx.take("k")) == [f"{1:016x}", f"{2:016x}"]
        # Also after the harness took them (a retry that arrives late, during the next turn).
        assert httpx.post(url, content=both, headers={"Content-Type": "application/x-protobuf"}).status_code == 200
        assert rx.take("k") == []


def test_bodies_still_arriving_count_against_the_receivers_buffer() -> None:
    import threading

    from costar.trace.model import Span
    from costar.trace.otlp import spans_to_export_request

    span = Span(trace_id="1" * 32, span_id="2" * 16, name="s", kind=SpanKind.TOOL, start_ns=1, end_ns=2,
                attributes={"padding": "x" * 3000})
    body = spans_to_export_request([span], {}).SerializeToString()
    release = threading.Event()
    status: dict[str, int] = {}

    def slow() -> object:
        yield body[:2500]
        release.wait(30)
        yield body[2500:]

    with OtlpReceiver(max_body=1 << 20, max_total_bytes=4000) as rx:
        url = rx.endpoint_for("k") + "/v1/traces"

        def post_slowly() -> None:
            status["slow"] = httpx.post(url, content=slow(), headers={"Content-Type": "application/x-protobuf"},
                                        timeout=60).status_code

        sender = threading.Thread(target=post_slowly)
        sender.start()
        try:
            wait_for(lambda: rx._arriving >= 2500, what="the first bytes counted")
            r = httpx.post(url, content=body, headers={"Content-Type": "application/x-protobuf"}, timeout=60)
            assert r.status_code == 413
            assert "buffer is full" in r.text
        finally:
            release.set()
            sender.join(60)
        assert status["slow"] == 200
        assert rx._arriving == 0
        assert [s.span.span_id for s in rx.take("k")] == ["2" * 16]
