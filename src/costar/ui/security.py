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

The Host and Origin checks and the bounded body are the labeling page's too (:mod:`costar._util.web`).
"""

from __future__ import annotations

import hmac
from urllib.parse import urlsplit

from starlette.requests import Request

from costar._util.web import FORM_TYPE, SAFE_HEADERS, media_type, read_body

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

HEADERS = {"Content-Security-Policy": CSP, **SAFE_HEADERS}
"""Headers on every answer of the app."""

MAX_FORM_BYTES = 256 * 1024


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

    if media_type(request) != FORM_TYPE:
        return None
    body = await read_body(request, MAX_FORM_BYTES)
    if body is None:
        return None
    try:
        fields = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=50)
    except (UnicodeDecodeError, ValueError):
        return None
    return {k: v[0] for k, v in fields.items()}
