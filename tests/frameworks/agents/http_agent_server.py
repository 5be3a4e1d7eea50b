"""An agent served behind an OpenAI-compatible chat endpoint (FastAPI), instrumented by hand with
OpenTelemetry following the GenAI conventions, exporting over OTLP to ``OTEL_EXPORTER_OTLP_ENDPOINT``.

It continues the caller's trace (W3C ``traceparent``), runs the same ``openai`` SDK tool loop as
the other agents, and writes its answer into the caller's workspace (``X-Costar-Workspace``).
Run: ``python http_agent_server.py PORT``.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from openai import OpenAI
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from shop import OPENAI_TOOLS, SYSTEM, Shop

MODEL = "gpt-4.1-mini"
provider = TracerProvider(resource=Resource.create({"service.name": "support-agent"}))
provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
tracer = provider.get_tracer("support-agent")
app = FastAPI()


def _chat(client: OpenAI, messages: list[dict[str, Any]]) -> dict[str, Any]:
    with tracer.start_as_current_span(f"chat {MODEL}") as span:
        span.set_attributes({"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
                             "gen_ai.request.model": MODEL, "gen_ai.input.messages": json.dumps(messages)})
        resp = client.chat.completions.create(model=MODEL, messages=messages, tools=OPENAI_TOOLS)
        msg = resp.choices[0].message.model_dump(exclude_none=True)
        span.set_attributes({"gen_ai.response.model": resp.model, "gen_ai.response.id": resp.id,
                             "gen_ai.usage.input_tokens": resp.usage.prompt_tokens,
                             "gen_ai.usage.output_tokens": resp.usage.completion_tokens,
                             "gen_ai.output.messages": json.dumps([{**msg, "finish_reason":
                                                                    resp.choices[0].finish_reason}])})
        return msg


def _tool(shop: Shop, call: dict[str, Any]) -> str:
    name = call["function"]["name"]
    with tracer.start_as_current_span(f"execute_tool {name}") as span:
        span.set_attributes({"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": name,
                             "gen_ai.tool.call.id": call["id"],
                             "gen_ai.tool.call.arguments": call["function"]["arguments"]})
        result, failed = shop.call(name, call["function"]["arguments"])
        span.set_attribute("gen_ai.tool.call.result", result)
        if failed:
            span.set_status(Status(StatusCode.ERROR, result))
        return result


@app.post("/v1/chat/completions")
async def chat(request: Request) -> dict[str, Any]:
    body = await request.json()
    context = TraceContextTextMapPropagator().extract(dict(request.headers))
    shop = Shop(request.headers.get("x-costar-workspace", "."))
    client = OpenAI(base_url=os.environ["MODEL_BASE_URL"], api_key="sk-test-scripted")
    messages = [{"role": "system", "content": SYSTEM}, *body["messages"]]
    with tracer.start_as_current_span("invoke_agent support", context=context,
                                      attributes={"gen_ai.operation.name": "invoke_agent",
                                                  "gen_ai.agent.name": "support"}):
        while True:
            msg = _chat(client, messages)
            messages.append(msg)
            if not msg.get("tool_calls"):
                break
            for call in msg["tool_calls"]:
                messages.append({"role": "tool", "tool_call_id": call["id"], "content": _tool(shop, call)})
    answer = msg.get("content") or ""
    shop.write_answer(answer)
    return {"id": "agent-reply", "object": "chat.completion", "model": "support-agent",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": answer}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}}


@app.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok"}


if __name__ == "__main__":
    trace.set_tracer_provider(provider)
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
