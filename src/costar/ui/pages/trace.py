"""The Trace page: the trace's head, input and output, its verdicts (evidence linking to the spans
cited), artifacts with text previews, human labels, and the span tree with its timeline.

The tree is paged: the page carries the trace's head only; its script asks
``/api/v1/traces/{id}/tree`` for the rows on screen and ``/api/v1/traces/{id}/spans/{span}`` for the
span a reader opens, so a 100,000-span trace costs what one screen of it costs. Without script, the
page lists the first spans and shows the span named by ``?span=`` whole.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import TYPE_CHECKING, Any

from fastapi import Request
from fastapi.responses import Response

from costar.server.auth import Caller
from costar.store.base import SpanQuery
from costar.views import trace_detail

if TYPE_CHECKING:
    from costar.ui.app import WebApp

STATIC_SPANS = 200
"""Spans the page lists for readers without script."""


def _pretty(value: Any, limit: int = 100_000) -> str:
    text = value if isinstance(value, str) else json.dumps(value, indent=2, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[:limit] + f"\n… ({len(text) - limit:,} more characters)"


def _index(web: WebApp, trace_id: str) -> None:
    # Failures here are the tree request's to report (it reads the same index).
    with contextlib.suppress(Exception):
        web.host.trees.get(web.store, trace_id)


def register(web: WebApp) -> None:
    @web.page("/traces/{trace_id:path}")
    async def trace_page(request: Request, caller: Caller, trace_id: str) -> Response:
        store = web.store
        view = await web.run(trace_detail, store, trace_id, max_spans=0)
        # Index the span tree while the page travels: its script asks for the first rows on arrival.
        asyncio.get_running_loop().run_in_executor(None, _index, web, view.trace_id)
        picked = request.query_params.get("span")
        span = await web.run(store.get_span, view.trace_id, picked) if picked else None
        static = await web.run(store.query_spans, view.trace_id, SpanQuery(limit=STATIC_SPANS))
        labels = await web.run(store.labels, trace_ids=[view.trace_id])
        data = view.model_dump(mode="json")
        return web.render(request, "trace.html", caller, section="runs", view=view, data=data, span=span,
                          picked=picked, static_spans=static, labels=labels, pretty=_pretty,
                          static_limit=STATIC_SPANS)
