"""Copy one store into another (SQLite → PostgreSQL and back), losslessly and idempotently.

Rows are copied as stored (the JSON records byte for byte), table by table: runs, scenario
snapshots, traces with their spans, verdicts (every one, in their order, with their activation
state), human labels, golden sets (every version), MCP server snapshots, artifact blobs, the
judge versions kept in the local folder (``judges/`` under ``root``), and what ``costar server``
keeps: production traces by project, access tokens (hashed), acknowledged spans not yet assembled
(the destination's server assembles them when it starts), monitors with the traces each considered,
their judges' results, metric series, sweep cursors, and the alert history with its deliveries.
Alert ids are the destination's own: an alert is matched by monitor, rule, series, status and time,
and its deliveries and its rule's state follow it. Run leases are not copied: they belong to a
process running on the source. A row the destination already holds identically is
skipped, so copying twice copies nothing the second time. A row the destination holds
*differently* under the same key (a run, trace, label, golden-set version, judge-version file, or
a verdict's activation state) is a conflict: the copy refuses before writing anything, unless
``merge`` is set, in which case the destination's row is kept and the conflict counted.
"""

from __future__ import annotations

import contextlib
import filecmp
import shutil
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from costar.errors import StoreError
from costar.store.sql import SPAN_COLUMNS, SQLStore

_BATCH = 500


@dataclass(frozen=True)
class _Table:
    name: str
    columns: tuple[str, ...]
    key: tuple[str, ...]
    # The order rows are read (and so inserted) in: unique and never NULL, so that a batch can start
    # after the previous batch's last row. ``@insert`` is the backend's insertion order.
    order: tuple[str, ...]

    def order_of(self, store: SQLStore) -> tuple[str, ...]:
        return tuple(store._INSERT_ORDER if col == "@insert" else col for col in self.order)


RUNS = _Table("runs", ("run_id", "created_at", "status", "data"), ("run_id",), ("created_at", "run_id"))
# On PostgreSQL insertion order is an identity column without a unique constraint: the primary key
# after it makes the order unique whatever the ids hold (here and for labels).
SCENARIOS = _Table("scenarios", ("run_id", "scenario_id", "source", "data"), ("run_id", "scenario_id"),
                   ("run_id", "@insert", "scenario_id"))
TRACES = _Table("traces", ("trace_id", "run_id", "scenario_id", "trial", "status", "start_ns", "data"),
                ("trace_id",), ("trace_id",))
# (trace_id, digest) is no unique key (and digest may be NULL): the id is.
VERDICTS = _Table("verdicts", ("trace_id", "run_id", "name", "fingerprint", "outcome", "data", "retired", "digest"),
                  ("trace_id", "digest"), ("id",))
# Insertion order (which orders labels of equal times) rather than time: on SQLite it has an index.
LABELS = _Table("labels", ("name", "trace_id", "labeler", "created_at", "data"), ("name", "trace_id", "labeler"),
                ("@insert", "name", "trace_id", "labeler"))
GOLDEN = _Table("golden_sets", ("name", "version", "judge_name", "created_at", "size", "note", "data"),
                ("name", "version"), ("name", "version"))
SNAPSHOTS = _Table("mcp_snapshots", ("snapshot_id", "name", "created_at", "data"), ("snapshot_id",),
                   ("created_at", "snapshot_id"))
SERVER_TRACES = _Table("server_traces", ("trace_id", "project", "service", "start_ns", "completed_at", "amended",
                                         "incomplete", "spans", "bytes"), ("trace_id",), ("trace_id",))
SERVER_TOKENS = _Table("server_tokens", ("token_id", "kind", "project", "name", "digest", "created_at", "revoked_at",
                                         "last_used_at"), ("token_id",), ("token_id",))
# A batch has no key but its contents: two identical batches received at the same instant are one.
INGEST = _Table("ingest_batches", ("received_at", "spans", "data"), ("received_at", "spans", "data"), ("id",))
MONITORS = _Table("monitors", ("name", "created_at", "updated_at", "data"), ("name",), ("name",))
MONITOR_TRACES = _Table("monitor_traces", ("monitor", "trace_id", "trace_time", "sampled", "state", "considered_at",
                                           "scored_at", "total_tokens", "cost_usd", "latency_s", "error"),
                        ("monitor", "trace_id"), ("monitor", "trace_id"))
