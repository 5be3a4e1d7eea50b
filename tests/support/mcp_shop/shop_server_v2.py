"""Version 2 of the shop MCP server: ``list_orders`` takes ``customer_ref`` instead of
``customer_id`` (a breaking rename) and ``lookup_customer``'s description is reworded (not
breaking). Run it like version 1 (``shop_server_v1.py``).
"""

from __future__ import annotations

import sys
from typing import Any

from mcp.server.mcpserver import MCPServer

server = MCPServer("shop", version="2.0.0")
CUSTOMERS = {"C-42": {"id": "C-42", "name": "Ada Lovelace", "tier": "gold"}}
ORDERS = {"C-42": [{"id": "O-1", "status": "open"}, {"id": "O-7", "status": "open"}]}


@server.tool()
def lookup_customer(customer_id: str) -> dict[str, Any]:
    """Find a customer record by its id."""
    if customer_id not in CUSTOMERS:
        raise ValueError(f"no customer {customer_id}")
    return CUSTOMERS[customer_id]


@server.tool()
def list_orders(customer_ref: str, status: str = "open") -> dict[str, Any]:
    """List a customer's orders with the given status."""
    return {"orders": [o for o in ORDERS.get(customer_ref, []) if o["status"] == status]}


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
