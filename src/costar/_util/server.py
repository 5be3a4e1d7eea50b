"""Run an ASGI app with uvicorn on loopback in a background thread (receiver, servers, tests)."""

from __future__ import annotations

import asyncio
import errno
import socket
import threading
import time
from types import TracebackType
from typing import Any

import uvicorn

from costar.errors import ConfigError


class BackgroundServer:
    """``with BackgroundServer(app) as srv: srv.url``. Port 0 picks a free port with no bind race:
    the socket is bound here and handed to uvicorn already listening."""

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0, *,
                 startup_timeout: float = 10.0, log_level: str = "warning", lifespan: str = "off") -> None:
        self.app = app
        # "[::1]" (URL style) and "::1" are the same IPv6 address.
        self.host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
        self._requested_port = port
        self._startup_timeout = startup_timeout
        self._log_level = log_level
        self._lifespan = lifespan  # "on" runs the app's startup and shutdown (costar server's)
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None
        self._error: BaseException | None = None
        self.port = port
        self.loop: asyncio.AbstractEventLoop | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def base_url(self) -> str:
        return self.url

    def start(self) -> BackgroundServer:
        if self._thread is not None:
            return self
        self._socket = sock = self._listen()
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(self.app, log_level=self._log_level, access_log=False, lifespan=self._lifespan,  # type: ignore[arg-type]
                                # Hung handlers are cancelled after this on stop, so stop() stays prompt.
                                timeout_graceful_shutdown=1)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._run, name=f"costar-http-{self.port}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + self._startup_timeout
        while not self._server.started:
            if self._error is not None or not self._thread.is_alive():
                self.stop()
                raise RuntimeError(f"server on {self.url} failed to start: {self._error!r}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"server on {self.url} did not start within {self._startup_timeout}s")
            time.sleep(0.005)
        return self

    def _listen(self) -> socket.socket:
        """A listening TCP socket of the host's family (IPv6 for an address with ':')."""
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        where = f"[{self.host}]:{self._requested_port}" if family == socket.AF_INET6 else \
            f"{self.host}:{self._requested_port}"
        try:
            # IPPROTO_TCP explicitly: asyncio only sets TCP_NODELAY on sockets it knows are TCP, and
            # without it every keep-alive request waits ~40 ms for delayed ACKs.
            sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        except OSError as exc:
            raise ConfigError(f"cannot listen on {where}: {exc.strerror or exc} (is IPv6 enabled?); "
                              "use --host 127.0.0.1") from None
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self._requested_port))
            sock.listen(2048)
        except OSError as exc:
            sock.close()
            if exc.errno == errno.EADDRINUSE:
                raise ConfigError(f"cannot listen on {where}: the port is already in use; pass another --port "
                                  "(or stop whatever is using it)") from None
            if isinstance(exc, socket.gaierror):
                raise ConfigError(f"cannot listen on {where}: unknown host {self.host!r}; pass an address "
                                  "such as 127.0.0.1 to --host") from None
            raise ConfigError(f"cannot listen on {where}: {exc.strerror or exc}; check --host and --port") from None
        return sock

    def _run(self) -> None:
        assert self._server is not None
        assert self._socket is not None
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # surfaced to start() / stop() callers
            self._error = exc

    async def _serve(self) -> None:
        assert self._server is not None
        assert self._socket is not None
        self.loop = asyncio.get_running_loop()
        await self._server.serve(sockets=[self._socket])

    def stop(self, timeout: float = 10.0) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
        if self._socket is not None:
            self._socket.close()
        self._thread = None
        self._server = None
        self._socket = None

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
