"""Builders for the report tests: real Trace / Verdict / Run objects, no mocks.

Named ``test_report_*`` so it lives with the report tests; it holds no tests itself.
"""

from __future__ import annotations

from typing import Any

from costar.store.base import Run
from costar.trace.model import (
    AgentInfo,
    Artifact,
    Span,
    SpanEvent,
    SpanKind,
    SpanStatus,
    StatusCode,
    Trace,
    TraceStatus,
    compute_totals,
)
from costar.verdict import Verdict, VerdictSource

T0 = 1_700_000_000_000_000_000


def llm_span(trace_id: str, span_id: str, parent: str | None, *, start_s: float = 0.0,
             output: str = "Paris is rainy.", tokens: tuple[int, int] = (100, 20), cost: float = 0.001) -> Span:
    return Span(
        trace_id=trace_id, span_id=span_id, parent_id=parent, name="chat gpt-test", kind=SpanKind.LLM,
        start_ns=T0 + int(start_s * 1e9), end_ns=T0 + int((start_s + 0.5) * 1e9),
        attributes={
            "gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-test",
            "gen_ai.usage.input_tokens": tokens[0], "gen_ai.usage.output_tokens": tokens[1],
            "costar.usage.cost_usd": cost,
            "gen_ai.input.messages": [
                {"role": "system", "parts": [{"type": "text", "content": "You are helpful."}]},
                {"role": "user", "parts": [{"type": "text", "content": "Weather in Paris?"}]},
            ],
            "gen_ai.output.messages": [
                {"role": "assistant", "finish_reason": "tool_call", "parts": [
                    {"type": "tool_call", "id": "call_1", "name": "get_weather", "arguments": {"city": "Paris"}},
                    {"type": "text", "content": output}]},
            ],
        },
    )


def tool_span(trace_id: str, span_id: str, parent: str | None, *, start_s: float = 0.6,
              result: Any = "rainy", error: str | None = None) -> Span:
    return Span(
        trace_id=trace_id, span_id=span_id, parent_id=parent, name="execute_tool get_weather",
        kind=SpanKind.TOOL, start_ns=T0 + int(start_s * 1e9), end_ns=T0 + int((start_s + 0.1) * 1e9),
        status=SpanStatus(code=StatusCode.ERROR, message=error) if error else SpanStatus(),
        attributes={"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "get_weather",
                    "gen_ai.tool.call.id": "call_1", "gen_ai.tool.call.arguments": {"city": "Paris"},
                    "gen_ai.tool.call.result": result},
        events=[SpanEvent(name="retry", time_ns=T0 + int((start_s + 0.05) * 1e9), attributes={"attempt": 2})],
    )


def make_trace(scenario_id: str, trial: int, *, run_id: str = "run-1", status: TraceStatus = TraceStatus.OK,
               error: str | None = None, output: str = "It is rainy in Paris.", latency_s: float = 1.5,
               extra_spans: list[Span] | None = None) -> Trace:
    trace_id = f"{scenario_id}-{trial}".replace("/", "_") + "-" + "0" * 8
    root = Span(trace_id=trace_id, span_id=f"root{trial}", name="invoke_agent weather", kind=SpanKind.AGENT,
                start_ns=T0, end_ns=T0 + int(latency_s * 1e9),
                attributes={"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "weather"})
    spans = [root, llm_span(trace_id, f"llm{trial}", root.span_id), tool_span(trace_id, f"tool{trial}", root.span_id)]
    spans += extra_spans or []
    return Trace(
        trace_id=trace_id, run_id=run_id, scenario_id=scenario_id, trial=trial,
        agent=AgentInfo(name="weather-bot", version="1.2"), status=status, error=error,
        input="What is the weather in Paris?", output=output, start_ns=T0, end_ns=T0 + int(latency_s * 1e9),
        totals=compute_totals(spans, latency_s), spans=spans,
        artifacts=[Artifact(path="notes/out.txt", sha256="ab" * 32, size=1234, media_type="text/plain")],
    )


def verdict(trace: Trace, name: str, passed: bool | None, *, gating: bool = True, rationale: str = "",
            error: str | None = None, value: Any = None, cost_usd: float = 0.0) -> Verdict:
    if error is not None:
        return Verdict.failure(name, error, trace_id=trace.trace_id, gating=gating, fingerprint=f"fp-{name}",
                               source=VerdictSource.LLM)
    return Verdict(name=name, passed=passed, gating=gating, trace_id=trace.trace_id,
                   rationale=rationale or f"{name} {'passed' if passed else 'failed'}",
                   value=passed if value is None else value, fingerprint=f"fp-{name}", confidence=0.9,
                   source=VerdictSource.CODE, cost={"cost_usd": cost_usd}, evidence=[f"tool{trace.trial}"])


def make_run(**options: Any) -> Run:
    return Run(run_id="run-1", agent=AgentInfo(name="weather-bot", version="1.2", git_sha="0123456789abcdef"),
               status="finished", description="nightly", options=options)


def sample_run() -> tuple[Run, list[Trace], list[Verdict]]:
    """Three scenarios: one all-pass, one with a failure and a judge error, one with an agent timeout.

    ``weather`` 3/3 passes (plus a failed diagnostic on trial 1); ``booking`` trial 0 passes,
    trial 1 fails a gate, trial 2 has a gating judge error; ``slow`` trial 0 times out.
    """
    traces: list[Trace] = []
    verdicts: list[Verdict] = []
    for trial in range(3):
        t = make_trace("weather", trial)
        traces.append(t)
        verdicts += [verdict(t, "agent_completed", True), verdict(t, "mentions_rain", True),
                     verdict(t, "tokens", None, value=120.0),
                     verdict(t, "polite", trial != 1, gating=False, rationale="the answer was curt")]
    for trial in range(3):
        t = make_trace("booking", trial)
        traces.append(t)
        verdicts.append(verdict(t, "agent_completed", True))
        if trial == 0:
            verdicts.append(verdict(t, "booked", True, cost_usd=0.002))
        elif trial == 1:
            verdicts.append(verdict(t, "booked", False, rationale="no reservation was created", cost_usd=0.002))
        else:
            verdicts.append(verdict(t, "booked", None, error="judge model returned 503"))
    t = make_trace("slow", 0, status=TraceStatus.TIMEOUT, error="timed out after 30s", output="")
    traces.append(t)
    verdicts += [verdict(t, "agent_completed", False, rationale="the agent did not finish (timeout)")]
    return make_run(), traces, verdicts
