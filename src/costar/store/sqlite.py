"""The embedded store: SQLite (WAL) for records, a content-addressed folder for artifact bytes."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import sqlite3
import tempfile
import threading
import time
from collections.abc import Generator, Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

from costar.errors import StoreError
from costar.store.base import DuplicateTrialError
from costar.store.blobs import check_blob_key, valid_blob_key
from costar.store.migrations import MIGRATIONS, SCHEMA_VERSION, Backend
from costar.store.sql import SQLStore
from costar.trace.sanitize import Sanitizer


def _translate(exc: sqlite3.Error, path: Path) -> StoreError:
    msg = str(exc).lower()
    if "unique constraint failed: traces.run_id" in msg:
        return DuplicateTrialError()
    if "locked" in msg or "busy" in msg:
        return StoreError(f"the store {path} is locked by another process; wait for it to finish "
                          "or point --store at another folder")
    if "full" in msg:
        return StoreError(f"the disk holding {path} is full; free some space, then re-run with "
                          "--resume to finish the run (nothing already stored is lost)")
    if "disk i/o error" in msg:
        return StoreError(f"cannot write the store {path} (disk I/O error: the disk may be full, failing or "
                          "gone); free some space or check the disk, then re-run with --resume")
    if "readonly" in msg or "read-only" in msg:
        return StoreError(f"the store {path} is read-only; fix its permissions or use --store")
    if "not a database" in msg or "malformed" in msg:
        return StoreError(f"{path} is not a coSTAR store (or is damaged); move it aside and re-run")
    return StoreError(f"store error at {path}: {exc}")


log = logging.getLogger(__name__)

CHECKPOINT_INTERVAL_S = 0.2
"""How often the background checkpointer copies the write-ahead log into the database."""
CHECKPOINT_BACKSTOP_PAGES = 16_384
"""With background checkpoints, a commit still checkpoints itself past this many log pages (64 MiB
of 4 KiB pages): the log stays bounded when the checkpointer falls behind or is gone."""


class _DamagedBlob(Exception):
    pass


def _restamp(path: Path) -> bool:
    """Whether the blob is there, its time set to now: its writer may be about to store a trace that
    refers to it, and retention spares recently stored blobs (:meth:`SQLiteStore.delete_blob`)."""
    try:
        os.utime(path)
    except OSError:  # absent, or not ours to stamp: storing it anew stamps it
        return False
    return True


def _empty_database() -> sqlite3.Connection:
    """An in-memory database with the current schema: what a store that does not exist yet reads as."""
    conn = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
    for step in MIGRATIONS:
        for statement in step.sqlite:
            conn.execute(statement)
    conn.execute("INSERT INTO meta (key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
    return conn


class SQLiteStore(SQLStore):
    """Thread-safe: one connection per thread, writes serialised by a lock (SQLite has one writer).

    Records live in ``root/costar.db``, artifact bytes in ``root/blobs`` (content-addressed files),
    and the folder doubles as the project's local state (workspaces, judge versions, caches).
    """

    backend: ClassVar[Backend] = "sqlite"
    _NOW: ClassVar[str] = "(julianday('now') - 2440587.5) * 86400.0"

    def __init__(self, root: str | Path = ".costar", *, sanitizer: Sanitizer | None = None,
                 busy_timeout_s: float = 10.0, create: bool = True, migrate: bool = True) -> None:
        """Open the store at ``root``. With ``create=False`` (read-only commands) a missing store is
        an error instead of a new empty one, so looking never leaves a ``.costar`` folder behind,
        and a store from an older coSTAR is not upgraded (the error says how)."""
        root = Path(root)
        super().__init__(root, str(root), sanitizer)
        self.db_path = self.root / "costar.db"
        self.blob_dir = self.root / "blobs"
        self._busy_ms = int(busy_timeout_s * 1000)
        self._local = threading.local()
        self._write_lock = threading.RLock()
        self._connections: list[sqlite3.Connection] = []
        self._autocheckpoint: int | None = None  # SQLite's default (1,000 pages) unless set
        self._checkpointer: threading.Thread | None = None
        self._checkpointer_stop = threading.Event()
        # A store that does not exist yet is created by its first write, not by opening it: until
        # then it reads as empty. A command that only reads, or fails before it writes anything
        # (no suite, a typo in a file name), leaves no empty .costar folder behind.
        self._virtual = False
        if not self.db_path.is_file():
            if not create:
                raise StoreError(f"no coSTAR store at {self.root}; run 'costar run' first or pass --store")
            if self.root.exists() and not self.root.is_dir():
                raise StoreError(f"cannot create the store folder {self.root}: it is a file; pass --store "
                                 "with a folder")
            self._virtual = True
        try:
            self._open_schema(upgrade=create, migrate=migrate)
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------ plumbing

    def _conn(self) -> sqlite3.Connection:
        if self._virtual and self.db_path.is_file():
            self._adopt()
        conn = getattr(self._local, "conn", None)
        if conn is not None and self._local.virtual and not self._virtual:
            conn = None  # the store was created since this thread last read: read the real one
        if conn is None:
            if self._virtual:
                conn = _empty_database()
            else:
                conn = sqlite3.connect(self.db_path, timeout=self._busy_ms / 1000, isolation_level=None,
                                       check_same_thread=False)
                self._use_wal(conn)
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.execute(f"PRAGMA busy_timeout={self._busy_ms}")
                conn.execute("PRAGMA cache_size=-32768")
            self._local.conn = conn
            self._local.virtual = self._virtual
            self._local.autocheckpoint = None
            self._connections.append(conn)
        if self._local.autocheckpoint != self._autocheckpoint and not self._local.virtual:
            conn.execute(f"PRAGMA wal_autocheckpoint={int(self._autocheckpoint or 1000)}")
            self._local.autocheckpoint = self._autocheckpoint
        return conn

    def defer_checkpoints(self) -> None:
        """This store's commits stop copying the write-ahead log into the database at 1,000 pages;
        another thread or process does it (:meth:`checkpoint_in_background`). By default the commit
        that fills the log does it, and waits for its two fsyncs: on a server that commits all the
        time, that wait was a fifth of the assembler's time per span. Commits keep a backstop
        (:data:`CHECKPOINT_BACKSTOP_PAGES`). Only where checkpoints happen changes, not what is
        durable: a commit is in the log either way."""
        self._autocheckpoint = CHECKPOINT_BACKSTOP_PAGES

    def checkpoint_in_background(self) -> None:
        """:meth:`defer_checkpoints`, and copy the log into the database from a thread of its own every
        :data:`CHECKPOINT_INTERVAL_S`, off the writers' path."""
        with self._write_lock:
            if self._checkpointer is not None:
                return
            self.defer_checkpoints()
            self._checkpointer_stop.clear()
            self._checkpointer = threading.Thread(target=self._checkpoint_loop, name="costar-sqlite-checkpoint",
                                                  daemon=True)
            self._checkpointer.start()

    def _checkpoint_loop(self) -> None:
        while not self._checkpointer_stop.wait(CHECKPOINT_INTERVAL_S):
            if self._virtual:
                continue
            try:
                # PASSIVE: copies what no reader still needs and never waits for a lock.
                self._conn().execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            except sqlite3.Error as exc:  # the next round tries again; a commit's backstop bounds the log
                log.debug("background checkpoint of %s failed: %s", self.db_path, exc)

    def _use_wal(self, conn: sqlite3.Connection) -> None:
        """Put the database in WAL mode (recorded in the file, so usually it is already). Setting it
        takes a lock that SQLite refuses at once, without the busy wait, while another process
        writes (two processes creating one store): that is retried for the busy timeout."""
        deadline = time.monotonic() + self._busy_ms / 1000
        while True:
            try:
                if str(conn.execute("PRAGMA journal_mode").fetchone()[0]).lower() != "wal":
                    conn.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc).lower() or time.monotonic() >= deadline:
                    raise
                time.sleep(0.02)

    def _adopt(self) -> None:
        """Another process (or another store object) created the store since this one was opened:
        read and write the real one from now on."""
        with self._write_lock:
            if self._virtual and self.db_path.is_file():
                self._virtual = False
                self._open_schema(upgrade=True)

    def create_if_missing(self) -> None:
        with self._guard():
            self._materialize()

    def _materialize(self) -> None:
        """Create the store on disk (its first write is about to happen). Holds the write lock."""
        with self._write_lock:
            if not self._virtual:
                return
            try:
                self.root.mkdir(parents=True, exist_ok=True)
                self.blob_dir.mkdir(exist_ok=True)
            except OSError as exc:
                raise StoreError(f"cannot create the store folder {self.root}: {exc.strerror}") from None
            self._virtual = False
            self._open_schema(upgrade=True)

    @contextlib.contextmanager
    def _guard(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            raise _translate(exc, self.root) from None

    @contextlib.contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with self._guard():
            yield self._conn()

    @contextlib.contextmanager
    def _snapshot(self) -> Iterator[sqlite3.Connection]:
        with self._guard():
            conn = self._conn()
            inside_write = conn.in_transaction
            if inside_write:  # already inside this thread's write: it is the snapshot
                yield conn
                return
            conn.execute("BEGIN")  # deferred: a WAL read snapshot from the first SELECT, no lock
            try:
                yield conn
            finally:
                if conn.in_transaction:
                    conn.execute("COMMIT")

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._write_lock, self._guard():
            if self._virtual:
                self._materialize()
            conn = self._conn()
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                # SQLite already rolled back on some errors (e.g. SQLITE_FULL); keep the original error.
                if conn.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def delete_labels(self, *, name: str, trace_ids: Sequence[str] | None = None,
                      labeler: str | None = None) -> int:
        if self._virtual:  # nothing is stored yet, so nothing to delete (and no store to create)
            return 0
        return super().delete_labels(name=name, trace_ids=trace_ids, labeler=labeler)

    # BEGIN IMMEDIATE takes the database's one write lock: a migration excludes every writer.
    _migrating = _write

    def _schema_version(self, c: sqlite3.Connection) -> int:
        if c.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'").fetchone() is None:
            return 0
        row = c.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        return int(row[0]) if row else 0

    def _in(self, column: str, values: Sequence[Any]) -> tuple[str, list[Any]]:
        return f"{column} IN ({','.join('?' * len(values))})", list(values)

    def _glob(self, column: str, pattern: str) -> tuple[str, Any]:
        return f"{column} GLOB ?", pattern

    def _upsert(self, table: str, columns: Sequence[str], key: Sequence[str]) -> str:
        # Not INSERT OR REPLACE: that also deletes a row conflicting on any *other* unique key (a
        # second trace of the same trial would silently replace the first) and renumbers the rowid.
        rest = [c for c in columns if c not in key]
        action = f"UPDATE SET {', '.join(f'{c}=excluded.{c}' for c in rest)}" if rest else "NOTHING"
        return (f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({','.join('?' * len(columns))}) "
                f"ON CONFLICT ({', '.join(key)}) DO {action}")

    def _insert_rows(self, c: Any, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            c.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({','.join('?' * len(columns))})",
                          rows)

    def _lock(self, c: Any, *keys: str) -> None:
        """Nothing to do: BEGIN IMMEDIATE already made this the only writer."""

    def close(self) -> None:
        checkpointer, self._checkpointer = self._checkpointer, None
        if checkpointer is not None:
            self._checkpointer_stop.set()
            checkpointer.join()
            self._autocheckpoint = None
        for conn in self._connections:
            with contextlib.suppress(sqlite3.Error):
                conn.close()
        self._connections.clear()
        self._local = threading.local()

    def __enter__(self) -> SQLiteStore:
        return self

    # ------------------------------------------------------------------ blobs

    def blob_path(self, sha256: str) -> Path:
        """Where a blob's bytes live. ``sha256`` must be a lowercase hex digest: any other key
        (``..``, ``/``) could name a file outside the blob folder, so it is refused."""
        check_blob_key(sha256)
        return self.blob_dir / sha256[:2] / sha256[2:]

    def has_blob(self, sha256: str) -> bool:
        return valid_blob_key(sha256) and self.blob_path(sha256).is_file()

    def _store_blob(self, sha: str, write: Any) -> None:
        if self._virtual:
            with self._guard():
                self._materialize()
        dest = self.blob_path(sha)
        if _restamp(dest):
            return
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".tmp-")
            try:
                with os.fdopen(fd, "wb") as f:
                    write(f)
                os.replace(tmp, dest)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
                raise StoreError(f"the disk holding {self.root} is full; free some space, then re-run "
                                 "with --resume to finish the run (nothing already stored is lost)") from None
            raise StoreError(f"cannot write to the store {self.root}: {exc.strerror}") from None

    def put_blob(self, data: bytes) -> str:
        sha = hashlib.sha256(data).hexdigest()
        self._store_blob(sha, lambda f: f.write(data))
        return sha

    def put_file(self, path: Path) -> tuple[str, int]:
        h = hashlib.sha256()
        size = 0
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
                size += len(chunk)
        sha = h.hexdigest()

        def copy(out: Any) -> None:
            with open(path, "rb") as src:
                for chunk in iter(lambda: src.read(1 << 20), b""):
                    out.write(chunk)

        self._store_blob(sha, copy)
        return sha, size

    def get_blob(self, sha256: str) -> bytes | None:
        """The blob's bytes; None when it is absent or ``sha256`` is not a valid key."""
        if not valid_blob_key(sha256):
            return None
        try:
            return self.blob_path(sha256).read_bytes()
        except FileNotFoundError:
            return None

    def read_blob(self, sha256: str) -> tuple[int, Generator[bytes, None, None]] | None:
        """(size, chunks) of a stored blob, read lazily; None when absent."""
        if not self.has_blob(sha256):
            return None
        path = self.blob_path(sha256)

        def chunks() -> Generator[bytes, None, None]:
            with open(path, "rb") as f:
                yield from iter(lambda: f.read(1 << 20), b"")

        return path.stat().st_size, chunks()

    def import_blob(self, sha256: str, size: int, chunks: Iterator[bytes]) -> bool:
        """Store a blob from another store unless it is here; its bytes must match its key.
        Returns whether it was written."""
        if _restamp(self.blob_path(sha256)):
            return False
        h = hashlib.sha256()

        def write(out: Any) -> None:
            for chunk in chunks:
                h.update(chunk)
                out.write(chunk)
            if h.hexdigest() != sha256:
                raise _DamagedBlob(sha256)

        try:
            self._store_blob(sha256, write)
        except _DamagedBlob:
            raise StoreError(f"the blob {sha256[:12]} being copied is damaged (its bytes do not match its "
                             "digest); repair or remove it in the source store") from None
        return True

    def blobs_stored_before(self, keys: Sequence[str], when: float) -> list[str]:
        out = []
        for sha in keys:
            if valid_blob_key(sha):
                with contextlib.suppress(OSError):  # absent, or unreadable: not deleted
                    if self.blob_path(sha).stat().st_mtime < when:
                        out.append(sha)
        return out

    def delete_blob(self, sha256: str, *, stored_before: float) -> bool:
        if sha256 not in self.blobs_stored_before([sha256], stored_before):
            return False
        path = self.blob_path(sha256)
        # Moved aside before its time is read again: a writer that stamps it from now on finds it gone
        # and stores it anew; one that stamped it before the move shows in the moved file's time.
        aside = path.with_name(f".del-{os.getpid()}-{threading.get_ident()}-{path.name}")
        try:
            try:
                os.rename(path, aside)
            except FileNotFoundError:
                return False
            if aside.stat().st_mtime >= stored_before:
                os.replace(aside, path)  # the same bytes as any copy a writer stored meanwhile
                return False
            aside.unlink()
        except OSError as exc:
            raise StoreError(f"cannot delete a blob in {self.root}: {exc.strerror}; fix its permissions") from None
        return True

    def blob_keys(self) -> Iterator[str]:
        """Every stored blob's key (for copying a store), in key order."""
        if not self.blob_dir.is_dir():
            return
        for sub in sorted(self.blob_dir.iterdir()):
            if sub.is_dir() and len(sub.name) == 2:
                for f in sorted(sub.iterdir()):
                    if valid_blob_key(sub.name + f.name) and f.is_file():
                        yield sub.name + f.name
