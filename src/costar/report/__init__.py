"""Reports over a run: a summary model with rates, and terminal, HTML and JUnit renderings of it."""

from costar.report.html import HtmlLimits, render_html, write_html
from costar.report.junit import junit_xml, write_junit
from costar.report.summary import (
    CurvePoint,
    JudgeSummary,
    Rate,
    RunSummary,
    RunTotals,
    ScenarioSummary,
    TrialSummary,
    Usage,
    VerdictBrief,
    summarize,
)
from costar.report.terminal import render_summary

__all__ = [
    "CurvePoint",
    "HtmlLimits",
    "JudgeSummary",
    "Rate",
    "RunSummary",
    "RunTotals",
    "ScenarioSummary",
    "TrialSummary",
    "Usage",
    "VerdictBrief",
    "junit_xml",
    "render_html",
    "render_summary",
    "summarize",
    "write_html",
    "write_junit",
]
