"""The Monitors pages: the monitors (filter, sample rate, judges, windows, the pass rate now with its
interval, the rules firing), one monitor (per judge the pass-rate series with Wilson intervals and the
corrected rates where the judge has a golden set, the operational series, the alert history) and the
traces behind one point of a series (its window).

The data is what the CLI prints: ``costar monitor list --json`` and ``costar monitor show NAME
--json`` (:mod:`costar.monitor.overview`), ``costar monitor series NAME --window W --json`` and
``costar monitor alerts NAME --json`` (the store's monitor tables). Under ``costar server`` the pages
read the monitors the server scores with; under ``costar ui`` (or a server scoring none) the
project's monitor files and the monitors kept in the store, their judges resolved as
``costar monitor show`` resolves them.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from fastapi import Request
from fastapi.responses import Response

from costar.errors import ConfigError, CostarError
from costar.monitor.alerts import series_key
from costar.monitor.model import format_duration, parse_duration
from costar.monitor.overview import (
    MonitorRow,
    MonitorStatus,
    monitor_rows,
    monitor_status,
    monitor_tables,
    stored_definitions,
    window_traces,
)
from costar.server.auth import Caller
from costar.ui.templating import path_part, query

if TYPE_CHECKING:
    from costar.monitor.files import Monitor
    from costar.monitor.service import MonitorService
    from costar.store.monitor_tables import SeriesPoint
    from costar.ui.app import WebApp

RANGES = ("6h", "1d", "7d", "30d", "all")
"""The periods the series can be shown over (``?range=``); ``7d`` by default."""
DEFAULT_RANGE = "7d"
MAX_POINTS = 50_000
"""The most stored points a monitor page reads (the newest); a note says when more exist."""
TABLE_ROWS = 200
"""Rows of each series table (the newest points); the chart shows them all."""
ALERTS_SHOWN = 200
"""Alert events the monitor page lists (newest first)."""
JUDGE_METRICS = ("pass_rate", "rogan_gladen", "ppi", "judge_error_rate")
OUTCOMES = ("pass", "fail", "error", "metric", "skipped")


# ----------------------------------------------------------------------------- where the monitors come from


def _project_monitors(web: WebApp) -> tuple[list[Monitor], str | None]:
    """The project's monitor files and the monitors kept in the store, and an error when they
    cannot be read (a bad file names itself)."""
    from costar.monitor.files import load_monitors

    try:
        cfg = _project(web)
        folder = cfg.path(cfg.monitors_dir) if cfg is not None else None
        stored = stored_definitions(web.store)
        return load_monitors(folder, stored), None
    except CostarError as exc:
        return [], str(exc)


def _project(web: WebApp) -> Any:
    if web.project_dir is None:
        return None
    from pathlib import Path

    from costar.config import ProjectConfig, load_config

    file = Path(web.project_dir) / "costar.yaml"
    return load_config(file) if file.is_file() else ProjectConfig(root=Path(web.project_dir))


def monitors_of(web: WebApp) -> tuple[list[Monitor], str | None]:
    """The monitors the pages show: the server's (when it scores with some), else the project's."""
    service = web.host.monitors
    if service is not None:
        return list(service.monitors), None
    return _project_monitors(web)


def service_of(web: WebApp, monitors: list[Monitor]) -> MonitorService:
    """The server's monitor service, or one over the app's store with the project's judges (built
    per request: it only computes values, it scores nothing)."""
    if web.host.monitors is not None:
        return web.host.monitors
    from costar.align.versions import project_judges
    from costar.config import ProjectConfig
    from costar.monitor.service import MonitorService

    cfg = _project(web)
    registry = project_judges(cfg if cfg is not None else ProjectConfig())
    return MonitorService(web.store, monitors, registry)


# ----------------------------------------------------------------------------- shaping


def filter_summary(definition: dict[str, Any]) -> list[tuple[str, str]]:
    """The filter's fields that are set, each as (field, what it matches)."""
    out = []
    for key, value in (definition.get("filter") or {}).items():
        if not value:
            continue
        if key == "attributes":
            text = ", ".join(f"{k}={'|'.join(map(str, v)) if isinstance(v, list) else v}" for k, v in value.items())
        else:
            text = " | ".join(map(str, value)) if isinstance(value, list) else str(value)
        out.append((key, text))
    return out


