"""MCP capture: a real agent using the official ``mcp`` SDK against a real MCP server, recorded with
no change to the agent, over stdio and streamable HTTP, through the high-level ``Client``, a bare
``ClientSession``, and a synchronous agent whose MCP session runs in a background thread."""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.skipif(importlib.util.find_spec("mcp") is None, reason="mcp is not installed")

from costar.capture import instrument  # noqa: E402
from costar.testing import ScriptedModelServer  # noqa: E402
from costar.trace.finalize import finalize_spans  # noqa: E402
from costar.trace.model import Span, SpanKind, StatusCode  # noqa: E402
from costar.trace.recorder import Recording  # noqa: E402
from costar.trace.tools import tool_definitions  # noqa: E402
from tests.support.mcp_shop.shop import AGENT, ARGS, ORDERS_ANSWER, SERVER_V1, SERVER_V2, http_server, rules  # noqa: E402

PROMPT = "Look up customer C-42 and list their open orders."


@pytest.fixture(scope="module")
def shop_agent() -> Any:
    spec = importlib.util.spec_from_file_location("shop_agent_under_test", AGENT)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def model() -> Iterator[ScriptedModelServer]:
    with ScriptedModelServer(rules()) as srv:
        yield srv


@pytest.fixture(scope="module")
def http_url() -> Iterator[str]:
    with http_server(SERVER_V1) as url:
        yield url


def _record(shop_agent: Any, monkeypatch: pytest.MonkeyPatch, target: str, client: str, model_url: str,
            prompt: str = PROMPT) -> tuple[str, list[Span]]:
    instrument()
    monkeypatch.setenv("SHOP_MCP", target)
    monkeypatch.setenv("SHOP_CLIENT", client)
    monkeypatch.setenv("MODEL_BASE_URL", model_url)
    with Recording("shop-agent") as rec:
        answer = shop_agent.run(prompt)
    return answer, finalize_spans(rec.spans())


def _tools(spans: list[Span]) -> list[Span]:
    return sorted((s for s in spans if s.kind == SpanKind.TOOL), key=lambda s: s.start_ns)


@pytest.mark.parametrize("client", ["client", "session", "sync"])
@pytest.mark.parametrize("transport", ["stdio", "http"])
def test_mcp_tool_use_is_recorded_without_changing_the_agent(shop_agent: Any, model: ScriptedModelServer,
                                                           http_url: str, monkeypatch: pytest.MonkeyPatch,
                                                           client: str, transport: str) -> None:
    target = http_url if transport == "http" else str(SERVER_V1)
    answer, spans = _record(shop_agent, monkeypatch, target, client, model.base_url)
    assert answer == ORDERS_ANSWER

    tools = _tools(spans)
    assert [s.attributes["gen_ai.tool.name"] for s in tools] == ["lookup_customer", "list_orders"]
    for s in tools:
        a = s.attributes
        assert s.name == f"execute_tool {a['gen_ai.tool.name']}"
        assert a["costar.capture"] == "mcp"  # the MCP span, not one inferred from the model's messages
        assert "costar.inferred" not in a
        assert (a["costar.mcp.server.name"], a["costar.mcp.server.version"]) == ("shop", "1.0.0")
        assert a["mcp.method.name"] == "tools/call"
        assert a["mcp.protocol.version"]
        assert a["gen_ai.tool.call.arguments"] == ARGS
        assert str(a["gen_ai.tool.call.id"]).startswith("call_")  # completed from the model's request
        assert s.status.code == StatusCode.OK
    assert tools[0].attributes["gen_ai.tool.call.result"] == {"id": "C-42", "name": "Ada Lovelace", "tier": "gold"}
    assert [o["id"] for o in tools[1].attributes["gen_ai.tool.call.result"]["orders"]] == ["O-1", "O-7"]
    if client == "client":  # the high-level Client knows its transport
        assert tools[0].attributes["network.transport"] == ("tcp" if transport == "http" else "pipe")

    listings = [s for s in spans if s.attributes.get("mcp.method.name") == "tools/list"]
    assert len(listings) == 1
    assert listings[0].kind == SpanKind.CHAIN
    defs = tool_definitions(spans)
    assert sorted(d.name for d in defs) == ["list_orders", "lookup_customer"]
    assert {(d.server, d.server_version, d.source) for d in defs} == {("shop", "1.0.0", "mcp")}
    by_name = {d.name: d for d in defs}
    assert by_name["list_orders"].input_schema["required"] == ["customer_id"]
    assert by_name["lookup_customer"].output_schema is not None
    assert tools[0].attributes["costar.tool.fingerprint"] == by_name["lookup_customer"].fingerprint
    assert tools[0].attributes["gen_ai.tool.description"] == "Look up a customer by id."


