"""What every recorded trace goes through before it is stored: one span per model call, a cost on
every priced LLM span, and a TOOL span for every tool execution the messages prove.

When SDK capture and a framework's own instrumentation (OpenTelemetry, OpenInference) both see
the same model call, two LLM spans describe it. They are merged into the framework's span (it sits
in the framework's tree), which takes the attributes it lacks from the captured one (messages,
tokens, cost) and is marked ``costar.merged = ["sdk"]``. Two LLM spans describe the same call when
the captured one lies within the framework's span in time (5 ms of slack) and nothing they both
record disagrees: response id, input and output tokens, and the model (one name a prefix of the
other, as ``gpt-4o`` and ``gpt-4o-2024-08-06``).
"""

from __future__ import annotations

from collections.abc import Callable

from costar.trace.model import Span, SpanKind
from costar.trace.tool_inference import with_inferred_tools

CAPTURE = "costar.capture"
MERGED = "costar.merged"
COST = "costar.usage.cost_usd"
SLACK_NS = 5_000_000  # clock resolution differences between recorders (same host, same clock)

# (provider, model, input tokens, output tokens) -> (cost in USD, whether the price is known)
Pricer = Callable[[str, str, int, int], tuple[float, bool]]


def _model(span: Span) -> str:
    a = span.attributes
    return str(a.get("gen_ai.response.model") or a.get("gen_ai.request.model") or "")


def _agree(a: Span, b: Span, key: str) -> bool:
    x, y = a.attributes.get(key), b.attributes.get(key)
    return x is None or y is None or x == y


def _same_call(captured: Span, other: Span) -> bool:
    if captured.start_ns + SLACK_NS < other.start_ns:
        return False
    if (captured.end_ns or captured.start_ns) > (other.end_ns or other.start_ns) + SLACK_NS:
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
        target = min(candidates, key=lambda o: (c.start_ns - o.start_ns) + ((o.end_ns or 0) - (c.end_ns or 0)))
        taken.add(target.span_id)
        dropped[c.span_id] = target.span_id
        merged = {k: v for k, v in c.attributes.items() if k != CAPTURE}
        merged.update({k: v for k, v in target.attributes.items() if v is not None and v != "" and v != []})
        merged[MERGED] = sorted({*target.attributes.get(MERGED, []), "sdk"})
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
        cost, known = price(provider, _model(s), inp if isinstance(inp, int) else 0, out if isinstance(out, int) else 0)
        a[COST] = cost
        a["costar.cost_known"] = known


def finalize_spans(spans: list[Span], *, price: Pricer | None = None) -> list[Span]:
    """Merge duplicate LLM spans, price unpriced ones, add inferred TOOL spans (idempotent)."""
    spans = merge_duplicate_llm_spans(spans)
    if price is not None:
        price_llm_spans(spans, price)
    return with_inferred_tools(spans)
