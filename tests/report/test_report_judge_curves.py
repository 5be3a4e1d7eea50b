"""Per-judge pass@k / pass^k over trials, on the real tau-bench runs, in all three reports."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections import defaultdict

from rich.console import Console

from costar.report.html import render_html
from costar.report.junit import junit_xml
from costar.report.terminal import render_summary
from costar.summary import summarize
from costar.trace.formats.taubench import import_taubench
from tests.support.paths import EXTERNAL


def test_judge_pass_hat_k_matches_the_raw_rewards() -> None:
    path = EXTERNAL / "tau-bench" / "gpt-4o-airline.json"
    traces, verdicts = import_taubench(path)
    summary = summarize(None, traces, verdicts)
    [judge] = summary.judges
    per_task: dict[int, list[float]] = defaultdict(list)
    for r in json.loads(path.read_text()):
        per_task[r["task_id"]].append(r["reward"])
    all_four = sum(1 for rewards in per_task.values() if all(x == 1.0 for x in rewards)) / len(per_task)
    any_of_four = sum(1 for rewards in per_task.values() if any(x == 1.0 for x in rewards)) / len(per_task)
    hat4 = next(p for p in judge.pass_hat_k if p.k == 4)
    at4 = next(p for p in judge.pass_at_k if p.k == 4)
    assert abs(hat4.value - all_four) < 1e-12
    assert abs(at4.value - any_of_four) < 1e-12
    assert hat4.scenarios == 50

    console = Console(record=True, width=200)
    render_summary(summary, console)
    text = console.export_text()
    assert f"{100 * any_of_four:.0f}% / {100 * all_four:.0f}% (k=4)" in text
    html = render_html(summary, traces[:4], verdicts[:4], title="tau")
    assert "pass@k / pass^k" in html
    assert "(k=4)" in html
    props = {p.get("name"): p.get("value") for p in ET.fromstring(junit_xml(summary)).iter("property")}
    assert props["judge.tau-bench.reward.pass_at_k_pass_hat_k"].endswith("(k=4)")
