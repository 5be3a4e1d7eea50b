"""The labeling web app over real HTTP on loopback, and in a real chromium (Playwright)."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from costar.align.labeling_web import create_label_app, start_label_server
from costar.errors import ConfigError
from costar.labels import UnknownTraceError, ValueType
from costar.store.sqlite import SQLiteStore
from costar.trace.model import Artifact, Span, SpanKind, SpanStatus, StatusCode, Totals, Trace
from costar.verdict import Verdict, VerdictSource

JUDGE = "report_quality"
CHROMIUM = Path("/usr/bin/chromium")
SCRIPT = "<script>alert(1)</script>"
ATTR = '"><img src=x onerror=alert(1)>'
HOSTILE = f"Here you go {SCRIPT} and {ATTR} done"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def make_trace(store: SQLiteStore, tid: str, output: str, *, scenario: str = "sales-report") -> Trace:
    sha = store.put_blob(f"region,total\nnorth,12\n{output}\n".encode())
    root, llm, tool = f"{tid}-root", f"{tid}-llm", f"{tid}-tool"
    spans = [
        Span(trace_id=tid, span_id=root, name="invoke_agent analyst", kind=SpanKind.AGENT, start_ns=0,
             end_ns=2_000_000_000, attributes={"gen_ai.agent.name": "analyst"}),
        Span(trace_id=tid, span_id=llm, parent_id=root, name="chat gpt-4.1-mini", kind=SpanKind.LLM,
             start_ns=1_000, end_ns=900_000_000, attributes={
                 "gen_ai.request.model": "gpt-4.1-mini", "gen_ai.usage.input_tokens": 120,
                 "gen_ai.input.messages": [{"role": "user", "parts": [{"type": "text", "content": "Sum by region"}]}],
                 "gen_ai.output.messages": [{"role": "assistant", "parts": [
                     {"type": "tool_call", "id": "call_1", "name": "read_csv", "arguments": {"path": "sales.csv"}},
                     {"type": "text", "content": output}]}]}),
        Span(trace_id=tid, span_id=tool, parent_id=root, name="execute_tool read_csv", kind=SpanKind.TOOL,
             start_ns=900_000_000, end_ns=1_000_000_000, status=SpanStatus(code=StatusCode.ERROR, message="slow"),
             attributes={"gen_ai.tool.name": "read_csv", "gen_ai.tool.call.arguments": {"path": output},
                         "gen_ai.tool.call.result": "region,total"}),
    ]
    trace = Trace(trace_id=tid, scenario_id=scenario, input="Summarise sales.csv by region", output=output,
                  totals=Totals(llm_calls=1, tool_calls=1, latency_s=2.0),
                  artifacts=[Artifact(path="report.md", sha256=sha, size=len(output) + 26)], spans=spans)
    store.write_trace(trace)
    return trace


@pytest.fixture
def traces(store: SQLiteStore) -> list[str]:
    ids = ["trace-a", "trace-b", "run/1/trace-xss"]
    make_trace(store, ids[0], "north: 12, south: 30")
    make_trace(store, ids[1], "I could not find the file")
    make_trace(store, ids[2], HOSTILE, scenario=f"scenario {ATTR}")
    store.write_verdicts([
        Verdict(name=JUDGE, value=True, passed=True, rationale="totals match the CSV", source=VerdictSource.LLM,
                trace_id=ids[0]),
        Verdict(name=JUDGE, value=False, passed=False, rationale="no report produced", source=VerdictSource.LLM,
                trace_id=ids[1]),
        Verdict(name=JUDGE, value=False, passed=False, rationale=f"judge quoting the output: {HOSTILE}",
                source=VerdictSource.LLM, trace_id=ids[2]),
    ])
    return ids


@pytest.fixture
def server(store: SQLiteStore, traces: list[str]) -> Iterator[str]:
    srv = start_label_server(store, JUDGE, queue=traces, value_type="bool")
    try:
        yield srv.base_url
    finally:
        srv.stop()


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match, "the form carries a token"
    return match.group(1)


# ----------------------------------------------------------------------------- HTTP


def test_pages_are_escaped_and_locked_down(server: str, traces: list[str]) -> None:
    with httpx.Client(base_url=server) as client:
        queue = client.get("/")
        assert queue.status_code == 200
        csp = queue.headers["content-security-policy"]
        assert "default-src 'none'" in csp
        assert "script-src" not in csp  # no script may run at all
        assert queue.headers["x-content-type-options"] == "nosniff"
        assert "0 of 3 traces labeled by anyone · 3 to go" in queue.text
        assert f'href="/traces/{quote(traces[2], safe="")}"' in queue.text

        page = client.get(f"/traces/{quote(traces[2], safe='')}")
        assert page.status_code == 200
        for raw in (SCRIPT, ATTR, "<img"):
            assert raw not in page.text
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
        assert "&quot;&gt;&lt;img src=x onerror=alert(1)&gt;" in page.text
        assert " onerror=" not in page.text.replace("onerror=alert(1)&gt;", "")  # only ever as escaped text
        assert "<script" not in page.text
        assert client.get("/traces/nope").status_code == 404
        ambiguous = client.get("/traces/trace-")  # starts trace-a and trace-b: the reader must give more
        assert ambiguous.status_code == 400
        assert "is the start of several trace ids; give more of it" in ambiguous.text
        css = client.get("/assets/label.css")
        assert css.headers["content-type"].startswith("text/css")
        assert ".label-panel" in css.text
        assert client.get("/", headers={"host": "attacker.example"}).status_code == 421


def test_form_posts_are_same_origin_urlencoded_and_token_checked(store: SQLiteStore, server: str,
                                                                traces: list[str]) -> None:
    with httpx.Client(base_url=server) as client:
        token = csrf_of(client.get(f"/traces/{traces[0]}").text)
        form = {"csrf": token, "trace_id": traces[0], "labeler": "ana", "value": "pass", "rationale": "ok"}
        refused = [
            client.post("/label", json=form),
            client.post("/label", files={"x": ("a", b"b")}, data=form),
            client.post("/label", content="csrf=x", headers={"content-type": "text/plain"}),
            client.post("/label", data={**form, "csrf": "forged"}),
            client.post("/label", data=form, headers={"origin": "https://attacker.example"}),
            client.post("/label", data=form, headers={"sec-fetch-site": "cross-site"}),
            client.post("/label", data={**form, "rationale": "x" * 300_000}),
        ]
        assert [r.status_code for r in refused] == [415, 415, 415, 403, 403, 403, 413]
        assert store.labels() == []

        bad = client.post("/label", data={**form, "value": "brilliant", "rationale": "<b>kept</b>"})
        assert bad.status_code == 400
        assert "expected pass/fail (true or false), got &#x27;brilliant&#x27;" in bad.text
        assert "&lt;b&gt;kept&lt;/b&gt;</textarea>" in bad.text  # the rationale is kept for another try
        assert client.post("/label", data={**form, "labeler": " "}).status_code == 400
        assert store.labels() == []

        ok = client.post("/label", data=form, headers={"origin": server, "sec-fetch-site": "same-origin"})
        assert ok.status_code == 303
        assert ok.headers["location"] == f"/traces/{traces[1]}"
        assert "costar_labeler=ana" in ok.headers["set-cookie"]
        again = client.post("/label", data={**form, "value": "fail", "rationale": "changed"})
        assert again.status_code == 303  # the form is an explicit edit: it replaces the labeler's label
        assert [(v.source_id, v.value, v.rationale) for v in store.labels()] == [("ana", False, "changed")]


def test_json_api(store: SQLiteStore, server: str, traces: list[str]) -> None:
    with httpx.Client(base_url=server) as client:
        queue = client.get("/api/queue", params={"labeler": "bo"}).json()
        assert queue["value_type"]["kind"] == "bool"
        assert queue["to_label"] == 3
        assert [i["trace_id"] for i in queue["items"]] == traces
        assert queue["items"][0]["verdict"] == {"outcome": "pass", "value": True, "rationale": "totals match the CSV"}

        detail = client.get(f"/api/traces/{quote(traces[2], safe='')}")
        assert detail.status_code == 200
        assert detail.headers["content-type"] == "application/json"
        body = detail.json()
        assert body["trace"]["output"] == HOSTILE
        assert body["span_count"] == 3
        assert body["labels"] == []
        assert client.get("/api/traces/nope").status_code == 404
        assert client.get("/api/traces/trace-").status_code == 400
        assert client.get("/api/traces/trace-").json()["error"].endswith("give more of it")

        post = {"trace_id": traces[2], "value": "fail", "labeler": "bo", "rationale": "script in the output"}
        created = client.post("/api/labels", json=post)
        assert created.status_code == 201
        assert created.json()["value"] is False
        assert created.json()["source"] == "human"
        assert created.json()["source_id"] == "bo"
        results = [
            client.post("/api/labels", json={**post, "value": True}),  # a conflict without replace
            client.post("/api/labels", json={**post, "trace_id": "ghost"}),
            client.post("/api/labels", json={**post, "value": 0.5}),
            client.post("/api/labels", content=b"not json", headers={"content-type": "application/json"}),
            client.post("/api/labels", json=[post]),
            client.post("/api/labels", content=b"{}", headers={"content-type": "text/plain"}),
            client.post("/api/labels", data=post),
        ]
        assert [r.status_code for r in results] == [409, 404, 400, 400, 400, 415, 415]
        assert "pass replace=True" in results[0].json()["error"]
        replaced = client.post("/api/labels", json={**post, "value": True, "replace": True})
        assert replaced.status_code == 201
        assert [(v.trace_id, v.value) for v in store.labels()] == [(traces[2], True)]


def test_fixed_labeler_numbers_and_loopback_only(store: SQLiteStore, traces: list[str]) -> None:
    srv = start_label_server(store, "helpfulness", queue=traces, labeler="lead",
                             value_type=ValueType(kind="number", minimum=1, maximum=5))
    try:
        with httpx.Client(base_url=srv.base_url) as client:
            page = client.get(f"/traces/{traces[0]}").text
            assert 'type="number"' in page
            assert 'min="1"' in page
            assert 'max="5"' in page
            assert "labeling as" in page
            form = {"csrf": csrf_of(page), "trace_id": traces[0], "labeler": "mallory", "value": "4"}
            assert client.post("/label", data=form).status_code == 303
            assert client.post("/label", data={**form, "value": "9"}).status_code == 400
    finally:
        srv.stop()
    assert [(v.source_id, v.value) for v in store.labels(name="helpfulness")] == [("lead", 4)]
    with pytest.raises(ConfigError, match="serves only on loopback"):
        start_label_server(store, JUDGE, host="0.0.0.0")
    with pytest.raises(UnknownTraceError, match="the queue names 1 trace"):
        create_label_app(store, JUDGE, queue=["ghost"])


# ----------------------------------------------------------------------------- browser


@pytest.mark.browser
@pytest.mark.skipif(shutil.which(str(CHROMIUM)) is None,
                    reason="needs Debian's chromium at /usr/bin/chromium (apt-get install -y chromium)")
def test_label_two_traces_in_a_real_browser(tmp_path: Path, store: SQLiteStore, server: str,
                                            traces: list[str]) -> None:
    from playwright.sync_api import expect, sync_playwright

    dialogs: list[str] = []
    console: list[str] = []
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(str(tmp_path / "profile"), executable_path=str(CHROMIUM),
                                                        headless=True, args=CHROMIUM_ARGS)
        try:
            page = context.new_page()
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            page.on("console", lambda m: console.append(m.text))
            page.goto(server + "/")
            expect(page.get_by_text("0 of 3 traces labeled by anyone")).to_be_visible()
            page.get_by_role("link", name="Label the next trace →").click()

            page.wait_for_url(f"**/traces/{traces[0]}")
            expect(page.get_by_text("totals match the CSV")).to_be_visible()  # the judge's rationale
            expect(page.locator("summary", has_text="execute_tool read_csv")).to_be_visible()  # the span tree
            page.fill("#labeler", "ana")
            page.fill("#rationale", "totals are right")
            page.get_by_role("button", name="Pass").click()

            page.wait_for_url(f"**/traces/{traces[1]}")
            expect(page.locator("#labeler")).to_have_value("ana")  # remembered
            page.fill("#rationale", "no report at all")
            page.get_by_role("button", name="Fail").click()

            # The next trace is the hostile one: everything in it must show as text.
            page.wait_for_url(f"**/traces/{quote(traces[2], safe='')}")
            expect(page.get_by_text(SCRIPT).first).to_be_visible()
            expect(page.get_by_text(ATTR).first).to_be_visible()
            page.locator("details.span summary", has_text="chat gpt-4.1-mini").click()
            expect(page.locator("pre.text", has_text=ATTR).first).to_be_visible()
            assert page.locator("script").count() == 0
            assert page.locator("img").count() == 0
            # A rationale that tries to break out of the textarea is stored and shown back as text.
            breakout = "</textarea><script>alert(2)</script>"
            page.fill("#rationale", breakout)
            page.get_by_role("button", name="Fail").click()
            page.wait_for_url("**/?done=1")
            expect(page.get_by_text("Every trace in the queue is labeled")).to_be_visible()
            page.goto(f"{server}/traces/{quote(traces[2], safe='')}")
            expect(page.locator("#rationale")).to_have_value(breakout)
            assert page.locator("script").count() == 0
        finally:
            context.close()

    assert dialogs == []
    assert not [m for m in console if "Content Security Policy" in m]  # nothing even tried to run
    assert [(v.trace_id, v.value, v.rationale, v.source_id) for v in store.labels(name=JUDGE)] == [
        (traces[0], True, "totals are right", "ana"), (traces[1], False, "no report at all", "ana"),
        (traces[2], False, breakout, "ana")]
