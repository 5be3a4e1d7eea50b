"""Comparisons of two runs and metric alerts for the terminal (Rich).

Scenario ids, judge names and run ids come from users' files and imported traces: they go on
screen as ``Text`` (never parsed as markup) with control characters removed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from costar.compare import (
    USAGE_METRICS,
    Comparison,
    JudgeComparison,
    MetricDelta,
    RateChange,
    ScenarioComparison,
    UsageMetric,
)
from costar.metrics import LABELS, MetricName, MetricsReport, ScenarioMetrics, format_metric
from costar.report.fit import Cell, Column, dropped_note, fitted_table, fitted_table_with_names
from costar.report.terminal import JUDGE_NAME_MIN, clean, short_name
from costar.summary import Rate, fmt_cost, fmt_pct, fmt_rate, fmt_seconds, fmt_tokens, one_line, plural
from costar.trace.model import AgentInfo

if TYPE_CHECKING:
    from costar.attribution import ToolUse

CHANGE_STYLE = {
    "improved": "bold green",
    "regressed": "bold red",
    "unchanged": "dim",
    "inconclusive": "yellow",
    "added": "cyan",
    "removed": "cyan",
    "metric": "dim",
}
USAGE_HEADERS: dict[UsageMetric, str] = {"total_tokens": "tokens/trial", "cost_usd": "cost/trial",
                                         "latency_s": "latency/trial"}
# Columns of the metrics table, in order.
TABLE_METRICS: tuple[MetricName, ...] = ("total_tokens", "cost_usd", "latency_s", "llm_calls", "tool_calls",
                                         "error_spans", "retries")


# --------------------------------------------------------------------------- cells


def _rate_cell(rate: Rate | None) -> str:
    return "—" if rate is None else f"{rate.successes}/{rate.n} {fmt_rate(rate)}"


def _fmt_p(p: float) -> str:
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def _p_cell(rc: RateChange | None, correction: str) -> str:
    if rc is None:
        return "—"
    text = _fmt_p(rc.p_value)
    adjusted = _fmt_p(rc.p_adjusted)
    if correction != "none" and adjusted != text:
        text += f" (adj {adjusted})"
    return text


def _change_cell(change: str) -> Text:
    return Text(change.upper(), style=CHANGE_STYLE.get(change, ""))


def _fmt_usage(metric: str, value: float) -> str:
    if metric == "cost_usd":
        return fmt_cost(value)
    if metric == "latency_s":
        return fmt_seconds(value)
    return fmt_tokens(value)


def _delta_cell(deltas: Sequence[MetricDelta], metric: str) -> Text:
    d = next((x for x in deltas if x.metric == metric), None)
    if d is None:
        return Text("—")
    cell = Text(f"{_fmt_usage(metric, d.base)} → {_fmt_usage(metric, d.head)}")
    if d.relative is not None and d.delta:
        # More spend is the direction to notice; less is usually welcome.
        cell.append(f" ({d.relative * 100:+.0f}%)", style="red" if d.delta > 0 else "green")
    return cell


def _agent(agent: AgentInfo) -> str:
    who = agent.name + (f" {agent.version}" if agent.version else "")
    return who + (f" @ {agent.git_sha[:10]}" if agent.git_sha else "")


# --------------------------------------------------------------------------- comparison


def _recorded(deltas: Sequence[MetricDelta], metric: str) -> bool:
    return any(d.metric == metric and (d.base or d.head) for d in deltas)


def comparison_scenario_table(comparison: Comparison, console: Console, *,
                              hide_unchanged: bool = False) -> tuple[Table | Group, list[str]]:
    """The scenarios fitted to ``console`` (ids whole; columns that do not fit left out), and the
    columns left out."""
    # Traces imported without usage (e.g. from transcripts) would fill these columns with zeros.
    usage = [m for m in USAGE_METRICS if any(_recorded(s.metrics, m) for s in comparison.scenarios)]
    columns = [Column("scenario"), Column("base [95% CI]", justify="right"), Column("head [95% CI]", justify="right"),
               Column("p", justify="right", priority=2), Column("pass^k", justify="right", priority=3),
               *(Column(USAGE_HEADERS[m], justify="right", priority=4 + i) for i, m in enumerate(usage)),
               Column("change")]
    rows: list[list[Cell | None]] = [[Text(clean(s.scenario_id)), _rate_cell(s.base_rate), _rate_cell(s.head_rate),
             _p_cell(s.rates, comparison.correction), _pass_hat_cell(s),
             *(_delta_cell(s.metrics, m) for m in usage), _change_cell(s.change)]
            for s in comparison.scenarios
            if not (hide_unchanged and s.change in ("unchanged", "inconclusive"))]
    return fitted_table(console, columns, rows, title="Scenarios")


def _pass_hat_cell(s: ScenarioComparison) -> str:
    p = s.pass_hat_k
    return "—" if p is None else f"{fmt_pct(p.base)} → {fmt_pct(p.head)} (k={p.k})"


def _mean_cell(j: JudgeComparison) -> str:
    if j.base_mean is None and j.head_mean is None:
        return "—"
    return " → ".join("—" if v is None else f"{v:,.4g}" for v in (j.base_mean, j.head_mean))


def _judge_name(j: JudgeComparison, limit: int | None) -> Text:
    name = Text(clean(j.name) if limit is None else short_name(j.name, limit))
    if j.fingerprint_changed:
        name.append(" (changed)", style="bold yellow")
    if not j.gating and j.change != "metric":
        name.append(" (diagnostic)", style="dim")
    return name


def comparison_judge_table(comparison: Comparison, console: Console, *,
                           full: bool = False) -> tuple[Table | Group, list[str]]:
    """The judges fitted to ``console``: long names shortened until the table fits (``full``: whole)."""
    columns = [Column("judge", flexible=full), Column("base [95% CI]", justify="right"),
               Column("head [95% CI]", justify="right"), Column("p", justify="right", priority=2),
               Column("mean value", justify="right", priority=3), Column("change")]

    def rows(limit: int | None) -> list[list[Text | str]]:
        return [[_judge_name(j, limit), _rate_cell(j.rates.base if j.rates else None),
                 _rate_cell(j.rates.head if j.rates else None), _p_cell(j.rates, comparison.correction),
                 _mean_cell(j), _change_cell(j.change)] for j in comparison.judges]

    if full:
        return fitted_table(console, columns, rows(None), title="Judges")
    return fitted_table_with_names(console, columns, rows,
                                   longest=max((len(clean(j.name)) for j in comparison.judges), default=0),
                                   shortest=JUDGE_NAME_MIN, title="Judges")


def _overall_line(comparison: Comparison) -> Text:
    o = comparison.overall
    line = Text("overall ", style="bold")
    line.append(f"{_rate_cell(o.base)} → {_rate_cell(o.head)} · p {_fmt_p(o.p_value)} · ")
    line.append(o.change.upper(), style=CHANGE_STYLE[o.change])
    for d in comparison.metrics:
        if d.base or d.head:
            line.append(f" · {USAGE_HEADERS[d.metric]} ", style="dim")
            line.append(_delta_cell([d], d.metric))
    return line


def _headline(comparison: Comparison) -> Text:
    counts = comparison.counts()
    parts = [f"{counts[c]} {c}" for c in ("regressed", "improved", "unchanged", "inconclusive", "added", "removed")
             if counts.get(c)]
    summary = " · ".join(parts) or "no scenarios"
    if comparison.has_significant_regression:
        return Text(f"REGRESSION (alpha {comparison.alpha:g}): {summary}", style="bold red")
    return Text(f"no significant regression (alpha {comparison.alpha:g}): {summary}", style="bold green")


def render_comparison(comparison: Comparison, console: Console, *, hide_unchanged: bool = False,
                      show_judges: bool = True, full: bool = False) -> None:
    """Print BASE vs HEAD: scenarios, judges, warnings, then the overall verdict."""
    head = Text("Compare ", style="bold")
    head.append(one_line(comparison.base_run_id or "(base)", 60), style="bold")
    head.append(" → ")
    head.append(one_line(comparison.head_run_id or "(head)", 60), style="bold")
    head.append(" · " + one_line(f"{_agent(comparison.base_agent)} → {_agent(comparison.head_agent)}", 120),
                style="dim")
    console.print(head, soft_wrap=False)
    table, dropped = comparison_scenario_table(comparison, console, hide_unchanged=hide_unchanged)
    console.print(table, soft_wrap=False)
    if show_judges and comparison.judges:
        judges, more = comparison_judge_table(comparison, console, full=full)
        console.print(judges, soft_wrap=False)
        dropped += [d for d in more if d not in dropped]
    note = dropped_note(dropped)
    if note is not None:
        console.print(note, soft_wrap=False)
    render_attribution(comparison, console)
    for w in comparison.warnings:
        console.print(Text("⚠ " + clean(w), style="yellow"), soft_wrap=False)
    console.print(_overall_line(comparison), soft_wrap=False)
    correction = "Holm-adjusted per family" if comparison.correction == "holm" else "uncorrected"
    console.print(Text(f"Boschloo's exact test over decided trials, {correction}", style="dim"), soft_wrap=False)
    console.print(_headline(comparison), soft_wrap=False)


def _tool_text(t: ToolUse) -> str:
    change = t.change
    return (f"{t.label} ({'breaking' if change.breaking else 'not breaking'}: {change.summary()}; "
            f"calls failed {t.head_errors}/{t.head_calls} in head, {t.base_errors}/{t.base_calls} in base)")


def render_attribution(comparison: Comparison, console: Console) -> None:
    """For each regressed scenario: tool changed, agent changed, both or neither, with the likely
    causes; the re-judging's call when there is one; the tool changes between the runs."""
    a, r = comparison.attribution, comparison.rejudge
    regressed = [s for s in comparison.scenarios if s.change == "regressed"]
    for s in regressed:
        line = Text("✗ ", style="bold red")
        line.append(one_line(s.scenario_id, 80), style="bold")
        sa = a.scenario(s.scenario_id) if a is not None else None
        if sa is not None:
            line.append(f"  {sa.cause}", style="bold")
        console.print(line, soft_wrap=False)
        if sa is not None and sa.likely:
            console.print(Text("    likely cause: " + one_line("; ".join(_tool_text(t) for t in sa.likely), 600)),
                          soft_wrap=False)
        others = [t for t in sa.tools if not t.likely_cause] if sa is not None else []
        if others:
            text = one_line("; ".join(_tool_text(t) for t in others), 600)
            console.print(Text("    also changed: " + text, style="dim"), soft_wrap=False)
        if sa is not None and sa.cause in ("agent changed", "both") and a is not None:
            console.print(Text("    agent: " + one_line("; ".join(a.agent.differences), 300), style="dim"),
                          soft_wrap=False)
        noise = r.scenario(s.scenario_id) if r is not None else None
        if noise is not None:
            console.print(Text(f"    flaky judge or agent? {noise.call}: " + one_line(noise.explanation, 400)),
                          soft_wrap=False)
        for f in s.head_failures[:2]:
            why = one_line(f.rationale or f.error or "", 240)
            console.print(Text(f"    {one_line(f.name, 60)}: {why}", style="dim"), soft_wrap=False)
    if a is not None and a.tools.tools:
        table = Table(title="Tool changes between the runs", title_justify="left")
        table.add_column("tool", overflow="fold")
        table.add_column("change")
        table.add_column("breaking")
        table.add_column("what changed", overflow="fold")
        for t in a.tools.tools[:50]:
            table.add_row(Text(one_line(t.label, 80)), t.change, Text("yes", style="bold red") if t.breaking else "no",
                          Text(one_line(t.summary(), 300)))
        console.print(table, soft_wrap=False)


