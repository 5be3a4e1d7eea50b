"""The Run page: a scenarios × trials matrix (pass, fail, error per trial, each a link to its trace),
the pass^k and pass@k curves, failures grouped by check with their rationales, the judges, and the
operational metrics against the run's history (``costar report RUN --json``, ``costar metrics RUN
--json``)."""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING, Any

from fastapi import Request
from fastapi.responses import Response

from costar.errors import CostarError
from costar.metrics import MetricsReport, check_metrics
from costar.server.auth import Caller
from costar.summary import RunSummary, summarize_run
from costar.views import MetricsView, RunReport

if TYPE_CHECKING:
    from costar.ui.app import WebApp

MATRIX_METRICS = ("total_tokens", "cost_usd", "latency_s", "llm_calls", "tool_calls", "error_spans")


def failures_by_check(summary: RunSummary) -> list[dict[str, Any]]:
    """Each check (judge) that failed, with every failing trial and its rationale."""
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for s in summary.scenarios:
        for t in s.trial_results:
            for v in [*t.failures, *t.judge_errors]:
                groups[v.name].append({"scenario_id": s.scenario_id, "trial": t.trial, "trace_id": t.trace_id,
                                       "outcome": v.outcome, "rationale": v.error or v.rationale,
                                       "gating": v.gating})
    return [{"name": name, "failures": rows} for name, rows in sorted(groups.items(), key=lambda kv: -len(kv[1]))]


def curve_chart(summary: RunSummary) -> dict[str, Any] | None:
    if not summary.pass_hat_k:
        return None
    ks = [p.k for p in summary.pass_hat_k]
    at_k = {p.k: p.value for p in summary.pass_at_k}
    return {"title": "pass^k (every one of k trials passes) and pass@k (at least one does)", "x": ks,
            "x_kind": "count", "x_label": "k", "y_kind": "pct", "y_range": [0, 1],
            "series": [{"label": "pass^k", "values": [p.value for p in summary.pass_hat_k]},
                       {"label": "pass@k", "values": [at_k.get(k) for k in ks], "dashed": True}]}


def register(web: WebApp) -> None:
    @web.page("/runs/{run_ref:path}")
    async def run_page(request: Request, caller: Caller, run_ref: str) -> Response:
        store = web.store
        run = await web.run(store.get_run, run_ref)
        summary = await web.run(summarize_run, store, run.run_id)
        metrics: MetricsReport | None
        metrics_error: str | None = None
        try:
            metrics = await web.run(check_metrics, store, run.run_id)
        except CostarError as exc:  # a side panel: it says why, the rest of the page still shows
            metrics, metrics_error = None, str(exc)
        width = max((s.trials + len(s.missing_trials) for s in summary.scenarios), default=0)
        trial_numbers = sorted({t.trial for s in summary.scenarios for t in s.trial_results}
                               | {m for s in summary.scenarios for m in s.missing_trials})
        cells = {s.scenario_id: {t.trial: t for t in s.trial_results} for s in summary.scenarios}
        data = {"report": RunReport.of(run, summary).model_dump(mode="json"),
                "metrics": MetricsView.of(metrics).model_dump(mode="json") if metrics is not None else None}
        charts = {"curve": curve_chart(summary)}
        return web.render(request, "run.html", caller, section="runs", run=run, origin=run.origin,
                          summary=summary, metrics=metrics, metrics_error=metrics_error, trial_numbers=trial_numbers,
                          width=width, cells=cells, failures=failures_by_check(summary), data=data, charts=charts,
                          matrix_metrics=MATRIX_METRICS)
