"""OpenTelemetry spans an in-process agent emits through its own tracer providers are recorded into the
trial's trace (costar.capture.otel): mapped as spans received over OTLP are, nested under the coSTAR
span current where they started, and only inside the agent's call."""

from __future__ import annotations

import subprocess
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("opentelemetry.sdk", reason="the OpenTelemetry SDK is a dev dependency (scripts/setup --dev)")

from opentelemetry import trace as otel_trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Link, Status
from opentelemetry.trace import SpanKind as OtelKind
from opentelemetry.trace import StatusCode as OtelStatus

from costar.capture.otel import UNENDED, capturing_otel, instrument_otel, readable_to_pb
from costar.store.sqlite import SQLiteStore
from costar.trace.model import SpanKind, StatusCode
from costar.trace.otlp import span_from_pb
from costar.trace.recorder import Recording, span
from tests.support.cli import child_env, costar_cmd

TOOL = {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "lookup_customer",
        "gen_ai.tool.call.arguments": '{"customer_id": "C-42"}'}


def test_an_sdk_span_maps_as_its_otlp_export_would() -> None:
    provider = TracerProvider()
    tracer = provider.get_tracer("t")
    with tracer.start_as_current_span("outer", kind=OtelKind.SERVER) as outer:
        other = outer.get_span_context()
        with tracer.start_as_current_span("execute_tool lookup_customer", attributes=TOOL,
                                          links=[Link(other, {"why": "retry"})]) as inner:
            inner.add_event("looked up", {"rows": 1})
            inner.set_status(Status(OtelStatus.ERROR, "no such customer"))
            readable = inner
    pb = readable_to_pb(readable)  # type: ignore[arg-type]  # an ended SDK span is a ReadableSpan
    mapped = span_from_pb(pb)
    assert mapped.trace_id == f"{other.trace_id:032x}"
    assert mapped.parent_id == f"{other.span_id:016x}"
    assert mapped.kind == SpanKind.TOOL
    assert mapped.attributes["gen_ai.tool.name"] == "lookup_customer"
    assert mapped.status.code == StatusCode.ERROR
    assert mapped.status.message == "no such customer"
    assert [(e.name, e.attributes) for e in mapped.events] == [("looked up", {"rows": 1})]
    assert mapped.attributes["costar.otlp.links"] == [{"trace_id": f"{other.trace_id:032x}",
                                                       "span_id": f"{other.span_id:016x}",
                                                       "attributes": {"why": "retry"}}]
    assert mapped.end_ns is not None
    assert mapped.end_ns >= mapped.start_ns > 0


def test_only_spans_started_in_a_capturing_recording_are_recorded() -> None:
    instrument_otel()
    tracer = TracerProvider().get_tracer("agent")  # created after instrumenting: recorded
    with tracer.start_as_current_span("nowhere"):
        pass  # no recording: recorded nowhere
    with Recording("trial") as rec:
        with tracer.start_as_current_span("not capturing"):
            pass  # a recording, but not an agent's call (a judge, the harness)
        with (capturing_otel(), span("traced step") as step, tracer.start_as_current_span("plan"),
              tracer.start_as_current_span("execute_tool lookup_customer", attributes=TOOL)):
            pass
    spans = {s.name: s for s in rec.spans()}
    assert sorted(spans) == ["execute_tool lookup_customer", "plan", "traced step", "trial"]
    assert spans["plan"].trace_id == rec.trace_id
    assert spans["plan"].parent_id == step.span_id  # the coSTAR span current where it started
    assert spans["execute_tool lookup_customer"].parent_id == spans["plan"].span_id  # its own parent kept
    assert spans["execute_tool lookup_customer"].kind == SpanKind.TOOL


AGENT = '''
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider

    tracer = trace.get_tracer("shop")
    provider = None


    def run(task):
        global provider
        if provider is None:  # the agent sets up tracing on its first call, as many do
            provider = TracerProvider()
            trace.set_tracer_provider(provider)
        with tracer.start_as_current_span("handle request"):
            with tracer.start_as_current_span("execute_tool lookup_customer", attributes={
                    "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "lookup_customer",
                    "gen_ai.tool.call.arguments": '{"customer_id": "C-42"}',
                    "gen_ai.tool.call.result": '{"name": "Ada"}'}):
                pass
        return "Ada"
'''

SUITE = """
scenarios:
  - id: lookup
    prompt: who is C-42?
    trials: 2
    expectations:
      checks:
        - tool_called: {name: lookup_customer, min: 1, max: 1}
        - output_contains: Ada
"""


