"""Schema versions: a store from coSTAR 0.1 (schema 1) is upgraded and reads back every row;
a store from a newer coSTAR is refused; read-only commands say to run ``costar store migrate``."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from costar.errors import StoreError
from costar.labels import GoldenExample, GoldenSet, ValueType
from costar.store.base import Run
from costar.store.migrations import MIGRATIONS, SCHEMA_VERSION, verdict_digest
from costar.store.sql import span_rows, trace_row
from costar.store.sqlite import SQLiteStore
from costar.trace.model import Artifact, Span, SpanEvent, SpanKind, SpanStatus, StatusCode, Trace
from costar.verdict import Verdict, VerdictSource
from tests.support.cli import child_env, costar_cmd

# The SQLite schema of coSTAR 0.1 (schema version 1), frozen verbatim: never edit it.
V1_SQLITE_SCHEMA = """
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


def v1_content() -> dict[str, Any]:
    """A bit of everything a 0.1 store held, including the awkward parts (retired verdicts,
    replaced labels, two golden-set versions, non-ASCII, nested attributes, events)."""
    run = Run(run_id="20260101-000000-aaaaaa", created_at=1_767_225_600.25, status="finished",
              description="ünïcode run", metadata={"k": [1, 2.5, None]})
    spans = [Span(trace_id="t1", span_id="s0", name="agent", kind=SpanKind.AGENT, start_ns=1, end_ns=90),
             Span(trace_id="t1", span_id="s1", parent_id="s0", name="chat gpt", kind=SpanKind.LLM, start_ns=2,
                  end_ns=50, status=SpanStatus(code=StatusCode.ERROR, message="boom ✗"),
                  attributes={"gen_ai.usage.input_tokens": 12, "nested": {"a": [1, {"b": None}]}, "f": 0.1},
                  events=[SpanEvent(name="retry", time_ns=3, attributes={"n": 1})])]
    t1 = Trace(trace_id="t1", run_id=run.run_id, scenario_id="sc", trial=0, start_ns=1, end_ns=90, spans=spans,
               output="42", artifacts=[Artifact(path="out.txt", sha256="a" * 64, size=3)])
    t2 = Trace(trace_id="t2", run_id=run.run_id, scenario_id="sc", trial=1, start_ns=5, end_ns=9, output="41")
    old = Verdict(name="correct", passed=False, fingerprint="fp1", trace_id="t1", created_at=10.5)
    new = Verdict(name="correct", passed=True, fingerprint="fp2", trace_id="t1", created_at=11.5, rationale="ok")
    gone = Verdict(name="removed-judge", passed=True, trace_id="t1", created_at=12.0)
    metric = Verdict(name="tokens", value=12, trace_id="t2", created_at=13.0)
    labels = [Verdict(name="correct", value=True, passed=True, source=VerdictSource.HUMAN, source_id="ana",
                      trace_id=t, created_at=20.0 + i) for i, t in enumerate(("t1", "t2"))]
    g1 = GoldenSet(name="gs", version=1, judge_name="correct", value_type=ValueType(kind="bool"), created_at=30.0,
                   examples=[GoldenExample(trace_id="t1", label=True, split="train", labelers=("ana",))])
    g2 = g1.model_copy(update={"version": 2, "created_at": 31.0, "note": "added t2", "examples": [
        *g1.examples, GoldenExample(trace_id="t2", label=True, split="test", labelers=("ana",))]})
    return {"run": run, "traces": [t1, t2], "verdicts": [old, new, gone, metric], "retired": {"removed-judge"},
            "labels": labels, "golden": [g1, g2]}


def write_v1_rows(c: Any, content: dict[str, Any], mark: str = "?") -> None:
    """Insert rows exactly as coSTAR 0.1 wrote them (its INSERT statements, its JSON)."""
    def q(sql: str) -> str:
        return sql.replace("?", mark)

    run = content["run"]
    c.execute(q("INSERT INTO runs VALUES (?,?,?,?)"), (run.run_id, run.created_at, run.status, run.model_dump_json()))
    c.execute(q("INSERT INTO scenarios (run_id, scenario_id, source, data) VALUES (?,?,?,?)"),
              (run.run_id, "sc", "suite/sc.yaml", '{"id":"sc","prompt":"What is 6*7?"}'))
    for t in content["traces"]:
        c.execute(q("INSERT INTO traces VALUES (?,?,?,?,?,?,?)"), trace_row(t))
        for row in span_rows(t):
            c.execute(q("INSERT INTO spans VALUES (?,?,?,?,?,?,?,?,?,?,?,?)"), row)
    for v in content["verdicts"]:
        c.execute(q("INSERT INTO verdicts (trace_id, run_id, name, fingerprint, outcome, data, retired) "
                    "VALUES (?,?,?,?,?,?,?)"),
                  (v.trace_id, run.run_id, v.name, v.fingerprint, v.outcome, v.model_dump_json(),
                   int(v.name in content["retired"])))
    for v in content["labels"]:
        c.execute(q("INSERT INTO labels (name, trace_id, labeler, created_at, data) VALUES (?,?,?,?,?)"),
                  (v.name, v.trace_id, v.source_id, v.created_at, v.model_dump_json()))
    for g in content["golden"]:
        c.execute(q("INSERT INTO golden_sets (name, version, judge_name, created_at, size, note, data) "
                    "VALUES (?,?,?,?,?,?,?)"),
                  (g.name, g.version, g.judge_name, g.created_at, len(g.examples), g.note, g.model_dump_json()))


