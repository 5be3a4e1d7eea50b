"""The shop's two tools as a real MCP server (the official ``mcp`` SDK's MCPServer, over stdio).

It runs in the trial's workspace (its parent, the agent, starts it there), so ``list_orders``
fails once per trial like everywhere else in the matrix.
"""

from __future__ import annotations

from typing import Any

from mcp.server.mcpserver import MCPServer
from shop import Shop

server = MCPServer("shop")
shop = Shop(".")


@server.tool()
def lookup_customer(customer_id: str) -> dict[str, Any]:
    """Look up a customer by id."""
    return shop.lookup_customer(customer_id)


@server.tool()
def list_orders(customer_id: str) -> list[dict[str, Any]]:
    """List a customer's open orders."""
    return shop.list_orders(customer_id)


if __name__ == "__main__":
    server.run("stdio")
