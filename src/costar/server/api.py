"""The JSON API under ``/api/v1``: what the CLI and the web app read.

Shapes are coSTAR's own contracts (``Trace``, ``Span``, ``Verdict``, ``Run``, ``RunSummary``) inside
small page envelopes defined here, and under ``/api/v1/views`` the CLI's ``--json`` views
(:mod:`costar.server.views_api`); docs/SERVER.md lists every endpoint. Reads go to the store in a
worker thread so the event loop keeps ingesting. Every endpoint needs an API token when the server
requires tokens.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, Generic, Protocol, TypeVar

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from pydantic import BaseModel, ConfigDict

from costar.errors import CostarError
from costar.server.auth import SESSION_COOKIE, Authenticator, AuthFailure, Caller
from costar.server.views_api import add_view_routes
from costar.store.base import Run, SpanQuery, Store
from costar.store.server_tables import ServerTables, ServerTrace
from costar.store.span_tree import MAX_COLLAPSED, MAX_PAGE, SpanTrees, TreeLocation, TreePage, locate, tree_page
from costar.summary import RunSummary, summarize_run
from costar.trace.model import Span, SpanKind, StatusCode, Trace
from costar.verdict import Verdict

if TYPE_CHECKING:
    from costar.monitor.service import MonitorService

API_VERSION = 1
T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    """A page of a listing. Pass ``next`` back as ``cursor`` (or ``offset``) for the following page."""

    model_config = ConfigDict(extra="forbid")

    items: list[T]
    next: str | None = None
    """The cursor of the next page; None on the last page."""
    total: int | None = None
    """How many items the whole listing has, where that is cheap to know."""


class ServerInfo(BaseModel):
    """``GET /api/v1/server``: what this server is and how it is doing."""

    model_config = ConfigDict(extra="forbid")

    api_version: int = API_VERSION
    costar_version: str
    store: str
    """The store, as shown to people (never a password)."""
    tokens_required: bool
    ready: bool
    stats: dict[str, Any]
    """The server metrics (``GET /metrics`` has them for Prometheus)."""


class ProjectInfo(BaseModel):
    """A project the server has traces of."""

    model_config = ConfigDict(extra="forbid")

    project: str
    traces: int
    spans: int
    bytes: int
    """Approximate stored size of its traces."""
    last_completed_at: float | None


class TraceHead(BaseModel):
    """``GET /api/v1/traces/{id}``: a trace without its spans (page them with ``/spans``)."""

    model_config = ConfigDict(extra="forbid")

    trace: Trace
    """The trace record; ``spans`` is empty here."""
    spans_total: int
    server: ServerTrace | None
    """What the server recorded about it (project, amendments), for traces it ingested."""


class MonitorView(BaseModel):
    """``GET /api/v1/monitors``: a monitor the server scores with, and how far it got."""

    model_config = ConfigDict(extra="forbid")

    name: str
    """The monitor's name."""
    source: str
    """Its file and line, or ``store`` for a monitor created through the API."""
    enabled: bool
    """Whether it scores (a disabled monitor is listed only)."""
    definition: dict[str, Any]
    """The definition as JSON (docs/MONITORING.md)."""
    counts: dict[str, int]
    """Traces considered (matched), sampled, pending, scored and skipped."""
    firing: list[str]
    """The alert rules firing now, as ``rule on series``."""


class RunView(BaseModel):
    """``GET /api/v1/runs/{run}``: a run and its summary."""

    model_config = ConfigDict(extra="forbid")

    run: Run
    summary: RunSummary


def _encode_cursor(parts: tuple[Any, ...]) -> str:
    import orjson

    return base64.urlsafe_b64encode(orjson.dumps(list(parts))).decode("ascii")


def _decode_cursor(cursor: str) -> list[Any]:
    import orjson

    try:
        value = orjson.loads(base64.urlsafe_b64decode(cursor.encode("ascii")))
    except (ValueError, orjson.JSONDecodeError):
        raise HTTPException(400, "bad cursor; pass back the 'next' value of the previous page") from None
    if not isinstance(value, list):
        raise HTTPException(400, "bad cursor; pass back the 'next' value of the previous page")
    return value


class ApiHost(Protocol):
    """What the API reads: a :class:`~costar.server.app.CostarServer`, or a :class:`StoreHost`
    (``costar ui``: the API and the pages over a local store, without ingest)."""

    store: Store
    tables: ServerTables
    auth: Authenticator
    trees: SpanTrees
    version: str
    ready: bool
    monitors: MonitorService | None
    """The monitors scoring what the server stores (None: none, as under ``costar ui``)."""

    def metrics(self) -> dict[str, Any]: ...


class StoreHost:
    """The API over a store with nothing else running (``costar ui``)."""

    def __init__(self, store: Store, *, required: bool = False, version: str = "unknown") -> None:
        self.store = store
        self.tables = ServerTables(store)  # type: ignore[arg-type]
        self.auth = Authenticator(self.tables, required=required)
        self.trees = SpanTrees()
        self.version = version
        self.ready = True
        self.monitors: MonitorService | None = None

    def metrics(self) -> dict[str, Any]:
        return {}


