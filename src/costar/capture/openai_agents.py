"""The OpenAI Agents SDK's own tracing, recorded as coSTAR spans while a recording is active.

The Agents SDK traces every run (agent, tool, handoff, guardrail spans) to its trace processors
unless tracing is disabled. Capture adds one processor that turns those spans into coSTAR spans
under the current span: agents become AGENT spans, function tools TOOL spans (arguments, result,
and the error the SDK attached when the tool failed), handoffs CHAIN spans, guardrails GUARDRAIL
spans. Model calls are left to SDK capture (``costar.capture.sdk``), which records them with
their messages, so the SDK's generation/response spans are not copied. With tracing disabled the
processor sees nothing, and the tool runs are inferred from the model's messages instead.
"""

from __future__ import annotations

import threading
from typing import Any

from costar.trace.genai import parse_json
from costar.trace.model import SpanKind, StatusCode
from costar.trace.recorder import LiveSpan, current_span

SOURCE = "openai-agents"
_MODEL_SPANS = ("generation", "response", "transcription", "speech", "speech_group")


class CostarTraceProcessor:
    """An Agents SDK ``TracingProcessor`` (duck-typed, so this module never imports the SDK)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._live: dict[str, LiveSpan] = {}
        self._skipped: dict[str, LiveSpan | None] = {}  # model spans: their children go to their parent

    def _parent(self, sdk_parent_id: str | None) -> LiveSpan | None:
        with self._lock:
            if sdk_parent_id in self._live:
                return self._live[sdk_parent_id]
            if sdk_parent_id in self._skipped:
                return self._skipped[sdk_parent_id]
        parent = current_span()
        return parent if parent is not None and parent.kind != SpanKind.LLM else None

    def on_trace_start(self, trace: Any) -> None:
        pass

    def on_trace_end(self, trace: Any) -> None:
        pass

    def on_span_start(self, span: Any) -> None:
        data = span.span_data
        kind = getattr(data, "type", "")
        parent = self._parent(span.parent_id)
        if parent is None:
            return
        if kind in _MODEL_SPANS:
            with self._lock:
                self._skipped[span.span_id] = parent
            return
        name, span_kind, attrs = _describe(kind, data)
        live = parent.recording.start_span(name, span_kind, {**attrs, "costar.capture": SOURCE}, parent=parent)
        # Current in the SDK's context while it runs, so the model calls it makes (recorded by SDK
        # capture) land under the agent's turn rather than beside it.
        live.__enter__()
        with self._lock:
            self._live[span.span_id] = live

    def on_span_end(self, span: Any) -> None:
        with self._lock:
            self._skipped.pop(span.span_id, None)
            live = self._live.pop(span.span_id, None)
        if live is None:
            return
        data = span.span_data
        if getattr(data, "type", "") == "function":
            live.set_attributes({"gen_ai.tool.call.arguments": parse_json(data.input) if data.input else {},
                                 "gen_ai.tool.call.result": parse_json(data.output)
                                 if isinstance(data.output, str) else data.output})
        elif getattr(data, "type", "") == "guardrail":
            live.set_attribute("costar.guardrail.triggered", bool(data.triggered))
        error = span.error
        if error:
            message = str(error.get("message") or "error")
            detail = error.get("data")
            if isinstance(detail, dict) and detail.get("error"):
                message = f"{message}: {detail['error']}"
            live.set_attribute("error.type", "tool_error" if live.kind == SpanKind.TOOL else "agent_error")
            live.set_status(StatusCode.ERROR, message)
        live.__exit__(None, None, None)  # ends it (OK unless an error was set) and restores the parent

    def shutdown(self) -> None:
        pass

    def force_flush(self) -> None:
        pass


def _describe(kind: str, data: Any) -> tuple[str, SpanKind, dict[str, Any]]:
    if kind == "agent":
        return (f"invoke_agent {data.name}", SpanKind.AGENT,
                {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": data.name})
    if kind == "function":
        return (f"execute_tool {data.name}", SpanKind.TOOL,
                {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": data.name})
    if kind == "handoff":
        return (f"handoff {data.from_agent} -> {data.to_agent}", SpanKind.CHAIN,
                {"costar.handoff.from": data.from_agent, "costar.handoff.to": data.to_agent})
    if kind == "guardrail":
        return f"guardrail {data.name}", SpanKind.GUARDRAIL, {}
    name = getattr(data, "name", None) or kind or "span"
    return str(name), SpanKind.CHAIN, {}


_INSTALLED = False


def install(module: Any) -> bool:
    """Register the processor with the Agents SDK (``module`` is ``agents``); False when ``agents``
    is some other package of that name."""
    global _INSTALLED
    add = getattr(module, "add_trace_processor", None)
    if add is None or not hasattr(module, "Runner"):
        return False
    if not _INSTALLED:
        _INSTALLED = True
        add(CostarTraceProcessor())
    return True
