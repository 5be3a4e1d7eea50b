"""costar store copy: SQLite → PostgreSQL → SQLite is lossless and idempotent; conflicts refuse."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from costar.align.golden import create_golden_set, extend_golden_set
from costar.align.labeling import new_label
from costar.errors import StoreError
from costar.scenario import Scenario
from costar.store import copy as copy_module
from costar.store.base import Run
from costar.store.copy import CopyConflictError, copy_store, store_contents
from costar.store.postgres import PostgresStore
from costar.store.sqlite import SQLiteStore
from costar.trace.formats.jsonl import write_jsonl
from costar.trace.model import Artifact, Span, SpanEvent, SpanKind, SpanStatus, StatusCode, Trace
from costar.trace.tool_definition import ToolDefinition
from costar.trace.tools import McpSnapshot, ServerInfo
from costar.verdict import Verdict
from tests.support.cli import child_env, costar_cmd


def fill(store: Any, *, n: int = 12) -> None:
    """Every kind of record, with the awkward cases: retired verdicts, relabels, two golden-set
    versions, artifact blobs (one large), NUL and U+FFFF in text, non-ASCII, judge-version files."""
    run = Run(description="copy me ✓", metadata={"nested": {"x": [1, 2.5, None]}})
    store.create_run(run)
    store.save_scenarios(run.run_id, [Scenario(id=f"s{k}", prompt=f"question {k} ✓") for k in range(3)])
    big = store.put_blob(bytes(range(256)) * 9000)  # over two 1 MiB chunks
    traces = []
    for i in range(n):
        tid = f"{i:032x}"
        spans = [Span(trace_id=tid, span_id=f"{i:08x}00", name="agent", kind=SpanKind.AGENT, start_ns=i, end_ns=i + 9)]
        spans += [Span(trace_id=tid, span_id=f"{i:08x}{k:02x}", parent_id=f"{i:08x}00", name=f"tool\x00{k}\uffff",
                       kind=SpanKind.TOOL, start_ns=i + k, end_ns=i + k + 1,
                       status=SpanStatus(code=StatusCode.ERROR, message="nul\x00here") if k == 2 else SpanStatus(),
                       attributes={"k": k, "s": "é\x00\uffff", "f": 0.1 * k, "deep": {"a": [None, True]}},
                       events=[SpanEvent(name="e", time_ns=k, attributes={"v": "w"})] if k == 1 else [])
                  for k in range(1, 4)]
        small = store.put_blob(f"file {i}".encode())
        traces.append(Trace(trace_id=tid, run_id=run.run_id, scenario_id=f"s{i % 3}", trial=i // 3, start_ns=i,
                            end_ns=i + 9, output=f"answer {i}", spans=spans,
                            artifacts=[Artifact(path="out.txt", sha256=small, size=6 + len(str(i))),
                                       *([Artifact(path="big.bin", sha256=big, size=256 * 9000)] if i == 0 else [])]))
    store.write_traces(traces)
    ids = [t.trace_id for t in traces]
    verdicts = []
    for j, tid in enumerate(ids):
        verdicts += [Verdict(name="correct", passed=j % 2 == 0, fingerprint="fp1", trace_id=tid, created_at=100 + j),
                     Verdict(name="correct", passed=True, fingerprint="fp2", trace_id=tid, created_at=200 + j),
                     Verdict(name="old-judge", passed=False, trace_id=tid, created_at=300 + j)]
    store.write_verdicts(verdicts, run.run_id)
    store.activate_verdicts(ids, ["correct"])  # old-judge's verdicts become retired
    store.write_labels([new_label(t, "correct", j % 2 != 0, labeler="ana") for j, t in enumerate(ids)])
    store.write_labels([new_label(ids[0], "correct", True, labeler="ana")], replace=True)
    store.write_labels([new_label(t, "correct", True, labeler="bo") for t in ids[:4]])
    create_golden_set(store, "gs", "correct", trace_ids=ids[:8], seed=3, labeler="ana", min_per_class=0)
    if ids[8:]:
        extend_golden_set(store, "gs", trace_ids=ids[8:])
    judges = store.root / "judges" / "correct"
    (judges / "memory").mkdir(parents=True)
    (judges / "v1.json").write_text('{"version": 1}')
    (judges / "v2.json").write_text('{"version": 2}')
    (judges / "active").write_text('{"version": 2, "history": [null]}')
    (judges / "memory" / f"{'b' * 64}.json").write_text("{}")
    (judges / ".lock").write_text("")
    for version in ("1.0.0", "2.0.0"):  # MCP server snapshots, with non-ASCII in a description
        store.write_mcp_snapshot(McpSnapshot(name="shop", created_at=1000.0 + len(version) + float(version[0]),
                                             server=ServerInfo(name="shop", version=version),
                                             tools=[ToolDefinition(name="lookup", description=f"Look up ✓ {version}",
                                                                   input_schema={"type": "object"})]))


def exported(store: Any, path: Path) -> bytes:
    write_jsonl(store.iter_traces(), path, blob_reader=store.get_blob)
    return path.read_bytes()


def test_round_trip_sqlite_postgres_sqlite_is_identical_and_idempotent(tmp_path: Path, pg_url: str) -> None:
    src = SQLiteStore(tmp_path / "a")
    fill(src)
    pg = PostgresStore(pg_url, local_dir=tmp_path / "pg-local")
    back = SQLiteStore(tmp_path / "b")
    try:
        first = copy_store(src, pg)
        assert {k: v.copied for k, v in first.tables.items() if v.copied} == {
            "runs": 1, "scenarios": 3, "traces": 12, "spans": 48, "verdicts": 36, "labels": 16, "golden_sets": 2,
            "mcp_snapshots": 2, "blobs": 13, "judge_versions": 4}
        assert first.total_conflicts == 0
        copy_store(pg, back)
        original = store_contents(src)
        assert store_contents(pg) == original
        assert store_contents(back) == original
        assert exported(back, tmp_path / "back.jsonl") == exported(src, tmp_path / "src.jsonl")
        # Reading through the API agrees too: the latest verdicts skip the retired ones.
        assert back.verdicts() == src.verdicts()
        assert len(back.verdicts()) == 12
        assert pg.labels(name="correct") == src.labels(name="correct")
        assert pg.golden_set("gs", 1) == src.golden_set("gs", 1)
        assert pg.mcp_snapshot("shop~1") == src.mcp_snapshot("shop~1")
        # Copying again copies nothing and finds everything there.
        again = copy_store(src, pg)
        assert {k: v.copied for k, v in again.tables.items()} == dict.fromkeys(first.tables, 0)
        assert {k: v.present for k, v in again.tables.items()} == {k: v.copied for k, v in first.tables.items()}
        assert store_contents(pg) == original
    finally:
        for st in (src, pg, back):
            st.close()


def test_conflicting_destination_is_refused_unless_merge(tmp_path: Path, pg_url: str) -> None:
    src = SQLiteStore(tmp_path / "a")
    fill(src, n=4)
    dst = PostgresStore(pg_url, local_dir=tmp_path / "pg-local")
    try:
        tid = src.trace_ids()[0]
        dst.write_traces([src.get_trace(tid)])
        dst.write_labels([new_label(tid, "correct", False, labeler="ana", rationale="I disagree")])
        before = store_contents(dst)
        with pytest.raises(CopyConflictError) as err:
            copy_store(src, dst)
        assert "--merge" in str(err.value)
        assert "labels" in str(err.value)
        assert store_contents(dst) == before  # nothing was written
        report = copy_store(src, dst, merge=True)
        assert report.tables["labels"].conflicts == 1
        assert report.tables["traces"].present == 1
        assert dst.labels(name="correct", trace_ids=[tid], labeler="ana")[0].rationale == "I disagree"
        assert len(dst.trace_ids()) == 4
        assert len(dst.labels(name="correct")) == len(src.labels(name="correct"))
    finally:
        src.close()
        dst.close()


def test_cli_copy_prints_counts_and_refuses_conflicts_with_exit_2(tmp_path: Path, pg_url: str) -> None:
    src = SQLiteStore(tmp_path / "a")
    fill(src, n=3)
    src.close()
    env = child_env()
    res = subprocess.run([*costar_cmd(), "store", "copy", str(tmp_path / "a"), pg_url], capture_output=True,
                         text=True, env=env, cwd=tmp_path, timeout=180)
    assert res.returncode == 0, res.stderr
    lines = {line.split("│")[1].strip(): line for line in res.stdout.splitlines() if line.count("│") >= 4}
    assert "traces" in lines
    assert "12" in lines["spans"].split("│")[2]
    again = subprocess.run([*costar_cmd(), "store", "copy", str(tmp_path / "a"), pg_url, "--json"],
                           capture_output=True, text=True, env=env, cwd=tmp_path, timeout=180)
    import json

    counts = json.loads(again.stdout)["tables"]
    assert counts["traces"] == {"copied": 0, "present": 3, "conflicts": 0}
    back = tmp_path / "b"
    out = subprocess.run([*costar_cmd(), "store", "copy", pg_url, str(back)], capture_output=True, text=True,
                         env=env, cwd=tmp_path, timeout=180)
    assert out.returncode == 0, out.stderr
    with SQLiteStore(tmp_path / "a") as a, SQLiteStore(back) as b:
        assert store_contents(a) == store_contents(b)
        b.write_labels([new_label(b.trace_ids()[0], "correct", False, labeler="zed")])
    clash = subprocess.run([*costar_cmd(), "store", "copy", str(back), str(tmp_path / "a")], capture_output=True,
                           text=True, env=env, cwd=tmp_path, timeout=180)
    assert clash.returncode == 0  # a label only the source has is no conflict: it is copied
    with SQLiteStore(back) as b:
        b.write_labels([new_label(b.trace_ids()[0], "correct", True, labeler="zed")], replace=True)
    clash = subprocess.run([*costar_cmd(), "store", "copy", str(back), str(tmp_path / "a")], capture_output=True,
                           text=True, env=env, cwd=tmp_path, timeout=180)
    assert clash.returncode == 2
    assert clash.stderr.startswith("error: ")
    assert "--merge" in clash.stderr
    assert len(clash.stderr.splitlines()) == 1


def test_copy_into_itself_is_refused(tmp_path: Path) -> None:
    with SQLiteStore(tmp_path / "a") as a, SQLiteStore(tmp_path / "a") as same, \
            pytest.raises(StoreError, match="same store"):
        copy_store(a, same)


class _Recording:
    """A connection that notes the SQL it runs."""

    def __init__(self, conn: Any, seen: list[str]) -> None:
        self.conn, self.seen = conn, seen

    def execute(self, sql: str, *args: Any) -> Any:
        self.seen.append(sql)
        return self.conn.execute(sql, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.conn, name)


def recorded_reads(monkeypatch: pytest.MonkeyPatch, *stores: Any) -> list[str]:
    """The SQL the reads of these stores run from now on."""
    seen: list[str] = []
    for store in stores:
        @contextlib.contextmanager
        def recorded(read: Any = store._read) -> Iterator[_Recording]:
            with read() as c:
                yield _Recording(c, seen)

        monkeypatch.setattr(store, "_read", recorded)
    return seen


def add_ties(store: Any) -> None:
    """Rows that share the first column their table is read in order of, so that batches end
    between equal values: runs created at one instant, one run's many scenarios, labels and MCP
    snapshots made at one time."""
    for k in range(5):
        store.create_run(Run(run_id=f"tie{k}", created_at=5.0))
    store.save_scenarios("tie0", [Scenario(id=f"t{k}", prompt=f"p{k}") for k in range(7)])
    ids = store.trace_ids()
    store.write_labels([new_label(t, "tied", k % 3 == 0, labeler=f"l{k % 2}", created_at=50.0)
                        for k, t in enumerate(ids)])
    store.write_labels([new_label(t, "tied", True, labeler="l2", created_at=50.0) for t in ids[:5]])
    for k in range(4):
        store.write_mcp_snapshot(McpSnapshot(name=f"srv{k % 2}", created_at=2000.0,
                                             server=ServerInfo(name="srv", version=str(k))))


def test_copying_in_small_batches_copies_every_row_once_and_never_pages_by_offset(
        tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    src = SQLiteStore(tmp_path / "a")
    fill(src)
    add_ties(src)
    pg = PostgresStore(pg_url, local_dir=tmp_path / "pg-local")
    back = SQLiteStore(tmp_path / "b")
    try:
        original = store_contents(src)  # read in one batch per table
        monkeypatch.setattr(copy_module, "_BATCH", 2)
        seen = recorded_reads(monkeypatch, src, pg, back)
        first = copy_store(src, pg)
        copy_store(pg, back)
        assert store_contents(pg) == original
        assert store_contents(back) == original
        assert back.labels(name="tied") == src.labels(name="tied")
        # Every row is found in the destination across batch boundaries: nothing copied twice.
        again = copy_store(pg, back)
        assert sum(c.copied for c in again.tables.values()) == 0
        assert {k: v.present for k, v in again.tables.items()} == {k: v.copied for k, v in first.tables.items()}
        assert first.tables["labels"].copied == len(original["labels"]) == 33
        # An OFFSET re-reads every row before it: a copy paged that way reads N²/batch rows.
        assert sum("LIMIT" in sql for sql in seen) > 100
        assert [sql for sql in seen if "OFFSET" in sql.upper()] == []
    finally:
        for st in (src, pg, back):
            st.close()


def test_a_row_without_its_key_stops_the_copy_rather_than_losing_the_rows_after_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with SQLiteStore(tmp_path / "a") as src, SQLiteStore(tmp_path / "b") as dst:
        src.create_run(Run(run_id="r1", created_at=1.0))
        with src._write() as c:  # SQLite lets a TEXT PRIMARY KEY be NULL
            c.execute("INSERT INTO runs (run_id, created_at, status, data) VALUES (NULL, 1.0, 'running', '{}')")
        monkeypatch.setattr(copy_module, "_BATCH", 1)
        with pytest.raises(StoreError, match=r"a row of runs .* has no created_at/run_id"):
            copy_store(src, dst)


def test_a_blob_already_in_the_destination_counts_as_stored_now(tmp_path: Path) -> None:
    """Its traces arrive before it in a copy, and a live destination's retention spares only recent
    blobs: an old copy of the same bytes there is marked stored now, not merely skipped."""
    import os
    import time

    src, dst = SQLiteStore(tmp_path / "a"), SQLiteStore(tmp_path / "b")
    try:
        sha = src.put_blob(b"the same bytes in both stores")
        assert dst.put_blob(b"the same bytes in both stores") == sha
        two_days_ago = time.time() - 2 * 86400
        os.utime(dst.blob_path(sha), (two_days_ago, two_days_ago))
        report = copy_store(src, dst, merge=True)
        assert report.tables["blobs"].present == 1
        assert report.tables["blobs"].copied == 0
        assert dst.blob_path(sha).stat().st_mtime > time.time() - 600
        assert dst.get_blob(sha) == b"the same bytes in both stores"
    finally:
        src.close()
        dst.close()
