"""The tables ``costar server`` keeps beside the traces, on either backend (schema version 4).

* ``ingest_batches``: the ingest write-ahead log. Each acknowledged OTLP request's spans, already
  redacted, are one row, committed before the server answers 200; a row is deleted in the same
  transaction that stores the last trace it holds spans of, so a kill -9 at any moment loses no
  acknowledged span and stores none twice.
* ``server_traces``: every trace the server assembled, by project (for listings, retention and the
  API): when it completed, whether late spans amended it, its size.
* ``server_tokens``: ingest tokens (one project each) and API tokens, stored as SHA-256 digests.

The SQL lives here, in the store layer, and runs on a :class:`~costar.store.sql.SQLStore`'s
connections and transactions, so the server never writes SQL of its own.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields
from typing import Any

from pydantic import BaseModel, ConfigDict

from costar.store.sql import SQLStore
from costar.trace.model import Trace
from costar.trace.sanitize import Sanitizer

BLOB_GRACE_S = 86400.0
"""Retention deletes a blob only if nobody stored it (or stored the same bytes again) for this long.
A writer stores a trial's files before the trace that refers to them, and identical bytes share one
blob, so a blob no trace refers to may be one a trace is about to; this must exceed the longest time
any writer takes from storing its files to storing their trace."""


class ServerTrace(BaseModel):
    """What the server records about a trace it assembled (one row of ``server_traces``)."""

    model_config = ConfigDict(extra="forbid")

    trace_id: str
    """The trace's id, as its spans carried it."""
    project: str
    """The project its spans were routed to."""
    service: str | None = None
    """The ``service.name`` resource attribute of its spans, when they had one."""
    start_ns: int = 0
    """When its first span started (Unix nanoseconds)."""
    completed_at: float = 0.0
    """When the server stored it (Unix seconds); an amendment moves it."""
    amended: int = 0
    """How many times late spans changed it after it was first stored."""
    incomplete: bool = False
    """True when it was stored before its root span ended (it stayed open too long, or memory ran short)."""
    spans: int = 0
    """Spans stored."""
    bytes: int = 0
    """Approximate stored size: the JSON of its spans' attributes and events (retention counts this)."""


_TRACE_COLUMNS = ("trace_id", "project", "service", "start_ns", "completed_at", "amended", "incomplete", "spans",
                  "bytes")


def _trace_from_row(r: Sequence[Any]) -> ServerTrace:
    return ServerTrace(trace_id=r[0], project=r[1], service=r[2], start_ns=int(r[3]), completed_at=float(r[4]),
                       amended=int(r[5]), incomplete=bool(r[6]), spans=int(r[7]), bytes=int(r[8]))


class TokenRecord(BaseModel):
    """An access token as stored: never the token itself, only its digest."""

    model_config = ConfigDict(extra="forbid")

    token_id: str
    """A short public id (shown by ``costar server token list``, used to revoke it)."""
    kind: str
    """``ingest`` (may send spans to one project) or ``api`` (may read the JSON API)."""
    project: str | None
    """The project an ingest token sends to; None for API tokens."""
    name: str
    """What the token is for, as its creator described it."""
    digest: str
    """SHA-256 of the whole token (hex)."""
    created_at: float
    revoked_at: float | None = None
    """When it was revoked; a revoked token is refused."""
    last_used_at: float | None = None
    """When a request last used it (updated at most once a minute)."""


@dataclass
class PruneCounts:
    """What one retention pass deleted."""

    traces: int = 0
    spans: int = 0
    verdicts: int = 0
    blobs: int = 0
    bytes: int = 0

    def add(self, other: PruneCounts) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))