def test_a_python_agent_that_sets_the_global_provider_on_its_first_call(tmp_path: Path) -> None:
    (tmp_path / "agent.py").write_text(textwrap.dedent(AGENT))
    (tmp_path / "suite.yaml").write_text(SUITE)
    (tmp_path / "costar.yaml").write_text("suite: suite.yaml\nagent:\n  type: python\n  target: agent:run\n")
    res = subprocess.run([*costar_cmd(), "run", "--no-progress"], cwd=tmp_path, capture_output=True, text=True,
                         timeout=180, env=child_env())
    assert res.returncode == 0, res.stdout + res.stderr
    store = SQLiteStore(tmp_path / ".costar")
    try:
        traces = list(store.iter_traces(store.list_runs()[0].run_id))
    finally:
        store.close()
    assert len(traces) == 2  # both trials, the first included: its provider appeared mid-call
    for trace in traces:
        names = {s.name: s for s in trace.spans}
        root = trace.root_spans()
        assert len(root) == 1
        assert names["handle request"].parent_id == root[0].span_id
        tool = names["execute_tool lookup_customer"]
        assert tool.parent_id == names["handle request"].span_id
        assert tool.kind == SpanKind.TOOL
        assert trace.totals.tool_calls == 1


def test_spans_never_ended_are_forgotten_past_the_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    from costar.capture import otel

    instrument_otel()
    monkeypatch.setattr(otel, "MAX_OPEN", 3)
    tracer = TracerProvider().get_tracer("leaky")
    with Recording("trial") as rec:
        with capturing_otel():
            leaked = [tracer.start_span(f"never ended {i}") for i in range(5)]
            with tracer.start_as_current_span("ended"):
                pass
            assert otel._processor is not None
            assert len(otel._processor._open) == 2  # at most 3 at once; "ended" pushed out a third and left
        # The two still remembered are recorded unended when the agent's call is over; the three
        # forgotten first ones are not recorded at all, and ending any of them later changes nothing.
        assert not otel._processor._open
        for s in leaked:
            s.end()
    spans = {s.name: s for s in rec.spans() if s.name != "trial"}
    assert sorted(spans) == ["ended", "never ended 3", "never ended 4"]
    assert spans["never ended 3"].end_ns is None
    assert spans["never ended 3"].attributes[UNENDED] is True
    assert UNENDED not in spans["ended"].attributes


def test_a_span_the_agent_never_ends_is_recorded_unended_with_its_children_inside() -> None:
    instrument_otel()
    tracer = TracerProvider().get_tracer("agent")
    with Recording("trial") as rec:
        with capturing_otel():
            outer = tracer.start_span("handle request")  # the agent forgets outer.end()
            with otel_trace.use_span(outer), tracer.start_as_current_span("execute_tool lookup", attributes=TOOL):
                pass
        other_trial_open = tracer.start_span("outside any capture")  # not this recording's: not recorded
    spans = {s.name: s for s in rec.spans()}
    assert sorted(spans) == ["execute_tool lookup", "handle request", "trial"]
    assert spans["execute_tool lookup"].parent_id == spans["handle request"].span_id  # not a dangling parent
    assert spans["handle request"].parent_id == spans["trial"].span_id
    assert spans["handle request"].end_ns is None
    assert spans["handle request"].attributes[UNENDED] is True
    other_trial_open.end()


def test_lone_surrogates_in_an_agents_spans_are_recorded_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    """Text decoded with surrogateescape reaches span names and attributes; the SDK takes it, and so
    must coSTAR: the agent's span.end() never raises, and the text is stored with U+FFFD."""
    instrument_otel()
    tracer = TracerProvider().get_tracer("agent")
    with Recording("trial") as rec, capturing_otel(), tracer.start_as_current_span("read x\ud83d") as sp:
        sp.set_attribute("file.text", "caf\udce9")
        sp.set_attribute("lines", ["ok", "bad \udcff"])
        sp.add_event("line \ud800", {"k\udc80": "v"})
        sp.set_status(Status(OtelStatus.ERROR, "decode \udcff"))
    got = {s.name: s for s in rec.spans()}["read x\ufffd"]
    assert got.attributes["file.text"] == "caf\ufffd"
    assert got.attributes["lines"] == ["ok", "bad \ufffd"]
    assert got.events[0].name == "line \ufffd"
    assert got.events[0].attributes == {"k\ufffd": "v"}
    assert got.status.message == "decode \ufffd"
    assert "could not record" not in caplog.text


def test_a_span_costar_cannot_map_is_dropped_with_a_warning_never_raised(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    import costar.capture.otel as otel

    def broken(span: object) -> object:
        raise ValueError("unmappable")

    instrument_otel()
    tracer = TracerProvider().get_tracer("agent")
    monkeypatch.setattr(otel, "span_from_pb", broken)
    with Recording("trial") as rec, capturing_otel(), tracer.start_as_current_span("odd"):
        pass  # ending it must not raise into the agent
    assert [s.name for s in rec.spans()] == ["trial"]
    assert "coSTAR could not record the OpenTelemetry span 'odd': unmappable" in caplog.text
