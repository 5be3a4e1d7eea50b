"""The shop scenarios, the scripted model that drives the shop agent, and the shop MCP server over HTTP.

Two scenarios: ``orders`` uses ``lookup_customer`` then ``list_orders``; ``tier`` uses only
``lookup_customer``. The scripted model answers from what the tools returned, so a tool that stops
working changes the answer (and the verdict), as it would with a real model.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from costar.scenario import Scenario
from costar.testing import Rule

HERE = Path(__file__).resolve().parent
AGENT = HERE / "shop_agent.py"
SERVER_V1 = HERE / "shop_server_v1.py"
SERVER_V2 = HERE / "shop_server_v2.py"
ARGS = {"customer_id": "C-42"}
ORDERS_ANSWER = "Ada Lovelace (C-42) has 2 open orders: O-1 and O-7."
TIER_ANSWER = "C-42 is a gold customer."


def rules() -> list[Rule]:
    orders, tier = "(?i)open orders", "(?i)tier"
    return [
        Rule(name="orders-lookup", last_user=orders, tool_results=0,
             tool_calls=[{"name": "lookup_customer", "arguments": ARGS}]),
        Rule(name="orders-list", last_user=orders, tool_results=1,
             tool_calls=[{"name": "list_orders", "arguments": ARGS}]),
        Rule(name="orders-answer", last_user=orders, tool_results=2, any_message="O-7", text=ORDERS_ANSWER),
        Rule(name="orders-failed", last_user=orders, tool_results=2, text="Sorry, I could not list the orders of C-42."),
        Rule(name="tier-lookup", last_user=tier, tool_results=0,
             tool_calls=[{"name": "lookup_customer", "arguments": ARGS}]),
        Rule(name="tier-answer", last_user=tier, tool_results=1, any_message="gold", text=TIER_ANSWER),
        Rule(name="tier-failed", last_user=tier, tool_results=1, text="I could not find C-42."),
    ]


def scenario_docs(trials: int = 2) -> dict[str, dict[str, Any]]:
    """The two scenarios as YAML-ready mappings (file name -> content)."""
    return {
        "orders.yaml": {"id": "orders", "tags": ["smoke"], "trials": trials, "timeout": 60,
                        "prompt": "Look up customer C-42 and list their open orders.",
                        "expectations": {"checks": [{"output_contains": "2 open orders"},
                                                    {"tool_called": {"name": "list_orders"}}]}},
        "tier.yaml": {"id": "tier", "trials": trials, "timeout": 60,
                      "prompt": "Which tier is customer C-42 in?",
                      "expectations": {"checks": [{"output_contains": "gold"}]}},
    }


def scenarios(trials: int = 2) -> list[Scenario]:
    return [Scenario.model_validate(doc) for doc in scenario_docs(trials).values()]


def agent_spec(server: str | Path, model_url: str, client: str = "client") -> dict[str, Any]:
    return {"type": "command", "command": [sys.executable, str(AGENT)], "name": "shop-agent",
            "env": {"SHOP_MCP": str(server), "MODEL_BASE_URL": model_url, "SHOP_CLIENT": client}}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, proc: subprocess.Popen[bytes], deadline_s: float = 30.0) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the MCP server exited with {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"the MCP server did not listen on port {port} within {deadline_s:g}s")


@contextlib.contextmanager
def http_server(script: Path = SERVER_V1) -> Iterator[str]:
    """The shop server over streamable HTTP on 127.0.0.1; yields its URL; stopped on exit."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(script), "--http", str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env={**os.environ})
    try:
        wait_for_port(port, proc)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
