"""Ingest decodes OTLP straight into rows (the write-ahead form) and redacts the rows: the same
mapping as the harness's receiver (costar.trace.otlp.span_from_pb) and the same redaction as a
Span's (Sanitizer.span), without building Span objects in the server process."""

from __future__ import annotations

import json
from typing import Any

import pytest
from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span as PbSpan

from costar.server.config import RedactionRules
from costar.server.redaction import Redactor
from costar.server.wal import SpanGroup, decode, encode, span_fields, span_from_fields
from costar.trace.model import INT64_MAX, SpanEvent, SpanKind, StatusCode, make_span
from costar.trace.otlp import (
    parse_export_request,
    parse_export_rows,
    span_from_pb,
    span_from_row,
    span_row_from_pb,
    spans_to_export_request,
    to_key_values,
)
from tests.support.server import agent_spans
from tests.support.server import encode as sdk_encode

PROTOBUF = "application/x-protobuf"
KEY = "sk-proj-" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4"


def _request() -> ExportTraceServiceRequest:
    """Spans of several dialects and shapes: OpenInference, deprecated GenAI, events, links, a foreign id,
    a kind OTLP names differently, an error status."""
    req = ExportTraceServiceRequest.FromString(sdk_encode(agent_spans(2)))
    extra = spans_to_export_request([
        make_span("not-a-hex-trace-id", "span-x", None, "llm call", SpanKind.LLM, 5, 9, StatusCode.ERROR, "boom",
                  {"llm.input_messages.0.message.role": "user", "llm.input_messages.0.message.content": "hi",
                   "llm.token_count.prompt": "12", "llm.model_name": "gpt-4o"},
                  [SpanEvent(name="exception", time_ns=7, attributes={"exception.message": "bad"})]),
        make_span("ab" * 16, "cd" * 8, "ef" * 8, "legacy", SpanKind.UNKNOWN, 1, None, StatusCode.UNSET, None,
                  {"gen_ai.prompt": "[{'role': 'user', 'content': 'old'}]", "gen_ai.system": "openai",
                   "costar.otlp.links": [{"trace_id": "12" * 16, "span_id": "34" * 8, "attributes": {"a": 1}}]}, []),
    ], {"service.name": "other"})
    req.resource_spans.extend(extra.resource_spans)
    req.resource_spans[-1].scope_spans[0].spans[0].kind = PbSpan.SPAN_KIND_SERVER
    return req


def test_a_row_holds_the_span_the_receiver_decodes() -> None:
    req = _request()
    pbs = [pb for rs in req.resource_spans for ss in rs.scope_spans for pb in ss.spans]
    assert len(pbs) == 8
    for pb in pbs:
        assert span_from_row(span_row_from_pb(pb)) == span_from_pb(pb)
        assert span_fields(span_from_pb(pb)) == span_row_from_pb(pb)


def test_protobuf_and_json_bodies_give_the_same_rows_grouped_by_resource() -> None:
    req = _request()
    from_pb = parse_export_rows(req.SerializeToString(), PROTOBUF)
    doc = json_format.MessageToDict(req)
    from_json = parse_export_rows(json.dumps(doc).encode(), "application/json")
    assert from_pb == from_json
    assert [len(rows) for _, rows in from_pb] == [6, 2]
    assert from_pb[1][0] == {"service.name": "other"}
    received = parse_export_request(req.SerializeToString(), PROTOBUF)
    assert [span_from_row(f) for _, rows in from_pb for f in rows] == [r.span for r in received]


def test_rows_survive_the_write_ahead_payload() -> None:
    rows = parse_export_rows(_request().SerializeToString(), PROTOBUF)
    groups = [SpanGroup(project="p", pinned=False, resource=res, spans=spans) for res, spans in rows]
    again = decode(encode(groups))
    assert [g.spans for g in again] == [g.spans for g in groups]
    assert [span_from_fields(f) for g in again for f in g.spans] == [span_from_row(f) for g in groups for f in g.spans]


