"""What the store holds, in the terminal: the runs, a run's traces, one trace.

Each renders the view ``--json`` prints (:mod:`costar.views`), so the two never disagree. Ids are
printed whole (a narrow terminal drops other columns instead, see :mod:`costar.report.fit`), and
everything that came from a trace is shown as text, never as markup, with control characters made
visible and its size bounded.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from rich.console import Console
from rich.text import Text
from rich.tree import Tree

from costar.report.fit import Cell, Column, dropped_note, fitted_table
from costar.safe_text import for_terminal
from costar.summary import fmt_cost, fmt_pct, fmt_seconds, fmt_tokens, one_line
from costar.views import ArtifactRow, RunList, SpanRow, TraceDetail, TraceList

_OUTCOME_STYLE = {"pass": "green", "fail": "red", "error": "magenta", "unscored": "yellow"}
ATTRIBUTE_CHARS = 400
"""How much of one attribute value ``traces show --attributes`` prints."""


def printable(text: str, limit: int | None = None) -> Text:
    """Untrusted multi-line text as Text: newlines and tabs kept, every other terminal control shown
    as a visible escape (``costar.safe_text``), at most ``limit`` characters with the rest counted."""
    return Text(for_terminal(text, limit))


def _id(text: str | None) -> str:
    """An id as printed: whole, on one line, terminal controls shown as escapes (an imported trace
    can carry any id)."""
    return for_terminal(text or "—", None, one_line=True)


def _when(ts: float | None) -> str:
    return "—" if ts is None else dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M")


def _commit(sha: str | None) -> str:
    """A git commit as git shortens it, keeping the ``-dirty`` mark of uncommitted changes."""
    if not sha:
        return "—"
    return sha[:10] + ("-dirty" if sha.endswith("-dirty") else "")


def render_runs(listing: RunList, console: Console) -> None:
    """``costar runs``: one line per run, whole run ids; narrow terminals drop the least useful columns."""
    if not listing.runs:
        console.print(f"no runs in {_id(listing.store)} yet; 'costar run' records one", markup=False,
                      highlight=False, soft_wrap=False)
        return
    columns = [Column("run id"), Column("created", priority=5), Column("origin", priority=3),
               Column("status"), Column("pass", justify="right"), Column("trials", justify="right"),
               Column("tokens", justify="right", priority=4), Column("cost", justify="right", priority=4),
               Column("commit", priority=6), Column("branch", priority=7), Column("tags", priority=8),
               Column("agent", priority=9)]
    rows: list[list[Cell | None]] = []
    for r in listing.runs:
        agent = r.agent.name + (f" {r.agent.version}" if r.agent.version else "")
        status = Text(r.status, style="red" if r.status in ("interrupted", "failed") else "")
        rate = Text(fmt_pct(r.pass_rate), style="green" if r.all_gates_passed else "red" if r.failed else "")
        rows.append([_id(r.run_id), _when(r.created_at), _id(r.origin), status, rate, f"{r.passed}/{r.trials}",
                     fmt_tokens(r.total_tokens), fmt_cost(r.cost_usd), _commit(r.agent.git_sha),
                     one_line(r.branch or "—", 60), one_line(", ".join(r.tags) or "—", 60), one_line(agent, 40)])
    table, dropped = fitted_table(console, columns, rows)
    console.print(table, soft_wrap=False)
    note = dropped_note(dropped)
    if note is not None:
        console.print(note, soft_wrap=False)
    for r in listing.runs:
        if r.error:
            line = Text("✗ ", style="red")
            line.append(_id(r.run_id), style="bold")
            line.append(f" {r.status}: ", style="red")
            line.append(one_line(r.error, 600))
            console.print(line, soft_wrap=False)


def render_trace_list(listing: TraceList, console: Console) -> None:
    """``costar traces list``: whole trace ids (``costar traces show`` takes them, or any unique prefix)."""
    if not listing.traces:
        console.print(f"run {_id(listing.run_id)} has no traces", markup=False, highlight=False, soft_wrap=False)
        return
    columns = [Column("trace id"), Column("scenario"), Column("trial", justify="right"),
               Column("agent", priority=2), Column("judged"), Column("spans", justify="right", priority=4),
               Column("tokens", justify="right", priority=3), Column("cost", justify="right", priority=5),
               Column("latency", justify="right", priority=3)]
    rows: list[list[Cell | None]] = []
    for t in listing.traces:
        rows.append([_id(t.trace_id), Text(_id(t.scenario_id)), str(t.trial),
                     Text(t.status, style="" if t.status == "ok" else "red"),
                     Text(t.outcome, style=_OUTCOME_STYLE.get(t.outcome, "")), str(t.spans),
                     fmt_tokens(t.totals.total_tokens), fmt_cost(t.totals.cost_usd), fmt_seconds(t.totals.latency_s)])
    table, dropped = fitted_table(console, columns, rows)
    console.print(table, soft_wrap=False)
    note = dropped_note(dropped)
    if note is not None:
        console.print(note, soft_wrap=False)


def _span_label(s: SpanRow) -> Text:
    # A span with no end (an agent that never ended it) is "open", as the web app says, not 0ms.
    duration = "open" if s.end_ns is None else fmt_seconds(s.duration_ms / 1000)
    label = Text.assemble((s.kind.value, "cyan"), " ", one_line(s.name, 120), (f"  {duration}", "dim"))
    facts = []
    if s.model:
        facts.append(one_line(s.model, 60))
    if s.input_tokens is not None or s.output_tokens is not None:
        facts.append(f"{s.input_tokens or 0}→{s.output_tokens or 0} tokens")
    if s.cost_usd:
        facts.append(fmt_cost(s.cost_usd))
    if facts:
        label.append("  " + " · ".join(facts), style="dim")
    if s.status == "ERROR":
        label.append(" ERROR", style="bold red")
        if s.status_message:
            label.append(" " + one_line(s.status_message, 300), style="red")
    return label


def _attribute_lines(attributes: dict[str, Any]) -> Text:
    out = Text()
    for i, (key, value) in enumerate(sorted(attributes.items())):
        rendered = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
        if i:
            out.append("\n")
        out.append(one_line(key, 120), style="dim")
        out.append(" = ")
        out.append_text(printable(rendered.replace("\r\n", "\n").replace("\n", " ⏎ "), ATTRIBUTE_CHARS))
    return out


def _artifact_block(a: ArtifactRow, max_lines: int) -> Text:
    head = Text(f"── {one_line(a.path, 200)}", style="bold")
    head.append(f"  {a.size:,} bytes · {a.origin} · sha256 {a.sha256}", style="dim")
    if a.binary:
        head.append("\n(binary)", style="dim")
    elif a.text is not None:
        lines = a.text.splitlines()
        shown = "\n".join(lines[:max_lines])
        head.append("\n")
        head.append_text(printable(shown))
        if a.text_truncated or len(lines) > max_lines:
            head.append(f"\n… (the first {min(len(lines), max_lines)} lines; --artifact-lines and "
                        "--artifact-chars show more)", style="dim")
    return head


def render_trace(detail: TraceDetail, console: Console, *, attributes: bool = False, artifact_lines: int = 20,
                 output_chars: int = 4000) -> None:
    """``costar traces show``: the span tree with model, tokens and cost per span (``attributes``:
    every attribute under its span), the output, the verdicts, and each artifact (text shown)."""
    head = Text.assemble(("trace ", "bold"), (_id(detail.trace_id), "bold"))
    head.append(f"  {_id(detail.scenario_id)}[{detail.trial}]  ")
    head.append(_id(detail.status), style="green" if detail.status == "ok" else "red")
    t = detail.totals
    head.append(f"\nrun {_id(detail.run_id)} · {fmt_tokens(t.total_tokens)} tokens ({t.input_tokens} in, "
                f"{t.output_tokens} out) · {fmt_cost(t.cost_usd)} · {fmt_seconds(t.latency_s)} · "
                f"{t.llm_calls} model calls · {t.tool_calls} tool calls", style="dim")
    console.print(head, soft_wrap=False)
    if detail.error:
        console.print(Text("agent error: ", style="bold red") + printable(detail.error, 4000), soft_wrap=False)
    root = Tree(Text("spans", style="bold"), guide_style="dim")
    nodes: dict[str, Tree] = {}
    for s in detail.spans:
        parent = nodes.get(s.parent_id or "", root)
        node = parent.add(_span_label(s))
        if attributes and s.attributes:
            node.add(_attribute_lines(s.attributes))
        nodes[s.span_id] = node
    console.print(root, soft_wrap=False)
    if detail.spans_total > len(detail.spans):
        console.print(f"… {detail.spans_total - len(detail.spans)} more spans (--max-spans shows more)", style="dim",
                      soft_wrap=False)
    console.print(Text("output: ", style="bold") + printable(detail.output or "", output_chars), soft_wrap=False)
    if detail.verdicts:
        console.print(Text("verdicts:", style="bold"), soft_wrap=False)
        for v in detail.verdicts:
            style = {"pass": "green", "fail": "red", "error": "magenta"}.get(v.outcome, "dim")
            line = Text(f"  {v.outcome:<6} ", style=style)
            line.append(_id(v.name), style="bold")
            text = v.error or v.rationale
            if text:
                line.append(": ")
                line.append_text(printable(one_line(text, 100_000), 2000))
            console.print(line, soft_wrap=False)
    if detail.artifacts:
        console.print(Text(f"artifacts ({len(detail.artifacts)}):", style="bold"), soft_wrap=False)
        for a in detail.artifacts:
            console.print(_artifact_block(a, artifact_lines), soft_wrap=False)
