"""Markdown summaries: trace content cannot inject Markdown or HTML into a pull-request comment, and the
document stays bounded however large the run."""

from __future__ import annotations

import re

from costar.compare import compare_summaries
from costar.report.markdown import MARKER, MAX_CHARS, comparison_markdown, md_block, md_code, md_text, run_markdown
from costar.store.base import Run
from costar.summary import summarize
from costar.trace.model import AgentInfo, Trace
from costar.verdict import Verdict

HOSTILE = ('<img src=x onerror=alert(1)> **pwned** [click](https://evil.example/x) @octocat #42 '
           '`code` | a | b |\n# Heading\n<!-- costar -->\n<details open>\u202e')


def test_hostile_text_is_inert() -> None:
    out = md_text(HOSTILE)
    assert "<" not in out
    assert ">" not in out
    assert "**" not in out.replace("\\*\\*", "")
    assert "](" not in out
    assert "https://" not in out
    assert "@octocat" not in out  # a zero-width space keeps GitHub from pinging the user
    assert "#42" not in out
    assert "\n" not in out
    assert "\u202e" not in out  # no right-to-left override tricks
    assert re.search(r"(?<!\\)\|", out) is None  # every pipe escaped: no table cell break


def test_text_is_clipped() -> None:
    assert len(md_text("x" * 10_000, 100)) <= 100


def test_code_spans_and_blocks_cannot_be_closed_from_inside() -> None:
    span = md_code("a``b`c|d")
    fence = re.match(r"`+", span)
    assert fence is not None
    assert len(fence.group(0)) == 3
    assert span.endswith("```")
    assert "|" not in span
    block = md_block("line\n````\n<script>")
    assert block.startswith("`````")
    assert block.rstrip().endswith("`````")


def _outside_code(md: str) -> str:
    """The Markdown with its code spans and blocks removed: what GitHub would interpret."""
    md = re.sub(r"(?ms)^(`{3,})[^\n]*\n.*?^\1`*$", "", md)
    return re.sub(r"(`+)(?!`).*?(?<!`)\1(?!`)", "", md)


def _trace(i: int, scenario: str, output: str) -> Trace:
    return Trace(trace_id=f"t{scenario}{i}", run_id="r", scenario_id=scenario, trial=i, output=output,
                 agent=AgentInfo(name="agent<b>"))


def _summary(run_id: str, scenarios: int, passed: bool, rationale: str) -> object:
    traces = [_trace(i, f"s{j}{HOSTILE if j == 0 else ''}", "out") for j in range(scenarios) for i in range(3)]
    verdicts = [Verdict(name="judge|<b>", passed=passed, rationale=rationale, trace_id=t.trace_id) for t in traces]
    return summarize(Run(run_id=run_id), traces, verdicts)


def test_a_run_summary_escapes_rationales_and_scenario_ids() -> None:
    md = run_markdown(_summary("r1", 3, False, HOSTILE))  # type: ignore[arg-type]
    assert md.startswith(MARKER + "\n")
    live = _outside_code(md)
    assert live.count(MARKER) == 1  # a hostile rationale cannot plant a second marker
    assert "<img" not in live
    assert "Failures (9)" in live  # only code was removed
    assert "<details open>" not in live
    assert "](https" not in live
    assert "Failures (9)" in md
    assert "❌ gates failed" in md


def test_a_comparison_stays_bounded_and_lists_its_regressions() -> None:
    base = _summary("base", 400, True, "fine")
    head = _summary("head", 400, False, HOSTILE * 20)
    md = comparison_markdown(compare_summaries(base, head))  # type: ignore[arg-type]
    assert len(md) <= MAX_CHARS + 200
    assert md.startswith(MARKER)
    assert "Significant regression" in md
    assert "<img" not in _outside_code(md)
    assert "more" in md  # long lists say how much was left out
