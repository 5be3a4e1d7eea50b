"""A run as one self-contained HTML page: summary, then every trial's verdicts and span tree.

Two properties matter more than looks:

* **Everything from a trace or a judge is untrusted** (model output can contain markup). The page
  is assembled with :func:`el`, which escapes every child and attribute value that is not already
  :class:`Safe`; only this module's literals are ever marked safe. A Content-Security-Policy that
  allows nothing but the page's own inline style and script (by hash) backs that up: even a
  mistake cannot load or run anything.
* **The page is bounded** whatever the run: long values are clipped (their full size is noted),
  spans per trace, messages per conversation and nesting depth are capped, and span bodies stop
  once a per-trace and a per-page character budget is spent. Traces are consumed as a stream and
  rendered as they arrive, so a large run is never held in memory at once.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import html
import json
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from costar.store.base import Store
from costar.summary import (
    JudgeSummary,
    RunSummary,
    ScenarioSummary,
    TrialSummary,
    fmt_cost,
    fmt_curves,
    fmt_pct,
    fmt_rate,
    fmt_seconds,
    fmt_tokens,
    headline,
    latest_per_name,
    plural,
    run_state_note,
)
from costar.trace.model import Span, Trace
from costar.verdict import Verdict
from costar.views import artifact_text


@dataclass(frozen=True)
class HtmlLimits:
    max_spans: int = 2_000  # rendered per trace
    max_depth: int = 40  # nesting shown; deeper spans are laid out flat, labelled with their depth
    max_value_chars: int = 4_000  # per attribute value, message part, tool argument or result
    max_text_chars: int = 20_000  # trace input / output / error, verdict rationale
    max_messages: int = 30  # per message list (the most recent are kept)
    max_parts: int = 20  # per message
    max_events: int = 50  # per span
    max_artifacts: int = 500  # listed per trace
    max_artifact_previews: int = 20  # text artifacts shown (collapsed) per trace
    max_artifact_chars: int = 4_000  # of each text artifact shown
    max_trace_chars: int = 3_000_000  # span bodies per trace; beyond it, span headers only
    max_page_chars: int = 40_000_000  # span trees over the whole page; beyond it, trees are omitted


# --------------------------------------------------------------------------- escaping builder


_VOID = frozenset({"br", "hr", "img", "input", "meta", "wbr"})


class Safe(str):
    """Markup that is already escaped (built by :func:`el` or :func:`esc`)."""

    __slots__ = ()


# C0 controls (but tab, newline, carriage return), DEL and lone surrogates have no business in a
# page: they render as garbage or break UTF-8 encoding of the file.
_UNPRINTABLE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")


def esc(value: object) -> Safe:
    if isinstance(value, Safe):
        return value
    return Safe(html.escape(_UNPRINTABLE.sub("\ufffd", str(value)), quote=True))


def el(tag: str, *children: object, **attrs: object) -> Safe:
    """``<tag attrs>children</tag>``; ``class_`` stands for ``class``, None/False attributes are left out."""
    parts = [f"<{tag}"]
    for key, value in attrs.items():
        if value is None or value is False:
            continue
        name = key.rstrip("_").replace("_", "-")
        parts.append(f" {name}" if value is True else f' {name}="{esc(value)}"')
    parts.append(">")
    if tag in _VOID:
        return Safe("".join(parts))
    parts.extend(esc(c) for c in children if c is not None)
    parts.append(f"</{tag}>")
    return Safe("".join(parts))


def join(items: Iterable[object]) -> Safe:
    """Concatenate escaped items; None stands for "nothing here" and is left out."""
    return Safe("".join(esc(i) for i in items if i is not None))


def _slug(text: str, allowed: Sequence[str]) -> str:
    """A CSS class fragment from untrusted text, restricted to a known set."""
    low = str(text).lower()
    return low if low in allowed else "other"


# --------------------------------------------------------------------------- values


class CharBudget:
    def __init__(self, chars: int) -> None:
        self.remaining = chars

    def spend(self, markup: str) -> None:
        self.remaining -= len(markup)

    @property
    def spent(self) -> bool:
        return self.remaining <= 0


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, indent=2, ensure_ascii=False, default=str)
    except (TypeError, ValueError):  # e.g. a circular structure built in Python
        return repr(value)


def value_block(value: Any, limit: int, class_: str = "val") -> Safe:
    """A ``<pre>`` with the value (JSON for structures), clipped to ``limit`` characters."""
    text = _as_text(value)
    if len(text) <= limit:
        return el("pre", text, class_=class_)
    note = el("span", f"truncated: showing {limit:,} of {len(text):,} characters", class_="trunc")
    return join([el("pre", text[:limit] + "…", class_=class_), note])


def _ts(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    return dt.datetime.fromtimestamp(seconds, tz=dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


_STATUSES = ("pass", "fail", "error", "incomplete", "unscored", "metric", "warn", "ok", "timeout")


def _badge(status: str) -> Safe:
    return el("span", status, class_=f"badge st-{_slug(status, _STATUSES)}")


# --------------------------------------------------------------------------- messages and spans

_ROLES = ("system", "user", "assistant", "tool")
# Attributes rendered in their own blocks rather than in the generic attribute table.
_SHOWN_APART = ("gen_ai.system_instructions", "gen_ai.input.messages", "gen_ai.output.messages",
                "gen_ai.tool.call.arguments", "gen_ai.tool.call.result", "input.value", "output.value")


def _part(part: Any, limits: HtmlLimits) -> Safe:
    if not isinstance(part, dict):
        return value_block(part, limits.max_value_chars)
    kind = str(part.get("type", ""))
    if kind == "text":
        return value_block(part.get("content", ""), limits.max_value_chars, "text")
    if kind == "tool_call":
        label = f"→ tool call {part.get('name', '?')}" + (f" ({part['id']})" if part.get("id") else "")
        return join([el("div", label, class_="part-label"),
                     value_block(part.get("arguments"), limits.max_value_chars)])
    if kind == "tool_call_response":
        label = "← tool result" + (f" ({part['id']})" if part.get("id") else "")
        return join([el("div", label, class_="part-label"),
                     value_block(part.get("response"), limits.max_value_chars)])
    if kind == "reasoning":
        return join([el("div", "reasoning", class_="part-label"),
                     value_block(part.get("content", ""), limits.max_value_chars, "text")])
    return join([el("div", kind or "part", class_="part-label"), value_block(part, limits.max_value_chars)])


def _message(msg: Any, limits: HtmlLimits) -> Safe:
    if not isinstance(msg, dict):
        return el("div", value_block(msg, limits.max_value_chars), class_="msg")
    role = str(msg.get("role", "?"))
    parts = msg.get("parts")
    if parts is None and "content" in msg:  # a plain chat-completions message, not the parts shape
        parts = [{"type": "text", "content": msg["content"]}]
    if not isinstance(parts, list):
        parts = [] if parts is None else [parts]
    body = [_part(p, limits) for p in parts[: limits.max_parts]]
    if len(parts) > limits.max_parts:
        body.append(el("div", f"{len(parts) - limits.max_parts} more parts not shown", class_="trunc"))
    if msg.get("finish_reason"):
        body.append(el("div", f"finish reason: {msg['finish_reason']}", class_="part-label"))
    return el("div", el("div", role, class_="role"), *body, class_=f"msg role-{_slug(role, _ROLES)}")


def conversation(messages: Any, limits: HtmlLimits) -> Safe:
    """Messages in the OTel GenAI parts shape as a chat; only the most recent ``max_messages``."""
    if not isinstance(messages, list):
        messages = [messages]
    # Earlier turns are repeated in earlier LLM spans' inputs and outputs, so the tail is what is new.
    hidden = max(0, len(messages) - limits.max_messages)
    items = [_message(m, limits) for m in messages[hidden:]]
    if hidden:
        items.insert(0, el("div", f"{hidden} earlier messages not shown", class_="trunc"))
    return el("div", *items, class_="conv")


def attribute_table(attrs: dict[str, Any], limits: HtmlLimits, skip: Sequence[str] = ()) -> Safe | None:
    rows = [el("tr", el("td", key[:200]), el("td", value_block(value, limits.max_value_chars)))
            for key, value in attrs.items() if key not in skip]
    return el("table", *rows, class_="kv") if rows else None


def _events(span: Span, limits: HtmlLimits) -> Safe | None:
    if not span.events:
        return None
    items = []
    for ev in span.events[: limits.max_events]:
        offset = fmt_seconds(max(0, ev.time_ns - span.start_ns) / 1e9)
        items.append(el("li", el("b", ev.name), f" +{offset}", attribute_table(ev.attributes, limits)))
    if len(span.events) > limits.max_events:
        items.append(el("li", f"{len(span.events) - limits.max_events} more events not shown", class_="trunc"))
    return join([el("h4", "events"), el("ul", *items)])


def span_body(span: Span, limits: HtmlLimits) -> Safe:
    a = span.attributes
    blocks: list[Safe | None] = []
    for key, label in (("gen_ai.system_instructions", "system instructions"),
                       ("gen_ai.input.messages", "input messages"),
                       ("gen_ai.output.messages", "output messages")):
        if a.get(key) is not None:
            value = a[key]
            if key == "gen_ai.system_instructions":
                value = [{"role": "system", "parts": value if isinstance(value, list) else [value]}]
            blocks += [el("h4", label), conversation(value, limits)]
    for key, label in (("gen_ai.tool.call.arguments", "tool arguments"),
                       ("gen_ai.tool.call.result", "tool result"),
                       ("input.value", "input"), ("output.value", "output")):
        if a.get(key) is not None:
            blocks += [el("h4", label), value_block(a[key], limits.max_value_chars)]
    table = attribute_table(a, limits, skip=_SHOWN_APART)
    if table is not None:
        blocks += [el("h4", "attributes"), table]
    blocks.append(_events(span, limits))
    return el("div", *blocks, class_="span-body")


_KINDS = ("agent", "llm", "tool", "retriever", "chain", "embedding", "reranker", "guardrail", "evaluator",
          "unknown")


def _span_summary(span: Span, depth: int, flattened: bool, origin_ns: int) -> Safe:
    kind = str(span.kind)
    bits: list[object] = [el("span", kind, class_=f"kind kind-{_slug(kind, _KINDS)}"), " ",
                          el("span", span.name[:300], class_="name"),
                          el("span", f"{fmt_seconds(span.duration_s)} @ +"
                                     f"{fmt_seconds(max(0, span.start_ns - origin_ns) / 1e9)}", class_="dur")]
    if span.is_error:
        bits.append(el("span", f"ERROR {span.status.message or ''}"[:300], class_="span-status"))
    if flattened:
        bits.append(el("span", f" (depth {depth})", class_="muted"))
    return el("summary", *bits)


class _SpanTree:
    """Depth-first, iterative (no recursion limit), each span at most once, cycles tolerated."""

    def __init__(self, trace: Trace, anchor: str, limits: HtmlLimits, page: CharBudget) -> None:
        self.trace = trace
        self.anchor = anchor
        self.limits = limits
        self.page = page
        self.budget = CharBudget(limits.max_trace_chars)
        spans = trace.spans
        ids = {s.span_id for s in spans}
        self.children: dict[str, list[int]] = defaultdict(list)
        self.roots: list[int] = []
        for i, s in enumerate(spans):
            if s.parent_id is None or s.parent_id not in ids or s.parent_id == s.span_id:
                self.roots.append(i)
            else:
                self.children[s.parent_id].append(i)
        self.origin_ns = min((s.start_ns for s in spans), default=0)
        self.anchors: dict[str, str] = {}

    def _kids(self, span: Span) -> list[int]:
        kids = self.children.get(span.span_id, [])
        return sorted(kids, key=lambda i: self.trace.spans[i].start_ns)

    def _open(self, i: int, depth: int) -> str:
        span = self.trace.spans[i]
        anchor = f"{self.anchor}-s{i}"
        self.anchors.setdefault(span.span_id, anchor)
        flattened = depth > self.limits.max_depth
        head = _span_summary(span, depth, flattened, self.origin_ns)
        if self.budget.spent or self.page.spent:
            which = "this trace's" if self.budget.spent else "the page's"
            body: Safe = el("div", f"details not shown: {which} size budget is spent", class_="note")
        else:
            body = span_body(span, self.limits)
            self.budget.spend(body)
            self.page.spend(body)
        classes = "span err" if span.is_error else "span"
        return f'<details class="{classes}" id="{esc(anchor)}"{" open" if depth == 0 else ""}>{head}{body}'

    def render(self) -> Safe:
        spans = self.trace.spans
        out: list[str] = []
        seen: set[int] = set()
        # None closes the innermost open <details>.
        stack: list[tuple[int, int] | None] = [(i, 0) for i in reversed(self.roots)]
        next_orphan = 0
        while len(seen) < min(len(spans), self.limits.max_spans):
            if not stack:
                # Spans whose parents form a cycle are reachable from no root: show them too.
                while next_orphan in seen:
                    next_orphan += 1
                stack.append((next_orphan, 0))
            item = stack.pop()
            if item is None:
                out.append("</details>")
                continue
            i, depth = item
            if i in seen:
                continue
            seen.add(i)
            out.append(self._open(i, depth))
            kids = [(k, depth + 1) for k in reversed(self._kids(spans[i])) if k not in seen]
            if depth < self.limits.max_depth:
                stack.append(None)
            else:
                # Past the nesting cap, children become siblings so the markup depth stays bounded.
                out.append("</details>")
            stack.extend(kids)
        out.extend("</details>" for item in stack if item is None)
        if len(spans) > len(seen):
            out.append(str(el("p", f"{len(spans) - len(seen):,} more spans not shown (the page shows at most "
                                   f"{self.limits.max_spans:,} per trace)", class_="note")))
        return Safe("".join(out))


# --------------------------------------------------------------------------- trials


def _verdict_order(v: Verdict) -> int:
    return {"fail": 0, "error": 1, "pass": 2, "metric": 3}[v.outcome]


def _evidence(v: Verdict, anchors: dict[str, str]) -> Safe | None:
    if not v.evidence:
        return None
    links = [el("a", sid[:16], href=f"#{anchors[sid]}") if sid in anchors else el("code", sid[:16])
             for sid in v.evidence[:20]]
    return el("div", "evidence: ", *[join([link, " "]) for link in links], class_="muted")


def verdict_table(verdicts: Sequence[Verdict], anchors: dict[str, str], limits: HtmlLimits) -> Safe:
    if not verdicts:
        return el("p", "no verdicts: this trace has not been judged", class_="note")
    head = el("tr", *[el("th", h) for h in ("judge", "outcome", "role", "value", "rationale", "confidence",
                                            "source", "fingerprint")])
    rows = []
    for v in sorted(verdicts, key=_verdict_order):
        role = "gate" if v.gating and v.outcome != "metric" else ("metric" if v.outcome == "metric"
                                                                  else "diagnostic")
        outcome = v.outcome if v.gating or v.outcome != "fail" else "warn"
        text = v.rationale
        if v.error and v.error not in text:
            text = f"{v.error}\n\n{text}".strip()
        rows.append(el(
            "tr", el("td", v.name), el("td", _badge(outcome)), el("td", role),
            el("td", "" if v.value is None else str(v.value)[:200], class_="mono"),
            el("td", value_block(text, limits.max_text_chars, "text") if text else "", _evidence(v, anchors)),
            el("td", "—" if v.confidence is None else f"{v.confidence:.2f}", class_="num"),
            el("td", v.source.value + (f" · {v.source_id}" if v.source_id else "")),
            el("td", v.fingerprint or "—", class_="mono")))
    return el("table", head, *rows, class_="verdicts")


def artifact_previews(trace: Trace, store: Store | None, limits: HtmlLimits) -> Safe | None:
    """The text of the trace's text artifacts (escaped, each collapsed, each bounded), agent-made
    files first; binary files and missing blobs are left out."""
    if store is None or limits.max_artifact_previews <= 0:
        return None
    shown: list[Safe] = []
    for a in sorted(trace.artifacts, key=lambda a: a.origin != "agent"):
        if len(shown) >= limits.max_artifact_previews:
            break
        text, truncated, binary = artifact_text(store, a, limits.max_artifact_chars)
        if text is None or binary:
            continue
        note = (el("span", f"truncated: showing the first {len(text):,} characters of {a.size:,} bytes",
                   class_="trunc") if truncated else None)
        shown.append(el("details", el("summary", el("span", a.path, class_="mono"),
                                      el("span", f" · {a.size:,} B · {a.origin}", class_="muted")),
                        el("pre", text, class_="text"), note, class_="artifact"))
    if not shown:
        return None
    return join([el("h4", "artifact contents"), *shown])


def artifact_table(trace: Trace, limits: HtmlLimits, store: Store | None = None) -> Safe | None:
    if not trace.artifacts:
        return None
    rows = [el("tr", el("td", a.path, class_="mono"), el("td", f"{a.size:,} B", class_="num"),
               el("td", a.origin + (" · secrets redacted" if a.redacted else "")
                  + (" · holds a secret" if a.holds_secret else "")),
               el("td", a.media_type or "—"), el("td", a.sha256[:12], class_="mono"))
            for a in trace.artifacts[: limits.max_artifacts]]
    head = el("tr", *[el("th", h) for h in ("path", "size", "origin", "type", "sha256")])
    more = len(trace.artifacts) - limits.max_artifacts
    note = el("p", f"{more} more artifacts not shown", class_="note") if more > 0 else None
    return join([el("h4", f"artifacts ({len(trace.artifacts)})"), el("table", head, *rows), note,
                 artifact_previews(trace, store, limits)])


def trace_details(trace: Trace, verdicts: Sequence[Verdict], anchor: str, limits: HtmlLimits,
                  page: CharBudget, store: Store | None = None) -> Safe:
    """Everything below a trial's summary line: verdicts, agent input/output, artifacts, spans."""
    tree = _SpanTree(trace, anchor, limits, page)
    if page.spent:
        spans_html: Safe = el("p", "span tree not shown: the page's size budget is spent; "
                                   "open this trace with 'costar show'", class_="note")
    else:
        spans_html = tree.render()
    t = trace.totals
    blocks: list[Safe | None] = [
        el("h4", "verdicts"), verdict_table(verdicts, tree.anchors, limits),
        el("p", f"trace {trace.trace_id} · agent {trace.status} · {fmt_tokens(t.total_tokens)} tokens "
                f"({t.input_tokens:,} in / {t.output_tokens:,} out) · {fmt_cost(t.cost_usd)} · "
                f"{fmt_seconds(t.latency_s)} · {plural(t.llm_calls, 'LLM call')} · "
                f"{plural(t.tool_calls, 'tool call')} · {plural(t.error_spans, 'error span')}", class_="meta"),
    ]
    if trace.error:
        blocks += [el("h4", "agent error"), value_block(trace.error, limits.max_text_chars, "text")]
    if trace.input is not None:
        blocks += [el("h4", "input"), value_block(trace.input, limits.max_text_chars, "text")]
    if trace.output is not None:
        blocks += [el("h4", "output"), value_block(trace.output, limits.max_text_chars, "text")]
    blocks.append(artifact_table(trace, limits, store))
    dropped = trace.metadata.get("costar.dropped_spans")
    if dropped:
        blocks.append(el("p", f"{dropped} spans were dropped when this trace was stored", class_="note"))
    blocks += [el("h4", f"spans ({len(trace.spans):,})"), spans_html]
    return el("div", *blocks, class_="trial-body")


