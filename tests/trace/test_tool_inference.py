"""Inferred TOOL spans (issue 9 item 2): the tool runs the model's messages prove, never counted twice.

Unit tests on hand-built spans for each rule of ``costar.trace.tool_inference`` and
``costar.trace.finalize``, then the checks' messages, then end-to-end: a command agent whose only
instrumentation is ``costar.trace.span`` (no model SDK imported) is recorded.
"""

from __future__ import annotations

import asyncio
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from costar.judges.base import JudgeContext
from costar.judges.checks import parse_check
from costar.run.agents import make_agent
from costar.run.harness import Harness, HarnessOptions
from costar.scenario import Scenario
from costar.store.base import Run
from costar.store.sqlite import SQLiteStore
from costar.trace.finalize import finalize_spans, merge_duplicate_llm_spans
from costar.trace.model import Span, SpanKind, StatusCode, Trace, compute_totals
from costar.trace.tool_inference import (
    INFERRED,
    infer_tool_spans,
    is_error_result,
    requested_tool_calls,
    with_inferred_tools,
)

MS = 1_000_000
TRACE = "ab" * 16


def llm(span_id: str, start: int, end: int, *, inputs: list[dict[str, Any]] | None = None,
        calls: list[dict[str, Any]] | None = None, parent: str = "root", **attrs: Any) -> Span:
    out_parts = [{"type": "tool_call", **c} for c in calls or []] or [{"type": "text", "content": "done"}]
    return Span(trace_id=TRACE, span_id=span_id, parent_id=parent, name="chat m", kind=SpanKind.LLM,
                start_ns=start * MS, end_ns=end * MS,
                attributes={"gen_ai.input.messages": inputs or [{"role": "user", "parts": [
                    {"type": "text", "content": "go"}]}],
                            "gen_ai.output.messages": [{"role": "assistant", "parts": out_parts}], **attrs})


def result(call_id: str | None, response: Any, **extra: Any) -> dict[str, Any]:
    part: dict[str, Any] = {"type": "tool_call_response", "response": response, **extra}
    if call_id is not None:
        part["id"] = call_id
    return {"role": "tool", "parts": [part]}


