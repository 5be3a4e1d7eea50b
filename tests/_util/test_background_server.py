"""BackgroundServer (costar._util.server), which serves costar ui, costar server and the tests' servers:
a port in use is a one-line error naming it, and IPv6 hosts are served."""

from __future__ import annotations

import socket

import httpx
import pytest

from costar._util.server import BackgroundServer
from costar.errors import ConfigError


def _ok_app() -> object:
    async def app(scope: dict, receive: object, send: object) -> None:  # type: ignore[type-arg]
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})  # type: ignore[operator]
        await send({"type": "http.response.body", "body": b"ok"})  # type: ignore[operator]
    return app


def test_port_in_use_is_a_config_error_naming_it() -> None:
    with BackgroundServer(_ok_app()) as first:
        second = BackgroundServer(_ok_app(), port=first.port)
        with pytest.raises(ConfigError) as info:
            second.start()
        msg = str(info.value)
        assert f"127.0.0.1:{first.port}" in msg
        assert "--port" in msg
        assert "\n" not in msg
        assert httpx.get(first.url).text == "ok"  # the first server is unharmed


def _ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback on this machine")
def test_ipv6_host_is_served() -> None:
    with BackgroundServer(_ok_app(), host="::1") as srv:
        assert srv.url == f"http://[::1]:{srv.port}"
        assert httpx.get(srv.url).text == "ok"
        with pytest.raises(ConfigError, match=rf"\[::1\]:{srv.port}.*--port"):
            BackgroundServer(_ok_app(), host="::1", port=srv.port).start()
