"""OTLP <-> coSTAR: spans from the real OpenTelemetry SDK decode correctly; coSTAR traces round-trip."""

from __future__ import annotations

import gzip
import json
from typing import Any

import pytest
from google.protobuf import json_format
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind as OtelSpanKind
from opentelemetry.trace import Status, StatusCode

from costar.trace.formats.sweagent import import_sweagent
from costar.trace.formats.taubench import import_taubench
from costar.trace.model import (
    AgentInfo,
    Artifact,
    Span,
    SpanEvent,
    SpanKind,
    SpanStatus,
    Totals,
    Trace,
    TraceStatus,
)
from costar.trace.model import StatusCode as CostarStatus
from costar.trace.otlp import (
    OtlpDecodeError,
    ReceivedSpan,
    otlp_json_to_traces,
    parse_export_request,
    request_from_protobuf,
    request_to_traces,
    spans_to_export_request,
    traces_to_export_request,
    traces_to_otlp_json,
)
from tests.support.paths import EXTERNAL

MESSAGES = [{"role": "user", "parts": [{"type": "text", "content": "Weather in Paris?"}]}]
PROTOBUF = "application/x-protobuf"


def _sdk_spans() -> tuple[list[ReadableSpan], dict[str, Any]]:
    """An agent run recorded by the real OTel SDK the way a GenAI instrumentation would record it."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "weather-agent",
                                                        "deployment.environment": "test"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("my.instrumentation", "1.2.3")
    with tracer.start_as_current_span("invoke_agent weather", attributes={
            "gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "weather"}) as agent:
        with tracer.start_as_current_span("chat gpt-4", kind=OtelSpanKind.CLIENT, attributes={
                "gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4",
                "gen_ai.input.messages": json.dumps(MESSAGES),
                "gen_ai.usage.input_tokens": 97, "gen_ai.usage.output_tokens": 52,
                "gen_ai.response.finish_reasons": ["tool_calls"]}):
            pass
        with tracer.start_as_current_span("execute_tool get_weather", attributes={
                "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "get_weather",
                "gen_ai.tool.call.arguments": '{"location": "Paris"}'}) as tool:
            tool.record_exception(TimeoutError("weather service down"))
            tool.set_status(Status(StatusCode.ERROR, "weather service down"))
        agent.set_attribute("payload", b"\x00\x01")
    provider.shutdown()
    spans = list(exporter.get_finished_spans())
    ids = {s.name: format(s.context.span_id, "016x") for s in spans}
    ids["trace"] = format(spans[0].context.trace_id, "032x")
    return spans, ids


def _by_name(received: list[ReceivedSpan]) -> dict[str, Span]:
    return {r.span.name: r.span for r in received}


def _check_sdk_decode(received: list[ReceivedSpan], ids: dict[str, Any]) -> None:
    spans = _by_name(received)
    agent, chat, tool = spans["invoke_agent weather"], spans["chat gpt-4"], spans["execute_tool get_weather"]
    assert {s.trace_id for s in spans.values()} == {ids["trace"]}
    assert agent.span_id == ids["invoke_agent weather"]
    assert agent.parent_id is None
    assert chat.parent_id == agent.span_id
    assert tool.parent_id == agent.span_id
    assert (agent.kind, chat.kind, tool.kind) == (SpanKind.AGENT, SpanKind.LLM, SpanKind.TOOL)
    assert chat.attributes["gen_ai.input.messages"] == MESSAGES
    assert chat.attributes["gen_ai.usage.input_tokens"] == 97
    assert chat.attributes["gen_ai.response.finish_reasons"] == ["tool_calls"]
    assert tool.attributes["gen_ai.tool.call.arguments"] == {"location": "Paris"}
    assert tool.status == SpanStatus(code=CostarStatus.ERROR, message="weather service down")
    assert [e.name for e in tool.events] == ["exception"]
    assert tool.events[0].attributes["exception.type"] == "TimeoutError"
    assert agent.attributes["payload"] == "AAE="  # bytes arrive base64-encoded
    assert chat.start_ns > 0
    assert chat.end_ns is not None
    assert chat.end_ns >= chat.start_ns
    # The SDK used INTERNAL for the tool span, which our own mapping would not choose: kept.
    assert tool.attributes["costar.otlp.kind"] == "SPAN_KIND_INTERNAL"
    assert "costar.otlp.kind" not in chat.attributes
    first = received[0]
    assert first.resource_attributes["service.name"] == "weather-agent"
    assert first.scope_name == "my.instrumentation"
    assert first.scope_version == "1.2.3"


def test_protobuf_from_the_real_sdk_decodes() -> None:
    spans, ids = _sdk_spans()
    body = encode_spans(spans).SerializeToString()
    _check_sdk_decode(parse_export_request(body, PROTOBUF), ids)
    _check_sdk_decode(parse_export_request(gzip.compress(body), "application/x-protobuf; charset=binary"), ids)


def test_json_with_hex_or_base64_ids_decodes_the_same() -> None:
    spans, ids = _sdk_spans()
    request = encode_spans(spans)
    as_base64 = json_format.MessageToDict(request)  # protobuf's own JSON mapping: base64 ids, string int64s
    _check_sdk_decode(parse_export_request(json.dumps(as_base64).encode(), "application/json"), ids)

    as_hex = json_format.MessageToDict(request, use_integers_for_enums=True)
    for rs in as_hex["resourceSpans"]:
        for ss in rs["scopeSpans"]:
            for sp in ss["spans"]:
                sp["startTimeUnixNano"] = int(sp["startTimeUnixNano"])  # OTLP/JSON allows numbers too
                sp["traceId"] = ids["trace"]
                sp["spanId"] = ids[sp["name"]]
                if "parentSpanId" in sp:
                    sp["parentSpanId"] = ids["invoke_agent weather"]
    assert isinstance(as_hex["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["startTimeUnixNano"], int)
    _check_sdk_decode(parse_export_request(json.dumps(as_hex).encode(), "application/json"), ids)


def test_foreign_spans_group_into_traces() -> None:
    spans, ids = _sdk_spans()
    (trace,) = request_to_traces(encode_spans(spans))
    assert trace.trace_id == ids["trace"]
    assert trace.agent.name == "weather"
    assert trace.input == "Weather in Paris?"
    assert trace.status == TraceStatus.OK  # the failing tool span is not the root
    assert (trace.totals.llm_calls, trace.totals.tool_calls, trace.totals.error_spans) == (1, 1, 1)
    assert trace.totals.input_tokens == 97
    assert trace.metadata["otel.resource"]["deployment.environment"] == "test"


def _full_trace() -> Trace:
    trace_id = "0af7651916cd43dd8448eb211c80319c"
    root, llm, tool = "b7ad6b7169203331", "00f067aa0ba902b7", "a3ce929d0e0e4736"
    spans = [
        Span(trace_id=trace_id, span_id=root, name="invoke_agent helper", kind=SpanKind.AGENT,
             start_ns=1_700_000_000_000_000_000, end_ns=1_700_000_000_900_000_000,
             status=SpanStatus(code=CostarStatus.ERROR, message="tool failed: naïve ☃"),
             attributes={"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "helper",
                         "input.value": "Fix the bug", "costar.skill.name": "triage"}),
        Span(trace_id=trace_id, span_id=llm, parent_id=root, name="chat gpt-4.1-mini", kind=SpanKind.LLM,
             start_ns=1_700_000_000_100_000_000, end_ns=1_700_000_000_300_000_000,
             status=SpanStatus(code=CostarStatus.OK),
             attributes={"gen_ai.input.messages": MESSAGES, "gen_ai.output.messages": [
                 {"role": "assistant", "finish_reason": "tool_call", "parts": [
                     {"type": "tool_call", "id": "c1", "name": "run", "arguments": {"cmd": "pytest", "n": 3,
                                                                                  "ratio": 1.0, "flags": []}}]}],
                         "gen_ai.usage.input_tokens": 12, "costar.usage.cost_usd": 0.25, "costar.cache_hit": False,
                         "nested": {"a": {"b": [1, 2.5, "x", None, True, {"c": []}]}, "empty": {}},
                         "big": 2**62, "negative": -7, "zero_float": 0.0, "unicode": "日本語 ✓ \u0000 end"}),
        Span(trace_id=trace_id, span_id=tool, parent_id=llm, name="execute_tool run", kind=SpanKind.TOOL,
             start_ns=1_700_000_000_300_000_000, end_ns=None,
             status=SpanStatus(code=CostarStatus.ERROR, message="exit 1"),
             attributes={"gen_ai.tool.call.result": {"exit": 1}, "openinference.span.kind": "TOOL"},
             events=[SpanEvent(name="exception", time_ns=1_700_000_000_400_000_000,
                               attributes={"exception.type": "CalledProcessError", "lines": ["a", "b"]}),
                     SpanEvent(name="retry", time_ns=1_700_000_000_500_000_000)]),
        Span(trace_id=trace_id, span_id="not-a-hex-span-id", parent_id=root, name="guard", kind=SpanKind.GUARDRAIL,
             start_ns=1_700_000_000_600_000_000, end_ns=1_700_000_000_700_000_000),
    ]
    return Trace(
        trace_id=trace_id, run_id="20260101-000000-abcdef", scenario_id="bugs/off-by-one", trial=3,
        agent=AgentInfo(name="helper", version="2.0", git_sha="deadbeef"), status=TraceStatus.ERROR,
        error="tool failed", input={"prompt": "Fix the bug", "turns": ["a", "b"], "budget": 1.5, "n": 2},
        output="gave up", start_ns=spans[0].start_ns, end_ns=spans[0].end_ns or 0,
        totals=Totals(input_tokens=12, total_tokens=12, cost_usd=0.25, latency_s=0.9, llm_calls=1, tool_calls=1,
                      error_spans=2),
        artifacts=[Artifact(path="src/app.py", sha256="ab" * 32, size=120, media_type="text/x-python"),
                   Artifact(path="README.md", sha256="cd" * 32, size=4, origin="setup")],
        spans=spans,
        metadata={"labels": {"team": "core"}, "weights": [1, 2.0], "flag": True, "none": None, "ü": "ß"},
    )


def _dumped(traces: list[Trace]) -> str:
    return json.dumps([t.model_dump(mode="json") for t in traces], sort_keys=True)


def test_trace_round_trips_losslessly_through_otlp_json() -> None:
    original = [_full_trace(), Trace(trace_id="empty-trace-without-spans")]
    document = json.loads(json.dumps(traces_to_otlp_json(original)))
    back = otlp_json_to_traces(document)
    assert back == original
    assert _dumped(back) == _dumped(original)  # == alone would not notice 1 becoming 1.0


def test_otlp_json_is_spec_shaped() -> None:
    document = traces_to_otlp_json([_full_trace()])
    (rs,) = document["resourceSpans"]
    span = rs["scopeSpans"][0]["spans"][0]
    assert span["traceId"] == "0af7651916cd43dd8448eb211c80319c"
    assert span["spanId"] == "b7ad6b7169203331"
    assert isinstance(span["kind"], int)
    keys = {kv["key"] for kv in rs["resource"]["attributes"]}
    assert {"service.name", "costar.trace.run_id", "costar.trace.totals", "costar.trace.artifacts"} <= keys
    attrs = {kv["key"]: kv["value"] for kv in rs["scopeSpans"][0]["spans"][1]["attributes"]}
    assert "kvlistValue" in attrs["gen_ai.output.messages"]["arrayValue"]["values"][0]
    assert attrs["openinference.span.kind"] == {"stringValue": "LLM"}


def test_trace_round_trips_through_protobuf_bytes() -> None:
    original = [_full_trace()]
    body = traces_to_export_request(original).SerializeToString()
    assert request_to_traces(request_from_protobuf(body)) == original


def test_imported_real_traces_round_trip() -> None:
    traces, _ = import_taubench(EXTERNAL / "tau-bench" / "gpt-4o-airline.json")
    sample = traces[:5] + import_sweagent(EXTERNAL / "swe-agent" / "pydicom__pydicom-1458.traj")
    back = otlp_json_to_traces(json.loads(json.dumps(traces_to_otlp_json(sample))))
    assert _dumped(back) == _dumped(sample)


def test_spans_to_export_request_feeds_the_receiver() -> None:
    trace = _full_trace()
    req = spans_to_export_request(trace.spans, {"service.name": "helper"})
    received = parse_export_request(req.SerializeToString(), PROTOBUF)
    assert [r.span.kind for r in received] == [s.kind for s in trace.spans]
    assert received[3].span.span_id == "not-a-hex-span-id"
    assert received[0].resource_attributes == {"service.name": "helper"}
    assert received[0].scope_name == "costar"


@pytest.mark.parametrize(("body", "content_type", "message"), [
    (b"\xff\xff\xff\xff garbage", PROTOBUF, "could not be decoded"),
    (b"\x1f\x8b\x08\x00corrupt", PROTOBUF, "corrupt gzip"),
    (b'{"resourceSpans": [', "application/json", "not valid JSON"),
    (b"\xff\xfe", "application/json", "not valid JSON"),
    (b"[1, 2]", "application/json", "must be an object"),
    (b'{"spans": []}', "application/json", "no 'resourceSpans'"),
    (b'{"resourceSpans": "nope"}', "application/json", "must be an array"),
    (b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"name": 5, "traceId": {}}]}]}]}', "application/json",
     "wrong shape"),
    (b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"name": "x", "traceId": "abcd", '
     b'"spanId": "0011223344556677"}]}]}]}', "application/json", "traceId must be 16 bytes"),
    (b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"name": "x", "traceId": "00112233445566778899aabbccddeeff", '
     b'"spanId": "0011"}]}]}]}', "application/json", "span 'x': spanId must be 8 bytes"),
    (b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"name": "x", "traceId": "00112233445566778899aabbccddeeff", '
     b'"spanId": "0011223344556677", "parentSpanId": "00"}]}]}]}', "application/json",
     "span 'x': parentSpanId must be 8 bytes, got 1"),
    (b"", "text/plain", "unsupported content type"),
])
def test_malformed_bodies_raise_a_clear_error(body: bytes, content_type: str, message: str) -> None:
    with pytest.raises(OtlpDecodeError, match=message):
        parse_export_request(body, content_type)


def test_protobuf_that_parses_to_nothing_is_refused() -> None:
    # Valid wire format of an unknown field: protobuf would silently accept it.
    with pytest.raises(OtlpDecodeError, match="no ExportTraceServiceRequest fields"):
        parse_export_request(b"\x08\x01", PROTOBUF)
    assert parse_export_request(b"", PROTOBUF) == []
    assert parse_export_request(ExportTraceServiceRequest().SerializeToString(), PROTOBUF) == []
