"""What a model call leaves behind: an LLM span when a coSTAR recording is active
(docs/CONVENTIONS.md), and its usage on every usage meter open in the caller's context.

A meter is how work that is never recorded into a trace still accounts for its model calls: a
judge runs unrecorded (its calls are not the agent's) and meters them, so its tokens and money go
to its verdict whatever the judge reports itself.
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from costar.models.types import ChatRequest, ChatResult
from costar.models.uri import ModelSpec
from costar.trace.genai import CACHE_CREATION_TOKENS, CACHE_READ_TOKENS, finish_reason, openai_messages_to_parts
from costar.trace.model import SpanKind
from costar.trace.recorder import NOOP_SPAN, LiveSpan, _NoopSpan, current_span


@dataclass
class UsageMeter:
    """Model calls made in a block (see ``metered``): summed over every task and thread it started."""

    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    cost_known: bool = True
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, result: ChatResult) -> None:
        with self._lock:
            self.calls += 1
            self.input_tokens += result.usage.input_tokens
            self.output_tokens += result.usage.output_tokens
            self.cost_usd += result.cost_usd
            self.cost_known = self.cost_known and result.cost_known


_meters: contextvars.ContextVar[tuple[UsageMeter, ...]] = contextvars.ContextVar("costar_meters", default=())


@contextlib.contextmanager
def metered() -> Iterator[UsageMeter]:
    """Meter the model calls of a block (nested meters each see the calls of their block)."""
    meter = UsageMeter()
    token = _meters.set((*_meters.get(), meter))
    try:
        yield meter
    finally:
        _meters.reset(token)


def record_usage(result: ChatResult) -> None:
    """Add a finished call's usage to every meter open in this context."""
    for meter in _meters.get():
        meter.add(result)


_REQUEST_PARAMS = {"temperature": "gen_ai.request.temperature", "max_tokens": "gen_ai.request.max_tokens",
                   "top_p": "gen_ai.request.top_p", "seed": "gen_ai.request.seed"}


def start_llm_span(spec: ModelSpec, request: ChatRequest) -> LiveSpan | _NoopSpan:
    parent = current_span()
    if parent is None:
        return NOOP_SPAN  # nothing is recording: skip building the attributes at all
    attrs: dict[str, Any] = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": spec.provider,
        "gen_ai.request.model": spec.model,
        "gen_ai.input.messages": openai_messages_to_parts(request.messages),
    }
    for name, key in _REQUEST_PARAMS.items():
        if name in request.params:
            attrs[key] = request.params[name]
    if request.tools:
        attrs["gen_ai.tool.definitions"] = [
            {"type": "function", "name": t.name, "description": t.description, "parameters": t.parameters}
            for t in request.tools]
    return parent.recording.start_span(f"chat {spec.model}", SpanKind.LLM, attrs, parent=parent)


def finish_llm_span(span: LiveSpan | _NoopSpan, result: ChatResult) -> None:
    if isinstance(span, _NoopSpan):
        return
    output = openai_messages_to_parts([{**result.message(), "finish_reason": result.finish_reason}])
    # Spans speak the OTel finish-reason vocabulary ("tool_call"), as the output message does.
    reason = finish_reason(result.finish_reason)
    attrs: dict[str, Any] = {
        "gen_ai.response.model": result.model,
        "gen_ai.usage.input_tokens": result.usage.input_tokens,
        CACHE_READ_TOKENS: result.usage.cache_read_tokens,
        CACHE_CREATION_TOKENS: result.usage.cache_write_tokens,
        "gen_ai.usage.output_tokens": result.usage.output_tokens,
        "gen_ai.response.finish_reasons": [reason] if reason else [],
        "gen_ai.output.messages": output,
        "costar.usage.cost_usd": result.cost_usd,
        "costar.cost_known": result.cost_known,
        "costar.retries": result.retries,
        "costar.cache_hit": result.cache_hit,
    }
    if result.response_id:
        attrs["gen_ai.response.id"] = result.response_id
    if result.replayed:
        attrs["costar.replayed"] = True
    span.set_attributes(attrs)


def fail_llm_span(span: LiveSpan | _NoopSpan, exc: BaseException, retries: int) -> None:
    """Error attributes; the span's context manager sets the ERROR status and the exception event."""
    span.set_attributes({"error.type": type(exc).__name__, "costar.retries": retries,
                         "costar.cache_hit": False})
