"""costar monitor: list, show, run, backfill, alerts, series, create, delete; and costar scenarios from-trace."""

from __future__ import annotations

import datetime as dt
import json
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from costar import api
from costar._util.units import format_usd
from costar.cli.common import (
    ConfigOpt,
    StoreOpt,
    app,
    cells,
    console,
    load_project,
    open_project_store,
    say,
    writable_file,
    writing,
)
from costar.errors import ConfigError

monitor_app = typer.Typer(no_args_is_help=True, help="Monitors: the same judges on sampled production traces, "
                                                     "metric series and alerts (docs/MONITORING.md).")
app.add_typer(monitor_app, name="monitor")

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON (the API's shapes).")]


def parse_since(text: str, now: float | None = None) -> float:
    """``7d`` / ``12h`` / ``90m`` ago, ``all``, or an ISO date or time (UTC unless it says otherwise)
    -> Unix seconds."""
    from costar.monitor.model import parse_duration

    now = time.time() if now is None else now
    value = text.strip()
    if value.lower() == "all":
        return 0.0
    try:
        return now - parse_duration(value)
    except ValueError:
        pass
    try:
        when = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"--since {text!r}: write a duration (7d, 12h, 90m), an ISO date or time "
                          "(2026-01-31, 2026-01-31T12:00Z), or 'all'") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.timestamp()


def _when(at: float | None) -> str:
    if at is None:
        return ""
    return dt.datetime.fromtimestamp(at, dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, default=str) + "\n")


@monitor_app.command("list")
def monitor_list(config: ConfigOpt = None, store: StoreOpt = None, as_json: JsonOpt = False) -> None:
    """List the project's monitors (files under monitors/ and those created through the API)."""
    from rich.table import Table

    from costar.errors import StoreError

    cfg = load_project(config)
    try:
        opened = open_project_store(cfg, store, create=False)
    except StoreError:  # no store yet (or one this coSTAR cannot read): the files' definitions only, as the API
        opened = None
    listed = api.monitor_list(project=cfg, store=opened if opened is not None else store)
    rows = [r.to_json() for r in listed]
    if as_json:
        _print_json(rows)
        return
    table = Table("monitor", "enabled", "sample", "judges", "windows", "alerts", "considered", "sampled", "pending",
                  "source")
    for r in rows:
        judges = f"{r['checks']} check(s)" + (f", {', '.join(r['judges'])}" if r["judges"] else "")
        table.add_row(*cells(r["name"], "yes" if r["enabled"] else "no", f"{r['sample']:g}", judges,
                             ", ".join(r["windows"]), ", ".join(r["alerts"]), r.get("considered", ""),
                             r.get("sampled", ""), r.get("pending", ""), r["source"]))
    console.print(table)
    console.print(f"{len(rows)} monitor(s)")


@monitor_app.command("show")
def monitor_show(name: str, config: ConfigOpt = None, store: StoreOpt = None, as_json: JsonOpt = False) -> None:
    """A monitor's definition, its judges (with fingerprints), its current window values and alert states."""
    from costar.monitor.alerts import LABELS, format_value, series_key
    from costar.store.monitor_tables import SeriesPoint

    cfg = load_project(config)
    status = api.monitor_status(name, project=cfg, store=open_project_store(cfg, store))
    doc = status.model_dump(mode="json")
    if as_json:
        _print_json(doc)
        return
    counts = status.counts
    say(f"monitor {name} ({status.source})")
    say(yaml.safe_dump(doc["definition"], sort_keys=False, allow_unicode=True).rstrip())
    say("judges:")
    for j in status.judges:
        say(f"  {j.name}  {j.type}  fingerprint {j.fingerprint}" + (f"  model {j.model}" if j.model else ""))
    say(f"traces: {counts['considered']} considered, {counts['sampled']} sampled, {counts['pending']} pending, "
        f"{counts['scored']} scored")
    say(f"values now ({_when(status.at)}):")
    for v in status.values:
        data: dict[str, Any] = v["data"] or {}
        p = SeriesPoint(v["monitor"], v["judge"], v["window_s"], v["metric"], v["at"], v["n"], v["value"], v["low"],
                        v["high"], data)
        if p.metric in ("rogan_gladen", "ppi") and p.value is None and "error" in data:
            say(f"  {series_key(p.judge, p.window)}  {LABELS.get(p.metric, p.metric)}: n/a ({data['error']})")
            continue
        interval = f" [{p.low:.3f}, {p.high:.3f}]" if p.low is not None and p.high is not None else ""
        say(f"  {series_key(p.judge, p.window)}  {LABELS.get(p.metric, p.metric)}: "
            f"{format_value(p.metric, p.value)}{interval} (n={p.n})")
    if status.alerts:
        say("alert rules:")
        for a in status.alerts:
            say(f"  {a.rule} on {a.series}: {'FIRING since ' + _when(a.since) if a.firing else 'ok'}")
    unset = [w for w in status.definition.get("webhooks", {}).values() if "${" in w["url"]]
    for w in unset:
        say(f"note: webhook URL {w['url']} reads the environment when an alert is delivered")


