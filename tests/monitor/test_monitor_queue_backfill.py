"""Offers taken off the queue are not lost when saving them fails; backfill stops at ``until``.
A real SQLite store (locked by a real second connection)."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from costar.judges.registry import JudgeRegistry
from costar.monitor.files import Monitor
from costar.monitor.model import MonitorDefinition
from costar.monitor.service import MonitorService, ServiceOptions
from costar.store.sqlite import SQLiteStore
from tests.support.monitor import NOW, make_trace

DEFINITION = {"name": "m", "checks": [{"output_contains": "good", "name": "good"}], "windows": ["1h"]}


def service(store: Any, **options: Any) -> MonitorService:
    return MonitorService(store, [Monitor(MonitorDefinition.model_validate(DEFINITION), "test")], JudgeRegistry(),
                          options=ServiceOptions(**options), clock=lambda: NOW)


def test_a_batch_that_cannot_be_saved_goes_back_on_the_queue(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / ".costar", busy_timeout_s=0.2)
    try:
        traces = [make_trace(f"t{i}", at=NOW - 10 - i, output="good") for i in range(5)]
        store.write_traces(traces)
        svc = service(store, batch_size=2)
        for t in traces:
            assert svc.offer(t) == 1
        other = sqlite3.connect(store.db_path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # another process writing: 'database is locked'
        try:
            with pytest.raises(Exception, match="locked"):
                asyncio.run(svc.process_queue())
            assert svc.queued == 5  # the batch taken off is back (lost before the fix)
        finally:
            other.execute("ROLLBACK")
            other.close()
        stats = asyncio.run(svc.process_queue())
        assert stats.traces == 5
        rows = svc.tables.considered("m", [t.trace_id for t in traces])
        assert [rows[t.trace_id].state for t in traces] == ["scored"] * 5
        assert svc.queued == 0
    finally:
        store.close()


def test_backfill_scores_only_the_traces_up_to_until(sqlite_store: Any) -> None:
    sqlite_store.write_traces([make_trace(f"old{i}", at=NOW - 5 * 3600 + i, output="good") for i in range(4)]
                              + [make_trace(f"new{i}", at=NOW - 3600 + i, output="good") for i in range(3)])
    svc = service(sqlite_store)
    report = asyncio.run(svc.backfill("m", since=NOW - 6 * 3600, until=NOW - 2 * 3600))
    assert (report.read, report.matched, report.score.traces) == (4, 4, 4)
    assert set(svc.tables.considered("m", [f"new{i}" for i in range(3)])) == set()  # after until: untouched


def test_backfill_counts_the_earliest_trace_in_its_series(sqlite_store: Any) -> None:
    # Windows exclude their start; the fill started at the earliest trace's time, so that trace was in
    # no point of a period longer than the window.
    sqlite_store.write_traces([make_trace("first", at=NOW - 5 * 3600, output="good")])
    svc = service(sqlite_store)
    report = asyncio.run(svc.backfill("m", since=0, until=NOW))
    assert report.score.traces == 1
    counts = [p.value for p in svc.tables.points("m", window=3600.0) if p.metric == "traces"]
    assert max(c or 0 for c in counts) == 1
