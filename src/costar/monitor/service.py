"""The monitors at work over one store: which traces each one takes, scoring them, the metric series,
the alert rules and their deliveries.

:class:`MonitorService` is the seam a server uses and the engine of ``costar monitor run`` and
``backfill``:

* :meth:`MonitorService.offer` / :meth:`MonitorService.listener` take traces as they are stored
  (thread-safe, never blocking, bounded: past ``queue_size`` waiting traces a trace is left to the next
  sweep, never lost); the workers started by :meth:`MonitorService.start` (asyncio tasks on the running
  loop) record and score them, and evaluate the series and alert rules every ``evaluate_every`` seconds.
* :meth:`MonitorService.sweep` considers stored traces a monitor has not seen (after a restart, or
  without a server); :meth:`MonitorService.score_pending` scores what is waiting;
  :meth:`MonitorService.evaluate` computes the series and fires or clears alerts;
  :meth:`MonitorService.run_once` does the three; :meth:`MonitorService.backfill` scores a past period
  and fills its series.

Judge calls go through the model layer, so its per-model concurrency and request-rate limits apply
(a monitor's ``requests_per_minute`` sets the latter), and each monitor's ``budget`` caps what its
judges spend; at most ``concurrency`` judge calls run at once across all monitors.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from costar.judges.registry import JudgeRegistry
from costar.monitor.alerts import RuleCheck, check_anomaly, check_threshold, recent_history
from costar.monitor.files import Monitor
from costar.monitor.matching import matches
from costar.monitor.sampling import sampled
from costar.monitor.scoring import MonitorJudges, Scorer, ScoreStats, considered_row
from costar.monitor.series import OPS, GoldenFit, golden_fit, judge_points, ops_points, step_of
from costar.monitor.webhooks import deliver, log_alert, one_line, payload_for, retryable_error
from costar.store.base import Store
from costar.store.monitor_tables import AlertRecord, ConsideredTrace, DeliveryRecord, MonitorTables, SeriesPoint
from costar.trace.model import Trace

log = logging.getLogger("costar.monitor")

MAX_FILL = 5000
"""The most points a backfill stores per window."""
REDELIVER_MAX_RETRIES = 30
"""The most later tries of one failed delivery (the default waits fit about 29 into a day)."""


@dataclass
class ServiceOptions:
    """How the monitors run."""

    concurrency: int = 8
    """Judge calls at once, across all monitors (the model layer's own limits apply too)."""
    batch_size: int = 64
    """Traces loaded and scored together."""
    queue_size: int = 10_000
    """Traces offered and waiting for the workers; beyond it they are left to the next sweep."""
    evaluate_every: float = 60.0
    """Seconds between evaluations of the series and alert rules (background workers)."""
    min_step: float = 60.0
    """Smallest spacing of stored series points (a window's points are w/12 apart, at least this)."""
    lookback: float = 86400.0
    """How far back the first sweep of a monitor reaches (traces that started earlier are left to backfill)."""
    overlap: float = 3600.0
    """How far before its last stop a sweep starts again, for traces stored late."""
    fit_ttl: float = 300.0
    """Seconds a judge's golden-set fit is reused before it is measured again."""
    redeliver_after: float = 60.0
    """Seconds after a failed webhook delivery before an evaluation tries it again; the wait doubles
    after each further failure, up to ``redeliver_max_wait``."""
    redeliver_max_wait: float = 3600.0
    """The longest wait between two later tries of a failed delivery."""
    redeliver_for: float = 86400.0
    """How long after its alert a failed delivery is still tried (at most ``REDELIVER_MAX_RETRIES``
    later tries); then it stays failed."""


@dataclass
class ServiceStats:
    """Counters since the service started (the server shows them under /metrics)."""

    offered: int = 0
    """Traces offered (by the server's listener or ``offer``)."""
    matched: int = 0
    """Offers a monitor's filter matched (a trace counts once per monitor)."""
    sampled: int = 0
    """Matched offers in the monitor's sample."""
    dropped: int = 0
    """Traces offered while the queue was full (a sweep considers them later)."""
    swept: int = 0
    """Traces considered by sweeps of the store."""
    score: ScoreStats = field(default_factory=ScoreStats)
    """What scoring did."""
    evaluations: int = 0
    """Evaluations of the series and alert rules."""
    alerts_fired: int = 0
    """Alerts that started firing."""
    alerts_resolved: int = 0
    """Alerts that recovered."""
    deliveries_failed: int = 0
    """Webhook deliveries that failed after their attempts (a later retry that fails counts again)."""
    worker_errors: int = 0
    """Errors of the workers (the work is retried)."""
    last_error: str | None = None
    """The newest worker error, as one line."""

    def to_dict(self) -> dict[str, Any]:
        """The counters as JSON-ready data."""
        s = self.score
        return {"offered": self.offered, "matched": self.matched, "sampled": self.sampled, "dropped": self.dropped,
                "swept": self.swept, "scored_traces": s.traces, "judged": s.judged, "cached": s.cached,
                "judge_errors": s.errors, "skipped_budget": s.skipped, "judge_cost_usd": s.cost_usd,
                "evaluations": self.evaluations, "alerts_fired": self.alerts_fired,
                "alerts_resolved": self.alerts_resolved, "deliveries_failed": self.deliveries_failed,
                "worker_errors": self.worker_errors, "last_error": self.last_error}


@dataclass
class AlertEvent:
    """An alert that fired or resolved at an evaluation, with its deliveries' outcomes."""

    alert_id: int
    """Its id in the alert history."""
    check: RuleCheck
    """The rule check that changed state."""
    status: str
    """``firing`` or ``resolved``."""
    at: float
    """Unix seconds."""
    delivered: dict[str, bool] = field(default_factory=dict)
    """Webhook name -> whether the delivery succeeded."""


@dataclass
class Evaluation:
    """What one evaluation computed and decided."""

    at: float
    """When the windows ended (Unix seconds)."""
    points: list[SeriesPoint] = field(default_factory=list)
    """Every window's values."""
    stored: int = 0
    """How many of them were stored (a point is stored at most every window / 12)."""
    checks: list[RuleCheck] = field(default_factory=list)
    """Every alert rule's check."""
    events: list[AlertEvent] = field(default_factory=list)
    """The alerts that fired or recovered."""


@dataclass
class RunReport:
    """``costar monitor run``: a sweep, the scoring, an evaluation."""

    considered: int
    """Traces the sweep considered (matched)."""
    score: ScoreStats
    """What scoring did."""
    evaluation: Evaluation
    """The evaluation that followed."""


@dataclass
class BackfillReport:
    """``costar monitor backfill``: what was read, matched, sampled and scored, and the points stored."""

    monitor: str
    """The monitor backfilled."""
    since: float
    """Start of the period (Unix seconds)."""
    until: float
    """End of the period (Unix seconds)."""
    read: int = 0
    """Stored traces read."""
    matched: int = 0
    """Traces the monitor's filter matched."""
    sampled: int = 0
    """Matched traces in its sample."""
    score: ScoreStats = field(default_factory=ScoreStats)
    """What scoring did."""
    points: int = 0
    """Series points stored."""


@dataclass
class _Offer:
    monitor: str
    row: ConsideredTrace
    amended: bool


class MonitorService:
    """The monitors of a project over one store (see the module docstring).

    ``monitors`` are built with ``registry`` (give :func:`costar.api.project_judges` for the project's
    judges with their promoted aligned versions); a monitor whose judges cannot be built is a
    one-line error naming its file and line. Disabled monitors are kept for listing only.
    """

    def __init__(self, store: Store, monitors: Sequence[Monitor], registry: JudgeRegistry, *,
                 options: ServiceOptions | None = None, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.tables = MonitorTables(store)
        self.options = options or ServiceOptions()
        self.clock = clock
        self.monitors = list(monitors)
        self.active: dict[str, MonitorJudges] = {
            m.name: MonitorJudges(m, registry) for m in self.monitors if m.definition.enabled}
        self.stats = ServiceStats()
        self._scorers: dict[str, Scorer] = {}
        self._sem = asyncio.Semaphore(max(1, self.options.concurrency))  # one limit across every monitor
        self._fits: dict[tuple[str, str], tuple[float, GoldenFit | str | None]] = {}
        self._queue: deque[_Offer] = deque()
        self._queue_lock = threading.Lock()
        self._needs_sweep = True
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False

    # ------------------------------------------------------------------ the seam: traces as they are stored

    def offer(self, trace: Trace, *, project: str | None = None, amended: bool = False) -> int:
        """Take a trace that was just stored: every active monitor whose filter matches considers it
        (sampled or not). Thread-safe and non-blocking; returns how many monitors took it. The trace must
        carry its spans when a filter reads them. Recording and scoring happen on the workers."""
        now = self.clock()
        offers = []
        self.stats.offered += 1
        for name, mj in self.active.items():
            d = mj.definition
            if not matches(d.filter, trace, project=project):
                continue
            offers.append(_Offer(name, considered_row(name, trace, sampled=sampled(trace.trace_id, d.sample), now=now),
                                 amended))
        if not offers:
            return 0
        with self._queue_lock:
            if len(self._queue) + len(offers) > self.options.queue_size:
                self.stats.dropped += 1
                self._needs_sweep = True
                return 0
            self._queue.extend(offers)
        self.stats.matched += len(offers)
        self.stats.sampled += sum(o.row.sampled for o in offers)
        self._notify()
        return len(offers)

    def listener(self, completed: Sequence[Any]) -> None:
        """For a server's trace listeners: each item has ``trace``, ``project`` and ``amended``
        (``costar.server.CompletedTrace``)."""
        for item in completed:
            try:
                self.offer(item.trace, project=getattr(item, "project", None),
                           amended=bool(getattr(item, "amended", False)))
            except Exception:  # a listener must never break the server's storing of traces
                self._needs_sweep = True
                log.exception("monitors: could not take trace %s", getattr(item.trace, "trace_id", "?"))

    def _notify(self) -> None:
        loop, wake = self._loop, self._wake
        if loop is None or wake is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop closed: nobody is waiting any more
            loop.call_soon_threadsafe(wake.set)

    @property
    def queued(self) -> int:
        """Offers waiting for the workers."""
        return len(self._queue)

    # ------------------------------------------------------------------ workers

    async def start(self) -> None:
        """Start the workers on the running loop: one scoring what is offered, one evaluating."""
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._stopping = False
        self._tasks = [asyncio.create_task(self._work(), name="costar-monitor-worker"),
                       asyncio.create_task(self._evaluate_loop(), name="costar-monitor-evaluate")]
        if self._queue:
            self._wake.set()

    async def stop(self, *, drain: bool = True, timeout: float = 30.0) -> None:
        """Stop the workers; with ``drain``, what is queued is recorded and scored first (within
        ``timeout``; what is left is found by the next start's sweep)."""
        self._stopping = True
        if drain and self._queue:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.process_queue(), timeout)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        self._loop = self._wake = None

    async def _work(self) -> None:
        assert self._wake is not None
        while not self._stopping:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self.process_queue()
                if self._needs_sweep:
                    self._needs_sweep = False
                    await self.sweep()
                    await self.score_pending()
            except Exception as exc:  # keep working; the traces stay pending and are scored later
                self._failed(exc)
                await asyncio.sleep(1.0)
                if self._queue:  # what was put back is taken again without waiting for the next offer
                    self._wake.set()

    async def _evaluate_loop(self) -> None:
        assert self._wake is not None
        self._wake.set()  # the first sweep, at start
        while not self._stopping:
            try:
                await self.evaluate()
            except Exception as exc:
                self._failed(exc)
            await asyncio.sleep(self.options.evaluate_every)

    def _failed(self, exc: BaseException) -> None:
        self._worker_error(f"{type(exc).__name__}: {exc}")

    async def process_queue(self) -> ScoreStats:
        """Record and score everything offered so far (what the workers do; callable directly)."""
        total = ScoreStats()
        while True:
            with self._queue_lock:
                batch = [self._queue.popleft() for _ in range(min(len(self._queue), self.options.batch_size))]
            if not batch:
                return total
            by_monitor: dict[str, list[_Offer]] = {}
            for o in batch:
                by_monitor.setdefault(o.monitor, []).append(o)
            groups = list(by_monitor.items())
            for i, (name, offers) in enumerate(groups):
                rows = [o.row for o in offers]
                try:
                    await asyncio.to_thread(self.tables.record_considered, rows)
                    force = [o.row.trace_id for o in offers if o.amended]
                    total.add(await self._score(name, [r for r in rows if r.sampled], force=force))
                except BaseException:
                    # The batch left the queue before it was saved: put back this group and those not
                    # reached yet (e.g. 'database is locked'), so the next round takes them again.
                    self._requeue([o for _, left in groups[i:] for o in left])
                    raise

    def _requeue(self, offers: Sequence[_Offer]) -> None:
        """Put offers back at the head of the queue, in their order. Past ``queue_size`` they are left
        to a sweep instead, as new offers are."""
        with self._queue_lock:
            if len(self._queue) + len(offers) > self.options.queue_size:
                self._needs_sweep = True
                return
            self._queue.extendleft(reversed(offers))

    # ------------------------------------------------------------------ scoring

    def _scorer(self, name: str) -> Scorer:
        scorer = self._scorers.get(name)
        if scorer is None:
            scorer = Scorer(self.store, self.tables, self.active[name], limit=self._sem, clock=self.clock)
            self._scorers[name] = scorer
        return scorer

    async def _score(self, name: str, rows: Sequence[ConsideredTrace], *, force: Sequence[str] = ()) -> ScoreStats:
        stats = ScoreStats()
        for i in range(0, len(rows), self.options.batch_size):
            stats.add(await self._scorer(name).score(rows[i:i + self.options.batch_size], force=force))
        self.stats.score.add(stats)
        return stats

    async def score_pending(self, names: Iterable[str] | None = None, *, limit: int | None = None) -> ScoreStats:
        """Score every sampled trace still pending (of ``names``, default every active monitor)."""
        total = ScoreStats()
        for name in self._names(names):
            left = limit
            while left is None or left > 0:
                size = self.options.batch_size if left is None else min(left, self.options.batch_size)
                rows = await asyncio.to_thread(self.tables.pending, name, size)
                if not rows:
                    break
                total.add(await self._score(name, rows))
                if left is not None:
                    left -= len(rows)
        return total

    def _names(self, names: Iterable[str] | None) -> list[str]:
        if names is None:
            return list(self.active)
        chosen = list(names)
        for n in chosen:
            self.require(n)
        return chosen

    def require(self, name: str) -> MonitorJudges:
        """The active monitor ``name``, or a one-line error listing the known ones."""
        from costar.errors import ConfigError

        mj = self.active.get(name)
        if mj is not None:
            return mj
        if any(m.name == name for m in self.monitors):
            raise ConfigError(f"monitor {name!r} is disabled (enabled: false); enable it first")
        known = ", ".join(m.name for m in self.monitors) or "none defined"
        raise ConfigError(f"no monitor {name!r} (monitors: {known}); define it in monitors/ or create it through "
                          "the API")

    # ------------------------------------------------------------------ sweeps and backfill

    async def sweep(self, names: Iterable[str] | None = None, *, since: float | None = None) -> int:
        """Consider the stored traces each monitor has not seen, that started after its last sweep
        (less ``overlap``) or, for a first sweep, within ``lookback``; ``since`` (Unix seconds) sets the
        start instead. Returns how many traces were considered (matched)."""
        total = 0
        now = self.clock()
        for name in self._names(names):
            mj = self.active[name]
            cursor = await asyncio.to_thread(self.tables.sweep_cursor, name)
            if since is not None:
                start = since
            elif cursor is not None:
                start = cursor[0] / 1e9 - self.options.overlap
            else:
                start = now - self.options.lookback
            start_ns = max(0, int(start * 1e9))
            after: tuple[int, str] | None = None
            newest = cursor
            while True:
                page = await asyncio.to_thread(self.tables.unseen_traces, name, since_ns=start_ns, after=after)
                if not page:
                    break
                after = page[-1][1], page[-1][0]
                if newest is None or after > newest:
                    newest = after
                rows = await self._consider(mj, [tid for tid, _ in page], now)
                total += len(rows)
            if newest is not None and newest != cursor:
                await asyncio.to_thread(self.tables.set_sweep_cursor, name, newest)
        self.stats.swept += total
        return total

    async def _consider(self, mj: MonitorJudges, trace_ids: Sequence[str], now: float,
                        *, keep_scored: bool = False) -> list[ConsideredTrace]:
        d = mj.definition
        heads = await asyncio.to_thread(self.store.get_traces, list(trace_ids), spans=False)
        if d.filter.needs_spans:
            head_ok = [t.trace_id for t in heads if matches(d.filter.model_copy(update={"span_names": [],
                                                                                       "attributes": {}}), t)]
            heads = await asyncio.to_thread(self.store.get_traces, head_ok, spans=True)
        rows = [considered_row(mj.name, t, sampled=sampled(t.trace_id, d.sample), now=now)
                for t in heads if matches(d.filter, t)]
        write = rows
        if keep_scored and rows:  # a backfill keeps what is scored already; the rest is (re)considered
            known = await asyncio.to_thread(self.tables.considered, mj.name, [r.trace_id for r in rows])
            write = [r for r in rows if r.trace_id not in known or known[r.trace_id].state != "scored"]
        await asyncio.to_thread(self.tables.record_considered, write)
        return rows

    async def backfill(self, name: str, since: float, until: float | None = None) -> BackfillReport:
        """Score the stored traces ``name`` matches that started from ``since`` to ``until`` (Unix
        seconds, default now; already scored ones are kept, verdicts are reused by fingerprint) and fill
        its series over the period. Backfill raises no alerts: the next evaluation judges the current
        windows."""
        mj = self.require(name)
        now = self.clock()
        until = now if until is None else until
        report = BackfillReport(monitor=name, since=since, until=until)
        after: tuple[int, str] | None = None
        since_ns = max(0, int(since * 1e9))
        until_ns = int(until * 1e9)
        while True:
            page = await asyncio.to_thread(self.tables.traces_since, since_ns=since_ns, after=after)
            # Pages come oldest first: the traces that started after ``until`` end the period.
            inside = [(tid, start) for tid, start in page if start <= until_ns]
            if not inside:
                break
            after = page[-1][1], page[-1][0]
            report.read += len(inside)
            rows = await self._consider(mj, [tid for tid, _ in inside], now, keep_scored=True)
            report.matched += len(rows)
            report.sampled += sum(r.sampled for r in rows)
            if len(inside) < len(page):
                break
        report.score = await self.score_pending([name])
        report.points = await self.fill_series(name, since, until)
        return report

    async def fill_series(self, name: str, since: float, until: float) -> int:
        """Compute and store the points of every window of ``name`` from ``since`` to ``until``."""
        mj = self.require(name)
        span = await asyncio.to_thread(self.tables.time_range, name)
        if span is None:
            return 0
        # Nothing to show before the first trace ("--since all"); a window excludes its start, so the
        # first point's window starts just before that trace, not at it.
        since = max(since, span[0] - 1e-3)
        stored = 0
        for window in mj.definition.windows:
            # At most MAX_FILL points per window: a long period gets sparser points, never millions.
            step = max(step_of(window, self.options.min_step), (until - since) / MAX_FILL)
            at = min(since + window, until)
            while at <= until + 1e-9:
                points = await self._window_points(mj, window, at)
                await asyncio.to_thread(self.tables.write_points, points)
                stored += len(points)
                at += step
        return stored

    # ------------------------------------------------------------------ series and alerts

    def _fit(self, judge: str, fingerprint: str) -> GoldenFit | str | None:
        now = self.clock()
        cached = self._fits.get((judge, fingerprint))
        if cached is not None and now - cached[0] < self.options.fit_ttl:
            return cached[1]
        fit = golden_fit(self.store, judge, fingerprint)
        self._fits[(judge, fingerprint)] = (now, fit)
        return fit

    async def _window_points(self, mj: MonitorJudges, window: float, at: float) -> list[SeriesPoint]:
        fits = {}
        for j in mj.judges:
            fits[j.name] = await asyncio.to_thread(self._fit, j.name, j.fingerprint())
        points = await asyncio.to_thread(judge_points, self.tables, mj.name, mj.judge_names(), window, at, fits=fits)
        points += await asyncio.to_thread(ops_points, self.tables, mj.name, window, at)
        return points

    async def values(self, name: str, at: float) -> list[SeriesPoint]:
        """Every window's values of monitor ``name`` at ``at``, computed now and not stored (what
        ``costar monitor show`` prints)."""
        mj = self.require(name)
        out: list[SeriesPoint] = []
        for window in mj.definition.windows:
            out.extend(await self._window_points(mj, window, at))
        return out

    async def evaluate(self, now: float | None = None, names: Iterable[str] | None = None) -> Evaluation:
        """Compute every window's values at ``now``, store them where a point is due, check the alert
        rules, record what fired or recovered and deliver it (the log, then the webhooks)."""
        now = self.clock() if now is None else now
        ev = Evaluation(at=now)
        async with httpx.AsyncClient(follow_redirects=False) as client:
            await self._redeliver(client, now)
            for name in self._names(names):
                mj = self.active[name]
                for window in mj.definition.windows:
                    points = await self._window_points(mj, window, now)
                    ev.points.extend(points)
                    last = await asyncio.to_thread(self.tables.last_point_at, name, window)
                    if last is None or now - last >= step_of(window, self.options.min_step) - 1e-9:
                        await asyncio.to_thread(self.tables.write_points, points)
                        ev.stored += len(points)
                    for rule in mj.definition.alerts:
                        if mj.definition.rule_window(rule) != window:
                            continue
                        for check in await self._check(mj, rule, points, now):
                            ev.checks.append(check)
                            event = await self._transition(client, mj, check, now)
                            if event is not None:
                                ev.events.append(event)
        self.stats.evaluations += 1
        return ev

    async def _check(self, mj: MonitorJudges, rule: Any, points: Sequence[SeriesPoint], now: float) -> list[RuleCheck]:
        wanted = [p for p in points if p.metric == rule.metric
                  and (p.judge == OPS if not rule.per_judge else (rule.judge == "*" or p.judge == rule.judge))]
        out = []
        for p in wanted:
            if rule.anomaly is None:
                out.append(check_threshold(rule, mj.name, p))
                continue
            count = rule.anomaly.history
            past = await asyncio.to_thread(self.tables.points, mj.name, judge=p.judge, window=p.window,
                                           metric=p.metric, since=now - (count + 1) * p.window, until=now - p.window)
            out.append(check_anomaly(rule, mj.name, p, recent_history(past, now, p.window, count)))
        return out

    async def _transition(self, client: httpx.AsyncClient, mj: MonitorJudges, check: RuleCheck,
                          now: float) -> AlertEvent | None:
        if check.state == "insufficient":
            return None
        states = await asyncio.to_thread(self.tables.alert_states, mj.name)
        prev = states.get((check.rule.name, check.series))
        firing = check.state == "firing"
        if (prev.firing if prev is not None else False) == firing:
            return None
        status = "firing" if firing else "resolved"
        hooks = mj.definition.webhooks
        targets = list(check.rule.notify) if check.rule.notify is not None else list(hooks)
        data = check.payload()
        recorded = await asyncio.to_thread(self.tables.record_alert, mj.name, check.rule.name, check.series, status,
                                           now, check.message, data, targets)
        if recorded is None:  # another process recorded this change first and delivers it
            return None
        alert_id, delivery_ids = recorded
        if firing:
            self.stats.alerts_fired += 1
        else:
            self.stats.alerts_resolved += 1
        log_alert(status, check.message)
        event = AlertEvent(alert_id, check, status, now)
        results = await asyncio.gather(*(
            self._send(client, delivery_id, hooks[target], target, alert_id, status, now, check.message, data,
                       check.series) for delivery_id, target in zip(delivery_ids, targets, strict=True)))
        event.delivered = dict(zip(targets, results, strict=True))
        return event

    async def _send(self, client: httpx.AsyncClient, delivery_id: int, hook: Any, target: str, alert_id: int,
                    status: str, at: float, message: str, data: dict[str, Any], series: str, *,
                    retry_of: DeliveryRecord | None = None) -> bool:
        """Deliver one alert to one webhook and record the outcome. Never raises: the alert is already
        recorded, and an exception here would stop this evaluation and, through ``_redeliver``, every
        later one. ``retry_of``: a later try of that failed delivery (one attempt, counted on top of its
        earlier ones)."""
        try:
            payload = payload_for(hook, alert_id, status, at, message, data, series)
            ok, attempts, error = await deliver(client, hook, payload, attempts=None if retry_of is None else 1)
        except Exception as exc:  # deliver catches its own; this guards the payload and anything unforeseen
            ok, attempts, error = False, 0, one_line(f"delivery failed: {type(exc).__name__}: {exc}")
        if retry_of is not None:
            # Every later try counts, even one refused before any request (0 attempts), so the retry
            # bound and the backoff, both read from the stored attempts, always advance.
            attempts = retry_of.attempts + max(1, attempts)
        try:
            await asyncio.to_thread(self.tables.update_delivery, delivery_id, "delivered" if ok else "failed",
                                    attempts, error)
        except Exception as exc:  # e.g. 'database is locked': it stays pending and the next evaluation resends
            self._worker_error(f"alert {alert_id}: recording the delivery to webhook {target!r} failed: "
                               f"{type(exc).__name__}: {exc}")
        if not ok:
            self.stats.deliveries_failed += 1
            log.error("alert %d: delivery to webhook %r failed after %d attempt(s): %s", alert_id, target, attempts,
                      error)
        return ok

    def _worker_error(self, text: str) -> None:
        self.stats.worker_errors += 1
        self.stats.last_error = one_line(text)
        log.error("monitors: %s", self.stats.last_error)

    async def _redeliver(self, client: httpx.AsyncClient, now: float) -> None:
        """Deliveries a stopped process left pending are sent now (at least once); failed ones are
        tried again, one attempt per evaluation once their wait is over (``redeliver_after`` doubling
        per try, at most ``redeliver_max_wait``), while their alert is younger than ``redeliver_for``
        and they have had fewer than ``REDELIVER_MAX_RETRIES`` later tries. Delivered ones are never
        sent again; a final HTTP answer (4xx other than 429) is not retried; nor is a failed delivery
        whose alert a newer one of the same rule and series superseded (a stale "firing" after its
        "resolved" would mislead). One delivery's trouble never stops the others or the evaluation."""
        for name, mj in self.active.items():
            try:
                pending = await asyncio.to_thread(self.tables.pending_deliveries, name)
                failed = await asyncio.to_thread(self._due_retries, name, now)
            except Exception as exc:
                self._worker_error(f"monitor {name}: reading its deliveries failed: {type(exc).__name__}: {exc}")
                continue
            for delivery, alert, retry in [(d, a, False) for d, a in pending] + [(d, a, True) for d, a in failed]:
                hook = mj.definition.webhooks.get(delivery.target)
                try:
                    if hook is None:
                        if not retry:
                            await asyncio.to_thread(
                                self.tables.update_delivery, delivery.id, "failed", delivery.attempts,
                                f"the monitor no longer has a webhook named {delivery.target!r}")
                        continue
                    await self._send(client, delivery.id, hook, delivery.target, alert.id, alert.status, alert.at,
                                     alert.message, alert.data, alert.series, retry_of=delivery if retry else None)
                except Exception as exc:
                    self._worker_error(f"alert {alert.id}: redelivery to webhook {delivery.target!r} failed: "
                                       f"{type(exc).__name__}: {exc}")

    def _due_retries(self, name: str, now: float) -> list[tuple[DeliveryRecord, AlertRecord]]:
        """The failed deliveries of monitor ``name`` due for a later try (see ``_redeliver``)."""
        o = self.options
        hooks = self.active[name].definition.webhooks
        wall = time.time()  # updated_at is the store's wall clock, whatever clock the service runs on
        newest: set[tuple[str, str]] = set()
        out = []
        # Newest first, so the first alert seen of a rule and series is the one that stands.
        for alert in self.tables.alerts(monitor=name, since=now - o.redeliver_for, limit=100_000):
            key = (alert.rule, alert.series)
            superseded = key in newest
            newest.add(key)
            if superseded:
                continue
            for d in alert.deliveries:
                hook = hooks.get(d.target)
                if d.status != "failed" or hook is None or not retryable_error(d.last_error):
                    continue
                retries = max(0, d.attempts - hook.attempts)  # later tries make one attempt each
                if retries >= REDELIVER_MAX_RETRIES:
                    continue
                wait = min(o.redeliver_max_wait, o.redeliver_after * 2 ** min(retries, 60))
                if wall - d.updated_at >= wait:
                    out.append((d, alert))
        return out

    # ------------------------------------------------------------------ one-shot

    async def run_once(self, names: Iterable[str] | None = None, *, since: float | None = None) -> RunReport:
        """Process pending work once, without a server: sweep, score, evaluate."""
        chosen = self._names(names)
        considered = await self.sweep(chosen, since=since)
        score = await self.score_pending(chosen)
        evaluation = await self.evaluate(names=chosen)
        return RunReport(considered=considered, score=score, evaluation=evaluation)
