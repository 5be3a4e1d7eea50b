"""The HTML report: self-contained, escapes every untrusted string, bounded in size and depth."""

from __future__ import annotations

import json
import time
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from costar.report.html import HtmlLimits, render_html, write_html
from costar.store.sqlite import SQLiteStore
from costar.summary import summarize
from costar.trace.model import Artifact, Span, SpanEvent, SpanKind, Trace
from tests.support.paths import EXTERNAL
from tests.support.report import T0, llm_span, make_run, make_trace, sample_run, verdict

XSS = ['<script>alert(1)</script>', '"><img src=x onerror=alert(1)>']
TAU_BENCH = EXTERNAL / "tau-bench" / "gpt-4o-airline.json"


class Page(HTMLParser):
    """What a browser would build: tags, attributes, <details> nesting depth, visible text."""

    def __init__(self, markup: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.depth = 0
        self.max_depth = 0
        self.text: list[str] = []
        self.feed(markup)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag == "details":
            self.depth += 1
            self.max_depth = max(self.max_depth, self.depth)

    def handle_endtag(self, tag: str) -> None:
        if tag == "details":
            self.depth -= 1

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def names(self, tag: str) -> list[dict[str, str | None]]:
        return [attrs for t, attrs in self.tags if t == tag]

    @property
    def visible(self) -> str:
        return "".join(self.text)


def _assert_no_live_injection(page: Page) -> None:
    assert len(page.names("script")) == 1, "only the report's own script"
    assert page.names("img") == []
    assert page.names("iframe") == []
    assert page.names("link") == []
    for tag, attrs in page.tags:
        for key, value in attrs.items():
            assert not key.startswith("on"), (tag, key)
            if key in ("href", "src", "action"):
                assert value is not None, (tag, key, value)
                assert value.startswith("#"), (tag, key, value)


def _sample_html(**kw: Any) -> tuple[str, Page]:
    run, traces, verdicts = sample_run()
    markup = render_html(summarize(run, traces, verdicts), traces, verdicts, title="Nightly", **kw)
    return markup, Page(markup)


def test_page_is_self_contained() -> None:
    markup, page = _sample_html()
    _assert_no_live_injection(page)
    assert "http://" not in markup
    assert "https://" not in markup
    assert len(page.names("style")) == 1
    csp = [a for a in page.names("meta") if a.get("http-equiv") == "Content-Security-Policy"]
    assert csp
    assert "default-src 'none'" in (csp[0]["content"] or "")
    assert page.depth == 0  # every <details> is closed


def test_page_shows_summary_trials_verdicts_and_spans() -> None:
    _, page = _sample_html()
    text = page.visible
    for expected in ("Nightly", "1/3 scenarios passed", "booking", "weather", "50% [9–91%]",
                     "no reservation was created", "judge model returned 503", "fp-booked",
                     "the answer was curt", "timed out after 30s", "notes/out.txt", "1,234 B",
                     "invoke_agent weather", "chat gpt-test", "execute_tool get_weather",
                     "Weather in Paris?", "→ tool call get_weather (call_1)", "tool arguments", "tool result",
                     "retry", "gen_ai.request.model", "What is the weather in Paris?", "Reliability over k trials"):
        assert expected in text, expected
    # Trials carry their status for the "only failing" filter; message roles become CSS classes.
    statuses = [a.get("data-status") for a in page.names("details") if "trial" in (a.get("class") or "")]
    assert statuses.count("pass") == 4
    assert statuses.count("fail") == 2
    assert statuses.count("error") == 1
    classes = " ".join(a.get("class") or "" for a in page.names("div"))
    assert "msg role-user" in classes
    assert "msg role-assistant" in classes
    assert "msg role-system" in classes
    # Verdict evidence links to the span it points at.
    anchors = {a.get("id") for _, a in page.tags if a.get("id")}
    links = [a["href"] for a in page.names("a") if (a.get("href") or "").startswith("#t")]
    assert links
    assert all(href[1:] in anchors for href in links)


def _hostile_trace() -> Trace:
    bad = XSS[0] + XSS[1]
    trace = make_trace("hostile", 0, output=bad)
    trace.input = {"prompt": bad}
    trace.error = bad
    trace.artifacts.append(Artifact(path=bad, sha256="cd" * 32, size=1, media_type=bad))
    trace.metadata = {bad: bad}
    root = trace.spans[0]
    root.name = bad
    root.attributes[bad] = bad
    root.attributes["input.value"] = bad
    root.events.append(SpanEvent(name=bad, time_ns=T0, attributes={bad: bad}))
    llm = trace.spans[1]
    llm.attributes["gen_ai.output.messages"] = [
        {"role": bad, "finish_reason": bad, "parts": [{"type": "text", "content": bad},
                                                      {"type": "tool_call", "id": bad, "name": bad, "arguments": bad},
                                                      {"type": bad, "content": bad}]}]
    llm.attributes["gen_ai.system_instructions"] = [{"type": "text", "content": bad}]
    trace.spans[2].attributes["gen_ai.tool.call.result"] = {"html": bad}
    trace.spans[2].status.message = bad
    return trace


def test_untrusted_content_is_escaped_everywhere() -> None:
    trace = _hostile_trace()
    bad = XSS[0] + XSS[1]
    verdicts = [verdict(trace, bad, False, rationale=bad, value=bad),
                verdict(trace, "judge", None, error=bad)]
    run = make_run()
    run.description = bad
    markup = render_html(summarize(run, [trace], verdicts), [trace], verdicts, title=bad)
    page = Page(markup)
    _assert_no_live_injection(page)
    assert "<script>alert(1)</script>" not in markup
    assert "<img src=x" not in markup
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in markup
    assert "&quot;&gt;&lt;img src=x onerror=alert(1)&gt;" in markup
    # The payload is there as text for a human to read, many times over.
    assert page.visible.count("<script>alert(1)</script>") >= 15


def test_long_values_are_truncated_with_their_size() -> None:
    trace = make_trace("big", 0, output="o" * 100_000)
    trace.spans[0].attributes["huge"] = "v" * 1_000_000
    trace.spans[2].attributes["gen_ai.tool.call.result"] = {"rows": ["r" * 100] * 10_000}
    markup = render_html(summarize(make_run(), [trace], []), [trace], [], title="t")
    assert "showing 4,000 of 1,000,000 characters" in markup
    assert "showing 20,000 of 100,000 characters" in markup
    assert len(markup) < 300_000


def _wide_trace(n: int) -> Trace:
    trace = make_trace("wide", 0)
    root = trace.spans[0]
    extra = [Span.model_construct(trace_id=trace.trace_id, span_id=f"s{i}", parent_id=root.span_id,
                                  name=f"step {i}", kind=SpanKind.CHAIN, start_ns=T0 + i, end_ns=T0 + i + 10,
                                  attributes={"i": i, "payload": "x" * 200}, events=[],
                                  status=root.status)
             for i in range(n)]
    trace.spans = trace.spans + extra
    return trace


def test_hundred_thousand_spans_make_a_bounded_page() -> None:
    trace = _wide_trace(100_000)
    started = time.perf_counter()
    markup = render_html(summarize(make_run(), [trace], []), [trace], [], title="t")
    elapsed = time.perf_counter() - started
    page = Page(markup)
    spans = [a for a in page.names("details") if "span" in (a.get("class") or "").split()]
    assert len(spans) == 2_000
    assert "98,003 more spans not shown" in page.visible
    assert len(markup) < 4_000_000
    assert elapsed < 10


def test_deep_nesting_is_bounded_and_does_not_recurse() -> None:
    trace = make_trace("deep", 0)
    parent = trace.spans[0].span_id
    for i in range(5_000):
        trace.spans.append(Span(trace_id=trace.trace_id, span_id=f"d{i}", parent_id=parent, name=f"level {i}",
                                start_ns=T0 + i, end_ns=T0 + i + 1))
        parent = f"d{i}"
    limits = HtmlLimits(max_depth=40)
    markup = render_html(summarize(make_run(), [trace], []), [trace], [], title="t", limits=limits)
    page = Page(markup)
    assert page.depth == 0
    # Trial <details> + span nesting capped at max_depth + 1.
    assert page.max_depth <= limits.max_depth + 2
    assert "level 1500" in page.visible
    assert "(depth 1501)" in page.visible


def test_parent_cycles_and_duplicate_ids_render_once() -> None:
    trace = make_trace("cycle", 0)
    tid = trace.trace_id
    trace.spans += [Span(trace_id=tid, span_id="a", parent_id="b", name="cycle-a", start_ns=T0),
                    Span(trace_id=tid, span_id="b", parent_id="a", name="cycle-b", start_ns=T0),
                    Span(trace_id=tid, span_id="self", parent_id="self", name="own-parent", start_ns=T0),
                    Span(trace_id=tid, span_id="a", parent_id="b", name="duplicate-a", start_ns=T0)]
    markup = render_html(summarize(make_run(), [trace], []), [trace], [], title="t")
    text = Page(markup).visible
    for name in ("cycle-a", "cycle-b", "own-parent", "duplicate-a"):
        assert text.count(name) == 1, name


def test_page_budget_drops_span_trees_of_later_traces() -> None:
    traces = [_wide_trace(50), make_trace("later", 0)]
    traces[1].spans[0].name = "should not be rendered"
    limits = HtmlLimits(max_page_chars=10_000)
    markup = render_html(summarize(make_run(), traces, []), traces, [], title="t", limits=limits)
    assert "span tree not shown: the page&#x27;s size budget is spent" in markup
    assert "details not shown" in markup  # the first trace ran out part way
    assert "should not be rendered" not in markup
    assert "It is rainy in Paris." in markup  # trial facts are still there


def test_control_characters_and_lone_surrogates(tmp_path: Path) -> None:
    trace = make_trace("ctl", 0, output="a\x00b\x1b[31mc\ud800d")
    path = write_html(tmp_path / "out" / "report.html", summarize(make_run(), [trace], []), [trace], [], title="t")
    markup = path.read_text(encoding="utf-8")
    assert "\x00" not in markup
    assert "\x1b" not in markup
    assert "a\ufffdb\ufffd[31mc\ufffdd" in markup


def test_missing_trace_is_noted() -> None:
    run, traces, verdicts = sample_run()
    markup = render_html(summarize(run, traces, verdicts), traces[1:], verdicts, title="t")
    assert markup.count("trace not available") == 1


def test_write_html_streams_traces_from_a_real_store(tmp_path: Path) -> None:
    run, traces, verdicts = sample_run()
    with SQLiteStore(tmp_path / ".costar") as store:
        store.create_run(run)
        store.write_traces(traces)
        store.write_verdicts(verdicts, run_id=run.run_id)
        summary = summarize(run, store.iter_traces(run.run_id, spans=False), store.verdicts(run_id=run.run_id))
        path = write_html(tmp_path / "report.html", summary, store.iter_traces(run.run_id),
                          store.verdicts(run_id=run.run_id), title="from store")
    page = Page(path.read_text(encoding="utf-8"))
    _assert_no_live_injection(page)
    assert "no reservation was created" in page.visible
    assert "execute_tool get_weather" in page.visible


def _parts(message: dict[str, Any]) -> dict[str, Any]:
    """An OpenAI-style chat message in the OTel GenAI parts shape (as the importers store it)."""
    parts: list[dict[str, Any]] = []
    if message.get("content"):
        kind = "tool_call_response" if message["role"] == "tool" else "text"
        key = "response" if kind == "tool_call_response" else "content"
        parts.append({"type": kind, key: message["content"], "id": message.get("tool_call_id")})
    for call in message.get("tool_calls") or []:
        parts.append({"type": "tool_call", "id": call["id"], "name": call["function"]["name"],
                      "arguments": json.loads(call["function"]["arguments"])})
    return {"role": message["role"], "parts": parts}


def test_real_tau_bench_conversation_renders_as_chat() -> None:
    if not TAU_BENCH.exists():
        pytest.skip("tau-bench data not available")
    run_record = json.loads(TAU_BENCH.read_text())[0]
    messages = [_parts(m) for m in run_record["traj"]]
    trace = make_trace("tau-airline-0", 0)
    llm = llm_span(trace.trace_id, "tau", trace.spans[0].span_id)
    llm.attributes["gen_ai.input.messages"] = messages[:-1]
    llm.attributes["gen_ai.output.messages"] = messages[-1:]
    trace.spans.append(llm)
    markup = render_html(summarize(make_run(), [trace], []), [trace], [], title="tau")
    page = Page(markup)
    _assert_no_live_injection(page)
    assert f"{len(messages) - 1 - 30} earlier messages not shown" in page.visible
    last_user = next(m for m in reversed(run_record["traj"]) if m["role"] == "user")
    assert last_user["content"][:60] in page.visible
    called = next(m for m in reversed(run_record["traj"]) if m.get("tool_calls"))
    assert f"→ tool call {called['tool_calls'][0]['function']['name']}" in page.visible


def test_text_artifacts_show_their_contents_escaped_collapsed_and_bounded(tmp_path: Path) -> None:
    run = make_run()
    trace = make_trace("files", 0)
    with SQLiteStore(tmp_path / ".costar") as store:
        notes = store.put_blob(("<script>alert(1)</script> total 42\n" + "x" * 10_000).encode())
        image = store.put_blob(b"\x89PNG\r\n\x1a\n\x00\x00binary")
        trace.artifacts = [Artifact(path="notes.md", sha256=notes, size=10_036, media_type="text/markdown"),
                           Artifact(path="plot.png", sha256=image, size=16, media_type="image/png")]
        store.create_run(run)
        store.write_traces([trace])
        summary = summarize(run, [trace], [])
        markup = render_html(summary, [trace], [], limits=HtmlLimits(max_artifact_chars=500), store=store)
    page = Page(markup)
    _assert_no_live_injection(page)
    assert "<script>alert(1)</script> total 42" in page.visible  # the text, as text
    assert "truncated: showing the first 500 characters of 10,036 bytes" in page.visible
    assert "x" * 600 not in page.visible
    previews = [attrs for attrs in page.names("details") if attrs.get("class") == "artifact"]
    assert len(previews) == 1
    assert "open" not in previews[0]  # collapsed; the binary file is not shown
    # Without a store the artifacts are listed, not read.
    assert "total 42" not in Page(render_html(summary, [trace], [])).visible


def test_pass_hat_k_has_one_decimal() -> None:
    traces = [make_trace("a", i) for i in range(3)] + [make_trace("b", i) for i in range(3)]
    passed = {("a", 0), ("a", 1), ("a", 2), ("b", 0), ("b", 1)}
    verdicts = [verdict(t, "ok", (t.scenario_id, t.trial) in passed) for t in traces]
    page = Page(render_html(summarize(make_run(), traces, verdicts), traces, verdicts))
    # pass^2 over a (3/3) and b (2/3): (1 + 1/3) / 2 = 0.6667; pass^3: 0.5.
    assert "66.7%" in page.visible
    assert "50.0%" in page.visible