async def request_caller(host: ApiHost, request: Request) -> Caller:
    """Who sent ``request`` (a token, a browser session, or nobody where that is allowed); an HTTP
    401/403 otherwise."""
    try:
        return await asyncio.to_thread(host.auth.check_request, request.headers.get("authorization"),
                                       request.cookies.get(SESSION_COOKIE))
    except AuthFailure as exc:
        raise HTTPException(exc.status, exc.message,
                            headers={"WWW-Authenticate": "Bearer"} if exc.status == 401 else None) from None


def _collapsed(raw: str | None) -> list[str]:
    ids = [part for part in (raw or "").split(",") if part]
    if len(ids) > MAX_COLLAPSED:
        raise HTTPException(400, f"at most {MAX_COLLAPSED} collapsed spans per request; expand some")
    return ids


def build_router(server: ApiHost) -> APIRouter:
    """The ``/api/v1`` routes over a running :class:`~costar.server.app.CostarServer` (or a
    :class:`StoreHost`)."""

    async def caller(request: Request) -> Caller:
        return await request_caller(server, request)

    router = APIRouter(prefix="/api/v1", dependencies=[Depends(caller)])

    async def run(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        try:
            return await asyncio.to_thread(fn, *args, **kwargs)
        except CostarError as exc:  # its type says whose fault: 404 missing, 400 bad request, 503 store
            raise HTTPException(exc.http_status, str(exc)) from None

    @router.get("/server", response_model=ServerInfo)
    async def server_info() -> ServerInfo:
        return ServerInfo(costar_version=server.version, store=server.store.location,
                          tokens_required=server.auth.required, ready=server.ready, stats=server.metrics())

    @router.get("/projects", response_model=list[ProjectInfo])
    async def projects() -> list[ProjectInfo]:
        rows = await run(server.tables.projects)
        return [ProjectInfo(**r) for r in rows]

    @router.get("/traces", response_model=Page[ServerTrace])
    async def traces(project: str | None = None, service: str | None = None,
                     since: Annotated[float | None, Query(description="Unix seconds")] = None,
                     limit: Annotated[int, Query(ge=1, le=1000)] = 50, cursor: str | None = None) -> Page[ServerTrace]:
        """Traces the server ingested, newest first (by completion)."""
        before = None
        if cursor:
            parts = _decode_cursor(cursor)
            if (len(parts) != 2 or isinstance(parts[0], bool) or not isinstance(parts[0], int | float)
                    or not isinstance(parts[1], str)):
                raise HTTPException(400, "bad cursor; pass back the 'next' value of the previous page")
            before = (float(parts[0]), str(parts[1]))
        rows = await run(server.tables.list_traces, project=project, service=service, since=since, limit=limit + 1,
                         before=before)
        nxt = _encode_cursor((rows[limit - 1].completed_at, rows[limit - 1].trace_id)) if len(rows) > limit else None
        return Page[ServerTrace](items=rows[:limit], next=nxt)

    # Trace ids may hold '/' (a client sends it as %2F, which arrives decoded), so every trace route
    # takes a :path and the catch-all GET /traces/{trace_id} comes after the routes with a suffix.
    @router.get("/traces/{trace_id:path}/spans/{span_id:path}", response_model=Span)
    async def span(trace_id: str, span_id: str) -> Span:
        """One span whole: attributes (messages, tool arguments and results) and events."""
        head = await run(server.store.get_trace, trace_id, spans=False)
        found = await run(server.store.get_span, head.trace_id, span_id)
        if found is None:
            raise HTTPException(404, f"no span {span_id!r} in trace {head.trace_id}")
        return found

    @router.get("/traces/{trace_id:path}/spans", response_model=Page[Span])
    async def spans(trace_id: str, kind: SpanKind | None = None, name: str | None = None,
                    status: StatusCode | None = None, parent_id: str | None = None,
                    offset: Annotated[int, Query(ge=0)] = 0,
                    limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> Page[Span]:
        """One page of a trace's spans in recorded order, filtered like ``SpanQuery``."""
        head = await run(server.store.get_trace, trace_id, spans=False)
        q = SpanQuery(kind=kind, name=name, status=status, parent_id=parent_id, offset=offset, limit=limit)
        total = await run(server.store.count_spans, head.trace_id, q)
        items = await run(server.store.query_spans, head.trace_id, q)
        nxt = str(offset + limit) if offset + len(items) < total else None
        return Page[Span](items=items, next=nxt, total=total)

    @router.get("/traces/{trace_id:path}/tree", response_model=TreePage)
    async def tree(trace_id: str, offset: Annotated[int, Query(ge=0)] = 0,
                   limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 200,
                   collapsed: Annotated[str | None, Query(description="span ids, comma-separated")] = None,
                   ) -> TreePage:
        """Rows ``offset`` .. ``offset + limit`` of the span tree (depth first, children by start
        time) with the subtrees of ``collapsed`` spans hidden; only those rows' spans are read."""
        hidden = _collapsed(collapsed)
        head = await run(server.store.get_trace, trace_id, spans=False)
        index = await run(server.trees.get, server.store, head.trace_id)
        return await run(tree_page, server.store, index, offset=offset, limit=limit, collapsed=hidden)

    @router.get("/traces/{trace_id:path}/tree/locate", response_model=TreeLocation)
    async def tree_locate(trace_id: str, span_id: str, collapsed: str | None = None) -> TreeLocation:
        """The row of ``span_id`` once its ancestors are expanded, and those ancestors."""
        hidden = _collapsed(collapsed)
        head = await run(server.store.get_trace, trace_id, spans=False)
        index = await run(server.trees.get, server.store, head.trace_id)
        found = locate(index, span_id, hidden)
        if found is None:
            raise HTTPException(404, f"no span {span_id!r} in trace {head.trace_id}")
        return found

    @router.get("/traces/{trace_id:path}/verdicts", response_model=list[Verdict])
    async def verdicts(trace_id: str, latest: bool = True) -> list[Verdict]:
        head = await run(server.store.get_trace, trace_id, spans=False)
        return await run(server.store.verdicts, trace_ids=[head.trace_id], latest=latest)

    @router.get("/traces/{trace_id:path}", response_model=TraceHead)
    async def trace(trace_id: str) -> TraceHead:
        head = await run(server.store.get_trace, trace_id, spans=False)
        total = await run(server.store.count_spans, head.trace_id)
        info = (await run(server.tables.server_traces, [head.trace_id])).get(head.trace_id)
        return TraceHead(trace=head, spans_total=total, server=info)

    @router.get("/runs", response_model=list[Run])
    async def runs(limit: Annotated[int, Query(ge=1, le=500)] = 50) -> list[Run]:
        return await run(server.store.list_runs, limit)

    @router.get("/runs/{run_ref}", response_model=RunView)
    async def run_view(run_ref: str) -> RunView:
        r = await run(server.store.get_run, run_ref)
        summary = await run(summarize_run, server.store, r.run_id)
        return RunView(run=r, summary=summary)

    @router.get("/runs/{run_ref}/traces", response_model=Page[Trace])
    async def run_traces(run_ref: str, offset: Annotated[int, Query(ge=0)] = 0,
                         limit: Annotated[int, Query(ge=1, le=500)] = 100) -> Page[Trace]:
        """A run's traces without their spans, by scenario and trial."""
        run_id = await run(server.store.resolve_run_id, run_ref)
        ids = await run(server.store.trace_ids, run_id)
        page = await run(server.store.get_traces, ids[offset:offset + limit], spans=False)
        nxt = str(offset + limit) if offset + limit < len(ids) else None
        return Page[Trace](items=page, next=nxt, total=len(ids))

    def monitor_tables() -> Any:
        from costar.store.monitor_tables import MonitorTables

        return MonitorTables(server.store)

    def monitor_views() -> list[MonitorView]:
        service = server.monitors
        if service is None:
            return []
        tables = monitor_tables()
        views = []
        for m in service.monitors:
            states = tables.alert_states(m.name)
            views.append(MonitorView(name=m.name, source=m.where(), enabled=m.definition.enabled,
                                     definition=m.definition.model_dump(mode="json"), counts=tables.counts(m.name),
                                     firing=[f"{rule} on {series}" for (rule, series), st in sorted(states.items())
                                             if st.firing]))
        return views

    @router.get("/monitors", response_model=list[MonitorView])
    async def monitors() -> list[MonitorView]:
        """The monitors this server scores with (none when it runs with ``--no-monitors``)."""
        return await run(monitor_views)

    @router.get("/monitors/{name}/series")
    async def monitor_series(name: str, judge: str | None = None,
                             window: Annotated[float | None, Query(description="Seconds")] = None,
                             metric: str | None = None,
                             since: Annotated[float | None, Query(description="Unix seconds")] = None,
                             limit: Annotated[int, Query(ge=1, le=10_000)] = 1000) -> list[dict[str, Any]]:
        """Stored points of a monitor's series, oldest first (``judge`` empty for the operational ones)."""
        points = await run(monitor_tables().points, name, judge=judge, window=window, metric=metric, since=since,
                           limit=limit)
        return [p.to_dict() for p in points]

    @router.get("/alerts")
    async def alerts(monitor: str | None = None,
                     since: Annotated[float | None, Query(description="Unix seconds")] = None,
                     limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[dict[str, Any]]:
        """The alert history (firing and resolved, each delivery's outcome), newest first."""
        rows = await run(monitor_tables().alerts, monitor=monitor, since=since, limit=limit)
        return [a.to_dict() for a in rows]

    add_view_routes(router, lambda: server.store, run)
    return router