def make_v1_sqlite(root: Path, content: dict[str, Any]) -> None:
    root.mkdir(parents=True)
    (root / "blobs").mkdir()
    conn = sqlite3.connect(root / "costar.db", isolation_level=None)
    conn.executescript(V1_SQLITE_SCHEMA)
    conn.execute("INSERT INTO meta VALUES ('schema_version', ?)", ("1",))
    conn.execute("BEGIN")
    write_v1_rows(conn, content)
    conn.execute("COMMIT")
    conn.close()


def check_reads_back(store: Any, content: dict[str, Any]) -> None:
    run = content["run"]
    assert store.schema_version() == SCHEMA_VERSION
    assert store.get_run(run.run_id) == run
    assert store.list_runs() == [run]
    [scenario] = store.load_scenarios(run.run_id)
    assert (scenario.id, str(scenario.source)) == ("sc", "suite/sc.yaml")
    for t in content["traces"]:
        assert store.get_trace(t.trace_id) == t
    assert store.get_traces(["t2", "t1"]) == content["traces"][::-1]
    assert store.trace_ids(run.run_id) == ["t1", "t2"]
    assert store.count_spans("t1") == 2
    assert store.get_span("t1", "s1") == content["traces"][0].spans[1]
    assert store.verdicts(run_id=run.run_id, latest=False) == content["verdicts"]
    # the newest verdict per judge, without the retired one
    assert store.verdicts(run_id=run.run_id) == [content["verdicts"][1], content["verdicts"][3]]
    assert store.latest_fingerprints(["t1"]) == {("t1", "correct"): "fp2", ("t1", "removed-judge"): None}
    assert store.find_verdict("t1", "fp1", "correct") == content["verdicts"][0]
    assert store.labels(name="correct") == content["labels"]
    assert [store.golden_set("gs", v) for v in (1, 2)] == content["golden"]
    assert [i.version for i in store.golden_sets("gs")] == [1, 2]


def test_sqlite_store_of_schema_1_is_upgraded_and_reads_back_every_row(tmp_path: Path) -> None:
    content = v1_content()
    root = tmp_path / "old"
    make_v1_sqlite(root, content)
    with SQLiteStore(root) as store:
        check_reads_back(store, content)
        with store._read() as c:
            digests = [r[0] for r in c.execute("SELECT digest FROM verdicts ORDER BY id")]
        assert digests == [verdict_digest(v.model_dump_json()) for v in content["verdicts"]]
        with store._read() as c:  # schema 7: spans moved to a rowid table, its index kept
            spans_sql = c.execute("SELECT sql FROM sqlite_master WHERE name='spans'").fetchone()[0]
            indexes = {r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE tbl_name='spans' "
                                               "AND type='index'")}
        assert "WITHOUT ROWID" not in spans_sql
        assert "spans_id" in indexes
        # and it is a normal store from now on
        store.write_verdicts([Verdict(name="correct", passed=True, trace_id="t2")])
        assert len(store.verdicts(trace_ids=["t2"])) == 2


def test_postgres_store_of_schema_1_is_upgraded_and_reads_back_every_row(pg_empty_url: str, tmp_path: Path) -> None:
    import psycopg

    content = v1_content()
    with psycopg.connect(pg_empty_url, autocommit=False) as conn:
        for statement in MIGRATIONS[0].postgresql:
            conn.execute(statement)
        conn.execute("INSERT INTO meta VALUES ('schema_version', '1')")
        write_v1_rows(conn, content, mark="%s")
    from costar.store.postgres import PostgresStore

    with PostgresStore(pg_empty_url, local_dir=tmp_path / "local") as store:
        check_reads_back(store, content)


def test_a_store_from_a_newer_costar_is_refused_in_one_line(tmp_path: Path, store: Any) -> None:
    with store._write() as c:
        c.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
    again: Any = type(store)
    with pytest.raises(StoreError) as err:
        if store.backend == "sqlite":
            again(store.root)
        else:
            again(store.url, local_dir=store.root)
    assert "newer coSTAR (schema 99" in str(err.value)
    assert "upgrade coSTAR" in str(err.value)
    assert "\n" not in str(err.value)


