"""What every recorded trace goes through before it is stored: one span per model call, one span per
MCP tool call, a cost on every priced LLM span, and a TOOL span for every tool execution the
messages prove.

When SDK capture and a framework's own instrumentation (OpenTelemetry, OpenInference) both see
the same model call, two LLM spans describe it. They are merged into the framework's span (it sits
in the framework's tree), which takes the attributes it lacks from the captured one (messages,
tokens, cost) and is marked ``costar.merged = ["sdk"]``. Two LLM spans describe the same call when
one lies within the other in time (5 ms of slack: the captured span inside a framework's request
span, or an SDK's own span, such as the Anthropic SDK's, inside coSTAR's wrapper of the same method)
and nothing they both record disagrees: response id, input and output tokens, and the model (one name a prefix of the
other, as ``gpt-4o`` and ``gpt-4o-2024-08-06``).

An MCP tool call can be recorded more than once too: by coSTAR's MCP capture and by the agent
framework's own TOOL span around it, or, over OpenTelemetry, by the MCP client's span and the MCP
server's span beneath it. An MCP TOOL span (``mcp.method.name`` = ``tools/call``) is folded into a
TOOL span that records the same call: one that contains it in time (5 ms of slack), names the same
tool (or that tool behind a server prefix, ``shop__list_orders``), and does not disagree with it on
the arguments or the JSON-RPC request id (where both recorded them); an ancestor is preferred, then
the tightest fit. The outer span keeps its place and takes the attributes it lacks (server, result,
fingerprint), and the MCP span's error status when it has none; it is marked ``costar.merged``.
"""

from __future__ import annotations

from typing import Protocol

from costar.trace.genai import (
    CACHE_CREATION_1H_TOKENS,
    CACHE_CREATION_TOKENS,
    CACHE_READ_TOKENS,
    parse_json,
    string_items,
)
from costar.trace.model import Span, SpanKind, StatusCode
from costar.trace.tool_inference import with_inferred_tools
from costar.trace.tools import is_mcp_call, tool_name_matches

CAPTURE = "costar.capture"
MERGED = "costar.merged"
COST = "costar.usage.cost_usd"
SLACK_NS = 5_000_000  # clock resolution differences between recorders (same host, same clock)

class Pricer(Protocol):
    """Prices one model call: (cost in USD, whether the price is known). ``input_tokens`` is the
    whole prompt; ``cache_read`` / ``cache_write`` its parts read from / written to the prompt cache,
    ``cache_write_1h`` the part of the writes kept for an hour (``PriceTable.cost`` is one)."""

    def __call__(self, provider: str, model: str, input_tokens: int, output_tokens: int, /, *,
                 cache_read: int = 0, cache_write: int = 0, cache_write_1h: int = 0) -> tuple[float, bool]: ...


def _model(span: Span) -> str:
    a = span.attributes
    return str(a.get("gen_ai.response.model") or a.get("gen_ai.request.model") or "")


def _agree(a: Span, b: Span, key: str) -> bool:
    x, y = a.attributes.get(key), b.attributes.get(key)
    return x is None or y is None or x == y


def _contains(outer: Span, inner: Span) -> bool:
    return (outer.start_ns <= inner.start_ns + SLACK_NS
            and (inner.end_ns or inner.start_ns) <= (outer.end_ns or outer.start_ns) + SLACK_NS)


def _same_call(captured: Span, other: Span) -> bool:
    if not (_contains(other, captured) or _contains(captured, other)):
        return False
    for key in ("gen_ai.response.id", "gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens"):
        if not _agree(captured, other, key):
            return False
    m1, m2 = _model(captured), _model(other)
    return not m1 or not m2 or m1.startswith(m2) or m2.startswith(m1)


def merge_duplicate_llm_spans(spans: list[Span]) -> list[Span]:
    """Fold each SDK-captured LLM span into the framework LLM span that recorded the same call."""
    captured = [s for s in spans if s.kind == SpanKind.LLM and s.attributes.get(CAPTURE) == "sdk"]
    others = [s for s in spans if s.kind == SpanKind.LLM and s.attributes.get(CAPTURE) != "sdk"]
    if not captured or not others:
        return spans
    dropped: dict[str, str] = {}  # captured span id -> the span it merged into
    taken: set[str] = set()
    for c in sorted(captured, key=lambda s: s.start_ns):
        candidates = [o for o in others if o.span_id not in taken and _same_call(c, o)]
        if not candidates:
            continue
        # The tightest fit: the framework's model-request span, not an enclosing agent-level LLM span.
        target = min(candidates, key=lambda o: abs(c.start_ns - o.start_ns) + abs((o.end_ns or 0) - (c.end_ns or 0)))
        taken.add(target.span_id)
        dropped[c.span_id] = target.span_id
        merged = {k: v for k, v in c.attributes.items() if k != CAPTURE}
        merged.update({k: v for k, v in target.attributes.items() if v is not None and v != "" and v != []})
        merged[MERGED] = sorted({*string_items(target.attributes.get(MERGED)), "sdk"})
        target.attributes = merged
    if not dropped:
        return spans
    out = []
    for s in spans:
        if s.span_id in dropped:
            continue
        if s.parent_id in dropped:
            s.parent_id = dropped[s.parent_id]
        out.append(s)
    return out


