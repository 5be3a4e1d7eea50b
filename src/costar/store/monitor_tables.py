"""The tables the monitors keep beside the traces, on either backend (schema version 6).

* ``monitors``: monitors created through the API (definitions as JSON; files are read from the project).
* ``monitor_traces``: each trace a monitor considered (it matched the filter): whether it was sampled,
  its scoring state (``pending``, ``scored``, ``skipped``), when it happened (``trace_time``, Unix
  seconds of its end) and its operational numbers, so the operational series need no trace.
* ``monitor_results``: each judge's outcome on each sampled trace (``pass``, ``fail``, ``error``,
  ``metric``, ``skipped``), with the judge's fingerprint and cost. The verdicts themselves are in
  ``verdicts`` like any other; these rows are what the series are computed from.
* ``monitor_points``: the metric series, one row per (monitor, judge, window, metric, time).
* ``monitor_alert_state``, ``monitor_alerts``, ``monitor_deliveries``: which rules are firing, the
  alert history (firing and resolved), and each webhook delivery's outcome.
* ``monitor_sweeps``: where each monitor's last sweep of the stored traces stopped.

Retention (``costar server``) deletes traces, spans and verdicts; it never touches these tables, so
the series and the alert history outlive the traces they were computed from.

The SQL lives here, in the store layer, on a :class:`~costar.store.sql.SQLStore`'s connections.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from costar.store.base import Store
from costar.store.sql import SQLStore

TRACE_COLUMNS = ("monitor", "trace_id", "trace_time", "sampled", "state", "considered_at", "scored_at",
                 "total_tokens", "cost_usd", "latency_s", "error")
RESULT_COLUMNS = ("monitor", "trace_id", "judge", "fingerprint", "outcome", "trace_time", "cost_usd", "scored_at")
POINT_COLUMNS = ("monitor", "judge", "window_s", "metric", "at", "n", "value", "low", "high", "data")


@dataclass
class ConsideredTrace:
    """One row of ``monitor_traces``."""

    monitor: str
    """The monitor."""
    trace_id: str
    """The trace."""
    trace_time: float
    """When the trace happened: Unix seconds of its end."""
    sampled: bool
    """Whether the trace is in the monitor's sample."""
    state: str
    """``pending`` (sampled, waiting to be scored), ``scored``, ``missing`` (deleted before it was
    scored), or ``skipped`` (not sampled)."""
    considered_at: float
    """When the monitor considered it."""
    scored_at: float | None = None
    """When it was scored."""
    total_tokens: int = 0
    """The trace's tokens."""
    cost_usd: float = 0.0
    """The trace's cost."""
    latency_s: float = 0.0
    """The trace's latency."""
    error: bool = False
    """Whether the trace ended in error."""

    def row(self) -> tuple[Any, ...]:
        """The row's values, in ``TRACE_COLUMNS`` order."""
        return (self.monitor, self.trace_id, self.trace_time, int(self.sampled), self.state, self.considered_at,
                self.scored_at, self.total_tokens, self.cost_usd, self.latency_s, int(self.error))


@dataclass
class JudgeResult:
    """One row of ``monitor_results``: a judge's outcome on a sampled trace."""

    monitor: str
    """The monitor."""
    trace_id: str
    """The trace."""
    judge: str
    """The judge's verdict name."""
    fingerprint: str | None
    """The judge version's fingerprint."""
    outcome: str
    """``pass``, ``fail``, ``error``, ``metric`` or ``skipped``."""
    trace_time: float
    """When the trace happened (Unix seconds of its end)."""
    cost_usd: float
    """What this judgement cost (0 for a cached verdict)."""
    scored_at: float
    """When it was scored."""

    def row(self) -> tuple[Any, ...]:
        """The row's values, in ``RESULT_COLUMNS`` order."""
        return (self.monitor, self.trace_id, self.judge, self.fingerprint, self.outcome, self.trace_time,
                self.cost_usd, self.scored_at)