# --------------------------------------------------------------------------- metrics


def _alert_line(scenario_id: str, message: str, up: bool) -> Text:
    line = Text("⚠ " if up else "↓ ", style="yellow" if up else "cyan")
    line.append(one_line(scenario_id, 80), style="bold")
    line.append("  " + one_line(message, 240))
    return line


def _metric_cell(s: ScenarioMetrics, metric: MetricName) -> Text:
    stats = s.current.get(metric)
    if stats is None:
        return Text("—")
    cell = Text(format_metric(metric, stats.median))
    check = s.check(metric)
    if check is not None and check.history_median is not None:
        cell.append(f" ({format_metric(metric, check.history_median)})", style="dim")
    if check is not None and check.status == "alert":
        cell.stylize("bold yellow" if check.direction == "up" else "bold cyan")
    if any(b.metric == metric for b in s.breaches):
        cell.stylize("bold red")
    return cell


def _seen(s: ScenarioMetrics, metric: MetricName) -> bool:
    stats = s.current.get(metric)
    check = s.check(metric)
    return bool((stats is not None and stats.max) or (check is not None and any(check.history))
                or metric in s.limits)


def metrics_table(report: MetricsReport, console: Console) -> tuple[Table | Group, list[str]]:
    """The metrics per scenario fitted to ``console``, and the metrics left out."""
    # A metric nobody recorded (no pricing, no retries) would be a column of zeros.
    shown = [m for m in TABLE_METRICS if any(_seen(s, m) for s in report.scenarios)]
    columns = [Column("scenario"), Column("trials", justify="right"),
               *(Column(LABELS[m], justify="right", priority=1 + i) for i, m in enumerate(shown))]
    rows: list[list[Cell | None]] = [[Text(clean(s.scenario_id)), str(s.trials), *(_metric_cell(s, m) for m in shown)]
            for s in report.scenarios]
    return fitted_table(console, columns, rows, title="Metrics per scenario: median per trial (history median)")


