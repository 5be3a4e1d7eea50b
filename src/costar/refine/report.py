"""What the human reviewer reads: branches, diffs, before/after rates with intervals, cost, time."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from costar._util.units import format_usd
from costar.stats import wilson_interval

if TYPE_CHECKING:
    from costar.refine.loop import Attempt, RefineReport


def _rate(c: int, n: int) -> str:
    if not n:
        return "—"
    lo, hi = wilson_interval(c, n)
    return f"{c}/{n} ({100 * c / n:.0f}% [{100 * lo:.0f}–{100 * hi:.0f}%])"


def _table(report: RefineReport, attempt: Attempt) -> list[str]:
    lines = ["| scenario | split | before | after | change |", "|---|---|---|---|---|"]
    for sc in sorted(set(attempt.before) | set(attempt.after)):
        before, after = attempt.before.get(sc, (0, 0)), attempt.after.get(sc)
        lines.append(f"| {sc} | {report.splits.get(sc, '?')} | {_rate(*before)} | "
                     f"{_rate(*after) if after else 'not run'} | {attempt.decisions.get(sc, '—')} |")
    return lines


def _fence(text: str) -> str:
    """A code fence longer than any run of backticks in ``text``, so a patch cannot close it."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    return "`" * max(3, longest + 1)


def render_markdown(report: RefineReport) -> str:
    out = [f"# coSTAR refine session {report.session}", "",
           f"- project: `{report.project_dir}` at `{report.base_commit[:12]}`",
           f"- baseline run: `{report.baseline_run_id}`",
           f"- stopped: {report.stopped_because}",
           f"- cost {format_usd(report.cost_usd)} · time {report.seconds:.0f} s",
           f"- attempts: {len(report.attempts)}, accepted: {len(report.accepted)} "
           f"(one-sided Boschloo test, alpha {report.alpha:g})", ""]
    out += [f"**Warning:** {w}" for w in report.warnings] + ([""] if report.warnings else [])
    if report.best:
        out += [f"**Recommended for review:** branch `{report.best}`. Nothing was merged; to take it:",
                "", "```", f"git diff HEAD {report.best}", f"git merge {report.best}", "```", ""]
    else:
        out += ["No attempt was accepted; the rejected branches are kept for inspection.", ""]
    for a in report.attempts:
        out += [f"## Attempt {a.index} — {a.status.upper()} (from {a.parent})", "",
                f"- branch `{a.branch}`" + (f" at `{a.commit[:12]}`" if a.commit else " (no commit)"),
                f"- worktree `{a.worktree}`",
                f"- reason: {a.reason}",
                f"- assistant: {a.assistant_message}",
                f"- cost {format_usd(a.cost_usd)} · time {a.seconds:.0f} s · runs {', '.join(a.run_ids) or '—'}", ""]
        if a.diff_stat:
            out += ["```", a.diff_stat.rstrip(), "```", ""]
        if a.diff:
            fence = _fence(a.diff)
            out += [f"{fence}diff", a.diff.rstrip(), fence, ""]
        if a.after:
            out += [*_table(report, a), ""]
    return "\n".join(out)
