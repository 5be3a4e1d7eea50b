"""Version 1 of a small shop MCP server (the official ``mcp`` SDK's MCPServer).

``python shop_server_v1.py`` serves over stdio; ``--http PORT`` serves streamable HTTP on
127.0.0.1:PORT (path ``/mcp``). Version 2 (``shop_server_v2.py``) renames a field and rewords a
description: the change the nightly flow must catch.
"""

from __future__ import annotations

import sys
from typing import Any

from mcp.server.mcpserver import MCPServer

server = MCPServer("shop", version="1.0.0")
CUSTOMERS = {"C-42": {"id": "C-42", "name": "Ada Lovelace", "tier": "gold"}}
ORDERS = {"C-42": [{"id": "O-1", "status": "open"}, {"id": "O-7", "status": "open"}]}


@server.tool()
def lookup_customer(customer_id: str) -> dict[str, Any]:
    """Look up a customer by id."""
    if customer_id not in CUSTOMERS:
        raise ValueError(f"no customer {customer_id}")
    return CUSTOMERS[customer_id]


@server.tool()
def list_orders(customer_id: str, status: str = "open") -> dict[str, Any]:
    """List a customer's orders with the given status."""
    return {"orders": [o for o in ORDERS.get(customer_id, []) if o["status"] == status]}


@server.prompt()
def support_reply(customer_name: str) -> str:
    """A polite reply to a customer."""
    return f"Write a polite reply to {customer_name}."


@server.resource("shop://policies/returns")
def returns_policy() -> str:
    """The returns policy."""
    return "Returns within 30 days."


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--http":
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
    else:
        server.run("stdio")
