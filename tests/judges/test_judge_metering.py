"""A judge's model calls are metered onto its verdict, whatever kind of judge makes them."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from costar.judges.base import Judge, JudgeContext
from costar.models import ModelClient
from costar.models.pricing import PriceTable
from costar.testing import Rule, ScriptedModelServer
from costar.trace import Recording
from costar.trace.model import Trace, new_trace_id
from costar.verdict import Verdict


class _AsksAModel(Judge):
    """A hand-written judge (a ``python`` judge does this) that calls a model and reports no cost."""

    name = "asks"

    def __init__(self, uri: str, *, fail: bool = False) -> None:
        self.uri = uri
        self.fail = fail

    def config(self) -> dict[str, Any]:
        return {"uri": self.uri}

    def evaluate(self, ctx: JudgeContext) -> Verdict:  # runs in a worker thread
        with ModelClient(self.uri) as client:
            client.chat("Is it fine?")
            client.chat("Sure?")
        if self.fail:
            raise RuntimeError("gave up after asking")
        return Verdict(name=self.name, passed=True, value=True, rationale="asked twice")


@pytest.mark.parametrize("fail", [False, True])
def test_a_judges_model_calls_are_metered_onto_its_verdict_not_recorded(fail: bool) -> None:
    with ScriptedModelServer([Rule(text="yes", input_tokens=300, output_tokens=7)]) as srv:
        judge = _AsksAModel(srv.model_uri("gpt-4o-mini"), fail=fail)
        trace = Trace(trace_id=new_trace_id(), input="q", output="a")
        with Recording("a trial still recording") as rec:  # the one recording a fallback could pick
            verdict = asyncio.run(judge.judge(JudgeContext(trace=trace)))
    assert [s.name for s in rec.spans()] == ["a trial still recording"]
    assert verdict.outcome == ("error" if fail else "pass")
    assert (verdict.cost.input_tokens, verdict.cost.output_tokens) == (600, 14)
    assert verdict.cost.cost_usd == pytest.approx(2 * PriceTable().cost("openai", "gpt-4o-mini", 300, 7)[0])
    assert verdict.cost.cost_usd > 0
