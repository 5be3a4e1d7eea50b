"""The PostgreSQL store: choosing it by URL, bad URLs, many writers at once, large traces, and
text PostgreSQL cannot hold natively (NUL). Contract tests run on both backends via ``store``."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest

from costar import api
from costar.align.labeling import new_label
from costar.errors import StoreError
from costar.labels import GoldenExample, GoldenSet, GoldenSetError, LabelConflictError
from costar.store.base import Run, SpanQuery
from costar.store.pg_cluster import free_port
from costar.store.postgres import PostgresStore, glob_to_regex
from costar.trace.formats.jsonl import write_jsonl
from costar.trace.model import Span, SpanKind, SpanStatus, StatusCode, Trace
from costar.verdict import Verdict
from tests.support.cli import child_env, costar_cmd


def wide_trace(tid: str, n: int, run_id: str | None = None) -> Trace:
    spans = [Span(trace_id=tid, span_id="root", name="agent", kind=SpanKind.AGENT, start_ns=0, end_ns=n + 1)]
    spans += [Span(trace_id=tid, span_id=f"s{i}", parent_id="root", name=f"{'chat' if i % 3 else 'tool'} {i}",
                   kind=SpanKind.LLM if i % 3 else SpanKind.TOOL, start_ns=i, end_ns=i + 1,
                   status=SpanStatus(code=StatusCode.ERROR if i % 100 == 0 else StatusCode.OK),
                   attributes={"i": i}) for i in range(1, n)]
    return Trace(trace_id=tid, run_id=run_id, scenario_id="s", trial=0, start_ns=0, end_ns=n + 1, spans=spans)


# ----------------------------------------------------------------------------- choosing the store


def bad_urls(cluster: Any) -> dict[str, tuple[str, str]]:
    return {
        "unreachable": (f"postgresql://postgres:x@127.0.0.1:{free_port()}/costar", "cannot reach the PostgreSQL server"),
        "wrong password": (cluster.url("postgres", password="wrong"), "refused the password"),
        "no such database": (cluster.url("no_such_db"), "does not exist; create it"),
        "unsupported scheme": ("mysql://u@h/db", "unsupported store URL scheme 'mysql'"),
        "malformed": ("postgresql://u@h:notaport/db", "not a valid PostgreSQL URL"),
    }


def test_bad_store_urls_give_one_line_errors_that_name_the_fix(pg_cluster: Any, tmp_path: Path) -> None:
    for case, (url, expected) in bad_urls(pg_cluster).items():
        with pytest.raises(StoreError) as err:
            api.open_store(url, local_dir=tmp_path)
        message = str(err.value)
        assert expected in message, (case, message)
        assert "\n" not in message, case
        assert pg_cluster.password not in message, case
        assert ":wrong@" not in message, case
    # the CLI: exit 2, one line, no traceback, for reading and for writing commands
    cases = bad_urls(pg_cluster)
    for case in ("unreachable", "wrong password", "no such database"):
        url, expected = cases[case]
        for command in (["runs", "--store", url], ["store", "migrate", url]):
            res = subprocess.run([*costar_cmd(), *command], capture_output=True, text=True, env=child_env(),
                                 cwd=tmp_path, timeout=120)
            assert res.returncode == 2, (case, command, res.stderr)
            assert res.stderr.startswith("error: "), (case, res.stderr)
            assert expected in res.stderr, (case, res.stderr)
            assert len(res.stderr.strip().splitlines()) == 1, (case, res.stderr)
    assert not (tmp_path / ".costar").exists()


def test_store_is_chosen_by_costar_yaml_then_costar_store_then_store_flag(pg_url: str, pg_cluster: Any,
                                                                          tmp_path: Path) -> None:
    trace = wide_trace("ab" * 16, 5)
    write_jsonl([trace], tmp_path / "t.jsonl")
    (tmp_path / "costar.yaml").write_text(f"store: {pg_url}\n")
    env = child_env()
    env.pop("COSTAR_STORE", None)
    imported = subprocess.run([*costar_cmd(), "traces", "import", "t.jsonl"], capture_output=True, text=True,
                              env=env, cwd=tmp_path, timeout=120)
    assert imported.returncode == 0, imported.stderr
    with PostgresStore(pg_url, local_dir=tmp_path / ".costar") as st:
        assert st.get_trace(trace.trace_id).spans == trace.spans
    assert not (tmp_path / ".costar" / "costar.db").exists()  # the yaml's database, not a folder store
    listed = subprocess.run([*costar_cmd(), "store", "info", "--json"], capture_output=True, text=True, env=env,
                            cwd=tmp_path, timeout=120)
    assert '"backend": "postgresql"' in listed.stdout
    assert '"traces": 1' in listed.stdout
    assert pg_cluster.password not in listed.stdout
    # COSTAR_STORE wins over costar.yaml; --store wins over both
    other = tmp_path / "elsewhere"
    env["COSTAR_STORE"] = str(other)
    again = subprocess.run([*costar_cmd(), "traces", "import", "t.jsonl"], capture_output=True, text=True,
                           env=env, cwd=tmp_path, timeout=120)
    assert again.returncode == 0, again.stderr
    assert (other / "costar.db").is_file()
    flag = subprocess.run([*costar_cmd(), "traces", "list", "latest", "--store", pg_url], capture_output=True,
                          text=True, env=env, cwd=tmp_path, timeout=120)
    assert flag.returncode == 0, flag.stderr
    assert trace.trace_id in flag.stdout


def test_library_opens_by_url_and_keeps_local_state_in_a_local_folder(pg_url: str, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COSTAR_STORE", pg_url)
    st: Any = api.open_store()
    try:
        assert isinstance(st, PostgresStore)
        assert st.root == Path(".costar")
        user = st.location.removeprefix("postgresql://").split("@")[0]
        assert user == "postgres"  # shown without its password
        sha = st.put_blob(b"bytes")
        assert st.blob_path(sha).resolve() == (tmp_path / ".costar" / "cache" / "blobs" / sha[:2] / sha[2:])
    finally:
        st.close()


# ----------------------------------------------------------------------------- many writers


_WRITER = textwrap.dedent("""
    import sys
    from costar.store.postgres import PostgresStore
    from costar.trace.model import Span, SpanKind, Trace
    from costar.verdict import Verdict
    url, local, me, n_own, shared = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    st = PostgresStore(url, local_dir=local)

    def trace(tid, n, trial):
        spans = [Span(trace_id=tid, span_id=f"{tid}-{i}", name=f"step {i}", kind=SpanKind.TOOL, start_ns=i,
                      end_ns=i + 1, attributes={"writer": me}) for i in range(n)]
        return Trace(trace_id=tid, run_id="r", scenario_id="s", trial=trial, spans=spans)

    for k in range(n_own):
        tid = f"w{me}-{k}"
        # batches that overlap with every other writer's: the shared traces are rewritten by all
        st.write_traces([trace(tid, 7, 1000 * (me + 1) + k), *[trace(f"shared-{j}", 9, j) for j in range(shared)]])
        st.write_verdicts([Verdict(name="j", passed=True, trace_id=tid)], "r")
    st.close()
    print("done")
