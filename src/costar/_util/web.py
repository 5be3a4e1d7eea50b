"""The request checks coSTAR's web pages share (the labeling page, ``costar label --web``, and the web
app, ``costar ui``): the Host header's name (loopback-only apps refuse other names, which defeats DNS
rebinding), same-origin state changes (against CSRF), bodies read within a bound, and the headers
every answer carries whatever its Content-Security-Policy."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
"""The Host names an app without a login answers."""

FORM_TYPE = "application/x-www-form-urlencoded"


def loopback_names(bound: str) -> tuple[str, ...]:
    """The Host names a loopback app bound to ``bound`` answers: the address it is bound to first
    (``127.0.0.2`` is loopback too, and a browser sends the name it was given), then the usual ones."""
    name = bound.strip("[]").lower()
    return (name, *(h for h in LOOPBACK_HOSTS if h != name))


class HostGuard:
    """ASGI middleware for an app without a login (loopback): a request whose Host name is not one of
    ``names`` is answered 421, whatever its path (pages, JSON API, ingest). A page elsewhere that
    rebinds its DNS name to 127.0.0.1 sends its own name, so it can read nothing."""

    def __init__(self, app: ASGIApp, names: tuple[str, ...]) -> None:
        self.app = app
        self.names = names

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            host = next((v for k, v in scope["headers"] if k == b"host"), b"").decode("latin-1")
            if hostname(host) not in self.names:
                response = PlainTextResponse(f"unexpected Host header; open this server via {self.names[0]}",
                                             status_code=421, headers={"X-Content-Type-Options": "nosniff"})
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


SAFE_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    # Not "no-referrer": with it, Chromium sends "Origin: null" on the page's own form posts, which
    # then cannot be told from a sandboxed attacker frame. same-origin still leaks nothing cross-site.
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}
"""Headers on every answer, beside each app's own Content-Security-Policy."""


def hostname(host_header: str) -> str:
    """The name in a Host header, without its port (``[::1]:8080`` -> ``::1``)."""
    host = host_header.strip().lower()
    if host.startswith("["):
        return host[1:host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def same_origin(request: Request) -> bool:
    """A browser marks where a request comes from; anything but this app itself is refused.
    Clients that are not browsers send neither header and are not a CSRF vector."""
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        return False
    origin = request.headers.get("origin")
    return origin is None or origin == f"{request.url.scheme}://{request.headers.get('host', '')}"


def media_type(request: Request) -> str:
    """The request's Content-Type without its parameters, lower case."""
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


async def read_body(request: Request, max_bytes: int) -> bytes | None:
    """The request body, or None when it is (or says it is) larger than ``max_bytes``."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > max_bytes):
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


__all__ = ["FORM_TYPE", "LOOPBACK_HOSTS", "SAFE_HEADERS", "HostGuard", "hostname", "loopback_names", "media_type",
           "read_body", "same_origin"]
