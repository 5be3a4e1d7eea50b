"""The Jinja2 environment of the pages: every value escaped (autoescaping on for every template),
undefined names an error, and the filters the pages format numbers and times with."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any
from urllib.parse import quote, urlencode

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from costar._util.units import format_usd


def fmt_time(ts: float | None) -> str:
    """Unix seconds as ``2026-12-07 14:03`` (UTC)."""
    if ts is None:
        return "—"
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M")


def fmt_pct(value: float | None, digits: int = 0) -> str:
    return "—" if value is None else f"{value * 100:.{digits}f}%"


def fmt_usd(value: float | None) -> str:
    if value is None:
        return "—"
    if value == 0:
        return "$0"
    return format_usd(value)


def fmt_seconds(value: float | None) -> str:
    if value is None:
        return "—"
    if value < 1:
        return f"{value * 1000:.0f} ms"
    if value < 120:
        return f"{value:.1f} s"
    return f"{value / 60:.1f} min"


def fmt_int(value: int | float | None) -> str:
    return "—" if value is None else f"{value:,.0f}"


def fmt_delta(value: float | None, digits: int = 1, unit: str = "") -> str:
    if value is None:
        return "—"
    return f"{value:+.{digits}f}{unit}"


def page_json(value: Any) -> Markup:
    """JSON for a ``<script type="application/json">`` block: ``<``, ``>``, ``&`` and ``'`` as
    escapes, so no string in it can close the block or open a tag."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
    for raw, escaped in (("&", "\\u0026"), ("<", "\\u003c"), (">", "\\u003e"), ("'", "\\u0027"),
                         ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(raw, escaped)
    return Markup(text)  # escaped above for a JSON script block


def path_part(value: Any) -> str:
    """One URL path segment (an id with ``/`` in it stays one segment)."""
    return quote(str(value), safe="")


def query(params: dict[str, Any] | None = None, **more: Any) -> str:
    """``?a=1&b=2`` from the non-empty values (lists repeat their key)."""
    merged = {**(params or {}), **more}
    pairs: list[tuple[str, str]] = []
    for key, value in merged.items():
        if value is None or value == "" or value is False:
            continue
        for item in value if isinstance(value, list | tuple) else [value]:
            pairs.append((key, str(item)))
    return "?" + urlencode(pairs) if pairs else ""


def short(value: str | None, n: int = 12) -> str:
    return "—" if not value else value[:n]


def build_environment() -> Environment:
    env = Environment(loader=PackageLoader("costar.ui", "templates"),
                      autoescape=select_autoescape(default=True, default_for_string=True),
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters.update(time=fmt_time, pct=fmt_pct, usd=fmt_usd, seconds=fmt_seconds, num=fmt_int,
                       delta=fmt_delta, page_json=page_json, path=path_part, short=short)
    env.globals.update(query=query)
    return env
