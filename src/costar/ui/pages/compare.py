"""The Compare page: two runs side by side per scenario with the exact-test outcome (improved,
regressed, unchanged, inconclusive), per-judge deltas, token, cost and latency deltas, and the
tool changes each regression may be due to (``costar compare BASE HEAD --json``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import Request
from fastapi.responses import Response

from costar.compare import compare_runs
from costar.server.auth import Caller
from costar.views import ComparisonView

if TYPE_CHECKING:
    from costar.ui.app import WebApp


def register(web: WebApp) -> None:
    @web.page("/compare")
    async def compare_page(request: Request, caller: Caller) -> Response:
        qp = request.query_params
        base, head = qp.get("base", "").strip(), qp.get("head", "").strip()
        if not base or not head:
            runs = await web.run(web.store.list_runs, 100)
            return web.render(request, "compare_pick.html", caller, section="compare", runs=runs, base=base, head=head)
        try:
            alpha = float(qp.get("alpha", "0.05"))
        except ValueError:
            alpha = 0.05
        correction = "none" if qp.get("correction") == "none" else "holm"
        comparison = await web.run(compare_runs, web.store, base, head, alpha=alpha,
                                   correction=correction)
        data = ComparisonView.of(comparison).model_dump(mode="json")
        attribution = {a.scenario_id: a for a in comparison.attribution.scenarios} if comparison.attribution else {}
        metric_of = {s.scenario_id: {m.metric: m for m in s.metrics} for s in comparison.scenarios}
        return web.render(request, "compare.html", caller, section="compare", c=comparison, data=data,
                          attribution=attribution, metric_of=metric_of, alpha=alpha, correction=correction)
