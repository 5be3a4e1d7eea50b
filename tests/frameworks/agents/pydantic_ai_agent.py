"""A Pydantic AI agent over its OpenAI chat model, instrumented with OpenTelemetry (``Agent.instrument_all()``
with an OTLP exporter the harness points at itself). Run as a command agent.

The failing tool raises ``ModelRetry``, Pydantic AI's way of sending a tool failure back to the model.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from pydantic_ai import Agent, ModelRetry
from pydantic_ai.models.openai import OpenAIChatModel
from pydantic_ai.providers.openai import OpenAIProvider
from shop import SYSTEM, Shop

provider = TracerProvider()
provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
trace.set_tracer_provider(provider)

shop = Shop(Path.cwd())
model = OpenAIChatModel("gpt-4.1-mini", provider=OpenAIProvider(base_url=os.environ["MODEL_BASE_URL"],
                                                                api_key="sk-test-scripted"))
Agent.instrument_all()  # every agent emits OpenTelemetry GenAI spans
agent = Agent(model, instructions=SYSTEM)


@agent.tool_plain
def lookup_customer(customer_id: str) -> dict[str, Any]:
    """Look up a customer by id."""
    return shop.lookup_customer(customer_id)


@agent.tool_plain
def list_orders(customer_id: str) -> list[dict[str, Any]]:
    """List a customer's open orders."""
    try:
        return shop.list_orders(customer_id)
    except RuntimeError as exc:
        raise ModelRetry(str(exc)) from exc


def main() -> None:
    prompt = sys.stdin.read()
    if os.environ.get("PYDANTIC_AI_STREAM") == "1":
        async def streamed() -> str:
            async with agent.run_stream(prompt) as result:
                return await result.get_output()
        import asyncio
        answer = asyncio.run(streamed())
    else:
        answer = agent.run_sync(prompt).output
    shop.write_answer(answer)
    print(answer)
    provider.shutdown()


if __name__ == "__main__":
    main()
