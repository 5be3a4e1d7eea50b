"""Terminal rendering: content, plain-text degradation, and untrusted text that cannot drive the terminal."""

from __future__ import annotations

import io
from typing import Any

from rich.console import Console

from costar.report.terminal import render_summary
from costar.summary import RunSummary, summarize
from tests.support.report import make_run, make_trace, sample_run, verdict


def _render(summary: RunSummary, **kw: Any) -> str:
    console = Console(record=True, width=120)
    render_summary(summary, console, **kw)
    return console.export_text()


def test_table_failures_errors_warnings_and_final_line() -> None:
    run, traces, verdicts = sample_run()
    out = _render(summarize(run, traces, verdicts))
    for expected in ("weather", "booking", "slow", "PASS", "FAIL", "100% [44–100%]", "50% [9–91%]",
                     "1/2 +1 err", "100% (k=3)", "$0.0030", "1.5s"):
        assert expected in out, expected
    # Each failing trial names its whole trace id, then what failed and why.
    assert "✗ booking[1]  trace booking-1-00000000\n    booked: no reservation was created" in out
    # A crash or timeout is said once; the gates it made fail are named, not repeated.
    assert "✗ slow[0]  trace slow-0-00000000\n    agent timeout: timed out after 30s\n    (failed: agent_completed)" in out
    assert "agent_completed: the agent did not finish" not in out
    assert "Judge errors (neither pass nor fail)" in out
    assert "‼ booking[2]  trace booking-2-00000000\n    booked: judge error: judge model returned 503" in out
    assert "Warnings (diagnostics, do not gate)" in out
    assert "⚠ weather[1]  trace weather-1-00000000\n    polite: the answer was curt" in out
    last = out.rstrip().splitlines()[-1]
    assert last.startswith("1/3 scenarios passed · 4/7 trials passed · 1 judge error")


def test_clean_run_has_no_failure_sections() -> None:
    traces = [make_trace("a", i) for i in range(3)]
    out = _render(summarize(make_run(), traces, [verdict(t, "ok", True) for t in traces]))
    assert "Failures" not in out
    assert "Judge errors" not in out
    assert "Warnings" not in out
    assert out.rstrip().endswith("1/1 scenarios passed · 3/3 trials passed")


def test_plain_text_when_not_a_terminal() -> None:
    run, traces, verdicts = sample_run()
    buffer = io.StringIO()
    console = Console(file=buffer, width=120)  # a StringIO is not a TTY: no colour codes
    render_summary(summarize(run, traces, verdicts), console)
    text = buffer.getvalue()
    assert "\x1b[" not in text
    assert "1/3 scenarios passed" in text


def test_model_text_cannot_inject_markup_or_escape_sequences() -> None:
    t = make_trace("a", 0)
    nasty = "[bold red]fake[/] [/nope] \x1b[2J\x1b]0;pwned\x07 done\nsecond line"
    s = summarize(make_run(), [t], [verdict(t, "ok", False, rationale=nasty)])
    raw = io.StringIO()
    console = Console(file=raw, record=True, width=200, force_terminal=True, color_system="truecolor")
    render_summary(s, console)
    out = console.export_text(styles=False)
    assert "[bold red]fake[/] [/nope]" in out  # shown literally, not interpreted
    assert "\x1b" not in out
    assert "\x07" not in out
    # Rich's own colour codes are there, the model's screen-clear and title-set are not.
    assert "\x1b[" in raw.getvalue()
    assert "\x1b[2J" not in raw.getvalue()
    assert "\x1b]0;" not in raw.getvalue()
    assert "done second line" in out  # one line per finding


def test_long_lists_are_bounded() -> None:
    traces = [make_trace("a", i) for i in range(40)]
    s = summarize(make_run(), traces, [verdict(t, "ok", False, rationale="r" * 1000) for t in traces])
    out = _render(s, max_lines=5)
    assert out.count("✗ a[") == 5
    assert "… and 35 more (--full lists them all" in out
    assert max(len(line) for line in out.splitlines()) <= 120
    everything = _render(s, max_lines=5, full=True)
    assert everything.count("✗ a[") == 40
    assert "r" * 1000 in everything.replace("\n", "").replace(" ", "")


def _at80(summary: RunSummary, **kw: Any) -> str:
    console = Console(record=True, width=80)
    render_summary(summary, console, **kw)
    return console.export_text()


def test_messages_keep_their_end_at_80_columns() -> None:
    """A judge error's hint (how to fix it) is at its end: it is never cut off with '…'."""
    from costar.report.terminal import head_and_tail

    t = make_trace("long-context", 0)
    hint = "the prompt does not fit the model's context window (2048 tokens); pass ?n_ctx= (currently 2048) in the model URI"
    error = "model call failed: " + "request details " * 20 + hint
    s = summarize(make_run(), [t], [verdict(t, "outcome", None, error=error)])
    out = _at80(s)
    assert max(len(line) for line in out.splitlines()) <= 80
    assert hint in " ".join(out.split())
    # A long rationale keeps its head and its tail, and says how much is left out.
    text = "start " + "x" * 2000 + " the end that matters"
    kept = head_and_tail(text)
    assert kept.startswith("start ")
    assert kept.endswith("the end that matters")
    assert "characters left out" in kept
    assert head_and_tail("short") == "short"


def test_long_check_names_are_shortened_sensibly_and_whole_with_full() -> None:
    from costar.report.terminal import short_name

    name = 'csv(file="revenue.csv", columns=["quarter", "revenue", "region"], min_rows=4)'
    assert short_name(name, 40) == 'csv(file="revenue.csv", …)'
    assert short_name(name, 200) == name
    assert short_name("not file_contains(file=\"a.txt\", value=\"x\") #2", 38) == 'not file_contains(file="a.txt", …) #2'
    assert short_name("the answer states the total with its currency and nothing else", 30) == \
        "the answer states the total…"
    traces = [make_trace("a", 0)]
    s = summarize(make_run(), traces, [verdict(traces[0], name, False, rationale="missing")])
    short, full = _at80(s), _at80(s, full=True)
    assert 'csv(file="revenue.csv", …)' in short
    assert name not in short
    assert name in " ".join(full.split()) or name in full.replace("\n", "")


def test_pass_curves_cover_every_k() -> None:
    traces = [make_trace("a", i) for i in range(4)]
    s = summarize(make_run(), traces, [verdict(t, "ok", t.trial != 3) for t in traces])
    out = _at80(s)
    for k in (1, 2, 3, 4):
        assert f"k={k} " in out
    assert "pass^k" in out
    assert "pass@k" in out
