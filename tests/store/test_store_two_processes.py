"""Two processes creating and writing one new SQLite store at the same moment both succeed: putting a
new connection in WAL mode is retried while the other process holds the write lock (SQLite refuses
that lock at once, without the busy wait)."""

from __future__ import annotations

import sqlite3
import threading
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import Manager
from pathlib import Path
from typing import Any

from costar.store.sqlite import SQLiteStore
from costar.trace.model import Span, SpanKind, Trace


def _write(args: tuple[str, str, Any]) -> int:
    where, run_id, barrier = args
    traces = [Trace(trace_id=f"{run_id}-{i}", run_id=run_id, scenario_id=f"s{i}", trial=0,
                    spans=[Span(trace_id=f"{run_id}-{i}", span_id=f"{j:016x}", name="step", kind=SpanKind.LLM,
                                start_ns=j, end_ns=j + 1, attributes={"text": "x" * 500}) for j in range(100)])
              for i in range(200)]
    store = SQLiteStore(where)  # opened before the other process has created the store
    barrier.wait()
    try:
        for k in range(0, len(traces), 50):
            store.write_traces(traces[k:k + 50])
        return len(store.trace_ids(run_id))
    finally:
        store.close()


def test_two_processes_create_and_write_one_new_store_at_once(tmp_path: Path) -> None:
    for attempt in range(3):
        where = str(tmp_path / f"store{attempt}")
        with Manager() as manager, ProcessPoolExecutor(2) as pool:
            barrier = manager.Barrier(2)
            counts = list(pool.map(_write, [(where, "ra", barrier), (where, "rb", barrier)]))
        assert counts == [200, 200]
        with SQLiteStore(where) as store:
            assert len(store.trace_ids("ra")) + len(store.trace_ids("rb")) == 400


def test_putting_a_connection_in_wal_mode_waits_while_another_one_writes(tmp_path: Path) -> None:
    db = tmp_path / "x.db"
    holder = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("INSERT INTO t VALUES (1)")
    release = threading.Timer(0.5, lambda: holder.execute("COMMIT"))
    release.start()
    conn = sqlite3.connect(db, isolation_level=None, timeout=5)
    try:
        SQLiteStore(tmp_path / "store")._use_wal(conn)
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        release.join()
        conn.close()
        holder.close()
