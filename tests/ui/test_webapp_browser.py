"""The web app in a real chromium (Playwright): every page renders on a seeded store with nothing
blocked or broken, the flows (runs → run → trace → a verdict's evidence; compare; label a trace), a
hostile trace that runs nothing, and a 100,000-span trace whose tree shows its first screen and
scrolls to its end with only a screenful of rows in the page."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest

from costar._util.server import BackgroundServer
from costar.ui.app import create_ui_app
from tests.support.browser import HAVE_CHROMIUM, NO_CHROMIUM, Watch
from tests.support.webapp_seed import (
    HOSTILE,
    HOSTILE_IMG,
    HOSTILE_LINK,
    HOSTILE_SCRIPT,
    JUDGE,
    Seeded,
    add_huge_trace,
    seed_store,
)

pytestmark = [pytest.mark.browser, pytest.mark.skipif(not HAVE_CHROMIUM, reason=NO_CHROMIUM)]

HUGE = 100_000


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seeded]:
    root = tmp_path_factory.mktemp("webapp")
    s = seed_store(root)
    (root / "costar.yaml").write_text("suite: scenarios\n")
    add_huge_trace(s.store, HUGE)
    try:
        yield s
    finally:
        s.store.close()


@pytest.fixture(scope="module")
def ui(seeded: Seeded) -> Iterator[str]:
    with BackgroundServer(create_ui_app(seeded.store, project_dir=str(seeded.store.root.parent))) as srv:
        yield srv.url


def trace_of(s: Seeded, run: str, scenario: str, trial: int = 0) -> str:
    return next(t for t in s.traces[run] if t.endswith(f"-{scenario}-{trial}"))


def wait_rows(page: Any, at_least: int) -> None:
    page.wait_for_function(
        "n => document.querySelectorAll('#tree-rows .row[data-span]:not([hidden])').length >= n", arg=at_least)


# ----------------------------------------------------------------------------- every page


def test_every_page_renders_in_chromium(seeded: Seeded, ui: str, tab: tuple[Any, Watch]) -> None:
    from playwright.sync_api import expect

    page, watch = tab
    head_trace = trace_of(seeded, seeded.head_run, "skewed-column")
    pages = {
        "/runs": "Runs", f"/runs/{seeded.head_run}": seeded.head_run, f"/traces/{quote(head_trace)}": head_trace,
        f"/compare?base={seeded.base_run}&head={seeded.head_run}": seeded.base_run, "/compare": "Compare two runs",
        "/judges": "Judges", f"/judges/{JUDGE}": JUDGE, f"/judges/{JUDGE}/label": f"Label traces for {JUDGE}",
        f"/judges/{JUDGE}/label/{quote(head_trace)}": head_trace, "/scenarios": "Scenarios",
    }
    for url, heading in pages.items():
        response = page.goto(ui + url)
        assert response.status == 200, url
        expect(page.locator("h1")).to_contain_text(heading)
        if url.startswith("/runs/"):
            # The pass^k curve is drawn by uPlot into a canvas, from the page's own data.
            expect(page.locator('[data-chart="curve"] canvas').first).to_be_visible()
        if url.startswith("/traces/"):
            wait_rows(page, 7)
            widths = page.locator("#tree-rows .row .bar").evaluate_all("bars => bars.map(b => b.style.width)")
            # The waterfall has a bar per span: each has a width, and none is zero.
            assert all(widths[:7]), widths
            assert "0" not in widths[:7], widths
    # Every script and style loaded, no policy violation, nothing fetched from elsewhere.
    watch.assert_quiet()
    assert any("/static/vendor/uplot/uPlot.iife.min.js" in u for u in watch.requests)


# ----------------------------------------------------------------------------- flows


def test_runs_to_run_to_trace_to_a_verdicts_evidence(seeded: Seeded, ui: str, tab: tuple[Any, Watch]) -> None:
    from playwright.sync_api import expect

    page, watch = tab
    failed = trace_of(seeded, seeded.head_run, "skewed-column", 1)
    cited = seeded.evidence[failed]
    page.goto(ui + "/runs")
    page.get_by_role("link", name=seeded.head_run).click()
    page.wait_for_url(f"**/runs/{seeded.head_run}")
    # The matrix cell of the failed trial opens its trace.
    cell = page.locator(f'a.cell-fail[href="/traces/{failed}"]')
    expect(cell).to_have_text("✗")
    cell.click()
    page.wait_for_url(f"**/traces/{failed}")
    wait_rows(page, 7)

    verdict = page.locator("table.verdicts tbody tr").filter(has=page.get_by_role("link", name=JUDGE, exact=True))
    expect(verdict).to_contain_text("The agent did not produce the total; the tool call failed.")
    verdict.locator("a.evidence").click()
    pane = page.locator("#span-pane")
    expect(pane.locator("h3.span-title")).to_have_text("execute_tool run_python")
    expect(pane).to_contain_text("KeyError: 'revenue'")        # the span's error
    expect(pane).to_contain_text('"path": "sales.csv"')         # the tool call's arguments
    expect(page.locator(f'#tree-rows .row.selected[data-span="{cited}"]')).to_be_visible()
    assert f"span={cited}" in page.url

    # The link is shareable: opened afresh it shows the same span, selected in the tree.
    page.goto(page.url)
    expect(page.locator("#span-pane h3.span-title")).to_have_text("execute_tool run_python")
    expect(page.locator(f'#tree-rows .row.selected[data-span="{cited}"]')).to_be_visible()

    # An LLM span shows its messages and tokens.
    page.locator("#tree-rows .row", has_text="chat gpt-4.1-mini").first.click()
    expect(pane.locator("h4", has_text="input messages")).to_be_visible()
    expect(pane).to_contain_text("You are a careful data analyst.")
    expect(pane.locator("table.kv").first).to_contain_text("input tokens")
    watch.assert_quiet()


def test_tree_collapses_expands_and_follows_the_keyboard(seeded: Seeded, ui: str, tab: tuple[Any, Watch]) -> None:
    from playwright.sync_api import expect

    page, watch = tab
    tid = trace_of(seeded, seeded.base_run, "revenue-total")
    page.goto(f"{ui}/traces/{tid}")
    wait_rows(page, 7)
    root = page.locator("#tree-rows .row[data-span]").first
    root.locator("button.toggle").click()
    expect(page.locator("#tree-status")).to_have_text("1 of 7 spans shown")
    expect(root.locator(".info")).to_contain_text("+6")
    root.locator("button.toggle").click()
    expect(page.locator("#tree-status")).to_have_text("7 of 7 spans shown")
    root.click()
    page.keyboard.press("ArrowDown")
    expect(page.locator("#span-pane h3.span-title")).to_have_text("chat gpt-4.1-mini")
    watch.assert_quiet()


def test_compare_two_runs_picked_on_the_runs_page(seeded: Seeded, ui: str, tab: tuple[Any, Watch]) -> None:
    from playwright.sync_api import expect

    page, watch = tab
    page.goto(ui + "/runs")
    button = page.locator("#compare-button")
    expect(button).to_be_disabled()
    page.get_by_label(f"pick {seeded.base_run}").check()
    expect(button).to_be_disabled()
    page.get_by_label(f"pick {seeded.head_run}").check()
    expect(button).to_be_enabled()
    button.click()
    page.wait_for_url(f"**/compare?base={seeded.base_run}&head={seeded.head_run}")
    data = json.loads(page.locator("#page-data").text_content() or "null")
    rows = page.locator("table.compare tbody tr")
    expect(rows).to_have_count(len(data["scenarios"]))
    for scenario in data["scenarios"]:
        row = rows.filter(has=page.locator("td", has_text=scenario["scenario_id"]))
        expect(row.locator(".badge")).to_have_text(scenario["change"])
    page.get_by_role("link", name="swap").click()
    page.wait_for_url(f"**/compare?base={seeded.head_run}&head={seeded.base_run}")
    expect(page.locator("h1")).to_contain_text(seeded.head_run)
    watch.assert_quiet()


def test_label_a_trace_in_place(seeded: Seeded, ui: str, tab: tuple[Any, Watch]) -> None:
    from playwright.sync_api import expect

    page, watch = tab
    page.goto(ui + "/judges")
    page.get_by_role("link", name=JUDGE, exact=True).first.click()
    page.wait_for_url(f"**/judges/{JUDGE}")
    page.get_by_role("link", name="Label traces for this judge").click()
    page.get_by_role("link", name="Label the next trace →").click()
    page.wait_for_url(f"**/judges/{JUDGE}/label/**")
    target = page.locator('input[name="trace_id"]').input_value()
    page.fill("#labeler", "cy")
    page.fill("#rationale", "the total is missing </textarea><script>alert(1)</script>")
    page.get_by_role("button", name="Fail").click()
    expect(page.locator("p.saved").first).to_contain_text("Saved your label")
    saved = seeded.store.labels(name=JUDGE, trace_ids=[target], labeler="cy")
    assert [(label.value, label.rationale) for label in saved] == [
        (False, "the total is missing </textarea><script>alert(1)</script>")]
    watch.assert_quiet()


# ----------------------------------------------------------------------------- hostile content


def test_hostile_trace_content_runs_nothing_and_shows_literally(seeded: Seeded, ui: str,
                                                                tab: tuple[Any, Watch]) -> None:
    from playwright.sync_api import expect

    page, watch = tab
    tid = seeded.hostile_trace
    assert tid is not None
    url = f"{ui}/traces/{quote(tid, safe='')}"
    page.goto(url)
    wait_rows(page, 3)
    expect(page.locator("h1 code")).to_have_text(tid)
    expect(page.locator(".io pre").nth(1)).to_have_text(HOSTILE)  # the output, character for character
    expect(page.locator("td.rationale").first).to_have_text("quoting the output: " + HOSTILE)
    # Open every span, every artifact and every evidence link: all of it builds DOM from the content.
    for i in range(3):
        page.locator("#tree-rows .row[data-span]").nth(i).click()
        expect(page.locator("#span-pane h3.span-title")).not_to_be_empty()
    expect(page.locator("#span-pane")).to_contain_text(HOSTILE_IMG)
    for details in page.locator("details.artifact").all():
        details.locator("summary").click()
    expect(page.locator("details.artifact summary").last).to_contain_text(HOSTILE_LINK)
    for link in page.locator("a.evidence").all():
        link.click()
        expect(page.locator("#span-pane h3.span-title")).not_to_be_empty()
    page.locator("#span-pane details.attributes summary").click()
    expect(page.locator("#span-pane")).to_contain_text(HOSTILE_SCRIPT)
    assert page.url.startswith(url)  # the javascript: span id opened a span, it did not navigate
    counts = page.evaluate("""() => ({
        img: document.querySelectorAll('img, iframe, object, embed').length,
        handlers: [...document.querySelectorAll('*')].filter(n => [...n.attributes].some(a => a.name.startsWith('on'))).length,
        scripts: [...document.scripts].filter(s => !(s.src.includes('/static/') || s.type === 'application/json')).length,
        jsLinks: [...document.querySelectorAll('a[href]')].filter(a => a.protocol === 'javascript:').length,
    })""")
    assert counts == {"img": 0, "handlers": 0, "scripts": 0, "jsLinks": 0}
    # The other pages that show its content.
    for other in (f"/runs/{seeded.head_run}", "/runs", f"/judges/{JUDGE}/label/{quote(tid, safe='')}",
                  f"/judges/{JUDGE}/label"):
        page.goto(ui + other)
        expect(page.locator("h1")).to_be_visible()
    watch.assert_quiet()


# ----------------------------------------------------------------------------- a huge trace


def test_a_100k_span_trace_shows_its_first_screen_and_scrolls_to_the_end(ui: str, tab: tuple[Any, Watch]) -> None:
    from playwright.sync_api import expect

    page, watch = tab
    page.goto(f"{ui}/traces/huge-trace")
    expect(page.locator('#tree-rows .row[data-span="s0"]')).to_be_visible()
    expect(page.locator("#tree-status")).to_have_text(f"{HUGE:,} of {HUGE:,} spans shown")
    # Virtualized: a screenful of rows (plus overscan) exists, not 100,000.
    on_screen = page.locator("#tree-rows .row").count()
    assert 10 < on_screen < 150, on_screen
    viewport = page.locator("#tree-viewport")
    height = viewport.evaluate("v => v.scrollHeight")
    assert height >= HUGE * 24  # the scrollbar spans every row

    viewport.evaluate("v => { v.scrollTop = v.scrollHeight; }")
    last = page.locator(f'#tree-rows .row[data-span="s{HUGE - 1}"]')
    expect(last).to_be_visible()
    last.click()
    expect(page.locator("#span-pane h3.span-title")).to_have_text("execute_tool lookup")
    # Halfway, by dragging the scrollbar in steps: each position fills with real rows.
    for fraction in (0.25, 0.5, 0.75):
        viewport.evaluate("(v, f) => { v.scrollTop = Math.floor(v.scrollHeight * f); }", fraction)
        page.wait_for_function("() => document.querySelectorAll('#tree-rows .row.loading:not([hidden])').length === 0"
                               " && document.querySelectorAll('#tree-rows .row[data-span]:not([hidden])').length > 10")
    assert page.locator("#tree-rows .row").count() < 150

    # A deep span named in the URL is found, its ancestors opened, and scrolled to.
    page.goto(f"{ui}/traces/huge-trace?span=s54321")
    expect(page.locator('#tree-rows .row.selected[data-span="s54321"]')).to_be_visible()
    # Collapsing the root hides the other 99,999 rows.
    viewport.evaluate("v => { v.scrollTop = 0; }")
    page.locator('#tree-rows .row[data-span="s0"] button.toggle').click()
    expect(page.locator("#tree-status")).to_have_text(f"1 of {HUGE:,} spans shown")
    watch.assert_quiet()
