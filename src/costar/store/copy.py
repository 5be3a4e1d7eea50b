"""Copy one store into another (SQLite → PostgreSQL and back), losslessly and idempotently.

Rows are copied as stored (the JSON records byte for byte), table by table: runs, scenario
snapshots, traces with their spans, verdicts (every one, in their order, with their activation
state), human labels, golden sets (every version), MCP server snapshots, artifact blobs, and the
judge versions kept in the local folder (``judges/`` under ``root``). A row the destination already holds identically is
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
    order: str  # the order rows are read (and so inserted) in

    def select(self, store: SQLStore) -> str:
        order = self.order.replace("@insert", store._INSERT_ORDER)
        return f"SELECT {', '.join(self.columns)} FROM {self.name} ORDER BY {order}"


RUNS = _Table("runs", ("run_id", "created_at", "status", "data"), ("run_id",), "created_at, run_id")
SCENARIOS = _Table("scenarios", ("run_id", "scenario_id", "source", "data"), ("run_id", "scenario_id"),
                   "run_id, @insert")
TRACES = _Table("traces", ("trace_id", "run_id", "scenario_id", "trial", "status", "start_ns", "data"),
                ("trace_id",), "trace_id")
VERDICTS = _Table("verdicts", ("trace_id", "run_id", "name", "fingerprint", "outcome", "data", "retired", "digest"),
                  ("trace_id", "digest"), "id")
LABELS = _Table("labels", ("name", "trace_id", "labeler", "created_at", "data"), ("name", "trace_id", "labeler"),
                "created_at, @insert")
GOLDEN = _Table("golden_sets", ("name", "version", "judge_name", "created_at", "size", "note", "data"),
                ("name", "version"), "name, version")
SNAPSHOTS = _Table("mcp_snapshots", ("snapshot_id", "name", "created_at", "data"), ("snapshot_id",),
                   "created_at, snapshot_id")
_SPANS_SELECT = f"SELECT {', '.join(SPAN_COLUMNS)} FROM spans WHERE {{where}} ORDER BY trace_id, seq"

TABLES = ("runs", "scenarios", "traces", "spans", "verdicts", "labels", "golden_sets", "mcp_snapshots", "blobs",
          "judge_versions")


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


# ----------------------------------------------------------------------------- rows


def _batches(store: SQLStore, sql: str) -> Iterator[list[tuple[Any, ...]]]:
    """All rows of ``sql`` in batches, paged by offset on a stable order (so memory stays bounded)."""
    offset = 0
    while True:
        with store._read() as c:
            rows = [tuple(r) for r in c.execute(f"{sql} LIMIT ? OFFSET ?", (_BATCH, offset)).fetchall()]
        if not rows:
            return
        yield rows
        offset += len(rows)


Row = tuple[Any, ...]


def _existing(store: SQLStore, table: _Table, keys: Sequence[Row]) -> dict[Row, Row]:
    """The rows of ``table`` in ``store`` with these keys, by key."""
    out: dict[Row, Row] = {}
    if not keys:
        return out
    first = table.key[0]
    cols = ", ".join(table.columns)
    wanted = set(keys)
    with store._read() as c:
        for chunk in store._chunks(sorted({k[0] for k in keys})):
            where, args = store._in(first, chunk)
            for r in c.execute(f"SELECT {cols} FROM {table.name} WHERE {where}", args):
                row = tuple(r)
                k = tuple(row[table.columns.index(col)] for col in table.key)
                if k in wanted:
                    out[k] = row
    return out


def _key(table: _Table, row: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(row[table.columns.index(col)] for col in table.key)


def _copy_rows(src: SQLStore, dst: SQLStore, table: _Table, report: CopyReport, *, write: bool,
               say: Callable[[str, int], None]) -> None:
    count = report.tables[table.name]
    for rows in _batches(src, table.select(src)):
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
    for rows in _batches(src, TRACES.select(src)):
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
    for rows in _batches(src, VERDICTS.select(src)):
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


# ----------------------------------------------------------------------------- blobs and files


def _copy_blobs(src: SQLStore, dst: SQLStore, report: CopyReport, *, write: bool,
                say: Callable[[str, int], None]) -> None:
    count = report.tables["blobs"]
    for sha in src.blob_keys():
        if dst.has_blob(sha):
            count.present += 1
            continue
        if write:
            found = src.read_blob(sha)
            if found is None:
                continue
            size, chunks = found
            try:
                dst.import_blob(sha, size, chunks)
            finally:
                with contextlib.suppress(Exception):
                    chunks.close()
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
        for table in ("runs", "traces", "verdicts", "labels", "golden_sets", "mcp_snapshots"):
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
    for table in (RUNS, SCENARIOS, TRACES, VERDICTS, LABELS, GOLDEN, SNAPSHOTS):
        out[table.name] = [row for rows in _batches(store, table.select(store)) for row in rows]
    spans: list[tuple[Any, ...]] = []
    with store._read() as c:
        spans = [tuple(r) for r in c.execute(f"SELECT {', '.join(SPAN_COLUMNS)} FROM spans ORDER BY trace_id, seq")]
    out["spans"] = spans
    out["blobs"] = [(sha, store.get_blob(sha)) for sha in store.blob_keys()]
    out["judge_versions"] = [(str(rel), (store.root / "judges" / rel).read_bytes()) for rel in _judge_files(store.root)]
    return out
