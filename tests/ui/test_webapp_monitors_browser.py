"""The Monitors pages in a real chromium (Playwright): the list and a monitor page render their tables
and charts with nothing blocked or broken; clicking a point of a chart, or a row of the series table,
opens the traces of that point's window (the count is the point's ``n`` as ``costar monitor series
--json`` prints it); a hostile monitor runs nothing and shows its text literally."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest

from tests.support.browser import HAVE_CHROMIUM, NO_CHROMIUM, Watch
from tests.support.webapp_monitor_seed import (
    GOLDEN_JUDGE,
    HOSTILE_JUDGE,
    HOSTILE_MONITOR,
    MONITOR,
    MonitorSeed,
)
from tests.support.webapp_seed import HOSTILE, HOSTILE_IMG, Seeded
from tests.ui.test_webapp import cli_json

pytestmark = [pytest.mark.browser, pytest.mark.skipif(not HAVE_CHROMIUM, reason=NO_CHROMIUM)]

CHARTS = 2 + 5
"""The support monitor's charts: one per judge, five operational ones."""


@pytest.fixture(scope="module")
def seeded(monitor_world: tuple[Seeded, MonitorSeed]) -> tuple[Seeded, MonitorSeed]:
    return monitor_world


@pytest.fixture(scope="module")
def ui(monitor_world_url: str) -> str:
    return monitor_world_url


def series_points(seeded: tuple[Seeded, MonitorSeed], judge: str) -> dict[float, dict[str, Any]]:
    points = cli_json(seeded[0].store.root.parent, "monitor", "series", MONITOR, "--judge", judge, "--window", "1h",
                      "--metric", "pass_rate", "--since", "all", "--limit", "100000")
    assert isinstance(points, list)
    return {p["at"]: p for p in points}


def click_point(page: Any, chart: str, fraction: float) -> None:
    """Click the plot of ``chart`` at ``fraction`` of its width (uPlot picks the nearest point)."""
    over = page.locator(f'[data-chart="{chart}"] .u-over')
    box = over.bounding_box()
    assert box is not None
    page.mouse.move(box["x"] + box["width"] * fraction, box["y"] + box["height"] / 2)
    page.mouse.click(box["x"] + box["width"] * fraction, box["y"] + box["height"] / 2)


def test_the_list_leads_to_a_monitor_with_its_charts_and_tables(ui: str, tab: tuple[Any, Watch]) -> None:
    page, watch = tab
    page.goto(ui + "/runs")
    page.click("nav.sections >> text=Monitors")
    page.wait_for_selector("table.monitors")
    assert page.locator("table.monitors tbody tr").count() == 2
    row = page.locator(f'tr[data-monitor="{MONITOR}"]')
    assert "answers" in row.inner_text()
    assert "error-spike" in row.locator("td").nth(6).inner_text()
    row.locator(f'a[href="/monitors/{MONITOR}"]').click()
    page.wait_for_function("n => document.querySelectorAll('.chart canvas').length >= n", arg=CHARTS)
    assert page.locator(".chart .uplot").count() == CHARTS
    assert page.locator("table.now tbody tr").count() == 4  # two judges × two windows
    assert "Rogan–Gladen" in page.locator('[data-chart="judge-0"]').inner_text()  # the corrected rate is drawn
    alerts = page.locator("table.alerts tbody tr")
    assert alerts.count() == 3
    assert [alerts.nth(i).locator(".badge").inner_text().lower() for i in range(3)] == ["fired", "recovered", "fired"]
    # The URL holds the view: another window from the form, and back.
    page.select_option('select[name="window"]', "1d")
    page.click("form.filters button")
    page.wait_for_url("**window=1d**")
    page.wait_for_function("n => document.querySelectorAll('.chart canvas').length >= n", arg=CHARTS)
    watch.assert_quiet()


def test_a_chart_point_opens_the_traces_of_its_window(seeded: tuple[Seeded, MonitorSeed], ui: str,
                                                      tab: tuple[Any, Watch]) -> None:
    page, watch = tab
    points = series_points(seeded, GOLDEN_JUDGE)
    for fraction in (0.5, 0.95):
        page.goto(f"{ui}/monitors/{MONITOR}?range=all")
        page.wait_for_selector('[data-chart="judge-0"] canvas')
        click_point(page, "judge-0", fraction)
        page.wait_for_url("**/traces?**")
        query = parse_qs(urlparse(page.url).query)
        assert (query["judge"], query["window"]) == ([GOLDEN_JUDGE], ["1h"])
        point = points[float(query["at"][0])]  # the click opened one of the series' points
        page.wait_for_selector("table.window-traces")
        assert int(page.locator('[data-count="n"]').inner_text()) == point["n"]
        assert int(page.locator('[data-count="fail"]').inner_text()) == point["data"]["fail"]
        assert page.locator("table.window-traces tbody tr[data-trace]").count() == point["n"]
    # A trace of the window opens.
    first = page.locator("table.window-traces tbody tr[data-trace] a").first
    trace_id = first.inner_text()
    first.click()
    page.wait_for_selector("#tree-rows .row[data-span], h1")
    assert trace_id in page.locator("h1").inner_text()
    watch.assert_quiet()


def test_a_series_table_row_opens_its_windows_failures(seeded: tuple[Seeded, MonitorSeed], ui: str,
                                                       tab: tuple[Any, Watch]) -> None:
    page, watch = tab
    points = series_points(seeded, GOLDEN_JUDGE)
    page.goto(f"{ui}/monitors/{MONITOR}?judge={GOLDEN_JUDGE}&range=all")
    table = page.locator(f'section[data-judge="{GOLDEN_JUDGE}"] details.series-table')
    table.locator("summary").click()
    failing = table.locator("tbody tr", has=page.locator("text=failures")).first
    at = float(failing.get_attribute("data-at"))
    failing.locator("text=failures").click()
    page.wait_for_selector("table.window-traces")
    assert page.locator("table.window-traces tbody tr[data-trace]").count() == points[at]["data"]["fail"]
    assert set(page.locator("table.window-traces tbody .badge").all_inner_texts()) == {"FAIL"}
    watch.assert_quiet()


def test_a_hostile_monitor_runs_nothing_and_shows_literally(ui: str, tab: tuple[Any, Watch]) -> None:
    page, watch = tab
    page.goto(ui + "/monitors")
    page.wait_for_selector("table.monitors")
    assert HOSTILE in page.locator(f'tr[data-monitor="{HOSTILE_MONITOR}"]').inner_text()
    page.goto(f"{ui}/monitors/{HOSTILE_MONITOR}")
    page.wait_for_selector('[data-chart="judge-0"] canvas')
    assert page.locator(f'section.judge-series h3:has-text("{HOSTILE_JUDGE}")').count() == 1
    assert HOSTILE_IMG in page.locator("dl.facts").inner_text()
    assert HOSTILE_JUDGE in page.locator("table.alerts").inner_text()
    assert page.locator("img").count() == 0
    click_point(page, "judge-0", 0.5)
    page.wait_for_url("**/traces?**")
    page.wait_for_selector("table.window-traces")
    assert page.locator("table.window-traces tbody tr[data-trace]").count() == 3
    assert HOSTILE_JUDGE in page.locator("table.window-traces").inner_text()  # the agent's name, as text
    page.locator("table.window-traces tbody tr[data-trace] a").first.click()
    page.wait_for_selector("h1")
    watch.assert_quiet()