def test_a_tool_error_result_is_an_error_span(shop_agent: Any, model: ScriptedModelServer,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    # Version 2 renamed list_orders' argument: the model's call (customer_id) fails validation.
    answer, spans = _record(shop_agent, monkeypatch, str(SERVER_V2), "client", model.base_url)
    assert "could not" in answer
    tools = _tools(spans)
    assert len(tools) == 2
    failed = tools[1]
    assert failed.status.code == StatusCode.ERROR
    assert failed.attributes["error.type"] == "tool_error"
    assert "customer_ref" in str(failed.attributes["gen_ai.tool.call.result"])
    assert "customer_ref" in (failed.status.message or "")
    assert tools[0].status.code == StatusCode.OK


def _in_process_server() -> Any:
    from mcp.server.mcpserver import MCPServer

    server = MCPServer("clock", version="0.3")

    @server.tool()
    async def wait(seconds: float) -> str:
        """Wait, then say so."""
        await asyncio.sleep(seconds)
        return "done"

    @server.tool()
    def picture() -> Any:
        """A tiny image."""
        from mcp.server.mcpserver import Image

        return Image(data=b"\x89PNG" + b"\x00" * 4096, format="png")

    return server


def test_a_failed_call_records_the_protocol_error_and_binary_results_are_bounded() -> None:
    from mcp import Client
    from mcp.shared.exceptions import MCPError

    instrument()

    async def session() -> None:
        async with Client(_in_process_server()) as client:
            await client.list_tools()
            assert (await client.call_tool("wait", {"seconds": 0})).is_error is False
            await client.call_tool("picture", {})
            with pytest.raises(MCPError):
                await client.call_tool("wait", {"seconds": 5}, read_timeout_seconds=0.2)

    with Recording("clock-agent") as rec:
        asyncio.run(session())
    tools = _tools(rec.spans())
    assert [s.attributes["gen_ai.tool.name"] for s in tools] == ["wait", "picture", "wait"]
    ok, picture, timed_out = tools
    assert ok.attributes["gen_ai.tool.call.result"] == {"result": "done"}
    assert (ok.attributes["costar.mcp.server.name"], ok.attributes["costar.mcp.server.version"]) == ("clock", "0.3")
    blocks = picture.attributes["gen_ai.tool.call.result"]
    assert blocks[0]["type"] == "image"
    assert len(blocks[0]["data"]) < 200  # 4 KB of base64 summarised, not stored
    assert timed_out.status.code == StatusCode.ERROR
    assert timed_out.attributes["error.type"].lstrip("-").isdigit()  # the JSON-RPC error code
    assert any(e.name == "exception" for e in timed_out.events)


def test_nothing_is_recorded_outside_a_recording_and_results_pass_through() -> None:
    from mcp import Client

    instrument()

    async def session() -> Any:
        async with Client(_in_process_server()) as client:
            return await client.call_tool("wait", {"seconds": 0})

    result = asyncio.run(session())
    assert result.structured_content == {"result": "done"}


def test_a_cached_listing_is_recorded_too() -> None:
    from mcp import Client

    instrument()

    async def session() -> None:
        async with Client(_in_process_server()) as client:
            await client.list_tools()
            await client.list_tools()  # may be served from the client's response cache

    with Recording("lister") as rec:
        asyncio.run(session())
    listings = [s for s in rec.spans() if s.attributes.get("mcp.method.name") == "tools/list"]
    assert len(listings) == 2
    assert all(len(s.attributes["gen_ai.tool.definitions"]) == 2 for s in listings)
    assert len(tool_definitions(rec.spans())) == 2  # the same definitions count once


def test_command_agent_traces_store_tools_and_fingerprints(tmp_path: Path) -> None:
    from costar.api import run_suite
    from costar.store.sqlite import SQLiteStore
    from tests.support.mcp_shop.shop import agent_spec, scenarios

    with ScriptedModelServer(rules()) as srv:
        outcome = run_suite(scenarios(trials=1), agent_spec(SERVER_V1, srv.base_url), store=tmp_path / ".costar")
    assert outcome.summary.all_gates_passed
    with SQLiteStore(tmp_path / ".costar") as st:
        traces = {t.scenario_id: t for t in st.iter_traces(outcome.run.run_id)}
    assert sorted(d.name for d in traces["orders"].tools) == ["list_orders", "lookup_customer"]
    assert all(d.server == "shop" and len(d.fingerprint) == 16 for d in traces["orders"].tools)
    tier_tools = [s for s in traces["tier"].spans if s.kind == SpanKind.TOOL]
    assert [s.attributes["gen_ai.tool.name"] for s in tier_tools] == ["lookup_customer"]
