"""The scoring engine: judges over stored traces, cached by (trace, judge fingerprint).

A verdict is reused when the newest verdict of that name on that trace came from a judge with
the same fingerprint; an older verdict with the same fingerprint is brought back (no judge
call) when a judge's configuration is rolled back; only new or changed judges run. A judge
error is never reused: the next assess asks the judge again (its model may be back).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from costar.errors import CostarError
from costar.judges.base import Judge, JudgeContext
from costar.judges.registry import DEFAULT_REGISTRY, JudgeRegistry
from costar.scenario import Scenario, load_scenario_file
from costar.store.base import Store
from costar.trace.model import Trace
from costar.verdict import Verdict


@dataclass
class AssessStats:
    """What scoring a run did."""

    traces: int = 0
    """Traces considered."""
    judged: int = 0
    """Judge calls made."""
    cached: int = 0
    """Verdicts already current (the same judge, unchanged, had scored the trace): not recomputed."""
    restored: int = 0
    """Older verdicts brought back for a judge rolled back to an earlier version."""
    errors: int = 0
    """Judge errors (a judge that could not decide; never a pass)."""
    missing_scenarios: set[str] = field(default_factory=set)
    """Scenarios of the run's traces whose definition was not found: their traces were not judged."""
    warnings: list[str] = field(default_factory=list)
    """Things worth telling the user, e.g. a scenario file that no longer loads."""


def current_scenarios(store: Store, run_id: str, problems: list[str] | None = None) -> dict[str, Scenario]:
    """The run's scenarios as defined now: re-read from their files when those still parse,
    else the snapshot stored with the run (so a deleted or broken file does not block re-scoring);
    why a file was not used is added to ``problems``."""
    snapshot = {sc.id: sc for sc in store.load_scenarios(run_id)}
    fresh: dict[str, Scenario] = {}
    for path in {sc.source for sc in snapshot.values() if sc.source is not None}:
        if not path.exists():
            continue
        try:
            for sc in load_scenario_file(path):
                if sc.id in snapshot:
                    fresh[sc.id] = sc
        except CostarError as exc:  # a file being edited must not block re-scoring; the snapshot stands in
            if problems is not None:
                problems.append(f"{exc}; scored with the definition stored with the run")
    return {**snapshot, **fresh}


