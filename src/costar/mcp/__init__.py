"""MCP servers: snapshots of what they offer, and diffs that say which changes break an agent.

* :mod:`~costar.mcp.snapshot` — connect to a server and list its tools, prompts and resources;
* :mod:`~costar.mcp.catalog` — the tools of a snapshot, a run or a trace, by reference;
* :mod:`~costar.mcp.diff` — two catalogs compared, each change judged breaking or not.

The names below load on first use (the MCP SDK is imported only to take a snapshot).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from costar._util.lazy import lazy_exports

if TYPE_CHECKING:
    from costar.mcp.catalog import resolve_catalog as resolve_catalog
    from costar.mcp.diff import CatalogDiff as CatalogDiff
    from costar.mcp.diff import ItemChange as ItemChange
    from costar.mcp.diff import SchemaChange as SchemaChange
    from costar.mcp.diff import ToolCatalog as ToolCatalog
    from costar.mcp.diff import ToolChange as ToolChange
    from costar.mcp.diff import diff_catalogs as diff_catalogs
    from costar.mcp.snapshot import McpServerError as McpServerError
    from costar.mcp.snapshot import snapshot_server as snapshot_server

_LAZY = {
    "resolve_catalog": "costar.mcp.catalog",
    "CatalogDiff": "costar.mcp.diff", "ItemChange": "costar.mcp.diff", "SchemaChange": "costar.mcp.diff",
    "ToolCatalog": "costar.mcp.diff", "ToolChange": "costar.mcp.diff", "diff_catalogs": "costar.mcp.diff",
    "McpServerError": "costar.mcp.snapshot", "snapshot_server": "costar.mcp.snapshot",
}

__all__ = sorted(_LAZY)
__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
