"""The terminal's trace tree (``costar traces show``)."""

from __future__ import annotations

import io
from pathlib import Path

from rich.console import Console

from costar.report.terminal_store import render_trace
from costar.store.sqlite import SQLiteStore
from costar.trace.model import Span, SpanKind, Trace
from costar.views import trace_detail


def test_a_span_that_never_ended_is_shown_open_not_as_zero_ms(tmp_path: Path) -> None:
    spans = [Span(trace_id="t1", span_id="root", name="agent", kind=SpanKind.AGENT, start_ns=0, end_ns=2_500_000_000),
             Span(trace_id="t1", span_id="hung", parent_id="root", name="execute_tool wait", kind=SpanKind.TOOL,
                  start_ns=1_000_000_000, end_ns=None)]
    with SQLiteStore(tmp_path / "store") as store:
        store.write_trace(Trace(trace_id="t1", spans=spans))
        detail = trace_detail(store, "t1")
    out = io.StringIO()
    render_trace(detail, Console(file=out, width=120, color_system=None))
    lines = out.getvalue().splitlines()
    [hung] = [line for line in lines if "execute_tool wait" in line]
    [root] = [line for line in lines if "agent" in line and "execute_tool" not in line]
    assert hung.rstrip().endswith("open")
    assert "0ms" not in hung
    assert "2.5s" in root
