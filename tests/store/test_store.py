from __future__ import annotations

import hashlib
import os
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from costar.errors import StoreError
from costar.store.base import Run, SpanQuery
from costar.store.sqlite import SQLiteStore
from costar.trace.model import (
    AgentInfo,
    Artifact,
    Span,
    SpanEvent,
    SpanKind,
    SpanStatus,
    StatusCode,
    Totals,
    Trace,
    TraceStatus,
    new_span_id,
    new_trace_id,
)
from costar.verdict import Verdict


def make_trace(run_id: str, scenario: str, trial: int, n_spans: int = 5) -> Trace:
    tid = new_trace_id()
    root = new_span_id()
    spans = [Span(trace_id=tid, span_id=root, name="agent", kind=SpanKind.AGENT, start_ns=1, end_ns=10)]
    for i in range(n_spans - 1):
        spans.append(Span(
            trace_id=tid, span_id=new_span_id(), parent_id=root, name=f"step {i}",
            kind=SpanKind.TOOL if i % 2 else SpanKind.LLM, start_ns=2 + i, end_ns=3 + i,
            status=SpanStatus(code=StatusCode.ERROR if i == 2 else StatusCode.OK, message="x" if i == 2 else None),
            attributes={"gen_ai.input.messages": [{"role": "user", "parts": [{"type": "text", "content": "héllo"}]}],
                        "n": i, "f": 1.5, "flag": True, "nested": {"a": [1, 2, {"b": None}]}},
            events=[SpanEvent(name="e", time_ns=5, attributes={"k": "v"})] if i == 1 else []))
    return Trace(trace_id=tid, run_id=run_id, scenario_id=scenario, trial=trial,
                 agent=AgentInfo(name="a", version="1", git_sha="abc"), status=TraceStatus.OK, input=["t1", "t2"],
                 output="out", start_ns=1, end_ns=10, totals=Totals(input_tokens=3, latency_s=0.5),
                 artifacts=[Artifact(path="x.csv", sha256="0" * 64, size=3)], spans=spans,
                 metadata={"reward": 1.0})


def test_trace_round_trip_and_queries(store: SQLiteStore) -> None:
    run = Run()
    store.create_run(run)
    traces = [make_trace(run.run_id, sc, t) for sc in ("b", "a") for t in range(2)]
    store.write_traces(traces)
    back = store.get_trace(traces[0].trace_id)
    assert back == traces[0]
    assert [t.scenario_id for t in store.iter_traces(run.run_id)] == ["a", "a", "b", "b"]
    assert store.finished_trials(run.run_id) == {("a", 0), ("a", 1), ("b", 0), ("b", 1)}
    assert store.get_trace(traces[0].trace_id[:12]).trace_id == traces[0].trace_id  # unique prefix
    tid = traces[0].trace_id
    assert store.count_spans(tid) == 5
    assert store.count_spans(tid, SpanQuery(kind=SpanKind.TOOL)) == 2
    assert [s.name for s in store.query_spans(tid, SpanQuery(status=StatusCode.ERROR))] == ["step 2"]
    assert [s.name for s in store.query_spans(tid, SpanQuery(name="step *", offset=1, limit=2))] == ["step 1", "step 2"]
    sp = traces[0].spans[2]
    assert store.get_span(tid, sp.span_id) == sp
    # re-writing a trace replaces its spans rather than duplicating them
    store.write_trace(traces[0])
    assert store.count_spans(tid) == 5


def test_runs_resolve_by_prefix_and_latest(store: SQLiteStore) -> None:
    a = Run(run_id="20260101-000000-aaaaaa", created_at=1)
    b = Run(run_id="20260102-000000-bbbbbb", created_at=2)
    store.create_run(a)
    store.create_run(b)
    assert store.resolve_run_id("latest") == b.run_id
    assert store.resolve_run_id("20260101") == a.run_id
    with pytest.raises(StoreError, match="ambiguous"):
        store.resolve_run_id("2026")
    with pytest.raises(StoreError, match="no run 'zzz'"):
        store.resolve_run_id("zzz")
    b.status = "finished"
    store.update_run(b)
    assert store.get_run(b.run_id).status == "finished"


