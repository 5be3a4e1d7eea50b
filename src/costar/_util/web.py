"""The request checks coSTAR's web pages share (the labeling page, ``costar label --web``, and the web
app, ``costar ui``): the Host header's name (loopback-only apps refuse other names, which defeats DNS
rebinding), same-origin state changes (against CSRF), bodies read within a bound, and the headers
every answer carries whatever its Content-Security-Policy."""

from __future__ import annotations

from starlette.requests import Request

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
"""The Host names an app without a login answers."""

FORM_TYPE = "application/x-www-form-urlencoded"

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


__all__ = ["FORM_TYPE", "LOOPBACK_HOSTS", "SAFE_HEADERS", "hostname", "media_type", "read_body", "same_origin"]
