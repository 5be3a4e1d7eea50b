"""The failure brief a coding assistant reads: what failed, why, and where it started.

Only what the assistant needs: the failing verdicts with their rationales, excerpts of the spans
the judges' evidence points at (never whole traces), and for each failing scenario a root-cause
hint: the earliest span the evidence names, so the assistant looks at the step that caused the
failure rather than the step where it showed. Held-out scenarios never appear in a brief.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, Field

from costar.scenario import Scenario
from costar.store.base import Store
from costar.summary import RunSummary, ScenarioSummary, fmt_rate
from costar.trace.model import Span, SpanKind, StatusCode, Trace

EXCERPT_CHARS = 1200
MAX_EXCERPTS = 6


class SpanExcerpt(BaseModel):
    span_id: str
    name: str
    kind: str
    step: int  # position in the trace's timeline (1-based)
    status: str
    error: str | None = None
    input: str = ""
    output: str = ""


class FailedVerdict(BaseModel):
    judge: str
    failed_trials: int
    trials: int
    rationale: str


class ScenarioFailure(BaseModel):
    scenario_id: str
    description: str = ""
    prompt: str | list[str]
    criteria: list[str] = Field(default_factory=list)
    pass_rate: str
    trace_id: str
    verdicts: list[FailedVerdict]
    agent_error: str | None = None
    root_cause: SpanExcerpt | None = None
    root_cause_reason: str = ""
    excerpts: list[SpanExcerpt] = Field(default_factory=list)
    tool_timeline: list[str] = Field(default_factory=list)
    final_output: str = ""


class FailureBrief(BaseModel):
    run_id: str
    agent_dir: str
    editable: list[str] = Field(default_factory=list)
    failures: list[ScenarioFailure] = Field(default_factory=list)
    passing: list[str] = Field(default_factory=list)
    feedback: list[str] = Field(default_factory=list)  # why earlier attempts were rejected

    def to_json(self) -> str:
        return self.model_dump_json(indent=2)

    def to_markdown(self) -> str:
        return render_markdown(self)


def _clip(text: Any, limit: int = EXCERPT_CHARS) -> str:
    s = text if isinstance(text, str) else json.dumps(text, default=str, ensure_ascii=False)
    return s if len(s) <= limit else s[:limit] + f"… [{len(s) - limit} more characters]"


def _span_io(span: Span) -> tuple[str, str]:
    a = span.attributes
    if span.kind == SpanKind.TOOL:
        return _clip(a.get("gen_ai.tool.call.arguments", "")), _clip(a.get("gen_ai.tool.call.result", ""))
    if span.kind == SpanKind.LLM:
        msgs = a.get("gen_ai.input.messages") or []
        return _clip(msgs[-1:] if isinstance(msgs, list) else msgs), _clip(a.get("gen_ai.output.messages", ""))
    return _clip(a.get("input.value", "")), _clip(a.get("output.value", ""))


def excerpt(span: Span, step: int) -> SpanExcerpt:
    inp, out = _span_io(span)
    return SpanExcerpt(span_id=span.span_id, name=span.name, kind=span.kind.value, step=step,
                       status=span.status.code.value,
                       error=span.status.message if span.status.code == StatusCode.ERROR else None,
                       input=inp, output=out)


def root_cause(trace: Trace, evidence: Sequence[str]) -> tuple[Span | None, str]:
    """The earliest span the failing verdicts cite; else the earliest error span; else None."""
    by_id = {s.span_id: s for s in trace.spans}
    cited = [by_id[e] for e in evidence if e in by_id]
    if cited:
        return min(cited, key=lambda s: s.start_ns), "earliest span cited by the failing judges"
    errors = [s for s in trace.spans if s.status.code == StatusCode.ERROR and s.parent_id is not None]
    if errors:
        return min(errors, key=lambda s: s.start_ns), "earliest span that ended in an error"
    return None, "the judges cite no span: the failure is in the final output"


def _representative(sc: ScenarioSummary) -> str | None:
    """A failing trial's trace (any trial when none failed outright, e.g. judge errors)."""
    pool = [t for t in sc.trial_results if t.status == "fail"] or sc.trial_results
    return pool[0].trace_id if pool else None


