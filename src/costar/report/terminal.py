"""A run summary for the terminal (Rich): a scenario table, the judges, what failed and why, and the
pass@k / pass^k curves.

Written for 80 columns and for pipes (CI logs, where Rich assumes 80): ids are never cut, columns
that do not fit are left out whole (:mod:`costar.report.fit`), and long check descriptions in the
judge table are shortened to fit, with the whole text one flag away (``full=True``, ``--full``).
Messages are never cut at their end, where the hint about what to do usually is: agent and judge
errors are printed whole, and a long rationale keeps its head and its tail.

Everything that came from a model or a judge is untrusted: it is put on screen as ``Text`` (never
parsed as Rich markup) with control characters removed, so it cannot restyle or drive the terminal.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence

from rich.console import Console, Group
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from costar.report.fit import Cell, Column, dropped_note, fitted_table, fitted_table_with_names
from costar.safe_text import for_terminal
from costar.summary import (
    CurvePoint,
    JudgeSummary,
    RunSummary,
    ScenarioSummary,
    TrialSummary,
    VerdictBrief,
    fmt_cost,
    fmt_curves,
    fmt_pct,
    fmt_rate,
    fmt_seconds,
    fmt_tokens,
    headline,
    run_state_note,
)

STATUS_STYLE = {
    "pass": "bold green",
    "fail": "bold red",
    "error": "bold magenta",
    "incomplete": "bold yellow",
    "unscored": "yellow",
}
RATIONALE_CHARS = 600
"""A rationale longer than this keeps its head and its tail (``full`` shows it whole)."""
JUDGE_NAME_MIN = 24
"""Judge names are shortened to fit the terminal, never below this many characters."""


# --------------------------------------------------------------------------- text helpers


def clean(text: str) -> str:
    """Untrusted text on one line, whole: terminal controls shown as visible escapes
    (``costar.safe_text``), runs of whitespace (newlines included) folded to one space."""
    return for_terminal(text, None, one_line=True)


def head_and_tail(text: str, limit: int = RATIONALE_CHARS) -> str:
    """``text`` whole when it fits ``limit``; else its head and its tail around a note of how much
    was left out, so the end of a message (usually what to do) is never lost."""
    if len(text) <= limit:
        return text
    head, tail = int(limit * 0.65), int(limit * 0.3)
    return f"{text[:head]} [… {len(text) - head - tail:,} characters left out; --full shows them …] {text[-tail:]}"


_CALL = re.compile(r"^(?P<neg>not )?(?P<kind>[A-Za-z_][\w.]*)\((?P<args>.*)\)(?P<suffix>( #\d+)?)$", re.DOTALL)


def short_name(name: str, limit: int) -> str:
    """A judge name shortened to ``limit`` characters, sensibly: a check's description
    ``csv(file="a.csv", columns=[...], min_rows=1)`` keeps its kind and as many whole arguments as
    fit (``csv(file="a.csv", …)``); other names are cut at a word boundary. Names that fit are whole."""
    name = clean(name)
    if len(name) <= limit:
        return name
    m = _CALL.match(name)
    if m:
        start = f"{m['neg'] or ''}{m['kind']}("
        end = f"…){m['suffix']}"
        kept = ""
        for arg in _split_args(m["args"]):
            candidate = f"{kept}{arg}, " if kept or arg else kept
            if len(start) + len(candidate.rstrip(", ")) + len(", " + end) > limit:
                break
            kept = candidate
        if kept:
            return f"{start}{kept}{end}"
        room = limit - len(start) - len(end)
        if room >= 8:
            return f"{start}{m['args'][: room - 1]}…{end[1:]}"
    cut = name[: limit - 1]
    if " " in cut[limit // 2:]:
        cut = cut[: cut.rindex(" ")]
    return cut.rstrip(" ,") + "…"


def _split_args(args: str) -> list[str]:
    """Top-level comma-separated arguments (commas inside brackets and quotes do not split)."""
    out, depth, quote, current = [], 0, "", []
    for ch in args:
        if quote:
            current.append(ch)
            if ch == quote:
                quote = ""
            continue
        if ch in "\"'":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "," and depth == 0:
            out.append("".join(current).strip())
            current = []
            continue
        current.append(ch)
    if current:
        out.append("".join(current).strip())
    return out


# --------------------------------------------------------------------------- tables


def _trials_cell(s: ScenarioSummary) -> Text:
    cell = Text(f"{s.passed}/{s.decided}")
    notes = []
    if s.errored:
        notes.append((f"{s.errored} err", "magenta"))
    if s.unscored:
        notes.append((f"{s.unscored} unscored", "yellow"))
    if s.missing_trials:
        notes.append((f"{len(s.missing_trials)} missing", "yellow"))
    for note, style in notes:
        cell.append(" +" + note, style=style)
    return cell


def _pass_hat_cell(s: ScenarioSummary) -> str:
    return "—" if s.pass_hat_n is None else f"{fmt_pct(s.pass_hat_n)} (k={s.decided})"


def scenario_table(summary: RunSummary, console: Console) -> tuple[Table | Group, list[str]]:
    """The scenario table fitted to ``console``, and the columns it left out."""
    columns = [Column("scenario"), Column("trials", justify="right"), Column("pass [95% CI]", justify="right"),
               Column("pass^k", justify="right", priority=1), Column("tokens/trial", justify="right", priority=3),
               Column("cost", justify="right", priority=2), Column("latency/trial", justify="right", priority=4),
               Column("status")]
    rows: list[list[Cell | None]] = [[Text(clean(s.scenario_id)), _trials_cell(s), fmt_rate(s.rate), _pass_hat_cell(s),
             fmt_tokens(s.usage.mean_tokens), fmt_cost(s.usage.cost_usd), fmt_seconds(s.usage.mean_latency_s),
             Text(s.status.upper(), style=STATUS_STYLE[s.status])]
            for s in summary.scenarios]
    return fitted_table(console, columns, rows, title="Scenarios")


def _judge_rows(judges: Sequence[JudgeSummary], name_limit: int | None) -> list[list[Text | str]]:
    return [[Text(clean(j.name) if name_limit is None else short_name(j.name, name_limit)), j.role,
             f"{j.passed}/{j.passed + j.failed}", Text(str(j.errors), style="magenta" if j.errors else ""),
             fmt_rate(j.rate), fmt_curves(j)]
            for j in judges]


def judge_table(judges: Sequence[JudgeSummary], console: Console, *,
                full: bool = False) -> tuple[Table | Group, list[str]]:
    """The judge table fitted to ``console``: names shortened until it fits (``full``: whole, wrapped)."""
    columns = [Column("judge", flexible=full), Column("role"), Column("passed", justify="right"),
               Column("err", justify="right"), Column("pass [95% CI]", justify="right"),
               Column("pass@k / pass^k", justify="right", priority=1)]
    if full:
        return fitted_table(console, columns, _judge_rows(judges, None), title="Judges")
    return fitted_table_with_names(console, columns, lambda limit: _judge_rows(judges, limit),
                                   longest=max((len(clean(j.name)) for j in judges), default=0),
                                   shortest=JUDGE_NAME_MIN, title="Judges")


def too_wide(console: Console, table: Table | Group) -> bool:
    """Whether ``table`` at its natural width is wider than the console."""
    from rich.measure import Measurement

    return Measurement.get(console, console.options.update_width(1_000_000), table).maximum > console.width


# --------------------------------------------------------------------------- findings


def _trial_head(marker: str, style: str, trial: TrialSummary) -> Text:
    line = Text(f"{marker} ", style=style)
    line.append(clean(trial.label), style="bold")
    line.append(f"  trace {clean(trial.trace_id)}", style="dim")
    return line


def _finding(name: str, style: str, text: str, width: int, full: bool) -> Text | Group:
    """``    judge: text``, indented under its trial, on one line when it fits; else the text goes
    under the judge's name, indented further, wrapped at word boundaries."""
    line = Text("    ")
    line.append(name if full else short_name(name, max(JUDGE_NAME_MIN, width - len(line) - 1)), style=style)
    if len(line) + 2 + len(text) <= width:
        line.append(": " + text)
        return line
    line.append(":")
    return Group(line, Padding(Text(text), (0, 0, 0, 6), expand=False))