def _hostile() -> list[Any]:
    """Spans a redactor must change (and some it must leave alone)."""
    deep: Any = "bottom"
    for _ in range(80):
        deep = [deep]
    return [
        make_span("a" * 32, "b" * 16, None, "clean", SpanKind.AGENT, 1, 2, StatusCode.OK, None,
                  {"input.value": "where is my order?", "n": 3}, []),
        make_span("a" * 32, "c" * 16, "b" * 16, f"chat with {KEY}", SpanKind.LLM, 1, 2, StatusCode.ERROR,
                  f"failed: Authorization: Bearer {KEY}",
                  {"gen_ai.input.messages": [{"role": "user", "parts": [{"type": "text", "content": f"my key {KEY}"}]}],
                   "email": "jane@example.com", "card": "4111 1111 1111 1111", "http.header.cookie": "session=abc",
                   "nested": {"cookie_jar": "x", "ok": "fine"}, "big": 2**70, "nan": float("nan")}, []),
        make_span("a" * 32, "d" * 16, "b" * 16, "x" * 5000, SpanKind.TOOL, -5, 2**64, StatusCode.UNSET, None,
                  {"deep": deep, "long": "y" * 300_000}, []),
        make_span("a" * 32, "\ud800e" * 4, "b" * 16, "surrogate \ud800 name", SpanKind.TOOL, 1, None,
                  StatusCode.UNSET, None, {"k": "v \udfff"}, []),
        make_span("a" * 32, "f" * 16, "b" * 16, "events", SpanKind.CHAIN, 1, 2, StatusCode.UNSET, None, {},
                  [SpanEvent.model_construct(name="exception", time_ns=-1,
                                             attributes={"exception.message": f"token={KEY}"}),
                   SpanEvent.model_construct(name="log \ud800", time_ns=3, attributes={"email": "a@b.co"})]),
        make_span("a" * 32, "0" * 16, "b" * 16, "many", SpanKind.CHAIN, 1, 2, StatusCode.UNSET, None,
                  {f"k{i}": i for i in range(300)}, []),
    ]


@pytest.mark.parametrize("rules", [
    RedactionRules(),
    RedactionRules(patterns={"email": r"[\w.]+@[\w.]+", "card": r"\d{4}( \d{4}){3}"}, attributes=["*cookie*"]),
    RedactionRules(patterns={"whole": r"^fine$"}),
])
def test_a_row_is_redacted_and_bounded_exactly_as_its_span(rules: RedactionRules) -> None:
    red = Redactor(rules=rules, secrets=["literal-secret-value"])
    for s in _hostile():
        expected = span_fields(red.span(s))
        got = red.row(span_fields(s))
        assert repr(got) == repr(expected), s.name[:40]  # repr: NaN is not equal to itself


def test_a_clean_row_is_kept_as_it_is() -> None:
    red = Redactor()
    f = span_fields(_hostile()[0])
    attrs = f[9]
    assert red.row(f) is f
    assert f[9] is attrs


def test_the_redaction_of_a_row_reaches_every_text_field() -> None:
    red = Redactor(rules=RedactionRules(patterns={"email": r"[\w.]+@[\w.]+"}, attributes=["*cookie*"]))
    f = red.row(span_fields(_hostile()[1]))
    text = json.dumps(f, default=str)
    assert KEY not in text
    assert "jane@example.com" not in text
    assert "session=abc" not in text
    assert "[REDACTED:email]" in text
    assert f[9]["big"] == str(2**70)
    events = red.row(span_fields(_hostile()[4]))[10]
    assert KEY not in json.dumps(events)
    assert events[0][1] == 0  # the event's time was clamped into range
    times = red.row(span_fields(_hostile()[2]))
    assert (times[5], times[6]) == (0, INT64_MAX)
    assert times[9]["costar.clamped"] == ["start_ns", "end_ns"]
    assert len(times[3]) == 1024


def test_ingest_rows_of_a_request_are_routed_and_redacted(store) -> None:
    from costar.server.app import CostarServer
    from costar.server.config import ServerConfig

    srv = CostarServer(ServerConfig.model_validate({
        "assembly": "thread", "services": {"other": "elsewhere"},
        "projects": {"*": {"redact": {"patterns": {"order": r"order \d+"}}}}}), store)
    body = _request()
    body.resource_spans[0].scope_spans[0].spans[0].attributes.extend(to_key_values({"note": "order 1234 for me"}))
    groups = srv.ingestor._groups(body.SerializeToString(), PROTOBUF, None)
    assert [(g.project, len(g.spans)) for g in groups] == [("default", 6), ("elsewhere", 2)]
    payload = encode(groups)
    assert b"order 1234" not in payload
    assert b"[REDACTED:order]" in payload
    assert KEY.encode() not in payload


def test_a_pattern_that_backtracks_cannot_stall_ingest() -> None:
    # With Python's re, the first takes minutes on a value this long and the second never ends
    # (nested repeats): RE2 matches both in time linear in the text, so this test returns at once.
    red = Redactor(rules=RedactionRules(patterns={"email": r"[\w.]+@[\w.]+", "nested": r"(x+x+)+y"}))
    value = "y" * 200_000 + " write to jane@example.com " + "x" * 5_000
    got = red.row(span_fields(make_span("a" * 32, "b" * 16, None, "s", SpanKind.TOOL, 1, 2, StatusCode.OK, None,
                                        {"long": value}, [])))[9]["long"]
    assert "jane@example.com" not in got
    assert got.count("[REDACTED:email]") == 1
    assert got.endswith("x" * 5_000)


def test_patterns_are_re2_ascii_classes_and_lone_surrogates_do_not_break_them() -> None:
    red = Redactor(rules=RedactionRules(patterns={"word": r"\bsecret\w*"}))
    assert red.text("a secretword and a secret\u00e9 \ud800 x") == "a [REDACTED:word] and a [REDACTED:word]\u00e9 \ufffd x"