def test_verdicts_latest_and_fingerprint_lookup(store: SQLiteStore) -> None:
    run = Run()
    store.create_run(run)
    t = make_trace(run.run_id, "s", 0)
    store.write_trace(t)
    v1 = Verdict(name="j", passed=False, fingerprint="fp1", trace_id=t.trace_id, created_at=1)
    v2 = Verdict(name="j", passed=True, fingerprint="fp2", trace_id=t.trace_id, created_at=2)
    other = Verdict(name="k", passed=None, value=3.0, trace_id=t.trace_id)
    store.write_verdicts([v1, v2, other], run.run_id)
    latest = store.verdicts(run_id=run.run_id)
    assert [(v.name, v.fingerprint) for v in latest] == [("j", "fp2"), ("k", None)]
    assert len(store.verdicts(run_id=run.run_id, latest=False)) == 3
    assert store.latest_fingerprints([t.trace_id])[(t.trace_id, "j")] == "fp2"
    assert store.find_verdict(t.trace_id, "fp1", "j") == v1
    assert store.find_verdict(t.trace_id, "nope", "j") is None


def test_an_error_verdict_is_never_a_cached_result(store: SQLiteStore) -> None:
    """The scoring cache skips judge errors: the next assess asks the judge again (issue 9, item 3)."""
    run = Run()
    store.create_run(run)
    t = make_trace(run.run_id, "s", 0)
    store.write_trace(t)
    ok = Verdict(name="j", passed=True, fingerprint="fp1", trace_id=t.trace_id, created_at=1)
    err = Verdict.failure("j", "model call failed: connection refused", fingerprint="fp1", trace_id=t.trace_id)
    only_err = Verdict.failure("k", "model call failed: connection refused", fingerprint="fp9", trace_id=t.trace_id)
    store.write_verdicts([ok, err, only_err], run.run_id)
    assert store.latest_fingerprints([t.trace_id]) == {}  # both newest verdicts are errors
    assert store.find_verdict(t.trace_id, "fp1", "j") == ok  # the same judge's last real answer
    assert store.find_verdict(t.trace_id, "fp9", "k") is None


def test_blobs_are_content_addressed(tmp_path: Path, store: SQLiteStore) -> None:
    sha = store.put_blob(b"hello")
    assert store.put_blob(b"hello") == sha
    f = tmp_path / "big.bin"
    f.write_bytes(b"x" * 3_000_000)
    sha2, size = store.put_file(f)
    assert size == 3_000_000
    assert store.get_blob(sha2) == f.read_bytes()
    assert store.get_blob("0" * 64) is None
    # blob_path is a local file with the bytes on both backends (a cached copy for a database)
    assert store.blob_path(sha2).read_bytes() == f.read_bytes()
    assert not store.blob_path("1" * 64).exists()
    with pytest.raises(StoreError, match="not a blob key"):
        store.blob_path("../../etc/passwd")
    assert not list(store.root.rglob(".tmp-*"))


def test_secrets_are_redacted_and_sizes_bounded_before_storing(store: SQLiteStore) -> None:
    run = Run()
    store.create_run(run)
    t = make_trace(run.run_id, "s", 0)
    key = "sk-proj-" + "A1b2C3d4" * 5
    t.output = f"my key is {key} and Authorization: Bearer abcdefghijklmnop1234 " + "y" * 400_000
    t.spans[1].attributes["api_key"] = f"OPENAI_API_KEY={key}"
    t.spans[1].attributes["note"] = "ghp_" + "Z" * 36
    store.write_trace(t)
    back = store.get_trace(t.trace_id)
    assert key not in back.output
    assert "[REDACTED]" in back.output
    assert "abcdefghijklmnop1234" not in back.output
    assert "truncated" in back.output
    assert len(back.output) < 300_000
    assert key not in str(back.spans[1].attributes)
    assert "ghp_" not in str(back.spans[1].attributes)


