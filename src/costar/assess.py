"""The scoring engine: judges over stored traces, cached by (trace, judge fingerprint).

A verdict is reused when the newest verdict of that name on that trace came from a judge with
the same fingerprint; an older verdict with the same fingerprint is brought back (no judge
call) when a judge's configuration is rolled back; only new or changed judges run. A judge
error is never reused: the next assess asks the judge again (its model may be back).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

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


JudgeItem = tuple[str, Scenario | None, list[Judge]]
"""A stored trace to score: its id, its scenario, the judges that have no current verdict on it."""

RemoteJudging = Callable[[list[JudgeItem], bool], Awaitable[list[list[Verdict] | None]]]
"""Scores a batch somewhere else (a Ray cluster): each item's verdicts, None for a trace no longer stored.
The flag says whether the judges need the traces' spans."""


class Assessor:
    """Scores stored traces with the judges each scenario names (from ``registry``) plus
    ``extra_judges``, storing the verdicts. A verdict is cached by (trace, judge fingerprint): an
    unchanged judge never re-scores a trace, a changed one does."""

    def __init__(self, store: Store, registry: JudgeRegistry | None = None, *, concurrency: int = 8,
                 extra_judges: Sequence[Judge] = (), batch_size: int = 256,
                 remote: RemoteJudging | None = None) -> None:
        self.store = store
        self.remote = remote
        """Where re-scoring runs the judges (None: in this process)."""
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
            if self.remote is not None:
                results = [vs for vs in await self.remote(batch, spans) if vs is not None]
            else:
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


# --------------------------------------------------------------------------- on a Ray cluster


@dataclass
class RemoteJudgeJob:
    """One Ray task's share of a re-scoring: a few stored traces and the judges each still needs."""

    store: str
    """Where the store is (a PostgreSQL URL, or a folder the workers can reach)."""
    items: list[JudgeItem]
    """The traces to score."""
    spans: bool
    """Whether to load the traces' spans."""
    limiter: Any
    """The cluster's limiter actor (model-call rates, concurrency, budget)."""
    limiter_name: str
    """Its name (a worker installs each limiter once)."""
    requests_per_minute: float | None
    """The limiter's pace for models that set none of their own."""
    concurrency: int
    """Judge calls at once in this task."""


_worker_stores: dict[str, Store] = {}


def judge_on_worker(job: RemoteJudgeJob) -> list[list[Verdict] | None]:
    """A Ray task: load the job's traces from the store, run their judges here (model calls asking the
    cluster's limiter), return the verdicts; the driver stores them."""
    import os

    import ray

    from costar._util.aio import run_sync
    from costar.run.ray_limits import install
    from costar.store import open_store

    install(job.limiter, job.limiter_name, job.requests_per_minute)
    store = _worker_stores.get(job.store)
    if store is None:
        store = _worker_stores[job.store] = open_store(job.store)
    traces = {t.trace_id: t for t in store.get_traces([i[0] for i in job.items], spans=job.spans)}
    where = {"name": "ray", "node_id": ray.get_runtime_context().get_node_id(), "pid": os.getpid()}
    assessor = Assessor(store, concurrency=job.concurrency)
    sem = asyncio.Semaphore(job.concurrency)

    async def one(trace_id: str, sc: Scenario | None, judges: list[Judge]) -> list[Verdict] | None:
        trace = traces.get(trace_id)
        if trace is None:
            return None
        async with sem:
            verdicts = await assessor.judge_trace(trace, sc, judges)
        for v in verdicts:
            v.metadata["executor"] = where
        return verdicts

    async def all_items() -> list[list[Verdict] | None]:
        return list(await asyncio.gather(*(one(*item) for item in job.items)))

    return run_sync(all_items)


class RayJudging:
    """Re-scoring on a Ray cluster: :meth:`__call__` is the assessor's :data:`RemoteJudging`.

    Each batch is split into tasks of ``chunk`` traces; workers read the traces from the store
    themselves (so the store must be reachable from them: a PostgreSQL URL, or a folder on a file
    system they share) and send verdicts back; one limiter actor holds the model-call limits and the
    budget for the whole cluster."""

    def __init__(self, executor: Any, store: Store, *, requests_per_minute: float | None = None,
                 max_concurrency: int | None = None, budget_usd: float | None = None, chunk: int = 16,
                 concurrency: int = 8) -> None:
        self.executor = executor
        """The Ray executor (its connection settings)."""
        self.store = store
        """The store holding the traces (and receiving the verdicts, from this process)."""
        self.requests_per_minute = requests_per_minute
        """Model calls per minute across the cluster, per model (unless a model sets its own)."""
        self.max_concurrency = max_concurrency
        """Model calls at once across the cluster, per model (unless a judge sets its own)."""
        self.budget_usd = budget_usd
        """The most all model calls of this scoring may cost together."""
        self.chunk = chunk
        """Traces per Ray task."""
        self.concurrency = concurrency
        """Judge calls at once within one task."""
        self.limiter: Any = None
        self._name = ""
        self._ray: Any = None
        self._task: Any = None

    @property
    def location(self) -> str:
        """The store's location as the workers open it."""
        url = getattr(self.store, "url", None)
        return url if isinstance(url, str) else str(self.store.root.resolve())

    async def open(self) -> None:
        """Connect to the cluster and start the limiter."""
        import uuid

        from costar.run.ray_limits import start_limiter

        ray = self._ray = await self.executor.connect()
        self._name = f"costar-limiter-{uuid.uuid4().hex[:12]}"
        self.limiter = start_limiter(self._name, requests_per_minute=self.requests_per_minute,
                                     max_concurrency=self.max_concurrency, budget_usd=self.budget_usd)
        self._task = ray.remote(judge_on_worker).options(num_cpus=1, max_retries=self.executor.config.max_retries)

    async def __call__(self, batch: list[JudgeItem], spans: bool) -> list[list[Verdict] | None]:
        from costar.run.ray_executor import worker_failure

        assert self._task is not None, "open() first"
        ray = self._ray
        # Small enough tasks that every CPU gets some (two each), at most `chunk` traces a task.
        cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
        size = max(1, min(self.chunk, -(-len(batch) // (2 * cpus))))
        refs = [self._task.remote(RemoteJudgeJob(store=self.location, items=batch[i:i + size], spans=spans,
                                                 limiter=self.limiter, limiter_name=self._name,
                                                 requests_per_minute=self.requests_per_minute,
                                                 concurrency=self.concurrency))
                for i in range(0, len(batch), size)]
        try:
            parts = await asyncio.gather(*refs)
        except asyncio.CancelledError:
            for ref in refs:
                ray.cancel(ref, force=True)
            raise
        except ray.exceptions.RayTaskError as exc:
            raise worker_failure(exc, "scoring") from None
        return [vs for part in parts for vs in part]

    async def close(self) -> None:
        """Stop the limiter and disconnect."""
        if self.limiter is not None:
            self._ray.kill(self.limiter)
            self.limiter = None
        await self.executor.disconnect()