MONITOR_RESULTS = _Table("monitor_results", ("monitor", "trace_id", "judge", "fingerprint", "outcome", "trace_time",
                                             "cost_usd", "scored_at"), ("monitor", "trace_id", "judge"),
                         ("monitor", "trace_id", "judge"))
MONITOR_POINTS = _Table("monitor_points", ("monitor", "judge", "window_s", "metric", "at", "n", "value", "low", "high",
                                           "data"), ("monitor", "judge", "window_s", "metric", "at"),
                        ("monitor", "judge", "window_s", "metric", "at"))
MONITOR_SWEEPS = _Table("monitor_sweeps", ("monitor", "start_ns", "trace_id", "updated_at"), ("monitor",),
                        ("monitor",))
ALERTS = _Table("monitor_alerts", ("id", "monitor", "rule", "series", "status", "at", "message", "data"),
                ("monitor", "rule", "series", "status", "at"), ("id",))
DELIVERIES = _Table("monitor_deliveries", ("id", "alert_id", "target", "status", "attempts", "last_error",
                                           "updated_at"), ("alert_id", "target"), ("id",))
ALERT_STATE = _Table("monitor_alert_state", ("monitor", "rule", "series", "firing", "since", "alert_id"),
                     ("monitor", "rule", "series"), ("monitor", "rule", "series"))
#: Tables copied row for row (the alert tables are copied with their ids translated).
_PLAIN_SERVER_TABLES = (SERVER_TRACES, SERVER_TOKENS, INGEST, MONITORS, MONITOR_TRACES, MONITOR_RESULTS,
                        MONITOR_POINTS, MONITOR_SWEEPS)
_SPANS_SELECT = f"SELECT {', '.join(SPAN_COLUMNS)} FROM spans WHERE {{where}} ORDER BY trace_id, seq"

TABLES = ("runs", "scenarios", "traces", "spans", "verdicts", "labels", "golden_sets", "mcp_snapshots", "blobs",
          "judge_versions", *(t.name for t in _PLAIN_SERVER_TABLES), "monitor_alerts", "monitor_deliveries",
          "monitor_alert_state")


@dataclass
class TableCount:
    """What a copy did with one table's rows."""

    copied: int = 0
    #: Already in the destination, identical.
    present: int = 0
    #: In the destination under the same key but different; the destination's kept (``merge``).
    conflicts: int = 0


@dataclass
class CopyReport:
    """Per table: rows copied, already present, in conflict; and the first conflicts, described."""

    source: str
    destination: str
    tables: dict[str, TableCount] = field(default_factory=lambda: {t: TableCount() for t in TABLES})
    conflicts: list[str] = field(default_factory=list)
    merged: bool = False

    def conflict(self, table: str, what: str) -> None:
        self.tables[table].conflicts += 1
        if len(self.conflicts) < 20:
            self.conflicts.append(f"{table}: {what}")

    @property
    def total_conflicts(self) -> int:
        return sum(c.conflicts for c in self.tables.values())


class CopyConflictError(StoreError):
    """The destination holds different data under the same keys; nothing was copied."""

    def __init__(self, report: CopyReport) -> None:
        self.report = report
        n = report.total_conflicts
        first = report.conflicts[0] if report.conflicts else ""
        super().__init__(f"{report.destination} already holds different data under {n} of the keys being copied "
                         f"(first: {first}); nothing was copied. Pass --merge to copy the rest and keep the "
                         "destination's version of those")


def copy_store(src: SQLStore, dst: SQLStore, *, merge: bool = False,
               progress: Callable[[str, int], None] | None = None) -> CopyReport:
    """Copy everything in ``src`` into ``dst``; see the module docstring for what and how."""
    if _same_store(src, dst):
        raise StoreError(f"source and destination are the same store ({src.location}); give two different stores")
    say = progress or (lambda _table, _n: None)
    if not merge and not _is_empty(dst):
        check = CopyReport(src.location, dst.location)
        _copy(src, dst, check, write=False, say=lambda _t, _n: None)
        if check.total_conflicts:
            raise CopyConflictError(check)
    report = CopyReport(src.location, dst.location, merged=merge)
    _copy(src, dst, report, write=True, say=say)
    return report


