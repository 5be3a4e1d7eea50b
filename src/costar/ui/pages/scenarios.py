"""The Scenarios page: the suite (tags, splits, descriptions, as the newest run kept it) and each
scenario's pass rate across the recent runs, so flaky scenarios stand out: a scenario is *flaky*
when, within one run, some of its trials passed and others failed (the agent is not consistent), and
*unstable* when whole runs disagree (passing in some, failing in others)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from costar.server.auth import Caller
from costar.summary import Rate
from costar.views import run_summary

if TYPE_CHECKING:
    from costar.store.base import Store
    from costar.ui.app import WebApp


class ScenarioRun(BaseModel):
    """One scenario in one run."""

    model_config = ConfigDict(extra="forbid")

    run_id: str
    created_at: float
    passed: int
    failed: int
    errored: int
    trials: int
    rate: Rate


class ScenarioHistory(BaseModel):
    """One scenario of the suite across the recent runs."""

    model_config = ConfigDict(extra="forbid")

    scenario_id: str
    description: str = ""
    tags: list[str] = Field(default_factory=list)
    split: str | None = None
    runs: list[ScenarioRun] = Field(default_factory=list)
    """Newest first."""
    pass_rate: float | None
    """Over every decided trial of those runs."""
    flaky_runs: int
    """Runs in which the scenario both passed and failed."""
    flaky: bool
    """True when some run both passed and failed it, or the runs disagree."""


class ScenarioList(BaseModel):
    """The suite and each scenario's recent history."""

    model_config = ConfigDict(extra="forbid")

    runs: list[str]
    """The runs looked at, newest first."""
    scenarios: list[ScenarioHistory]


def scenario_history(store: Store, *, runs: int = 20) -> ScenarioList:
    recent = store.list_runs(runs)
    known: dict[str, Any] = {}
    for run in reversed(recent):  # the newest run's copy of a scenario wins
        for sc in store.load_scenarios(run.run_id):
            known[sc.id] = sc
    by_id: dict[str, list[ScenarioRun]] = {}
    for run in recent:
        for s in run_summary(store, run).scenarios:
            by_id.setdefault(s.scenario_id, []).append(ScenarioRun(
                run_id=run.run_id, created_at=run.created_at, passed=s.passed, failed=s.failed,
                errored=s.errored, trials=s.trials, rate=s.rate))
    rows = []
    for sid in [*known, *sorted(set(by_id) - set(known))]:
        history = by_id.get(sid, [])
        passed, failed = sum(h.passed for h in history), sum(h.failed for h in history)
        flaky_runs = sum(1 for h in history if h.passed and h.failed)
        outcomes = {h.passed > 0 and h.failed == 0 for h in history if h.passed + h.failed}
        sc = known.get(sid)
        rows.append(ScenarioHistory(
            scenario_id=sid, description=getattr(sc, "description", "") or "", tags=list(getattr(sc, "tags", []) or []),
            split=getattr(sc, "split", None), runs=history,
            pass_rate=passed / (passed + failed) if passed + failed else None, flaky_runs=flaky_runs,
            flaky=flaky_runs > 0 or len(outcomes) > 1))
    return ScenarioList(runs=[r.run_id for r in recent], scenarios=rows)


def register(web: WebApp) -> None:
    @web.page("/scenarios")
    async def scenarios_page(request: Request, caller: Caller) -> Response:
        qp = request.query_params
        try:
            n = max(1, min(int(qp.get("runs", "20")), 200))
        except ValueError:
            n = 20
        view = await web.run(scenario_history, web.store, runs=n)
        tag, split, only = qp.get("tag", ""), qp.get("split", ""), qp.get("scenario", "")
        shown = [s for s in view.scenarios
                 if (not tag or tag in s.tags) and (not split or s.split == split)
                 and (not only or s.scenario_id == only) and (qp.get("flaky") != "1" or s.flaky)]
        if qp.get("sort") == "pass_rate":
            shown.sort(key=lambda s: -1.0 if s.pass_rate is None else s.pass_rate)
        elif qp.get("sort") == "flaky":
            shown.sort(key=lambda s: (not s.flaky, -s.flaky_runs))
        tags = sorted({t for s in view.scenarios for t in s.tags})
        return web.render(request, "scenarios.html", caller, section="scenarios", view=view, shown=shown, tags=tags,
                          tag=tag, split=split, only=only, n=n, flaky_only=qp.get("flaky") == "1",
                          sort=qp.get("sort", ""), data=view.model_dump(mode="json"))
