"""The framework matrix: the shared scenario, the scripted model, and what every stored trace must show.

Every agent under ``agents/`` does the same task (``agents/shop.py``) against the same scripted
model: ask for ``lookup_customer``, then ``list_orders`` (which fails once), ``list_orders`` again,
then answer. Each trial therefore has exactly 4 model calls of 120 + 15 tokens and 3 tool runs,
the second of which failed.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from costar.api import run_suite
from costar.scenario import Scenario
from costar.store.sqlite import SQLiteStore
from costar.testing import Rule
from costar.trace.model import SpanKind, StatusCode, Trace, TraceStatus
from costar.verdict import Verdict

AGENTS = Path(__file__).resolve().parent / "agents"
sys.path.insert(0, str(AGENTS))

from shop import ANSWER_FILE, FAILURE, PROMPT  # noqa: E402

FINAL = "Ada Lovelace (C-42) has 2 open orders: O-1 and O-7."
IN_TOKENS, OUT_TOKENS = 120, 15
LLM_CALLS, TOOL_RUNS = 4, 3
ARGS = {"customer_id": "C-42"}


def rules() -> list[Rule]:
    """The model's side of the task, step by step by the number of tool results it has seen."""
    usage = {"input_tokens": IN_TOKENS, "output_tokens": OUT_TOKENS}
    return [
        Rule(name="lookup", tool_results=0, tool_calls=[{"name": "lookup_customer", "arguments": ARGS}], **usage),
        Rule(name="orders", tool_results=1, tool_calls=[{"name": "list_orders", "arguments": ARGS}], **usage),
        Rule(name="retry", tool_results=2, tool_calls=[{"name": "list_orders", "arguments": ARGS}], **usage),
        Rule(name="answer", tool_results=3, text=FINAL, **usage),
    ]


CHECKS: list[Any] = [
    {"tool_called": {"name": "lookup_customer", "min": 1, "max": 1}, "name": "lookup-once"},
    {"tool_called": {"name": "list_orders", "args": ARGS, "min": 2, "max": 2}, "name": "orders-twice"},
    {"tool_order": ["lookup_customer", "list_orders", "list_orders"], "name": "tool-order"},
    {"max_llm_calls": LLM_CALLS, "name": "llm-calls"},
    {"max_tokens": LLM_CALLS * (IN_TOKENS + OUT_TOKENS), "name": "tokens"},
    {"no_error_spans": {"kinds": ["LLM", "AGENT", "CHAIN"]}, "name": "no-error-outside-tools"},
    {"no_error_spans": True, "gate": False, "name": "no-error-spans"},  # the failing tool call is one
    {"file_contains": {"path": ANSWER_FILE, "value": "2 open orders"}, "name": "answer-file"},
]
PASSING = ["lookup-once", "orders-twice", "tool-order", "llm-calls", "tokens", "no-error-outside-tools",
           "answer-file", "agent_completed"]


def scenario(env: dict[str, str], trials: int = 2, timeout: float = 120) -> Scenario:
    return Scenario(id="support-orders", prompt=PROMPT, trials=trials, timeout=timeout,
                    setup={"env": env}, expectations={"checks": CHECKS})


def run_matrix(agent: dict[str, Any], store_dir: Path, env: dict[str, str], *,
               trials: int = 2) -> list[tuple[Trace, list[Verdict]]]:
    """Run the task through coSTAR's public API as a user would; the stored traces and verdicts."""
    outcome = run_suite([scenario(env, trials)], agent, store=store_dir)
    store = SQLiteStore(store_dir)
    try:
        traces = list(store.iter_traces(outcome.run.run_id))
        verdicts = store.verdicts(run_id=outcome.run.run_id)
    finally:
        store.close()
    assert len(traces) == trials
    return [(t, [v for v in verdicts if v.trace_id == t.trace_id]) for t in traces]


