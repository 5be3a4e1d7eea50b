"""What the SQL stores share: the queries, the row mapping and the schema upgrade, written once.

A backend (:class:`~costar.store.sqlite.SQLiteStore`, :class:`~costar.store.postgres.PostgresStore`)
supplies connections and transactions, its error translation, its blob storage, and the few
places where the SQL dialects differ (placeholders, ``IN`` lists, upserts, glob matching, bulk
inserts). Queries here are written with ``?`` placeholders; a backend that uses another style
converts them.
"""

from __future__ import annotations

import contextlib
import json
from abc import ABC, abstractmethod
from collections.abc import Generator, Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import orjson
from pydantic import ValidationError

from costar._util.gcpause import gc_paused
from costar._version import __version__
from costar.errors import BadReferenceError, NotInStoreError, StoreError
from costar.labels import (
    GoldenSet,
    GoldenSetError,
    GoldenSetInfo,
    LabelConflictError,
    UnknownTraceError,
    ValueType,
    same_value,
    validate_label,
)
from costar.store.base import (
    NOT_LATEST,
    DuplicateTrialError,
    Run,
    SpanQuery,
    UnknownSnapshotError,
    parse_run_selector,
    parse_snapshot_ref,
    select_run,
)
from costar.store.lease import STALE_AFTER_S, RunHolder, RunLeasedError
from costar.store.migrations import SCHEMA_VERSION, Backend, Migration, pending, verdict_digest
from costar.trace.model import Span, SpanEvent, SpanKind, StatusCode, Trace, make_span
from costar.trace.sanitize import DEFAULT_SANITIZER, Sanitizer
from costar.trace.tools import McpSnapshot
from costar.verdict import Verdict

_KINDS = {k.value: k for k in SpanKind}
_CODES = {c.value: c for c in StatusCode}
_json_dumps = json.JSONEncoder(separators=(",", ":"), default=str, ensure_ascii=False).encode
_loads = orjson.loads

SPAN_COLUMNS = ("trace_id", "seq", "span_id", "parent_id", "name", "kind", "start_ns", "end_ns", "status_code",
                "status_message", "attributes", "events")
_SPAN_READ = ("trace_id, span_id, parent_id, name, kind, start_ns, end_ns, status_code, "
              "status_message, attributes, events")


def dumps(value: Any) -> str:
    try:
        return orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:  # e.g. integers beyond 64 bits, which orjson refuses
        return _json_dumps(value)


def span_from_row(row: Sequence[Any]) -> Span:
    (trace_id, span_id, parent_id, name, kind, start_ns, end_ns, code, message, attrs, events) = row
    evs = [SpanEvent.model_construct(**e) for e in _loads(events)] if events else []
    return make_span(trace_id, span_id, parent_id, name, _KINDS[kind], start_ns, end_ns, _CODES[code],
                     message, _loads(attrs), evs)


def span_rows(t: Trace) -> list[tuple[Any, ...]]:
    """A trace's spans as rows of :data:`SPAN_COLUMNS`."""
    return [(t.trace_id, seq, s.span_id, s.parent_id, s.name, s.kind.value, s.start_ns, s.end_ns,
             s.status.code.value, s.status.message, dumps(s.attributes),
             dumps([e.model_dump() for e in s.events]) if s.events else None)
            for seq, s in enumerate(t.spans)]


def trace_row(t: Trace) -> tuple[Any, ...]:
    return (t.trace_id, t.run_id, t.scenario_id, t.trial, t.status.value, t.start_ns,
            t.model_dump_json(exclude={"spans"}, fallback=str))


class SchemaError(StoreError):
    """The store's schema is newer than this coSTAR, or older and the command may not upgrade it."""