def _trial_line(t: TrialSummary) -> Safe:
    u = t.usage
    return el("summary", _badge(t.status), f" trial {t.trial} · {fmt_seconds(u.latency_s)} · "
                                            f"{fmt_tokens(u.total_tokens)} tokens · {fmt_cost(u.cost_usd)}",
              f" · agent {t.agent_status}" if t.agent_status != "ok" else "",
              el("span", f" · {t.trace_id[:16]}", class_="muted"))


# --------------------------------------------------------------------------- summary section


def _scenario_rows(summary: RunSummary) -> Safe:
    head = el("tr", *[el("th", h, class_=c) for h, c in (
        ("scenario", None), ("trials (pass/decided)", "num"), ("pass rate [95% CI]", "num"),
        ("pass^k", "num"), ("tokens/trial", "num"), ("cost", "num"), ("latency/trial", "num"),
        ("status", None))])
    rows = []
    for i, s in enumerate(summary.scenarios):
        extra = []
        if s.errored:
            extra.append(f"{s.errored} judge error")
        if s.unscored:
            extra.append(f"{s.unscored} unscored")
        if s.missing_trials:
            extra.append(f"{len(s.missing_trials)} missing")
        trials = f"{s.passed}/{s.decided}" + (f" (+{', '.join(extra)})" if extra else "")
        pass_hat = "—" if s.pass_hat_n is None else f"{fmt_pct(s.pass_hat_n, 1)} (k={s.decided})"
        rows.append(el("tr", el("td", el("a", s.scenario_id, href=f"#sc-{i}")), el("td", trials, class_="num"),
                       el("td", fmt_rate(s.rate), class_="num"), el("td", pass_hat, class_="num"),
                       el("td", fmt_tokens(s.usage.mean_tokens), class_="num"),
                       el("td", fmt_cost(s.usage.cost_usd), class_="num"),
                       el("td", fmt_seconds(s.usage.mean_latency_s), class_="num"),
                       el("td", _badge(s.status))))
    return el("table", head, *rows)