def _window_param(raw: str, windows: list[float]) -> float:
    if not raw:
        return windows[0]
    try:
        value = parse_duration(raw)
    except ValueError as exc:
        raise ConfigError(f"window {raw!r}: {exc}") from None
    if value not in windows:
        raise ConfigError(f"window {raw!r} is not one of the monitor's windows "
                          f"({', '.join(format_duration(w) for w in windows)})")
    return value


def _since(range_: str, now: float) -> float | None:
    return None if range_ == "all" else now - parse_duration(range_)


def traces_base(name: str, window: float, judge: str = "") -> str:
    """The traces of a series' windows, without the window's end (a chart's script adds ``&at=``)."""
    return f"/monitors/{path_part(name)}/traces" + query(judge=judge, window=format_duration(window))


def traces_link(name: str, window: float, at: float, judge: str = "", outcome: str | None = None) -> str:
    """The traces behind a point: its window ``(at - window, at]``."""
    return traces_base(name, window, judge) + "&" + query(at=repr(at), outcome=outcome)[1:]


def _by_at(points: list[SeriesPoint], metric: str) -> dict[float, SeriesPoint]:
    return {p.at: p for p in points if p.metric == metric}


def judge_chart(name: str, judge: str, window: float, points: list[SeriesPoint]) -> dict[str, Any]:
    """The pass rate with its Wilson interval and, where a golden set gives them, the corrected rates."""
    rates = _by_at(points, "pass_rate")
    xs = sorted(rates)
    series: list[dict[str, Any]] = [
        {"label": "pass rate", "values": [rates[x].value for x in xs], "low": [rates[x].low for x in xs],
         "high": [rates[x].high for x in xs]}]
    for metric, label, band in (("rogan_gladen", "Rogan–Gladen", True), ("ppi", "PPI", False)):
        found = _by_at(points, metric)
        if any(p.value is not None for p in found.values()):
            got = [found.get(x) for x in xs]
            entry: dict[str, Any] = {"label": label, "values": [p.value if p else None for p in got],
                                     "dashed": not band}
            if band:
                entry["low"] = [p.low if p else None for p in got]
                entry["high"] = [p.high if p else None for p in got]
            series.append(entry)
    return {"title": f"{judge}: pass rate over {format_duration(window)} windows (95% intervals)", "x": xs,
            "x_kind": "time", "x_label": "window end", "y_kind": "pct", "y_range": [0, 1], "series": series,
            "link": traces_base(name, window, judge)}


OPS_CHARTS = (
    ("volume", "traces and sampled traces per window", "count", (("traces", "traces"), ("sampled", "sampled"))),
    ("errors", "share of traces that ended in error (95% interval)", "pct", (("error_rate", "error rate"),)),
    ("latency", "latency of a trace", "seconds", (("latency_s", "median"), ("latency_p90", "p90"))),
    ("tokens", "tokens of a trace (median)", "int", (("total_tokens", "median tokens"),)),
    ("cost", "cost", "usd", (("cost_usd", "median trace cost"), ("judge_cost_usd", "judges' cost per window"))),
)
"""The operational charts: (key, title, unit, ((metric, label), ...))."""


def ops_charts(name: str, window: float, points: list[SeriesPoint]) -> dict[str, dict[str, Any]]:
    xs = sorted({p.at for p in points})
    out = {}
    for key, title, unit, metrics in OPS_CHARTS:
        series = []
        for metric, label in metrics:
            found = _by_at(points, metric)
            got = [found.get(x) for x in xs]
            entry: dict[str, Any] = {"label": label, "values": [p.value if p else None for p in got]}
            if metric == "error_rate":
                entry["low"] = [p.low if p else None for p in got]
                entry["high"] = [p.high if p else None for p in got]
            series.append(entry)
        out[f"ops-{key}"] = {"title": f"{title} over {format_duration(window)} windows", "x": xs, "x_kind": "time",
                             "x_label": "window end", "y_kind": unit, "series": series,
                             **({"y_range": [0, 1]} if unit == "pct" else {}),
                             "link": traces_base(name, window)}
    return out


