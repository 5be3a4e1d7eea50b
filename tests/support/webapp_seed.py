"""A store seeded for the web app's tests, screenshots and benchmark: two runs of a data-analyst agent
over a small suite (the second regresses one scenario), traces with LLM messages, tool calls, errors
and artifacts, check and LLM verdicts with evidence, human labels and a golden set; plus a hostile
trace and a huge one on request."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from pathlib import Path

from costar.scenario import Scenario
from costar.store.base import Run
from costar.store.sqlite import SQLiteStore
from costar.trace.model import AgentInfo, Artifact, Span, SpanEvent, SpanKind, SpanStatus, StatusCode, Totals, Trace
from costar.verdict import Verdict, VerdictSource

SCENARIOS = [
    ("revenue-total", "The agent reads a CSV and reports total revenue.", ["smoke"], "train"),
    ("clean-missing", "Fill missing values and explain the choice.", ["cleaning"], "train"),
    ("skewed-column", "Describe a skewed column with the right statistics.", ["profiling"], "train"),
    ("empty-file", "Say clearly that the file is empty.", ["edge"], "holdout"),
]
TRIALS = 3
JUDGE = "outcome"

HOSTILE_SCRIPT = "<script>alert('xss-script')</script>"
HOSTILE_IMG = '"><img src=x onerror=alert(\'xss-img\')>'
HOSTILE_LINK = "javascript:alert('xss-link')"
HOSTILE_TEMPLATE = "{{ 7*7 }}{% raw %}${7*7}#{7*7}"
HOSTILE = f"{HOSTILE_SCRIPT} {HOSTILE_IMG} [click]({HOSTILE_LINK}) {HOSTILE_TEMPLATE}"
"""Text that would run, load or render something if any page treated it as markup."""


@dataclass
class Seeded:
    store: SQLiteStore
    base_run: str
    head_run: str
    traces: dict[str, list[str]] = field(default_factory=dict)
    """run id -> trace ids."""
    hostile_trace: str | None = None
    evidence: dict[str, str] = field(default_factory=dict)
    """trace id -> a span id a verdict cites."""


def _trace(tid: str, run_id: str, scenario: str, trial: int, *, passed: bool, version: str, t0: int,
           store: SQLiteStore, rng: random.Random) -> tuple[Trace, str]:
    root = f"{tid}-root"
    spans = [Span(trace_id=tid, span_id=root, name="invoke_agent analyst", kind=SpanKind.AGENT, start_ns=t0,
                  end_ns=t0 + 4_000_000_000, attributes={"gen_ai.agent.name": "analyst"})]
    t = t0 + 50_000_000
    cited = ""
    for step in range(3):
        llm, tool = f"{tid}-llm{step}", f"{tid}-tool{step}"
        tokens_in, tokens_out = 800 + rng.randint(0, 400), 60 + rng.randint(0, 80)
        tool_name = ["list_files", "read_file", "run_python"][step]
        spans.append(Span(
            trace_id=tid, span_id=llm, parent_id=root, name="chat gpt-4.1-mini", kind=SpanKind.LLM, start_ns=t,
            end_ns=t + 700_000_000, attributes={
                "gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4.1-mini",
                "gen_ai.usage.input_tokens": tokens_in, "gen_ai.usage.output_tokens": tokens_out,
                "costar.usage.cost_usd": round(tokens_in * 4e-7 + tokens_out * 1.6e-6, 6),
                "gen_ai.input.messages": [
                    {"role": "system", "parts": [{"type": "text", "content": "You are a careful data analyst."}]},
                    {"role": "user", "parts": [{"type": "text", "content": f"Scenario {scenario}: do the task."}]}],
                "gen_ai.output.messages": [{"role": "assistant", "parts": [
                    {"type": "tool_call", "id": f"call_{step}", "name": tool_name,
                     "arguments": {"path": "sales.csv"}}]}]}))
        failed_tool = not passed and step == 2
        spans.append(Span(
            trace_id=tid, span_id=tool, parent_id=root, name=f"execute_tool {tool_name}", kind=SpanKind.TOOL,
            start_ns=t + 700_000_000, end_ns=t + 900_000_000,
            status=SpanStatus(code=StatusCode.ERROR, message="KeyError: 'revenue'") if failed_tool else SpanStatus(),
            events=[SpanEvent(name="exception", time_ns=t + 850_000_000,
                              attributes={"exception.type": "KeyError", "exception.message": "'revenue'"})]
            if failed_tool else [],
            attributes={"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": tool_name,
                        "gen_ai.tool.call.id": f"call_{step}", "gen_ai.tool.call.arguments": {"path": "sales.csv"},
                        "gen_ai.tool.call.result": "error" if failed_tool else "region,total\nnorth,12\nsouth,30"}))
        if failed_tool or (passed and step == 1):
            cited = tool
        t += 1_000_000_000
    report = "total revenue: 42 USD\n" if passed else "could not compute the total\n"
    sha = store.put_blob(report.encode())
    totals = Totals(input_tokens=sum(int(s.attributes.get("gen_ai.usage.input_tokens", 0)) for s in spans),
                    output_tokens=sum(int(s.attributes.get("gen_ai.usage.output_tokens", 0)) for s in spans),
                    llm_calls=3, tool_calls=3, latency_s=4.0 + rng.random(), error_spans=0 if passed else 1,
                    cost_usd=sum(float(s.attributes.get("costar.usage.cost_usd", 0)) for s in spans))
    totals.total_tokens = totals.input_tokens + totals.output_tokens
    trace = Trace(trace_id=tid, run_id=run_id, scenario_id=scenario, trial=trial,
                  agent=AgentInfo(name="analyst", version=version, git_sha="3f2a9c1d0b4e" if version == "1.0" else "9b0e4d2a7c11"),
                  input=f"Scenario {scenario}", output=report.strip(), start_ns=t0, end_ns=t0 + 4_000_000_000,
                  totals=totals, artifacts=[Artifact(path="report.md", sha256=sha, size=len(report))], spans=spans)
    return trace, cited


def seed_store(root: Path, *, hostile: bool = True) -> Seeded:
    """Two runs (``base_run`` then ``head_run``) in a new store under ``root``."""
    store = SQLiteStore(root / ".costar")
    rng = random.Random(7)
    scenarios = [Scenario(id=sid, description=desc, tags=tags, split=split, prompt=desc, trials=TRIALS)
                 for sid, desc, tags, split in SCENARIOS]
    outcomes = {  # scenario -> (base passes per trial, head passes per trial)
        "revenue-total": ([True] * 3, [True] * 3),
        "clean-missing": ([True, False, True], [True, True, True]),
        "skewed-column": ([True] * 3, [False] * 3),
        "empty-file": ([False] * 3, [False, True, False]),
    }
    seeded = Seeded(store=store, base_run="", head_run="")
    now = time.time()
    for n, version in enumerate(("1.0", "1.1")):
        run = Run(run_id=f"2026120{n + 1}-090000-{'ab' if n == 0 else 'cd'}1234", created_at=now - 7200 + n * 3600,
                  status="finished", agent=AgentInfo(name="analyst", version=version,
                                                     git_sha="3f2a9c1d0b4e" if n == 0 else "9b0e4d2a7c11"),
                  suite=["scenarios"], description=f"nightly, agent {version}",
                  metadata={"vcs": {"branch": "main"}})
        run.finished_at = run.created_at + 95.0
        store.create_run(run)
        store.save_scenarios(run.run_id, scenarios)
        traces, verdicts = [], []
        for scenario, (base, head) in outcomes.items():
            for trial, passed in enumerate(base if n == 0 else head):
                tid = f"{run.run_id[-6:]}-{scenario}-{trial}"
                trace, cited = _trace(tid, run.run_id, scenario, trial, passed=passed, version=version,
                                      t0=int((run.created_at + trial) * 1e9), store=store, rng=rng)
                traces.append(trace)
                seeded.evidence[tid] = cited
                verdicts.append(Verdict(name="file_exists", value=True, passed=True, rationale="report.md exists",
                                        trace_id=tid, fingerprint="fp-file-exists-1"))
                verdicts.append(Verdict(
                    name="no_error_spans", value=passed, passed=passed, trace_id=tid, fingerprint="fp-no-errors-1",
                    rationale="no span ended in error" if passed else "execute_tool run_python failed: KeyError",
                    evidence=[] if passed else [cited]))
                verdicts.append(Verdict(
                    name=JUDGE, value=passed, passed=passed, source=VerdictSource.LLM, trace_id=tid,
                    source_id="openai:/gpt-4.1-mini", fingerprint="fp-outcome-1",
                    rationale="The report states the total with its currency." if passed
                    else "The agent did not produce the total; the tool call failed.", evidence=[cited],
                    confidence=0.9))
        store.write_traces(traces)
        store.write_verdicts(verdicts, run_id=run.run_id)
        seeded.traces[run.run_id] = [t.trace_id for t in traces]
        if n == 0:
            seeded.base_run = run.run_id
        else:
            seeded.head_run = run.run_id
    # Human labels on the base run's traces: agree with the judge except twice.
    from costar.align.labeling import new_label

    base_ids = seeded.traces[seeded.base_run]
    labels = []
    for i, tid in enumerate(base_ids):
        judged = next(v for v in store.verdicts(trace_ids=[tid]) if v.name == JUDGE)
        value = bool(judged.passed) if i not in (1, 5) else not judged.passed
        labels.append(new_label(tid, JUDGE, value, labeler="ana", rationale="checked the report by hand"))
    store.write_labels(labels)
    if hostile:
        seeded.hostile_trace = add_hostile_trace(store, seeded.head_run)
    return seeded


def add_hostile_trace(store: SQLiteStore, run_id: str) -> str:
    """A trace whose every field a page shows carries markup, event handlers, javascript: URLs and
    template syntax; it and its verdict belong to ``run_id``."""
    tid = "hostile/" + HOSTILE_SCRIPT
    root, llm, tool = "root" + HOSTILE_IMG, "llm-" + HOSTILE_SCRIPT, "tool-" + HOSTILE_LINK
    sha = store.put_blob(HOSTILE.encode())
    spans = [
        Span(trace_id=tid, span_id=root, name="invoke_agent " + HOSTILE, kind=SpanKind.AGENT, start_ns=0,
             end_ns=3_000_000_000, attributes={"gen_ai.agent.name": HOSTILE, HOSTILE_IMG: HOSTILE}),
        Span(trace_id=tid, span_id=llm, parent_id=root, name="chat " + HOSTILE_SCRIPT, kind=SpanKind.LLM,
             start_ns=1_000, end_ns=1_000_000_000, attributes={
                 "gen_ai.request.model": HOSTILE_IMG, "gen_ai.usage.input_tokens": 5,
                 "gen_ai.input.messages": [{"role": "user<img src=x onerror=alert(1)>",
                                            "parts": [{"type": "text", "content": HOSTILE}]}],
                 "gen_ai.output.messages": [{"role": "assistant", "parts": [
                     {"type": "tool_call", "id": HOSTILE_IMG, "name": HOSTILE_SCRIPT, "arguments": {"url": HOSTILE_LINK}},
                     {"type": "text", "content": HOSTILE}]}]}),
        Span(trace_id=tid, span_id=tool, parent_id=root, name="execute_tool " + HOSTILE_LINK, kind=SpanKind.TOOL,
             start_ns=1_000_000_000, end_ns=2_000_000_000,
             status=SpanStatus(code=StatusCode.ERROR, message=HOSTILE),
             events=[SpanEvent(name=HOSTILE_SCRIPT, time_ns=1_500_000_000, attributes={"exception.message": HOSTILE})],
             attributes={"gen_ai.tool.name": HOSTILE_IMG, "gen_ai.tool.call.arguments": {HOSTILE_SCRIPT: HOSTILE_LINK},
                         "gen_ai.tool.call.result": HOSTILE}),
    ]
    trace = Trace(trace_id=tid, run_id=run_id, scenario_id="hostile-input", trial=0, input=HOSTILE, output=HOSTILE,
                  error=HOSTILE, agent=AgentInfo(name=HOSTILE_SCRIPT, version=HOSTILE_IMG),
                  artifacts=[Artifact(path=HOSTILE_IMG + ".md", sha256=sha, size=len(HOSTILE.encode())),
                             Artifact(path=HOSTILE_LINK, sha256=sha, size=len(HOSTILE.encode()))],
                  spans=spans, metadata={"note": HOSTILE})
    store.write_trace(trace)
    store.write_verdicts([Verdict(name=JUDGE, value=False, passed=False, source=VerdictSource.LLM, trace_id=tid,
                                  rationale="quoting the output: " + HOSTILE, evidence=[tool, llm],
                                  fingerprint="fp-outcome-1")], run_id=run_id)
    return tid


def add_huge_trace(store: SQLiteStore, spans: int = 100_000, trace_id: str = "huge-trace") -> str:
    """A trace of ``spans`` spans: an agent with steps of an LLM call and a few tool calls each, some
    nested two levels deeper (a realistic shape for a long-running agent)."""
    out: list[Span] = [Span(trace_id=trace_id, span_id="s0", name="invoke_agent long-runner", kind=SpanKind.AGENT,
                            start_ns=0, end_ns=spans * 1_000_000)]
    step_parent = "s0"
    i = 1
    while i < spans:
        t = i * 1_000_000
        if i % 50 == 1:
            step_parent = f"s{i}"
            out.append(Span(trace_id=trace_id, span_id=step_parent, parent_id="s0", name=f"step {i // 50}",
                            kind=SpanKind.CHAIN, start_ns=t, end_ns=t + 50_000_000))
        elif i % 5 == 0:
            out.append(Span(trace_id=trace_id, span_id=f"s{i}", parent_id=step_parent, name="chat gpt-4.1-mini",
                            kind=SpanKind.LLM, start_ns=t, end_ns=t + 800_000,
                            attributes={"gen_ai.request.model": "gpt-4.1-mini", "gen_ai.usage.input_tokens": 100,
                                        "gen_ai.usage.output_tokens": 20, "costar.usage.cost_usd": 0.0001}))
        else:
            out.append(Span(trace_id=trace_id, span_id=f"s{i}", parent_id=step_parent, name="execute_tool lookup",
                            kind=SpanKind.TOOL, start_ns=t, end_ns=t + 300_000,
                            status=SpanStatus(code=StatusCode.ERROR, message="timeout") if i % 997 == 0 else SpanStatus(),
                            attributes={"gen_ai.tool.name": "lookup", "gen_ai.tool.call.arguments": {"q": i}}))
        i += 1
    store.write_trace(Trace(trace_id=trace_id, scenario_id="long-run", output="done", start_ns=0,
                            end_ns=spans * 1_000_000, spans=out))
    return trace_id