def test_locked_store_gives_a_clear_error(tmp_path: Path) -> None:
    root = tmp_path / "locked"
    SQLiteStore(root).migrate()  # creates it: a store exists once it is written
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sqlite3, sys, time
        c = sqlite3.connect({str(root / 'costar.db')!r}, isolation_level=None)
        c.execute("BEGIN EXCLUSIVE")
        print("locked", flush=True)
        time.sleep(30)
    """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        st = SQLiteStore.__new__(SQLiteStore)
        with pytest.raises(StoreError) as err:
            st.__init__(root, busy_timeout_s=0.3)
            st.create_run(Run())
        assert "locked by another process" in str(err.value)
    finally:
        holder.kill()
        holder.wait()


def test_full_database_gives_a_clear_error_and_loses_nothing(tmp_path: Path) -> None:
    st = SQLiteStore(tmp_path / "full")
    run = Run()
    st.create_run(run)
    kept = make_trace(run.run_id, "s", 0)
    st.write_trace(kept)
    conn = st._conn()
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count={pages}")
    with pytest.raises(StoreError) as err:
        st.write_traces([make_trace(run.run_id, "s", i, n_spans=400) for i in range(1, 20)])
    assert "is full" in str(err.value)
    assert "--resume" in str(err.value)
    st.close()
    again = SQLiteStore(tmp_path / "full")
    assert again.get_trace(kept.trace_id) == kept
    assert again.finished_trials(run.run_id) == {("s", 0)}


def test_blob_write_on_a_full_disk(tmp_path: Path) -> None:
    # RLIMIT_FSIZE makes writes past the limit fail (EFBIG), as a full disk would.
    code = textwrap.dedent(f"""
        import resource, signal
        from costar.store.sqlite import SQLiteStore
        from costar.errors import StoreError
        st = SQLiteStore({str(tmp_path / 's')!r})
        st.migrate()  # the database exists: only the blob hits the limit
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))
        try:
            st.put_blob(b"z" * 1_000_000)
        except StoreError as exc:
            print("ERR", exc)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "ERR" in out.stdout, out.stdout + out.stderr
    assert "is full" in out.stdout, out.stdout + out.stderr
    assert not [p for p in (tmp_path / "s" / "blobs").rglob("*") if p.is_file()]


def test_not_a_database(tmp_path: Path) -> None:
    root = tmp_path / "junk"
    root.mkdir()
    (root / "costar.db").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="not a coSTAR store"):
        SQLiteStore(root)


def test_concurrent_writers_from_threads(store: SQLiteStore) -> None:
    from concurrent.futures import ThreadPoolExecutor

    run = Run()
    store.create_run(run)
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: store.write_trace(make_trace(run.run_id, f"s{i % 4}", i)), range(64)))
    assert len(store.trace_ids(run.run_id)) == 64


def test_wal_mode_lets_readers_in_during_a_write(sqlite_store: SQLiteStore) -> None:
    store = sqlite_store
    run = Run()
    store.create_run(run)
    conn = sqlite3.connect(store.db_path, isolation_level=None)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.execute("BEGIN IMMEDIATE")  # another process holds the write lock…
    started = time.monotonic()
    assert store.get_run(run.run_id).run_id == run.run_id  # …and reads still go through, at once
    assert time.monotonic() - started < 1.0
    conn.execute("ROLLBACK")
    conn.close()


def test_blob_path_refuses_keys_that_are_not_hex(tmp_path: Path) -> None:
    good = hashlib.sha256(b"hello").hexdigest()
    traversal = "xx/etc/shadow"
    secret = tmp_path / "secret.txt"
    secret.write_text("top secret")
    with SQLiteStore(tmp_path / "store") as st:
        sha = st.put_blob(b"hello")
        assert sha == good
        assert st.get_blob(sha) == b"hello"
        assert st.blob_path(sha).is_relative_to(st.blob_dir)
        relative = os.path.relpath(secret, st.blob_dir / "xx")
        for bad in (traversal, "xx" + relative, "../" + "a" * 61, "A" * 64, "a" * 64 + "\n", ""):
            with pytest.raises(StoreError, match="not a blob key"):
                st.blob_path(bad)
            assert st.get_blob(bad) is None