def judge_rows(points: list[SeriesPoint]) -> list[dict[str, Any]]:
    """One table row per point time, newest first: the pass rate, the corrected rates, the judge errors."""
    by: dict[float, dict[str, SeriesPoint]] = {}
    for p in points:
        by.setdefault(p.at, {})[p.metric] = p
    return [{"at": at, **by[at]} for at in sorted(by, reverse=True)]


def now_rows(status: MonitorStatus | None) -> list[dict[str, Any]]:
    """The "now" table: one row per judge and window, with its per-judge values (None where absent)."""
    if status is None:
        return []
    values = {(v["judge"], v["window_s"], v["metric"]): v for v in status.values}
    windows = [parse_duration(w) for w in status.definition["windows"]]
    return [{"judge": j.name, "type": j.type, "model": j.model, "fingerprint": j.fingerprint, "window": w,
             "first": i == 0, **{m: values.get((j.name, w, m)) for m in JUDGE_METRICS}}
            for j in status.judges for i, w in enumerate(windows)]


def current_rates(status: MonitorStatus | None) -> dict[str, list[dict[str, Any]]]:
    """judge -> its pass rate now, per window (first window first)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for v in status.values if status is not None else []:
        if v["metric"] == "pass_rate":
            out.setdefault(v["judge"], []).append(v)
    return out


# ----------------------------------------------------------------------------- the pages


def register(web: WebApp) -> None:
    @web.page("/monitors")
    async def monitors_page(request: Request, caller: Caller) -> Response:
        monitors, error = await web.run(monitors_of, web)
        rows: list[MonitorRow] = await web.run(monitor_rows, monitors, web.store)
        statuses: dict[str, MonitorStatus] = {}
        problems: dict[str, str] = {}
        at = time.time()
        if monitors:
            try:
                service = await web.run(service_of, web, monitors)
            except CostarError as exc:
                service, error = None, str(exc)
            for m in monitors:
                if service is None or not m.definition.enabled:
                    continue
                try:
                    statuses[m.name] = await monitor_status(service, m.name, at)
                except CostarError as exc:
                    problems[m.name] = str(exc)
        tables = monitor_tables(web.store)
        firing: dict[str, list[dict[str, Any]]] = {}
        if tables is not None:
            for name, status in statuses.items():
                ids = {a.alert_id for a in status.alerts if a.firing and a.alert_id is not None}
                records = {r.id: r for r in await web.run(tables.alerts, monitor=name, limit=ALERTS_SHOWN)}
                firing[name] = [{"state": a, "alert": records.get(a.alert_id) if a.alert_id in ids else None}
                                for a in status.alerts if a.firing]
        data = {"monitors": [r.to_json() for r in rows],
                "status": {name: s.model_dump(mode="json") for name, s in statuses.items()}, "errors": problems}
        definitions = {m.name: m.definition.model_dump(mode="json") for m in monitors}
        return web.render(request, "monitors.html", caller, section="monitors", rows=rows, statuses=statuses,
                          problems=problems, error=error, firing=firing, definitions=definitions,
                          filters={n: filter_summary(d) for n, d in definitions.items()},
                          rates={n: current_rates(s) for n, s in statuses.items()}, data=data,
                          format_duration=format_duration)

    @web.page("/monitors/{name}/traces")
    async def window_page(request: Request, caller: Caller, name: str) -> Response:
        qp = request.query_params
        monitor = await _find(web, name)
        window = _window_param(qp.get("window", ""), list(monitor.definition.windows))
        try:
            at = float(qp.get("at", ""))
        except ValueError:
            raise ConfigError("at: give the window's end as Unix seconds (open a point of a monitor's chart)") from None
        judge = qp.get("judge", "")
        outcome = qp.get("outcome") or None
        if outcome is not None and outcome not in OUTCOMES:
            raise ConfigError(f"outcome {outcome!r}: use one of {', '.join(OUTCOMES)}")
        if outcome is not None and not judge:
            raise ConfigError("outcome needs a judge: the operational series' traces have no outcome")
        view = await web.run(window_traces, web.store, name, window=window, at=at, judge=judge, outcome=outcome)
        return web.render(request, "monitor_traces.html", caller, section="monitors", name=name, view=view,
                          window=window, series=series_key(judge, window), outcomes=OUTCOMES,
                          link=lambda **kw: traces_link(name, window, at, judge, **kw),
                          back=f"/monitors/{path_part(name)}" + query(window=format_duration(window),
                                                                      judge=judge or None),
                          format_duration=format_duration, data=view.model_dump(mode="json"))

    @web.page("/monitors/{name}")
    async def monitor_page(request: Request, caller: Caller, name: str) -> Response:
        qp = request.query_params
        monitor = await _find(web, name)
        d = monitor.definition
        window = _window_param(qp.get("window", ""), list(d.windows))
        range_ = qp.get("range", DEFAULT_RANGE)
        if range_ not in RANGES:
            raise ConfigError(f"range {range_!r}: use one of {', '.join(RANGES)}")
        now = time.time()
        status: MonitorStatus | None = None
        status_error: str | None = None
        if d.enabled:
            try:
                service = await web.run(service_of, web, [monitor] if web.host.monitors is None else [])
                status = await monitor_status(service, name, now)
            except CostarError as exc:
                status_error = str(exc)
        else:
            status_error = "the monitor is disabled (enabled: false): it scores nothing"
        judges = [j.name for j in status.judges] if status is not None else []
        tables = monitor_tables(web.store)
        if tables is None:
            raise ConfigError(f"the store at {web.store.location} keeps no monitors (they need SQLite or PostgreSQL)")
        since = _since(range_, now)
        points = await web.run(tables.points, name, window=window, since=since, limit=MAX_POINTS)
        for judge in sorted({p.judge for p in points if p.judge} - set(judges)):
            judges.append(judge)  # a judge the monitor had before (its series stay)
        chosen = qp.get("judge", "")
        if chosen and chosen not in judges:
            raise ConfigError(f"judge {chosen!r} has no series in monitor {name} (judges: {', '.join(judges)})")
        shown = [chosen] if chosen else judges
        per_judge = {j: [p for p in points if p.judge == j and p.metric in JUDGE_METRICS] for j in shown}
        ops = [p for p in points if p.judge == ""]
        charts: dict[str, Any] = {f"judge-{i}": judge_chart(name, j, window, per_judge[j]) for i, j in enumerate(shown)}
        charts.update(ops_charts(name, window, ops))
        alerts = await web.run(tables.alerts, monitor=name, limit=ALERTS_SHOWN)
        ops_rows = judge_rows(ops)
        data = {"status": status.model_dump(mode="json") if status is not None else None,
                "series": [p.to_dict() for p in points], "alerts": [a.to_dict() for a in alerts],
                "window_s": window, "since": since, "judge": chosen}
        return web.render(
            request, "monitor.html", caller, section="monitors", name=name, monitor=monitor, d=d, current=status,
            status_error=status_error, window=window, range_=range_, ranges=RANGES, judges=judges, chosen=chosen,
            shown=shown, rows={j: judge_rows(per_judge[j])[:TABLE_ROWS] for j in shown},
            counts={j: len({p.at for p in per_judge[j]}) for j in shown}, ops_rows=ops_rows[:TABLE_ROWS],
            ops_total=len(ops_rows), truncated=len(points) >= MAX_POINTS, alerts=alerts, charts=charts,
            filters=filter_summary(d.model_dump(mode="json")), now_rows=now_rows(status),
            traces_link=lambda at, judge="", outcome=None: traces_link(name, window, at, judge, outcome),
            format_duration=format_duration, series_key=series_key, data=data, ops_charts=[c[0] for c in OPS_CHARTS])


async def _find(web: WebApp, name: str) -> Monitor:
    found: tuple[list[Monitor], str | None] = await web.run(monitors_of, web)
    monitors, error = found
    for m in monitors:
        if m.name == name:
            return m
    from fastapi import HTTPException

    known = ", ".join(m.name for m in monitors) or "none defined"
    raise HTTPException(404, f"no monitor {name!r} (monitors: {known})" + (f"; {error}" if error else ""))
