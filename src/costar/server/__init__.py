"""``costar server``: one process for a team. OTLP ingest into the shared store with trace assembly,
durability and backpressure, tokens, PII redaction, retention, and the JSON API (docs/SERVER.md).

Public: :class:`CostarServer` (the app over a store), :func:`serve` (run it in the foreground),
:class:`ServerConfig` and :func:`load_server_config` (server.yaml), :func:`prune` (retention once),
:class:`CompletedTrace` (what listeners such as the monitors receive).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from costar._util.lazy import lazy_exports

if TYPE_CHECKING:
    from costar.server.app import CostarServer as CostarServer
    from costar.server.assembler import CompletedTrace as CompletedTrace
    from costar.server.config import ServerConfig as ServerConfig
    from costar.server.config import load_server_config as load_server_config
    from costar.server.retention import prune as prune
    from costar.server.run import serve as serve

_LAZY = {
    "CostarServer": "costar.server.app",
    "CompletedTrace": "costar.server.assembler",
    "ServerConfig": "costar.server.config",
    "load_server_config": "costar.server.config",
    "prune": "costar.server.retention",
    "serve": "costar.server.run",
}

__all__ = sorted(_LAZY)
__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