class SQLStore(ABC):
    """The store contract over a SQL database; a subclass is one backend.

    ``root`` is always a local folder: for the embedded store it is the store itself; for a
    database it holds this machine's local state (workspaces, cached blob files, judge versions).
    ``location`` names the store for people (a folder, or a URL without its password).
    """

    backend: ClassVar[Backend]
    # The column that orders rows by insertion where the schema has no explicit one.
    _INSERT_ORDER: ClassVar[str] = "rowid"
    # Largest number of values in one IN list.
    _CHUNK: ClassVar[int] = 900
    # The database's clock in seconds since the epoch, as SQL: lease ages are measured on one clock.
    _NOW: ClassVar[str]

    root: Path
    location: str
    sanitizer: Sanitizer

    def __init__(self, root: Path, location: str, sanitizer: Sanitizer | None) -> None:
        self.root = root
        self.location = location
        self.sanitizer = sanitizer or DEFAULT_SANITIZER
        #: What migrations run by this object changed in the data (e.g. duplicates removed), for people.
        self.migration_notes: list[str] = []

    def defer_checkpoints(self) -> None:
        """For a process that writes all the time (the server) while another runs
        :meth:`checkpoint_in_background`: its commits leave the database's housekeeping to that one.
        Nothing to do here; see SQLite's."""
        return None

    def checkpoint_in_background(self) -> None:
        """For a process that writes all the time (the server): keep the database's housekeeping off
        the writers' path where the backend leaves it to them. Nothing to do here; see SQLite's."""
        return None

    # ------------------------------------------------------------------ backend hooks

    @abstractmethod
    def _read(self) -> contextlib.AbstractContextManager[Any]:
        """A connection for reading (``execute(sql, args)`` returning a cursor); errors translated."""

    @abstractmethod
    def _snapshot(self) -> contextlib.AbstractContextManager[Any]:
        """Like :meth:`_read`, but every query sees the same snapshot of the database: a trace's
        record and its spans are read as one, even while another process rewrites that trace."""

    @abstractmethod
    def _write(self) -> contextlib.AbstractContextManager[Any]:
        """A connection inside a transaction that commits on success; errors translated."""

    @abstractmethod
    def _in(self, column: str, values: Sequence[Any]) -> tuple[str, list[Any]]:
        """``column IN values`` as SQL and its arguments."""

    @abstractmethod
    def _glob(self, column: str, pattern: str) -> tuple[str, Any]:
        """A case-sensitive shell-glob match (``*``, ``?``, ``[...]``) as SQL and its argument."""

    @abstractmethod
    def _upsert(self, table: str, columns: Sequence[str], key: Sequence[str]) -> str:
        """An INSERT that replaces the row with the same ``key``."""

    @abstractmethod
    def _insert_rows(self, c: Any, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        """Insert many rows fast (executemany, COPY)."""

    @abstractmethod
    def _lock(self, c: Any, *keys: str) -> None:
        """Serialise writers on ``keys`` until the transaction ends (no-op where writes already are)."""

    @abstractmethod
    def _schema_version(self, c: Any) -> int:
        """The version recorded in the store; 0 for an empty one."""

    @abstractmethod
    def _migrating(self) -> contextlib.AbstractContextManager[Any]:
        """A transaction that holds off every other migrator; DDL inside it is atomic."""

    # ------------------------------------------------------------------ blobs (each backend keeps them its way)

    @abstractmethod
    def put_blob(self, data: bytes) -> str:
        """Store bytes content-addressed; returns their sha256 (the key). Storing them again only
        refreshes the time they were stored (see :meth:`delete_blob`)."""

    @abstractmethod
    def put_file(self, path: Path) -> tuple[str, int]:
        """Store a file's bytes content-addressed, streamed; returns (sha256, size)."""

    @abstractmethod
    def get_blob(self, sha256: str) -> bytes | None:
        """The blob's bytes; None when it is absent or ``sha256`` is not a valid key."""

    @abstractmethod
    def blob_path(self, sha256: str) -> Path:
        """A local file with the blob's bytes (a database store caches it under ``root``); for a blob
        the store does not hold, a path that does not exist. Raises StoreError for a key that is not a
        sha256 (it could name a file outside the store)."""

    @abstractmethod
    def has_blob(self, sha256: str) -> bool:
        """Whether the blob is stored (False for a key that is not a sha256)."""

    @abstractmethod
    def read_blob(self, sha256: str) -> tuple[int, Generator[bytes, None, None]] | None:
        """(size, chunks) of a stored blob, read lazily (close the chunks to stop early); None when absent."""

    @abstractmethod
    def import_blob(self, sha256: str, size: int, chunks: Iterator[bytes]) -> bool:
        """Store a blob from another store unless it is here; raises StoreError when its bytes do not
        match its key. Returns whether it was written."""

    @abstractmethod
    def blob_keys(self) -> Iterator[str]:
        """Every stored blob's key (for copying a store), in key order."""

    @abstractmethod
    def blobs_stored_before(self, keys: Sequence[str], when: float) -> list[str]:
        """Those of ``keys`` last stored (or stored again) before ``when``, on the store's clock (:attr:`_NOW`)."""

    @abstractmethod
    def delete_blob(self, sha256: str, *, stored_before: float) -> bool:
        """Remove a blob unless it was stored (again) since ``stored_before``; whether it was removed.
        Atomic with respect to writers: one that stores it from then on finds it gone and stores it
        anew. Only retention deletes blobs, once no trace refers to them (ServerTables.delete_traces)."""

    def _chunks(self, values: Sequence[Any]) -> Iterator[list[Any]]:
        values = list(values)
        for i in range(0, len(values), self._CHUNK):
            yield values[i:i + self._CHUNK]

    def _insert_id(self, c: Any, sql: str, args: Sequence[Any]) -> int:
        """Run ``sql`` (an INSERT into a table whose key is an integer ``id``); the new row's id."""
        if self.backend == "postgresql":
            return int(c.execute(sql + " RETURNING id", args).fetchone()[0])
        return int(c.execute(sql, args).lastrowid)

    # ------------------------------------------------------------------ schema

    def create_if_missing(self) -> None:
        """Create the store now if it does not exist yet, for a process about to take writes from
        others (the server): readers can open it at once. A database store exists once opened."""
        return None

    def schema_version(self) -> int:
        with self._read() as c:
            return self._schema_version(c)

    def _open_schema(self, *, upgrade: bool, migrate: bool = True) -> None:
        """Bring the schema to this coSTAR's version, or refuse (newer store, read-only command).
        ``migrate=False`` leaves an older schema for the caller to upgrade (``costar store migrate``)."""
        with self._read() as c:
            version = self._schema_version(c)
        self._check_version(version, upgrade=upgrade)
        if version < SCHEMA_VERSION and migrate:
            self.migrate()

    def _check_version(self, version: int, *, upgrade: bool) -> None:
        if version > SCHEMA_VERSION:
            raise SchemaError(f"the store {self.location} was written by a newer coSTAR (schema {version}, this "
                              f"coSTAR knows {SCHEMA_VERSION}); upgrade coSTAR to use it")
        if version < SCHEMA_VERSION and not upgrade:
            if version == 0:
                raise SchemaError(f"no coSTAR store in {self.location} yet; create it with "
                                  f"'costar store migrate {self.location}' or a command that writes (costar run)")
            raise SchemaError(f"the store {self.location} has schema {version} from an older coSTAR (this one "
                              f"needs {SCHEMA_VERSION}); upgrade it: costar store migrate {self.location}")

    def migrate(self) -> tuple[int, int]:
        """Upgrade the schema to this coSTAR's version; returns (from, to). Safe to run from several
        processes at once: one migrates, the others find it done."""
        notes: list[str] = []
        with self._migrating() as c:
            start = self._schema_version(c)
            self._check_version(start, upgrade=True)
            steps: list[Migration] = pending(start)
            for step in steps:
                if step.prepare is not None:
                    notes += step.prepare(c, self.backend) or []
                for statement in step.statements(self.backend):
                    c.execute(statement)
                if step.backfill is not None:
                    notes += step.backfill(c, self.backend) or []
            if steps:
                for key, value in (("schema_version", str(SCHEMA_VERSION)), ("costar_version", __version__)):
                    c.execute(self._upsert("meta", ("key", "value"), ("key",)), (key, value))
        self.migration_notes += notes  # only once the migration committed
        return start, SCHEMA_VERSION

    def table_counts(self) -> dict[str, int]:
        """Rows per table (and blobs), for ``costar store info`` and copy reports."""
        out: dict[str, int] = {}
        with self._read() as c:
            for table in ("runs", "scenarios", "traces", "spans", "verdicts", "labels", "golden_sets", "mcp_snapshots"):
                out[table] = int(c.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
        out["blobs"] = sum(1 for _ in self.blob_keys())
        return out

    # ------------------------------------------------------------------ runs

    def create_run(self, run: Run) -> None:
        with self._write() as c:
            c.execute("INSERT INTO runs (run_id, created_at, status, data) VALUES (?,?,?,?)",
                      (run.run_id, run.created_at, run.status, run.model_dump_json()))

    def update_run(self, run: Run) -> None:
        with self._write() as c:
            c.execute("UPDATE runs SET status=?, data=? WHERE run_id=?",
                      (run.status, run.model_dump_json(), run.run_id))

    def resolve_run_id(self, ref: str) -> str:
        if parse_run_selector(ref) is not None:
            with self._read() as c:
                rows = c.execute("SELECT data FROM runs ORDER BY created_at DESC").fetchall()
            return select_run([Run.model_validate_json(r[0]) for r in rows], ref, self.location)
        with self._read() as c:
            if ref in ("latest", "last", "@latest"):
                return self._latest_run_id(c)
            rows = c.execute(f"SELECT run_id FROM runs WHERE run_id = ? OR {_STARTS_WITH.format('run_id')} "
                             "ORDER BY run_id LIMIT 3", (ref, ref, ref)).fetchall()
        exact = [r[0] for r in rows if r[0] == ref]
        if exact:
            return str(exact[0])
        if len(rows) == 1:
            return str(rows[0][0])
        if not rows:
            raise NotInStoreError(f"no run {ref!r} in {self.location}; 'costar runs' lists the runs")
        raise BadReferenceError(f"run id {ref!r} is ambiguous ({', '.join(r[0] for r in rows)}); give more of it")

    def _latest_run_id(self, c: Any) -> str:
        """The newest run that is not one of refinement's internal runs (those say so in their
        origin; when every run is one, the newest of them)."""
        newest: str | None = None
        offset = 0
        while True:
            rows = c.execute("SELECT run_id, data FROM runs ORDER BY created_at DESC LIMIT 50 OFFSET ?",
                             (offset,)).fetchall()
            for run_id, data in rows:
                newest = newest or str(run_id)
                if Run.model_validate_json(data).origin not in NOT_LATEST:
                    return str(run_id)
            if len(rows) < 50:
                break
            offset += 50
        if newest is None:
            raise NotInStoreError(f"the store {self.location} has no runs yet; run 'costar run' first")
        return newest

    def get_run(self, run_id: str) -> Run:
        run_id = self.resolve_run_id(run_id)
        with self._read() as c:
            row = c.execute("SELECT data FROM runs WHERE run_id=?", (run_id,)).fetchone()
        return self._as_seen([Run.model_validate_json(row[0])])[0]

    def list_runs(self, limit: int = 50) -> list[Run]:
        with self._read() as c:
            rows = c.execute("SELECT data FROM runs ORDER BY created_at DESC LIMIT ?", (limit,)).fetchall()
        return self._as_seen([Run.model_validate_json(r[0]) for r in rows])

    def _as_seen(self, runs: list[Run]) -> list[Run]:
        """A run stored as "running" whose lease is stale (its process was killed outright, so it
        could not say so) is shown as "interrupted". A run written without a lease (directly through
        the store API) is shown as stored."""
        running = [r.run_id for r in runs if r.status == "running"]
        if not running:
            return runs
        holders, now = self._holders(running)
        for r in runs:
            if r.status == "running":
                holder = holders.get(r.run_id)
                if holder is not None and holder.stale_because(now) is not None:
                    r.status = "interrupted"
        return runs

    # ------------------------------------------------------------------ run leases

    _LEASE_COLUMNS: ClassVar[tuple[str, ...]] = (
        "run_id", "token", "host", "machine", "pid", "process_started", "acquired_at", "heartbeat_at")

    def _leases(self, c: Any, run_ids: Sequence[str]) -> tuple[dict[str, RunHolder], float]:
        """The stored leases of these runs, and the database's clock now."""
        out: dict[str, RunHolder] = {}
        now = float(c.execute(f"SELECT {self._NOW}").fetchone()[0])
        for chunk in self._chunks(run_ids):
            where, args = self._in("run_id", chunk)
            for row in c.execute(f"SELECT {', '.join(self._LEASE_COLUMNS)} FROM run_leases WHERE {where}", args):
                out[row[0]] = RunHolder(**dict(zip(self._LEASE_COLUMNS, row, strict=True)))
        return out, now

    def _holders(self, run_ids: Sequence[str]) -> tuple[dict[str, RunHolder], float]:
        with self._read() as c:
            return self._leases(c, run_ids)

    def run_holders(self, run_ids: Sequence[str]) -> dict[str, RunHolder]:
        """Who holds the lease of each of these runs (stale leases included; runs nobody holds absent)."""
        return self._holders(run_ids)[0]

    def acquire_run(self, holder: RunHolder, *,
                    stale_after_s: float = STALE_AFTER_S) -> tuple[RunHolder, str | None]:
        """Lease ``holder.run_id`` to ``holder``: refused with :class:`RunLeasedError` while a live
        process holds it; a stale lease is taken over. Returns the lease as stored (times from the
        database's clock) and why a stale lease was replaced (None when the run was free)."""
        with self._write() as c:
            self._lock(c, "lease:" + holder.run_id)
            leases, now = self._leases(c, [holder.run_id])
            current = leases.get(holder.run_id)
            replaced = None
            if current is not None:
                replaced = current.stale_because(now, stale_after_s)
                if replaced is None:
                    raise RunLeasedError(current, now)
            ours = holder.model_copy(update={"acquired_at": now, "heartbeat_at": now})
            c.execute(self._upsert("run_leases", self._LEASE_COLUMNS, ("run_id",)),
                      tuple(getattr(ours, k) for k in self._LEASE_COLUMNS))
        return ours, replaced

    def renew_run(self, run_id: str, token: str) -> bool:
        """Renew a held lease's heartbeat; False when it is no longer this token's (taken over)."""
        with self._write() as c:
            cur = c.execute(f"UPDATE run_leases SET heartbeat_at = {self._NOW} WHERE run_id=? AND token=?",
                            (run_id, token))
            return bool(cur.rowcount)

    def release_run(self, run_id: str, token: str) -> None:
        """Give a run up (a no-op when the lease is no longer this token's)."""
        with self._write() as c:
            c.execute("DELETE FROM run_leases WHERE run_id=? AND token=?", (run_id, token))

    def save_scenarios(self, run_id: str, scenarios: Sequence[Any]) -> None:
        rows = [(run_id, sc.id, str(sc.source) if sc.source else None, sc.model_dump_json()) for sc in scenarios]
        if not rows:
            return
        with self._write() as c:
            self._many(c, self._upsert("scenarios", ("run_id", "scenario_id", "source", "data"),
                                       ("run_id", "scenario_id")), rows)

    def load_scenarios(self, run_id: str) -> list[Any]:
        from costar.scenario import Scenario

        with self._read() as c:
            rows = c.execute(f"SELECT source, data FROM scenarios WHERE run_id=? ORDER BY {self._INSERT_ORDER}",
                             (run_id,)).fetchall()
        return [Scenario.model_validate_json(data).with_source(Path(src) if src else None) for src, data in rows]

    # ------------------------------------------------------------------ traces

    def write_trace(self, trace: Trace, *, sanitizer: Sanitizer | None = None) -> Trace:
        return self.write_traces([trace], sanitizer=sanitizer)[0]

    def write_traces(self, traces: Sequence[Trace], *, sanitizer: Sanitizer | None = None) -> list[Trace]:
        """Redact and bound (with ``sanitizer``, default the store's), then store atomically.
        Returns the traces as stored, for callers that go on working with them (e.g. judges).

        A trace written again (re-import, resume, a late amendment) replaces the stored one and
        its spans. Concurrent writers of the same trace are serialised by its row: each writer
        locks the trace rows first, in trace-id order, so two batches never deadlock."""
        clean = sanitizer or self.sanitizer
        stored = [clean.trace(t) for t in traces]
        if not stored:
            return stored
        with self._write() as c:
            self._write_traces_in(c, stored)
        return stored

    def _write_traces_in(self, c: Any, stored: Sequence[Trace]) -> dict[str, int]:
        """Replace these (already sanitised) traces and their spans inside the caller's transaction.
        Returns each trace's stored size in bytes (its record and its spans' attributes and events)."""
        latest = {t.trace_id: t for t in stored}  # the same id twice in a batch: the last one wins
        order = sorted(latest)
        rows_t = [trace_row(latest[tid]) for tid in order]
        rows_s = [row for tid in order for row in span_rows(latest[tid])]
        self._refuse_second_traces(c, [latest[tid] for tid in order])
        self._many(c, self._upsert("traces", ("trace_id", "run_id", "scenario_id", "trial", "status", "start_ns",
                                              "data"), ("trace_id",)), rows_t)
        for chunk in self._chunks(order):
            where, args = self._in("trace_id", chunk)
            c.execute(f"DELETE FROM spans WHERE {where}", args)
        self._insert_rows(c, "spans", SPAN_COLUMNS, rows_s)
        sizes = {r[0]: len(r[6]) for r in rows_t}
        for r in rows_s:
            sizes[r[0]] += 64 + len(r[4]) + len(r[10]) + (len(r[11]) if r[11] else 0)
        return sizes

    def _refuse_second_traces(self, c: Any, traces: Sequence[Trace]) -> None:
        """Each (run, scenario, trial) is stored once: a trace of a trial that already has another
        trace (in the store or earlier in the batch) is refused, and nothing of the batch is written.
        The unique key is the final word (two writers at once); this names the trial first."""
        wanted: dict[str, dict[tuple[str, int], str]] = {}
        for t in traces:
            if t.run_id is None or t.scenario_id is None:
                continue  # NULLs never collide in the key either
            first = wanted.setdefault(t.run_id, {}).setdefault((t.scenario_id, t.trial), t.trace_id)
            if first != t.trace_id:
                raise DuplicateTrialError(t.run_id, t.scenario_id, t.trial, stored=first, refused=t.trace_id)
        for run_id, keys in wanted.items():
            for chunk in self._chunks(sorted({sc for sc, _ in keys})):
                where, args = self._in("scenario_id", chunk)
                for sc, trial, tid in c.execute(
                        f"SELECT scenario_id, trial, trace_id FROM traces WHERE run_id=? AND {where}", [run_id, *args]):
                    mine = keys.get((sc, trial))
                    if mine is not None and mine != tid:
                        raise DuplicateTrialError(run_id, sc, trial, stored=tid, refused=mine)

    def _trace_from(self, data: str, spans: list[Span] | None) -> Trace:
        try:
            t = Trace.model_validate_json(data)
        except ValidationError as exc:
            # e.g. an artifact hash that is no hex digest, stored before coSTAR checked them
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"]) or "trace"
            raise StoreError(f"a stored trace in {self.location} is invalid ({where}: {err['msg']}); "
                             "delete its run or re-import it from a trusted file") from None
        if spans is not None:
            t.spans = spans
        return t

    def get_trace(self, trace_id: str, *, spans: bool = True) -> Trace:
        with self._snapshot() as c:
            row = c.execute("SELECT data FROM traces WHERE trace_id=?", (trace_id,)).fetchone()
            if row is None:
                rows = c.execute(f"SELECT data FROM traces WHERE {_STARTS_WITH.format('trace_id')} LIMIT 2",
                                 (trace_id, trace_id)).fetchall() if trace_id else []
                if not rows:
                    raise NotInStoreError(f"no trace {trace_id!r} in {self.location}; 'costar traces list RUN' "
                                          "lists a run's trace ids")
                if len(rows) > 1:
                    raise BadReferenceError(f"trace id {trace_id!r} is the start of several trace ids; "
                                            "give more of it")
                row = rows[0]
            t = self._trace_from(row[0], None)
            if spans:
                rows = c.execute(f"SELECT {_SPAN_READ} FROM spans WHERE trace_id=? ORDER BY seq",
                                 (t.trace_id,)).fetchall()
                with gc_paused():
                    t.spans = [span_from_row(r) for r in rows]
        return t

    def iter_traces(self, run_id: str | None = None, *, spans: bool = True, batch: int = 256) -> Iterator[Trace]:
        """Stream traces (ordered by scenario and trial) in batches, so memory stays bounded."""
        ids = self.trace_ids(run_id)
        for i in range(0, len(ids), batch):
            yield from self.get_traces(ids[i:i + batch], spans=spans)

    def get_traces(self, trace_ids: Sequence[str], *, spans: bool = True) -> list[Trace]:
        """Several traces in two queries per chunk (unknown ids are skipped), in the order given."""
        out: list[Trace] = []
        for chunk in self._chunks(trace_ids):
            where, args = self._in("trace_id", chunk)
            with self._snapshot() as c:
                heads = {r[0]: r[1] for r in c.execute(f"SELECT trace_id, data FROM traces WHERE {where}", args)}
                by_trace: dict[str, list[Span]] = {tid: [] for tid in chunk}
                if spans:
                    rows = c.execute(f"SELECT {_SPAN_READ} FROM spans WHERE {where} ORDER BY trace_id, seq",
                                     args).fetchall()
                    with gc_paused():
                        for r in rows:
                            by_trace[r[0]].append(span_from_row(r))
            out.extend(self._trace_from(heads[tid], by_trace[tid] if spans else None)
                       for tid in chunk if tid in heads)
        return out

    def trace_ids(self, run_id: str | None = None) -> list[str]:
        with self._read() as c:
            if run_id is None:
                return [r[0] for r in c.execute("SELECT trace_id FROM traces ORDER BY start_ns, trace_id")]
            return [r[0] for r in c.execute(
                "SELECT trace_id FROM traces WHERE run_id=? ORDER BY scenario_id, trial, trace_id", (run_id,))]

    def finished_trials(self, run_id: str) -> set[tuple[str, int]]:
        with self._read() as c:
            rows = c.execute("SELECT scenario_id, trial FROM traces WHERE run_id=?", (run_id,)).fetchall()
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
            sql, arg = self._glob("name", q.name)
            where.append(sql)
            args.append(arg)
        return " AND ".join(where), args

    def count_spans(self, trace_id: str, query: SpanQuery | None = None) -> int:
        where, args = self._span_where(trace_id, query or SpanQuery())
        with self._read() as c:
            return int(c.execute(f"SELECT count(*) FROM spans WHERE {where}", args).fetchone()[0])

    def query_spans(self, trace_id: str, query: SpanQuery) -> list[Span]:
        """One page of a trace's spans in recorded order: only that page is read from the database."""
        where, args = self._span_where(trace_id, query)
        with self._read() as c:
            rows = c.execute(f"SELECT {_SPAN_READ} FROM spans WHERE {where} ORDER BY seq LIMIT ? OFFSET ?",
                             [*args, query.limit, query.offset]).fetchall()
        return [span_from_row(r) for r in rows]

    def span_outline(self, trace_id: str) -> list[tuple[int, str, str | None, int, int | None]]:
        """Every span's (seq, span id, parent id, start, end) in recorded order: a trace's shape without
        its attributes, so a 100,000-span tree is indexed without reading its contents."""
        with self._read() as c:
            return list(c.execute("SELECT seq, span_id, parent_id, start_ns, end_ns FROM spans WHERE trace_id=? "
                                  "ORDER BY seq", (trace_id,)).fetchall())

    def spans_at(self, trace_id: str, seqs: Sequence[int]) -> dict[int, Span]:
        """The spans at these positions (``seq``, as :meth:`span_outline` gives them), read by key."""
        found: dict[int, Span] = {}
        with self._read() as c:
            for chunk in self._chunks(sorted(set(seqs))):
                sql, args = self._in("seq", chunk)
                for row in c.execute(f"SELECT seq, {_SPAN_READ} FROM spans WHERE trace_id=? AND {sql}",
                                     [trace_id, *args]).fetchall():
                    found[int(row[0])] = span_from_row(row[1:])
        return found

    def get_span(self, trace_id: str, span_id: str) -> Span | None:
        with self._read() as c:
            row = c.execute(f"SELECT {_SPAN_READ} FROM spans WHERE trace_id=? AND span_id=? ORDER BY seq LIMIT 1",
                            (trace_id, span_id)).fetchone()
        return span_from_row(row) if row else None

    # ------------------------------------------------------------------ verdicts

    def write_verdicts(self, verdicts: Sequence[Verdict], run_id: str | None = None) -> None:
        if not verdicts:
            return
        rows = []
        for v in verdicts:
            data = v.model_dump_json()
            rows.append((v.trace_id, run_id, v.name, v.fingerprint, v.outcome, data, verdict_digest(data)))
        with self._write() as c:
            self._many(c, "INSERT INTO verdicts (trace_id, run_id, name, fingerprint, outcome, data, digest) "
                          "VALUES (?,?,?,?,?,?,?)", rows)

    def verdicts(self, *, run_id: str | None = None, trace_ids: Sequence[str] | None = None,
                 latest: bool = True) -> list[Verdict]:
        """Verdicts for a run's traces (or given traces). ``latest``: the newest per (trace, name)
        among judges still configured (verdicts of removed or renamed judges are retired)."""
        rows = self._verdict_rows(run_id=run_id, trace_ids=trace_ids)
        if latest:
            newest: dict[tuple[str, str], Any] = {}
            for r in rows:
                newest[(r[1], r[2])] = r
            rows = sorted((r for r in newest.values() if not r[3]), key=lambda r: r[0])
        return [Verdict.model_validate_json(r[4]) for r in rows]

    def _verdict_rows(self, *, run_id: str | None = None, trace_ids: Sequence[str] | None = None,
                      extra: str = "") -> list[Any]:
        """(id, trace_id, name, retired, data[, extra columns]) ordered by id."""
        cols = "v.id, v.trace_id, v.name, v.retired, v.data" + extra
        with self._read() as c:
            if trace_ids is not None:
                rows: list[Any] = []
                for chunk in self._chunks(trace_ids):
                    where, args = self._in("v.trace_id", chunk)
                    rows += c.execute(f"SELECT {cols} FROM verdicts v WHERE {where} ORDER BY v.id", args).fetchall()
                rows.sort(key=lambda r: r[0])
                return rows
            if run_id is not None:
                rows = c.execute(f"SELECT {cols} FROM verdicts v JOIN traces t ON v.trace_id = t.trace_id "
                                 "WHERE t.run_id=? ORDER BY v.id", (run_id,)).fetchall()
            else:
                rows = c.execute(f"SELECT {cols} FROM verdicts v ORDER BY v.id").fetchall()
            return rows

    def activate_verdicts(self, trace_ids: Sequence[str], names: Sequence[str]) -> None:
        """Mark the verdicts named ``names`` current on these traces, and retire every other one."""
        names = list(names)
        with self._write() as c:
            for chunk in self._chunks(trace_ids):
                where, args = self._in("trace_id", chunk)
                if names:
                    named, name_args = self._in("name", names)
                    c.execute(f"UPDATE verdicts SET retired = CASE WHEN {named} THEN 0 ELSE 1 END WHERE {where}",
                              [*name_args, *args])
                else:
                    c.execute(f"UPDATE verdicts SET retired = 1 WHERE {where}", args)

    def trace_keys(self, run_id: str | None = None) -> list[tuple[str, str | None, int]]:
        """(trace_id, scenario_id, trial) for a run's traces, without loading them."""
        with self._read() as c:
            if run_id is None:
                rows = c.execute("SELECT trace_id, scenario_id, trial FROM traces ORDER BY start_ns, trace_id")
            else:
                rows = c.execute("SELECT trace_id, scenario_id, trial FROM traces WHERE run_id=? "
                                 "ORDER BY scenario_id, trial, trace_id", (run_id,))
            return [(r[0], r[1], r[2]) for r in rows]

    def latest_fingerprints(self, trace_ids: Sequence[str]) -> dict[tuple[str, str], str | None]:
        """The fingerprint of the newest verdict per (trace, verdict name); pairs whose newest
        verdict is a judge error are left out (an error is never a cached result)."""
        out: dict[tuple[str, str], tuple[str | None, str]] = {}
        with self._read() as c:
            for chunk in self._chunks(trace_ids):
                where, args = self._in("trace_id", chunk)
                for tid, name, fp, outcome in c.execute(
                        f"SELECT trace_id, name, fingerprint, outcome FROM verdicts WHERE {where} ORDER BY id", args):
                    out[(tid, name)] = (fp, outcome)
        return {k: fp for k, (fp, outcome) in out.items() if outcome != "error"}

    def find_verdict(self, trace_id: str, fingerprint: str, name: str) -> Verdict | None:
        """The newest verdict of this fingerprint that is not a judge error (errors are retried)."""
        with self._read() as c:
            row = c.execute(
                "SELECT data FROM verdicts WHERE trace_id=? AND fingerprint=? AND name=? AND outcome <> 'error' "
                "ORDER BY id DESC LIMIT 1", (trace_id, fingerprint, name)).fetchone()
        return Verdict.model_validate_json(row[0]) if row else None

    # ------------------------------------------------------------------ human labels

    def _known_trace_ids(self, c: Any, ids: Sequence[str]) -> set[str]:
        known: set[str] = set()
        for chunk in self._chunks(ids):
            where, args = self._in("trace_id", chunk)
            known.update(r[0] for r in c.execute(f"SELECT trace_id FROM traces WHERE {where}", args))
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
            # Check-then-write must not interleave with another labeler's batch for the same judge.
            self._lock(c, *sorted({"labels:" + k[0] for k in batch}))
            ids = sorted({k[1] for k in batch})
            known = self._known_trace_ids(c, ids)
            missing = [t for t in ids if t not in known]
            if missing:
                more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
                raise UnknownTraceError(f"no trace {missing[0]!r}{more} in {self.location}; label only stored "
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
            if rows:
                self._many(c, self._upsert("labels", ("name", "trace_id", "labeler", "created_at", "data"),
                                           ("name", "trace_id", "labeler")), rows)
        return len(rows)

    def _stored_labels(self, c: Any,
                       keys: dict[tuple[str, str, str], Verdict]) -> dict[tuple[str, str, str], Verdict]:
        by_name: dict[str, set[str]] = {}
        for name, tid, _ in keys:
            by_name.setdefault(name, set()).add(tid)
        out: dict[tuple[str, str, str], Verdict] = {}
        for name, tids in by_name.items():
            for chunk in self._chunks(sorted(tids)):
                where, args = self._in("trace_id", chunk)
                for row in c.execute(f"SELECT name, trace_id, labeler, data FROM labels WHERE name=? AND {where}",
                                     [name, *args]):
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
        cols = f"created_at, {self._INSERT_ORDER}, data"
        rows: list[Any] = []
        with self._read() as c:
            if trace_ids is None:
                sql = f"SELECT {cols} FROM labels" + (f" WHERE {' AND '.join(where)}" if where else "")
                rows = c.execute(sql, args).fetchall()
            else:
                for chunk in self._chunks(sorted(set(trace_ids))):
                    clause, in_args = self._in("trace_id", chunk)
                    rows += c.execute(f"SELECT {cols} FROM labels WHERE {' AND '.join([*where, clause])}",
                                      [*args, *in_args]).fetchall()
        rows.sort(key=lambda r: (r[0], r[1]))
        return [Verdict.model_validate_json(r[2]) for r in rows]

    def delete_labels(self, *, name: str, trace_ids: Sequence[str] | None = None,
                      labeler: str | None = None) -> int:
        """Delete a judge's labels (optionally only on some traces or by one labeler), atomically."""
        where, args = self._label_where(name, labeler)
        deleted = 0
        with self._write() as c:
            self._lock(c, "labels:" + name)
            if trace_ids is None:
                return int(c.execute(f"DELETE FROM labels WHERE {' AND '.join(where)}", args).rowcount)
            for chunk in self._chunks(sorted(set(trace_ids))):
                clause, in_args = self._in("trace_id", chunk)
                deleted += c.execute(f"DELETE FROM labels WHERE {' AND '.join([*where, clause])}",
                                     [*args, *in_args]).rowcount
        return deleted

    # ------------------------------------------------------------------ golden sets

    def write_golden_set(self, golden: GoldenSet) -> None:
        """Save a new version; it must be the next one, so two concurrent edits cannot both win."""
        with self._write() as c:
            self._lock(c, "golden:" + golden.name)
            latest = c.execute("SELECT max(version) FROM golden_sets WHERE name=?", (golden.name,)).fetchone()[0] or 0
            if golden.version != latest + 1:
                raise GoldenSetError(
                    f"golden set {golden.name!r} is at version {latest}, so the next version is {latest + 1}, "
                    f"not {golden.version}; reload the set and apply the change again")
            c.execute("INSERT INTO golden_sets (name, version, judge_name, created_at, size, note, data) "
                      "VALUES (?,?,?,?,?,?,?)",
                      (golden.name, golden.version, golden.judge_name, golden.created_at, len(golden.examples),
                       golden.note, golden.model_dump_json()))

    def golden_set(self, name: str, version: int | None = None) -> GoldenSet:
        """A version of a golden set (the latest when ``version`` is None)."""
        with self._read() as c:
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
        raise GoldenSetError(f"no golden set {name!r} in {self.location}; {known}")

    def golden_sets(self, name: str | None = None) -> list[GoldenSetInfo]:
        """Every version (of one set, or of all), by name then version, without their examples."""
        sql = "SELECT name, version, judge_name, created_at, size, note FROM golden_sets"
        with self._read() as c:
            rows = c.execute(sql + (" WHERE name=?" if name is not None else "") + " ORDER BY name, version",
                             (name,) if name is not None else ()).fetchall()
        return [GoldenSetInfo(name=r[0], version=r[1], judge_name=r[2], created_at=r[3], size=r[4], note=r[5])
                for r in rows]

    # ------------------------------------------------------------------ MCP server snapshots

    def write_mcp_snapshot(self, snapshot: McpSnapshot) -> None:
        with self._write() as c:
            c.execute("INSERT INTO mcp_snapshots (snapshot_id, name, created_at, data) VALUES (?,?,?,?)",
                      (snapshot.snapshot_id, snapshot.name, snapshot.created_at, snapshot.model_dump_json()))

    def mcp_snapshot(self, ref: str) -> McpSnapshot:
        """A snapshot by id (or a unique prefix of one), ``NAME`` (the newest of that name), ``latest``
        (the newest of any name), each optionally with ``~N`` (N older)."""
        base, back = parse_snapshot_ref(ref)
        with self._read() as c:
            if base == "latest":
                rows = c.execute("SELECT data FROM mcp_snapshots ORDER BY created_at DESC LIMIT 1 OFFSET ?",
                                 (back,)).fetchall()
                count = None if rows else c.execute("SELECT count(*) FROM mcp_snapshots").fetchone()[0]
            else:
                rows = c.execute("SELECT data FROM mcp_snapshots WHERE name=? ORDER BY created_at DESC "
                                 "LIMIT 1 OFFSET ?", (base, back)).fetchall()
                count = None if rows else c.execute("SELECT count(*) FROM mcp_snapshots WHERE name=?",
                                                    (base,)).fetchone()[0]
                if not rows and back == 0:
                    rows = c.execute("SELECT data FROM mcp_snapshots WHERE snapshot_id=? "
                                     f"OR {_STARTS_WITH.format('snapshot_id')} ORDER BY snapshot_id LIMIT 2",
                                     (base, base, base)).fetchall()
                    if len(rows) > 1:
                        raise UnknownSnapshotError(f"snapshot id {ref!r} is ambiguous; give more of it")
        if rows:
            return McpSnapshot.model_validate_json(rows[0][0])
        if back and count:
            raise UnknownSnapshotError(f"{ref!r}: only {count} snapshot(s) of {base!r} are stored; "
                                       "'costar mcp snapshots' lists them")
        raise UnknownSnapshotError(f"no MCP snapshot {ref!r} in {self.location}; 'costar mcp snapshots' lists them, "
                                   "'costar mcp snapshot' takes one")

    def mcp_snapshots(self, name: str | None = None, limit: int = 50) -> list[McpSnapshot]:
        """Snapshots newest first (of one name, or of all)."""
        sql = "SELECT data FROM mcp_snapshots" + (" WHERE name=?" if name is not None else "")
        with self._read() as c:
            rows = c.execute(sql + " ORDER BY created_at DESC LIMIT ?",
                             (*((name,) if name is not None else ()), limit)).fetchall()
        return [McpSnapshot.model_validate_json(r[0]) for r in rows]

    # ------------------------------------------------------------------ plumbing

    def _many(self, c: Any, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            c.executemany(sql, rows)

    def __enter__(self) -> SQLStore:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @abstractmethod
    def close(self) -> None: ...

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.location!r})"


_STARTS_WITH = "substr({}, 1, length(CAST(? AS TEXT))) = ?"
"""SQL true when the column starts with the text given twice as parameters: literally (``%`` and
``_`` are no wildcards: ``2026120_`` must not name run ``20261202-…``) and with the same case on
both backends (SQLite's ``LIKE`` ignores ASCII case, PostgreSQL's does not)."""


def _same_label(a: Verdict, b: Verdict) -> bool:
    return same_value(a.value, b.value) and a.rationale == b.rationale


