"""A Pydantic AI agent run in-process (``type: python``) that already traces itself: its module makes
its own OpenTelemetry tracer provider with its own exporter (in memory here, a collector in real
life) and instruments every agent with it. Nothing points that exporter at coSTAR.

The failing tool raises ``ModelRetry``, Pydantic AI's way of sending a tool failure back to the model.
"""

from __future__ import annotations

from typing import Any

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pydantic_ai import Agent, ModelRetry, RunContext
from pydantic_ai.models.instrumented import InstrumentationSettings
from pydantic_ai.models.openai import OpenAIChatModel
from pydantic_ai.providers.openai import OpenAIProvider
from shop import SYSTEM, Shop

EXPORTED = InMemorySpanExporter()
"""What the agent's own exporter received (the test checks it still receives everything)."""
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(EXPORTED))
Agent.instrument_all(InstrumentationSettings(tracer_provider=provider))


def lookup_customer(ctx: RunContext[Shop], customer_id: str) -> dict[str, Any]:
    """Look up a customer by id."""
    return ctx.deps.lookup_customer(customer_id)


def list_orders(ctx: RunContext[Shop], customer_id: str) -> list[dict[str, Any]]:
    """List a customer's open orders."""
    try:
        return ctx.deps.list_orders(customer_id)
    except RuntimeError as exc:
        raise ModelRetry(str(exc)) from exc


def run(task: Any) -> str:
    model = OpenAIChatModel("gpt-4.1-mini", provider=OpenAIProvider(base_url=task.env["MODEL_BASE_URL"],
                                                                    api_key="sk-test-scripted"))
    agent = Agent(model, instructions=SYSTEM, deps_type=Shop, tools=[lookup_customer, list_orders])
    shop = Shop(task.workspace)
    answer = agent.run_sync(task.prompt, deps=shop).output
    shop.write_answer(answer)
    return answer