def _verdict(verdicts: Sequence[Verdict], name: str) -> Verdict:
    found = [v for v in verdicts if v.name == name]
    assert len(found) == 1, f"no single verdict named {name}: {[v.name for v in verdicts]}"
    return found[0]


def tool_spans(trace: Trace) -> list[Any]:
    return sorted((s for s in trace.spans if s.kind == SpanKind.TOOL), key=lambda s: s.start_ns)


def assert_matrix_trace(trace: Trace, verdicts: Sequence[Verdict], *, inferred: bool | None,
                        provider_model: str = "gpt-4.1-mini", messages: bool = True,
                        failure_text: bool = True) -> None:
    """What every framework's stored trace must show (``inferred``: whether the TOOL spans are
    inferred from the model's messages, emitted by the framework, or either; ``failure_text``:
    whether the framework lets the tool's own error message through)."""
    assert trace.status == TraceStatus.OK, trace.error
    assert len(trace.root_spans()) == 1, [s.name for s in trace.root_spans()]

    llm = [s for s in trace.spans if s.kind == SpanKind.LLM]
    assert len(llm) == LLM_CALLS, [s.name for s in llm]
    for s in llm:
        a = s.attributes
        assert str(a.get("gen_ai.response.model") or a.get("gen_ai.request.model")).startswith(provider_model)
        assert (a["gen_ai.usage.input_tokens"], a["gen_ai.usage.output_tokens"]) == (IN_TOKENS, OUT_TOKENS)
        assert a["costar.usage.cost_usd"] > 0
        if messages:
            assert a.get("gen_ai.input.messages"), s.name
            assert a.get("gen_ai.output.messages"), s.name

    tools = tool_spans(trace)
    names = [s.attributes.get("gen_ai.tool.name") for s in tools]
    assert names == ["lookup_customer", "list_orders", "list_orders"], names
    for s in tools:
        args = s.attributes.get("gen_ai.tool.call.arguments")
        assert args == ARGS, (s.name, args)
    assert "Ada Lovelace" in str(tools[0].attributes.get("gen_ai.tool.call.result"))
    if failure_text:
        assert FAILURE in str(tools[1].attributes.get("gen_ai.tool.call.result")) + (tools[1].status.message or "")
    assert "O-7" in str(tools[2].attributes.get("gen_ai.tool.call.result"))
    assert [s.status.code == StatusCode.ERROR for s in tools] == [False, True, False]
    if inferred is not None:
        assert [bool(s.attributes.get("costar.inferred")) for s in tools] == [inferred] * TOOL_RUNS

    t = trace.totals
    assert (t.llm_calls, t.tool_calls) == (LLM_CALLS, TOOL_RUNS)
    assert t.total_tokens == LLM_CALLS * (IN_TOKENS + OUT_TOKENS)
    assert t.cost_usd > 0
    answer = trace.artifact(ANSWER_FILE)
    assert answer is not None
    assert answer.origin == "agent"

    for name in PASSING:
        v = _verdict(verdicts, name)
        assert v.passed is True, (v.name, v.rationale)
    errors = _verdict(verdicts, "no-error-spans")
    assert errors.passed is False
    assert errors.evidence == [tools[1].span_id], errors.rationale
    assert "list_orders" in errors.rationale


def need(*modules: str) -> None:
    """Skip (saying why) when a framework package is not installed: the only reason to skip."""
    for m in modules:
        if importlib.util.find_spec(m) is None:
            pytest.skip(f"{m} is not installed (pip install -e '.[frameworks]'; scripts/setup --dev does it)")


def node_ready(folder: Path) -> str:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed (apt-get install nodejs npm)")
    if not (folder / "node_modules").is_dir():
        pytest.skip(f"the Node agent's packages are not installed: (cd {folder} && npm ci); scripts/setup --dev does it")
    version = subprocess.run([node, "--version"], capture_output=True, text=True, check=True).stdout
    return version.strip()
