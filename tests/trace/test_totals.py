"""A trace's totals are derived from its spans, whose numbers are untrusted (costar.trace.model.compute_totals)."""

from __future__ import annotations

import math
from typing import Any

from costar.trace.model import MAX_SPAN_COST_USD, Span, SpanKind, compute_totals


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


def test_a_huge_cost_stays_finite_and_counts_as_the_most_a_span_may_cost() -> None:
    spans = [_llm(i, **{"costar.usage.cost_usd": 1e308}) for i in range(5)]
    spans.append(_llm(9, **{"costar.usage.cost_usd": "inf"}))
    t = compute_totals(spans, 1.0)
    assert math.isfinite(t.cost_usd)
    assert t.cost_usd == 5 * MAX_SPAN_COST_USD  # "inf" is not a number a span can cost: nothing


def test_counts_beyond_64_bits_or_not_numbers_count_as_nothing() -> None:
    t = compute_totals([_llm(1, **{"gen_ai.usage.input_tokens": 2**70, "gen_ai.usage.output_tokens": "many",
                                   "costar.usage.cost_usd": "nan"}),
                        _llm(2, **{"gen_ai.usage.input_tokens": 7})], 1.0)
    assert (t.input_tokens, t.output_tokens, t.cost_usd) == (7, 0, 0.0)
