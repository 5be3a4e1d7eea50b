"""The embedded store: SQLite (WAL) for records, a content-addressed folder for artifact bytes."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import sqlite3
import tempfile
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import orjson
from pydantic import ValidationError

from costar._gc import gc_paused
from costar.errors import StoreError
from costar.store.base import (
    GoldenSet,
    GoldenSetError,
    GoldenSetInfo,
    LabelConflictError,
    Run,
    SpanQuery,
    UnknownTraceError,
    ValueType,
    same_value,
    validate_label,
)
from costar.trace.model import Span, SpanEvent, SpanKind, StatusCode, Trace, make_span
from costar.trace.sanitize import DEFAULT_SANITIZER, Sanitizer
from costar.verdict import Verdict

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
  run_id TEXT PRIMARY KEY, created_at REAL NOT NULL, status TEXT NOT NULL, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS scenarios (
  run_id TEXT NOT NULL, scenario_id TEXT NOT NULL, source TEXT, data TEXT NOT NULL,
  PRIMARY KEY (run_id, scenario_id));
CREATE TABLE IF NOT EXISTS traces (
  trace_id TEXT PRIMARY KEY, run_id TEXT, scenario_id TEXT, trial INTEGER NOT NULL,
  status TEXT NOT NULL, start_ns INTEGER NOT NULL, data TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS traces_run ON traces (run_id, scenario_id, trial);
CREATE TABLE IF NOT EXISTS spans (
  trace_id TEXT NOT NULL, seq INTEGER NOT NULL, span_id TEXT NOT NULL, parent_id TEXT,
  name TEXT NOT NULL, kind TEXT NOT NULL, start_ns INTEGER NOT NULL, end_ns INTEGER,
  status_code TEXT NOT NULL, status_message TEXT, attributes TEXT NOT NULL, events TEXT,
  PRIMARY KEY (trace_id, seq)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS spans_id ON spans (trace_id, span_id);
CREATE TABLE IF NOT EXISTS verdicts (
  id INTEGER PRIMARY KEY AUTOINCREMENT, trace_id TEXT NOT NULL, run_id TEXT, name TEXT NOT NULL,
  fingerprint TEXT, outcome TEXT NOT NULL, data TEXT NOT NULL, retired INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS verdicts_trace ON verdicts (trace_id, name, id);
CREATE INDEX IF NOT EXISTS verdicts_run ON verdicts (run_id);
CREATE INDEX IF NOT EXISTS verdicts_fp ON verdicts (trace_id, fingerprint);
CREATE TABLE IF NOT EXISTS labels (
  name TEXT NOT NULL, trace_id TEXT NOT NULL, labeler TEXT NOT NULL, created_at REAL NOT NULL,
  data TEXT NOT NULL, PRIMARY KEY (name, trace_id, labeler));
CREATE INDEX IF NOT EXISTS labels_trace ON labels (trace_id);
CREATE TABLE IF NOT EXISTS golden_sets (
  name TEXT NOT NULL, version INTEGER NOT NULL, judge_name TEXT NOT NULL, created_at REAL NOT NULL,
  size INTEGER NOT NULL, note TEXT NOT NULL, data TEXT NOT NULL, PRIMARY KEY (name, version));
"""

_KINDS = {k.value: k for k in SpanKind}
_SHA256 = re.compile(r"[0-9a-f]{64}")
_CODES = {c.value: c for c in StatusCode}
_json_dumps = json.JSONEncoder(separators=(",", ":"), default=str, ensure_ascii=False).encode
_loads = orjson.loads


def _dumps(value: Any) -> str:
    try:
        return orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:  # e.g. integers beyond 64 bits, which orjson refuses
        return _json_dumps(value)


def _translate(exc: sqlite3.Error, path: Path) -> StoreError:
    msg = str(exc).lower()
    if "locked" in msg or "busy" in msg:
        return StoreError(f"the store {path} is locked by another process; wait for it to finish "
                          "or point --store at another folder")
    if "full" in msg:
        return StoreError(f"the disk holding {path} is full; free some space, then re-run with "
                          "--resume to finish the run (nothing already stored is lost)")
    if "readonly" in msg or "read-only" in msg:
        return StoreError(f"the store {path} is read-only; fix its permissions or use --store")
    if "not a database" in msg or "malformed" in msg:
        return StoreError(f"{path} is not a coSTAR store (or is damaged); move it aside and re-run")
    return StoreError(f"store error at {path}: {exc}")


