"""The server tests' fixture: costar server in process (uvicorn in a thread, real HTTP on loopback)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from costar._util.server import BackgroundServer
from costar.server.app import CostarServer
from costar.server.config import ServerConfig
from tests.support.server import PROTOBUF


@dataclass
class Running:
    server: CostarServer
    url: str

    def post(self, body: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
        return httpx.post(self.url + "/v1/traces", content=body, headers={**PROTOBUF, **(headers or {})}, timeout=30)

    def api(self, path: str, **kw: Any) -> httpx.Response:
        return httpx.get(self.url + "/api/v1" + path, timeout=30, **kw)

    def stored(self, trace_id: str) -> Any:
        return self.server.tables.server_traces([trace_id]).get(trace_id)


@pytest.fixture
def make_server(store):
    servers: list[BackgroundServer] = []

    def make(**settings: Any) -> Running:
        cfg = ServerConfig.model_validate({"idle": 0.3, **settings})
        srv = CostarServer(cfg, store)
        bg = BackgroundServer(srv.app, "127.0.0.1", 0, lifespan="on").start()
        servers.append(bg)
        return Running(srv, bg.url)

    yield make
    for bg in servers:
        bg.stop()
