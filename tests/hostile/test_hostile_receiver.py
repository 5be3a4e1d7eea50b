"""The OTLP receiver under hostile posts: unknown keys are refused and never buffered, what waits for
the harness is bounded per trial and in total, and the trace records what was dropped."""

from __future__ import annotations

import asyncio
import sys
import textwrap
from pathlib import Path

import httpx
import pytest

from costar.run.agents import make_agent
from costar.run.harness import Harness, HarnessOptions
from costar.scenario import Scenario
from costar.store.base import Run
from costar.store.sqlite import SQLiteStore
from costar.trace.model import Span, SpanKind, TraceStatus
from costar.trace.otlp import spans_to_export_request
from costar.trace.receiver import OtlpReceiver

PB = {"Content-Type": "application/x-protobuf"}


_posted = iter(range(1, 1 << 62))


def body_of(size: int, *, key: str | None = None, n: int = 1) -> bytes:
    # Fresh span ids each time: the receiver takes a span it has seen once only (an exporter's retry).
    spans = [Span(trace_id="1" * 32, span_id=f"{next(_posted):016x}", name="chat m", kind=SpanKind.LLM, start_ns=1, end_ns=2,
                  attributes={"blob": "x" * (size // n)}) for _ in range(n)]
    resource = {"costar.trial.key": key} if key else {}
    return spans_to_export_request(spans, resource).SerializeToString()


def test_unknown_and_missing_keys_are_refused_and_never_buffered() -> None:
    with OtlpReceiver() as rx:
        blob = body_of(1 << 20)
        for _ in range(10):
            assert httpx.post(rx.base_url + "/costar/nope/v1/traces", content=blob, headers=PB).status_code == 404
            assert httpx.post(rx.base_url + "/v1/traces", content=blob, headers=PB).status_code == 400
            keyed = httpx.post(rx.base_url + "/v1/traces", content=body_of(1 << 20, key="forged"), headers=PB)
            assert keyed.status_code == 400
        assert rx.buffered_bytes == 0
        assert rx.take("nope") == []
        assert rx.take("forged") == []
        assert rx.stats.spans == 0
        assert rx.stats.rejected == 30
        r = httpx.post(rx.base_url + "/costar/nope/v1/traces", json={"resourceSpans": []})
        assert r.status_code == 404
        assert "unknown trial key" in r.json()["message"]


def test_each_trial_buffer_is_bounded_and_what_was_dropped_is_said() -> None:
    with OtlpReceiver(max_trial_bytes=1 << 20, max_total_bytes=3 << 20) as rx:
        url = rx.endpoint_for("k") + "/v1/traces"
        codes = [httpx.post(url, content=body_of(400_000), headers=PB).status_code for _ in range(4)]
        assert codes == [200, 200, 413, 413]
        assert rx.buffered_bytes <= 1 << 20
        errors = rx.errors("k")
        assert any("dropped 2 spans" in e for e in errors), errors
        assert len(rx.take("k")) == 2
        assert rx.buffered_bytes == 0
        # Taking empties the buffer: the trial may send again.
        assert httpx.post(url, content=body_of(400_000), headers=PB).status_code == 200
        rx.release("k")
        assert rx.buffered_bytes == 0
        assert httpx.post(url, content=body_of(1000), headers=PB).status_code == 404  # the trial is over


def test_all_trials_together_are_bounded() -> None:
    with OtlpReceiver(max_trial_bytes=1 << 20, max_total_bytes=1 << 20) as rx:
        a, b = rx.endpoint_for("a") + "/v1/traces", rx.endpoint_for("b") + "/v1/traces"
        assert httpx.post(a, content=body_of(700_000), headers=PB).status_code == 200
        assert httpx.post(b, content=body_of(700_000), headers=PB).status_code == 413
        assert rx.buffered_bytes <= 1 << 20
        assert rx.take("b") == []


def test_partial_success_names_the_refused_spans() -> None:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

    with OtlpReceiver() as rx:
        rx.endpoint_for("good")
        good = spans_to_export_request([Span(trace_id="1" * 32, span_id="2" * 16, name="a", start_ns=1)],
                                       {"costar.trial.key": "good"})
        bad = spans_to_export_request([Span(trace_id="1" * 32, span_id="3" * 16, name="b", start_ns=1)],
                                      {"costar.trial.key": "forged"})
        good.resource_spans.extend(bad.resource_spans)
        r = httpx.post(rx.base_url + "/v1/traces", content=good.SerializeToString(), headers=PB)
        assert r.status_code == 200
        resp = ExportTraceServiceResponse.FromString(r.content)
        assert resp.partial_success.rejected_spans == 1
        assert "no known" in resp.partial_success.error_message
        assert [rs.span.name for rs in rx.take("good")] == ["a"]


FLOOD_AGENT = """
import os, httpx
from costar.trace.model import Span, SpanKind
from costar.trace.otlp import spans_to_export_request
url = os.environ["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"]
codes = []
for i in range(6):
    span = Span(trace_id="1" * 32, span_id=f"{i:016x}", name=f"chunk {i}", kind=SpanKind.TOOL, start_ns=1 + i,
                end_ns=2 + i, attributes={"blob": "x" * 300_000})
    body = spans_to_export_request([span]).SerializeToString()
    codes.append(httpx.post(url, content=body, headers={"Content-Type": "application/x-protobuf"}).status_code)
print(" ".join(map(str, codes)))
"""


def test_a_flooding_agent_keeps_its_run_and_its_trace_says_what_was_dropped(
        project: Path, store: SQLiteStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("costar.trace.receiver.DEFAULT_MAX_TRIAL_BYTES", 1 << 20)
    (project / "agent.py").write_text(textwrap.dedent(FLOOD_AGENT))
    agent = make_agent({"type": "command", "command": [sys.executable, "agent.py"]})
    run = Run(agent=agent.info)
    store.create_run(run)
    res = asyncio.run(Harness(agent, store, HarnessOptions()).run([Scenario(id="flood", prompt="go")], run))
    t = store.get_trace(res.trace_ids[0])
    assert t.status == TraceStatus.OK, t.error
    assert t.output.split() == ["200", "200", "200", "413", "413", "413"]
    assert sorted(s.name for s in t.spans if s.name.startswith("chunk")) == ["chunk 0", "chunk 1", "chunk 2"]
    assert any("dropped 3 spans" in r for r in t.metadata["otlp_rejected"]), t.metadata