class SQLiteStore:
    """Thread-safe: one connection per thread, writes serialised by a lock (SQLite has one writer)."""

    def __init__(self, root: str | Path = ".costar", *, sanitizer: Sanitizer | None = None,
                 busy_timeout_s: float = 10.0, create: bool = True) -> None:
        """Open the store at ``root``. With ``create=False`` (read-only commands) a missing store is
        an error instead of a new empty one, so looking never leaves a ``.costar`` folder behind."""
        self.root = Path(root)
        self.db_path = self.root / "costar.db"
        self.blob_dir = self.root / "blobs"
        self.sanitizer = sanitizer or DEFAULT_SANITIZER
        self._busy_ms = int(busy_timeout_s * 1000)
        self._local = threading.local()
        self._write_lock = threading.RLock()
        self._connections: list[sqlite3.Connection] = []
        if not create:
            if not self.db_path.is_file():
                raise StoreError(f"no coSTAR store at {self.root}; run 'costar run' first or pass --store")
        else:
            try:
                self.root.mkdir(parents=True, exist_ok=True)
                self.blob_dir.mkdir(exist_ok=True)
            except OSError as exc:
                raise StoreError(f"cannot create the store folder {self.root}: {exc.strerror}") from None
        with self._guard():
            conn = self._conn()
            conn.executescript(_SCHEMA)
            row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            if row is None:
                conn.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            elif int(row[0]) > SCHEMA_VERSION:
                raise StoreError(f"the store {self.root} was written by a newer coSTAR "
                                 f"(schema {row[0]}); upgrade coSTAR")

    # ------------------------------------------------------------------ plumbing

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.db_path, timeout=self._busy_ms / 1000, isolation_level=None,
                                   check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(f"PRAGMA busy_timeout={self._busy_ms}")
            self._local.conn = conn
            self._connections.append(conn)
        return conn

    @contextlib.contextmanager
    def _guard(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            raise _translate(exc, self.root) from None

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._write_lock, self._guard():
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

    def close(self) -> None:
        for conn in self._connections:
            with contextlib.suppress(sqlite3.Error):
                conn.close()
        self._connections.clear()
        self._local = threading.local()

    def __enter__(self) -> SQLiteStore:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ------------------------------------------------------------------ runs

    def create_run(self, run: Run) -> None:
        with self._write() as c:
            c.execute("INSERT INTO runs VALUES (?,?,?,?)",
                      (run.run_id, run.created_at, run.status, run.model_dump_json()))

    def update_run(self, run: Run) -> None:
        with self._write() as c:
            c.execute("UPDATE runs SET status=?, data=? WHERE run_id=?",
                      (run.status, run.model_dump_json(), run.run_id))

    def resolve_run_id(self, ref: str) -> str:
        with self._guard():
            c = self._conn()
            if ref in ("latest", "last", "@latest"):
                row = c.execute("SELECT run_id FROM runs ORDER BY created_at DESC LIMIT 1").fetchone()
                if row is None:
                    raise StoreError(f"the store {self.root} has no runs yet; run 'costar run' first")
                return str(row[0])
            rows = c.execute("SELECT run_id FROM runs WHERE run_id = ? OR run_id LIKE ? LIMIT 3",
                             (ref, ref.replace("%", "") + "%")).fetchall()
        exact = [r[0] for r in rows if r[0] == ref]
        if exact:
            return exact[0]
        if len(rows) == 1:
            return str(rows[0][0])
        if not rows:
            raise StoreError(f"no run {ref!r} in {self.root}; 'costar runs' lists the runs")
        raise StoreError(f"run id {ref!r} is ambiguous ({', '.join(r[0] for r in rows)}); give more of it")

    def get_run(self, run_id: str) -> Run:
        run_id = self.resolve_run_id(run_id)
        with self._guard():
            row = self._conn().execute("SELECT data FROM runs WHERE run_id=?", (run_id,)).fetchone()
        return Run.model_validate_json(row[0])

    def list_runs(self, limit: int = 50) -> list[Run]:
        with self._guard():
            rows = self._conn().execute("SELECT data FROM runs ORDER BY created_at DESC LIMIT ?",
                                        (limit,)).fetchall()
        return [Run.model_validate_json(r[0]) for r in rows]

    def save_scenarios(self, run_id: str, scenarios: Sequence[Any]) -> None:
        with self._write() as c:
            c.executemany("INSERT OR REPLACE INTO scenarios VALUES (?,?,?,?)", [
                (run_id, sc.id, str(sc.source) if sc.source else None, sc.model_dump_json())
                for sc in scenarios])

    def load_scenarios(self, run_id: str) -> list[Any]:
        from costar.scenario import Scenario

        with self._guard():
            rows = self._conn().execute("SELECT source, data FROM scenarios WHERE run_id=? ORDER BY rowid",
                                        (run_id,)).fetchall()
        return [Scenario.model_validate_json(data).with_source(Path(src) if src else None)
                for src, data in rows]

    # ------------------------------------------------------------------ traces

    def write_trace(self, trace: Trace, *, sanitizer: Sanitizer | None = None) -> Trace:
        return self.write_traces([trace], sanitizer=sanitizer)[0]

    def write_traces(self, traces: Sequence[Trace], *, sanitizer: Sanitizer | None = None) -> list[Trace]:
        """Redact and bound (with ``sanitizer``, default the store's), then store atomically.
        Returns the traces as stored, for callers that go on working with them (e.g. judges)."""
        clean = sanitizer or self.sanitizer
        stored = [clean.trace(t) for t in traces]
        rows_t = []
        rows_s = []
        for t in stored:
            rows_t.append((t.trace_id, t.run_id, t.scenario_id, t.trial, t.status.value, t.start_ns,
                           t.model_dump_json(exclude={"spans"}, fallback=str)))
            for seq, s in enumerate(t.spans):
                rows_s.append((t.trace_id, seq, s.span_id, s.parent_id, s.name, s.kind.value, s.start_ns,
                               s.end_ns, s.status.code.value, s.status.message, _dumps(s.attributes),
                               _dumps([e.model_dump() for e in s.events]) if s.events else None))
        with self._write() as c:
            ids = [(t.trace_id,) for t in traces]
            # A re-written trace (re-import, resume) replaces its spans rather than duplicating them.
            c.executemany("DELETE FROM spans WHERE trace_id=?", ids)
            c.executemany("INSERT OR REPLACE INTO traces VALUES (?,?,?,?,?,?,?)", rows_t)
            c.executemany("INSERT INTO spans VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", rows_s)
        return stored

    @staticmethod
    def _span(row: Sequence[Any]) -> Span:
        (trace_id, span_id, parent_id, name, kind, start_ns, end_ns, code, message, attrs, events) = row
        evs = [SpanEvent.model_construct(**e) for e in _loads(events)] if events else []
        return make_span(trace_id, span_id, parent_id, name, _KINDS[kind], start_ns, end_ns, _CODES[code],
                         message, _loads(attrs), evs)

    _SPAN_COLS = ("trace_id, span_id, parent_id, name, kind, start_ns, end_ns, status_code, "
                  "status_message, attributes, events")

    def _trace_from(self, data: str, spans: list[Span] | None) -> Trace:
        try:
            t = Trace.model_validate_json(data)
        except ValidationError as exc:
            # e.g. an artifact hash that is no hex digest, stored before coSTAR checked them
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"]) or "trace"
            raise StoreError(f"a stored trace in {self.root} is invalid ({where}: {err['msg']}); "
                             "delete its run or re-import it from a trusted file") from None
        if spans is not None:
            t.spans = spans
        return t

    def get_trace(self, trace_id: str, *, spans: bool = True) -> Trace:
        with self._guard():
            c = self._conn()
            row = c.execute("SELECT data FROM traces WHERE trace_id=?", (trace_id,)).fetchone()
            if row is None:
                row = c.execute("SELECT data FROM traces WHERE trace_id LIKE ? LIMIT 2",
                                (trace_id + "%",)).fetchall()
                if len(row) != 1:
                    raise StoreError(f"no trace {trace_id!r} in {self.root}")
                row = row[0]
            t = self._trace_from(row[0], None)
            if spans:
                rows = c.execute(f"SELECT {self._SPAN_COLS} FROM spans WHERE trace_id=? ORDER BY seq",
                                 (t.trace_id,)).fetchall()
                with gc_paused():
                    t.spans = [self._span(r) for r in rows]
        return t

    def iter_traces(self, run_id: str | None = None, *, spans: bool = True,
                    batch: int = 256) -> Iterator[Trace]:
        """Stream traces (ordered by scenario and trial) in batches, so memory stays bounded."""
        ids = self.trace_ids(run_id)
        for i in range(0, len(ids), batch):
            yield from self.get_traces(ids[i:i + batch], spans=spans)

    def get_traces(self, trace_ids: Sequence[str], *, spans: bool = True) -> list[Trace]:
        """Several traces in two queries (unknown ids are skipped), in the order given."""
        out: list[Trace] = []
        ids = list(trace_ids)
        for i in range(0, len(ids), 900):
            chunk = ids[i:i + 900]
            marks = ",".join("?" * len(chunk))
            with self._guard():
                c = self._conn()
                heads = dict(c.execute(f"SELECT trace_id, data FROM traces WHERE trace_id IN ({marks})", chunk))
                by_trace: dict[str, list[Span]] = {tid: [] for tid in chunk}
                if spans:
                    rows = c.execute(f"SELECT {self._SPAN_COLS} FROM spans WHERE trace_id IN ({marks}) "
                                     "ORDER BY trace_id, seq", chunk).fetchall()
                    with gc_paused():
                        for r in rows:
                            by_trace[r[0]].append(self._span(r))
            out.extend(self._trace_from(heads[tid], by_trace[tid] if spans else None)
                       for tid in chunk if tid in heads)
        return out

    def trace_ids(self, run_id: str | None = None) -> list[str]:
        with self._guard():
            c = self._conn()
            if run_id is None:
                return [r[0] for r in c.execute("SELECT trace_id FROM traces ORDER BY start_ns")]
            return [r[0] for r in c.execute(
                "SELECT trace_id FROM traces WHERE run_id=? ORDER BY scenario_id, trial", (run_id,))]

    def finished_trials(self, run_id: str) -> set[tuple[str, int]]:
        with self._guard():
            rows = self._conn().execute("SELECT scenario_id, trial FROM traces WHERE run_id=?",
                                        (run_id,)).fetchall()
        return {(r[0], r[1]) for r in rows}

    def _span_where(self, trace_id: str, q: SpanQuery) -> tuple[str, list[Any]]:
        where, args = ["trace_id=?"], [trace_id]
        if q.kind is not None:
            where.append("kind=?")
            args.append(SpanKind(q.kind).value)
        if q.status is not None:
            where.append("status_code=?")
            args.append(StatusCode(q.status).value)
        if q.parent_id is not None:
            where.append("parent_id=?")
            args.append(q.parent_id)
        if q.name:
            where.append("name GLOB ?")
            args.append(q.name)
        return " AND ".join(where), args

    def count_spans(self, trace_id: str, query: SpanQuery | None = None) -> int:
        where, args = self._span_where(trace_id, query or SpanQuery())
        with self._guard():
            return int(self._conn().execute(f"SELECT count(*) FROM spans WHERE {where}", args).fetchone()[0])

    def query_spans(self, trace_id: str, query: SpanQuery) -> list[Span]:
        where, args = self._span_where(trace_id, query)
        with self._guard():
            rows = self._conn().execute(
                f"SELECT {self._SPAN_COLS} FROM spans WHERE {where} ORDER BY seq LIMIT ? OFFSET ?",
                [*args, query.limit, query.offset]).fetchall()
        return [self._span(r) for r in rows]

    def get_span(self, trace_id: str, span_id: str) -> Span | None:
        with self._guard():
            row = self._conn().execute(f"SELECT {self._SPAN_COLS} FROM spans WHERE trace_id=? AND span_id=?",
                                       (trace_id, span_id)).fetchone()
        return self._span(row) if row else None

    # ------------------------------------------------------------------ blobs

    def blob_path(self, sha256: str) -> Path:
        """Where a blob's bytes live. ``sha256`` must be a lowercase hex digest: any other key
        (``..``, ``/``) could name a file outside the blob folder, so it is refused."""
        if not isinstance(sha256, str) or not _SHA256.fullmatch(sha256):
            shown = repr(sha256)[:80]
            raise StoreError(f"{shown} is not a blob key (a sha256 of 64 lowercase hex digits); "
                             "the trace holding it is damaged or crafted")
        return self.blob_dir / sha256[:2] / sha256[2:]

    def _store_blob(self, sha: str, write: Any) -> None:
        dest = self.blob_path(sha)
        if dest.exists():
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
        if not isinstance(sha256, str) or not _SHA256.fullmatch(sha256):
            return None
        try:
            return self.blob_path(sha256).read_bytes()
        except FileNotFoundError:
            return None

    # ------------------------------------------------------------------ verdicts

    def write_verdicts(self, verdicts: Sequence[Verdict], run_id: str | None = None) -> None:
        if not verdicts:
            return
        rows = [(v.trace_id, run_id, v.name, v.fingerprint, v.outcome, v.model_dump_json()) for v in verdicts]
        with self._write() as c:
            c.executemany("INSERT INTO verdicts (trace_id, run_id, name, fingerprint, outcome, data) "
                          "VALUES (?,?,?,?,?,?)", rows)

    def verdicts(self, *, run_id: str | None = None, trace_ids: Sequence[str] | None = None,
                 latest: bool = True) -> list[Verdict]:
        """Verdicts for a run's traces (or given traces). ``latest``: the newest per (trace, name)
        among judges still configured (verdicts of removed or renamed judges are retired)."""
        with self._guard():
            c = self._conn()
            if trace_ids is not None:
                rows: list[Any] = []
                ids = list(trace_ids)
                for i in range(0, len(ids), 900):
                    chunk = ids[i:i + 900]
                    rows += c.execute(f"SELECT id, trace_id, name, retired, data FROM verdicts WHERE trace_id IN "
                                      f"({','.join('?' * len(chunk))}) ORDER BY id", chunk).fetchall()
            elif run_id is not None:
                rows = c.execute("SELECT v.id, v.trace_id, v.name, v.retired, v.data FROM verdicts v JOIN traces t "
                                 "ON v.trace_id = t.trace_id WHERE t.run_id=? ORDER BY v.id",
                                 (run_id,)).fetchall()
            else:
                rows = c.execute("SELECT id, trace_id, name, retired, data FROM verdicts ORDER BY id").fetchall()
        if latest:
            newest: dict[tuple[str, str], Any] = {}
            for r in rows:
                newest[(r[1], r[2])] = r
            rows = sorted((r for r in newest.values() if not r[3]), key=lambda r: r[0])
        return [Verdict.model_validate_json(r[4]) for r in rows]

    def activate_verdicts(self, trace_ids: Sequence[str], names: Sequence[str]) -> None:
        """Mark the verdicts named ``names`` current on these traces, and retire every other one."""
        ids = list(trace_ids)
        names = list(names)
        with self._write() as c:
            for i in range(0, len(ids), 500):
                chunk = ids[i:i + 500]
                c.execute(f"UPDATE verdicts SET retired = CASE WHEN name IN ({','.join('?' * len(names))}) "
                          f"THEN 0 ELSE 1 END WHERE trace_id IN ({','.join('?' * len(chunk))})",
                          [*names, *chunk])

    def trace_keys(self, run_id: str | None = None) -> list[tuple[str, str | None, int]]:
        """(trace_id, scenario_id, trial) for a run's traces, without loading them."""
        with self._guard():
            c = self._conn()
            if run_id is None:
                rows = c.execute("SELECT trace_id, scenario_id, trial FROM traces ORDER BY start_ns")
            else:
                rows = c.execute("SELECT trace_id, scenario_id, trial FROM traces WHERE run_id=? "
                                 "ORDER BY scenario_id, trial", (run_id,))
            return [(r[0], r[1], r[2]) for r in rows]

    def latest_fingerprints(self, trace_ids: Sequence[str]) -> dict[tuple[str, str], str | None]:
        """The fingerprint of the newest verdict per (trace, verdict name)."""
        out: dict[tuple[str, str], str | None] = {}
        ids = list(trace_ids)
        with self._guard():
            c = self._conn()
            for i in range(0, len(ids), 900):
                chunk = ids[i:i + 900]
                for tid, name, fp in c.execute(
                        f"SELECT trace_id, name, fingerprint FROM verdicts WHERE trace_id IN "
                        f"({','.join('?' * len(chunk))}) ORDER BY id", chunk):
                    out[(tid, name)] = fp
        return out

    def find_verdict(self, trace_id: str, fingerprint: str, name: str) -> Verdict | None:
        with self._guard():
            row = self._conn().execute(
                "SELECT data FROM verdicts WHERE trace_id=? AND fingerprint=? AND name=? ORDER BY id DESC LIMIT 1",
                (trace_id, fingerprint, name)).fetchone()
        return Verdict.model_validate_json(row[0]) if row else None

    def _known_trace_ids(self, c: sqlite3.Connection, ids: Sequence[str]) -> set[str]:
        known: set[str] = set()
        for i in range(0, len(ids), 900):
            chunk = list(ids[i:i + 900])
            known.update(r[0] for r in c.execute(
                f"SELECT trace_id FROM traces WHERE trace_id IN ({','.join('?' * len(chunk))})", chunk))
        return known

    def write_labels(self, labels: Sequence[Verdict], *, replace: bool = False,
                     value_type: ValueType | None = None) -> int:
        """Store human labels atomically: on any error (see ``validate_label``, unknown traces,
        conflicts) nothing is written. A label identical to the stored one (value and rationale) is
        left as it is; a different one needs ``replace``. Returns how many labels were written."""
        batch: dict[tuple[str, str, str], Verdict] = {}
        for label in labels:
            v = validate_label(label, value_type)
            key = (v.name, str(v.trace_id), str(v.source_id))
            first = batch.setdefault(key, v)
            if first is not v and not _same_label(first, v):
                raise LabelConflictError(
                    f"two different labels from {key[2]!r} for trace {key[1]!r} ({key[0]!r}) in one batch "
                    f"({first.value!r} and {v.value!r}); keep one of them")
        if not batch:
            return 0
        with self._write() as c:
            ids = sorted({k[1] for k in batch})
            known = self._known_trace_ids(c, ids)
            missing = [t for t in ids if t not in known]
            if missing:
                more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
                raise UnknownTraceError(f"no trace {missing[0]!r}{more} in {self.root}; label only stored "
                                        "traces: check the id, or import the trace first")
            existing = self._stored_labels(c, batch)
            rows = []
            for key, v in batch.items():
                old = existing.get(key)
                if old is not None and _same_label(old, v):
                    continue
                if old is not None and not replace:
                    raise LabelConflictError(
                        f"{key[2]!r} already labeled trace {key[1]!r} for {key[0]!r} as {old.value!r}; "
                        f"pass replace=True (--replace) to change it to {v.value!r}, or delete that label first")
                rows.append((v.name, v.trace_id, v.source_id, v.created_at, v.model_dump_json()))
            c.executemany("INSERT OR REPLACE INTO labels VALUES (?,?,?,?,?)", rows)
        return len(rows)

    def _stored_labels(self, c: sqlite3.Connection,
                       keys: dict[tuple[str, str, str], Verdict]) -> dict[tuple[str, str, str], Verdict]:
        by_name: dict[str, list[str]] = {}
        for name, tid, _ in keys:
            by_name.setdefault(name, []).append(tid)
        out: dict[tuple[str, str, str], Verdict] = {}
        for name, tids in by_name.items():
            ids = sorted(set(tids))
            for i in range(0, len(ids), 900):
                chunk = ids[i:i + 900]
                for row in c.execute(f"SELECT name, trace_id, labeler, data FROM labels WHERE name=? AND trace_id "
                                     f"IN ({','.join('?' * len(chunk))})", [name, *chunk]):
                    if (row[0], row[1], row[2]) in keys:
                        out[(row[0], row[1], row[2])] = Verdict.model_validate_json(row[3])
        return out

    @staticmethod
    def _label_where(name: str | None, labeler: str | None) -> tuple[list[str], list[Any]]:
        where: list[str] = []
        args: list[Any] = []
        if name is not None:
            where.append("name=?")
            args.append(name)
        if labeler is not None:
            where.append("labeler=?")
            args.append(labeler.strip())
        return where, args

    def labels(self, *, name: str | None = None, trace_ids: Sequence[str] | None = None,
               labeler: str | None = None) -> list[Verdict]:
        """Human labels (Verdicts with source human), oldest first, filtered by judge name,
        traces and labeler."""
        where, args = self._label_where(name, labeler)
        rows: list[Any] = []
        with self._guard():
            c = self._conn()
            if trace_ids is None:
                sql = "SELECT created_at, rowid, data FROM labels" + (f" WHERE {' AND '.join(where)}" if where else "")
                rows = c.execute(sql, args).fetchall()
            else:
                ids = sorted(set(trace_ids))
                for i in range(0, len(ids), 900):
                    chunk = ids[i:i + 900]
                    clause = " AND ".join([*where, f"trace_id IN ({','.join('?' * len(chunk))})"])
                    rows += c.execute(f"SELECT created_at, rowid, data FROM labels WHERE {clause}",
                                      [*args, *chunk]).fetchall()
        rows.sort(key=lambda r: (r[0], r[1]))
        return [Verdict.model_validate_json(r[2]) for r in rows]

    def delete_labels(self, *, name: str, trace_ids: Sequence[str] | None = None,
                      labeler: str | None = None) -> int:
        """Delete a judge's labels (optionally only on some traces or by one labeler), atomically."""
        where, args = self._label_where(name, labeler)
        deleted = 0
        with self._write() as c:
            if trace_ids is None:
                return c.execute(f"DELETE FROM labels WHERE {' AND '.join(where)}", args).rowcount
            ids = sorted(set(trace_ids))
            for i in range(0, len(ids), 900):
                chunk = ids[i:i + 900]
                clause = " AND ".join([*where, f"trace_id IN ({','.join('?' * len(chunk))})"])
                deleted += c.execute(f"DELETE FROM labels WHERE {clause}", [*args, *chunk]).rowcount
        return deleted

    # ------------------------------------------------------------------ golden sets

    def write_golden_set(self, golden: GoldenSet) -> None:
        """Save a new version; it must be the next one, so two concurrent edits cannot both win."""
        with self._write() as c:
            latest = c.execute("SELECT max(version) FROM golden_sets WHERE name=?", (golden.name,)).fetchone()[0] or 0
            if golden.version != latest + 1:
                raise GoldenSetError(
                    f"golden set {golden.name!r} is at version {latest}, so the next version is {latest + 1}, "
                    f"not {golden.version}; reload the set and apply the change again")
            c.execute("INSERT INTO golden_sets VALUES (?,?,?,?,?,?,?)",
                      (golden.name, golden.version, golden.judge_name, golden.created_at, len(golden.examples),
                       golden.note, golden.model_dump_json()))

    def golden_set(self, name: str, version: int | None = None) -> GoldenSet:
        """A version of a golden set (the latest when ``version`` is None)."""
        with self._guard():
            c = self._conn()
            if version is None:
                row = c.execute("SELECT data FROM golden_sets WHERE name=? ORDER BY version DESC LIMIT 1",
                                (name,)).fetchone()
            else:
                row = c.execute("SELECT data FROM golden_sets WHERE name=? AND version=?", (name, version)).fetchone()
            if row is None:
                versions = [r[0] for r in c.execute("SELECT version FROM golden_sets WHERE name=? ORDER BY version",
                                                    (name,))]
                names = [r[0] for r in c.execute("SELECT DISTINCT name FROM golden_sets ORDER BY name LIMIT 20")]
        if row is not None:
            return GoldenSet.model_validate_json(row[0])
        if versions:
            raise GoldenSetError(f"golden set {name!r} has no version {version}; it has versions "
                                 f"{versions[0]} to {versions[-1]}")
        known = f"the sets are: {', '.join(names)}" if names else "create one first"
        raise GoldenSetError(f"no golden set {name!r} in {self.root}; {known}")

    def golden_sets(self, name: str | None = None) -> list[GoldenSetInfo]:
        """Every version (of one set, or of all), by name then version, without their examples."""
        sql = "SELECT name, version, judge_name, created_at, size, note FROM golden_sets"
        with self._guard():
            rows = self._conn().execute(sql + (" WHERE name=?" if name is not None else "") + " ORDER BY name, version",
                                        (name,) if name is not None else ()).fetchall()
        return [GoldenSetInfo(name=r[0], version=r[1], judge_name=r[2], created_at=r[3], size=r[4], note=r[5])
                for r in rows]


def _same_label(a: Verdict, b: Verdict) -> bool:
    return same_value(a.value, b.value) and a.rationale == b.rationale