def _judge_rows(judges: Sequence[JudgeSummary]) -> Safe:
    head = el("tr", *[el("th", h) for h in ("judge", "role", "pass", "fail", "error", "metric",
                                            "pass rate [95% CI]", "pass@k / pass^k", "mean value",
                                            "fingerprints", "cost")])
    rows = [el("tr", el("td", j.name), el("td", j.role),
               el("td", j.passed, class_="num"), el("td", j.failed, class_="num"),
               el("td", j.errors, class_="num"), el("td", j.metrics, class_="num"),
               el("td", fmt_rate(j.rate), class_="num"), el("td", fmt_curves(j, 1), class_="num"),
               el("td", "—" if j.mean_value is None else f"{j.mean_value:.3g}", class_="num"),
               el("td", ", ".join(j.fingerprints[:5]) + (" …" if len(j.fingerprints) > 5 else ""), class_="mono"),
               el("td", fmt_cost(j.cost_usd), class_="num"))
            for j in judges]
    return el("table", head, *rows)


def _curve_rows(summary: RunSummary) -> Safe | None:
    if not summary.pass_hat_k:
        return None
    at = {p.k: p.value for p in summary.pass_at_k}
    head = el("tr", *[el("th", h, class_="num") for h in ("k", "pass@k", "pass^k", "scenarios")])
    rows = [el("tr", el("td", p.k, class_="num"), el("td", fmt_pct(at.get(p.k), 1), class_="num"),
               el("td", fmt_pct(p.value, 1), class_="num"), el("td", p.scenarios, class_="num"))
            for p in summary.pass_hat_k]
    return join([el("h2", "Reliability over k trials"),
                 el("p", "pass@k: at least one of k trials passes; pass^k: all k pass. Averaged over the "
                         "scenarios with at least k decided trials.", class_="note"),
                 el("table", head, *rows)])


