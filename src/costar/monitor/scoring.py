"""Scoring sampled traces with a monitor's judges: the verdict cache, budgets, and the results the
metric series are computed from.

The judges are resolved as ``costar assess`` resolves a scenario's: the monitor's checks become check
judges (``judges.checks.scenario_checks``) and its named judges resolve through the judge registry
(``JudgeRegistry.resolve``: the project's ``judges/`` folder with promoted aligned versions when the
registry is ``api.project_judges``, plugins, templates, ``module:attr``). The monitor's criteria reach
model judges as ``{{criteria}}`` through a scenario that stands for the monitor.

A verdict is reused when the newest verdict of that name on that trace came from a judge with the same
fingerprint, and an older one with that fingerprint is brought back, exactly as ``assess`` does; only
new or changed judges run. New verdicts are stored like any other, with ``metadata.monitor`` naming the
monitor that asked for them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from costar.judges.base import Judge, JudgeContext
from costar.judges.checks import scenario_checks
from costar.judges.registry import JudgeRegistry
from costar.models.limits import limits_for
from costar.monitor.files import Monitor
from costar.monitor.model import MonitorDefinition
from costar.scenario import Expectations, Scenario
from costar.store.base import Store
from costar.store.monitor_tables import ConsideredTrace, JudgeResult, MonitorTables
from costar.trace.model import Trace, TraceStatus
from costar.verdict import Verdict, VerdictSource

MONITOR_KEY = "monitor"
"""The verdict metadata key that names the monitor a verdict was computed for."""
SKIPPED = "skipped"


def monitor_scenario(definition: MonitorDefinition) -> Scenario:
    """The scenario that stands for a monitor when its judges are built and run: its checks and
    criteria as expectations (no implicit ``agent_completed``: a monitor lists what it checks)."""
    return Scenario(id=f"monitor:{definition.name}", description=definition.description,
                    prompt="(production traffic)",
                    expectations=Expectations(checks=definition.checks, criteria=definition.criteria,
                                              require_completion=False),
                    judges=definition.judges, metadata={"monitor": definition.name, **definition.metadata})


def costs_money(judge: Judge) -> bool:
    """Judges that call models (their calls count against a monitor's budget)."""
    return judge.source in (VerdictSource.LLM, VerdictSource.AGENT) or getattr(judge, "model", None) is not None


def trace_time(trace: Trace, fallback: float) -> float:
    """When a trace happened, for windows: its end (else its start), in Unix seconds; ``fallback`` (when
    the monitor first saw it) for a trace that records no time, such as some imported ones."""
    ns = trace.end_ns or trace.start_ns
    return ns / 1e9 if ns > 0 else fallback


def considered_row(monitor: str, trace: Trace, *, sampled: bool, now: float) -> ConsideredTrace:
    t = trace.totals
    return ConsideredTrace(monitor=monitor, trace_id=trace.trace_id, trace_time=trace_time(trace, now),
                           sampled=sampled, state="pending" if sampled else SKIPPED, considered_at=now,
                           total_tokens=t.total_tokens or t.input_tokens + t.output_tokens, cost_usd=t.cost_usd,
                           latency_s=t.latency_s, error=trace.status != TraceStatus.OK)


class MonitorJudges:
    """A monitor with its judges built: what scoring and the series need to know about it."""

    def __init__(self, monitor: Monitor, registry: JudgeRegistry) -> None:
        self.monitor = monitor
        self.definition = monitor.definition
        self.scenario = monitor_scenario(self.definition)
        judges: list[Judge] = list(scenario_checks(self.scenario))
        for i, ref in enumerate(self.definition.judges):
            try:
                judges.append(registry.resolve(ref))
            except Exception as exc:
                raise monitor.error(str(exc), ("judges", i)) from None
        names = [j.name for j in judges]
        dup = next((n for n in names if names.count(n) > 1), None)
        if dup is not None:
            raise monitor.error(f"two of the monitor's judges give verdicts named {dup!r}; name one of them "
                                "(name: on a check, or a judge's own name)", ("judges",))
        self.judges = judges
        for i, rule in enumerate(self.definition.alerts):
            if rule.per_judge and rule.judge != "*" and rule.judge not in names:
                raise monitor.error(f"alert rule {rule.name!r} names judge {rule.judge!r}, which is not one of the "
                                    f"monitor's ({', '.join(names)})", ("alerts", i, "judge"))
        self.needs_spans = any(j.needs_spans for j in judges)
        if self.definition.requests_per_minute:
            for j in judges:
                spec = getattr(getattr(j, "_clients", None), "uri", None) or getattr(j, "model", None)
                if isinstance(spec, str):
                    _rate_limit(spec, self.definition.requests_per_minute)

    @property
    def name(self) -> str:
        """The monitor's name."""
        return self.definition.name

    def judge_names(self) -> list[str]:
        """The verdict names of the monitor's judges, in order."""
        return [j.name for j in self.judges]


def _rate_limit(model: str, rpm: float) -> None:
    """Apply a monitor's request rate to a model endpoint (the model layer's process-wide limits)."""
    from costar.models.uri import parse_model_uri

    try:
        spec = parse_model_uri(model)
    except Exception:  # a judge whose model does not parse fails with its own error when it runs
        return
    limits_for(spec.endpoint_key, requests_per_minute=rpm)


@dataclass
class ScoreStats:
    """What one scoring pass did."""

    traces: int = 0
    """Sampled traces scored."""
    judged: int = 0
    """Judge calls made."""
    cached: int = 0
    """Verdicts already current (same judge fingerprint)."""
    restored: int = 0
    """Verdicts of the same judge version found in the verdict history and made current again."""
    errors: int = 0
    """Judge calls that ended in an error verdict."""
    skipped: int = 0
    """Judge calls skipped because the monitor's budget was spent."""
    missing: int = 0
    """Sampled traces no longer in the store (deleted by retention before they were scored)."""
    cost_usd: float = 0.0
    """What the judge calls cost."""
    by_monitor: dict[str, int] = field(default_factory=dict)
    """Traces scored, by monitor."""

    def add(self, other: ScoreStats) -> None:
        """Add ``other``'s counts to these."""
        for name in ("traces", "judged", "cached", "restored", "errors", "skipped", "missing"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.cost_usd += other.cost_usd
        for k, v in other.by_monitor.items():
            self.by_monitor[k] = self.by_monitor.get(k, 0) + v


class BudgetGuard:
    """A monitor's spending over its budget period: the stored spend, refreshed now and then, plus
    what this process spent and has not stored yet. Judges in flight when the cap is reached still
    finish, so the overshoot is at most one round of concurrent judge calls."""

    def __init__(self, tables: MonitorTables, definition: MonitorDefinition, clock: Callable[[], float] = time.time,
                 refresh: float = 30.0) -> None:
        self.tables = tables
        self.definition = definition
        self.clock = clock
        self.refresh = refresh
        self._stored = 0.0
        self._local = 0.0
        self._read_at: float | None = None

    def exhausted(self) -> bool:
        """Whether the budget is spent (the stored spending is read again at most every ``refresh`` seconds)."""
        budget = self.definition.budget
        if budget is None:
            return False
        now = self.clock()
        if self._read_at is None or now - self._read_at >= self.refresh:
            # What this process spent stays counted until it is stored (``stored()``): a batch's
            # costs are written when the batch ends, so forgetting them here let a batch overspend.
            self._stored = self.tables.spend_since(self.definition.name, now - budget.per)
            self._read_at = now
        return self._stored + self._local >= budget.usd

    def spent(self, usd: float) -> None:
        """Count what a judge call in this process just cost."""
        self._local += usd

    def stored(self, usd: float) -> None:
        """What :meth:`spent` counted and is now in the store (read back at the next refresh)."""
        self._local = max(0.0, self._local - usd)
        self._read_at = None  # read the store at the next check, which now holds it


class Scorer:
    """Scores a monitor's sampled traces. One per monitor; safe to call from one event loop.
    ``limit`` bounds the judge calls at once (the service shares one across its monitors)."""

    def __init__(self, store: Store, tables: MonitorTables, judges: MonitorJudges, *, limit: asyncio.Semaphore,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.tables = tables
        self.mj = judges
        self.clock = clock
        self.budget = BudgetGuard(tables, judges.definition, clock)
        self._sem = limit

    async def score(self, rows: Sequence[ConsideredTrace], *, force: Sequence[str] = ()) -> ScoreStats:
        """Score these sampled traces (rows of ``monitor_traces``) with every judge of the monitor and
        record the results; ``force`` names traces to judge again whatever is cached (amended traces)."""
        stats = ScoreStats()
        rows = [r for r in rows if r.sampled]
        if not rows:
            return stats
        name = self.mj.name
        judges = self.mj.judges
        ids = [r.trace_id for r in rows]
        forced = set(force)
        latest = await asyncio.to_thread(self._latest, ids)
        traces = {t.trace_id: t for t in await asyncio.to_thread(self.store.get_traces, ids,
                                                                 spans=self.mj.needs_spans)}
        now = self.clock()
        results: list[JudgeResult] = []
        restore: list[Verdict] = []
        done: list[tuple[str, str]] = []
        work: list[tuple[ConsideredTrace, Trace, Judge]] = []
        for row in rows:
            trace = traces.get(row.trace_id)
            if trace is None:
                stats.missing += 1
                done.append((row.trace_id, "missing"))
                continue
            stats.traces += 1
            done.append((row.trace_id, "scored"))
            for j in judges:
                fp = j.fingerprint()
                current = None if row.trace_id in forced else latest.get((row.trace_id, j.name))
                if current is not None and current.fingerprint == fp:
                    stats.cached += 1
                    results.append(self._result(row, j.name, current, now, cost=0.0))
                    continue
                old = None if row.trace_id in forced else await asyncio.to_thread(
                    self.store.find_verdict, row.trace_id, fp, j.name)
                if old is not None:
                    stats.restored += 1
                    restore.append(old)
                    results.append(self._result(row, j.name, old, now, cost=0.0))
                    continue
                work.append((row, trace, j))
        if restore:
            await asyncio.to_thread(_write_by_run, self.store, restore, traces)

        async def one(row: ConsideredTrace, trace: Trace,
                      judge: Judge) -> tuple[ConsideredTrace, Judge, Verdict | None]:
            if costs_money(judge) and self.budget.exhausted():
                return row, judge, None
            async with self._sem:
                if costs_money(judge) and self.budget.exhausted():
                    return row, judge, None
                verdict = await judge.judge(JudgeContext(trace=trace, scenario=self.mj.scenario, store=self.store))
            self.budget.spent(verdict.cost.cost_usd)
            return row, judge, verdict

        outcomes = await asyncio.gather(*(one(r, t, j) for r, t, j in work))
        fresh: list[Verdict] = []
        for row, judge, verdict in outcomes:
            if verdict is None:
                stats.skipped += 1
                results.append(JudgeResult(name, row.trace_id, judge.name, judge.fingerprint(), SKIPPED,
                                           row.trace_time, 0.0, now))
                continue
            verdict = verdict.model_copy(update={"metadata": {**verdict.metadata, MONITOR_KEY: name}})
            fresh.append(verdict)
            stats.judged += 1
            stats.errors += verdict.outcome == "error"
            stats.cost_usd += verdict.cost.cost_usd
            results.append(self._result(row, judge.name, verdict, now, cost=verdict.cost.cost_usd))
        if fresh:
            await asyncio.to_thread(_write_by_run, self.store, fresh, traces)
        await asyncio.to_thread(self.tables.write_results, name, results, done, now)
        self.budget.stored(stats.cost_usd)
        stats.by_monitor[name] = stats.traces
        return stats

    def _latest(self, ids: Sequence[str]) -> dict[tuple[str, str], Verdict]:
        """The newest verdict per (trace, judge) that may stand for a fresh one. A judge error is left
        out: it says the judge could not decide (a timeout, a rate limit), not what it would decide, so
        the judge runs again, as ``costar assess`` does (``Store.latest_fingerprints``, ``find_verdict``)."""
        names = set(self.mj.judge_names())
        return {(str(v.trace_id), v.name): v for v in self.store.verdicts(trace_ids=ids, latest=True)
                if v.name in names and v.outcome != "error"}

    def _result(self, row: ConsideredTrace, judge: str, verdict: Verdict, now: float, *, cost: float) -> JudgeResult:
        return JudgeResult(self.mj.name, row.trace_id, judge, verdict.fingerprint, verdict.outcome, row.trace_time,
                           cost, now)


def _write_by_run(store: Store, verdicts: Sequence[Verdict], traces: dict[str, Trace]) -> None:
    """Verdicts go in with their trace's run (None for production traces), as assess stores them."""
    groups: dict[str | None, list[Verdict]] = {}
    for v in verdicts:
        trace = traces.get(str(v.trace_id))
        groups.setdefault(trace.run_id if trace is not None else None, []).append(v)
    for run_id, vs in groups.items():
        store.write_verdicts(vs, run_id)