def _tool_name(span: Span) -> str:
    return str(span.attributes.get("gen_ai.tool.name") or span.name.removeprefix("execute_tool ").strip())


def _same_tool_call(outer: Span, inner: Span) -> bool:
    if not tool_name_matches(_tool_name(outer), _tool_name(inner)) or not _contains(outer, inner):
        return False
    a, b = outer.attributes, inner.attributes
    args_a, args_b = a.get("gen_ai.tool.call.arguments"), b.get("gen_ai.tool.call.arguments")
    if args_a not in (None, "", {}) and args_b not in (None, "", {}) and parse_json(args_a) != parse_json(args_b):
        return False
    return _agree(outer, inner, "jsonrpc.request.id")


def _ancestors(span: Span, by_id: dict[str, Span]) -> list[str]:
    out, seen = [], set()
    parent = span.parent_id
    while parent is not None and parent in by_id and parent not in seen:
        seen.add(parent)
        out.append(parent)
        parent = by_id[parent].parent_id
    return out


def merge_duplicate_tool_spans(spans: list[Span]) -> list[Span]:
    """Fold each MCP TOOL span into the TOOL span that recorded the same call (module docstring)."""
    mcp = [s for s in spans if is_mcp_call(s)]
    if not mcp:
        return spans
    tools = [s for s in spans if s.kind == SpanKind.TOOL]
    by_id = {s.span_id: s for s in spans}
    dropped: dict[str, str] = {}
    taken: set[str] = set()
    # Innermost first, so a server span folds into the client span before that one is considered.
    for inner in sorted(mcp, key=lambda s: (-(s.start_ns), (s.end_ns or 0))):
        candidates = [o for o in tools if o.span_id != inner.span_id and o.span_id not in dropped
                      and o.span_id not in taken and _same_tool_call(o, inner)]
        if not candidates:
            continue
        ancestors = _ancestors(inner, by_id)
        target = min(candidates, key=lambda o: (o.span_id not in ancestors, (inner.start_ns - o.start_ns)
                                                 + ((o.end_ns or 0) - (inner.end_ns or 0))))
        taken.add(target.span_id)
        dropped[inner.span_id] = target.span_id
        merged = {k: v for k, v in inner.attributes.items() if k not in (CAPTURE, MERGED)}
        merged.update({k: v for k, v in target.attributes.items() if v is not None and v != "" and v != {}})
        recorders = [*string_items(inner.attributes.get(MERGED)), str(inner.attributes.get(CAPTURE) or "mcp")]
        merged[MERGED] = sorted({*string_items(target.attributes.get(MERGED)), *recorders})
        target.attributes = merged
        if inner.status.code == StatusCode.ERROR and target.status.code != StatusCode.ERROR:
            target.status = inner.status.model_copy()
    if not dropped:
        return spans
    out = []
    for s in spans:
        if s.span_id in dropped:
            continue
        while s.parent_id in dropped:
            s.parent_id = dropped[s.parent_id]
        out.append(s)
    return out


def price_llm_spans(spans: list[Span], price: Pricer) -> None:
    """Give a cost to LLM spans that report tokens but none (spans received over OpenTelemetry)."""
    for s in spans:
        a = s.attributes
        if s.kind != SpanKind.LLM or a.get(COST) is not None:
            continue
        inp, out = a.get("gen_ai.usage.input_tokens"), a.get("gen_ai.usage.output_tokens")
        if not isinstance(inp, int) and not isinstance(out, int):
            continue
        provider = str(a.get("gen_ai.provider.name") or a.get("gen_ai.system") or "")
        cost, known = price(provider, _model(s), _count(inp), _count(out), cache_read=_count(a.get(CACHE_READ_TOKENS)),
                            cache_write=_count(a.get(CACHE_CREATION_TOKENS)),
                            cache_write_1h=_count(a.get(CACHE_CREATION_1H_TOKENS)))
        a[COST] = cost
        a["costar.cost_known"] = known


def _count(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def finalize_spans(spans: list[Span], *, price: Pricer | None = None) -> list[Span]:
    """Merge duplicate LLM and MCP tool spans, price unpriced LLM spans, add inferred TOOL spans
    (idempotent)."""
    spans = merge_duplicate_llm_spans(spans)
    spans = merge_duplicate_tool_spans(spans)
    if price is not None:
        price_llm_spans(spans, price)
    return with_inferred_tools(spans)