def _header(summary: RunSummary, title: str) -> Safe:
    a = summary.agent
    agent = a.name + (f" {a.version}" if a.version else "") + (f" @ {a.git_sha[:10]}" if a.git_sha else "")
    meta = (f"run {summary.run_id or '—'} · agent {agent} · started {_ts(summary.created_at)}"
            f" · trial pass rate {fmt_rate(summary.trial_rate)}")
    controls = el("div", el("button", "Expand all", type="button", data_action="expand"),
                  el("button", "Collapse all", type="button", data_action="collapse"),
                  el("label", el("input", type="checkbox", id="only-failing"), " only trials that did not pass"),
                  class_="controls")
    return el("header", el("h1", title), el("p", meta, class_="meta"),
              el("p", summary.description, class_="meta") if summary.description else None,
              el("p", note, class_="headline fail") if (note := run_state_note(summary)) else None,
              el("p", headline(summary), class_=f"headline {'pass' if summary.all_gates_passed else 'fail'}"),
              controls)


def _scenario_section(i: int, s: ScenarioSummary, trials: Sequence[Safe]) -> Safe:
    intro: list[Safe | None] = [el("p", s.description) if s.description else None]
    if s.tags or s.split:
        intro.append(el("p", f"split {s.split or '—'} · tags {', '.join(s.tags) or '—'}", class_="meta"))
    if s.missing_trials:
        intro.append(el("p", f"trials not recorded: {', '.join(map(str, s.missing_trials[:50]))}"
                             + (" …" if len(s.missing_trials) > 50 else ""), class_="note"))
    return el("section", el("h3", s.scenario_id, " ", _badge(s.status), " ",
                            el("span", f"{s.passed}/{s.decided} · {fmt_rate(s.rate)}", class_="meta")),
              *intro, *trials, class_="scenario", id=f"sc-{i}")


