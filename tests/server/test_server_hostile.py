"""What a hostile or careless sender can do to costar server, and what it must not achieve: keep
every other trace out of the store, inflate a body past the limit, post from a web page, hold memory
without being counted, or get a value past the project's redaction rules. Real HTTP on loopback, on
both stores."""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
import threading
import time
from typing import Any

import httpx
import pytest

from costar.server import assembler as assembler_module
from costar.server.config import RedactionRules, ServerConfig
from costar.server.ingest import GroupCommitter, Ingestor, IngestStats
from costar.server.redaction import Redactor
from costar.trace.genai import _parse_loose
from costar.trace.model import SpanEvent, SpanKind, StatusCode, make_span
from costar.trace.otlp import MAX_ORIGINAL_ID, span_row_from_pb, spans_to_export_request
from tests.server.conftest import Running
from tests.support.server import PROTOBUF, agent_spans, encode, trace_ids, wait_for


def _body(*spans: Any, resource: dict[str, Any] | None = None) -> bytes:
    return spans_to_export_request(list(spans), resource or {"service.name": "hostile"}).SerializeToString()


def _llm(trace: str, span: str, parent: str | None, attrs: dict[str, Any]) -> Any:
    return make_span(trace, span, parent, "chat gpt-4o", SpanKind.LLM, 10, 20, StatusCode.OK, None,
                     {"gen_ai.operation.name": "chat", **attrs}, [])


def test_a_list_attribute_of_the_wrong_type_does_not_keep_traces_out(make_server) -> None:
    # costar.merged is coSTAR's own list attribute; a number there made finalisation raise, and the
    # assembler retried the same batch for ever: no trace of any project was stored after it.
    srv: Running = make_server()
    bad = "11" * 16
    assert srv.post(_body(_llm(bad, "aa" * 8, None, {"costar.merged": 5}),
                          _llm(bad, "bb" * 8, "aa" * 8, {"costar.capture": "sdk"}))).status_code == 200
    fine = agent_spans(1)
    assert srv.post(encode(fine)).status_code == 200
    for tid in [bad, *trace_ids(fine)]:
        wait_for(lambda tid=tid: srv.stored(tid), what=f"trace {tid}")
    assert srv.server.assembler.stats.commit_errors == 0


def test_a_trace_that_cannot_be_finalised_is_stored_as_received_and_flagged(make_server, monkeypatch) -> None:
    srv: Running = make_server(assembly="thread")  # the patch below reaches this process only
    poisoned = "22" * 16
    real = assembler_module.finalize_spans

    def finalize(spans: list[Any], **kw: Any) -> Any:
        if spans and spans[0].trace_id == poisoned:
            raise TypeError("an unforeseen attribute shape")
        return real(spans, **kw)

    monkeypatch.setattr(assembler_module, "finalize_spans", finalize)
    assert srv.post(_body(_llm(poisoned, "aa" * 8, None, {"gen_ai.usage.input_tokens": 3}))).status_code == 200
    fine = agent_spans(1)
    assert srv.post(encode(fine)).status_code == 200
    for tid in [poisoned, *trace_ids(fine)]:
        wait_for(lambda tid=tid: srv.stored(tid), what=f"trace {tid}")
    stored = srv.server.store.get_trace(poisoned)
    assert stored.metadata["costar.server"]["build_error"] == "TypeError: an unforeseen attribute shape"
    assert stored.metadata["costar.project"] == "default"
    assert [s.span_id for s in stored.spans] == ["aa" * 8]
    assert srv.server.assembler.stats.build_errors == 1
    assert "costar_traces_build_errors_total 1" in httpx.get(srv.url + "/metrics", timeout=30).text
    good = srv.server.store.get_trace(next(iter(trace_ids(fine))))
    assert "build_error" not in good.metadata["costar.server"]
    assert good.totals.input_tokens == 120