def _scenario_failure(store: Store, sc: ScenarioSummary, scenario: Scenario | None) -> ScenarioFailure | None:
    trace_id = _representative(sc)
    if trace_id is None:
        return None
    trace = store.get_trace(trace_id)
    tally: dict[str, list[str]] = {}
    for t in sc.trial_results:
        for f in t.failures:
            tally.setdefault(f.name, []).append(f.rationale)
    verdicts = [FailedVerdict(judge=name, failed_trials=len(r), trials=sc.trials, rationale=_clip(r[0], 600))
                for name, r in tally.items()]
    failing_names = set(tally)
    evidence = [e for v in store.verdicts(trace_ids=[trace_id]) if v.name in failing_names and v.outcome == "fail"
                for e in v.evidence]
    order = {s.span_id: i + 1 for i, s in enumerate(sorted(trace.spans, key=lambda s: s.start_ns))}
    cause, reason = root_cause(trace, evidence)
    chosen: list[Span] = []
    by_id = {s.span_id: s for s in trace.spans}
    for sid in [*(c.span_id for c in ([cause] if cause else [])), *evidence]:
        if sid in by_id and by_id[sid] not in chosen:
            chosen.append(by_id[sid])
    chosen += [s for s in trace.spans if s.status.code == StatusCode.ERROR and s not in chosen]
    tools = sorted((s for s in trace.spans if s.kind == SpanKind.TOOL), key=lambda s: s.start_ns)
    return ScenarioFailure(
        scenario_id=sc.scenario_id, description=sc.description,
        prompt=scenario.prompt if scenario else (trace.input if isinstance(trace.input, str | list) else ""),
        criteria=scenario.expectations.criteria if scenario else [],
        pass_rate=fmt_rate(sc.rate), trace_id=trace_id, verdicts=verdicts,
        agent_error=trace.error, root_cause=excerpt(cause, order[cause.span_id]) if cause else None,
        root_cause_reason=reason,
        excerpts=[excerpt(s, order[s.span_id]) for s in chosen[:MAX_EXCERPTS]],
        tool_timeline=[f"{order[s.span_id]}. {s.attributes.get('gen_ai.tool.name') or s.name}"
                       + (" (error)" if s.status.code == StatusCode.ERROR else "") for s in tools[:40]],
        final_output=_clip(trace.output or "", 2000))


def build_brief(store: Store, summary: RunSummary, scenarios: dict[str, Scenario], *, agent_dir: str,
                editable: Sequence[str] = (), feedback: Sequence[str] = ()) -> FailureBrief:
    """A brief over the run's failing *train* scenarios (held-out ones are never shown)."""
    failures, passing = [], []
    for sc in summary.scenarios:
        scenario = scenarios.get(sc.scenario_id)
        if scenario is not None and scenario.split == "holdout":
            continue
        if sc.status == "pass":
            passing.append(sc.scenario_id)
            continue
        f = _scenario_failure(store, sc, scenario)
        if f is not None:
            failures.append(f)
    return FailureBrief(run_id=summary.run_id or "", agent_dir=agent_dir, editable=list(editable),
                        failures=failures, passing=passing, feedback=list(feedback))


def render_markdown(brief: FailureBrief) -> str:
    lines = [f"# Failure brief (run {brief.run_id})", "",
             f"The agent lives in `{brief.agent_dir}`. Change only files there"
             + (f" (editable: {', '.join(brief.editable)})" if brief.editable else "")
             + "; never edit the scenarios or the judges. Fix the cause, not the symptom: "
               "each failure names the earliest step the judges point at.", ""]
    if brief.feedback:
        lines += ["## Earlier attempts that were rejected", *[f"- {f}" for f in brief.feedback], ""]
    for f in brief.failures:
        lines += [f"## {f.scenario_id} — pass rate {f.pass_rate}", ""]
        if f.description:
            lines += [f.description, ""]
        prompt = f.prompt if isinstance(f.prompt, str) else " / ".join(f.prompt)
        lines += [f"**Prompt:** {prompt}", ""]
        if f.criteria:
            lines += ["**Criteria:**", *[f"- {c}" for c in f.criteria], ""]
        lines += ["**Failing judges:**", *[f"- `{v.judge}` failed {v.failed_trials}/{v.trials} trials: {v.rationale}"
                                          for v in f.verdicts], ""]
        if f.agent_error:
            lines += [f"**Agent error:** {f.agent_error}", ""]
        if f.root_cause is not None:
            rc = f.root_cause
            lines += [f"**Root cause hint** ({f.root_cause_reason}): step {rc.step}, {rc.kind} `{rc.name}`"
                      + (f" — error: {rc.error}" if rc.error else ""), "",
                      f"- input: `{rc.input}`", f"- output: `{rc.output}`", ""]
        else:
            lines += [f"**Root cause hint:** {f.root_cause_reason}.", ""]
        if f.tool_timeline:
            lines += [f"**Tool calls:** {', '.join(f.tool_timeline)}", ""]
        others = [e for e in f.excerpts if f.root_cause is None or e.span_id != f.root_cause.span_id]
        if others:
            lines += ["**Other cited spans:**", *[f"- step {e.step} {e.kind} `{e.name}`: {e.output[:300]}"
                                                  for e in others], ""]
        lines += ["**Final output:**", "", "```", f.final_output, "```", ""]
    if brief.passing:
        lines += ["## Passing (must keep passing)", ", ".join(brief.passing), ""]
    return "\n".join(lines)
