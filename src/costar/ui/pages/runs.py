"""The Runs page: every run with suite, agent, version, commit, pass rate with its interval, trials,
tokens, cost, duration and origin; filtered and sorted by the URL (a link shares the view), two
picked to compare. Its data is ``costar runs --all --json`` (:func:`costar.views.run_list`), with
the page's filters applied."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import Request
from fastapi.responses import RedirectResponse, Response

from costar.server.auth import Caller
from costar.store.base import ORIGINS
from costar.summary import Rate
from costar.views import RunRow, run_list

if TYPE_CHECKING:
    from costar.ui.app import WebApp

SORTS = {
    "created": lambda r: r.created_at,
    "pass_rate": lambda r: -1.0 if r.pass_rate is None else r.pass_rate,
    "trials": lambda r: r.trials,
    "tokens": lambda r: r.total_tokens,
    "cost": lambda r: r.cost_usd,
    "duration": lambda r: -1.0 if r.finished_at is None else r.finished_at - r.created_at,
    "agent": lambda r: (r.agent.name, r.agent.version or ""),
}
"""The columns a listing sorts by (``?sort=``)."""


def _matches(row: RunRow, text: str) -> bool:
    hay = " ".join([row.run_id, row.description, row.agent.name, row.agent.version or "", row.agent.git_sha or "",
                    row.branch or "", *row.suite, *row.tags, row.status]).lower()
    return all(word in hay for word in text.lower().split())


def filter_runs(rows: list[RunRow], params: dict[str, Any]) -> list[RunRow]:
    """The rows the page's parameters keep, in the order they ask for."""
    origins = [o for o in params.get("origin", []) if o]
    if origins:
        rows = [r for r in rows if r.origin in origins]
    if params.get("status"):
        rows = [r for r in rows if r.status == params["status"]]
    if params.get("q"):
        rows = [r for r in rows if _matches(r, params["q"])]
    key = SORTS.get(params.get("sort") or "created", SORTS["created"])
    return sorted(rows, key=key, reverse=params.get("order", "desc") != "asc")


def register(web: WebApp) -> None:
    @web.page("/runs")
    async def runs_page(request: Request, caller: Caller) -> Response:
        qp = request.query_params
        params: dict[str, Any] = {"q": qp.get("q", "").strip(), "origin": qp.getlist("origin"),
                                  "status": qp.get("status", ""), "sort": qp.get("sort", "created"),
                                  "order": "asc" if qp.get("order") == "asc" else "desc"}
        try:
            limit = max(1, min(int(qp.get("limit", "200")), 2000))
        except ValueError:
            limit = 200
        listing = await web.run(run_list, web.store, limit=limit)
        shown = filter_runs(listing.runs, params)
        # The trial pass rate's interval, as the run's summary computes it.
        intervals = {r.run_id: Rate.of(r.passed, r.passed + r.failed) for r in shown}
        data = listing.model_copy(update={"runs": shown}).model_dump(mode="json")
        return web.render(request, "runs.html", caller, section="runs", rows=shown, total=len(listing.runs),
                          params=params, origins=ORIGINS, sorts=list(SORTS), limit=limit, data=data,
                          intervals=intervals)

    @web.page("/compare/pick")
    async def pick(request: Request, caller: Caller) -> Response:
        picked = [r for r in request.query_params.getlist("run") if r]
        if len(picked) != 2:
            return web.render(request, "error.html", caller, section="runs", status=400,
                              message="pick exactly two runs to compare")
        runs = [await web.run(web.store.get_run, p) for p in picked]
        base, head = sorted(runs, key=lambda r: r.created_at)
        from costar.ui.templating import query

        return RedirectResponse("/compare" + query(base=base.run_id, head=head.run_id), status_code=303)
