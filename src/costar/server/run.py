"""Running the server in the foreground (``costar server``): uvicorn on one socket, stopped by
SIGINT or SIGTERM (open traces that only wait out their idle time are stored first; the rest stay
in the write-ahead log for the next start)."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

import uvicorn

from costar._util.server import BackgroundServer
from costar.server.app import CostarServer
from costar.server.config import ServerConfig
from costar.server.gc_tuning import tune_gc
from costar.store.base import Store

if TYPE_CHECKING:
    from costar.monitor.service import MonitorService

log = logging.getLogger("costar.server")


def serve(config: ServerConfig, store: Store, *, log_level: str = "info",
          announce: Callable[[str], None] | None = None, monitors: MonitorService | None = None,
          extend: Callable[[CostarServer], None] | None = None) -> None:
    """Serve until stopped. ``announce`` gets one line once the server accepts requests
    (default: printed to stdout), naming the URL (with the port chosen when ``port`` is 0).
    ``monitors`` score the traces the server stores. ``extend`` is called with the server before it
    starts (the web app mounts its pages)."""
    server = CostarServer(config, store, monitors=monitors)
    if extend is not None:
        extend(server)
    # The socket is bound here, so port 0 picks a free port with no race and errors are one line.
    sock = BackgroundServer(server.app, config.host, config.port)._listen()
    host, port = sock.getsockname()[:2]
    url = f"http://{'[' + host + ']' if ':' in host else host}:{port}"
    say = announce or (lambda line: print(line, flush=True))

    original_startup = server.startup

    async def startup() -> None:
        await original_startup()
        auth = "tokens required" if server.auth.required else "no tokens required (loopback)"
        scoring = ""
        if monitors is not None:
            n = len(monitors.active)
            scoring = f"; {n} monitor{'s' if n != 1 else ''} scoring"
        say(f"coSTAR server listening on {url} (store {store.location}; {auth}{scoring}); "
            f"OTLP endpoint {url}/v1/traces; web app {url}/")

    server.startup = startup  # type: ignore[method-assign]
    logging.basicConfig(level=getattr(logging, log_level.upper(), logging.INFO), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    uv = uvicorn.Server(uvicorn.Config(server.app, log_level=log_level, access_log=False,
                                       timeout_graceful_shutdown=5, backlog=2048))
    tune_gc()  # this process is the server's own: the collector's defaults cost a fifth of ingest's CPU
    try:
        uv.run(sockets=[sock])
    finally:
        sock.close()
