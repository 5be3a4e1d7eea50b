"""A plain tool loop over the official ``anthropic`` SDK: plain, ``create(stream=True)``, or ``messages.stream()``.

Failures go back as ``tool_result`` blocks with ``is_error: true``, as Anthropic documents.
As a command agent: ``python anthropic_loop.py`` (prompt on stdin, mode in ``LOOP_MODE``);
in-process: ``anthropic_loop:run`` (mode from the task's env).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from anthropic import Anthropic
from shop import DESCRIPTIONS, PARAMETERS, SYSTEM, Shop

MODEL = "claude-haiku-4-5"
TOOLS = [{"name": n, "description": d, "input_schema": PARAMETERS} for n, d in DESCRIPTIONS.items()]


def _events_to_blocks(events: Any) -> list[dict[str, Any]]:
    """Rebuild content blocks from raw stream events, as an agent reading ``stream=True`` does."""
    blocks: dict[int, dict[str, Any]] = {}
    partial: dict[int, str] = {}
    for e in events:
        if e.type == "content_block_start":
            blocks[e.index] = e.content_block.model_dump(exclude_none=True)
        elif e.type == "content_block_delta" and e.delta.type == "text_delta":
            blocks[e.index]["text"] += e.delta.text
        elif e.type == "content_block_delta" and e.delta.type == "input_json_delta":
            partial[e.index] = partial.get(e.index, "") + e.delta.partial_json
    for i, raw in partial.items():
        blocks[i]["input"] = json.loads(raw)
    return [blocks[i] for i in sorted(blocks)]


def loop(prompt: str, workspace: Path, base_url: str, mode: str, *, tracer_provider: Any = None) -> str:
    # With a tracer provider the SDK traces each API call itself (anthropic 2.x), content included.
    telemetry: Any = ({"tracer_provider": tracer_provider, "traces": {"content_mode": "content"}}
                      if tracer_provider is not None else {"traces": False})
    client = Anthropic(base_url=base_url, api_key="sk-ant-test-scripted", open_telemetry=telemetry)
    shop = Shop(workspace)
    messages: list[dict[str, Any]] = [{"role": "user", "content": prompt}]
    args = {"model": MODEL, "max_tokens": 512, "system": SYSTEM, "tools": TOOLS}
    while True:
        if mode == "stream-helper":
            with client.messages.stream(messages=messages, **args) as stream:
                for _ in stream.text_stream:
                    pass
                blocks = [b.model_dump(exclude_none=True) for b in stream.get_final_message().content]
        elif mode == "stream":
            blocks = _events_to_blocks(client.messages.create(messages=messages, stream=True, **args))
        else:
            blocks = [b.model_dump(exclude_none=True) for b in client.messages.create(messages=messages, **args).content]
        blocks = [{k: v for k, v in b.items() if k in ("type", "text", "id", "name", "input")} for b in blocks]
        messages.append({"role": "assistant", "content": blocks})
        uses = [b for b in blocks if b["type"] == "tool_use"]
        if not uses:
            answer = "".join(b.get("text", "") for b in blocks)
            shop.write_answer(answer)
            return answer
        results = []
        for use in uses:
            text, failed = shop.call(use["name"], use["input"])
            results.append({"type": "tool_result", "tool_use_id": use["id"], "content": text, "is_error": failed})
        messages.append({"role": "user", "content": results})


def run(task: Any) -> str:
    return loop(task.prompt, task.workspace, task.env["ANTHROPIC_BASE_URL"], task.env.get("LOOP_MODE", "plain"))


_provider: Any = None


def run_traced(task: Any) -> str:
    """``run`` with the SDK's own OpenTelemetry spans on, from a provider the agent makes on its first call."""
    global _provider
    if _provider is None:
        from opentelemetry.sdk.trace import TracerProvider

        _provider = TracerProvider()
    return loop(task.prompt, task.workspace, task.env["ANTHROPIC_BASE_URL"], task.env.get("LOOP_MODE", "plain"),
                tracer_provider=_provider)


def main() -> None:
    provider: Any = None
    if os.environ.get("ANTHROPIC_OTEL") == "1":  # the SDK's own spans, exported where the harness says
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        provider = TracerProvider()
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    print(loop(sys.stdin.read(), Path.cwd(), os.environ["ANTHROPIC_BASE_URL"], os.environ.get("LOOP_MODE", "plain"),
               tracer_provider=provider))
    if provider is not None:
        provider.shutdown()


if __name__ == "__main__":
    main()