class Assessor:
    """Scores stored traces with the judges each scenario names (from ``registry``) plus
    ``extra_judges``, storing the verdicts. A verdict is cached by (trace, judge fingerprint): an
    unchanged judge never re-scores a trace, a changed one does."""

    def __init__(self, store: Store, registry: JudgeRegistry | None = None, *, concurrency: int = 8,
                 extra_judges: Sequence[Judge] = (), batch_size: int = 256) -> None:
        self.store = store
        self.batch_size = batch_size
        self.registry = registry or DEFAULT_REGISTRY
        self.concurrency = max(1, concurrency)
        self.extra_judges = list(extra_judges)
        self._judges_cache: dict[str, list[Judge]] = {}

    def judges_for(self, scenario: Scenario | None) -> list[Judge]:
        """The judges of one scenario (its checks, the judges it names or that apply to it, the extra
        judges); only the extra judges for a trace without a scenario. Raises ConfigError for a judge
        that does not exist."""
        if scenario is None:
            return list(self.extra_judges)
        cached = self._judges_cache.get(scenario.id)
        if cached is None:
            cached = self.registry.judges_for(scenario) + self.extra_judges
            self._judges_cache[scenario.id] = cached
        return cached

    async def judge_trace(self, trace: Trace, scenario: Scenario | None,
                          judges: Sequence[Judge] | None = None) -> list[Verdict]:
        """The verdicts of ``judges`` (default: the scenario's) on one trace, not stored."""
        ctx = JudgeContext(trace=trace, scenario=scenario, store=self.store)
        judges = self.judges_for(scenario) if judges is None else judges
        return [await j.judge(ctx) for j in judges]

    async def assess_new_traces(self, batch: Sequence[tuple[Trace, Scenario | None]]
                                ) -> list[tuple[Trace, list[Verdict]]]:
        """Score freshly recorded traces (nothing cached yet); store their verdicts in one go."""
        sem = asyncio.Semaphore(self.concurrency)

        async def one(trace: Trace, sc: Scenario | None) -> list[Verdict]:
            async with sem:
                return await self.judge_trace(trace, sc)

        results = await asyncio.gather(*(one(t, sc) for t, sc in batch))
        verdicts = [v for vs in results for v in vs]
        if verdicts:
            await asyncio.to_thread(self.store.write_verdicts, verdicts, batch[0][0].run_id)
        return [(t, vs) for (t, _), vs in zip(batch, results, strict=True)]

    async def assess_run(self, run_id: str, *, force: bool = False,
                         scenarios: dict[str, Scenario] | None = None,
                         on_progress: Callable[[int, int], None] | None = None) -> AssessStats:
        """Score every trace of a run with its current judges and store the verdicts. A verdict already
        stored for the same judge fingerprint is kept (``force`` recomputes it); verdicts of judges no
        longer configured are retired. ``on_progress`` gets (traces done, traces to judge)."""
        scenarios = scenarios if scenarios is not None else current_scenarios(self.store, run_id)
        keys = self.store.trace_keys(run_id)
        stats = AssessStats(traces=len(keys))
        latest = {} if force else self.store.latest_fingerprints([k[0] for k in keys])
        # Plan first, from fingerprints only: traces whose verdicts are all current are never loaded.
        plan: list[tuple[str, Scenario | None, list[Judge]]] = []
        restore: list[Verdict] = []
        by_scenario: dict[str | None, list[str]] = {}
        for trace_id, scenario_id, _trial in keys:
            by_scenario.setdefault(scenario_id, []).append(trace_id)
            sc = scenarios.get(scenario_id or "")
            if sc is None and scenario_id and not self.extra_judges:
                stats.missing_scenarios.add(scenario_id)
            pending = []
            for j in self.judges_for(sc):
                fp = j.fingerprint()
                if latest.get((trace_id, j.name)) == fp:
                    stats.cached += 1
                    continue
                old = None if force else self.store.find_verdict(trace_id, fp, j.name)
                if old is not None:
                    restore.append(old)
                    stats.restored += 1
                else:
                    pending.append(j)
            if pending:
                plan.append((trace_id, sc, pending))
        if restore:
            self.store.write_verdicts(restore, run_id)
        # Verdicts of judges no longer configured (removed, or renamed by a parameter change) retire.
        for scenario_id, trace_ids in by_scenario.items():
            sc = scenarios.get(scenario_id or "")
            if sc is not None or self.extra_judges:
                self.store.activate_verdicts(trace_ids, [j.name for j in self.judges_for(sc)])
        done = 0
        sem = asyncio.Semaphore(self.concurrency)

        async def one(trace: Trace, sc: Scenario | None, judges: list[Judge]) -> list[Verdict]:
            async with sem:
                return await self.judge_trace(trace, sc, judges)

        # Batches: a couple of queries load a batch, one transaction stores its verdicts.
        for i in range(0, len(plan), self.batch_size):
            batch = plan[i:i + self.batch_size]
            spans = any(j.needs_spans for _, _, judges in batch for j in judges)
            traces = {t.trace_id: t for t in await asyncio.to_thread(
                self.store.get_traces, [p[0] for p in batch], spans=spans)}
            results = await asyncio.gather(*(one(traces[tid], sc, js) for tid, sc, js in batch if tid in traces))
            verdicts = [v for vs in results for v in vs]
            await asyncio.to_thread(self.store.write_verdicts, verdicts, run_id)
            stats.judged += len(verdicts)
            stats.errors += sum(v.outcome == "error" for v in verdicts)
            done += len(batch)
            if on_progress is not None:
                on_progress(done, len(plan))
        return stats
