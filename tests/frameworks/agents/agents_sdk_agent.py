"""An OpenAI Agents SDK agent (``openai-agents``), run as a command agent.

``AGENTS_API``: ``responses`` (the SDK's default) or ``chat_completions``.
``AGENTS_TRACING``: ``on`` (the default: the SDK traces the run) or ``off`` (``set_tracing_disabled``).
A failing tool is reported to the model by the SDK's default failure handler.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from agents import Agent, Runner, function_tool, set_default_openai_api, set_default_openai_client, set_tracing_disabled
from openai import AsyncOpenAI
from shop import SYSTEM, Shop

shop = Shop(Path.cwd())


@function_tool
def lookup_customer(customer_id: str) -> dict[str, Any]:
    """Look up a customer by id."""
    return shop.lookup_customer(customer_id)


@function_tool
def list_orders(customer_id: str) -> list[dict[str, Any]]:
    """List a customer's open orders."""
    return shop.list_orders(customer_id)


def main() -> None:
    set_default_openai_client(AsyncOpenAI(base_url=os.environ["MODEL_BASE_URL"], api_key="sk-test-scripted"),
                              use_for_tracing=False)
    set_default_openai_api(os.environ.get("AGENTS_API", "responses"))  # type: ignore[arg-type]
    set_tracing_disabled(os.environ.get("AGENTS_TRACING", "on") == "off")
    agent = Agent(name="support", instructions=SYSTEM, tools=[lookup_customer, list_orders], model="gpt-4.1-mini")
    result = Runner.run_sync(agent, sys.stdin.read())
    shop.write_answer(str(result.final_output))
    print(result.final_output)


if __name__ == "__main__":
    main()