def test_gzip_is_inflated_once_and_never_past_the_body_limit(make_server) -> None:
    srv: Running = make_server(limits={"max_body": 8192})
    body = encode(agent_spans(1))
    assert len(body) < 8192
    big = encode(agent_spans(40))
    assert len(big) > 8192
    # Sniffed gzip (no Content-Encoding) is taken, but only up to max_body once inflated.
    assert srv.post(gzip.compress(body)).status_code == 200
    r = srv.post(gzip.compress(big))
    assert r.status_code == 413
    assert "8192-byte limit" in r.text
    # Gzip inside gzip: the header's layer is bounded, and so is the sniffed one.
    r = srv.post(gzip.compress(gzip.compress(big)), {"Content-Encoding": "gzip"})
    assert r.status_code == 413
    assert srv.server.ingestor.stats.rejected[413] == 2


def test_a_web_page_cannot_post_spans(make_server) -> None:
    srv: Running = make_server()
    spans = agent_spans(1)
    for headers in ({"Origin": "https://evil.example"}, {"Sec-Fetch-Site": "cross-site"}):
        r = srv.post(encode(spans), headers)
        assert r.status_code == 403
        assert "cross-site" in r.text
    assert srv.server.tables.pending_counts() == (0, 0)
    # Exporters send neither header; a same-origin request is not refused either.
    assert srv.post(encode(spans), {"Origin": srv.url}).status_code == 200


def test_chunked_bodies_count_against_the_in_flight_limit_while_they_arrive(make_server) -> None:
    srv: Running = make_server(limits={"max_inflight_bytes": 3500})
    body = encode(agent_spans(20))
    assert len(body) > 3500
    release = threading.Event()
    result: dict[str, int] = {}

    def slow_body() -> Any:
        yield body[:3000]
        release.wait(30)
        yield body[3000:]

    def post_slowly() -> None:
        r = httpx.post(srv.url + "/v1/traces", content=slow_body(), headers=PROTOBUF, timeout=60)
        result["status"] = r.status_code

    sender = threading.Thread(target=post_slowly)
    sender.start()
    try:
        # Without a Content-Length, the bytes used to be counted only once the whole body was read.
        wait_for(lambda: srv.server.ingestor.stats.inflight_bytes >= 3000, what="the chunked bytes counted")
        r = srv.post(encode(agent_spans(1)))
        assert r.status_code == 503
        assert "Retry-After" in r.headers
    finally:
        release.set()
        sender.join(60)
    assert result["status"] == 200  # a single request may exceed the limit: it is not refused by itself
    assert srv.server.ingestor.stats.inflight_bytes == 0


def test_redaction_rules_on_attribute_names_cover_the_values_normalisation_copies(make_server) -> None:
    srv: Running = make_server(assembly="thread", projects={"*": {"redact": {
        "attributes": ["input.value", "output.value", "session.id", "llm.input_messages.*"],
        "patterns": {"email": r"[\w.]+@[\w.]+"}}}})
    tid = "33" * 16
    tool = make_span(tid, "aa" * 8, None, "execute_tool lookup", SpanKind.TOOL, 1, 5, StatusCode.OK, None,
                     {"openinference.span.kind": "TOOL", "input.value": "SSN 123-45-6789",
                      "output.value": "card 4111 1111 1111 1111"},
                     [SpanEvent(name="mailed bob@corp.com", time_ns=2, attributes={})])
    llm = make_span(tid, "bb" * 8, "aa" * 8, "chat", SpanKind.LLM, 2, 4, StatusCode.OK, None,
                    {"openinference.span.kind": "LLM", "session.id": "user-session-42",
                     "llm.input_messages.0.message.role": "user",
                     "llm.input_messages.0.message.content": "my SSN 123-45-6789"}, [])
    assert srv.post(_body(tool, llm)).status_code == 200
    (_, payload), = srv.server.tables.pending_batches()
    for secret in (b"123-45-6789", b"4111 1111", b"user-session-42", b"bob@corp.com"):
        assert secret not in payload
    srv.server.assembler.store_due(force=True)
    trace = srv.server.store.get_trace(tid)
    spans = {s.span_id: s for s in trace.spans}
    assert spans["aa" * 8].attributes["gen_ai.tool.call.arguments"] == "[REDACTED]"
    assert spans["aa" * 8].attributes["gen_ai.tool.call.result"] == "[REDACTED]"
    assert spans["aa" * 8].events[0].name == "mailed [REDACTED:email]"
    assert spans["bb" * 8].attributes["gen_ai.conversation.id"] == "[REDACTED]"
    assert "123-45-6789" not in str(spans["bb" * 8].attributes["gen_ai.input.messages"])