Findings = Iterator[tuple[Text, list[Text | Group]]]
"""Per trial: its head line and its findings."""


def _verdict_text(v: VerdictBrief, full: bool) -> str:
    text = clean(v.rationale or "(no rationale)")
    return text if full else head_and_tail(text)


def _failure_lines(summary: RunSummary, full: bool, width: int) -> Findings:
    for trial in summary.trials():
        if trial.status != "fail":
            continue
        head = _trial_head("✗", "red", trial)
        if trial.agent_status != "ok":
            # The gates that fail after a crash or timeout mostly restate it: name them, no more.
            found: list[Text | Group] = [_finding(f"agent {trial.agent_status}", "red",
                                                  clean(trial.agent_error or "(no message)"), width, True)]
            if trial.failures:
                names = ", ".join(clean(v.name) for v in trial.failures)
                found.append(Text(f"    (failed: {names})", style="dim"))
            yield head, found
            continue
        yield head, [_finding(clean(v.name), "red", _verdict_text(v, full), width, full) for v in trial.failures]


def _judge_error_lines(summary: RunSummary, full: bool, width: int) -> Findings:
    for trial in summary.trials():
        if trial.judge_errors:
            # Errors are printed whole: their end says how to fix them.
            yield _trial_head("‼", "magenta", trial), [
                _finding(clean(v.name), "magenta",
                         f"judge error{'' if v.gating else ' (diagnostic)'}: {clean(v.error or v.rationale)}",
                         width, full)
                for v in trial.judge_errors]