@dataclass
class SeriesPoint:
    """One point of a metric series. ``n`` is what the value was computed from (decided verdicts,
    traces); ``low``/``high`` its 95% interval where the metric has one."""

    monitor: str
    """The monitor."""
    judge: str
    """The judge's verdict name; empty for the monitor's operational metrics."""
    window: float
    """The window's length in seconds."""
    metric: str
    """The metric (docs/MONITORING.md, Metrics)."""
    at: float
    """When the window ended (Unix seconds)."""
    n: int
    """What the value was computed from (decided verdicts, traces)."""
    value: float | None
    """The value; None when the window holds nothing to compute it from."""
    low: float | None = None
    """Lower bound of the 95% interval."""
    high: float | None = None
    """Upper bound of the 95% interval."""
    data: dict[str, Any] | None = None
    """Details: counts by outcome, a golden-set fit, why a value is missing."""

    def row(self) -> tuple[Any, ...]:
        """The row's values, in ``POINT_COLUMNS`` order."""
        return (self.monitor, self.judge, self.window, self.metric, self.at, self.n, self.value, self.low,
                self.high, json.dumps(self.data or {}, default=str))

    def to_dict(self) -> dict[str, Any]:
        """The point as JSON-ready data."""
        return {"monitor": self.monitor, "judge": self.judge, "window_s": self.window, "metric": self.metric,
                "at": self.at, "n": self.n, "value": self.value, "low": self.low, "high": self.high,
                "data": self.data or {}}


@dataclass
class AlertRecord:
    """One alert event: a rule started firing, or recovered."""

    id: int
    """The alert's id."""
    monitor: str
    """The monitor."""
    rule: str
    """The alert rule's name."""
    series: str
    """The series it watches, e.g. ``helpful@1h``."""
    status: str
    """``firing`` or ``resolved``."""
    at: float
    """Unix seconds."""
    message: str
    """One line saying what happened."""
    data: dict[str, Any]
    """The rule check's numbers (the webhook payload's fields)."""
    deliveries: list[DeliveryRecord]
    """Each webhook delivery's outcome."""

    def to_dict(self) -> dict[str, Any]:
        """The alert and its deliveries as JSON-ready data."""
        return {"id": self.id, "monitor": self.monitor, "rule": self.rule, "series": self.series,
                "status": self.status, "at": self.at, "message": self.message, "data": self.data,
                "deliveries": [d.to_dict() for d in self.deliveries]}


@dataclass
class DeliveryRecord:
    """One webhook delivery of an alert."""

    id: int
    """The delivery's id."""
    alert_id: int
    """The alert delivered."""
    target: str
    """The webhook's name (``log`` is not recorded: logging cannot fail)."""
    status: str
    """``pending``, ``delivered`` or ``failed``."""
    attempts: int
    """Attempts made."""
    last_error: str | None
    """The last attempt's error, if any."""
    updated_at: float
    """When its status last changed (Unix seconds)."""

    def to_dict(self) -> dict[str, Any]:
        """The delivery as JSON-ready data."""
        return {"id": self.id, "target": self.target, "status": self.status, "attempts": self.attempts,
                "last_error": self.last_error, "updated_at": self.updated_at}


@dataclass
class AlertState:
    """Whether one alert rule is firing on one series (``monitor_alert_state``)."""

    firing: bool
    """Whether the rule is firing on the series."""
    since: float
    """Since when (Unix seconds)."""
    alert_id: int | None
    """The alert that started the current state."""


def _loads(data: Any) -> Any:
    return json.loads(data) if isinstance(data, str | bytes) else data


