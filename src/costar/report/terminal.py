"""A run summary for the terminal (Rich): a scenario table, then what failed and why.

Everything that came from a model or a judge is untrusted: it is put on screen as ``Text`` (never
parsed as Rich markup) with control characters removed, so it cannot restyle or drive the terminal.
"""

from __future__ import annotations

from collections.abc import Iterator

from rich.console import Console
from rich.table import Table
from rich.text import Text

from costar.summary import (
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
    one_line,
    plural,
    run_state_note,
)

STATUS_STYLE = {
    "pass": "bold green",
    "fail": "bold red",
    "error": "bold magenta",
    "incomplete": "bold yellow",
    "unscored": "yellow",
}
RATIONALE_CHARS = 240


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
    return "—" if s.pass_hat_n is None else f"{s.pass_hat_n:.2f} (k={s.decided})"


def scenario_table(summary: RunSummary) -> Table:
    table = Table(title="Scenarios", title_justify="left", expand=False)
    table.add_column("scenario", overflow="fold")
    table.add_column("trials", justify="right")
    table.add_column("pass rate [95% CI]", justify="right")
    table.add_column("pass^k", justify="right")
    table.add_column("tokens/trial", justify="right")
    table.add_column("cost", justify="right")
    table.add_column("latency/trial", justify="right")
    table.add_column("status")
    for s in summary.scenarios:
        table.add_row(Text(one_line(s.scenario_id, 80)), _trials_cell(s), fmt_rate(s.rate), _pass_hat_cell(s),
                      fmt_tokens(s.usage.mean_tokens), fmt_cost(s.usage.cost_usd),
                      fmt_seconds(s.usage.mean_latency_s),
                      Text(s.status.upper(), style=STATUS_STYLE[s.status]))
    return table


def judge_table(judges: list[JudgeSummary]) -> Table:
    table = Table(title="Judges", title_justify="left")
    table.add_column("judge", overflow="fold")
    table.add_column("role")
    table.add_column("pass", justify="right")
    table.add_column("fail", justify="right")
    table.add_column("error", justify="right")
    table.add_column("pass rate [95% CI]", justify="right")
    table.add_column("pass@k / pass^k", justify="right")
    for j in judges:
        table.add_row(Text(one_line(j.name, 60)), j.role, str(j.passed), str(j.failed),
                      Text(str(j.errors), style="magenta" if j.errors else ""), fmt_rate(j.rate), fmt_curves(j))
    return table


def _verdict_line(marker: str, style: str, trial: TrialSummary, v: VerdictBrief, text: str) -> Text:
    line = Text(f"{marker} ", style=style)
    line.append(one_line(trial.label, 80), style="bold")
    line.append("  ")
    line.append(one_line(v.name, 60), style=style)
    line.append(": " + one_line(text, RATIONALE_CHARS))
    return line


def _failure_lines(summary: RunSummary) -> Iterator[Text]:
    for trial in summary.trials():
        if trial.status != "fail":
            continue
        if trial.agent_status != "ok":
            # The gates that fail after a crash or timeout mostly restate it: name them, no more.
            line = Text("✗ ", style="red")
            line.append(one_line(trial.label, 80), style="bold")
            line.append(f"  agent {trial.agent_status}", style="red")
            line.append(": " + one_line(trial.agent_error or "(no message)", RATIONALE_CHARS))
            if trial.failures:
                names = ", ".join(v.name for v in trial.failures)
                line.append(" " + one_line(f"(failed: {names})", RATIONALE_CHARS), style="dim")
            yield line
            continue
        for v in trial.failures:
            yield _verdict_line("✗", "red", trial, v, v.rationale or "(no rationale)")


def _judge_error_lines(summary: RunSummary) -> Iterator[Text]:
    for trial in summary.trials():
        for v in trial.judge_errors:
            role = "" if v.gating else " (diagnostic)"
            yield _verdict_line("‼", "magenta", trial, v, f"judge error{role}: {v.error or v.rationale}")


def _diagnostic_lines(summary: RunSummary) -> Iterator[Text]:
    for trial in summary.trials():
        for v in trial.diagnostics:
            yield _verdict_line("⚠", "yellow", trial, v, v.rationale or "(no rationale)")


def _section(console: Console, title: str, style: str, lines: Iterator[Text], limit: int) -> None:
    shown = 0
    hidden = 0
    for line in lines:
        if shown == 0:
            console.print()
            console.print(Text(title, style=style))
        if shown < limit:
            console.print(line)
            shown += 1
        else:
            hidden += 1
    if hidden:
        console.print(Text(f"  … and {hidden} more (the HTML report lists them all)", style="dim"))


def _run_header(summary: RunSummary) -> Text:
    head = Text("Run ", style="bold")
    head.append(one_line(summary.run_id or "(no run id)", 80), style="bold")
    agent = summary.agent
    who = agent.name + (f" {agent.version}" if agent.version else "")
    if agent.git_sha:
        who += f" @ {agent.git_sha[:10]}"
    head.append(" · agent " + one_line(who, 80))
    if summary.description:
        head.append(" · " + one_line(summary.description, 120), style="dim")
    note = run_state_note(summary)
    if note:
        head.append("\n" + one_line(note, 600), style="bold red")
    return head


def _totals_line(summary: RunSummary) -> Text:
    t = summary.totals
    line = Text(f"trial pass rate {fmt_rate(summary.trial_rate)}", style="dim")
    if summary.pass_hat_k:
        first, last = summary.pass_hat_k[0], summary.pass_hat_k[-1]
        line.append(f" · pass^1 {fmt_pct(first.value)}", style="dim")
        if last.k > 1:
            line.append(f" · pass^{last.k} {fmt_pct(last.value)} ({plural(last.scenarios, 'scenario')})",
                        style="dim")
    line.append(f" · {fmt_tokens(t.usage.total_tokens)} tokens · agent {fmt_cost(t.usage.cost_usd)}"
                f" · judges {fmt_cost(t.judge_cost_usd)}", style="dim")
    return line


def render_summary(summary: RunSummary, console: Console, *, max_lines: int = 20,
                   show_judges: bool = True) -> None:
    """Print the run summary; ``max_lines`` bounds each of the failure / error / warning lists."""
    console.print(_run_header(summary))
    console.print(scenario_table(summary))
    if show_judges and summary.judges:
        console.print(judge_table(summary.judges))
    _section(console, "Failures", "bold red", _failure_lines(summary), max_lines)
    _section(console, "Judge errors (neither pass nor fail)", "bold magenta", _judge_error_lines(summary),
             max_lines)
    _section(console, "Warnings (diagnostics, do not gate)", "bold yellow", _diagnostic_lines(summary),
             max_lines)
    console.print()
    console.print(_totals_line(summary))
    style = "bold green" if summary.all_gates_passed else "bold red"
    console.print(Text(headline(summary), style=style))
