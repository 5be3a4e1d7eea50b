"""The web app's Monitors pages over real HTTP on loopback: the list, a monitor and the traces of a
point's window render on a seeded store (monitors scored by the real monitor service, a golden set,
alerts fired and recovered) with the app's security headers; they carry the same data as ``costar
monitor list/show/series/alerts --json``; a point's traces are exactly those of its window; hostile
monitor content is escaped; bad parameters are one-line errors; ``costar server`` serves them behind
its login, from the monitors it scores."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from costar._util.server import BackgroundServer
from costar.store.monitor_tables import MonitorTables
from costar.ui.app import create_ui_app
from costar.ui.security import CSP
from tests.support.webapp_monitor_seed import (
    GOLDEN_JUDGE,
    HOSTILE_JUDGE,
    HOSTILE_MONITOR,
    MONITOR,
    OTHER_JUDGE,
    MonitorSeed,
    add_monitors,
)
from tests.support.webapp_seed import HOSTILE_IMG, HOSTILE_SCRIPT, Seeded, seed_store
from tests.ui.test_webapp import cli_json, page_data, parsed_tags


@pytest.fixture(scope="module")
def seeded(monitor_world: tuple[Seeded, MonitorSeed]) -> tuple[Seeded, MonitorSeed]:
    return monitor_world


@pytest.fixture(scope="module")
def ui(monitor_world_url: str) -> str:
    return monitor_world_url


def project(seeded: tuple[Seeded, MonitorSeed]) -> Path:
    return seeded[0].store.root.parent


def without_at(status: dict[str, Any]) -> dict[str, Any]:
    """A status without the times its values were computed at (the page and the CLI ran moments apart)."""
    return {**status, "at": None, "values": [{**v, "at": None} for v in status["values"]]}


def test_the_monitor_pages_render_with_the_security_headers(seeded: tuple[Seeded, MonitorSeed], ui: str) -> None:
    tables = MonitorTables(seeded[0].store)
    at = tables.points(MONITOR, judge=GOLDEN_JUDGE, window=3600.0, metric="pass_rate")[-1].at
    urls = ["/monitors", f"/monitors/{MONITOR}", f"/monitors/{MONITOR}?window=1d&range=all",
            f"/monitors/{MONITOR}?judge={GOLDEN_JUDGE}&range=6h", f"/monitors/{HOSTILE_MONITOR}",
            f"/monitors/{MONITOR}/traces?judge={GOLDEN_JUDGE}&window=1h&at={at!r}",
            f"/monitors/{MONITOR}/traces?window=1h&at={at!r}",
            f"/monitors/{MONITOR}/traces?judge={GOLDEN_JUDGE}&window=1h&at={at!r}&outcome=fail"]
    with httpx.Client(base_url=ui, timeout=60) as client:
        for url in urls:
            r = client.get(url)
            assert r.status_code == 200, (url, r.text[:500])
            assert r.headers["content-security-policy"] == CSP, url
            assert r.headers["x-frame-options"] == "DENY"
            for ref in re.findall(r'(?:src|href)="([^"]*)"', r.text):
                assert ref.startswith(("/", "?", "#")), (url, ref)
            assert re.search(r"<script(?![^>]*\bsrc=)(?![^>]*application/json)[^>]*>", r.text) is None, url
        nav = client.get("/runs").text
        assert '<a href="/monitors">Monitors</a>' in nav


def test_the_pages_carry_the_same_data_as_the_cli_json(seeded: tuple[Seeded, MonitorSeed], ui: str) -> None:
    cwd = project(seeded)
    with httpx.Client(base_url=ui, timeout=60) as client:
        listing = page_data(client.get("/monitors").text)
        monitor = page_data(client.get(f"/monitors/{MONITOR}?range=all").text)
        daily = page_data(client.get(f"/monitors/{MONITOR}?window=1d&range=all").text)
    assert isinstance(listing, dict)
    assert isinstance(monitor, dict)
    assert isinstance(daily, dict)
    assert listing["monitors"] == cli_json(cwd, "monitor", "list")
    for name in (MONITOR, HOSTILE_MONITOR):
        assert without_at(listing["status"][name]) == without_at(cli_json(cwd, "monitor", "show", name))  # type: ignore[arg-type]
    assert without_at(monitor["status"]) == without_at(cli_json(cwd, "monitor", "show", MONITOR))  # type: ignore[arg-type]
    for data, window in ((monitor, "1h"), (daily, "1d")):
        assert data["series"] == cli_json(cwd, "monitor", "series", MONITOR, "--window", window, "--since", "all",
                                          "--limit", "100000")
    assert monitor["alerts"] == cli_json(cwd, "monitor", "alerts", MONITOR, "--limit", "200")
    # What the seed made: a golden set gives the answers check its corrected rates; the quality
    # alert fired in the bad hour and recovered; the error spike fires now.
    values = monitor["status"]["values"]
    corrected = [v for v in values if v["judge"] == GOLDEN_JUDGE and v["metric"] == "rogan_gladen" and
                 v["window_s"] == 86400.0]
    assert corrected[0]["value"] is not None
    assert corrected[0]["data"]["golden"] == "answers-gold"
    assert not [v for v in values if v["judge"] == OTHER_JUDGE and v["metric"] == "rogan_gladen"]
    history = [(a["rule"], a["status"]) for a in reversed(monitor["alerts"])]
    assert history == [("quality-drop", "firing"), ("quality-drop", "resolved"), ("error-spike", "firing")]


def test_the_pages_show_the_numbers_they_carry(seeded: tuple[Seeded, MonitorSeed], ui: str) -> None:
    with httpx.Client(base_url=ui, timeout=60) as client:
        listing = client.get("/monitors").text
        page = client.get(f"/monitors/{MONITOR}").text
    status = page_data(page)["status"]  # type: ignore[index]
    now = {(v["judge"], v["window_s"]): v for v in status["values"] if v["metric"] == "pass_rate"}
    answers = now[(GOLDEN_JUDGE, 3600.0)]
    shown = f'{answers["value"] * 100:.1f}%'
    interval = f'[{answers["low"] * 100:.0f}%–{answers["high"] * 100:.0f}%]'
    row = re.search(r'<tr data-monitor="support">(.*?)</tr>', listing, re.S)
    assert row is not None
    assert shown in row.group(1)
    assert interval in row.group(1)
    assert "error-spike" in row.group(1)  # its open alert
    assert "quality-drop" not in row.group(1)  # recovered: not open
    now_row = re.search(r'<tr data-judge="answers" data-window="1h">(.*?)</tr>', page, re.S)
    assert now_row is not None
    assert shown in now_row.group(1)
    assert "fired" in page
    assert "recovered" in page
    charts = page_data(page, "chart-data")
    assert isinstance(charts, dict)
    judge_chart = charts["judge-0"]
    assert [s["label"] for s in judge_chart["series"]] == ["pass rate", "Rogan–Gladen", "PPI"]
    assert judge_chart["link"] == f"/monitors/{MONITOR}/traces?judge={GOLDEN_JUDGE}&window=1h"
    assert {"ops-volume", "ops-errors", "ops-latency", "ops-tokens", "ops-cost"} <= set(charts)


def test_a_points_traces_are_those_of_its_window(seeded: tuple[Seeded, MonitorSeed], ui: str) -> None:
    s, _ = seeded
    tables = MonitorTables(s.store)
    points = tables.points(MONITOR, judge=GOLDEN_JUDGE, window=3600.0, metric="pass_rate")
    worst = min((p for p in points if p.n), key=lambda p: (p.value, -p.n))  # a window of the bad hour
    with httpx.Client(base_url=ui, timeout=60) as client:
        page = client.get(f"/monitors/{MONITOR}/traces?judge={GOLDEN_JUDGE}&window=1h&at={worst.at!r}").text
        fails = client.get(f"/monitors/{MONITOR}/traces?judge={GOLDEN_JUDGE}&window=1h&at={worst.at!r}"
                           "&outcome=fail").text
        ops = client.get(f"/monitors/{MONITOR}/traces?window=1h&at={worst.at!r}").text
    view = page_data(page)
    assert isinstance(view, dict)
    from costar import api

    assert api.monitor_window_traces(MONITOR, window=3600.0, at=worst.at, judge=GOLDEN_JUDGE,
                                     store=s.store).model_dump(mode="json") == view  # the library's own view
    assert view["counts"]["pass"] + view["counts"]["fail"] == worst.n
    assert (view["counts"]["pass"], view["counts"]["fail"]) == (worst.data["pass"], worst.data["fail"])  # type: ignore[index]
    # Exactly the traces that ended in the window, each with the check's outcome.
    stored = {t.trace_id: t for t in s.store.get_traces(s.store.trace_ids(), spans=False)
              if t.trace_id.startswith("prod-") and worst.at - 3600 < t.end_ns / 1e9 <= worst.at}
    expected = set(stored)
    assert {t["trace_id"] for t in view["traces"]} == expected
    assert len(re.findall(r"<tr data-trace=", page)) == len(expected)
    for t in view["traces"]:
        assert t["outcome"] == ("pass" if "It is" in str(stored[t["trace_id"]].output) else "fail")
        assert f'href="/traces/{quote(t["trace_id"], safe="")}"' in page
    failing = page_data(fails)
    assert isinstance(failing, dict)
    assert {t["outcome"] for t in failing["traces"]} == {"fail"}
    assert len(failing["traces"]) == worst.data["fail"]  # type: ignore[index]
    ops_view = page_data(ops)
    assert isinstance(ops_view, dict)
    traces_point = [p for p in tables.points(MONITOR, judge="", window=3600.0, metric="traces") if p.at == worst.at]
    assert ops_view["counts"]["traces"] == traces_point[0].value
    assert {t["trace_id"] for t in ops_view["traces"]} == expected


def test_hostile_monitor_content_is_escaped(seeded: tuple[Seeded, MonitorSeed], ui: str) -> None:
    tables = MonitorTables(seeded[0].store)
    at = tables.points(HOSTILE_MONITOR, judge=HOSTILE_JUDGE, window=3600.0, metric="pass_rate")[-1].at
    with httpx.Client(base_url=ui, timeout=60) as client:
        pages = [client.get("/monitors").text, client.get(f"/monitors/{HOSTILE_MONITOR}").text,
                 client.get(f"/monitors/{HOSTILE_MONITOR}?judge={quote(HOSTILE_JUDGE)}").text,
                 client.get(f"/monitors/{HOSTILE_MONITOR}/traces?judge={quote(HOSTILE_JUDGE)}&window=1h&at={at!r}").text]
    for html in pages:
        assert HOSTILE_SCRIPT not in html
        assert HOSTILE_IMG not in html
        for tag, attrs in parsed_tags(html):
            assert tag not in ("img", "iframe", "object", "embed"), tag
            if tag == "script":
                assert dict(attrs).get("type") == "application/json" or dict(attrs).get("src", "").startswith("/static/")
            for name, value in attrs:
                assert not name.startswith("on"), (tag, name)
                assert not (value or "").lower().startswith("javascript:"), (tag, name, value)
    # The hostile judge's name, alert message and traces are there, as text.
    assert "&lt;script&gt;alert(&#39;xss-script&#39;)&lt;/script&gt;" in pages[1]
    assert "lab-drop" in pages[1]
    assert pages[3].count("<tr data-trace=") == 3


def test_bad_parameters_are_one_line_errors(ui: str) -> None:
    with httpx.Client(base_url=ui, timeout=60) as client:
        missing = client.get("/monitors/nope")
        assert missing.status_code == 404
        assert "no monitor &#39;nope&#39; (monitors: lab-watch, support)" in missing.text
        cases = {f"/monitors/{MONITOR}?window=2h": "window &#39;2h&#39; is not one of the monitor&#39;s windows (1h, 1d)",
                 f"/monitors/{MONITOR}?window=soon": "window &#39;soon&#39;",
                 f"/monitors/{MONITOR}?range=forever": "range &#39;forever&#39;: use one of 6h, 1d, 7d, 30d, all",
                 f"/monitors/{MONITOR}?judge=ghost": "judge &#39;ghost&#39; has no series in monitor support",
                 f"/monitors/{MONITOR}/traces?window=1h": "at: give the window&#39;s end as Unix seconds",
                 f"/monitors/{MONITOR}/traces?window=1h&at=1&outcome=maybe": "outcome &#39;maybe&#39;",
                 f"/monitors/{MONITOR}/traces?window=1h&at=1&outcome=fail": "outcome needs a judge"}
        for url, message in cases.items():
            r = client.get(url)
            assert r.status_code == 400, url
            assert message in r.text, (url, r.text[-800:])


def test_without_monitors_the_list_says_how_to_add_one(tmp_path: Path) -> None:
    s = seed_store(tmp_path, hostile=False)
    try:
        with BackgroundServer(create_ui_app(s.store, project_dir=str(tmp_path))) as srv:
            r = httpx.get(srv.url + "/monitors")
        assert r.status_code == 200
        assert "No monitors." in r.text
        assert page_data(r.text) == {"monitors": [], "status": {}, "errors": {}}
    finally:
        s.store.close()


def test_costar_server_serves_the_monitor_pages_behind_its_login(seeded: tuple[Seeded, MonitorSeed]) -> None:
    from costar.judges.registry import JudgeRegistry
    from costar.monitor.files import load_monitors
    from costar.monitor.service import MonitorService
    from costar.server.app import CostarServer
    from costar.server.auth import create_token
    from costar.server.config import ServerConfig
    from costar.ui.app import mount_webapp

    s, _ = seeded
    server = CostarServer(ServerConfig(host="127.0.0.1", port=0, require_tokens=True), s.store)
    # The monitors the server scores with (not started: the pages only read them).
    server.monitors = MonitorService(s.store, load_monitors(project(seeded) / "monitors"), JudgeRegistry())
    mount_webapp(server)  # no project folder: the pages read the server's monitors
    with BackgroundServer(server.app, lifespan="on") as srv, httpx.Client(base_url=srv.url) as client:
        for url in ("/monitors", f"/monitors/{MONITOR}", f"/monitors/{MONITOR}/traces?window=1h&at=1"):
            r = client.get(url, follow_redirects=False)
            assert r.status_code == 303, url
            assert r.headers["location"].startswith("/login?next=%2Fmonitors")
        client.post("/login", data={"token": create_token(server.tables, "api").token})
        listing = client.get("/monitors")
        assert listing.status_code == 200
        assert [m["name"] for m in page_data(listing.text)["monitors"]] == [HOSTILE_MONITOR, MONITOR]  # type: ignore[index]
        page = client.get(f"/monitors/{MONITOR}")
        assert page.status_code == 200
        assert page_data(page.text)["status"]["counts"]["scored"] == 72  # type: ignore[index]


def test_costar_server_process_serves_the_monitor_pages(tmp_path: Path) -> None:
    from tests.support.server import server_process

    s = seed_store(tmp_path, hostile=False)
    (tmp_path / "costar.yaml").write_text("suite: scenarios\n")
    add_monitors(s.store, tmp_path)
    s.store.close()
    with server_process(str(tmp_path / ".costar"), tmp_path) as srv:
        page = srv.get("/monitors")
        assert page.status_code == 200
        assert f'href="/monitors/{MONITOR}"' in page.text
        shown = srv.get(f"/monitors/{MONITOR}")
        assert shown.status_code == 200
        assert page_data(shown.text)["status"]["counts"]["considered"] == 72  # type: ignore[index]