class MonitorTables:
    """The monitors' tables on one store. Every method is one transaction (or one read)."""

    def __init__(self, store: Store) -> None:
        if not isinstance(store, SQLStore):
            raise TypeError(f"monitors need a SQL store (SQLite or PostgreSQL), not {type(store).__name__}")
        self.store: SQLStore = store

    # ------------------------------------------------------------------ stored definitions

    def save_monitor(self, name: str, data: dict[str, Any]) -> bool:
        """Create or replace a stored monitor; True when it was new."""
        st = self.store
        now = time.time()
        with st._write() as c:
            st._lock(c, f"monitor:{name}")
            row = c.execute("SELECT created_at FROM monitors WHERE name=?", (name,)).fetchone()
            created = float(row[0]) if row else now
            c.execute(st._upsert("monitors", ("name", "created_at", "updated_at", "data"), ("name",)),
                      (name, created, now, json.dumps(data, default=str)))
        return row is None

    def delete_monitor(self, name: str) -> bool:
        """Delete a monitor kept in the store; False when there is none."""
        with self.store._write() as c:
            return bool(c.execute("DELETE FROM monitors WHERE name=?", (name,)).rowcount)

    def stored_monitors(self) -> list[tuple[str, dict[str, Any]]]:
        """The monitors kept in the store: (name, definition as JSON), by name."""
        with self.store._read() as c:
            rows = c.execute("SELECT name, data FROM monitors ORDER BY name").fetchall()
        return [(r[0], _loads(r[1])) for r in rows]

    # ------------------------------------------------------------------ traces to consider

    def unseen_traces(self, monitor: str, *, since_ns: int, after: tuple[int, str] | None = None,
                      limit: int = 500) -> list[tuple[str, int]]:
        """``(trace_id, start_ns)`` of stored traces that started at or after ``since_ns`` and that
        ``monitor`` has not considered yet, oldest first, ``limit`` of them after the cursor ``after``."""
        args: list[Any] = [since_ns, monitor]
        cursor = ""
        if after is not None:
            cursor = " AND (t.start_ns > ? OR (t.start_ns = ? AND t.trace_id > ?))"
            args += [after[0], after[0], after[1]]
        with self.store._read() as c:
            rows = c.execute("SELECT t.trace_id, t.start_ns FROM traces t WHERE t.start_ns >= ? AND NOT EXISTS "
                             "(SELECT 1 FROM monitor_traces m WHERE m.monitor = ? AND m.trace_id = t.trace_id)"
                             f"{cursor} ORDER BY t.start_ns, t.trace_id LIMIT ?", [*args, limit]).fetchall()
        return [(r[0], int(r[1])) for r in rows]

    def traces_since(self, *, since_ns: int, after: tuple[int, str] | None = None,
                     limit: int = 500) -> list[tuple[str, int]]:
        """``(trace_id, start_ns)`` of every stored trace that started at or after ``since_ns``, paged."""
        args: list[Any] = [since_ns]
        cursor = ""
        if after is not None:
            cursor = " AND (start_ns > ? OR (start_ns = ? AND trace_id > ?))"
            args += [after[0], after[0], after[1]]
        with self.store._read() as c:
            rows = c.execute(f"SELECT trace_id, start_ns FROM traces WHERE start_ns >= ?{cursor} "
                             "ORDER BY start_ns, trace_id LIMIT ?", [*args, limit]).fetchall()
        return [(r[0], int(r[1])) for r in rows]

    def sweep_cursor(self, monitor: str) -> tuple[int, str] | None:
        """Where the last sweep of stored traces stopped: the newest ``(start_ns, trace_id)`` it read."""
        with self.store._read() as c:
            row = c.execute("SELECT start_ns, trace_id FROM monitor_sweeps WHERE monitor=?", (monitor,)).fetchone()
        return None if row is None else (int(row[0]), row[1])

    def set_sweep_cursor(self, monitor: str, cursor: tuple[int, str]) -> None:
        """Where the monitor's last sweep stopped: (start_ns, trace_id) of the newest trace it saw."""
        st = self.store
        with st._write() as c:
            c.execute(st._upsert("monitor_sweeps", ("monitor", "start_ns", "trace_id", "updated_at"), ("monitor",)),
                      (monitor, cursor[0], cursor[1], time.time()))

    def considered(self, monitor: str, trace_ids: Sequence[str]) -> dict[str, ConsideredTrace]:
        """The rows of these traces the monitor already has, by trace id."""
        st = self.store
        out: dict[str, ConsideredTrace] = {}
        with st._read() as c:
            for chunk in st._chunks(sorted(set(trace_ids))):
                where, args = st._in("trace_id", chunk)
                for r in c.execute(f"SELECT {', '.join(TRACE_COLUMNS)} FROM monitor_traces WHERE monitor=? AND "
                                   f"{where}", [monitor, *args]):
                    out[r[1]] = _considered(r)
        return out

    def record_considered(self, rows: Sequence[ConsideredTrace]) -> None:
        """Insert or replace the rows (one transaction)."""
        if not rows:
            return
        st = self.store
        with st._write() as c:
            st._many(c, st._upsert("monitor_traces", TRACE_COLUMNS, ("monitor", "trace_id")),
                     [r.row() for r in rows])

    def pending(self, monitor: str, limit: int = 500) -> list[ConsideredTrace]:
        """Sampled traces not scored yet, oldest first."""
        with self.store._read() as c:
            rows = c.execute(f"SELECT {', '.join(TRACE_COLUMNS)} FROM monitor_traces WHERE monitor=? AND "
                             "state='pending' ORDER BY considered_at, trace_id LIMIT ?", (monitor, limit)).fetchall()
        return [_considered(r) for r in rows]

    def pending_count(self, monitor: str) -> int:
        """Sampled traces of the monitor waiting to be scored."""
        with self.store._read() as c:
            return int(c.execute("SELECT count(*) FROM monitor_traces WHERE monitor=? AND state='pending'",
                                 (monitor,)).fetchone()[0])

    def write_results(self, monitor: str, results: Sequence[JudgeResult], scored: Sequence[tuple[str, str]],
                      when: float) -> None:
        """Store judge results and mark traces ``(trace_id, state)`` done, in one transaction."""
        st = self.store
        with st._write() as c:
            if results:
                st._many(c, st._upsert("monitor_results", RESULT_COLUMNS, ("monitor", "trace_id", "judge")),
                         [r.row() for r in results])
            if scored:
                st._many(c, "UPDATE monitor_traces SET state=?, scored_at=? WHERE monitor=? AND trace_id=?",
                         [(state, when, monitor, tid) for tid, state in scored])

    # ------------------------------------------------------------------ windows

    def outcome_counts(self, monitor: str, start: float, end: float) -> dict[str, dict[str, int]]:
        """judge -> outcome -> count over results whose trace happened in (start, end]."""
        out: dict[str, dict[str, int]] = {}
        with self.store._read() as c:
            for judge, outcome, n in c.execute(
                    "SELECT judge, outcome, count(*) FROM monitor_results WHERE monitor=? AND trace_time > ? AND "
                    "trace_time <= ? GROUP BY judge, outcome", (monitor, start, end)):
                out.setdefault(judge, {})[outcome] = int(n)
        return out

    def judge_cost(self, monitor: str, start: float, end: float) -> float:
        """What the monitor's judges cost on traces that happened in ``(start, end]``."""
        with self.store._read() as c:
            return float(c.execute("SELECT coalesce(sum(cost_usd), 0) FROM monitor_results WHERE monitor=? AND "
                                   "trace_time > ? AND trace_time <= ?", (monitor, start, end)).fetchone()[0])

    def outcomes_on(self, monitor: str, judge: str, trace_ids: Sequence[str], start: float,
                    end: float) -> dict[str, str]:
        """trace id -> outcome of ``judge`` for those of ``trace_ids`` in the window."""
        st = self.store
        out: dict[str, str] = {}
        with st._read() as c:
            for chunk in st._chunks(sorted(set(trace_ids))):
                where, args = st._in("trace_id", chunk)
                for tid, outcome in c.execute(
                        f"SELECT trace_id, outcome FROM monitor_results WHERE monitor=? AND judge=? AND trace_time > ? "
                        f"AND trace_time <= ? AND {where}", [monitor, judge, start, end, *args]):
                    out[tid] = outcome
        return out

    def operational(self, monitor: str, start: float, end: float) -> list[tuple[int, int, float, float, bool]]:
        """``(sampled, total_tokens, cost_usd, latency_s, error)`` of each trace considered in the window."""
        with self.store._read() as c:
            rows = c.execute("SELECT sampled, total_tokens, cost_usd, latency_s, error FROM monitor_traces WHERE "
                             "monitor=? AND trace_time > ? AND trace_time <= ?", (monitor, start, end)).fetchall()
        return [(int(r[0]), int(r[1]), float(r[2]), float(r[3]), bool(r[4])) for r in rows]

    def window_traces(self, monitor: str, start: float, end: float, *, limit: int = 500) -> list[ConsideredTrace]:
        """The traces the monitor considered that happened in ``(start, end]``, newest first (``limit``)."""
        with self.store._read() as c:
            rows = c.execute(f"SELECT {', '.join(TRACE_COLUMNS)} FROM monitor_traces WHERE monitor=? AND "
                             "trace_time > ? AND trace_time <= ? ORDER BY trace_time DESC, trace_id LIMIT ?",
                             (monitor, start, end, limit)).fetchall()
        return [_considered(r) for r in rows]

    def window_results(self, monitor: str, judge: str, start: float, end: float, *, outcome: str | None = None,
                       limit: int = 500) -> list[JudgeResult]:
        """``judge``'s results on traces that happened in ``(start, end]`` (only ``outcome`` when given),
        newest first (``limit``): the rows a window's per-judge point is computed from."""
        where, args = "", [monitor, judge, start, end]
        if outcome is not None:
            where, args = " AND outcome=?", [*args, outcome]
        with self.store._read() as c:
            rows = c.execute(f"SELECT {', '.join(RESULT_COLUMNS)} FROM monitor_results WHERE monitor=? AND judge=? AND "
                             f"trace_time > ? AND trace_time <= ?{where} ORDER BY trace_time DESC, trace_id LIMIT ?",
                             [*args, limit]).fetchall()
        return [JudgeResult(r[0], r[1], r[2], r[3], r[4], float(r[5]), float(r[6]), float(r[7])) for r in rows]

    def spend_since(self, monitor: str, since: float) -> float:
        """What the monitor's judges cost in results scored since ``since`` (the budget)."""
        with self.store._read() as c:
            return float(c.execute("SELECT coalesce(sum(cost_usd), 0) FROM monitor_results WHERE monitor=? AND "
                                   "scored_at >= ?", (monitor, since)).fetchone()[0])

    def time_range(self, monitor: str) -> tuple[float, float] | None:
        """The earliest and latest ``trace_time`` the monitor considered."""
        with self.store._read() as c:
            row = c.execute("SELECT min(trace_time), max(trace_time) FROM monitor_traces WHERE monitor=?",
                            (monitor,)).fetchone()
        return None if row is None or row[0] is None else (float(row[0]), float(row[1]))

    def counts(self, monitor: str) -> dict[str, int]:
        """Traces considered, sampled, and by state."""
        with self.store._read() as c:
            rows = c.execute("SELECT state, sampled, count(*) FROM monitor_traces WHERE monitor=? GROUP BY state, "
                             "sampled", (monitor,)).fetchall()
        out = {"considered": 0, "sampled": 0, "pending": 0, "scored": 0, "skipped": 0}
        for state, was_sampled, n in rows:
            out["considered"] += int(n)
            out["sampled"] += int(n) if was_sampled else 0
            if was_sampled:
                out[state] = out.get(state, 0) + int(n)
        return out

    # ------------------------------------------------------------------ series

    def write_points(self, points: Sequence[SeriesPoint]) -> None:
        """Store series points (a point at the same time replaces the old one)."""
        if not points:
            return
        st = self.store
        with st._write() as c:
            st._many(c, st._upsert("monitor_points", POINT_COLUMNS, ("monitor", "judge", "window_s", "metric", "at")),
                     [p.row() for p in points])

    def points(self, monitor: str, *, judge: str | None = None, window: float | None = None,
               metric: str | None = None, since: float | None = None, until: float | None = None,
               limit: int = 10_000) -> list[SeriesPoint]:
        """Points oldest first (the newest ``limit`` of them)."""
        where: list[str] = ["monitor=?"]
        args: list[Any] = [monitor]
        for column, value in (("judge", judge), ("window_s", window), ("metric", metric)):
            if value is not None:
                where.append(f"{column}=?")
                args.append(value)
        if since is not None:
            where.append("at >= ?")
            args.append(since)
        if until is not None:
            where.append("at <= ?")
            args.append(until)
        with self.store._read() as c:
            rows = c.execute(f"SELECT {', '.join(POINT_COLUMNS)} FROM monitor_points WHERE {' AND '.join(where)} "
                             "ORDER BY at DESC, judge, metric LIMIT ?", [*args, limit]).fetchall()
        return [_point(r) for r in reversed(rows)]

    def last_point_at(self, monitor: str, window: float) -> float | None:
        """When the newest stored point of the window is from; None before the first."""
        with self.store._read() as c:
            row = c.execute("SELECT max(at) FROM monitor_points WHERE monitor=? AND window_s=?",
                            (monitor, window)).fetchone()
        return None if row is None or row[0] is None else float(row[0])

    # ------------------------------------------------------------------ alerts

    def alert_states(self, monitor: str) -> dict[tuple[str, str], AlertState]:
        """Every rule's state on every series of the monitor, by (rule, series)."""
        with self.store._read() as c:
            rows = c.execute("SELECT rule, series, firing, since, alert_id FROM monitor_alert_state WHERE monitor=?",
                             (monitor,)).fetchall()
        return {(r[0], r[1]): AlertState(bool(r[2]), float(r[3]), None if r[4] is None else int(r[4])) for r in rows}

    def record_alert(self, monitor: str, rule: str, series: str, status: str, at: float, message: str,
                     data: dict[str, Any], targets: Sequence[str]) -> tuple[int, list[int]] | None:
        """Record an alert event and the rule's new state, and a pending delivery per target, in one
        transaction. None (nothing recorded) when the stored state already says ``status``: another
        process recorded the same change first, so it is delivered once."""
        st = self.store
        firing = status == "firing"
        with st._write() as c:
            st._lock(c, f"monitor-alert:{monitor}")
            row = c.execute("SELECT firing FROM monitor_alert_state WHERE monitor=? AND rule=? AND series=?",
                            (monitor, rule, series)).fetchone()
            if (bool(row[0]) if row else False) == firing:
                return None
            alert_id = st._insert_id(c, "INSERT INTO monitor_alerts (monitor, rule, series, status, at, message, "
                                     "data) VALUES (?,?,?,?,?,?,?)",
                                     (monitor, rule, series, status, at, message, json.dumps(data, default=str)))
            c.execute(st._upsert("monitor_alert_state", ("monitor", "rule", "series", "firing", "since", "alert_id"),
                                 ("monitor", "rule", "series")), (monitor, rule, series, int(firing), at, alert_id))
            ids = [st._insert_id(c, "INSERT INTO monitor_deliveries (alert_id, target, status, attempts, last_error, "
                                    "updated_at) VALUES (?,?,?,?,?,?)", (alert_id, target, "pending", 0, None, at))
                   for target in targets]
        return alert_id, ids

    def update_delivery(self, delivery_id: int, status: str, attempts: int, error: str | None) -> None:
        """Record a delivery's outcome."""
        with self.store._write() as c:
            c.execute("UPDATE monitor_deliveries SET status=?, attempts=?, last_error=?, updated_at=? WHERE id=?",
                      (status, attempts, error, time.time(), delivery_id))

    def pending_deliveries(self, monitor: str | None = None) -> list[tuple[DeliveryRecord, AlertRecord]]:
        """Deliveries still pending (a process stopped while delivering), with their alerts."""
        return [(d, alert) for alert in self.alerts(monitor=monitor, limit=100_000, pending_only=True)
                for d in alert.deliveries if d.status == "pending"]

    def alerts(self, *, monitor: str | None = None, since: float | None = None, limit: int = 100,
               pending_only: bool = False) -> list[AlertRecord]:
        """Alert events newest first, each with its deliveries; ``pending_only``: only alerts with a
        delivery still pending."""
        where: list[str] = []
        args: list[Any] = []
        if monitor is not None:
            where.append("monitor=?")
            args.append(monitor)
        if since is not None:
            where.append("at >= ?")
            args.append(since)
        if pending_only:
            where.append("id IN (SELECT alert_id FROM monitor_deliveries WHERE status='pending')")
        st = self.store
        with st._read() as c:
            rows = c.execute("SELECT id, monitor, rule, series, status, at, message, data FROM monitor_alerts"
                             + (f" WHERE {' AND '.join(where)}" if where else "") + " ORDER BY id DESC LIMIT ?",
                             [*args, limit]).fetchall()
            records = [AlertRecord(int(r[0]), r[1], r[2], r[3], r[4], float(r[5]), r[6], _loads(r[7]), [])
                       for r in rows]
            by_id = {a.id: a for a in records}
            for chunk in st._chunks(sorted(by_id)):
                w, a = st._in("alert_id", chunk)
                for d in c.execute("SELECT id, alert_id, target, status, attempts, last_error, updated_at FROM "
                                   f"monitor_deliveries WHERE {w} ORDER BY id", a):
                    by_id[int(d[1])].deliveries.append(DeliveryRecord(int(d[0]), int(d[1]), d[2], d[3], int(d[4]),
                                                                      d[5], float(d[6])))
        return records


def _considered(r: Sequence[Any]) -> ConsideredTrace:
    return ConsideredTrace(monitor=r[0], trace_id=r[1], trace_time=float(r[2]), sampled=bool(r[3]), state=r[4],
                           considered_at=float(r[5]), scored_at=None if r[6] is None else float(r[6]),
                           total_tokens=int(r[7]), cost_usd=float(r[8]), latency_s=float(r[9]), error=bool(r[10]))


def _point(r: Sequence[Any]) -> SeriesPoint:
    return SeriesPoint(monitor=r[0], judge=r[1], window=float(r[2]), metric=r[3], at=float(r[4]), n=int(r[5]),
                       value=None if r[6] is None else float(r[6]), low=None if r[7] is None else float(r[7]),
                       high=None if r[8] is None else float(r[8]), data=_loads(r[9]) or {})
