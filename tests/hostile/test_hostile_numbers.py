"""Numbers from untrusted producers are bounded where they enter; a failing trace writer stops the run
cleanly and marks it failed; a failed import leaves nothing behind."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from costar.store.sqlite import SQLiteStore
from costar.trace.model import (
    CLAMPED,
    INT64_MAX,
    MAX_COST_USD,
    AgentInfo,
    Span,
    SpanKind,
    StatusCode,
    Totals,
    Trace,
    TraceStatus,
    make_span,
)
from costar.trace.recorder import Recording
from tests.support.cli import costar as run_costar

BIG = 2**63

# Posts (OTLP JSON) one span whose times are beyond what a 64-bit integer column holds, with an
# infinite cost and a token count that overflows when summed, then answers.
BAD_SPAN_AGENT = f"""
import os, sys, httpx
url = os.environ["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"]
span = {{"traceId": "ab" * 16, "spanId": "cd" * 8, "name": "chat evil", "kind": 3,
        "startTimeUnixNano": "{BIG}", "endTimeUnixNano": "{2**64 - 1}",
        "events": [{{"timeUnixNano": "{2**64 - 1}", "name": "late"}}],
        "attributes": [{{"key": "gen_ai.operation.name", "value": {{"stringValue": "chat"}}}},
                       {{"key": "gen_ai.usage.input_tokens", "value": {{"intValue": "{2**63 - 1}"}}}},
                       {{"key": "costar.usage.cost_usd", "value": {{"doubleValue": "Infinity"}}}}]}}