""")


def test_concurrent_writers_from_several_processes_lose_and_duplicate_nothing(pg_url: str, tmp_path: Path) -> None:
    writers, own, shared = 4, 15, 3
    with PostgresStore(pg_url, local_dir=tmp_path / "l") as st:
        st.create_run(Run(run_id="r"))
        procs = [subprocess.Popen([sys.executable, "-c", _WRITER, pg_url, str(tmp_path / "l"), str(w), str(own),
                                   str(shared)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for w in range(writers)]
        outs = [p.communicate(timeout=300) for p in procs]
        assert [p.returncode for p in procs] == [0] * writers, [o[1][-2000:] for o in outs]
        ids = st.trace_ids("r")
        assert len(ids) == len(set(ids)) == writers * own + shared
        for tid in ids:
            n = 9 if tid.startswith("shared-") else 7
            spans = st.get_trace(tid).spans
            assert [s.name for s in spans] == [f"step {i}" for i in range(n)], tid
            assert len({s.attributes["writer"] for s in spans}) == 1, tid  # one writer's version, whole
        assert len(st.verdicts(run_id="r", latest=False)) == writers * own


def test_concurrent_golden_set_versions_and_labels_have_one_winner(pg_url: str, tmp_path: Path) -> None:
    with PostgresStore(pg_url, local_dir=tmp_path / "l", max_connections=10) as st:
        st.write_traces([Trace(trace_id=f"t{i}", scenario_id="s", trial=i) for i in range(3)])
        base = GoldenSet(name="gs", judge_name="j", examples=[GoldenExample(trace_id="t0", label=True, split="train")])
        st.write_golden_set(base)
        results: list[str] = []
        barrier = threading.Barrier(6)

        def next_version(i: int) -> None:
            barrier.wait()
            try:
                st.write_golden_set(base.model_copy(update={"version": 2, "note": f"editor {i}"}))
                results.append("won")
            except GoldenSetError:
                results.append("lost")

        def label(i: int) -> None:
            barrier.wait()
            try:
                st.write_labels([new_label("t1", "j", i % 2 == 0, labeler="ana")])
                results.append("labeled")
            except LabelConflictError:
                results.append("conflict")

        threads = [threading.Thread(target=next_version, args=(i,)) for i in range(3)]
        threads += [threading.Thread(target=label, args=(i,)) for i in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert sorted(r for r in results if r in ("won", "lost")) == ["lost", "lost", "won"]
        assert [i.version for i in st.golden_sets("gs")] == [1, 2]
        stored = st.labels(name="j", trace_ids=["t1"])
        assert len(stored) == 1
        # the labels that agree with the stored one are no conflict; the others are
        expected = {"labeled" if (i % 2 == 0) == stored[0].value else "conflict" for i in range(3)}
        assert {r for r in results if r in ("labeled", "conflict")} == expected


# ----------------------------------------------------------------------------- contract: both backends


def test_large_trace_is_read_page_by_page(store: Any) -> None:
    n = 20_000
    trace = wide_trace("big", n)
    store.write_trace(trace)
    assert store.count_spans("big") == n
    seen: list[str] = []
    offset = 0
    while True:
        page = store.query_spans("big", SpanQuery(offset=offset, limit=1000))
        if not page:
            break
        assert len(page) <= 1000
        seen += [s.span_id for s in page]
        offset += len(page)
    assert seen == [s.span_id for s in trace.spans]  # every span once, in recorded order
    tools = store.query_spans("big", SpanQuery(kind=SpanKind.TOOL, offset=10, limit=5))
    assert [s.name for s in tools] == [f"tool {i}" for i in range(33, 48, 3)]
    assert store.count_spans("big", SpanQuery(status=StatusCode.ERROR)) == len(range(100, n, 100))
    assert store.count_spans("big", SpanQuery(name="tool 1?9")) == len([i for i in range(100, 200) if i % 10 == 9
                                                                          and i % 3 == 0])
    assert store.get_span("big", "s19999").attributes == {"i": 19999}


def test_text_postgres_cannot_hold_natively_round_trips(store: Any) -> None:
    weird = "a\x00b\uffffc\uffff0d\x00"  # NUL, the escape character, and what an escape looks like
    run = Run(run_id="r\x00un", description=weird)
    store.create_run(run)
    tid = "t\x00" + "\uffff"
    trace = Trace(trace_id=tid, run_id=run.run_id, scenario_id="s\x00", trial=0, output=weird,
                  spans=[Span(trace_id=tid, span_id="s\x001", parent_id="p\uffff", name=f"name {weird}",
                              kind=SpanKind.LLM, start_ns=1, end_ns=2,
                              status=SpanStatus(code=StatusCode.ERROR, message=weird),
                              attributes={weird: weird, "list": [weird]})])
    store.write_trace(trace)
    assert store.get_trace(tid) == trace
    assert store.get_run("r\x00un") == run
    assert store.trace_ids(run.run_id) == [tid]
    assert store.get_span(tid, "s\x001") == trace.spans[0]
    assert store.query_spans(tid, SpanQuery(parent_id="p\uffff")) == trace.spans
    store.write_verdicts([Verdict(name="j", passed=True, trace_id=tid, rationale=weird)])
    assert store.verdicts(trace_ids=[tid])[0].rationale == weird
    store.write_labels([new_label(tid, "j", True, labeler="ana\x00", rationale=weird)])
    assert store.labels(trace_ids=[tid])[0].source_id == "ana\x00"


@pytest.mark.parametrize("pattern", ["tool *", "chat ?", "*1", "[ct]*", "[^c]*", "tool [0-3]*", "chat 1[!x]",
                                     "*[*]*", "[]x]*", "a.b", "chat (1)", "[abc", "*\\*", "a_b", "a%b", "a?b",
                                     "t\\?"])
def test_span_name_globs_mean_the_same_on_both_backends(store: Any, pattern: str) -> None:
    import sqlite3

    names = ["tool 1", "tool 33", "chat 1", "chat 12", "chat 1!", "a.b", "axb", "chat (1)", "x*y", "]x", "[abc",
             "t\\*", "a_b", "a%b", "t\\x"]
    tid = "globs"
    store.write_trace(Trace(trace_id=tid, scenario_id="s", trial=0, spans=[
        Span(trace_id=tid, span_id=f"s{i}", name=n, kind=SpanKind.TOOL, start_ns=i) for i, n in enumerate(names)]))
    got = [s.name for s in store.query_spans(tid, SpanQuery(name=pattern, limit=100))]
    # SQLite's GLOB is the reference
    db = sqlite3.connect(":memory:")
    expected = [n for n in names if db.execute("SELECT ? GLOB ?", (n, pattern)).fetchone()[0]]
    assert got == expected, (pattern, glob_to_regex(pattern))


def test_a_trace_read_while_it_is_rewritten_is_one_version_whole(store: Any) -> None:
    """A reader never gets one version's record with another version's spans."""

    def version(k: int) -> Trace:
        spans = [Span(trace_id="live", span_id=f"s{i}", name=f"v{k}", kind=SpanKind.TOOL, start_ns=i)
                 for i in range(1 + k % 7 * 40)]
        return Trace(trace_id="live", scenario_id="s", trial=0, output=f"v{k}", spans=spans)

    store.write_trace(version(0))
    stop = threading.Event()
    errors: list[BaseException] = []

    def rewrite() -> None:
        k = 0
        try:
            while not stop.is_set():
                k += 1
                store.write_trace(version(k))
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    writer = threading.Thread(target=rewrite)
    writer.start()
    try:
        for _ in range(300):
            for t in (store.get_trace("live"), store.get_traces(["live"])[0]):
                k = int(str(t.output)[1:])
                assert len(t.spans) == 1 + k % 7 * 40
                assert {s.name for s in t.spans} == {f"v{k}"}
    finally:
        stop.set()
        writer.join(timeout=60)
    assert not errors


def test_costar_run_assess_and_report_on_a_postgres_store_from_costar_yaml(pg_url: str, tmp_path: Path) -> None:
    import json as _json

    (tmp_path / "scenarios").mkdir()
    (tmp_path / "agent.py").write_text(textwrap.dedent("""
        import sys
        prompt = sys.stdin.read()
        open("answer.txt", "w").write(prompt.upper())
        print("answer: " + prompt)
    """))
    (tmp_path / "scenarios" / "suite.yaml").write_text(textwrap.dedent("""
        - id: green
          prompt: hello
          trials: 2
          expectations:
            checks:
              - output_contains: "answer: hello"
              - file_exists: answer.txt
    """))
    (tmp_path / "costar.yaml").write_text(textwrap.dedent(f"""
        suite: scenarios
        store: {pg_url}
        local_dir: state
        agent:
          type: command
          command: [{_json.dumps(sys.executable)}, agent.py]
    """))
    env = child_env()
    env.pop("COSTAR_STORE", None)

    def costar(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*costar_cmd(), *args], capture_output=True, text=True, env=env, cwd=tmp_path,
                              timeout=180)

    ran = costar("run", "--html", "report.html")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "answer.txt" in (tmp_path / "report.html").read_text()
    assessed = costar("assess", "latest")
    assert assessed.returncode == 0, assessed.stderr
    assert "0 verdicts computed" in assessed.stdout
    assert "2/2 trials passed" in assessed.stdout
    assert costar("runs").stdout.count("finished") == 1
    assert not (tmp_path / ".costar").exists()  # local state went to local_dir, records to the database
    with PostgresStore(pg_url, local_dir=tmp_path / "state") as st:
        [trace, _] = list(st.iter_traces())
        [artifact] = trace.artifacts
        assert st.get_blob(artifact.sha256) == b"HELLO"


def test_a_forked_worker_gets_its_own_connections(pg_url: str, tmp_path: Path) -> None:
    import multiprocessing

    with PostgresStore(pg_url, local_dir=tmp_path / "l") as st:
        st.write_trace(wide_trace("parent-1", 3))
        ctx = multiprocessing.get_context("fork")

        def child(n: int) -> None:  # uses the store object inherited through the fork
            st.write_trace(wide_trace(f"child-{n}", 4))
            assert st.get_trace("parent-1").spans[0].name == "agent"
            st.close()

        procs = [ctx.Process(target=child, args=(n,)) for n in range(2)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(timeout=60)
        assert [p.exitcode for p in procs] == [0, 0]
        # the parent's own connections still work after its children exited
        st.write_trace(wide_trace("parent-2", 3))
        assert sorted(st.trace_ids()) == ["child-0", "child-1", "parent-1", "parent-2"]
