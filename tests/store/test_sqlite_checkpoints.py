"""Background checkpoints (what ``costar server`` uses on SQLite): commits stop copying the write-ahead
log into the database themselves, a thread of the store does it, and nothing written is lost."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from costar.store.sqlite import CHECKPOINT_BACKSTOP_PAGES, SQLiteStore
from tests.support.waiting import wait_for

MB = 1024 * 1024


def _fill(st: SQLiteStore, megabytes: int) -> None:
    with st._write() as c:
        c.execute("CREATE TABLE IF NOT EXISTS scratch (x BLOB)")
    for _ in range(megabytes):  # one commit per MB, as a busy writer commits
        with st._write() as c:
            c.executemany("INSERT INTO scratch VALUES (randomblob(4096))", [()] * 256)


def _autocheckpoint(st: SQLiteStore) -> int:
    with st._read() as c:
        return int(c.execute("PRAGMA wal_autocheckpoint").fetchone()[0])


def test_a_store_checkpoints_on_commit_by_default(tmp_path: Path) -> None:
    st = SQLiteStore(tmp_path / "s")
    st.create_if_missing()
    try:
        assert _autocheckpoint(st) == 1000
        _fill(st, 12)
        assert (tmp_path / "s" / "costar.db").stat().st_size > 8 * MB  # the commits copied the log
    finally:
        st.close()


def test_background_checkpoints_copy_the_log_off_the_writers_path(tmp_path: Path) -> None:
    st = SQLiteStore(tmp_path / "s")
    st.create_if_missing()
    st.checkpoint_in_background()
    st.checkpoint_in_background()  # once is enough; a second call starts nothing
    try:
        assert [t.name for t in threading.enumerate()].count("costar-sqlite-checkpoint") == 1
        assert _autocheckpoint(st) == CHECKPOINT_BACKSTOP_PAGES  # 12 MB stays under it: no commit copies
        _fill(st, 12)
        # The thread copies the log into the database file (a commit alone would not, under the backstop).
        wait_for(lambda: (tmp_path / "s" / "costar.db").stat().st_size > 8 * MB, what="a background checkpoint")
    finally:
        st.close()
    assert "costar-sqlite-checkpoint" not in [t.name for t in threading.enumerate()]
    with sqlite3.connect(tmp_path / "s" / "costar.db") as c:
        assert c.execute("SELECT count(*) FROM scratch").fetchone()[0] == 12 * 256


def test_deferred_checkpoints_leave_the_copying_to_another_process(tmp_path: Path) -> None:
    ingest = SQLiteStore(tmp_path / "s")
    ingest.create_if_missing()
    ingest.defer_checkpoints()
    assembler = SQLiteStore(tmp_path / "s")
    try:
        _fill(ingest, 12)
        assert (tmp_path / "s" / "costar.db").stat().st_size < 4 * MB  # nobody checkpointed yet
        assembler.checkpoint_in_background()
        wait_for(lambda: (tmp_path / "s" / "costar.db").stat().st_size > 8 * MB, what="the other store's checkpoint")
    finally:
        ingest.close()
        assembler.close()
