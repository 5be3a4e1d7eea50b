"""Tool definitions and fingerprints, and the finalisation rules for MCP tool spans (hand-built spans)."""

from __future__ import annotations

from typing import Any

from costar.trace.finalize import finalize_spans, merge_duplicate_tool_spans
from costar.trace.model import Span, SpanKind, StatusCode, compute_totals
from costar.trace.tool_definition import ToolDefinition, canonical_json, tool_fingerprint
from costar.trace.tools import tool_definitions, tool_name_matches

MS = 1_000_000
TRACE = "cd" * 16
SCHEMA = {"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "integer"}}, "required": ["a", "b"]}


# --------------------------------------------------------------------------- fingerprints


def test_the_fingerprint_ignores_key_order_required_order_and_surrounding_whitespace() -> None:
    base = tool_fingerprint("t", "Does things.", SCHEMA)
    reordered = {"required": ["b", "a"], "properties": {"b": {"type": "integer"}, "a": {"type": "string"}},
                 "type": "object"}
    assert tool_fingerprint("t", "  Does things.\n", reordered) == base
    assert len(base) == 16


def test_the_fingerprint_changes_with_what_the_model_is_told() -> None:
    base = tool_fingerprint("t", "Does things.", SCHEMA)
    assert tool_fingerprint("t2", "Does things.", SCHEMA) != base
    assert tool_fingerprint("t", "Does other things.", SCHEMA) != base
    assert tool_fingerprint("t", "Does things.", {**SCHEMA, "required": ["a"]}) != base
    assert tool_fingerprint("t", "Does things.", SCHEMA, {"type": "object"}) != base


def test_title_and_server_are_not_part_of_the_fingerprint() -> None:
    a = ToolDefinition(name="t", description="d", input_schema=SCHEMA, title="T", server="s1")
    b = ToolDefinition(name="t", description="d", input_schema=SCHEMA, server="s2", server_version="9")
    assert a.fingerprint == b.fingerprint
    assert canonical_json("t", None, None, None) == '{"description":"","input_schema":{},"name":"t","output_schema":null}'


def test_definitions_in_every_dialect_read_the_same() -> None:
    mcp = {"name": "t", "description": "d", "inputSchema": SCHEMA}
    otel = {"type": "function", "name": "t", "description": "d", "parameters": SCHEMA}
    openai = {"type": "function", "function": {"name": "t", "description": "d", "parameters": SCHEMA}}
    anthropic = {"name": "t", "description": "d", "input_schema": SCHEMA}
    prints = {ToolDefinition.from_any(x).fingerprint for x in (mcp, otel, openai, anthropic)}  # type: ignore[union-attr]
    assert len(prints) == 1
    assert ToolDefinition.from_any({"description": "no name"}) is None
    assert ToolDefinition.from_any("not json") is None


# --------------------------------------------------------------------------- spans


def _span(span_id: str, start: int, end: int, kind: SpanKind, attrs: dict[str, Any], parent: str | None = "root",
          status: StatusCode = StatusCode.OK, name: str = "") -> Span:
    return Span(trace_id=TRACE, span_id=span_id, parent_id=parent, name=name or span_id, kind=kind,
                start_ns=start * MS, end_ns=end * MS, status={"code": status}, attributes=attrs)


def _mcp_call(span_id: str, start: int, end: int, tool: str = "list_orders", parent: str | None = "root",
              args: Any = None, **extra: Any) -> Span:
    attrs = {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": tool, "mcp.method.name": "tools/call",
             "costar.capture": "mcp", "costar.mcp.server.name": "shop",
             "gen_ai.tool.call.arguments": args if args is not None else {"customer_id": "C-42"}, **extra}
    return _span(span_id, start, end, SpanKind.TOOL, attrs, parent, name=f"execute_tool {tool}")


def test_definitions_come_from_mcp_listings_then_from_model_requests() -> None:
    listing = _span("list", 0, 1, SpanKind.CHAIN, {
        "mcp.method.name": "tools/list", "costar.mcp.server.name": "shop", "costar.mcp.server.version": "1",
        "gen_ai.tool.definitions": '[{"type": "function", "name": "list_orders", "parameters": {}}]'})
    chat = _span("chat", 2, 3, SpanKind.LLM, {"gen_ai.tool.definitions": [
        {"type": "function", "name": "list_orders", "description": "as the agent re-described it"},
        {"type": "function", "name": "local_tool", "parameters": {"type": "object"}}]})
    defs = tool_definitions([chat, listing])
    assert [(d.name, d.server, d.source) for d in defs] == [("list_orders", "shop", "mcp"),
                                                            ("local_tool", None, "model")]


def test_a_framework_tool_span_around_an_mcp_call_is_one_tool_run() -> None:
    framework = _span("fw", 10, 40, SpanKind.TOOL, {"gen_ai.operation.name": "execute_tool",
                                                     "gen_ai.tool.name": "shop__list_orders",
                                                     "gen_ai.tool.call.id": "call_1"})
    inner = _mcp_call("mcp", 12, 38, parent="fw")
    inner.status.code = StatusCode.ERROR
    inner.attributes["error.type"] = "tool_error"
    child = _span("io", 13, 14, SpanKind.CHAIN, {}, parent="mcp")
    spans = merge_duplicate_tool_spans([framework, inner, child])
    assert [s.span_id for s in spans] == ["fw", "io"]
    merged = spans[0]
    assert merged.attributes["gen_ai.tool.name"] == "shop__list_orders"  # the outer span keeps what it recorded
    assert merged.attributes["costar.mcp.server.name"] == "shop"
    assert merged.attributes["costar.merged"] == ["mcp"]
    assert merged.status.code == StatusCode.ERROR  # the real execution failed
    assert spans[1].parent_id == "fw"
    assert compute_totals(spans, 0).tool_calls == 1


def test_mcp_spans_that_disagree_are_separate_calls() -> None:
    outer = _mcp_call("a", 0, 50, args={"customer_id": "C-1"})
    other_args = _mcp_call("b", 10, 20, args={"customer_id": "C-2"})
    other_tool = _mcp_call("c", 25, 30, tool="lookup_customer")
    outside = _mcp_call("d", 60, 70)
    other_request = _mcp_call("e", 80, 90, **{"jsonrpc.request.id": "1"})
    inside_other_request = _mcp_call("f", 81, 89, **{"jsonrpc.request.id": "2"})
    spans = [outer, other_args, other_tool, outside, other_request, inside_other_request]
    assert len(merge_duplicate_tool_spans(spans)) == 6


def test_an_mcp_call_the_model_knows_under_a_prefixed_name_is_not_inferred_again() -> None:
    request = {"type": "tool_call", "id": "call_9", "name": "shop__list_orders", "arguments": {"customer_id": "C-42"}}
    first = _span("l1", 0, 10, SpanKind.LLM, {"gen_ai.output.messages": [{"role": "assistant", "parts": [request]}]})
    second = _span("l2", 30, 40, SpanKind.LLM, {"gen_ai.input.messages": [{"role": "tool", "parts": [
        {"type": "tool_call_response", "id": "call_9", "response": "[]"}]}]})
    call = _mcp_call("mcp", 12, 20)
    spans = finalize_spans([first, call, second])
    tools = [s for s in spans if s.kind == SpanKind.TOOL]
    assert [s.span_id for s in tools] == ["mcp"]
    assert tools[0].attributes["gen_ai.tool.call.id"] == "call_9"


def test_tool_name_matching() -> None:
    assert tool_name_matches("list_orders", "list_orders")
    assert tool_name_matches("mcp__shop__list_orders", "list_orders")
    assert tool_name_matches("shop.list_orders", "list_orders")
    assert not tool_name_matches("list_orders2", "list_orders")
    assert not tool_name_matches("orders", "list_orders")
