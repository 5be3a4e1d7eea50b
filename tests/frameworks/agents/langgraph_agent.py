"""A LangGraph ReAct agent over ``langchain-openai``, instrumented as its users do: OpenInference's
LangChain instrumentation exporting over OTLP (the harness points ``OTEL_EXPORTER_OTLP_ENDPOINT`` at
itself). Run as a command agent.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from langgraph.prebuilt import ToolNode, create_react_agent
from openinference.instrumentation.langchain import LangChainInstrumentor
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from shop import SYSTEM, Shop

provider = TracerProvider()
provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
trace.set_tracer_provider(provider)
LangChainInstrumentor().instrument(tracer_provider=provider)

shop = Shop(Path.cwd())


@tool
def lookup_customer(customer_id: str) -> dict[str, Any]:
    """Look up a customer by id."""
    return shop.lookup_customer(customer_id)


@tool
def list_orders(customer_id: str) -> list[dict[str, Any]]:
    """List a customer's open orders."""
    return shop.list_orders(customer_id)


def main() -> None:
    model = ChatOpenAI(model="gpt-4.1-mini", base_url=os.environ["MODEL_BASE_URL"], api_key="sk-test-scripted",
                       streaming=os.environ.get("LANGGRAPH_STREAM") == "1", stream_usage=True)
    tools = ToolNode([lookup_customer, list_orders], handle_tool_errors=True)  # failures go back to the model
    agent = create_react_agent(model, tools, prompt=SYSTEM)
    result = agent.invoke({"messages": [("user", sys.stdin.read())]})
    answer = result["messages"][-1].content
    shop.write_answer(answer)
    print(answer)
    provider.shutdown()


if __name__ == "__main__":
    main()