@monitor_app.command("run")
def monitor_run(
    names: Annotated[list[str] | None, typer.Argument(help="Monitors (default: every enabled one).")] = None,
    since: Annotated[str | None, typer.Option("--since", help="Consider traces that started since (7d, 12h, an ISO "
                                                              "time, 'all'); default: since each monitor's last "
                                                              "run, or the last day.")] = None,
    fail_on_alert: Annotated[bool, typer.Option("--fail-on-alert", help="Exit 1 when any alert rule is firing "
                                                                        "afterwards.")] = False,
    config: ConfigOpt = None, store: StoreOpt = None, as_json: JsonOpt = False,
) -> None:
    """Process pending traces once, without a server: consider new traces, score the sampled ones,
    update the series and alert rules (alerts are delivered)."""
    cfg = load_project(config)
    report = api.run_monitors(names or None, since=parse_since(since) if since else None, project=cfg,
                              store=open_project_store(cfg, store))
    s, ev = report.score, report.evaluation
    firing = [c for c in ev.checks if c.state == "firing"]
    if as_json:
        _print_json({"considered": report.considered,
                     "score": {k: getattr(s, k) for k in ("traces", "judged", "cached", "restored", "errors", "skipped",
                                                          "missing", "cost_usd")},
                     "points_stored": ev.stored,
                     "events": [{"alert_id": e.alert_id, "status": e.status, "monitor": e.check.monitor,
                                 "rule": e.check.rule.name, "series": e.check.series, "message": e.check.message,
                                 "delivered": e.delivered} for e in ev.events],
                     "firing": [{"monitor": c.monitor, "rule": c.rule.name, "series": c.series, "message": c.message}
                                for c in firing]})
    else:
        say(f"considered {report.considered} new trace(s); scored {s.traces}: {s.judged} verdict(s) computed, "
            f"{s.cached} cached, {s.restored} restored, {s.errors} judge error(s), {s.skipped} skipped (budget)"
            + (f", {s.missing} no longer stored" if s.missing else "") + (f"; judges cost {format_usd(s.cost_usd)}"
                                                                          if s.cost_usd else ""))
        for e in ev.events:
            failed = [t for t, ok in e.delivered.items() if not ok]
            say(f"{'ALERT' if e.status == 'firing' else 'RESOLVED'} #{e.alert_id} {e.check.message}"
                + (f" (delivery failed: {', '.join(failed)})" if failed else ""))
        for c in firing:
            if not any(e.check is c for e in ev.events):
                say(f"still firing: {c.message}")
    if fail_on_alert and firing:
        raise typer.Exit(1)


@monitor_app.command("backfill")
def monitor_backfill(
    name: str,
    since: Annotated[str, typer.Option("--since", help="Start of the period: 7d, 12h, an ISO time, or 'all'.")] = "7d",
    until: Annotated[str | None, typer.Option("--until", help="End of the period (default: now).")] = None,
    config: ConfigOpt = None, store: StoreOpt = None, as_json: JsonOpt = False,
) -> None:
    """Score the stored traces a monitor matches over a past period and fill its series (no alerts)."""
    cfg = load_project(config)
    now = time.time()
    start = parse_since(since, now)
    end = parse_since(until, now) if until else None
    report = api.backfill_monitor(name, start, until=end, project=cfg, store=open_project_store(cfg, store))
    s = report.score
    if as_json:
        _print_json({"monitor": name, "since": report.since, "until": report.until, "read": report.read,
                     "matched": report.matched, "sampled": report.sampled, "scored": s.traces, "judged": s.judged,
                     "cached": s.cached, "errors": s.errors, "skipped": s.skipped, "points": report.points})
        return
    say(f"backfilled {name} from {_when(report.since)} to {_when(report.until)}: {report.read} trace(s) read, "
        f"{report.matched} matched, {report.sampled} sampled; scored {s.traces}: {s.judged} verdict(s) computed, "
        f"{s.cached} cached, {s.restored} restored, {s.errors} judge error(s), {s.skipped} skipped (budget); "
        f"{report.points} series point(s) stored")


@monitor_app.command("alerts")
def monitor_alerts(
    name: Annotated[str | None, typer.Argument(help="A monitor (default: all).")] = None,
    since: Annotated[str | None, typer.Option("--since", help="Only alerts since (7d, an ISO time).")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1)] = 50,
    config: ConfigOpt = None, store: StoreOpt = None, as_json: JsonOpt = False,
) -> None:
    """The alert history, newest first: what fired, what recovered, and each webhook delivery."""
    from rich.table import Table

    cfg = load_project(config)
    records = api.monitor_alerts(name, since=parse_since(since) if since else None, limit=limit, project=cfg,
                                 store=open_project_store(cfg, store, create=False))
    if as_json:
        _print_json([r.to_dict() for r in records])
        return
    table = Table("id", "at", "status", "monitor", "rule", "series", "deliveries", "message")
    for r in records:
        deliveries = ", ".join(f"{d.target}: {d.status}" + (f" after {d.attempts}" if d.status == "failed" else "")
                               + (f" ({d.last_error})" if d.last_error else "") for d in r.deliveries) or "log"
        table.add_row(*cells(r.id, _when(r.at), r.status, r.monitor, r.rule, r.series, deliveries, r.message))
    console.print(table)
    if not records:
        console.print("no alerts")