def test_read_only_commands_ask_for_migrate_and_migrate_reports_from_to(tmp_path: Path) -> None:
    content = v1_content()
    root = tmp_path / "old"
    make_v1_sqlite(root, content)
    env = child_env()
    runs = subprocess.run([*costar_cmd(), "runs", "--store", str(root)], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=120)
    assert runs.returncode == 2, runs.stdout + runs.stderr
    assert "costar store migrate" in runs.stderr
    assert "Traceback" not in runs.stderr
    with sqlite3.connect(root / "costar.db") as conn:  # the read-only command changed nothing
        assert conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] == "1"
    done = subprocess.run([*costar_cmd(), "store", "migrate", str(root)], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"schema 1 → {SCHEMA_VERSION}" in done.stdout
    again = subprocess.run([*costar_cmd(), "store", "migrate", str(root)], capture_output=True, text=True,
                           env=env, cwd=tmp_path, timeout=120)
    assert f"already at schema {SCHEMA_VERSION}" in again.stdout
    runs = subprocess.run([*costar_cmd(), "runs", "--store", str(root)], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=120)
    assert runs.returncode == 0, runs.stderr
    assert content["run"].run_id in runs.stdout
    with SQLiteStore(root, create=False) as store:
        check_reads_back(store, content)


def test_migrate_refuses_a_folder_without_a_store(tmp_path: Path) -> None:
    res = subprocess.run([*costar_cmd(), "store", "migrate", str(tmp_path / "nothing")], capture_output=True,
                         text=True, env=child_env(), cwd=tmp_path, timeout=120)
    assert res.returncode == 2
    assert "no coSTAR store at" in res.stderr
    assert not (tmp_path / "nothing").exists()


def test_empty_database_gets_the_schema_from_migrate_and_not_from_a_read(pg_empty_url: str, pg_cluster: Any,
                                                                         tmp_path: Path) -> None:
    env = child_env()
    look = subprocess.run([*costar_cmd(), "runs", "--store", pg_empty_url], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=120)
    assert look.returncode == 2
    assert "no coSTAR store in" in look.stderr
    assert "costar store migrate" in look.stderr
    assert pg_cluster.password not in look.stderr  # a URL is shown without its password
    made = subprocess.run([*costar_cmd(), "store", "migrate", pg_empty_url], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=120)
    assert made.returncode == 0, made.stderr
    assert f"schema 0 → {SCHEMA_VERSION}" in made.stdout


def test_concurrent_openers_of_an_old_store_migrate_it_once(pg_empty_url: str, tmp_path: Path) -> None:
    import psycopg

    content = v1_content()
    with psycopg.connect(pg_empty_url) as conn:
        for statement in MIGRATIONS[0].postgresql:
            conn.execute(statement)
        conn.execute("INSERT INTO meta VALUES ('schema_version', '1')")
        write_v1_rows(conn, content, mark="%s")
    code = textwrap.dedent(f"""
        from costar.store.postgres import PostgresStore
        st = PostgresStore({pg_empty_url!r}, local_dir={str(tmp_path / 'l')!r})
        print(st.schema_version(), len(st.verdicts(latest=False)))
        st.close()
    """)
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(4)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], outs
    assert {o[0].strip() for o in outs} == {f"{SCHEMA_VERSION} {len(content['verdicts'])}"}


def test_postgres_blobs_of_schema_7_get_a_stored_time_of_the_migration(pg_empty_url: str, tmp_path: Path) -> None:
    """Schema 8: blobs record when they were stored, and retention spares recent ones. Blobs from
    before count as stored by the migration: none is deleted until a grace period after it."""
    import hashlib
    import time

    import psycopg

    data = b"an artifact stored by an older coSTAR"
    sha = hashlib.sha256(data).hexdigest()
    with psycopg.connect(pg_empty_url) as conn:
        for step in MIGRATIONS[:7]:
            for statement in step.postgresql:
                conn.execute(statement)
        conn.execute("INSERT INTO meta VALUES ('schema_version', '7')")
        conn.execute("INSERT INTO blobs (sha256, size, chunks) VALUES (%s, %s, 1)", (sha, len(data)))
        conn.execute("INSERT INTO blob_chunks (sha256, seq, data) VALUES (%s, 0, %s)", (sha, data))
    from costar.store.postgres import PostgresStore

    before = time.time()
    with PostgresStore(pg_empty_url, local_dir=tmp_path / "local") as store:
        assert store.schema_version() == SCHEMA_VERSION
        assert store.get_blob(sha) == data
        assert store.blobs_stored_before([sha], before - 60) == []
        assert store.blobs_stored_before([sha], time.time() + 60) == [sha]
        assert store.delete_blob(sha, stored_before=before - 60) is False
        assert store.put_blob(data) == sha  # an existing blob is stamped again, not stored twice
        with store._read() as c:
            assert c.execute("SELECT count(*) FROM blob_chunks").fetchone()[0] == 1