# --------------------------------------------------------------------------- page


def _asset(name: str) -> str:
    return resources.files("costar.report").joinpath(name).read_text(encoding="utf-8")


def _csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode() + "'"


def render_html(summary: RunSummary, traces: Iterable[Trace], verdicts: Iterable[Verdict], *,
                title: str = "coSTAR report", limits: HtmlLimits | None = None, store: Store | None = None) -> str:
    """The whole report as one HTML document with no external references.

    ``traces`` may be a stream (``store.iter_traces(run_id)``): each trace is rendered as it
    arrives and dropped. Trials in ``summary`` without a matching trace say so; traces that are
    not in ``summary`` are ignored. With ``store``, text artifacts show their contents.
    """
    limits = limits or HtmlLimits()
    by_trace = latest_per_name(verdicts)
    wanted = {t.trace_id for t in summary.trials()}
    page = CharBudget(limits.max_page_chars)
    details: dict[str, Safe] = {}
    for n, trace in enumerate(traces):
        if trace.trace_id in wanted and trace.trace_id not in details:
            details[trace.trace_id] = trace_details(trace, by_trace.get(trace.trace_id, []), f"t{n}", limits, page,
                                                    store)

    sections = []
    for i, s in enumerate(summary.scenarios):
        trials = [el("details", _trial_line(t),
                     details.get(t.trace_id) or el("p", "trace not available", class_="note"),
                     class_="trial", data_status=t.status)
                  for t in s.trial_results]
        sections.append(_scenario_section(i, s, trials))

    css, js = _asset("report.css"), _asset("report.js")
    csp = f"default-src 'none'; style-src {_csp_hash(css)}; script-src {_csp_hash(js)}; img-src data:"
    body = join([
        _header(summary, title),
        el("h2", "Scenarios"), _scenario_rows(summary),
        join([el("h2", "Judges"), _judge_rows(summary.judges)]) if summary.judges else "",
        _curve_rows(summary) or "",
        el("h2", "Trials"), *sections,
        el("footer", f"generated by coSTAR on {_ts(dt.datetime.now(tz=dt.UTC).timestamp())}"),
    ])
    # css and js are this package's own files, so they go in verbatim (escaping would break them).
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta http-equiv=\"Content-Security-Policy\" content=\"{esc(csp)}\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{esc(title)}</title><style>{css}</style></head>\n"
            f"<body>{body}<script>{js}</script></body></html>\n")


def write_html(path: str | Path, summary: RunSummary, traces: Iterable[Trace], verdicts: Iterable[Verdict], *,
               title: str = "coSTAR report", limits: HtmlLimits | None = None, store: Store | None = None) -> Path:
    """Render the report and write it to ``path`` (parent folders are created)."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_html(summary, traces, verdicts, title=title, limits=limits, store=store), encoding="utf-8")
    return out