@monitor_app.command("series")
def monitor_series(
    name: str,
    judge: Annotated[str | None, typer.Option("--judge", help="A judge's verdict name; 'monitor' for the "
                                                              "operational series.")] = None,
    window: Annotated[str | None, typer.Option("--window", help="One of the monitor's windows (1h, 1d).")] = None,
    metric: Annotated[str | None, typer.Option("--metric", help="pass_rate, rogan_gladen, ppi, judge_error_rate, "
                                                                "traces, error_rate, cost_usd, latency_s, …")] = None,
    since: Annotated[str | None, typer.Option("--since")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1)] = 200,
    config: ConfigOpt = None, store: StoreOpt = None, as_json: JsonOpt = False,
) -> None:
    """Stored points of a monitor's metric series, oldest first."""
    from rich.table import Table

    from costar.monitor.alerts import format_value, series_key
    from costar.monitor.model import parse_duration

    cfg = load_project(config)
    try:
        w = parse_duration(window) if window else None
    except ValueError as exc:
        raise ConfigError(f"--window: {exc}") from None
    points = api.monitor_series(name, judge="" if judge == "monitor" else judge, window=w, metric=metric,
                                since=parse_since(since) if since else None, limit=limit, project=cfg,
                                store=open_project_store(cfg, store, create=False))
    if as_json:
        _print_json([p.to_dict() for p in points])
        return
    table = Table("at", "series", "metric", "value", "interval", "n")
    for p in points:
        interval = f"[{p.low:.3f}, {p.high:.3f}]" if p.low is not None and p.high is not None else ""
        table.add_row(*cells(_when(p.at), series_key(p.judge, p.window), p.metric, format_value(p.metric, p.value),
                             interval, p.n))
    console.print(table)


@monitor_app.command("create")
def monitor_create(file: Annotated[Path, typer.Argument(help="A monitor file (YAML) to keep in the store.")],
                   config: ConfigOpt = None, store: StoreOpt = None) -> None:
    """Keep a monitor in the store (as the API creates them), from a YAML file."""
    from costar.monitor.files import load_monitor_file

    cfg = load_project(config)
    found = load_monitor_file(file)
    if len(found) != 1:
        raise ConfigError(f"{file} holds {len(found)} monitors; create them one file at a time")
    d, new = api.save_monitor(found[0].definition, project=cfg, store=open_project_store(cfg, store))
    say(f"{'created' if new else 'replaced'} monitor {d.name} in the store")


@monitor_app.command("delete")
def monitor_delete(name: str, config: ConfigOpt = None, store: StoreOpt = None) -> None:
    """Delete a monitor kept in the store (its series and alert history stay)."""
    cfg = load_project(config)
    if not api.delete_monitor(name, project=cfg, store=open_project_store(cfg, store, create=False)):
        raise ConfigError(f"no monitor {name!r} in the store (monitors in files are deleted by deleting the file)")
    say(f"deleted monitor {name}")


def scenarios_from_trace(
    trace_id: Annotated[str, typer.Argument(help="The trace to draft a scenario from.")],
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write the draft here (files too large to "
                                                                       "inline go beside it); default: print it.")] = None,
    scenario_id: Annotated[str | None, typer.Option("--id", help="The scenario id (default: from-trace-<id>).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
    config: ConfigOpt = None, store: StoreOpt = None,
) -> None:
    """Write a scenario draft from a stored trace for a person to review: the prompt or turns, input
    files recovered from the trace, the failing verdicts as expectations."""
    cfg = load_project(config)
    if output is not None:
        writable_file(output)
        if output.exists() and not force:
            raise ConfigError(f"{output} exists; choose another path or pass --force to overwrite it")
    files_dir = f"{output.stem}_files" if output is not None else None
    draft = api.scenario_from_trace(trace_id, project=cfg, store=open_project_store(cfg, store, create=False),
                                    files_dir=files_dir, scenario_id=scenario_id)
    if output is None:
        sys.stdout.write(draft.render())
        return
    with writing(output):
        written = draft.write(output)
    say(f"wrote {output}" + (f" and {len(written) - 1} file(s) beside it" if len(written) > 1 else "")
        + "; review it, then run it (costar run " + str(output) + ")", err=True)
    for note in draft.notes:
        say(f"note: {note}", err=True)


def _register_from_trace() -> None:
    from costar.cli.run_commands import scenarios_app

    scenarios_app.command("from-trace")(scenarios_from_trace)


_register_from_trace()
