"""What the faces show of the monitors, built once so the CLI, the API and the web app agree: the list
(``costar monitor list --json``), one monitor's state now (``costar monitor show --json``) and the
traces behind one point of a series (the web app's "a point opens the traces of its window").

Everything here reads the monitors' tables (``costar.store.monitor_tables``); nothing is stored.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from costar.monitor.files import Monitor, parse_monitor
from costar.monitor.model import MonitorDefinition
from costar.monitor.service import MonitorService
from costar.store.base import Store
from costar.store.monitor_tables import MonitorTables

WINDOW_TRACES_LIMIT = 500
"""The most traces :func:`window_traces` lists by default (its counts cover every trace)."""


def monitor_tables(store: Store) -> MonitorTables | None:
    """The store's monitor tables; None for a store that has none (monitors need a SQL store)."""
    try:
        return MonitorTables(store)
    except TypeError:
        return None


def stored_definitions(store: Store) -> list[MonitorDefinition]:
    """The monitors created through the API, kept in ``store`` (none in a store without the tables)."""
    tables = monitor_tables(store)
    if tables is None:
        return []
    return [parse_monitor(data, where=f"stored monitor {name}") for name, data in tables.stored_monitors()]


class MonitorRow(BaseModel):
    """One monitor as ``costar monitor list --json`` prints it. The counts are absent when there is
    no store to read them from."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    name: str
    """The monitor's name."""
    enabled: bool
    """Whether it scores (a disabled monitor is listed only)."""
    source: str
    """Its file and line, or ``store`` for a monitor created through the API."""
    sample: float
    """The share of matching traces scored."""
    checks: int
    """How many deterministic checks it runs."""
    judges: list[str]
    """The named judges it applies (checks not included)."""
    windows: list[str]
    """Its windows, spelled as durations (``1h``)."""
    alerts: list[str]
    """Its alert rules' names."""
    webhooks: list[str]
    """Its webhooks' names."""
    considered: int | None = None
    """Traces it considered (they matched its filter)."""
    sampled: int | None = None
    """Of those, the traces in its sample."""
    pending: int | None = None
    """Sampled traces waiting to be scored."""
    scored: int | None = None
    """Sampled traces scored."""
    skipped: int | None = None
    """Sampled traces skipped (deleted before they were scored)."""

    def to_json(self) -> dict[str, Any]:
        """The row as the CLI prints it (no counts without a store)."""
        return self.model_dump(mode="json", exclude_none=True)


def monitor_rows(monitors: Sequence[Monitor], store: Store | None) -> list[MonitorRow]:
    """``costar monitor list --json``: each monitor with its counts from ``store`` (when given)."""
    tables = monitor_tables(store) if store is not None else None
    rows = []
    for m in monitors:
        d = m.definition
        counts = tables.counts(m.name) if tables is not None else {}
        rows.append(MonitorRow(name=m.name, enabled=d.enabled, source=m.where(), sample=d.sample,
                               checks=len(d.checks), judges=[j.name for j in d.judges],
                               windows=list(d.model_dump(mode="json")["windows"]), alerts=[r.name for r in d.alerts],
                               webhooks=list(d.webhooks), **counts))
    return rows


class JudgeSummary(BaseModel):
    """One of a monitor's judges (its checks first), as it was built."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    name: str
    """The verdict name its series are kept under."""
    fingerprint: str
    """The judge version's fingerprint (verdicts are cached by it)."""
    type: str
    """The judge's class."""
    model: str | None = None
    """The model it calls, for model judges."""


class RuleState(BaseModel):
    """Whether one alert rule is firing on one series."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    rule: str
    """The rule's name."""
    series: str
    """The series it watches, e.g. ``helpful@1h`` or ``monitor@1h``."""
    firing: bool
    """Whether it is firing now."""
    since: float
    """Since when it is in this state (Unix seconds)."""
    alert_id: int | None
    """The alert in the history that started this state."""


class MonitorStatus(BaseModel):
    """``costar monitor show NAME --json``: a monitor's definition, its judges, its counts, every
    window's values computed at ``at`` and its alert rules' states."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    name: str
    """The monitor's name."""
    source: str
    """Its file and line, or ``store``."""
    definition: dict[str, Any]
    """The definition as JSON (docs/MONITORING.md)."""
    judges: list[JudgeSummary]
    """Its judges: checks, then named judges."""
    counts: dict[str, int]
    """Traces considered, sampled, pending, scored and skipped."""
    at: float
    """When the values' windows end (Unix seconds)."""
    values: list[dict[str, Any]] = Field(default_factory=list)
    """Every window's values (per judge, then operational), as ``costar monitor series --json`` prints points."""
    alerts: list[RuleState] = Field(default_factory=list)
    """Every rule's state on every series it has watched, by rule and series."""