class ServerTables:
    """The server's tables on one store. Every method is one transaction (or one read)."""

    def __init__(self, store: SQLStore) -> None:
        if not isinstance(store, SQLStore):
            raise TypeError(f"costar server needs a SQL store (SQLite or PostgreSQL), not {type(store).__name__}")
        self.store = store

    # ------------------------------------------------------------------ the write-ahead log

    def append_batches(self, batches: Sequence[tuple[int, bytes]]) -> list[int]:
        """Commit ``(span count, payload)`` rows in one transaction; returns their ids in order.
        When this returns, the rows are durable (the caller may acknowledge them)."""
        now = time.time()
        ids: list[int] = []
        st = self.store
        with st._write() as c:
            for n, data in batches:
                ids.append(st._insert_id(c, "INSERT INTO ingest_batches (received_at, spans, data) VALUES (?,?,?)",
                                         (now, n, data)))
        return ids

    def pending_batches(self, after_id: int = 0, limit: int = 64) -> list[tuple[int, bytes]]:
        """Write-ahead rows after ``after_id``, oldest first (recovery after a restart)."""
        with self.store._read() as c:
            rows = c.execute("SELECT id, data FROM ingest_batches WHERE id > ? ORDER BY id LIMIT ?",
                             (after_id, limit)).fetchall()
        return [(int(r[0]), bytes(r[1])) for r in rows]

    def pending_counts(self) -> tuple[int, int]:
        """(rows, spans) in the write-ahead log."""
        with self.store._read() as c:
            rows, spans = c.execute("SELECT count(*), coalesce(sum(spans), 0) FROM ingest_batches").fetchone()
        return int(rows), int(spans)

    def commit_traces(self, traces: Sequence[Trace], records: Sequence[ServerTrace], done_batches: Sequence[int],
                      *, sanitizer: Sanitizer | None = None) -> list[Trace]:
        """Store assembled traces and their records (whose ``bytes`` this fills in), and delete the
        write-ahead rows they used up, in one transaction. Returns the traces as stored."""
        st = self.store
        clean = sanitizer or st.sanitizer
        stored = [clean.trace(t) for t in traces]
        with st._write() as c:
            sizes = st._write_traces_in(c, stored) if stored else {}
            for r in records:
                r.bytes = sizes.get(r.trace_id, r.bytes)
            if records:
                st._many(c, st._upsert("server_traces", _TRACE_COLUMNS, ("trace_id",)),
                         [(r.trace_id, r.project, r.service, r.start_ns, r.completed_at, r.amended, int(r.incomplete),
                           r.spans, r.bytes) for r in records])
            for chunk in st._chunks(sorted(set(done_batches))):
                where, args = st._in("id", chunk)
                c.execute(f"DELETE FROM ingest_batches WHERE {where}", args)
        return stored

    # ------------------------------------------------------------------ production traces

    def server_traces(self, trace_ids: Sequence[str]) -> dict[str, ServerTrace]:
        st = self.store
        out: dict[str, ServerTrace] = {}
        with st._read() as c:
            for chunk in st._chunks(sorted(set(trace_ids))):
                where, args = st._in("trace_id", chunk)
                for r in c.execute(f"SELECT {', '.join(_TRACE_COLUMNS)} FROM server_traces WHERE {where}", args):
                    out[r[0]] = _trace_from_row(r)
        return out

    def run_trace_ids(self, trace_ids: Sequence[str]) -> set[str]:
        """Those of ``trace_ids`` that are traces of runs (recorded by the harness or imported), which
        the server must never overwrite."""
        st = self.store
        out: set[str] = set()
        with st._read() as c:
            for chunk in st._chunks(sorted(set(trace_ids))):
                where, args = st._in("t.trace_id", chunk)
                out.update(r[0] for r in c.execute(
                    f"SELECT t.trace_id FROM traces t WHERE {where} AND NOT EXISTS "
                    "(SELECT 1 FROM server_traces s WHERE s.trace_id = t.trace_id)", args))
        return out

    def list_traces(self, *, project: str | None = None, limit: int = 50, before: tuple[float, str] | None = None,
                    since: float | None = None, service: str | None = None) -> list[ServerTrace]:
        """Traces newest first (by completion), ``limit`` of them, after the cursor ``before``
        (the last row's ``(completed_at, trace_id)``)."""
        where: list[str] = []
        args: list[str | float] = []
        if project is not None:
            where.append("project=?")
            args.append(project)
        if service is not None:
            where.append("service=?")
            args.append(service)
        if since is not None:
            where.append("completed_at >= ?")
            args.append(since)
        if before is not None:
            where.append("(completed_at < ? OR (completed_at = ? AND trace_id < ?))")
            args += [before[0], before[0], before[1]]
        sql = (f"SELECT {', '.join(_TRACE_COLUMNS)} FROM server_traces"
               + (f" WHERE {' AND '.join(where)}" if where else "")
               + " ORDER BY completed_at DESC, trace_id DESC LIMIT ?")
        with self.store._read() as c:
            rows = c.execute(sql, [*args, limit]).fetchall()
        return [_trace_from_row(r) for r in rows]

    def projects(self) -> list[dict[str, Any]]:
        """Each project with its trace count, stored size and newest completion."""
        with self.store._read() as c:
            rows = c.execute("SELECT project, count(*), coalesce(sum(bytes), 0), coalesce(sum(spans), 0), "
                             "max(completed_at) FROM server_traces GROUP BY project ORDER BY project").fetchall()
        return [{"project": r[0], "traces": int(r[1]), "bytes": int(r[2]), "spans": int(r[3]),
                 "last_completed_at": float(r[4]) if r[4] is not None else None} for r in rows]

    # ------------------------------------------------------------------ tokens

    def add_token(self, token: TokenRecord) -> None:
        with self.store._write() as c:
            c.execute("INSERT INTO server_tokens (token_id, kind, project, name, digest, created_at, revoked_at, "
                      "last_used_at) VALUES (?,?,?,?,?,?,?,?)",
                      (token.token_id, token.kind, token.project, token.name, token.digest, token.created_at,
                       token.revoked_at, token.last_used_at))

    def tokens(self) -> list[TokenRecord]:
        with self.store._read() as c:
            rows = c.execute("SELECT token_id, kind, project, name, digest, created_at, revoked_at, last_used_at "
                             "FROM server_tokens ORDER BY created_at, token_id").fetchall()
        return [_token(r) for r in rows]

    def token_by_digest(self, digest: str) -> TokenRecord | None:
        with self.store._read() as c:
            row = c.execute("SELECT token_id, kind, project, name, digest, created_at, revoked_at, last_used_at "
                            "FROM server_tokens WHERE digest=?", (digest,)).fetchone()
        return _token(row) if row else None

    def revoke_token(self, token_id: str, when: float | None = None) -> bool:
        """Revoke a token by id; False when no unrevoked token has that id."""
        with self.store._write() as c:
            cur = c.execute("UPDATE server_tokens SET revoked_at=? WHERE token_id=? AND revoked_at IS NULL",
                            (when or time.time(), token_id))
            return bool(cur.rowcount)

    def touch_token(self, token_id: str, when: float) -> None:
        with self.store._write() as c:
            c.execute("UPDATE server_tokens SET last_used_at=? WHERE token_id=?", (when, token_id))

    # ------------------------------------------------------------------ retention

    def expired(self, project: str, *, older_than: float | None, max_bytes: int | None,
                chunk: int = 500) -> Iterator[list[tuple[str, int]]]:
        """Chunks of ``(trace_id, bytes)`` that retention deletes in ``project``: every trace that
        completed before ``older_than`` (Unix seconds), then the oldest others until the project's
        size is at most ``max_bytes``. Traces with human labels are never listed. Paged by cursor,
        so the caller may delete each chunk before asking for the next (or delete nothing)."""
        st = self.store
        unlabeled = "NOT EXISTS (SELECT 1 FROM labels l WHERE l.trace_id = s.trace_id)"
        listed: set[str] = set()
        freed = 0
        if older_than is not None:
            after: tuple[float, str] = (float("-inf"), "")
            while True:
                with st._read() as c:
                    rows = c.execute(f"SELECT s.trace_id, s.bytes, s.completed_at FROM server_traces s WHERE "
                                     f"s.project=? AND s.completed_at < ? AND {unlabeled} AND (s.completed_at > ? OR "
                                     f"(s.completed_at = ? AND s.trace_id > ?)) ORDER BY s.completed_at, s.trace_id "
                                     f"LIMIT ?", (project, older_than, after[0], after[0], after[1], chunk)).fetchall()
                if not rows:
                    break
                after = (float(rows[-1][2]), rows[-1][0])
                out = [(r[0], int(r[1])) for r in rows]
                listed.update(t for t, _ in out)
                freed += sum(n for _, n in out)
                yield out
        if max_bytes is not None:
            with st._read() as c:
                total = int(c.execute("SELECT coalesce(sum(bytes), 0) FROM server_traces WHERE project=?",
                                      (project,)).fetchone()[0])
            # Traces deleted above are gone from the total already; listed and kept (a dry run) are not.
            excess = total - max_bytes - (freed if listed and self._any_left(listed) else 0)
            cursor: tuple[int, str] = (-(2**63), "")
            while excess > 0:
                with st._read() as c:
                    rows = c.execute(f"SELECT s.trace_id, s.bytes, s.start_ns FROM server_traces s WHERE s.project=? "
                                     f"AND {unlabeled} AND (s.start_ns > ? OR (s.start_ns = ? AND s.trace_id > ?)) "
                                     f"ORDER BY s.start_ns, s.trace_id LIMIT ?",
                                     (project, cursor[0], cursor[0], cursor[1], chunk)).fetchall()
                if not rows:
                    break
                cursor = (int(rows[-1][2]), rows[-1][0])
                out = []
                for tid, size, _ in rows:
                    if excess <= 0:
                        break
                    if tid in listed:
                        continue
                    out.append((tid, int(size)))
                    excess -= int(size)
                if out:
                    yield out

    def _any_left(self, trace_ids: set[str]) -> bool:
        """Whether any of these traces is still stored (a dry run kept them)."""
        st = self.store
        probe = sorted(trace_ids)[:st._CHUNK]
        where, args = st._in("trace_id", probe)
        with st._read() as c:
            return c.execute(f"SELECT 1 FROM server_traces WHERE {where} LIMIT 1", args).fetchone() is not None

    def labeled_count(self, project: str) -> int:
        with self.store._read() as c:
            return int(c.execute("SELECT count(*) FROM server_traces s WHERE s.project=? AND EXISTS "
                                 "(SELECT 1 FROM labels l WHERE l.trace_id = s.trace_id)", (project,)).fetchone()[0])

    def delete_traces(self, trace_ids: Sequence[str]) -> PruneCounts:
        """Delete traces with their spans, verdicts and server records in one transaction, then the
        blobs (artifacts) no remaining trace refers to and nobody stored within :data:`BLOB_GRACE_S`."""
        st = self.store
        counts = PruneCounts()
        if not trace_ids:
            return counts
        blobs: set[str] = set()
        with st._write() as c:
            for chunk in st._chunks(sorted(set(trace_ids))):
                where, args = st._in("trace_id", chunk)
                for (data,) in c.execute(f"SELECT data FROM traces WHERE {where}", args).fetchall():
                    blobs.update(_artifact_keys(data))
                counts.bytes += int(c.execute(f"SELECT coalesce(sum(bytes), 0) FROM server_traces WHERE {where}",
                                              args).fetchone()[0])
                counts.spans += c.execute(f"DELETE FROM spans WHERE {where}", args).rowcount
                counts.verdicts += c.execute(f"DELETE FROM verdicts WHERE {where}", args).rowcount
                counts.traces += c.execute(f"DELETE FROM traces WHERE {where}", args).rowcount
                c.execute(f"DELETE FROM server_traces WHERE {where}", args)
        if blobs:
            counts.blobs = self._delete_blobs(sorted(blobs))
        return counts

    def _delete_blobs(self, keys: Sequence[str]) -> int:
        st = self.store
        with st._read() as c:
            cutoff = float(c.execute(f"SELECT {st._NOW}").fetchone()[0]) - BLOB_GRACE_S
        # The cutoff is fixed before looking for references: a trace the look misses is stored after
        # it, by a writer that stored its blobs less than BLOB_GRACE_S before, so after the cutoff.
        stale = st.blobs_stored_before(keys, cutoff)
        unused = sorted(set(stale) - self._referenced(stale)) if stale else []
        return sum(st.delete_blob(sha, stored_before=cutoff) for sha in unused)

    def _referenced(self, keys: Sequence[str]) -> set[str]:
        """Those of ``keys`` that some trace's artifacts name, in one pass over the traces (only those
        whose record mentions an artifact's key are parsed)."""
        st = self.store
        if st.backend == "postgresql":
            sql = ("SELECT DISTINCT a ->> 'sha256' FROM traces t, json_array_elements(CASE WHEN "
                   "json_typeof(t.data -> 'artifacts') = 'array' THEN t.data -> 'artifacts' END) a "
                   "WHERE strpos(t.data::text, '\"sha256\"') > 0 AND a ->> 'sha256' = ANY(?)")
            args: list[Any] = [list(keys)]
        else:
            sql = ("SELECT DISTINCT sha FROM (SELECT CASE WHEN a.type = 'object' THEN json_extract(a.value, "
                   "'$.sha256') END AS sha FROM traces t, json_each(CASE WHEN json_valid(t.data) THEN t.data END, "
                   "'$.artifacts') a WHERE instr(t.data, '\"sha256\"') > 0) WHERE sha IN (SELECT value FROM "
                   "json_each(?))")
            args = [json.dumps(list(keys))]
        with st._read() as c:
            return {r[0] for r in c.execute(sql, args)}


def _artifact_keys(data: str) -> list[str]:
    import orjson

    try:
        head = orjson.loads(data)
    except orjson.JSONDecodeError:
        return []
    arts = head.get("artifacts") if isinstance(head, dict) else None
    return [a["sha256"] for a in arts or [] if isinstance(a, dict) and isinstance(a.get("sha256"), str)]


def _token(r: Sequence[Any]) -> TokenRecord:
    return TokenRecord(token_id=r[0], kind=r[1], project=r[2], name=r[3], digest=r[4], created_at=float(r[5]),
                       revoked_at=None if r[6] is None else float(r[6]),
                       last_used_at=None if r[7] is None else float(r[7]))
