"""The web app over real HTTP on loopback: every page on a seeded store, the same data as the CLI's
``--json``, the CSP and the other headers, hostile content escaped, the trace tree's paging API,
labeling in place with its CSRF/Origin protection, and logging in to a server that requires tokens."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from costar._util.server import BackgroundServer
from costar.errors import ConfigError, StoreError
from costar.server.auth import SESSION_COOKIE, create_token, revoke_token
from costar.ui.app import create_ui_app, serve_ui
from costar.ui.security import CSP, local_path
from tests.support.cli import as_in_a_terminal, costar_cmd
from tests.support.waiting import wait_for
from tests.support.webapp_seed import (
    HOSTILE_IMG,
    HOSTILE_LINK,
    HOSTILE_SCRIPT,
    HOSTILE_TEMPLATE,
    JUDGE,
    Seeded,
    seed_store,
)


@pytest.fixture
def seeded(tmp_path: Path) -> Iterator[Seeded]:
    s = seed_store(tmp_path)
    (tmp_path / "costar.yaml").write_text("suite: scenarios\n")
    try:
        yield s
    finally:
        s.store.close()


@pytest.fixture
def ui(seeded: Seeded) -> Iterator[str]:
    with BackgroundServer(create_ui_app(seeded.store, project_dir=str(seeded.store.root.parent))) as srv:
        yield srv.url


def page_data(html: str, block: str = "page-data") -> object:
    match = re.search(rf'<script type="application/json" id="{block}">(.*?)</script>', html, re.S)
    assert match, f"the page carries its data in #{block}"
    return json.loads(match.group(1))


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, attrs))


def parsed_tags(html: str) -> list[tuple[str, list[tuple[str, str | None]]]]:
    """Every element a browser would build from ``html``, with its attributes."""
    parser = _Tags()
    parser.feed(html)
    return parser.tags


def cli_json(cwd: Path, *args: str) -> object:
    done = subprocess.run([*costar_cmd(), *args, "--json"], cwd=cwd, capture_output=True, text=True, timeout=120)
    assert done.returncode in (0, 1), done.stderr
    return json.loads(done.stdout)


def pages(s: Seeded) -> list[str]:
    head_trace = s.traces[s.head_run][0]
    return ["/runs", "/runs?sort=pass_rate&order=asc&q=analyst", f"/runs/{s.head_run}", f"/traces/{quote(head_trace)}",
            f"/traces/{quote(head_trace)}?span={quote(s.evidence[head_trace])}",
            f"/compare?base={s.base_run}&head={s.head_run}", "/compare", "/judges", f"/judges/{JUDGE}",
            f"/judges/{JUDGE}/label", f"/judges/{JUDGE}/label/{quote(head_trace)}", "/scenarios",
            "/scenarios?flaky=1&sort=flaky", "/login"]


# ----------------------------------------------------------------------------- every page


def test_every_page_renders_with_the_security_headers(seeded: Seeded, ui: str) -> None:
    with httpx.Client(base_url=ui, timeout=60) as client:
        for url in pages(seeded):
            r = client.get(url)
            assert r.status_code == 200, (url, r.text[:500])
            assert r.headers["content-security-policy"] == CSP, url
            assert r.headers["x-content-type-options"] == "nosniff"
            assert r.headers["x-frame-options"] == "DENY"
            assert r.headers["cache-control"] == "no-store"
            # Nothing is loaded from elsewhere: every script, style and link is this app's.
            for ref in re.findall(r'(?:src|href)="([^"]*)"', r.text):
                assert ref.startswith(("/", "?", "#")), (url, ref)
            assert re.search(r"<script(?![^>]*\bsrc=)(?![^>]*application/json)[^>]*>", r.text) is None, url
        assert client.get("/").headers["location"] == "/runs"
        assert client.get("/", follow_redirects=False).status_code == 303


def test_the_policy_forbids_inline_script_eval_and_other_origins() -> None:
    directives = dict(part.strip().split(" ", 1) for part in CSP.split(";"))
    assert directives["default-src"] == "'none'"
    assert directives["script-src"] == "'self'"  # no 'unsafe-inline', no 'unsafe-eval', no host
    assert directives["style-src"] == "'self'"
    assert directives["connect-src"] == "'self'"
    assert directives["require-trusted-types-for"] == "'script'"
    assert directives["frame-ancestors"] == "'none'"
    assert directives["base-uri"] == "'none'"


def test_assets_are_served_by_the_app_with_their_types(ui: str) -> None:
    with httpx.Client(base_url=ui, timeout=60) as client:
        for path, kind in [("/static/app.css", "text/css"), ("/static/js/trace.js", "javascript"),
                           ("/static/js/charts.js", "javascript"), ("/static/vendor/uplot/uPlot.iife.min.js", "javascript"),
                           ("/static/vendor/uplot/uPlot.min.css", "text/css"), ("/static/vendor/uplot/LICENSE", "")]:
            r = client.get(path)
            assert r.status_code == 200, path
            assert kind in r.headers["content-type"], (path, r.headers["content-type"])
            assert r.headers["content-security-policy"] == CSP
        assert client.get("/static/../pyproject.toml").status_code == 404


def test_unknown_things_are_clear_errors(ui: str) -> None:
    with httpx.Client(base_url=ui, timeout=60) as client:
        r = client.get("/traces/no-such-trace")
        assert r.status_code == 404
        assert "no trace" in r.text
        assert client.get("/runs/no-such-run").status_code == 404
        assert client.get("/api/v1/traces/no-such-trace/tree").status_code == 404
        assert client.get("/api/v1/traces/no-such-trace/tree").json()["detail"].startswith("no trace")
        r = client.get("/compare?base=nope&head=latest")
        assert r.status_code == 404
        assert "no run" in r.text
        r = client.get("/judges/no-such-judge")
        assert r.status_code == 404
        assert "no judge &#39;no-such-judge&#39;" in r.text  # escaped like all text


@pytest.mark.parametrize(("path", "message"), [
    ("/runs/2026120", "run id &#39;2026120&#39; is ambiguous"),
    ("/runs/branch:", "bad run reference &#39;branch:&#39;"),
    ("/compare?base=2026120&head=latest", "run id &#39;2026120&#39; is ambiguous"),
    ("/traces/ab1234-revenue", "is the start of several trace ids; give more of it"),
])
def test_a_bad_or_ambiguous_reference_is_a_400_page(ui: str, path: str, message: str) -> None:
    r = httpx.get(ui + path)
    assert r.status_code == 400
    assert message in r.text


def test_a_store_that_fails_is_a_503_page(seeded: Seeded, ui: str, monkeypatch: pytest.MonkeyPatch) -> None:
    def unavailable(ref: str) -> str:
        raise StoreError("the store is locked by another process; retry in a moment")

    monkeypatch.setattr(seeded.store, "resolve_run_id", unavailable)
    r = httpx.get(ui + "/runs/latest")
    assert r.status_code == 503
    assert "the store is locked by another process; retry in a moment" in r.text


def test_the_app_answers_loopback_names_only(ui: str) -> None:
    with httpx.Client(base_url=ui, timeout=60) as client:
        assert client.get("/runs", headers={"host": "attacker.example"}).status_code == 421
        assert client.get("/api/v1/runs", headers={"host": "attacker.example"}).status_code == 421
        assert client.get("/runs", headers={"host": "localhost:1234"}).status_code == 200


def test_costar_ui_refuses_to_serve_beyond_loopback(seeded: Seeded) -> None:
    with pytest.raises(ConfigError, match="only on loopback"):
        serve_ui(seeded.store, host="0.0.0.0", open_browser=False)
    done = subprocess.run([*costar_cmd(), "ui", "--host", "0.0.0.0", "--no-browser"], cwd=seeded.store.root.parent,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.startswith("error: costar ui has no login")
    assert "Traceback" not in done.stderr


# ----------------------------------------------------------------------------- same data as --json


def test_pages_carry_the_same_data_as_the_cli_json(seeded: Seeded, ui: str) -> None:
    project = seeded.store.root.parent
    with httpx.Client(base_url=ui, timeout=60) as client:
        compare_page = client.get(f"/compare?base={seeded.base_run}&head={seeded.head_run}").text
        assert page_data(compare_page) == cli_json(project, "compare", seeded.base_run, seeded.head_run)
        run_page = client.get(f"/runs/{seeded.head_run}").text
        assert page_data(run_page)["metrics"] == cli_json(project, "metrics", seeded.head_run)  # type: ignore[index]
        assert page_data(run_page)["report"] == cli_json(project, "report", seeded.head_run)  # type: ignore[index]
        runs_page = client.get("/runs?limit=20").text
        assert page_data(runs_page) == cli_json(project, "runs", "--all")
        judges_page = client.get("/judges").text
        assert page_data(judges_page)["judges"] == cli_json(project, "judges", "list")["judges"]  # type: ignore[index]

    # What the pages show is what the data says: each run, each change, each judge.
    compare = page_data(compare_page)
    for scenario in compare["scenarios"]:  # type: ignore[index]
        assert f'<span class="badge st-{scenario["change"]}">{scenario["change"]}</span>' in compare_page
    skewed = next(s for s in compare["scenarios"] if s["scenario_id"] == "skewed-column")  # type: ignore[index]
    assert skewed["change"] in ("regressed", "inconclusive")
    report = page_data(run_page)["report"]  # type: ignore[index]
    for scenario in report["scenarios"]:
        for trial in scenario["trial_results"]:
            assert f'href="/traces/{quote(trial["trace_id"], safe="")}"' in run_page


def test_runs_filter_sort_and_pick_two(seeded: Seeded, ui: str) -> None:
    with httpx.Client(base_url=ui, timeout=60) as client:
        rows = page_data(client.get("/runs").text)["runs"]  # type: ignore[index]
        assert [r["run_id"] for r in rows] == [seeded.head_run, seeded.base_run]
        assert rows[0]["agent"]["version"] == "1.1"
        assert rows[0]["trials"] == 13
        oldest = page_data(client.get("/runs?order=asc").text)["runs"]  # type: ignore[index]
        assert [r["run_id"] for r in oldest] == [seeded.base_run, seeded.head_run]
        only = page_data(client.get("/runs?q=1.0").text)["runs"]  # type: ignore[index]
        assert [r["run_id"] for r in only] == [seeded.base_run]
        none = client.get("/runs?origin=monitor")
        assert "No runs match these filters" in none.text
        picked = client.get(f"/compare/pick?run={seeded.head_run}&run={seeded.base_run}", follow_redirects=False)
        assert picked.status_code == 303
        assert picked.headers["location"] == f"/compare?base={seeded.base_run}&head={seeded.head_run}"
        assert client.get(f"/compare/pick?run={seeded.head_run}").status_code == 400


def test_scenarios_flag_flaky_ones(seeded: Seeded, ui: str) -> None:
    with httpx.Client(base_url=ui, timeout=60) as client:
        data = page_data(client.get("/scenarios").text)
    by_id = {s["scenario_id"]: s for s in data["scenarios"]}  # type: ignore[index]
    assert by_id["revenue-total"]["flaky"] is False  # passed every trial of both runs
    assert by_id["clean-missing"]["flaky"] is True
    assert by_id["clean-missing"]["flaky_runs"] == 1
    assert by_id["skewed-column"]["flaky"] is True
    assert by_id["skewed-column"]["flaky_runs"] == 0  # runs disagree
    assert by_id["empty-file"]["split"] == "holdout"
    assert by_id["empty-file"]["tags"] == ["edge"]


# ----------------------------------------------------------------------------- hostile content


def test_hostile_trace_content_is_escaped_everywhere(seeded: Seeded, ui: str) -> None:
    tid = seeded.hostile_trace
    assert tid is not None
    with httpx.Client(base_url=ui, timeout=60) as client:
        for url in [f"/traces/{quote(tid, safe='')}", f"/runs/{seeded.head_run}", "/runs",
                    f"/judges/{JUDGE}/label/{quote(tid, safe='')}", f"/judges/{JUDGE}/label",
                    f"/traces/{quote(tid, safe='')}?span={quote('tool-' + HOSTILE_LINK)}"]:
            html = client.get(url).text
            for raw in ("<script>alert", "<img"):
                assert raw not in html, (url, raw)
            for tag, attrs in parsed_tags(html):
                assert tag not in ("img", "iframe", "object", "embed"), (url, tag)
                for name, value in attrs:
                    assert not name.startswith("on"), (url, tag, name)
                    if name in ("href", "src", "action"):
                        assert not (value or "").lower().startswith("javascript:"), (url, tag, value)
                if tag == "script":
                    assert dict(attrs).get("src", "").startswith("/static/") or \
                        dict(attrs).get("type") == "application/json", (url, attrs)
        trace_page = client.get(f"/traces/{quote(tid, safe='')}").text
        assert "&lt;script&gt;alert(&#39;xss-script&#39;)&lt;/script&gt;" in trace_page
        assert HOSTILE_TEMPLATE in trace_page  # template syntax shown as it is, never evaluated
        # The data block cannot be closed early by the content it carries.
        block = re.search(r'id="page-data">(.*?)</script>', trace_page, re.S)
        assert block
        assert "<" not in block.group(1)
        assert page_data(trace_page)["output"].startswith(HOSTILE_SCRIPT)  # type: ignore[index]
        # The API hands the same content back as JSON, never as HTML.
        span = client.get(f"/api/v1/traces/{quote(tid, safe='')}/spans/{quote('tool-' + HOSTILE_LINK, safe='')}")
        assert span.status_code == 200
        assert span.headers["content-type"] == "application/json"
        assert span.json()["attributes"]["gen_ai.tool.name"] == HOSTILE_IMG


# ----------------------------------------------------------------------------- the tree API


def test_tree_api_pages_locates_and_opens_spans(seeded: Seeded, ui: str) -> None:
    tid = seeded.traces[seeded.head_run][0]
    base = f"/api/v1/traces/{quote(tid, safe='')}"
    with httpx.Client(base_url=ui, timeout=60) as client:
        page = client.get(f"{base}/tree?limit=4").json()
        assert page["visible"] == page["spans_total"] == 7
        assert [r["depth"] for r in page["rows"]] == [0, 1, 1, 1]
        assert page["rows"][1]["model"] == "gpt-4.1-mini"
        assert page["rows"][1]["input_tokens"] > 0
        root = page["rows"][0]["span_id"]
        folded = client.get(f"{base}/tree", params={"collapsed": root}).json()
        assert folded["visible"] == 1
        assert folded["rows"][0]["descendants"] == 6
        cited = seeded.evidence[tid]
        where = client.get(f"{base}/tree/locate", params={"span_id": cited, "collapsed": root}).json()
        assert where["ancestors"] == [root]
        assert where["index"] >= 1
        span = client.get(f"{base}/spans/{cited}").json()
        assert span["span_id"] == cited
        assert span["attributes"]["gen_ai.tool.name"]
        assert client.get(f"{base}/spans/nope").status_code == 404
        assert client.get(f"{base}/tree/locate", params={"span_id": "nope"}).status_code == 404
        many = ",".join(f"s{i}" for i in range(2001))
        assert client.get(f"{base}/tree", params={"collapsed": many}).status_code == 400
        assert client.get(f"{base}/tree", params={"limit": 5000}).status_code == 422
    hostile = seeded.hostile_trace
    assert hostile is not None
    with httpx.Client(base_url=ui, timeout=60) as client:  # an id with "/" and markup in it is one path segment
        rows = client.get(f"/api/v1/traces/{quote(hostile, safe='')}/tree").json()["rows"]
        assert len(rows) == 3


# ----------------------------------------------------------------------------- labeling in place


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match, "the form carries its token"
    return match.group(1)


def test_labeling_in_place_is_same_origin_and_token_checked(seeded: Seeded, ui: str) -> None:
    target = seeded.traces[seeded.head_run][2]
    before = len(seeded.store.labels(name=JUDGE))
    with httpx.Client(base_url=ui, timeout=60) as client:
        token = csrf_of(client.get(f"/judges/{JUDGE}/label/{quote(target)}").text)
        form = {"csrf": token, "trace_id": target, "labeler": "bo", "value": "fail", "rationale": "<b>no total</b>"}
        url = f"/judges/{JUDGE}/labels"
        refused = [
            client.post(url, json=form),
            client.post(url, content="csrf=x", headers={"content-type": "text/plain"}),
            client.post(url, data={**form, "csrf": "forged"}),
            client.post(url, data=form, headers={"origin": "https://attacker.example"}),
            client.post(url, data=form, headers={"sec-fetch-site": "cross-site"}),
            client.post(url, data={**form, "rationale": "x" * 300_000}),
        ]
        assert [r.status_code for r in refused] == [415, 415, 403, 403, 403, 415]
        bad = client.post(url, data={**form, "value": "brilliant"})
        assert bad.status_code == 400
        assert "expected pass/fail" in bad.text
        assert "&lt;b&gt;no total&lt;/b&gt;</textarea>" in bad.text  # kept for another try, escaped
        assert client.post(url, data={**form, "trace_id": "nope"}).status_code == 404
        assert len(seeded.store.labels(name=JUDGE)) == before

        ok = client.post(url, data=form, headers={"origin": ui, "sec-fetch-site": "same-origin"}, follow_redirects=False)
        assert ok.status_code == 303
        assert ok.headers["location"].startswith(f"/judges/{JUDGE}/label/")
        assert "costar_labeler=bo" in ok.headers["set-cookie"]
    saved = seeded.store.labels(name=JUDGE, trace_ids=[target], labeler="bo")
    assert [(v.value, v.rationale) for v in saved] == [(False, "<b>no total</b>")]


def test_a_login_next_never_leaves_the_app() -> None:
    assert local_path("/runs?x=1") == "/runs?x=1"
    for bad in ("//evil.example/x", "/\\evil.example", "https://evil.example", "javascript:alert(1)", "runs",
                "/ok\r\nSet-Cookie: x", None, ""):
        assert local_path(bad, "/runs") == "/runs"


# ----------------------------------------------------------------------------- costar server with tokens


@pytest.fixture
def token_server(seeded: Seeded) -> Iterator[tuple[str, object]]:
    from costar.server.app import CostarServer
    from costar.server.config import ServerConfig
    from costar.ui.app import mount_webapp

    server = CostarServer(ServerConfig(host="127.0.0.1", port=0, require_tokens=True), seeded.store)
    mount_webapp(server)
    with BackgroundServer(server.app, lifespan="on") as srv:
        yield srv.url, server


def test_server_pages_need_a_login_that_trades_a_token_for_a_session(seeded: Seeded,
                                                                      token_server: tuple[str, object]) -> None:
    url, server = token_server
    tables = server.tables  # type: ignore[attr-defined]
    api_token = create_token(tables, "api", name="browser").token
    ingest_token = create_token(tables, "ingest", project="shop").token
    with httpx.Client(base_url=url) as client:
        r = client.get(f"/runs/{seeded.head_run}?x=1", follow_redirects=False)
        assert r.status_code == 303
        assert r.headers["location"] == f"/login?next=%2Fruns%2F{seeded.head_run}%3Fx%3D1"
        assert client.get("/api/v1/traces/x/tree").status_code == 401
        login = client.get("/login")
        assert 'type="password"' in login.text

        assert client.post("/login", data={"token": "cst_api_nope"}).status_code == 401
        assert client.post("/login", data={"token": ingest_token}).status_code == 403
        assert client.post("/login", data={"token": api_token},
                           headers={"origin": "https://attacker.example"}).status_code == 403
        ok = client.post("/login", data={"token": api_token, "next": "//attacker.example/"}, follow_redirects=False)
        assert ok.status_code == 303
        assert ok.headers["location"] == "/runs"
        cookie = ok.headers["set-cookie"]
        assert f"{SESSION_COOKIE}=" in cookie
        assert "HttpOnly" in cookie
        assert "samesite=strict" in cookie.lower()
        assert api_token not in cookie  # the browser keeps a session id, never the token

        assert client.get("/runs").status_code == 200
        assert client.get(f"/api/v1/traces/{quote(seeded.traces[seeded.head_run][0])}/tree").status_code == 200
        # Logged in, a label is the token's: a name typed in the form could overwrite another person's label.
        target = seeded.traces[seeded.head_run][1]
        form_page = client.get(f"/judges/{JUDGE}/label/{quote(target)}").text
        assert 'value="browser"' in form_page
        assert "readonly" in form_page
        saved = client.post(f"/judges/{JUDGE}/labels", follow_redirects=False, data={
            "csrf": csrf_of(form_page), "trace_id": target, "labeler": "ana", "value": "pass", "rationale": ""})
        assert saved.status_code == 303
        assert seeded.store.labels(name=JUDGE, trace_ids=[target], labeler="ana") == []
        assert [v.value for v in seeded.store.labels(name=JUDGE, trace_ids=[target], labeler="browser")] == [True]
        page = client.get("/runs").text
        assert "Log out" in page
        # Logging out is a form post with the session's token.
        assert client.post("/logout", data={"csrf": "forged"}).status_code == 403
        out = client.post("/logout", data={"csrf": csrf_of(page)}, follow_redirects=False)
        assert out.status_code == 303
        assert out.headers["location"] == "/login"
        assert client.get("/runs", follow_redirects=False).status_code == 303

        # Revoking the token ends the sessions opened with it, from the next request on.
        client.cookies.clear()
        client.post("/login", data={"token": api_token})
        assert client.get("/runs", follow_redirects=False).status_code == 200
        revoke_token(tables, api_token)
        assert client.get("/runs", follow_redirects=False).status_code == 303
        # The server's own API still takes bearer tokens, and the probes need none.
        fresh = create_token(tables, "api").token
        assert client.get("/api/v1/runs", headers={"authorization": f"Bearer {fresh}"}).status_code == 200
        assert client.get("/healthz").status_code == 200


def test_money_and_time_read_naturally() -> None:
    from costar.ui.templating import fmt_usd

    assert [fmt_usd(v) for v in (None, 0, 0.5, -0.0001, 1234.5, -12.5)] == [
        "—", "$0", "$0.5000", "-$0.0001", "$1,234.50", "-$12.50"]


# ----------------------------------------------------------------------------- the two commands


@contextmanager
def costar_ui(project: Path, *args: str, env: dict[str, str] | None = None) -> Iterator[str]:
    """``costar ui --port 0 ARGS`` in its own process group: the base URL it announces; Ctrl-C at the end."""
    proc = subprocess.Popen([*costar_cmd(), "ui", "--port", "0", *args], cwd=project, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                            preexec_fn=as_in_a_terminal, env={**os.environ, "NO_COLOR": "1", **(env or {})})
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # blocks until the app announces itself (or the process ends)
        match = re.search(r"on (http://127\.0\.0\.\d+:\d+)/", line)
        assert match, (line, proc.stderr.read() if proc.poll() is not None else "")  # type: ignore[union-attr]
        yield match.group(1)
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(30)
    assert proc.returncode in (0, 130, -signal.SIGINT), proc.stderr.read()  # type: ignore[union-attr]


def test_costar_ui_serves_the_project_store_until_stopped(seeded: Seeded) -> None:
    with costar_ui(seeded.store.root.parent, "--no-browser") as url, httpx.Client(base_url=url) as client:
        assert url.startswith("http://127.0.0.1:")
        runs = client.get("/runs")
        assert runs.status_code == 200
        assert runs.headers["content-security-policy"] == CSP
        assert seeded.head_run in runs.text
        assert client.get(f"/api/v1/runs/{seeded.head_run}").json()["run"]["run_id"] == seeded.head_run


def test_costar_ui_opens_a_browser_on_any_loopback_address(seeded: Seeded, tmp_path: Path) -> None:
    """The browser is the one $BROWSER names (Python's webbrowser reads it): here a script that notes
    the URL it was given. Bound to 127.0.0.2, the app answers that name (a browser sends it) and still
    refuses foreign ones."""
    opened = tmp_path / "opened.txt"
    browser = tmp_path / "browser.py"
    browser.write_text(f"import sys, pathlib; pathlib.Path({str(opened)!r}).write_text(sys.argv[1])\n")
    env = {"BROWSER": f"{sys.executable} {browser} %s"}
    with costar_ui(seeded.store.root.parent, "--host", "127.0.0.2", env=env) as url, \
            httpx.Client(base_url=url) as client:
        assert url.startswith("http://127.0.0.2:")
        wait_for(opened.exists, what="the browser to be opened")
        assert opened.read_text() == url + "/"
        assert client.get("/runs").status_code == 200
        assert client.get("/api/v1/runs").status_code == 200
        refused = client.get("/api/v1/runs", headers={"host": "rebound.example"})
        assert refused.status_code == 421
        assert refused.text == "unexpected Host header; open this server via 127.0.0.2"


def test_costar_server_serves_the_pages_beside_its_api(seeded: Seeded) -> None:
    from tests.support.server import server_process

    with server_process(str(seeded.store.root), seeded.store.root.parent) as srv:
        page = srv.get(f"/runs/{seeded.head_run}")
        assert page.status_code == 200
        assert page.headers["content-security-policy"] == CSP
        assert f'href="/traces/{quote(seeded.traces[seeded.head_run][0], safe="")}"' in page.text
        assert srv.get("/healthz").status_code == 200
        assert srv.get("/api/v1/runs").status_code == 200


def test_the_label_queue_reads_each_trace_head_once_per_process(seeded: Seeded, monkeypatch) -> None:
    # A trace head carries the agent's whole input and output; the queue (every stored trace when no
    # run is chosen) read all of them again on each view and after each saved label.
    read: list[int] = []
    real = seeded.store.get_traces

    def counting(ids: object, **kw: object) -> object:
        listed = list(ids)  # type: ignore[call-overload]
        read.append(len(listed))
        return real(listed, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(seeded.store, "get_traces", counting)
    with BackgroundServer(create_ui_app(seeded.store, project_dir=str(seeded.store.root.parent))) as srv:
        first = httpx.get(f"{srv.url}/judges/{JUDGE}/label", timeout=60)
        assert first.status_code == 200
        assert sum(read) == len(seeded.store.trace_ids())
        read.clear()
        again = httpx.get(f"{srv.url}/judges/{JUDGE}/label", timeout=60)
        assert again.status_code == 200
        assert again.text == first.text
        assert sum(read) == 0
