"""Retention and blobs, on both stores: a blob goes only when no trace refers to it and nobody stored
it within the grace period. A writer stores its blobs before the trace that refers to them (and
identical bytes share one blob), so retention racing a writer must never delete a blob the writer's
trace is about to refer to. References are found in one pass over the traces, not one per blob."""

from __future__ import annotations

import concurrent.futures
import os
import time
from pathlib import Path
from typing import Any

import pytest

from costar.store.server_tables import BLOB_GRACE_S, ServerTables, ServerTrace
from costar.trace.model import Artifact, Trace

DAY = 86400.0


def age_blob(store: Any, sha: str, seconds: float) -> None:
    """Make a blob look stored ``seconds`` ago, as retention reads its time."""
    if store.backend == "sqlite":
        when = time.time() - seconds
        os.utime(store.blob_path(sha), (when, when))
    else:
        with store._write() as c:
            c.execute("UPDATE blobs SET stored_at = stored_at - ? WHERE sha256=?", (seconds, sha))


def _arts(shas: list[str]) -> list[Artifact]:
    return [Artifact(path=f"f{i}.txt", sha256=s, size=1) for i, s in enumerate(shas)]


def _server_trace(tables: ServerTables, tid: str, shas: list[str]) -> None:
    tables.commit_traces([Trace(trace_id=tid, artifacts=_arts(shas))], [ServerTrace(trace_id=tid, project="shop")],
                         [])


def _run_trace(store: Any, tid: str, shas: list[str], trial: int = 0) -> None:
    store.write_traces([Trace(trace_id=tid, run_id="r", scenario_id="sc", trial=trial, artifacts=_arts(shas))])


def _old_blob(store: Any, tables: ServerTables, data: bytes, tid: str = "s1") -> str:
    """A blob stored two days ago, referred to by an expiring server trace only."""
    sha = store.put_blob(data)
    _server_trace(tables, tid, [sha])
    age_blob(store, sha, 2 * DAY)
    return sha


def test_a_blob_goes_once_no_trace_refers_to_it_and_nobody_stored_it_for_the_grace_period(store: Any) -> None:
    tables = ServerTables(store)
    gone, young, shared = (store.put_blob(b) for b in (b"only s1", b"only s2, stored just now", b"s1 and a run"))
    _server_trace(tables, "s1", [gone, shared])
    _server_trace(tables, "s2", [young])
    _run_trace(store, "r1", [shared])
    store.write_traces([Trace(trace_id="r2", run_id="r", scenario_id="sc", trial=1,
                              output=f'{{"sha256": "{gone}"}}')])  # named in text, no artifact: no reference
    for sha in (gone, shared):
        age_blob(store, sha, 2 * DAY)
    counts = tables.delete_traces(["s1", "s2"])
    assert (counts.traces, counts.blobs) == (2, 1)
    assert store.get_blob(gone) is None
    assert store.get_blob(young) == b"only s2, stored just now"  # a writer may be about to refer to it
    assert store.get_blob(shared) == b"s1 and a run"
    assert BLOB_GRACE_S >= 3600  # longer than a writer takes from its files to its trace


@pytest.mark.parametrize("how", ["put_blob", "put_file", "import_blob"])
def test_a_blob_stored_again_by_a_writer_whose_trace_is_not_stored_yet_survives(store: Any, tmp_path: Path,
                                                                                 how: str) -> None:
    """``costar run`` stores a trial's files, then (after the trial's other files, in a batch) its
    trace. Meanwhile retention deletes an old server trace with the same file."""
    tables = ServerTables(store)
    data = b"the same report, two traces"
    sha = _old_blob(store, tables, data)
    if how == "put_blob":
        assert store.put_blob(data) == sha
    elif how == "put_file":
        (tmp_path / "report.txt").write_bytes(data)
        assert store.put_file(tmp_path / "report.txt") == (sha, len(data))
    else:
        assert store.import_blob(sha, len(data), iter([data])) is False  # a copy finds it stored
    assert tables.delete_traces(["s1"]).blobs == 0
    assert store.get_blob(sha) == data
    _run_trace(store, "r1", [sha])
    assert store.get_blob(store.get_trace("r1").artifacts[0].sha256) == data


