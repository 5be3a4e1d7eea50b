"""Judges scoring while later trials still record never land in an agent's trace (issue 9, item 1).

The matrix's support task runs with more trials than the concurrency, an LLM judge and an agentic
judge on the same scripted model server. Each trial's agent calls are slowed down, so the judges
of the first trials run while later trials are recording (the test checks that they did). Every
trace must hold exactly the agent's spans and totals; each judge's tokens and money are on its
verdict.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from costar.api import run_suite
from costar.judges.agentic import AgenticJudge
from costar.judges.llm import LlmJudge
from costar.models.pricing import PriceTable
from costar.run.harness import HarnessOptions
from costar.store.sqlite import SQLiteStore
from costar.testing import Rule, ScriptedModelServer
from costar.trace.model import SpanKind
from tests.frameworks.matrix import AGENTS, IN_TOKENS, LLM_CALLS, OUT_TOKENS, TOOL_RUNS, rules, scenario

JUDGE_MODEL = "gpt-4o-mini"  # priced, and not the agent's model: a leaked call would show by name
TRIALS, CONCURRENCY = 4, 1
LLM_JUDGE = (1000, 50)  # tokens of the LLM judge's one call
EXPLORE, SUBMIT = (2000, 20), (3000, 30)  # the agentic judge's two turns

JUDGE_RULES = [
    Rule(name="llm-judge", system="careful judge", json={"rationale": "the answer names both orders", "value": True},
         input_tokens=LLM_JUDGE[0], output_tokens=LLM_JUDGE[1]),
    Rule(name="agentic-explore", system="You judge an AI agent", tool_results=0,
         tool_calls=[{"name": "trace_info", "arguments": {}}], input_tokens=EXPLORE[0], output_tokens=EXPLORE[1]),
    Rule(name="agentic-submit", system="You judge an AI agent", tool_results=1,
         tool_calls=[{"name": "submit_verdict", "arguments": {"value": True, "rationale": "tools ran as asked"}}],
         input_tokens=SUBMIT[0], output_tokens=SUBMIT[1]),
]

# The agent's spans, by name, for each kind of agent (its root and what the harness adds around it).
AGENT_SPANS = {
    "command": {"command": 1, "process openai_loop.py": 1, "python": 1},
    "python-sync": {"run_sync": 1},
    "python-async": {"run_async": 1},
}
AGENTS_UNDER_TEST = {
    "command": {"type": "command", "command": ["python", "openai_loop.py"], "cwd": str(AGENTS)},
    "python-sync": {"type": "python", "target": "openai_loop:run_sync", "cwd": str(AGENTS)},
    "python-async": {"type": "python", "target": "openai_loop:run_async", "cwd": str(AGENTS)},
}


def _price(tokens: tuple[int, int]) -> float:
    cost, known = PriceTable().cost("openai", JUDGE_MODEL, *tokens)
    assert known
    return cost


@pytest.mark.parametrize("kind", list(AGENTS_UNDER_TEST))
def test_judges_scoring_during_later_trials_stay_out_of_every_trace(kind: str, tmp_path: Path) -> None:
    agent_rules = [r.model_copy(update={"latency": 0.25}) for r in rules()]
    with ScriptedModelServer([*JUDGE_RULES, *agent_rules]) as srv:
        judges = [LlmJudge("answer-quality", "Does the answer list the open orders? {{outputs}}",
                           model=srv.model_uri(JUDGE_MODEL)),
                  AgenticJudge("tool-use", "Did the agent look the customer up before listing orders?",
                               model=srv.model_uri(JUDGE_MODEL))]
        outcome = run_suite([scenario({"MODEL_BASE_URL": srv.base_url}, trials=TRIALS)], AGENTS_UNDER_TEST[kind],
                            store=tmp_path / ".costar", options=HarnessOptions(concurrency=CONCURRENCY),
                            extra_judges=judges)
        requests = srv.requests

    # The premise: judges were asked while a later trial's agent was still calling the model.
    rule_order = [r.rule for r in sorted(requests, key=lambda r: r.index)]
    last_agent_call = max(i for i, name in enumerate(rule_order) if name in {"lookup", "orders", "retry", "answer"})
    assert any(name == "llm-judge" for name in rule_order[:last_agent_call]), rule_order
    assert any(name == "agentic-submit" for name in rule_order[:last_agent_call]), rule_order

    store = SQLiteStore(tmp_path / ".costar")
    try:
        traces = list(store.iter_traces(outcome.run.run_id))
        verdicts = store.verdicts(run_id=outcome.run.run_id)
    finally:
        store.close()
    assert len(traces) == TRIALS
    expected = Counter({"chat gpt-4.1-mini": LLM_CALLS, "execute_tool lookup_customer": 1,
                        "execute_tool list_orders": 2, **AGENT_SPANS[kind]})
    for trace in traces:
        assert Counter(s.name for s in trace.spans) == expected, (trace.trial, sorted(s.name for s in trace.spans))
        assert not any(JUDGE_MODEL in str(s.attributes.get("gen_ai.request.model")) for s in trace.spans)
        t = trace.totals
        assert (t.llm_calls, t.tool_calls) == (LLM_CALLS, TOOL_RUNS), trace.trial
        assert (t.input_tokens, t.output_tokens) == (LLM_CALLS * IN_TOKENS, LLM_CALLS * OUT_TOKENS), trace.trial
        agent_cost = sum(s.attributes["costar.usage.cost_usd"] for s in trace.spans if s.kind == SpanKind.LLM)
        assert t.cost_usd == pytest.approx(agent_cost)

    # Each judge's spending is on its verdict, once per trace.
    by_judge: dict[str, list[Any]] = {"answer-quality": [], "tool-use": []}
    for v in verdicts:
        if v.name in by_judge:
            by_judge[v.name].append(v)
    for name, (tokens, calls) in {"answer-quality": (LLM_JUDGE, [LLM_JUDGE]),
                                  "tool-use": ((EXPLORE[0] + SUBMIT[0], EXPLORE[1] + SUBMIT[1]),
                                               [EXPLORE, SUBMIT])}.items():
        assert len(by_judge[name]) == TRIALS, name
        for v in by_judge[name]:
            assert v.passed is True, (name, v.rationale)
            assert (v.cost.input_tokens, v.cost.output_tokens) == tokens, name
            assert v.cost.cost_usd == pytest.approx(sum(_price(c) for c in calls)), name