second = dict(span, spanId="ef" * 8, name="chat evil 2")
r = httpx.post(url, json={{"resourceSpans": [{{"scopeSpans": [{{"spans": [span, second]}}]}}]}})
print("posted", r.status_code, sys.stdin.read())
"""


def costar(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return run_costar(*args, cwd=cwd, timeout=180)


def make_project(root: Path, agent: str, scenario: str, extra: str = "") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "agent.py").write_text(textwrap.dedent(agent), encoding="utf-8")
    (root / "s.yaml").write_text(textwrap.dedent(scenario), encoding="utf-8")
    (root / "costar.yaml").write_text(
        f"suite: s.yaml\nagent:\n  type: command\n  command: [{json.dumps(sys.executable)}, agent.py]\n{extra}",
        encoding="utf-8")
    return root


def test_a_span_with_times_beyond_64_bits_does_not_take_down_the_run(tmp_path: Path) -> None:
    proj = make_project(tmp_path, BAD_SPAN_AGENT, """
        id: bad-span
        prompt: hi
        trials: 3
        expectations: {checks: [{output_contains: "posted 200"}]}
        """)
    res = costar("run", "--no-progress", cwd=proj)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "Traceback" not in res.stderr
    st = SQLiteStore(proj / ".costar")
    run = st.get_run("latest")
    assert run.status == "finished"
    assert run.error is None
    traces = list(st.iter_traces(run.run_id))
    assert sorted(t.trial for t in traces) == [0, 1, 2]
    for t in traces:
        evil = next(s for s in t.spans if s.name == "chat evil")
        assert evil.start_ns == INT64_MAX
        assert evil.end_ns == INT64_MAX
        assert evil.attributes[CLAMPED] == ["start_ns", "end_ns"]
        assert evil.events[0].time_ns == INT64_MAX
        assert evil.events[0].attributes[CLAMPED] == ["time_ns"]
        # An infinite cost counts as the most a trace may cost: max_cost fails, sums over runs stay finite.
        assert t.totals.cost_usd == MAX_COST_USD
        # Two spans of 2^63-1 tokens each: the sum is clamped and named.
        assert t.totals.input_tokens == INT64_MAX
        assert "totals.input_tokens" in t.metadata[CLAMPED]
    # Resuming such a run works too (nothing left to do).
    again = costar("run", "--no-progress", "--resume", "latest", cwd=proj)
    assert again.returncode == 0, again.stderr
    assert "Traceback" not in again.stderr, again.stderr


def test_a_failing_trace_writer_marks_the_run_failed_and_resume_finishes_it(tmp_path: Path) -> None:
    proj = make_project(tmp_path, """
        import sys
        print("done " + sys.stdin.read())
        """, """
        id: w
        prompt: x
        trials: 4
        expectations: {checks: [{output_contains: done}]}
        """, "concurrency: 1\n")
    with SQLiteStore(proj / ".costar") as created:
        created.migrate()  # a store exists once it is written
    db = proj / ".costar" / "costar.db"
    with sqlite3.connect(db) as c:  # a real SQLite failure on the second trial's write
        c.execute("CREATE TRIGGER fail_trial_1 BEFORE INSERT ON traces WHEN NEW.trial = 1 "
                  "BEGIN SELECT RAISE(ABORT, 'simulated I/O failure'); END")
    res = costar("run", "--no-progress", cwd=proj)
    assert res.returncode == 2, res.stdout + res.stderr
    err = res.stderr.strip()
    assert err.startswith("error: storing the traces failed"), err
    assert len(err.splitlines()) == 1, err
    assert "simulated I/O failure" in err
    assert "costar run --resume" in err
    st = SQLiteStore(proj / ".costar")
    run = st.get_run("latest")
    assert run.status == "failed"
    assert "simulated I/O failure" in (run.error or "")
    # Trial 0 is stored unless it shared trial 1's batch (one transaction); the rest never ran or was dropped.
    assert {t for _, t in st.finished_trials(run.run_id)} <= {0}

    runs = costar("runs", cwd=proj)
    assert "failed" in runs.stdout, runs.stdout
    assert "simulated I/O failure" in runs.stdout, runs.stdout
    report = costar("report", "latest", cwd=proj)
    assert "run FAILED: storing traces failed" in report.stdout, report.stdout
    html = costar("report", "latest", "--html", "r.html", cwd=proj)
    assert html.returncode == 1
    assert "run FAILED" in (proj / "r.html").read_text(encoding="utf-8")

    with sqlite3.connect(db) as c:
        c.execute("DROP TRIGGER fail_trial_1")
    resumed = costar("run", "--no-progress", "--resume", "latest", cwd=proj)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    run = st.get_run(run.run_id)
    assert run.status == "finished"
    assert run.error is None
    assert {t for _, t in st.finished_trials(run.run_id)} == {0, 1, 2, 3}


@pytest.mark.parametrize("fmt", ["jsonl", "tau-bench"])
def test_an_import_with_a_huge_trial_is_one_line_and_leaves_no_run(tmp_path: Path, fmt: str) -> None:
    if fmt == "jsonl":
        good = Trace(trace_id="a" * 32).model_dump(mode="json")
        bad = {**good, "trace_id": "b" * 32, "trial": 10**30}
        (tmp_path / "t.jsonl").write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n", encoding="utf-8")
        name = "t.jsonl"
    else:
        runs = [{"task_id": 1, "trial": 10**30, "reward": 1.0, "info": {},
                 "traj": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}]
        (tmp_path / "m-airline.json").write_text(json.dumps(runs), encoding="utf-8")
        name = "m-airline.json"
    res = costar("traces", "import", name, cwd=tmp_path)
    assert res.returncode == 2, res.stdout + res.stderr
    err = res.stderr.strip()
    assert err.startswith("error: "), err
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in res.stderr, err
    assert "trial" in err, err
    assert "2147483647" in err, err
    if (tmp_path / ".costar").exists():
        assert SQLiteStore(tmp_path / ".costar").list_runs() == []


def test_an_import_whose_write_fails_leaves_no_empty_run(tmp_path: Path) -> None:
    traces = [Trace(trace_id=f"{i:032x}", scenario_id="s", trial=i).model_dump(mode="json") for i in range(3)]
    (tmp_path / "t.jsonl").write_text("".join(json.dumps(t) + "\n" for t in traces), encoding="utf-8")
    with SQLiteStore(tmp_path / ".costar") as created:
        created.migrate()  # a store exists once it is written
    with sqlite3.connect(tmp_path / ".costar" / "costar.db") as c:
        c.execute("CREATE TRIGGER no_traces BEFORE INSERT ON traces BEGIN SELECT RAISE(ABORT, 'disk gone'); END")
    res = costar("traces", "import", "t.jsonl", cwd=tmp_path)
    assert res.returncode == 2, res.stderr
    assert "disk gone" in res.stderr, res.stderr
    st = SQLiteStore(tmp_path / ".costar")
    assert st.list_runs() == []
    assert st.trace_ids() == []
    with sqlite3.connect(tmp_path / ".costar" / "costar.db") as c:
        c.execute("DROP TRIGGER no_traces")
    ok = costar("traces", "import", "t.jsonl", cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert len(st.list_runs()) == 1
    assert len(st.trace_ids()) == 3


def test_whatever_enters_through_python_goes_through_the_same_bounds(store: SQLiteStore) -> None:
    """SDK capture, the recorder and library code build spans without validation; the store's
    sanitizer bounds them all the same."""
    rec = Recording("agent")
    with rec, rec.start_span("llm", SpanKind.LLM, {"gen_ai.usage.input_tokens": 10**30,
                                              "costar.usage.cost_usd": float("nan"),
                                              "huge": 10**40, "neg": -(10**40), "inf": float("-inf")}) as sp:
        sp.start_ns = 2**70  # e.g. a clock read in the wrong unit
    deep: list = []
    node = deep
    for _ in range(10_000):
        node.append([])
        node = node[0]
    spans = [*rec.spans(), make_span("t" * 32, "d" * 16, None, "deep", SpanKind.TOOL, -5, 2**64, StatusCode.OK,
                                     None, {"deep": deep}, [])]
    trace = Trace.model_construct(trace_id="t" * 32, trial=10**30, start_ns=2**65, end_ns=0, spans=spans,
                                  totals=Totals(cost_usd=float("inf"), input_tokens=10**30), metadata={},
                                  artifacts=[], agent=AgentInfo(), status=TraceStatus.OK, run_id=None,
                                  scenario_id=None, error=None, input=None, output=None)
    store.write_trace(trace)
    got = store.get_trace("t" * 32)
    assert got.trial == 2**31 - 1
    assert got.start_ns == INT64_MAX
    assert got.metadata[CLAMPED] == ["start_ns", "trial", "totals.input_tokens", "totals.cost_usd"]
    assert got.totals.cost_usd == 0.0
    assert got.totals.input_tokens == INT64_MAX
    llm = next(s for s in got.spans if s.name == "llm")
    assert llm.start_ns == INT64_MAX
    assert llm.attributes[CLAMPED] == ["start_ns"]
    assert llm.attributes["huge"] == str(10**40)
    assert llm.attributes["neg"] == str(-(10**40))
    assert llm.attributes["inf"] == "-inf"
    assert llm.attributes["gen_ai.usage.input_tokens"] == str(10**30)
    cut = next(s for s in got.spans if s.name == "deep")
    assert (cut.start_ns, cut.end_ns) == (0, INT64_MAX)
    assert "nested deeper than" in json.dumps(cut.attributes)


def test_validated_models_clamp_and_flag_times() -> None:
    s = Span(trace_id="a", span_id="b", name="x", start_ns=BIG, end_ns=-1)
    assert (s.start_ns, s.end_ns, s.attributes[CLAMPED]) == (INT64_MAX, 0, ["start_ns", "end_ns"])
    t = Trace(trace_id="a", start_ns=BIG, totals=Totals(latency_s=float("nan")))
    assert t.start_ns == INT64_MAX
    assert t.metadata[CLAMPED] == ["start_ns", "totals.latency_s"]
    with pytest.raises(ValueError, match="trial"):
        Trace(trace_id="a", trial=10**30)