def _diagnostic_lines(summary: RunSummary, full: bool, width: int) -> Findings:
    for trial in summary.trials():
        if trial.diagnostics:
            yield _trial_head("⚠", "yellow", trial), [
                _finding(clean(v.name), "yellow", _verdict_text(v, full), width, full) for v in trial.diagnostics]


def _section(console: Console, title: str, style: str, trials: Findings, limit: int | None) -> None:
    """The findings of each trial under its head line; at most ``limit`` findings in all."""
    shown = 0
    hidden = 0
    for head, findings in trials:
        if shown == 0 and hidden == 0:
            console.print()
            console.print(Text(title, style=style), soft_wrap=False)
        room = len(findings) if limit is None else max(0, limit - shown)
        if room:
            console.print(head, soft_wrap=False)
            for finding in findings[:room]:
                console.print(finding, soft_wrap=False)
        shown += min(room, len(findings))
        hidden += len(findings) - min(room, len(findings))
    if hidden:
        console.print(Text(f"  … and {hidden} more (--full lists them all, as does the HTML report)", style="dim"),
                      soft_wrap=False)


def _run_header(summary: RunSummary) -> Text:
    head = Text("Run ", style="bold")
    head.append(clean(summary.run_id or "(no run id)"), style="bold")
    agent = summary.agent
    who = agent.name + (f" {agent.version}" if agent.version else "")
    if agent.git_sha:
        who += f" @ {agent.git_sha[:10]}"
    head.append(" · agent " + clean(who))
    if summary.description:
        head.append(" · " + clean(summary.description), style="dim")
    note = run_state_note(summary)
    if note:
        head.append("\n" + clean(note), style="bold red")
    return head


def curve_line(label: str, points: Sequence[CurvePoint], total: int) -> Text:
    """``pass^k  k=1 88% · k=2 80% · k=3 75% (7 of 8 scenarios)``: every k, with how many scenarios
    ran at least k trials when that is not all of them."""
    line = Text(f"{label:<7}", style="bold")
    for i, p in enumerate(points):
        if i:
            line.append(" · ", style="dim")
        line.append(f"k={p.k} ", style="dim")
        line.append(fmt_pct(p.value))
        if p.scenarios != total:
            line.append(f" ({p.scenarios} of {total} scenarios)", style="dim")
    return line


def _totals_line(summary: RunSummary) -> Text:
    t = summary.totals
    line = Text(f"trial pass rate {fmt_rate(summary.trial_rate)}", style="dim")
    line.append(f" · {fmt_tokens(t.usage.total_tokens)} tokens · agent {fmt_cost(t.usage.cost_usd)}"
                f" · judges {fmt_cost(t.judge_cost_usd)}", style="dim")
    return line


def render_summary(summary: RunSummary, console: Console, *, max_lines: int = 20, show_judges: bool = True,
                   full: bool = False) -> None:
    """Print the run summary. ``max_lines`` bounds each of the failure / error / warning lists;
    ``full`` lists them all, with judge names and rationales whole."""
    console.print(_run_header(summary), soft_wrap=False)
    table, dropped = scenario_table(summary, console)
    console.print(table, soft_wrap=False)
    if show_judges and summary.judges:
        judges, judges_dropped = judge_table(summary.judges, console, full=full)
        console.print(judges, soft_wrap=False)
        dropped += [d for d in judges_dropped if d not in dropped]
    note = dropped_note(dropped)
    if note is not None:
        console.print(note, soft_wrap=False)
    limit = None if full else max_lines
    width = console.width
    _section(console, "Failures", "bold red", _failure_lines(summary, full, width), limit)
    _section(console, "Judge errors (neither pass nor fail)", "bold magenta", _judge_error_lines(summary, full, width),
             limit)
    _section(console, "Warnings (diagnostics, do not gate)", "bold yellow", _diagnostic_lines(summary, full, width),
             limit)
    console.print()
    if summary.pass_hat_k and summary.pass_hat_k[-1].k > 1:
        n = summary.totals.scenarios
        console.print(curve_line("pass@k", summary.pass_at_k, n), soft_wrap=False)
        console.print(curve_line("pass^k", summary.pass_hat_k, n), soft_wrap=False)
    console.print(_totals_line(summary), soft_wrap=False)
    style = "bold green" if summary.all_gates_passed else "bold red"
    console.print(Text(headline(summary), style=style), soft_wrap=False)
