"""What keeps the web app's pages safe with hostile trace content in them, and safe to serve.

* **Nothing runs but our own files.** The Content-Security-Policy allows scripts, styles and fetches
  from this origin only (no inline script, no ``eval``, no CDN), and requires Trusted Types, so a
  string can never become HTML through ``innerHTML`` even if a script tried: our scripts build the
  page with ``textContent`` and ``createElement`` only. Templates escape every value (Jinja2
  autoescaping), so an escaping mistake would need both layers to fail.
* **State changes are same-origin POSTs** carrying the session's (or the app's) form token, with the
  Origin and Sec-Fetch-Site headers checked when a browser sends them and form posts accepted only as
  ``application/x-www-form-urlencoded``.
* **No login, loopback only**: where the app needs no token it answers only requests whose Host is a
  loopback name, which defeats DNS rebinding.
"""

from __future__ import annotations

import hmac
from urllib.parse import urlsplit

from starlette.requests import Request

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")

CSP = "; ".join((
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self'",
    "connect-src 'self'",
    "form-action 'self'",
    "base-uri 'none'",
    "frame-ancestors 'none'",
    "require-trusted-types-for 'script'",
    "trusted-types 'none'",
))
"""The policy of every page and asset of the app."""

HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    # Not "no-referrer": with it, Chromium sends "Origin: null" on the page's own form posts, which
    # then cannot be told from a sandboxed attacker frame. same-origin still leaks nothing cross-site.
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}
"""Headers on every answer of the app."""

FORM_TYPE = "application/x-www-form-urlencoded"
MAX_FORM_BYTES = 256 * 1024


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


def token_matches(sent: str | None, expected: str) -> bool:
    return bool(sent) and hmac.compare_digest(str(sent), expected)


def local_path(target: str | None, default: str = "/") -> str:
    """``target`` when it is a path on this app (a login's ``next``), else ``default``: never
    another site (``//evil``, ``/\\evil``, ``https://evil``) and never a ``javascript:`` URL."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")):
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or any(ch in target for ch in "\r\n\t\\"):
        return default
    return target


async def read_form(request: Request) -> dict[str, str] | None:
    """The fields of a URL-encoded form (first value of each), or None when it is too large or not one."""
    from urllib.parse import parse_qs

    if request.headers.get("content-type", "").split(";", 1)[0].strip().lower() != FORM_TYPE:
        return None
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > MAX_FORM_BYTES):
        return None
    size, chunks = 0, []
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_FORM_BYTES:
            return None
        chunks.append(chunk)
    try:
        fields = parse_qs(b"".join(chunks).decode("utf-8"), keep_blank_values=True, max_num_fields=50)
    except (UnicodeDecodeError, ValueError):
        return None
    return {k: v[0] for k, v in fields.items()}