def tool(span_id: str, start: int, name: str, *, call_id: str | None = None, args: Any = None,
         status: StatusCode = StatusCode.OK) -> Span:
    attrs: dict[str, Any] = {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": name}
    if call_id is not None:
        attrs["gen_ai.tool.call.id"] = call_id
    if args is not None:
        attrs["gen_ai.tool.call.arguments"] = args
    return Span(trace_id=TRACE, span_id=span_id, parent_id="root", name=name, kind=SpanKind.TOOL,
                start_ns=start * MS, end_ns=(start + 1) * MS, status={"code": status}, attributes=attrs)


def two_step(response: Any = '{"name": "Ada"}', **extra: Any) -> list[Span]:
    """The model asks for lookup(C-42); the next request carries the result."""
    first = llm("l1", 0, 10, calls=[{"id": "c1", "name": "lookup", "arguments": {"id": "C-42"}}], parent="p")
    second = llm("l2", 20, 30, inputs=[{"role": "user", "parts": [{"type": "text", "content": "go"}]},
                                       result("c1", response, **extra)], parent="p")
    return [first, second]


def test_a_requested_and_answered_call_becomes_one_inferred_tool_span() -> None:
    spans = two_step()
    inferred = infer_tool_spans(spans)
    assert len(inferred) == 1
    s = inferred[0]
    assert s.kind == SpanKind.TOOL
    assert s.name == "execute_tool lookup"
    a = s.attributes
    assert (a["gen_ai.tool.name"], a["gen_ai.tool.call.id"], a["gen_ai.tool.call.arguments"]) == ("lookup", "c1",
                                                                                                  {"id": "C-42"})
    assert a["gen_ai.tool.call.result"] == '{"name": "Ada"}'
    assert a[INFERRED] is True
    assert a["costar.inferred.requested_by"] == "l1"
    # Between the requesting call's end and the next call's start, beside the LLM spans in the tree.
    assert (s.start_ns, s.end_ns, s.parent_id) == (10 * MS, 20 * MS, "p")
    assert s.status.code == StatusCode.OK


def test_a_call_with_no_result_seen_is_not_inferred_but_is_listed_as_requested() -> None:
    only = [llm("l1", 0, 10, calls=[{"id": "c1", "name": "lookup", "arguments": {}}])]
    assert infer_tool_spans(only) == []
    assert [(c.name, c.call_id) for c in requested_tool_calls(only)] == [("lookup", "c1")]


def test_inference_is_idempotent_and_totals_count_each_run_once() -> None:
    once = with_inferred_tools(two_step())
    twice = with_inferred_tools(once)
    assert [s.span_id for s in twice] == [s.span_id for s in once]
    assert compute_totals(twice, 0).tool_calls == 1
    assert compute_totals(twice, 0).llm_calls == 2


def test_an_emitted_tool_span_with_the_call_id_is_not_counted_again() -> None:
    spans = [*two_step(), tool("t1", 12, "lookup", call_id="c1", args={"id": "C-42"})]
    assert infer_tool_spans(spans) == []


def test_an_emitted_span_without_id_covers_the_call_by_name_arguments_and_time() -> None:
    emitted = tool("t1", 12, "lookup", args={"id": "C-42"})
    spans = [*two_step(), emitted]
    assert infer_tool_spans(spans) == []
    # It gets the call id from the model's side, and says so.
    assert emitted.attributes["gen_ai.tool.call.id"] == "c1"
    assert emitted.attributes["costar.completed_from_messages"] == ["gen_ai.tool.call.id", "gen_ai.tool.call.result"]


@pytest.mark.parametrize(("name", "args", "start"), [
    ("other_tool", {"id": "C-42"}, 12),   # another tool
    ("lookup", {"id": "C-7"}, 12),        # other arguments
    ("lookup", {"id": "C-42"}, 45),       # after the call that received the result ended
])
def test_an_emitted_span_that_differs_does_not_hide_the_call(name: str, args: Any, start: int) -> None:
    spans = [*two_step(), tool("t1", start, name, args=args)]
    assert len(infer_tool_spans(spans)) == 1


def test_a_bare_single_argument_value_matches_and_gets_structured_arguments() -> None:
    emitted = tool("t1", 12, "lookup", args="C-42")  # LangChain's form for a one-argument tool
    assert infer_tool_spans([*two_step(), emitted]) == []
    assert emitted.attributes["gen_ai.tool.call.arguments"] == {"id": "C-42"}
    assert emitted.attributes["costar.tool.call.arguments.recorded"] == "C-42"


def test_one_emitted_span_covers_only_one_of_two_identical_calls() -> None:
    first = llm("l1", 0, 10, calls=[{"id": "c1", "name": "lookup", "arguments": {"id": "C-42"}},
                                    {"id": "c2", "name": "lookup", "arguments": {"id": "C-42"}}])
    second = llm("l2", 20, 30, inputs=[result("c1", "a"), result("c2", "b")])
    inferred = infer_tool_spans([first, second, tool("t1", 12, "lookup", args={"id": "C-42"})])
    assert [s.attributes["gen_ai.tool.call.id"] for s in inferred] == ["c2"]


def test_calls_and_results_without_ids_pair_by_position() -> None:
    first = llm("l1", 0, 10, calls=[{"name": "a", "arguments": {}}, {"name": "b", "arguments": {}}])
    second = llm("l2", 20, 30, inputs=[result(None, "ra"), result(None, "rb")])
    inferred = infer_tool_spans([first, second])
    assert [(s.attributes["gen_ai.tool.name"], s.attributes["gen_ai.tool.call.result"]) for s in inferred] == [
        ("a", "ra"), ("b", "rb")]


def test_the_same_response_seen_by_two_recorders_is_requested_once() -> None:
    spans = [*two_step(), llm("l1b", 1, 9, calls=[{"id": "c1", "name": "lookup", "arguments": {"id": "C-42"}}])]
    assert len(requested_tool_calls(spans)) == 1
    assert len(infer_tool_spans(spans)) == 1


@pytest.mark.parametrize("response", [
    "Error: orders service temporarily unavailable",
    "error - timeout",
    "Exception: boom",
    "Traceback (most recent call last):\n  File x",
    "An error occurred while running the tool. Please try again.",
    "orders service down\n\nFix the errors and try again.",
    {"error": "not found"},
    {"isError": True, "content": []},
    '{"error": {"code": 500}}',
])
def test_results_that_report_an_error_make_an_error_span(response: Any) -> None:
    assert is_error_result(response)
    s = infer_tool_spans(two_step(response))[0]
    assert s.status.code == StatusCode.ERROR
    assert s.attributes["error.type"] == "tool_error"
    assert s.status.message.startswith("the tool reported an error: ")


@pytest.mark.parametrize("response", [
    '{"name": "Ada"}', "3 errors were fixed", "No errors found", {"error": None, "result": 1},
    {"error": "", "value": 2}, "",
])
def test_ordinary_results_are_not_errors(response: Any) -> None:
    assert not is_error_result(response)


def test_an_explicit_error_flag_wins_over_the_text() -> None:
    assert infer_tool_spans(two_step("fine", is_error=True))[0].status.code == StatusCode.ERROR
    assert infer_tool_spans(two_step("Error: looks bad", is_error=False))[0].status.code == StatusCode.OK


# --------------------------------------------------------------------------- merging duplicate LLM spans


def test_an_sdk_captured_llm_span_merges_into_the_framework_span_of_the_same_call() -> None:
    framework = llm("f1", 0, 10, **{"gen_ai.usage.input_tokens": 5, "gen_ai.response.id": "r1"})
    framework.attributes.pop("gen_ai.input.messages")
    captured = llm("s1", 1, 9, parent="process", **{"costar.capture": "sdk", "gen_ai.usage.input_tokens": 5,
                                                    "gen_ai.response.id": "r1", "costar.usage.cost_usd": 0.5})
    out = merge_duplicate_llm_spans([framework, captured])
    assert [s.span_id for s in out] == ["f1"]
    assert out[0].attributes["costar.usage.cost_usd"] == 0.5  # what the framework span lacked
    assert out[0].attributes["gen_ai.input.messages"]
    assert out[0].attributes["costar.merged"] == ["sdk"]


@pytest.mark.parametrize("differs", [{"gen_ai.response.id": "other"}, {"gen_ai.usage.input_tokens": 6},
                                     {"gen_ai.response.model": "claude-haiku-4-5"}])
def test_llm_spans_that_disagree_are_not_merged(differs: dict[str, Any]) -> None:
    framework = llm("f1", 0, 10, **{"gen_ai.usage.input_tokens": 5, "gen_ai.response.id": "r1",
                                    "gen_ai.response.model": "gpt-4o"})
    captured = llm("s1", 1, 9, **{"costar.capture": "sdk", "gen_ai.usage.input_tokens": 5,
                                  "gen_ai.response.id": "r1", "gen_ai.response.model": "gpt-4o-2024-08-06",
                                  **differs})
    assert len(merge_duplicate_llm_spans([framework, captured])) == 2


def test_a_captured_call_outside_the_framework_span_is_not_merged_into_it() -> None:
    framework = llm("f1", 0, 10)
    captured = llm("s1", 30, 40, **{"costar.capture": "sdk"})
    assert len(merge_duplicate_llm_spans([framework, captured])) == 2


def test_an_sdks_own_span_inside_the_captured_wrapper_of_the_same_method_merges() -> None:
    # The Anthropic SDK traces messages.create inside the method coSTAR's capture wraps: its span is
    # the inner one, and the captured span may end well after it (the capture prices the response).
    sdk_own = llm("a1", 2, 8, **{"gen_ai.usage.input_tokens": 5})
    sdk_own.attributes.pop("gen_ai.input.messages")
    agent_level = llm("agent", 0, 900, **{"gen_ai.usage.input_tokens": 5})
    captured = llm("s1", 1, 400, **{"costar.capture": "sdk", "gen_ai.usage.input_tokens": 5})
    out = merge_duplicate_llm_spans([agent_level, sdk_own, captured])
    assert sorted(s.span_id for s in out) == ["a1", "agent"]  # the tightest fit, not the agent-level span
    merged = next(s for s in out if s.span_id == "a1")
    assert merged.attributes["costar.merged"] == ["sdk"]
    assert merged.attributes["gen_ai.input.messages"]


def test_unpriced_llm_spans_get_a_cost_from_the_price_table() -> None:
    span = llm("f1", 0, 10, **{"gen_ai.usage.input_tokens": 1_000_000, "gen_ai.usage.output_tokens": 0,
                               "gen_ai.request.model": "gpt-4.1-mini", "gen_ai.provider.name": "openai"})
    from costar.models.pricing import PriceTable

    finalize_spans([span], price=PriceTable().cost)
    assert span.attributes["costar.usage.cost_usd"] == pytest.approx(0.40)
    assert span.attributes["costar.cost_known"] is True


# --------------------------------------------------------------------------- what the checks say


def _ctx(spans: list[Span]) -> JudgeContext:
    return JudgeContext(trace=Trace(trace_id=TRACE, spans=spans, totals=compute_totals(spans, 0)))


def test_tool_called_says_what_the_model_requested_when_nothing_ran() -> None:
    calls = [{"id": f"c{i}", "name": "lookup_customer", "arguments": {}} for i in (1, 2)]
    spans = [llm("l1", 0, 10, calls=calls[:1]), llm("l2", 20, 30, calls=calls[1:])]  # never answered
    v = parse_check({"tool_called": "lookup_customer"}).evaluate(_ctx(spans))
    assert v.passed is False
    assert v.rationale == ("tool 'lookup_customer' called 0 time(s); expected [1, ∞]; the model requested "
                           "lookup_customer twice; no tool execution was recorded (no TOOL span, and no result "
                           "was sent back to the model)")


def test_tool_called_says_when_llm_spans_carry_no_messages() -> None:
    bare = Span(trace_id=TRACE, span_id="l1", name="chat m", kind=SpanKind.LLM, start_ns=0, end_ns=1)
    v = parse_check({"tool_called": "lookup"}).evaluate(_ctx([bare]))
    assert "no LLM span records its output messages" in v.rationale


def test_tool_called_names_the_tools_that_were_seen_and_counts_inferred_ones() -> None:
    spans = with_inferred_tools(two_step())
    missing = parse_check({"tool_called": "delete_account"}).evaluate(_ctx(spans))
    assert missing.rationale.endswith("the model never requested 'delete_account'; tools seen: lookup")
    found = parse_check({"tool_called": "lookup"}).evaluate(_ctx(spans))
    assert found.passed is True
    assert found.rationale == "tool 'lookup' called 1 time(s); expected [1, ∞] (1 inferred from the model's messages)"


def test_tool_order_names_requested_calls_that_never_ran() -> None:
    spans = [*with_inferred_tools(two_step()),
             llm("l3", 40, 50, calls=[{"id": "c9", "name": "write_file", "arguments": {}}])]
    v = parse_check({"tool_order": ["lookup", "write_file"]}).evaluate(_ctx(spans))
    assert v.passed is False
    assert v.rationale.endswith("the model requested ['lookup', 'write_file']")


# --------------------------------------------------------------------------- costar.trace.span without an SDK


def test_costar_span_in_a_command_agent_that_imports_no_model_sdk_is_recorded(project: Path,
                                                                               store: SQLiteStore) -> None:
    (project / "agent.py").write_text(textwrap.dedent("""
        import sys
        from costar.trace import span
        with span("lookup_customer", kind="TOOL", attributes={"gen_ai.tool.name": "lookup_customer"}) as s:
            s.set_attribute("gen_ai.tool.call.result", "Ada")
        assert "openai" not in sys.modules
        assert "anthropic" not in sys.modules
        print("done")
    """))
    agent = make_agent({"type": "command", "command": [sys.executable, "agent.py"]})
    run = Run(agent=agent.info)
    store.create_run(run)
    res = asyncio.run(Harness(agent, store, HarnessOptions()).run([Scenario(id="s", prompt="go")], run))
    trace = store.get_trace(res.trace_ids[0])
    assert trace.status.value == "ok", trace.error
    tools = [s for s in trace.spans if s.kind == SpanKind.TOOL]
    assert [s.name for s in tools] == ["lookup_customer"]
    assert tools[0].attributes["gen_ai.tool.call.result"] == "Ada"
    assert trace.totals.tool_calls == 1
    v = parse_check({"tool_called": "lookup_customer"}).evaluate(JudgeContext(trace=trace))
    assert v.passed is True
