"""``/api/v1/views/…``: the JSON the CLI's ``--json`` prints, served over HTTP.

A script written against ``costar runs --json`` or ``costar compare A B --json`` reads the same
bytes from a shared server: each endpoint builds the same versioned view (``costar.views``, listed
in docs/JSON.md) with the same defaults as its command, and serialises it the way the CLI does.
Endpoints that read the project's files (judges, monitors) stay with the commands: a server's
project folder is not the caller's.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, Response

from costar.compare import compare_runs
from costar.errors import ConfigError
from costar.metrics import DEFAULT_HISTORY, DEFAULT_MIN_CHANGE, DEFAULT_THRESHOLD, check_metrics, parse_limits
from costar.store.base import Store
from costar.views import (
    SHOWN_ARTIFACT_CHARS,
    ComparisonView,
    MetricsView,
    RunList,
    RunReport,
    TraceDetail,
    TraceList,
    View,
    listed_origins,
    run_list,
    run_report,
    trace_detail,
    trace_list,
)

__all__ = ["add_view_routes"]

Runner = Callable[..., Awaitable[Any]]
"""Runs a blocking store read off the event loop, answering 404/400/503 for the store's errors."""


def _json(view: View) -> Response:
    # The CLI prints model_dump_json; FastAPI's own encoder would write floats and ids differently.
    return Response(view.model_dump_json(), media_type="application/json")


def _metrics(store: Store, run: str, limits: list[str], **options: Any) -> MetricsView:
    thresholds = parse_limits(limits, option="max")
    return MetricsView.of(check_metrics(store, store.resolve_run_id(run), thresholds=thresholds, **options))


def _comparison(store: Store, base: str, head: str, **options: Any) -> ComparisonView:
    return ComparisonView.of(compare_runs(store, base, head, **options))


def add_view_routes(router: APIRouter, store: Callable[[], Store], run: Runner) -> None:
    """Add the views to ``router`` (mounted under ``/api/v1``); ``store`` gives the host's store."""

    @router.get("/views/runs", response_model=RunList)
    async def runs(limit: Annotated[int, Query(ge=1, le=500)] = 20,
                   origin: Annotated[list[str] | None, Query()] = None, all: bool = False) -> Response:
        """``costar runs --json``: the newest runs (``origin`` repeatable; ``all``: refine's own runs too)."""
        try:
            origins = listed_origins(origin or (), include_hidden=all)
        except ConfigError as exc:
            raise HTTPException(400, str(exc)) from None
        return _json(await run(run_list, store(), limit=limit, origins=origins))

    @router.get("/views/runs/{run_ref}/report", response_model=RunReport)
    async def report(run_ref: str) -> Response:
        """``costar report RUN --json``: a stored run's summary."""
        return _json(await run(run_report, store(), run_ref))

    @router.get("/views/runs/{run_ref}/traces", response_model=TraceList)
    async def traces(run_ref: str) -> Response:
        """``costar traces list RUN --json``: a run's traces with outcomes and totals."""
        return _json(await run(trace_list, store(), run_ref))

    @router.get("/views/traces/{trace_id:path}", response_model=TraceDetail)  # ids may hold '/'
    async def trace(trace_id: str, max_spans: Annotated[int, Query(ge=1, le=100_000)] = 500,
                    artifact_chars: Annotated[int, Query(ge=0, le=1_000_000)] = SHOWN_ARTIFACT_CHARS) -> Response:
        """``costar traces show ID --json``: one trace's spans (every attribute), artifacts and verdicts."""
        return _json(await run(trace_detail, store(), trace_id, max_spans=max_spans, attributes=True,
                               artifact_chars=artifact_chars))

    @router.get("/views/compare", response_model=ComparisonView)
    async def compare(base: str, head: str = "latest",
                      alpha: Annotated[float, Query(ge=0.0001, le=0.5)] = 0.05,
                      correction: Literal["holm", "none"] = "holm", attribution: bool = True) -> Response:
        """``costar compare BASE HEAD --json`` (re-judging runs judges: it stays with the command)."""
        return _json(await run(_comparison, store(), base, head, alpha=alpha, correction=correction,
                               attribute_tools=attribution))

    @router.get("/views/runs/{run_ref}/metrics", response_model=MetricsView)
    async def metrics(run_ref: str, history: Annotated[int, Query(ge=1)] = DEFAULT_HISTORY,
                      threshold: Annotated[float, Query(ge=0.1)] = DEFAULT_THRESHOLD,
                      min_change: Annotated[float, Query(ge=0.0)] = DEFAULT_MIN_CHANGE,
                      max: Annotated[list[str] | None, Query(description="METRIC=LIMIT, repeatable")] = None,
                      ) -> Response:
        """``costar metrics RUN --json``: operational metrics per scenario against the run's history."""
        return _json(await run(_metrics, store(), run_ref, max or [], history=history, threshold=threshold,
                               min_change=min_change))
