"""Web app benchmark: the Trace page of a 100,000-span trace in chromium — time to its first screen of
span rows, frame times while scrolling through it, the jump to its last row, and what the page holds
(DOM nodes, JS heap) — against a 100-span trace (the anchor) measured in the same run.

    python benchmarks/bench_webapp.py            # 5 repetitions, medians reported
    python benchmarks/bench_webapp.py -r 3 --spans 50000

The app is ``costar ui``'s (create_ui_app over a SQLite store) on loopback, driven by Debian's
chromium through Playwright, headless. "First screen" runs from the navigation's start to the first
span row in the tree, measured in the page (a MutationObserver installed before any page script):
it includes the server's response, the page's scripts and the first tree page from the API. "Cold"
is the first visit after the server starts (the server builds the trace's tree index on that
request); "warm" is a later visit. Scrolling moves the tree by 40 rows per animation frame (a fast
flick, ~1,000 rows a second at 60 fps) for 300 frames; a frame's time is the gap between animation
frames, and "blank" counts rows drawn while their page was still loading.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/ holds the seeded store and browser

from costar._util.server import BackgroundServer
from costar.store.sqlite import SQLiteStore
from costar.ui.app import create_ui_app
from tests.support.browser import HAVE_CHROMIUM, NO_CHROMIUM, chromium
from tests.support.webapp_seed import add_huge_trace

FIRST_ROW = """
window.__firstRow = null;
new MutationObserver((changes, observer) => {
  if (document.querySelector('#tree-rows .row[data-span]')) {
    window.__firstRow = performance.now();
    observer.disconnect();
  }
}).observe(document, { childList: true, subtree: true, attributes: true, attributeFilter: ['data-span'] });
"""

SCROLL = """
async ([frames, rowsPerFrame]) => {
  const v = document.getElementById('tree-viewport');
  const gaps = [];
  let blank = 0, drawn = 0, last = null;
  for (let i = 0; i < frames; i++) {
    const t = await new Promise(requestAnimationFrame);
    if (last !== null) gaps.push(t - last);
    last = t;
    const rows = [...document.querySelectorAll('#tree-rows .row:not([hidden])')];
    blank += rows.filter(r => r.classList.contains('loading')).length;
    drawn += rows.length;
    v.scrollTop += rowsPerFrame * 24;
  }
  return { gaps, blank, drawn };
}
"""

JUMP = """
async () => {
  const v = document.getElementById('tree-viewport');
  const t0 = performance.now();
  v.scrollTop = v.scrollHeight;
  while (!document.querySelector('#tree-rows .row[data-span="' + window.__lastSpan + '"]')) {
    await new Promise(requestAnimationFrame);
    if (performance.now() - t0 > 10000) return null;
  }
  return performance.now() - t0;
}
"""


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def measure(context: Any, url: str, trace_id: str, last_span: str, *, frames: int) -> dict[str, float]:
    """One visit to a trace page: first screen, scrolling, the jump to the end, what the page holds."""
    page = context.new_page()
    try:
        page.add_init_script(FIRST_ROW)
        page.goto(f"{url}/traces/{trace_id}", wait_until="commit")
        page.wait_for_function("() => window.__firstRow !== null", timeout=30_000)
        first = page.evaluate("() => window.__firstRow")
        page.wait_for_function("() => !document.querySelector('#tree-rows .row.loading:not([hidden])')")
        scroll = page.evaluate(SCROLL, [frames, 40])
        page.evaluate("s => { window.__lastSpan = s; document.getElementById('tree-viewport').scrollTop = 0; }",
                      last_span)
        page.wait_for_function("() => !document.querySelector('#tree-rows .row.loading:not([hidden])')")
        jump = page.evaluate(JUMP)
        cdp = context.new_cdp_session(page)
        cdp.send("Performance.enable")
        metrics = {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}
        gaps = scroll["gaps"]
        return {"first": first, "gap_median": statistics.median(gaps), "gap_p95": quantile(gaps, 0.95),
                "gap_max": max(gaps), "blank": scroll["blank"] / max(1, scroll["drawn"]),
                "jump": jump if jump is not None else float("nan"), "nodes": metrics["Nodes"],
                "heap_mb": metrics["JSHeapUsedSize"] / 2**20}
    finally:
        page.close()


def small_trace(store: SQLiteStore) -> str:
    return add_huge_trace(store, 100, trace_id="small-trace")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-r", "--repeat", type=int, default=5)
    parser.add_argument("--spans", type=int, default=100_000)
    parser.add_argument("--frames", type=int, default=300)
    args = parser.parse_args()
    if not HAVE_CHROMIUM:
        sys.exit(NO_CHROMIUM)

    with tempfile.TemporaryDirectory() as tmp:
        store = SQLiteStore(Path(tmp) / ".costar")
        t = time.perf_counter()
        add_huge_trace(store, args.spans)
        write_s = time.perf_counter() - t
        small_trace(store)
        results: dict[str, list[dict[str, float]]] = {k: [] for k in ("small cold", "small warm", "huge cold",
                                                                      "huge warm")}
        with chromium(Path(tmp) / "profile") as context:
            for _ in range(args.repeat):
                # A new server each repetition: the first visit builds the tree index (cold).
                with BackgroundServer(create_ui_app(store)) as srv:
                    for label, tid, last in (("small", "small-trace", "s99"),
                                             ("huge", "huge-trace", f"s{args.spans - 1}")):
                        results[f"{label} cold"].append(measure(context, srv.url, tid, last, frames=args.frames))
                        results[f"{label} warm"].append(measure(context, srv.url, tid, last, frames=args.frames))
        store.close()

    med = {k: {m: statistics.median(r[m] for r in v) for m in v[0]} for k, v in results.items()}
    print(f"bench_webapp: {args.spans:,}-span trace (written in {write_s:.1f} s) vs a 100-span trace; "
          f"{args.repeat} repetitions, medians; {platform.processor() or platform.machine()}, "
          f"Python {platform.python_version()}, {time.strftime('%Y-%m-%d')}")
    print("| visit | first screen | ratio to the anchor | frame gap median / p95 / max | blank rows | "
          "jump to last row | DOM nodes | JS heap |")
    print("|---|---|---|---|---|---|---|---|")
    for key, m in med.items():
        anchor = med["small " + key.split()[1]]["first"]
        print(f"| {key} | {m['first']:.0f} ms | {m['first'] / anchor:.2f}× | {m['gap_median']:.1f} / "
              f"{m['gap_p95']:.1f} / {m['gap_max']:.1f} ms | {m['blank'] * 100:.1f}% | {m['jump']:.0f} ms | "
              f"{m['nodes']:,.0f} | {m['heap_mb']:.1f} MiB |")


if __name__ == "__main__":
    main()