def _copy(src: SQLStore, dst: SQLStore, report: CopyReport, *, write: bool, say: Callable[[str, int], None]) -> None:
    for table in (RUNS, SCENARIOS):
        _copy_rows(src, dst, table, report, write=write, say=say)
    _copy_traces(src, dst, report, write=write, say=say)
    _copy_verdicts(src, dst, report, write=write, say=say)
    for table in (LABELS, GOLDEN, SNAPSHOTS):
        _copy_rows(src, dst, table, report, write=write, say=say)
    _copy_blobs(src, dst, report, write=write, say=say)
    _copy_judge_versions(src.root, dst.root, report, write=write)
    for table in _PLAIN_SERVER_TABLES:
        _copy_rows(src, dst, table, report, write=write, say=say)
    _copy_alerts(src, dst, report, write=write, say=say)


# ----------------------------------------------------------------------------- rows


Row = tuple[Any, ...]


def _batches(store: SQLStore, table: _Table) -> Iterator[list[Row]]:
    """All rows of ``table`` in its order, in batches (so memory stays bounded). Each batch starts
    after the previous one's last row, where an index on the order goes straight to it; an OFFSET
    reads and skips every earlier row again, so a copy of N rows read N²/batch of them."""
    order = table.order_of(store)
    n = len(table.columns)
    select = f"SELECT {', '.join((*table.columns, *order))} FROM {table.name}"
    after = f" WHERE ({', '.join(order)}) > ({', '.join('?' * len(order))})"
    rest = f" ORDER BY {', '.join(order)} LIMIT ?"
    last: Row = ()
    while True:
        with store._read() as c:
            rows = [tuple(r) for r in c.execute(select + (after if last else "") + rest, (*last, _BATCH)).fetchall()]
        if not rows:
            return
        last = rows[-1][n:]
        if None in last:  # nothing compares greater than NULL: the rows after it would be lost
            raise StoreError(f"a row of {table.name} in {store.location} has no {'/'.join(order)}; "
                             "remove or repair it, then copy again")
        yield [r[:n] for r in rows]


