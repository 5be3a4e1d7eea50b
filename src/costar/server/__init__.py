"""``costar server``: one process for a team. OTLP ingest into the shared store with trace assembly,
durability and backpressure, tokens, PII redaction, retention, and the JSON API (docs/SERVER.md).

Public: :class:`CostarServer` (the app over a store), :func:`serve` (run it in the foreground),
:class:`ServerConfig` and :func:`load_server_config` (server.yaml), :func:`prune` (retention once),
:class:`CompletedTrace` (what listeners such as the monitors receive).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from costar.server.app import CostarServer
    from costar.server.assembler import CompletedTrace
    from costar.server.config import ServerConfig, load_server_config
    from costar.server.retention import prune
    from costar.server.run import serve

_LAZY = {
    "CostarServer": "costar.server.app",
    "CompletedTrace": "costar.server.assembler",
    "ServerConfig": "costar.server.config",
    "load_server_config": "costar.server.config",
    "prune": "costar.server.retention",
    "serve": "costar.server.run",
}

__all__ = ["CompletedTrace", "CostarServer", "ServerConfig", "load_server_config", "prune", "serve"]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'costar.server' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
