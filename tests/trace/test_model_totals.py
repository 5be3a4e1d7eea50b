"""A trace's totals come from its spans, whose numbers are untrusted: negative or non-numeric counts and
costs count as nothing, and a trace's cost counts for at most MAX_COST_USD, so max_cost fails on an
infinite one (it used to be stored as the text "inf" and counted as $0) and sums stay finite."""

from __future__ import annotations

import math
from typing import Any

import pytest

from costar.judges.base import JudgeContext
from costar.judges.checks import MaxCost
from costar.pricing import MAX_PRICE_PER_MTOK, PriceTable
from costar.trace.finalize import price_llm_spans
from costar.trace.model import MAX_COST_USD, Span, SpanKind, Trace, compute_totals

INT64 = 2**63 - 1


def llm(span_id: str, **attributes: Any) -> Span:
    return Span(trace_id="ab" * 16, span_id=span_id, name="chat m", kind=SpanKind.LLM, start_ns=1, end_ns=2,
                attributes={"gen_ai.request.model": "m", **attributes})


@pytest.mark.parametrize(("costs", "total"), [
    (["inf"], MAX_COST_USD),  # a float inf as the store keeps it
    ([math.inf, 1.0], MAX_COST_USD),
    ([1e308, 1e308], MAX_COST_USD),  # a sum that overflows
    ([10**400], MAX_COST_USD),  # an integer beyond a float
    ([0.5, math.nan, "nan", "-inf", -math.inf, "free", None, 0.25], 0.75),  # not a number: nothing
])
def test_a_cost_too_large_for_any_budget_counts_as_the_most_a_trace_may_cost(costs: list[Any], total: float) -> None:
    spans = [llm(f"{i:016x}", **{"costar.usage.cost_usd": c}) for i, c in enumerate(costs)]
    totals = compute_totals(spans, 0.0)
    assert totals.cost_usd == total
    verdict = MaxCost(limit=1).run(JudgeContext(trace=Trace(trace_id="ab" * 16, spans=spans, totals=totals)))
    assert verdict.passed is (total <= 1)


def test_spans_priced_at_the_highest_price_with_the_largest_counts_cost_a_finite_amount() -> None:
    table = PriceTable().with_overrides({"m": [MAX_PRICE_PER_MTOK, MAX_PRICE_PER_MTOK]})
    spans = [llm(f"{i:016x}", **{"gen_ai.usage.input_tokens": INT64, "gen_ai.usage.output_tokens": 10**400})
             for i in range(3)]
    price_llm_spans(spans, table.cost)
    costs = [s.attributes["costar.usage.cost_usd"] for s in spans]
    assert all(math.isfinite(c) and c == 2.0 * INT64 for c in costs)
    assert compute_totals(spans, 0.0).cost_usd == MAX_COST_USD  # 6 * (2^63 - 1) dollars: beyond any budget


def _llm(i: int, **attrs: Any) -> Span:
    return Span(trace_id="t" * 32, span_id=f"{i:016x}", name="chat", kind=SpanKind.LLM, start_ns=i, end_ns=i + 1,
                attributes=attrs)


def test_negative_counts_and_costs_count_as_nothing() -> None:
    """A span reporting -1000 tokens or -$50 would otherwise let a trace slip under its budgets."""
    spans = [_llm(1, **{"gen_ai.usage.input_tokens": 100, "gen_ai.usage.output_tokens": 20,
                        "costar.usage.cost_usd": 0.25})]
    spans += [_llm(i, **{"gen_ai.usage.input_tokens": -1000, "gen_ai.usage.output_tokens": "-5",
                         "costar.usage.cost_usd": -50, "costar.retries": -3}) for i in range(2, 5)]
    t = compute_totals(spans, 1.0)
    assert (t.input_tokens, t.output_tokens, t.total_tokens) == (100, 20, 120)
    assert t.cost_usd == 0.25
    assert t.retries == 0
    assert t.llm_calls == 4


def test_counts_beyond_64_bits_or_not_numbers_count_as_nothing() -> None:
    t = compute_totals([_llm(1, **{"gen_ai.usage.input_tokens": 2**70, "gen_ai.usage.output_tokens": "many",
                                   "costar.usage.cost_usd": "nan"}),
                        _llm(2, **{"gen_ai.usage.input_tokens": 7})], 1.0)
    assert (t.input_tokens, t.output_tokens, t.cost_usd) == (7, 0, 0.0)