def _existing(store: SQLStore, table: _Table, keys: Sequence[Row]) -> dict[Row, Row]:
    """The rows of ``table`` in ``store`` with these keys, by key."""
    out: dict[Row, Row] = {}
    wanted = list(set(keys))
    cols = ", ".join(f"t.{col}" for col in table.columns)
    # A join on the whole key, one index lookup per key on both databases. Matching the first key
    # column alone fetched all of a monitor's or a judge's rows again for every batch: quadratic.
    size = max(1, store._CHUNK // len(table.key))  # keys per query: bounds the parameters
    with store._read() as c:
        for chunk in (wanted[i:i + size] for i in range(0, len(wanted), size)):
            on = []
            for i, col in enumerate(table.key):
                match = f"t.{col} = k.column{i + 1}"
                if any(k[i] is None for k in chunk):  # = never holds for NULL
                    match = f"({match} OR t.{col} IS NULL AND k.column{i + 1} IS NULL)"
                on.append(match)
            values = ", ".join([f"({', '.join('?' * len(table.key))})"] * len(chunk))
            sql = f"SELECT {cols} FROM {table.name} t JOIN (VALUES {values}) AS k ON {' AND '.join(on)}"
            for r in c.execute(sql, [v for k in chunk for v in k]):
                row = tuple(r)
                out[_key(table, row)] = row
    return out


def _key(table: _Table, row: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(row[table.columns.index(col)] for col in table.key)


def _copy_rows(src: SQLStore, dst: SQLStore, table: _Table, report: CopyReport, *, write: bool,
               say: Callable[[str, int], None]) -> None:
    count = report.tables[table.name]
    for rows in _batches(src, table):
        there = _existing(dst, table, [_key(table, r) for r in rows])
        new = []
        for row in rows:
            old = there.get(_key(table, row))
            if old is None:
                new.append(row)
            elif _same_row(old, row):
                count.present += 1
            else:
                report.conflict(table.name, f"{'/'.join(map(str, _key(table, row)))} differs")
        if write and new:
            with dst._write() as c:
                dst._insert_rows(c, table.name, table.columns, new)
        count.copied += len(new)
        say(table.name, count.copied)


def _same_row(a: Sequence[Any], b: Sequence[Any]) -> bool:
    # Floats (timestamps) round-trip exactly on both backends; ints compare as ints.
    return len(a) == len(b) and all(x == y and (type(x) is type(y) or _numeric(x, y))
                                    for x, y in zip(a, b, strict=True))


def _numeric(x: Any, y: Any) -> bool:
    return isinstance(x, int | float) and isinstance(y, int | float) and not isinstance(x, bool)


def _spans_of(store: SQLStore, trace_ids: Sequence[str]) -> dict[str, list[tuple[Any, ...]]]:
    out: dict[str, list[tuple[Any, ...]]] = {t: [] for t in trace_ids}
    with store._read() as c:
        for chunk in store._chunks(trace_ids):
            where, args = store._in("trace_id", chunk)
            for r in c.execute(_SPANS_SELECT.format(where=where), args):
                out[r[0]].append(tuple(r))
    return out


def _copy_traces(src: SQLStore, dst: SQLStore, report: CopyReport, *, write: bool,
                 say: Callable[[str, int], None]) -> None:
    traces, spans = report.tables["traces"], report.tables["spans"]
    for rows in _batches(src, TRACES):
        ids = [r[0] for r in rows]
        there = _existing(dst, TRACES, [(t,) for t in ids])
        src_spans = _spans_of(src, ids)
        dst_spans = _spans_of(dst, [t for t in ids if (t,) in there])
        new_rows, new_spans = [], []
        for row in rows:
            tid = row[0]
            old = there.get((tid,))
            if old is None:
                new_rows.append(row)
                new_spans.extend(src_spans[tid])
            elif _same_row(old, row) and len(dst_spans[tid]) == len(src_spans[tid]) and all(
                    _same_row(a, b) for a, b in zip(dst_spans[tid], src_spans[tid], strict=True)):
                traces.present += 1
                spans.present += len(src_spans[tid])
            else:
                report.conflict("traces", f"trace {tid} differs")
        if write and new_rows:
            with dst._write() as c:
                dst._insert_rows(c, "traces", TRACES.columns, new_rows)
                dst._insert_rows(c, "spans", SPAN_COLUMNS, new_spans)
        traces.copied += len(new_rows)
        spans.copied += len(new_spans)
        say("traces", traces.copied)


def _copy_verdicts(src: SQLStore, dst: SQLStore, report: CopyReport, *, write: bool,
                   say: Callable[[str, int], None]) -> None:
    count = report.tables["verdicts"]
    retired = VERDICTS.columns.index("retired")
    for rows in _batches(src, VERDICTS):
        there = _existing(dst, VERDICTS, [_key(VERDICTS, r) for r in rows])
        new = []
        for row in rows:
            old = there.get(_key(VERDICTS, row))
            if old is None:
                new.append(row)
            elif bool(old[retired]) == bool(row[retired]):
                count.present += 1
            else:
                state = "retired" if row[retired] else "active"
                report.conflict("verdicts", f"a verdict {row[2]!r} on trace {row[0]} is {state} in the source only")
        if write and new:
            with dst._write() as c:
                dst._insert_rows(c, "verdicts", VERDICTS.columns, new)
        count.copied += len(new)
        say("verdicts", count.copied)


# ----------------------------------------------------------------------------- alerts

#: An alert of the source that is new in a dry run: the destination's id is not known yet.
_NEW = -1


def _copy_alerts(src: SQLStore, dst: SQLStore, report: CopyReport, *, write: bool,
                 say: Callable[[str, int], None]) -> None:
    """Alerts under the destination's ids; their deliveries and their rules' states point at them."""
    ids = _copy_alert_events(src, dst, report, write=write)
    say("monitor_alerts", report.tables["monitor_alerts"].copied)
    count = report.tables["monitor_deliveries"]
    for rows in _batches(src, DELIVERIES):
        # Deliveries have no key of their own: one per alert and target.
        mine = [(ids[r[1]], *r[2:]) for r in rows if r[1] in ids]
        there = _deliveries_of(dst, [m[0] for m in mine if m[0] != _NEW])
        new = []
        for row in mine:
            old = there.get((row[0], row[1]))
            if old is None:
                new.append(row)
            elif _same_row(old, row):
                count.present += 1
            else:
                report.conflict("monitor_deliveries", f"the delivery of alert {row[0]} to {row[1]} differs")
        if write and new:
            with dst._write() as c:
                dst._insert_rows(c, "monitor_deliveries", DELIVERIES.columns[1:], new)
        count.copied += len(new)
    count = report.tables["monitor_alert_state"]
    last = ALERT_STATE.columns.index("alert_id")
    for rows in _batches(src, ALERT_STATE):
        mine = [(*r[:last], None if r[last] is None else ids.get(r[last], _NEW)) for r in rows]
        there = _existing(dst, ALERT_STATE, [_key(ALERT_STATE, r) for r in mine])
        new = []
        for row in mine:
            old = there.get(_key(ALERT_STATE, row))
            if old is None:
                new.append(row)
            elif _same_row(old, row):
                count.present += 1
            else:
                report.conflict("monitor_alert_state", f"the state of {'/'.join(map(str, row[:3]))} differs")
        if write and new:
            with dst._write() as c:
                dst._insert_rows(c, "monitor_alert_state", ALERT_STATE.columns, new)
        count.copied += len(new)


def _copy_alert_events(src: SQLStore, dst: SQLStore, report: CopyReport, *, write: bool) -> dict[Any, int]:
    """Copy the alert events; the destination's id of each source alert (``_NEW`` in a dry run)."""
    count = report.tables["monitor_alerts"]
    ids: dict[Any, int] = {}
    for rows in _batches(src, ALERTS):
        there = _existing(dst, ALERTS, [_key(ALERTS, r) for r in rows])
        new = []
        for row in rows:
            old = there.get(_key(ALERTS, row))
            if old is None:
                new.append(row)
                continue
            ids[row[0]] = int(old[0])
            if _same_row(old[1:], row[1:]):
                count.present += 1
            else:
                report.conflict("monitor_alerts", f"the {row[4]} alert of {'/'.join(map(str, row[1:4]))} at {row[5]} "
                                                  "differs")
        if write and new:
            with dst._write() as c:
                for row in new:
                    ids[row[0]] = dst._insert_id(c, "INSERT INTO monitor_alerts (monitor, rule, series, status, at, "
                                                    "message, data) VALUES (?,?,?,?,?,?,?)", row[1:])
        else:
            ids.update((row[0], _NEW) for row in new)
        count.copied += len(new)
    return ids


def _deliveries_of(store: SQLStore, alert_ids: Sequence[int]) -> dict[Row, Row]:
    """The deliveries of these alerts, by (alert id, target), without their own ids."""
    out: dict[Row, Row] = {}
    with store._read() as c:
        for chunk in store._chunks(sorted(set(alert_ids))):
            where, args = store._in("alert_id", chunk)
            for r in c.execute(f"SELECT {', '.join(DELIVERIES.columns[1:])} FROM monitor_deliveries WHERE {where}",
                               args):
                out[(r[0], r[1])] = tuple(r)
    return out


# ----------------------------------------------------------------------------- blobs and files


def _copy_blobs(src: SQLStore, dst: SQLStore, report: CopyReport, *, write: bool,
                say: Callable[[str, int], None]) -> None:
    count = report.tables["blobs"]
    for sha in src.blob_keys():
        if not write:
            if dst.has_blob(sha):
                count.present += 1
            else:
                count.copied += 1
            continue
        found = src.read_blob(sha)
        if found is None:
            continue
        size, chunks = found
        try:
            # Even a blob that is there goes through import_blob, which then only marks it stored now:
            # its traces were copied before it, and retention in the destination spares recent blobs only.
            written = dst.import_blob(sha, size, chunks)
        finally:
            with contextlib.suppress(Exception):
                chunks.close()
        if not written:
            count.present += 1
            continue
        count.copied += 1
        say("blobs", count.copied)


def _judge_files(root: Path) -> list[Path]:
    """The files of the judge versions under a local folder: versions, pointers, memories."""
    base = root / "judges"
    if not base.is_dir():
        return []
    out = []
    for path in sorted(base.rglob("*")):
        if not path.is_file() or path.name.startswith("."):
            continue  # lock files and temporary files of an interrupted write
        rel = path.relative_to(base)
        if (len(rel.parts) == 2 and (rel.name == "active" or (rel.name.startswith("v") and rel.suffix == ".json"))) \
                or (len(rel.parts) == 3 and rel.parts[1] == "memory" and rel.suffix == ".json"):
            out.append(rel)
    return out


def _copy_judge_versions(src_root: Path, dst_root: Path, report: CopyReport, *, write: bool) -> None:
    """Judge versions are files in the local folder (see costar.align.versions), not rows: copy them
    between the two local folders. Two stores sharing one local folder share them already."""
    count = report.tables["judge_versions"]
    with contextlib.suppress(OSError):
        if src_root.resolve() == dst_root.resolve():
            return
    for rel in _judge_files(src_root):
        source, target = src_root / "judges" / rel, dst_root / "judges" / rel
        if target.is_file():
            if filecmp.cmp(source, target, shallow=False):
                count.present += 1
            else:
                report.conflict("judge_versions", f"{rel} differs")
            continue
        if write:
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                tmp = target.with_name(f".{target.name}.copy")
                shutil.copyfile(source, tmp)
                tmp.replace(target)
            except OSError as exc:
                raise StoreError(f"cannot write {target}: {exc.strerror}; fix its permissions or free some space") \
                    from None
        count.copied += 1


# ----------------------------------------------------------------------------- helpers


def _is_empty(store: SQLStore) -> bool:
    with store._read() as c:
        for table in ("runs", "traces", "verdicts", "labels", "golden_sets", "mcp_snapshots",
                      *(t.name for t in _PLAIN_SERVER_TABLES), "monitor_alerts"):
            if c.execute(f"SELECT 1 FROM {table} LIMIT 1").fetchone() is not None:
                return False
    return next(iter(store.blob_keys()), None) is None and not _judge_files(store.root)


def _same_store(a: SQLStore, b: SQLStore) -> bool:
    if a.backend != b.backend:
        return False
    if a.backend == "sqlite":
        return a.root.resolve() == b.root.resolve()
    return a.location == b.location


def store_contents(store: SQLStore) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table in its stored form, in a defined order, plus blob bytes and judge
    files: two stores with equal contents hold the same data (a round-trip copy checks this)."""
    out: dict[str, list[tuple[Any, ...]]] = {}
    for table in (RUNS, SCENARIOS, TRACES, VERDICTS, LABELS, GOLDEN, SNAPSHOTS, *_PLAIN_SERVER_TABLES):
        out[table.name] = [row for rows in _batches(store, table) for row in rows]
    spans: list[tuple[Any, ...]] = []
    with store._read() as c:
        spans = [tuple(r) for r in c.execute(f"SELECT {', '.join(SPAN_COLUMNS)} FROM spans ORDER BY trace_id, seq")]
    out["spans"] = spans
    # Alert ids differ between stores: an alert is known by its key, and what points at it by that.
    alerts = [row for rows in _batches(store, ALERTS) for row in rows]
    key_of = {row[0]: _key(ALERTS, row) for row in alerts}
    out["monitor_alerts"] = [row[1:] for row in alerts]
    out["monitor_deliveries"] = sorted(((key_of.get(r[1]), *r[2:]) for rows in _batches(store, DELIVERIES)
                                        for r in rows), key=repr)
    out["monitor_alert_state"] = [(*r[:-1], None if r[-1] is None else key_of.get(r[-1]))
                                  for rows in _batches(store, ALERT_STATE) for r in rows]
    out["blobs"] = [(sha, store.get_blob(sha)) for sha in store.blob_keys()]
    out["judge_versions"] = [(str(rel), (store.root / "judges" / rel).read_bytes()) for rel in _judge_files(store.root)]
    return out