def test_event_names_lose_credentials_without_any_rule() -> None:
    key = "sk-proj-" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4"
    span = make_span("44" * 16, "aa" * 8, None, "s", SpanKind.TOOL, 1, 2, StatusCode.OK, None, {},
                     [SpanEvent(name=f"retrying with {key}", time_ns=1, attributes={})])
    (row,) = [span_row_from_pb(pb) for rs in spans_to_export_request([span], {}).resource_spans
              for ss in rs.scope_spans for pb in ss.spans]
    redacted = Redactor().row(row)
    assert redacted[10][0][0] == "retrying with [REDACTED]"


def test_an_original_id_attribute_is_kept_only_when_it_is_of_a_sane_length() -> None:
    req = spans_to_export_request([make_span("not-hex", "also-not-hex", None, "s", SpanKind.TOOL, 1, 2,
                                             StatusCode.OK, None, {}, [])], {})
    pb = req.resource_spans[0].scope_spans[0].spans[0]
    assert span_row_from_pb(pb)[:2] == ["not-hex", "also-not-hex"]
    for kv in pb.attributes:
        if kv.key == "costar.otlp.original_id.trace_id":
            kv.value.string_value = "x" * (MAX_ORIGINAL_ID + 1)  # a database index refuses such keys
    row = span_row_from_pb(pb)
    assert row[0] == pb.trace_id.hex()
    assert len(row[0]) == 32
    assert row[1] == "also-not-hex"


def test_python_reprs_are_parsed_only_when_small_and_mostly_text() -> None:
    assert _parse_loose("[{'role': 'user', 'content': 'hi, there: you'}]") == [{"role": "user",
                                                                                "content": "hi, there: you"}]
    started = time.process_time()
    for text in ("[" + "1," * 400_000 + "]", "[{'a': [" + "1," * 30_000 + "]}]", "[not json, at all]"):
        assert _parse_loose(text) == text  # Python's parser would take seconds and hundreds of MB
    assert time.process_time() - started < 1.0


def test_stopping_answers_the_requests_whose_commit_is_under_way(store) -> None:
    from costar.store.server_tables import ServerTables

    tables = ServerTables(store)
    entered = threading.Event()

    def slow_append(rows: Any) -> list[int]:
        entered.set()
        time.sleep(0.5)
        return [1 for _ in rows]

    tables.append_batches = slow_append  # type: ignore[method-assign]

    async def scenario() -> BaseException | None:
        committer = GroupCommitter(tables, IngestStats())
        committer.start()
        request = asyncio.create_task(committer.commit(1, b"{}"))
        while not entered.is_set():
            await asyncio.sleep(0.01)
        await committer.stop()
        try:
            await asyncio.wait_for(request, 5)
        except RuntimeError as exc:  # before the fix the request waited for ever (TimeoutError here)
            return exc
        return None

    got = asyncio.run(scenario())
    assert isinstance(got, RuntimeError)
    assert "stopping" in str(got)


def test_project_names_from_requests_do_not_grow_the_redactors_without_bound(store) -> None:
    from costar.server.assembler import Assembler
    from costar.server.auth import Authenticator
    from costar.store.server_tables import ServerTables

    tables = ServerTables(store)
    ingestor = Ingestor(ServerConfig(), tables, Assembler(tables), Authenticator(tables, required=False))
    for i in range(300):
        assert isinstance(ingestor.redactor(f"project-{i}"), Redactor)
    assert len(ingestor._redactors) == 256
    assert ingestor.redactor("project-299").rules == RedactionRules()


def test_a_request_is_decoded_off_the_event_loop(make_server, monkeypatch) -> None:
    # Decoding a large request takes a while; on the event loop it held up every other request.
    srv: Running = make_server()
    ingestor = srv.server.ingestor
    real = ingestor._groups
    loops: list[bool] = []

    def groups(*args: Any) -> Any:
        try:
            asyncio.get_running_loop()
            loops.append(True)
        except RuntimeError:
            loops.append(False)
        return real(*args)

    monkeypatch.setattr(ingestor, "_groups", groups)
    assert srv.post(encode(agent_spans(2))).status_code == 200
    assert loops == [False]