async def monitor_status(service: MonitorService, name: str, at: float) -> MonitorStatus:
    """The state of monitor ``name`` with its values computed at ``at`` (a ConfigError for an unknown
    or disabled monitor)."""
    import asyncio

    mj = service.require(name)
    points = await service.values(name, at)
    states = await asyncio.to_thread(service.tables.alert_states, name)
    counts = await asyncio.to_thread(service.tables.counts, name)
    return MonitorStatus(
        name=name, source=mj.monitor.where(), definition=mj.definition.model_dump(mode="json"),
        judges=[JudgeSummary(name=j.name, fingerprint=j.fingerprint(), type=type(j).__name__,
                             model=getattr(j, "model", None)) for j in mj.judges],
        counts=counts, at=at, values=[p.to_dict() for p in points],
        alerts=[RuleState(rule=rule, series=series, firing=s.firing, since=s.since, alert_id=s.alert_id)
                for (rule, series), s in sorted(states.items())])


class WindowTrace(BaseModel):
    """One trace of a window: what the monitor recorded of it, and its head when it is still stored."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    trace_id: str
    """The trace."""
    trace_time: float
    """When it happened (Unix seconds of its end)."""
    outcome: str | None = None
    """The judge's outcome (``pass``, ``fail``, ``error``, ``metric``, ``skipped``); None for the
    operational series' traces."""
    sampled: bool = True
    """Whether it is in the monitor's sample."""
    total_tokens: int = 0
    """Its tokens."""
    cost_usd: float = 0.0
    """Its cost."""
    latency_s: float = 0.0
    """Its latency."""
    error: bool = False
    """Whether it ended in error."""
    stored: bool = False
    """Whether the trace is still in the store (retention deletes traces, never these rows)."""
    agent: str | None = None
    """Its agent's name (stored traces only)."""
    status: str | None = None
    """Its status (stored traces only)."""


class WindowTraces(BaseModel):
    """The traces one point of a monitor's series was computed from: the window ``(start, end]``."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    monitor: str
    """The monitor."""
    judge: str
    """The judge; empty for the operational series (every trace the monitor considered)."""
    window_s: float
    """The window's length in seconds."""
    start: float
    """The window starts after this (Unix seconds)."""
    end: float
    """And ends at this, included (the point's ``at``)."""
    outcome: str | None = None
    """Only the traces with this outcome are listed (the counts cover them all)."""
    counts: dict[str, int]
    """For a judge: its outcomes in the window (``pass``, ``fail``, ``error``, ``metric``, ``skipped``; the
    point's ``n`` is pass + fail); for the operational series: ``traces``, ``sampled``, ``errors``."""
    total: int
    """How many traces the listing has in all (before ``limit``)."""
    traces: list[WindowTrace]
    """Newest first, at most ``limit``."""
    truncated: bool
    """True when more traces than ``limit`` are in the listing."""


def window_traces(store: Store, monitor: str, *, window: float, at: float, judge: str = "",
                  outcome: str | None = None, limit: int = WINDOW_TRACES_LIMIT) -> WindowTraces:
    """The traces behind the point of ``monitor``'s series (``judge``'s, or the operational one with
    ``judge`` empty) at ``at`` over ``window`` seconds."""
    from costar.errors import ConfigError

    tables = monitor_tables(store)
    if tables is None:
        raise ConfigError(f"the store at {store.location} keeps no monitors (they need SQLite or PostgreSQL)")
    start, end = at - window, at
    rows: list[WindowTrace]
    if judge:
        counts = dict(tables.outcome_counts(monitor, start, end).get(judge, {}))
        counts = {k: counts.get(k, 0) for k in ("pass", "fail", "error", "metric", "skipped")}
        total = counts[outcome] if outcome is not None else sum(counts.values())
        results = tables.window_results(monitor, judge, start, end, outcome=outcome, limit=limit)
        seen = tables.considered(monitor, [r.trace_id for r in results])
        rows = []
        for r in results:
            c = seen.get(r.trace_id)
            rows.append(WindowTrace(trace_id=r.trace_id, trace_time=r.trace_time, outcome=r.outcome,
                                    **({} if c is None else _ops(c))))
    else:
        ops = tables.operational(monitor, start, end)
        counts = {"traces": len(ops), "sampled": sum(o[0] for o in ops), "errors": sum(1 for o in ops if o[4])}
        total = counts["traces"]
        rows = [WindowTrace(trace_id=c.trace_id, trace_time=c.trace_time, **_ops(c))
                for c in tables.window_traces(monitor, start, end, limit=limit)]
    heads = {t.trace_id: t for t in store.get_traces([r.trace_id for r in rows], spans=False)}
    for row in rows:
        head = heads.get(row.trace_id)
        if head is not None:
            row.stored, row.agent, row.status = True, head.agent.name or None, str(head.status.value)
    return WindowTraces(monitor=monitor, judge=judge, window_s=window, start=start, end=end, outcome=outcome,
                        counts=counts, total=total, traces=rows, truncated=total > len(rows))


def _ops(c: Any) -> dict[str, Any]:
    return {"sampled": c.sampled, "total_tokens": c.total_tokens, "cost_usd": c.cost_usd, "latency_s": c.latency_s,
            "error": c.error}
