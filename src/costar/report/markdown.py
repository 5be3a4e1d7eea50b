"""Markdown summaries for pull-request comments and CI job summaries: a run, a comparison, an MCP diff.

Everything that comes from a trace, a judge, a scenario file or an MCP server is untrusted and goes
through ``md_text`` / ``md_code``: HTML is escaped, Markdown syntax is backslash-escaped, line breaks
are flattened, ``@mentions``, ``#references`` and bare links are defused, and each piece is clipped.
The document as a whole is bounded (``MAX_CHARS``, under GitHub's 65,536-character comment limit),
listing at most ``MAX_ITEMS`` regressions, failures or tool changes and saying how many more there are.
The first line is a marker (``<!-- costar -->``) so CI updates its own comment instead of adding one.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from costar.summary import Rate, RunSummary, ScenarioSummary, fmt_cost, fmt_rate, fmt_tokens, headline, plural

if TYPE_CHECKING:
    from costar.attribution import Attribution, ScenarioAttribution, ToolUse
    from costar.compare import Comparison, ScenarioComparison
    from costar.mcp.diff import CatalogDiff, ToolChange
    from costar.rejudge import JudgeNoise, RejudgeReport

MARKER = "<!-- costar -->"
MAX_CHARS = 60_000
MAX_ITEMS = 20
MAX_RATIONALE = 300
MAX_NAME = 120
MAX_DIFF_CHARS = 4_000

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\u200b-\u200f\u202a-\u202e\u2066-\u2069]")
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|~>])")
_MENTION = re.compile(r"([@#])(?=[A-Za-z0-9_])")
_SCHEME = re.compile(r"(?i)\b(https?|ftp|mailto|javascript|data|file):")
_WWW = re.compile(r"(?i)\bwww\.")
_ZWSP = "\u200b"


def md_text(text: object, limit: int = MAX_RATIONALE) -> str:
    """Untrusted text as inert Markdown: one line, clipped, nothing it contains is markup."""
    flat = " ".join(_CONTROL.sub("", str(text)).split())
    if len(flat) > limit:
        flat = flat[: max(0, limit - 1)] + "…"
    flat = flat.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    flat = _MD_SPECIAL.sub(r"\\\1", flat)
    flat = _MENTION.sub(lambda m: m.group(1) + _ZWSP, flat)  # no @user pings, no #123 links
    flat = _SCHEME.sub(lambda m: m.group(1) + _ZWSP + ":", flat)  # no autolinked URLs
    return _WWW.sub("www" + _ZWSP + ".", flat)


def md_code(text: object, limit: int = MAX_NAME) -> str:
    """An untrusted identifier as an inline code span (safe in table cells too)."""
    flat = " ".join(_CONTROL.sub("", str(text)).split())
    if len(flat) > limit:
        flat = flat[: max(0, limit - 1)] + "…"
    flat = flat.replace("|", "¦")  # a pipe would end a table cell even inside a code span
    fence = "`" * (max((len(r) for r in re.findall(r"`+", flat)), default=0) + 1)
    pad = " " if flat.startswith("`") or flat.endswith("`") or not flat else ""
    return f"{fence}{pad}{flat}{pad}{fence}"


def md_block(text: str, language: str = "", limit: int = MAX_DIFF_CHARS) -> str:
    """Untrusted multi-line text as a fenced code block no line of it can close."""
    body = _CONTROL.sub("", text)
    if len(body) > limit:
        body = body[:limit] + f"\n… {len(text) - limit:,} more characters"
    fence = "`" * max(3, max((len(r) for r in re.findall(r"`+", body)), default=0) + 1)
    return f"{fence}{language}\n{body}\n{fence}"


def _bounded(lines: list[str]) -> str:
    text = "\n".join(lines).rstrip() + "\n"
    if len(text) <= MAX_CHARS:
        return text
    cut = text[:MAX_CHARS].rsplit("\n", 1)[0]
    return cut + f"\n\n… cut at {MAX_CHARS:,} characters; the HTML report has everything.\n"


def _more(shown: int, total: int, what: str) -> list[str]:
    return [f"- … and {total - shown} more {what}"] if total > shown else []


def _agent(summary_agent: object) -> str:
    name = getattr(summary_agent, "name", "agent")
    version = getattr(summary_agent, "version", None)
    sha = getattr(summary_agent, "git_sha", None)
    out = md_code(name) + (f" {md_code(version)}" if version else "")
    return out + (f" @ {md_code(sha[:10])}" if sha else "")


# --------------------------------------------------------------------------- a run


def _scenario_row(s: ScenarioSummary) -> str:
    icon = {"pass": "✅", "fail": "❌", "error": "⚠️", "incomplete": "⏳"}.get(s.status, "")
    hat = f"{s.pass_hat_n:.2f}" if s.pass_hat_n is not None else "—"
    tokens = fmt_tokens(s.usage.mean_tokens)
    return (f"| {icon} {md_code(s.scenario_id)} | {s.passed}/{s.decided} | {fmt_rate(s.rate)} | {hat} | "
            f"{tokens} | {fmt_cost(s.usage.mean_cost_usd)} |")


def run_markdown(summary: RunSummary, *, title: str = "coSTAR run") -> str:
    """A run: pass rates with intervals per scenario, and its failures with their rationales."""
    t = summary.totals
    ok = summary.all_gates_passed
    lines = [MARKER, f"### {title} {md_code(summary.run_id or '')} · agent {_agent(summary.agent)}", "",
             f"**{'✅ all gates passed' if ok else '❌ gates failed'}** · {md_text(headline(summary), 400)} · "
             f"pass rate {fmt_rate(summary.trial_rate)}", "",
             "| scenario | passed | pass rate [95% CI] | pass^k | tokens/trial | cost/trial |",
             "|---|---:|---:|---:|---:|---:|"]
    shown = summary.scenarios[:MAX_ITEMS * 5]
    lines += [_scenario_row(s) for s in shown]
    if len(summary.scenarios) > len(shown):
        lines.append(f"| … {len(summary.scenarios) - len(shown)} more | | | | | |")
    failures = [(tr.label, f) for s in summary.scenarios for tr in s.trial_results for f in tr.failures]
    if failures:
        lines += ["", f"<details><summary>Failures ({len(failures)})</summary>", ""]
        lines += [f"- {md_code(label)} · {md_code(f.name)}: {md_text(f.rationale or f.error or '')}"
                  for label, f in failures[:MAX_ITEMS]]
        lines += _more(min(len(failures), MAX_ITEMS), len(failures), "failures")
        lines += ["", "</details>"]
    if t.judge_errors:
        lines += ["", f"⚠️ {plural(t.judge_errors, 'judge error')}: those trials are left out of the pass rates."]
    lines += ["", f"<sub>{t.trials} trials · {fmt_tokens(t.usage.total_tokens)} tokens · "
              f"{fmt_cost(t.usage.cost_usd)} agent + {fmt_cost(t.judge_cost_usd)} judges · "
              "Wilson 95% intervals</sub>"]
    return _bounded(lines)


# --------------------------------------------------------------------------- a comparison

_CHANGE_ICON = {"regressed": "❌", "improved": "✅", "unchanged": "", "inconclusive": "❔", "added": "➕",
                "removed": "➖"}


def _rate(rate: Rate | None) -> str:
    if rate is None:
        return "—"
    return f"{rate.successes}/{rate.n} {fmt_rate(rate)}"


def _p(s: ScenarioComparison) -> str:
    if s.rates is None:
        return "—"
    p = s.rates.p_adjusted
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def _tool_line(t: ToolUse) -> str:
    change = t.change
    kind = "breaking" if change.breaking else "not breaking"
    calls = ""
    if t.head_calls or t.base_calls:
        calls = (f"; its calls failed {t.head_errors}/{t.head_calls} in head, "
                 f"{t.base_errors}/{t.base_calls} in base")
    return f"{md_code(t.label)} ({kind}: {md_text(change.summary())}{calls})"


def _attribution_lines(a: ScenarioAttribution, agent_differences: Sequence[str]) -> list[str]:
    out = [f"- Cause: **{a.cause}**"]
    likely = a.likely
    if likely:
        out.append("- Likely cause: " + "; ".join(_tool_line(t) for t in likely))
    others = [t for t in a.tools if not t.likely_cause]
    if others:
        out.append("- Also changed, not the likely cause: " + "; ".join(_tool_line(t) for t in others))
    if a.cause in ("agent changed", "both") and agent_differences:
        out.append("- Agent: " + md_text("; ".join(agent_differences)))
    if a.cause == "neither":
        out.append("- No tool it used changed and the agent is the same: agent or model variance, or a change "
                   "outside both (data, services, the model behind the API).")
    return out


def _noise_line(n: JudgeNoise) -> str:
    share = "" if n.judge_share.value is None else f", judge's share {n.judge_share.value:.0%}"
    return f"- Flaky judge or agent? **{n.call}** — {md_text(n.explanation, 400)}{share} (k={n.k})"


def _diff_table(diff: CatalogDiff, limit: int = MAX_ITEMS) -> list[str]:
    lines = ["| tool | change | breaking | what changed |", "|---|---|---|---|"]
    for t in diff.tools[:limit]:
        lines.append(f"| {md_code(t.label)} | {t.change} | {'❗ yes' if t.breaking else 'no'} | "
                     f"{md_text(t.summary())} |")
    if len(diff.tools) > limit:
        lines.append(f"| … {len(diff.tools) - limit} more | | | |")
    return lines


def _schema_diffs(tools: Iterable[ToolChange], limit: int = 5) -> list[str]:
    out = []
    for t in list(tools)[:limit]:
        if t.schema_diff:
            out += ["", f"<details><summary>{md_text(t.label, MAX_NAME)}: definition diff</summary>", "",
                    md_block(t.schema_diff, "diff"), "", "</details>"]
    return out


def comparison_markdown(comparison: Comparison) -> str:
    """BASE → HEAD: the verdict, pass rates with intervals, regressions with rationales and their
    likely causes (changed tools, changed agent), and the tool changes between the runs."""
    c = comparison
    attribution: Attribution | None = c.attribution
    rejudge: RejudgeReport | None = c.rejudge
    counts = c.counts()
    parts = [f"{counts[k]} {k}" for k in ("regressed", "improved", "unchanged", "inconclusive", "added", "removed")
             if counts.get(k)]
    verdict = ("❌ **Significant regression**" if c.has_significant_regression
               else "✅ **No significant regression**")
    lines = [MARKER, f"### coSTAR · {md_code(c.base_run_id or 'base')} → {md_code(c.head_run_id or 'head')}", "",
             f"{verdict} (Fisher's exact test, alpha {c.alpha:g}, "
             f"{'Holm-adjusted' if c.correction == 'holm' else 'unadjusted'}): {', '.join(parts) or 'no scenarios'}",
             "", f"Overall {_rate(c.overall.base)} → {_rate(c.overall.head)} · agent {_agent(c.base_agent)} → "
             f"{_agent(c.head_agent)}"]
    if attribution is not None and attribution.agent.changed:
        lines.append(f" (changed: {md_text('; '.join(attribution.agent.differences))})")
    lines += ["", "| scenario | base [95% CI] | head [95% CI] | p (adj.) | change |", "|---|---:|---:|---:|---|"]
    listed = [s for s in c.scenarios if s.change != "unchanged"] + [s for s in c.scenarios if s.change == "unchanged"]
    for s in listed[:MAX_ITEMS * 5]:
        lines.append(f"| {md_code(s.scenario_id)} | {_rate(s.base_rate)} | {_rate(s.head_rate)} | {_p(s)} | "
                     f"{_CHANGE_ICON.get(s.change, '')} {s.change} |")
    if len(listed) > MAX_ITEMS * 5:
        lines.append(f"| … {len(listed) - MAX_ITEMS * 5} more | | | | |")
    regressed = [s for s in c.scenarios if s.change == "regressed"]
    if regressed:
        lines += ["", "#### Regressions"]
        for s in regressed[:MAX_ITEMS]:
            lines += ["", f"**{md_code(s.scenario_id)}** {_rate(s.base_rate)} → {_rate(s.head_rate)}"]
            a = attribution.scenario(s.scenario_id) if attribution is not None else None
            if a is not None and attribution is not None:
                lines += _attribution_lines(a, attribution.agent.differences)
            noise = rejudge.scenario(s.scenario_id) if rejudge is not None else None
            if noise is not None:
                lines.append(_noise_line(noise))
            for f in s.head_failures[:3]:
                lines.append(f"- Failed {md_code(f.name)}: {md_text(f.rationale or f.error or '')}")
        lines += _more(min(len(regressed), MAX_ITEMS), len(regressed), "regressed scenarios")
    if attribution is not None and attribution.tools.tools:
        d = attribution.tools
        breaking = sum(t.breaking for t in d.tools)
        lines += ["", f"#### Tool changes between the runs ({plural(len(d.tools), 'tool')}, {breaking} breaking)", ""]
        lines += _diff_table(d)
        lines += _schema_diffs(t for t in d.tools if t.breaking)
    warnings = [*c.warnings, *(attribution.tools.warnings if attribution is not None else [])]
    if rejudge is not None:
        warnings += [w for n in rejudge.scenarios for w in n.warnings]
    if warnings:
        lines += ["", "<details><summary>Warnings</summary>", ""]
        lines += [f"- {md_text(w, 400)}" for w in warnings[:MAX_ITEMS]]
        lines += ["", "</details>"]
    return _bounded(lines)


# --------------------------------------------------------------------------- an MCP diff


def diff_markdown(diffs: Sequence[CatalogDiff], notes: Sequence[str] = ()) -> str:
    """One or more MCP diffs (each configured server against its previous snapshot)."""
    lines = [MARKER, "### coSTAR · MCP tool changes", ""]
    for n in notes:
        lines.append(f"- {md_text(n, 400)}")
    for d in diffs:
        versions = "; ".join(f"{md_code(s)} {md_code(b or '—')} → {md_code(h or '—')}"
                             for s, b, h in d.server_versions)
        title = f"{md_code(d.base.label or d.base.ref)} {md_code(d.base.ref)} → {md_code(d.head.ref)}"
        lines += ["", f"#### {title}" + (f" · {versions}" if versions else "")]
        if not d.changed:
            lines += ["", f"No change ({plural(d.unchanged_tools, 'tool')} unchanged)."]
            continue
        breaking = sum(c.breaking for c in d.tools) + sum(c.breaking for c in [*d.prompts, *d.resources])
        lines += ["", f"{'❗ **' + plural(breaking, 'breaking change') + '**' if breaking else 'No breaking change'}"
                  f" · {plural(len(d.tools), 'tool')} changed · {d.unchanged_tools} unchanged", ""]
        if d.tools:
            lines += _diff_table(d)
        items = [*d.prompts, *d.resources]
        if items:
            lines += ["", "| prompt or resource | change | breaking | what changed |", "|---|---|---|---|"]
            for i in items[:MAX_ITEMS]:
                what = "; ".join(c.detail for c in i.changes) or i.change
                lines.append(f"| {i.kind} {md_code(i.key)} | {i.change} | {'❗ yes' if i.breaking else 'no'} | "
                             f"{md_text(what)} |")
        lines += _schema_diffs(d.tools)
        for w in d.warnings[:MAX_ITEMS]:
            lines.append(f"- ⚠️ {md_text(w, 400)}")
    return _bounded(lines)