def render_metrics(report: MetricsReport, console: Console, *, max_lines: int = 30) -> None:
    """Print a run's metrics: alerts and breached limits first, then the table."""
    head = Text("Metrics ", style="bold")
    head.append(one_line(report.run_id, 80), style="bold")
    head.append(" · agent " + one_line(_agent(report.agent), 80))
    head.append(f" · history {plural(len(report.history_run_ids), 'run')}", style="dim")
    console.print(head, soft_wrap=False)
    alerts = report.alerts
    breaches = report.breaches
    if alerts:
        console.print(Text(f"Alerts (robust z > {report.threshold:g} and change ≥ {report.min_change:.0%})",
                           style="bold yellow"), soft_wrap=False)
        for sid, check in alerts[:max_lines]:
            console.print(_alert_line(sid, check.message, check.direction == "up"), soft_wrap=False)
        if len(alerts) > max_lines:
            console.print(Text(f"  … and {len(alerts) - max_lines} more", style="dim"), soft_wrap=False)
    if breaches:
        console.print(Text("Limits exceeded (these gate)", style="bold red"), soft_wrap=False)
        for b in breaches[:max_lines]:
            line = Text("✗ ", style="red")
            line.append(one_line(f"{b.scenario_id}[{b.trial}]", 80), style="bold")
            line.append("  " + b.message)
            console.print(line, soft_wrap=False)
        if len(breaches) > max_lines:
            console.print(Text(f"  … and {len(breaches) - max_lines} more", style="dim"), soft_wrap=False)
    table, dropped = metrics_table(report, console)
    console.print(table, soft_wrap=False)
    note = dropped_note(dropped)
    if note is not None:
        console.print(note, soft_wrap=False)
    if report.insufficient_history:
        console.print(Text(f"insufficient history for some scenarios (fewer than {report.min_history} earlier "
                           "runs of this agent): no alerts for them", style="dim"), soft_wrap=False)
    if not alerts and not breaches:
        console.print(Text("no metric alerts", style="bold green"), soft_wrap=False)
