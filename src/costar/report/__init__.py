"""Reports over a run: terminal, HTML and JUnit renderings of a :class:`costar.summary.RunSummary`
(and, in the terminal, of comparisons and metric alerts)."""

from costar.report.html import HtmlLimits, render_html, write_html
from costar.report.junit import junit_xml, write_junit
from costar.report.terminal import render_summary

__all__ = [
    "HtmlLimits",
    "junit_xml",
    "render_html",
    "render_summary",
    "write_html",
    "write_junit",
]
