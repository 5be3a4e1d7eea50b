"""Judge errors are judged again, never reused as verdicts; alert rules on the count series work at
low and zero traffic. A real SQLite store."""

from __future__ import annotations

import asyncio
from typing import Any

from costar.judges.base import Judge, JudgeContext
from costar.judges.registry import JudgeRegistry
from costar.monitor.alerts import check_threshold
from costar.monitor.files import Monitor
from costar.monitor.model import AlertRule, MonitorDefinition
from costar.monitor.service import MonitorService, ServiceOptions
from costar.store.monitor_tables import SeriesPoint
from costar.verdict import Verdict, VerdictSource
from tests.support.monitor import NOW, Clock, make_trace


def service(store: Any, *defs: dict[str, Any], clock: Clock | None = None, registry: JudgeRegistry | None = None,
            **options: Any) -> MonitorService:
    return MonitorService(store, [Monitor(MonitorDefinition.model_validate(d), "test") for d in defs],
                          registry or JudgeRegistry(), options=ServiceOptions(**options), clock=clock or Clock())


def run(coro: Any) -> Any:
    return asyncio.run(coro)


# ----------------------------------------------------------------------------- judge errors


class FlakyJudge(Judge):
    """Stands for a model judge whose first calls fail (a timeout, a rate limit), then decide."""

    source = VerdictSource.LLM
    needs_spans = False

    def __init__(self, failures: int) -> None:
        self.name = "flaky"
        self.failures = failures
        self.calls = 0

    def config(self) -> dict[str, Any]:
        return {}

    def evaluate(self, ctx: JudgeContext) -> Verdict:
        self.calls += 1
        if self.calls <= self.failures:
            raise TimeoutError("the model did not answer")
        return Verdict(name=self.name, value=True, passed=True, rationale="scripted", source=VerdictSource.LLM)


def test_a_judge_error_is_judged_again_not_reused(sqlite_store: Any) -> None:
    sqlite_store.write_traces([make_trace(f"t{i}", at=NOW - 10 - i) for i in range(3)])
    judge = FlakyJudge(failures=3)
    reg = JudgeRegistry()
    reg.register("flaky", judge)
    svc = service(sqlite_store, {"name": "a", "judges": ["flaky"]}, {"name": "b", "judges": ["flaky"]},
                  registry=reg)
    first = run(svc.run_once(["a"]))
    assert (first.score.judged, first.score.errors) == (3, 3)
    # Another monitor with the same judge: the errors are no verdicts to share, so it judges again.
    second = run(svc.run_once(["b"]))
    assert (second.score.judged, second.score.cached, second.score.errors) == (3, 0, 0)
    assert judge.calls == 6
    assert svc.tables.outcome_counts("b", NOW - 3600, NOW) == {"flaky": {"pass": 3}}
    # Now that real verdicts exist, they are what is shared.
    third = service(sqlite_store, {"name": "c", "judges": ["flaky"]}, registry=reg)
    assert run(third.run_once(["c"])).score.cached == 3
    assert judge.calls == 6


# ----------------------------------------------------------------------------- count series


def test_count_series_are_judged_at_any_traffic_other_metrics_still_need_min_samples() -> None:
    quiet = AlertRule(name="quiet", metric="traces", below=1, min_samples=10)
    assert check_threshold(quiet, "m", SeriesPoint("m", "", 3600.0, "traces", NOW, 0, 0.0)).state == "firing"
    assert check_threshold(quiet, "m", SeriesPoint("m", "", 3600.0, "traces", NOW, 3, 3.0)).state == "clear"
    few = AlertRule(name="few", metric="sampled", below=5, min_samples=10)
    assert check_threshold(few, "m", SeriesPoint("m", "", 3600.0, "sampled", NOW, 4, 2.0)).state == "firing"
    errors = AlertRule(name="errors", metric="error_rate", above=0.1, bound="value", min_samples=10)
    point = SeriesPoint("m", "", 3600.0, "error_rate", NOW, 4, 0.5, 0.1, 0.9)
    assert check_threshold(errors, "m", point).state == "insufficient"


def test_a_no_traffic_rule_fires_when_traffic_stops_and_recovers_when_it_returns(sqlite_store: Any) -> None:
    clock = Clock()
    svc = service(sqlite_store, {"name": "m", "checks": [{"output_contains": "ok"}], "windows": ["1h"],
                                 "alerts": [{"name": "no-traffic", "metric": "traces", "below": 1,
                                             "min_samples": 1}]}, clock=clock, min_step=1)
    sqlite_store.write_traces([make_trace(f"a{i}", at=NOW - 100 + i) for i in range(3)])
    ev = run(svc.run_once())
    assert [c.state for c in ev.evaluation.checks] == ["clear"]
    clock.t += 2 * 3600  # no trace in the last hour
    ev = run(svc.run_once())
    assert [c.state for c in ev.evaluation.checks] == ["firing"]  # "insufficient" before the fix
    assert [e.status for e in ev.evaluation.events] == ["firing"]
    sqlite_store.write_traces([make_trace("b0", at=clock.t - 5)])
    clock.t += 1
    ev = run(svc.run_once())
    assert [e.status for e in ev.evaluation.events] == ["resolved"]


def test_the_budget_keeps_counting_what_was_spent_but_not_stored_across_refreshes() -> None:
    # A batch's costs reach the store when the batch ends; the periodic refresh forgot them, so a
    # batch that ran longer than the refresh period could spend the budget again.
    from types import SimpleNamespace

    from costar.monitor.scoring import BudgetGuard

    stored = {"usd": 0.0}
    now = {"t": 1000.0}
    tables = SimpleNamespace(spend_since=lambda name, since: stored["usd"])
    definition = SimpleNamespace(name="m", budget=SimpleNamespace(usd=1.0, per=86400.0))
    guard = BudgetGuard(tables, definition, clock=lambda: now["t"], refresh=30.0)  # type: ignore[arg-type]
    assert not guard.exhausted()
    guard.spent(0.6)
    now["t"] += 31  # a refresh while the batch still runs: nothing stored yet
    assert not guard.exhausted()
    guard.spent(0.6)
    now["t"] += 31
    assert guard.exhausted()  # 1.2 spent, none of it stored yet
    stored["usd"] = 1.2  # the batch ends: its results are written
    guard.stored(1.2)
    assert guard.exhausted()  # counted once, from the store
    stored["usd"] = 0.0  # the period rolled over
    now["t"] += 31
    assert not guard.exhausted()