def test_nul_characters_anywhere_in_a_span_do_not_stop_storage(make_server) -> None:
    # PostgreSQL refuses NUL in text and JSON; one such span must neither fail nor block the commits.
    srv: Running = make_server()
    tid = "55" * 16
    span = make_span(tid, "aa" * 8, None, "tool\x00name", SpanKind.TOOL, 1, 5, StatusCode.ERROR, "bad\x00 status",
                     {"gen_ai.tool.name": "look\x00up", "nested": {"k\x00ey": ["v\x00"]}, "input.value": "\x00"},
                     [SpanEvent(name="ev\x00ent", time_ns=2, attributes={"a": "b\x00"})])
    assert srv.post(_body(span, resource={"service.name": "svc\x00"})).status_code == 200
    fine = agent_spans(1)
    assert srv.post(encode(fine)).status_code == 200
    for t in [tid, *trace_ids(fine)]:
        wait_for(lambda t=t: srv.stored(t), what=f"trace {t}")
    stored = srv.server.store.get_trace(tid).spans[0]
    assert stored.name.replace("\x00", "") == "toolname"
    assert srv.server.assembler.stats.commit_errors == 0


@pytest.mark.parametrize("assembly", ["process", "thread"])
def test_a_late_span_routed_elsewhere_is_redacted_with_the_rules_of_the_project_its_trace_is_in(
        make_server, assembly: str) -> None:
    # The late span carries no costar.project, so ingest routes it to the default project and redacts it
    # with the default's rules; it joins a trace stored in "secure", whose rules must apply to it too.
    srv: Running = make_server(assembly=assembly, projects={"secure": {"redact": {"patterns": {"ssn": r"\d{3}-\d{2}-\d{4}"}}}})
    spans = agent_spans(1, resource={"costar.project": "secure"})
    tid = next(iter(trace_ids(spans)))
    assert srv.post(encode(spans)).status_code == 200
    wait_for(lambda: srv.stored(tid), what="the trace")
    late = make_span(tid, "ab" * 8, None, "lookup", SpanKind.TOOL, 10, 20, StatusCode.OK, None,
                     {"gen_ai.tool.name": "lookup", "gen_ai.tool.call.result": "SSN 123-45-6789"}, [])
    assert srv.post(_body(late)).status_code == 200
    wait_for(lambda: (srv.stored(tid).amended or 0) >= 1, what="the amendment")
    trace = srv.server.store.get_trace(tid)
    assert trace.metadata["costar.project"] == "secure"
    result = next(s for s in trace.spans if s.span_id == "ab" * 8).attributes["gen_ai.tool.call.result"]
    assert result == "SSN [REDACTED:ssn]"


def test_the_api_serves_no_cdn_script_page_and_its_answers_are_not_sniffed_or_cached(make_server) -> None:
    srv: Running = make_server()
    assert httpx.get(srv.url + "/api/docs", timeout=30).status_code == 404
    assert httpx.get(srv.url + "/api/openapi.json", timeout=30).json()["info"]["title"] == "coSTAR server"
    r = srv.api("/traces")
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert r.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize("parts", [["x", "y"], [{"a": 1}, "y"], [True, "y"], [1.0, 2], [1.0]])
def test_a_forged_cursor_is_a_400_not_a_500(make_server, parts: list[Any]) -> None:
    srv: Running = make_server()
    cursor = base64.urlsafe_b64encode(json.dumps(parts).encode()).decode()
    r = srv.api("/traces", params={"cursor": cursor})
    assert r.status_code == 400
    assert "bad cursor" in r.text


def test_readiness_does_not_tell_strangers_the_stores_error(make_server, monkeypatch) -> None:
    srv: Running = make_server()
    wait_for(lambda: httpx.get(srv.url + "/readyz", timeout=30).status_code == 200, what="ready")

    def down() -> None:
        raise ConnectionError("connection to server at db.internal (10.0.0.5), user costar_admin failed")

    monkeypatch.setattr(srv.server.tables, "pending_counts", down)
    r = httpx.get(srv.url + "/readyz", timeout=30)
    assert r.status_code == 503
    assert r.json() == {"status": "store unavailable", "detail": "ConnectionError"}
