"""costar store copy carries what costar server keeps: production traces, tokens, the write-ahead
log, monitors with their results and series, and the alert history under the destination's ids."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from costar.store import copy as copy_module
from costar.store.copy import CopyConflictError, copy_store, store_contents
from costar.store.monitor_tables import ConsideredTrace, JudgeResult, MonitorTables, SeriesPoint
from costar.store.postgres import PostgresStore
from costar.store.server_tables import ServerTables, ServerTrace, TokenRecord
from costar.store.sqlite import SQLiteStore
from costar.trace.model import Span, SpanKind, Trace
from tests.store.test_store_copy import recorded_reads


def fill_production(store: Any) -> None:
    """One project's traces, a token, an unassembled batch, a monitor that scored them, its series,
    and an alert that fired (delivered to two targets, one failing) and recovered."""
    server = ServerTables(store)
    server.add_token(TokenRecord(token_id="tok1", kind="ingest", project="shop", name="ci ✓", digest="d" * 64,
                                 created_at=10.0, last_used_at=11.5))
    server.append_batches([(2, b"\x00payload \xff")])
    traces = [Trace(trace_id=f"{i:032x}", start_ns=i, end_ns=i + 5, output=f"out {i}",
                    spans=[Span(trace_id=f"{i:032x}", span_id=f"{i:016x}", name="agent", kind=SpanKind.AGENT,
                                start_ns=i, end_ns=i + 5)]) for i in range(3)]
    server.commit_traces(traces, [ServerTrace(trace_id=t.trace_id, project="shop", service="svc", start_ns=i,
                                              completed_at=20.0 + i, spans=1) for i, t in enumerate(traces)], [])
    monitors = MonitorTables(store)
    monitors.save_monitor("quality", {"name": "quality", "sample": 1.0, "judges": ["has-answer"]})
    monitors.record_considered([ConsideredTrace("quality", t.trace_id, 20.0 + i, True, "pending", 30.0 + i,
                                                total_tokens=7 * i, cost_usd=0.25 * i, latency_s=1.5)
                                for i, t in enumerate(traces)])
    monitors.write_results("quality", [JudgeResult("quality", t.trace_id, "has-answer", "fp", "pass" if i else "fail",
                                                   20.0 + i, 0.0, 40.0) for i, t in enumerate(traces)],
                           [(t.trace_id, "scored") for t in traces], 40.0)
    monitors.write_points([SeriesPoint("quality", "has-answer", 3600.0, "pass_rate", 3600.0, 3, 2 / 3, 0.2, 0.94,
                                       {"pass": 2, "fail": 1})])
    monitors.set_sweep_cursor("quality", (2, traces[-1].trace_id))
    fired = monitors.record_alert("quality", "floor", "has-answer/1h", "firing", 50.0, "pass rate fell <b>", {"v": 1},
                                  ["log", "https://hooks.example/x"])
    assert fired is not None
    monitors.update_delivery(fired[1][1], "failed", 3, "HTTP 500")
    monitors.record_alert("quality", "floor", "has-answer/1h", "resolved", 60.0, "recovered", {"v": 2}, ["log"])


def alert_history(store: Any) -> list[tuple[Any, ...]]:
    """The alerts as the API reads them, without the ids that differ between stores."""
    return [(a.rule, a.series, a.status, a.at, a.message, a.data,
             [(d.target, d.status, d.attempts, d.last_error) for d in a.deliveries])
            for a in MonitorTables(store).alerts(monitor="quality")]


def test_production_tables_round_trip_sqlite_postgres_sqlite(tmp_path: Path, pg_url: str) -> None:
    src = SQLiteStore(tmp_path / "a")
    fill_production(src)
    pg = PostgresStore(pg_url, local_dir=tmp_path / "pg-local")
    back = SQLiteStore(tmp_path / "b")
    try:
        first = copy_store(src, pg)
        copied = {k: v.copied for k, v in first.tables.items() if v.copied}
        assert copied == {"traces": 3, "spans": 3, "server_traces": 3, "server_tokens": 1, "ingest_batches": 1,
                          "monitors": 1, "monitor_traces": 3, "monitor_results": 3, "monitor_points": 1,
                          "monitor_sweeps": 1, "monitor_alerts": 2, "monitor_deliveries": 3,
                          "monitor_alert_state": 1}
        copy_store(pg, back)
        original = store_contents(src)
        assert original["monitor_alerts"]
        assert store_contents(pg) == original
        assert store_contents(back) == original
        assert alert_history(back) == alert_history(src)
        assert ServerTables(back).pending_batches() == ServerTables(src).pending_batches()
        assert ServerTables(pg).token_by_digest("d" * 64) == ServerTables(src).token_by_digest("d" * 64)
        again = copy_store(src, pg)
        assert sum(v.copied for v in again.tables.values()) == 0
        assert again.tables["monitor_deliveries"].present == 3
    finally:
        for st in (src, pg, back):
            st.close()


def test_alerts_take_the_destinations_ids_and_their_deliveries_follow(tmp_path: Path) -> None:
    src = SQLiteStore(tmp_path / "a")
    dst = SQLiteStore(tmp_path / "b")
    try:
        fill_production(src)
        # The destination's own alerts take ids 1 and 2, which the source's alerts also use.
        theirs = MonitorTables(dst)
        theirs.record_alert("other", "spike", "cost/1h", "firing", 5.0, "cost spiked", {}, ["log", "slack"])
        theirs.record_alert("other", "spike", "cost/1h", "resolved", 6.0, "cost back", {}, ["log"])
        copy_store(src, dst, merge=True)
        assert alert_history(dst) == alert_history(src)
        other = [(a.status, [d.target for d in a.deliveries]) for a in theirs.alerts(monitor="other")]
        assert other == [("resolved", ["log"]), ("firing", ["log", "slack"])]
        state = theirs.alert_states("quality")[("floor", "has-answer/1h")]
        assert state.alert_id == theirs.alerts(monitor="quality")[0].id  # the copied "resolved" alert
        assert state.alert_id not in {a.id for a in MonitorTables(src).alerts(monitor="quality")}
        again = copy_store(src, dst)
        assert again.tables["monitor_alerts"].copied == 0
        assert again.tables["monitor_alerts"].present == 2
    finally:
        src.close()
        dst.close()


def test_a_differing_alert_is_a_conflict_and_merge_keeps_the_destinations(tmp_path: Path) -> None:
    src = SQLiteStore(tmp_path / "a")
    dst = SQLiteStore(tmp_path / "b")
    try:
        fill_production(src)
        MonitorTables(dst).record_alert("quality", "floor", "has-answer/1h", "firing", 50.0, "edited by hand", {},
                                        ["log"])
        before = store_contents(dst)
        with pytest.raises(CopyConflictError, match="monitor_alerts"):
            copy_store(src, dst)
        assert store_contents(dst) == before
        report = copy_store(src, dst, merge=True)
        assert report.tables["monitor_alerts"].conflicts == 1
        assert report.tables["monitor_alerts"].copied == 1
        messages = [a.message for a in MonitorTables(dst).alerts(monitor="quality")]
        assert messages == ["recovered", "edited by hand"]
    finally:
        src.close()
        dst.close()


def test_production_tables_copy_in_small_batches_every_row_once_without_offset(
        tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    src = SQLiteStore(tmp_path / "a")
    fill_production(src)
    # Many rows of one monitor, judge and series, at equal times: batches end between equal values.
    monitors = MonitorTables(src)
    ids = [f"{i:032x}" for i in range(10, 19)]
    monitors.record_considered([ConsideredTrace("quality", t, 70.0, True, "pending", 70.0) for t in ids])
    monitors.write_results("quality", [JudgeResult("quality", t, judge, "fp", "pass", 70.0, 0.0, 71.0)
                                       for t in ids for judge in ("has-answer", "polite")], [], 71.0)
    monitors.write_points([SeriesPoint("quality", "has-answer", 60.0, metric, 60.0 * k, 1, 0.5, 0.1, 0.9, {})
                           for k in range(5) for metric in ("pass_rate", "cost")])
    for k in range(3):
        for status in ("firing", "resolved"):
            monitors.record_alert("quality", "floor", "polite/1h", status, 80.0 + k, status, {}, ["log", "slack"])
    pg = PostgresStore(pg_url, local_dir=tmp_path / "pg-local")
    back = SQLiteStore(tmp_path / "b")
    try:
        original = store_contents(src)
        assert len(original["monitor_results"]) == 21
        monkeypatch.setattr(copy_module, "_BATCH", 2)
        seen = recorded_reads(monkeypatch, src, pg, back)
        copy_store(src, pg)
        copy_store(pg, back)
        assert store_contents(pg) == original
        assert store_contents(back) == original
        assert alert_history(back) == alert_history(src)
        again = copy_store(src, back)
        assert sum(c.copied for c in again.tables.values()) == 0
        assert again.tables["monitor_deliveries"].present == 3 + 6 * 2
        assert [sql for sql in seen if "OFFSET" in sql.upper()] == []
    finally:
        for st in (src, pg, back):
            st.close()