def test_a_trace_stored_between_the_reference_check_and_the_delete_keeps_its_blob(store: Any,
                                                                                    monkeypatch: Any) -> None:
    tables = ServerTables(store)
    data = b"shared bytes"
    sha = _old_blob(store, tables, data)
    delete_blob = store.delete_blob

    def writer_first(key: str, **kw: Any) -> Any:
        store.put_blob(data)  # a run stores the same file and its trace just after retention looked
        _run_trace(store, "r1", [sha])
        return delete_blob(key, **kw)

    monkeypatch.setattr(store, "delete_blob", writer_first)
    tables.delete_traces(["s1"])
    assert store.get_blob(sha) == data
    assert store.get_trace("r1").artifacts[0].sha256 == sha


@pytest.mark.parametrize("writer", ["before", "after"])
def test_sqlite_a_writer_racing_the_removal_of_the_blob_file_keeps_it(sqlite_store: Any, monkeypatch: Any,
                                                                       writer: str) -> None:
    """The blob file is moved aside, its time read again, then removed: a writer that stamped it
    before the move keeps it; one that comes after the move stores it anew."""
    store = sqlite_store
    tables = ServerTables(store)
    data = b"racing bytes"
    sha = _old_blob(store, tables, data)
    rename = os.rename

    def racing(src: Any, dst: Any) -> None:
        if writer == "before":
            store.put_blob(data)
        rename(src, dst)
        if writer == "after":
            store.put_blob(data)

    monkeypatch.setattr(os, "rename", racing)
    tables.delete_traces(["s1"])
    monkeypatch.undo()
    assert store.get_blob(sha) == data
    assert sorted(p.name for p in store.blob_path(sha).parent.iterdir()) == [sha[2:]]  # nothing left aside


def test_postgres_a_restamp_and_the_delete_of_a_blob_exclude_each_other(pg_url: str, tmp_path: Path) -> None:
    from costar.store.postgres import PostgresStore

    with PostgresStore(pg_url, local_dir=tmp_path / ".costar") as store:
        _restamp_waits(store)


def _restamp_waits(store: Any) -> None:
    tables = ServerTables(store)
    sha = _old_blob(store, tables, b"locked")
    cutoff = time.time() - DAY
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        with store._write() as c:  # a writer storing the same bytes, not committed yet
            assert store._restamp(c, sha)
            deleting = pool.submit(store.delete_blob, sha, stored_before=cutoff)
            time.sleep(0.3)
            assert not deleting.done()  # waits for the writer's row lock
        assert deleting.result(timeout=30) is False  # then sees the new time
    assert store.get_blob(sha) == b"locked"


def test_references_are_found_in_one_pass_over_the_traces(sqlite_store: Any) -> None:
    store = sqlite_store
    tables = ServerTables(store)
    shas = [_old_blob(store, tables, f"file {i}".encode(), f"s{i}") for i in range(5)]
    _run_trace(store, "r1", shas[:2])
    statements: list[str] = []
    conn: Any = store._conn()
    conn.set_trace_callback(statements.append)
    try:
        counts = tables.delete_traces([f"s{i}" for i in range(5)])
    finally:
        conn.set_trace_callback(None)
    assert counts.blobs == 3
    scans = [s for s in statements if "FROM traces" in s and "trace_id" not in s]
    assert len(scans) == 1, scans
    assert [store.get_blob(s) is not None for s in shas] == [True, True, False, False, False]


def test_a_record_whose_artifacts_are_no_list_does_not_stop_the_reference_check(store: Any) -> None:
    tables = ServerTables(store)
    a = _old_blob(store, tables, b"a", "s1")
    b = _old_blob(store, tables, b"b", "s2")
    _run_trace(store, "r1", [b])
    with store._write() as c:  # an old store's record with artifacts that are not a list
        c.execute("UPDATE traces SET data=? WHERE trace_id=?", ('{"trace_id": "s2", "artifacts": {"sha256": 1}}',
                                                                 "s2"))
    assert tables._referenced([a, b]) == {a, b}  # s1 is still there
    assert tables.delete_traces(["s1", "s2"]).blobs == 1
    assert (store.get_blob(a), store.get_blob(b)) == (None, b"b")
