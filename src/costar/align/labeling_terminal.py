"""Label traces in the terminal: one trace at a time, a value and an optional rationale, saved at once.

Everything shown comes from the agent or a judge and is untrusted: it is printed as Rich ``Text``
(never parsed as markup) with control characters removed, so it cannot drive the terminal.
Each label is written as soon as it is given, so quitting (or a crash) loses nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.text import Text

from costar.align.labeling import QueueItem, format_value, label_queue, new_label
from costar.labels import LabelError, ValueType, ValueTypeLike
from costar.safe_text import for_terminal
from costar.store.base import Store
from costar.summary import fmt_seconds, plural
from costar.trace.model import Trace
from costar.verdict import Verdict

__all__ = ["LabelSession", "label_in_terminal"]

_SKIP = frozenset({"s", "skip"})
_QUIT = frozenset({"q", "quit", "exit"})
_MAX_TRIES = 5
_MAX_ARTIFACTS = 10


@dataclass
class LabelSession:
    """What one terminal session did."""

    saved: list[Verdict] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    quit: bool = False
    remaining: int = 0  # traces of the queue still without this labeler's label

    def format(self) -> str:
        return (f"{plural(len(self.saved), 'label')} saved, {len(self.skipped)} skipped, "
                f"{self.remaining} still to label" + (" (quit early)" if self.quit else ""))


def _clean(value: Any, limit: int) -> str:
    # Control characters can move the cursor, recolour or retitle the terminal: shown, never sent.
    return for_terminal(value, limit)


def _field(label: str, value: Any, limit: int, style: str = "") -> Text:
    out = Text(f"{label}: ", style="bold")
    body = _clean(value, limit)
    out.append("\n  " + body.replace("\n", "\n  ") if "\n" in body else body, style=style)
    return out


def _outcome_style(outcome: str) -> str:
    return {"pass": "bold green", "fail": "bold red", "error": "bold magenta"}.get(outcome, "bold cyan")


def _show(console: Console, trace: Trace, item: QueueItem, n: int, total: int, name: str,
          output_chars: int) -> None:
    console.rule(Text(f"{n}/{total} · trace {_clean(trace.trace_id[:16], 16)}"))
    t = trace.totals
    facts = (f"scenario {trace.scenario_id or '—'} · trial {trace.trial} · agent {trace.status.value} · "
             f"{fmt_seconds(t.latency_s)} · {plural(t.llm_calls, 'LLM call')} · "
             f"{plural(t.tool_calls, 'tool call')} · {plural(t.error_spans, 'error span')}")
    console.print(Text(_clean(facts, 400), style="dim"))
    if trace.error:
        console.print(_field("agent error", trace.error, 600, "red"))
    if trace.input is not None:
        console.print(_field("input", trace.input, 600))
    console.print(_field("output", trace.output if trace.output is not None else "(no output)", output_chars))
    v = item.verdict
    if v is None:
        console.print(Text(f"judge {name}: no verdict yet", style="dim"))
    else:
        line = Text(f"judge {_clean(name, 100)}: ", style="bold")
        line.append(v.outcome.upper(), style=_outcome_style(v.outcome))
        if v.value is not None and not isinstance(v.value, bool):
            line.append(f"  value {_clean(format_value(v.value), 100)}")
        console.print(line)
        if v.rationale or v.error:
            console.print(_field("  rationale", v.rationale or v.error, 800))
    if trace.artifacts:
        shown = ", ".join(f"{_clean(a.path, 120)} ({a.size:,} B)" for a in trace.artifacts[:_MAX_ARTIFACTS])
        more = f", … {len(trace.artifacts) - _MAX_ARTIFACTS} more" if len(trace.artifacts) > _MAX_ARTIFACTS else ""
        console.print(Text(f"artifacts ({len(trace.artifacts)}): ", style="bold") + Text(shown + more))
    if item.mine is not None:
        console.print(Text(f"your earlier label: {format_value(item.mine.value)}"
                           + (f" — {_clean(item.mine.rationale, 200)}" if item.mine.rationale else ""), style="yellow"))


def _prompt(vt: ValueType) -> str:
    if vt.kind == "bool":
        choices = "[p]ass, [f]ail"
    elif vt.kind == "label":
        choices = ", ".join(f"{i}) {label}" for i, label in enumerate(vt.labels, 1))
    else:
        choices = vt.describe()
    return f"label — {choices}, [s]kip, [q]uit > "


def _read_value(vt: ValueType, answer: str) -> Any:
    if vt.kind == "label" and answer.isdigit() and 1 <= int(answer) <= len(vt.labels):
        return vt.labels[int(answer) - 1]
    return vt.parse(answer)


def _ask(console: Console, input_fn: Callable[[str], str], vt: ValueType) -> tuple[str, Any]:
    """("value", v), ("skip", None) or ("quit", None); EOF and Ctrl-C quit."""
    for _ in range(_MAX_TRIES):
        try:
            answer = input_fn(_prompt(vt)).strip()
        except (EOFError, KeyboardInterrupt):
            return "quit", None
        low = answer.lower()
        if low in _QUIT:
            return "quit", None
        if low in _SKIP:
            return "skip", None
        try:
            return "value", _read_value(vt, answer)
        except LabelError as exc:
            console.print(Text(f"not understood: {_clean(str(exc), 200)}", style="yellow"))
    console.print(Text(f"{_MAX_TRIES} answers not understood; skipping this trace", style="yellow"))
    return "skip", None


def label_in_terminal(store: Store, name: str, *, run_id: str | None = None, queue: Sequence[str] | None = None,
                      labeler: str, value_type: ValueTypeLike = "bool", console: Console | None = None,
                      input_fn: Callable[[str], str] = input, relabel: bool = False,
                      output_chars: int = 1500) -> LabelSession:
    """Ask ``labeler`` for a label on each trace of the queue (see :func:`label_queue`) that they
    have not labeled yet (every trace with ``relabel``); each answer is saved immediately.

    Answers: the value (``p``/``f`` for pass/fail, a number, a label or its number), ``s`` to skip,
    ``q`` (or end of input, or Ctrl-C) to quit; then an optional rationale.
    """
    if not labeler or not labeler.strip():
        raise LabelError("give a labeler id (a name or email) so labels can be told apart: --labeler")
    labeler = labeler.strip()
    console = console or Console(highlight=False)
    vt = ValueType.of(value_type)
    items = label_queue(store, name, run_id=run_id, queue=queue, labeler=labeler)
    todo = items if relabel else [i for i in items if not i.done]
    session = LabelSession()
    console.print(Text(f"Labeling judge {_clean(name, 100)} as {_clean(labeler, 100)}: {len(todo)} to label, "
                       f"{sum(i.done for i in items)} of {len(items)} already labeled by you", style="bold"))
    for n, item in enumerate(todo, 1):
        trace = store.get_trace(item.trace_id, spans=False)
        _show(console, trace, item, n, len(todo), name, output_chars)
        action, value = _ask(console, input_fn, vt)
        if action == "quit":
            session.quit = True
            break
        if action == "skip":
            session.skipped.append(item.trace_id)
            continue
        try:
            rationale = input_fn("rationale (optional, Enter to leave empty) > ")
        except KeyboardInterrupt:  # Ctrl-C means stop now: the half-given label is dropped
            session.quit = True
            break
        except EOFError:  # the end of piped input: the value was given, keep it
            rationale = ""
            session.quit = True
        label = new_label(item.trace_id, name, value, labeler=labeler, rationale=rationale, value_type=vt)
        store.write_labels([label], replace=item.mine is not None, value_type=vt)
        session.saved.append(label)
        console.print(Text(f"saved: {format_value(label.value)}", style="green"))
        if session.quit:
            break
    done_now = {str(v.trace_id) for v in session.saved}
    session.remaining = sum(1 for i in items if not i.done and i.trace_id not in done_now)
    console.print(Text(session.format(), style="bold"))
    return session
