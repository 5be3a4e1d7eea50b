"""A run is leased by one process; the store keeps one trace per (run, scenario, trial). Every test
taking ``store`` runs on SQLite and on PostgreSQL."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from costar.store.base import DuplicateTrialError, Run
from costar.store.lease import RunLeasedError, hold_run, this_process
from costar.store.migrations import MIGRATIONS
from costar.store.sqlite import SQLiteStore
from costar.trace.model import Span, SpanKind, Trace
from costar.verdict import Verdict, VerdictSource
from tests.support.waiting import wait_for

# The schema just before run leases and the one-trace-per-trial key.
BEFORE = next(m.version for m in MIGRATIONS if m.prepare is not None) - 1


def trace(tid: str, run_id: str = "r", scenario: str = "s", trial: int = 0, start: int = 1) -> Trace:
    return Trace(trace_id=tid, run_id=run_id, scenario_id=scenario, trial=trial, start_ns=start, end_ns=start + 1,
                 spans=[Span(trace_id=tid, span_id=f"{tid}-0", name="agent", kind=SpanKind.AGENT, start_ns=start,
                             end_ns=start + 1)])


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def age_lease(store: Any, run_id: str, seconds: float) -> None:
    """Make the lease's last heartbeat ``seconds`` old (as a holder that stopped renewing would)."""
    with store._write() as c:
        c.execute("UPDATE run_leases SET heartbeat_at = heartbeat_at - ? WHERE run_id=?", (seconds, run_id))


# ----------------------------------------------------------------------------- leases


def test_a_live_holder_keeps_the_run_and_is_named(store: Any) -> None:
    mine, replaced = store.acquire_run(this_process("r1"))
    assert replaced is None
    with pytest.raises(RunLeasedError) as err:
        store.acquire_run(this_process("r1"))
    msg = str(err.value)
    assert f"run r1 is being run by pid {mine.pid} on {mine.host} (since " in msg
    assert "last heartbeat 0 s ago" in msg
    assert "\n" not in msg
    assert store.acquire_run(this_process("r2"))[1] is None  # other runs are free
    store.release_run("r1", mine.token)
    assert store.acquire_run(this_process("r1"))[1] is None


def test_a_dead_holder_on_this_machine_is_taken_over(store: Any) -> None:
    gone = this_process("r").model_copy(update={"pid": dead_pid()})
    old, _ = store.acquire_run(gone)
    mine, replaced = store.acquire_run(this_process("r"))
    assert replaced is not None
    assert f"pid {gone.pid}" in replaced
    assert "is no longer running" in replaced
    assert store.renew_run("r", old.token) is False  # the old holder finds out at its next beat
    assert store.renew_run("r", mine.token) is True
    store.release_run("r", old.token)  # not its lease any more: nothing happens
    assert store.run_holders(["r"])["r"].token == mine.token


def test_a_reused_pid_is_not_mistaken_for_the_holder(store: Any) -> None:
    # Our own pid, but "started" a day earlier: the process that took the lease is gone.
    me = this_process("r")
    store.acquire_run(me.model_copy(update={"process_started": (me.process_started or 0) - 86400}))
    assert "is no longer running" in (store.acquire_run(this_process("r"))[1] or "")


def test_a_holder_on_another_machine_is_stale_only_after_its_heartbeat_stops(store: Any) -> None:
    elsewhere = this_process("r").model_copy(update={"machine": "another-machine", "host": "build-7", "pid": 1})
    store.acquire_run(elsewhere, stale_after_s=30)
    with pytest.raises(RunLeasedError, match="pid 1 on build-7"):
        store.acquire_run(this_process("r"), stale_after_s=30)
    age_lease(store, "r", 31)
    _, replaced = store.acquire_run(this_process("r"), stale_after_s=30)
    assert replaced is not None
    assert "stopped renewing it" in replaced


def test_the_heartbeat_keeps_a_lease_fresh_and_notices_a_takeover(store: Any) -> None:
    lost = threading.Event()
    lease = hold_run(store, "r", heartbeat_s=0.05, on_lost=lost.set)
    try:
        age_lease(store, "r", 1000)
        wait_for(lambda: store.run_holders(["r"])["r"].heartbeat_at > time.time() - 100, timeout=10,
                 what="the heartbeat thread to renew the aged lease")
        with pytest.raises(RunLeasedError):
            store.acquire_run(this_process("r"))
        # another process takes the lease over (say it judged ours stale)
        with store._write() as c:
            c.execute("UPDATE run_leases SET token='someone-else' WHERE run_id='r'")
        assert lost.wait(10)
        assert lease.lost.is_set()
    finally:
        lease.release()
    assert store.run_holders(["r"])["r"].token == "someone-else"  # a lost lease is not released


def test_a_running_run_whose_holder_died_reads_interrupted(store: Any) -> None:
    store.create_run(Run(run_id="alive"))
    store.create_run(Run(run_id="killed"))
    store.create_run(Run(run_id="unleased"))
    store.acquire_run(this_process("alive"))
    store.acquire_run(this_process("killed").model_copy(update={"pid": dead_pid()}))
    status = {r.run_id: r.status for r in store.list_runs()}
    assert status == {"alive": "running", "killed": "interrupted", "unleased": "running"}
    assert store.get_run("killed").status == "interrupted"


# ----------------------------------------------------------------------------- one trace per trial


def test_a_second_trace_of_a_trial_is_refused_and_nothing_of_its_batch_is_written(store: Any) -> None:
    store.create_run(Run(run_id="r"))
    store.write_traces([trace("t1", trial=0), trace("t2", trial=1)])
    with pytest.raises(DuplicateTrialError) as err:
        store.write_traces([trace("t3", trial=2), trace("t4", trial=1)])
    msg = str(err.value)
    assert "trace t4 of run r, scenario 's', trial 1" in msg
    assert "already holds trace t2" in msg
    assert sorted(store.trace_ids("r")) == ["t1", "t2"]  # t3 was not written either
    with pytest.raises(DuplicateTrialError, match=r"trace t6 .* holds trace t5"):
        store.write_traces([trace("t5", trial=7), trace("t6", trial=7)])
    # the same trace written again is fine (a re-import, a late amendment)
    store.write_traces([trace("t1", trial=0, start=5)])
    assert store.get_trace("t1").start_ns == 5
    # other runs, other scenarios and traces without a scenario never collide
    store.write_traces([trace("u1", run_id="other", trial=0), trace("u2", scenario="s2", trial=0)])
    store.write_traces([Trace(trace_id="n1", run_id="r"), Trace(trace_id="n2", run_id="r")])
    assert len(store.trace_ids("r")) == 5


def test_the_unique_key_itself_refuses_a_duplicate_the_check_did_not_see(store: Any) -> None:
    """Two writers at once both pass the check; the database's key refuses the second one."""
    store.create_run(Run(run_id="r"))
    store.write_traces([trace("t1")])
    store._refuse_second_traces = lambda c, traces: None  # as if the row arrived after the check
    with pytest.raises(DuplicateTrialError, match="refused a trace of a \\(run, scenario, trial\\)"):
        store.write_traces([trace("t2")])
    assert store.trace_ids("r") == ["t1"]


# ----------------------------------------------------------------------------- the migration


def _old_schema_sqlite(path: Path) -> None:
    path.mkdir()
    conn = sqlite3.connect(path / "costar.db")
    for step in MIGRATIONS[:BEFORE]:
        for statement in step.sqlite:
            conn.execute(statement)
    conn.execute("INSERT INTO meta (key, value) VALUES ('schema_version', ?)", (str(BEFORE),))
    conn.commit()
    conn.close()


def _fill_duplicates(store: Any) -> None:
    """What two resumes at once left in a store of the schema before the unique key: (a, 0) three times, (a, 1) twice (the
    later copy labeled by a human), (b, 0) once."""
    store.create_run(Run(run_id="r", status="finished"))
    rows = [("d1", "a", 0, 10), ("d2", "a", 0, 20), ("d3", "a", 0, 30), ("e1", "a", 1, 10), ("e2", "a", 1, 20),
            ("f1", "b", 0, 10)]
    for tid, sc, trial, start in rows:
        store._refuse_second_traces = lambda c, traces: None
        store.write_traces([trace(tid, scenario=sc, trial=trial, start=start)])
    store.write_verdicts([Verdict(name="j", passed=True, trace_id=t) for t in ("d1", "d2", "e1")], "r")
    store.write_labels([Verdict(name="j", value=True, passed=True, source=VerdictSource.HUMAN, source_id="ana",
                                trace_id="e2")])


def _check_deduplicated(store: Any) -> None:
    assert sorted(store.trace_ids("r")) == ["d1", "e2", "f1"]
    assert [v.trace_id for v in store.verdicts(run_id="r")] == ["d1"]
    assert [lb.trace_id for lb in store.labels()] == ["e2"]
    assert store.count_spans("d2") == 0
    [note] = store.migration_notes
    assert note == ("run r: removed 3 duplicate trace(s) of 2 trial(s) that were stored twice (two resumes at "
                    "once); kept the first of each")
    with pytest.raises(DuplicateTrialError):
        store.write_traces([trace("g1", scenario="a", trial=0)])


def test_migrating_a_sqlite_store_with_duplicates_keeps_the_first_of_each_and_says_so(tmp_path: Path,
                                                                                       monkeypatch) -> None:
    import costar.store.migrations as migrations

    _old_schema_sqlite(tmp_path / "s")
    # Fill it through a store that stops at that schema (no unique key yet).
    monkeypatch.setattr(migrations, "SCHEMA_VERSION", BEFORE)
    monkeypatch.setattr("costar.store.sql.SCHEMA_VERSION", BEFORE)
    old = SQLiteStore(tmp_path / "s")
    _fill_duplicates(old)
    old.close()
    monkeypatch.undo()
    st = SQLiteStore(tmp_path / "s")
    try:
        assert st.schema_version() == MIGRATIONS[-1].version
        _check_deduplicated(st)
    finally:
        st.close()


def test_migrating_a_postgres_store_with_duplicates_keeps_the_first_of_each_and_says_so(
        pg_empty_url: str, tmp_path: Path, monkeypatch) -> None:
    from costar.store.postgres import PostgresStore

    monkeypatch.setattr("costar.store.migrations.SCHEMA_VERSION", BEFORE)
    monkeypatch.setattr("costar.store.sql.SCHEMA_VERSION", BEFORE)
    monkeypatch.setattr("costar.store.sql.pending",
                        lambda current: [m for m in MIGRATIONS[:BEFORE] if m.version > current])
    old = PostgresStore(pg_empty_url, local_dir=tmp_path / "l")
    assert old.schema_version() == BEFORE
    _fill_duplicates(old)
    old.close()
    monkeypatch.undo()
    st = PostgresStore(pg_empty_url, local_dir=tmp_path / "l")
    try:
        assert st.schema_version() == MIGRATIONS[-1].version
        _check_deduplicated(st)
    finally:
        st.close()


# ----------------------------------------------------------------------------- imports


def test_imported_traces_of_a_taken_trial_become_further_trials(store: Any, tmp_path: Path) -> None:
    """Several trajectories of one task in a file (or a second file into the same run) are more
    trials of that scenario, numbered on from the last: nothing is refused, nothing dropped."""
    import json

    from costar.transfer import import_into_store
    from tests.support.paths import EXTERNAL

    runs = json.loads((EXTERNAL / "tau-bench" / "gpt-4o-airline.json").read_text())
    task0 = [r for r in runs if r["task_id"] == 0]  # trials 0-3 of task 0
    first = tmp_path / "first.json"
    first.write_text(json.dumps(task0[:2]))
    again = [{**r, "trial": 0} for r in task0[2:]]  # two more runs of task 0, both numbered trial 0
    second = tmp_path / "second.json"
    second.write_text(json.dumps(again))
    out = import_into_store(store, first, run_id="tb")
    assert out.renumbered == 0
    out = import_into_store(store, second, run_id="tb")
    assert out.traces == 2
    assert out.renumbered == 2
    keys = sorted((sc, trial) for _, sc, trial in store.trace_keys("tb"))
    assert keys == [("tau-bench/airline/task-0", t) for t in range(4)]


# ----------------------------------------------------------------------------- a run that loses its lease


def test_a_run_whose_lease_is_taken_over_stops_without_marking_the_run(store: Any, tmp_path: Path,
                                                                       monkeypatch) -> None:
    import textwrap

    from costar.errors import CostarError
    from costar.scenario import Scenario
    from costar.suites import run_suite
    from tests._util.test_process_control import kill_all, wait_dead, wait_for_files

    monkeypatch.setattr("costar.store.lease.HEARTBEAT_S", 0.05)
    (tmp_path / "agent.py").write_text(textwrap.dedent("""
        import os, sys, time
        open(os.path.join(sys.argv[1], f"agent-{os.getpid()}"), "w").close()
        time.sleep(300)
        """))
    agent = {"type": "command", "command": [sys.executable, str(tmp_path / "agent.py"), str(tmp_path)]}
    stolen: list[str] = []

    def steal() -> None:  # once the agent runs, another process takes the run over
        wait_for_files(tmp_path, "agent", 1)
        [run] = store.list_runs()
        with store._write() as c:
            c.execute("UPDATE run_leases SET token='someone-else', pid=1, host='thief', machine='elsewhere' "
                      "WHERE run_id=?", (run.run_id,))
        stolen.append(run.run_id)

    thief = threading.Thread(target=steal)
    thief.start()
    pids: list[int] = []
    try:
        with pytest.raises(CostarError) as err:
            run_suite([Scenario(id="s", prompt="p", timeout=600)], agent, store=store)
        thief.join()
        pids = [int(p.name.split("-", 1)[1]) for p in tmp_path.glob("agent-*")]
        assert wait_dead(pids) == []
        assert str(err.value).startswith(f"run {stolen[0]} was taken over by pid 1 on thief (since ")
        assert "stopped here, the other process finishes it" in str(err.value)
        # not marked interrupted: the run is the other process's now
        assert store.get_run(stolen[0]).status == "running"
        assert store.run_holders(stolen)[stolen[0]].token == "someone-else"
    finally:
        kill_all(pids)


def test_resuming_a_run_whose_holder_died_says_it_took_over(store: Any) -> None:
    from costar.scenario import Scenario
    from costar.suites import RunEvents, run_suite

    agent = {"type": "command", "command": [sys.executable, "-c", "print('hi')"]}
    first = run_suite([Scenario(id="s", prompt="p")], agent, store=store)
    rid = first.run.run_id
    assert store.run_holders([rid]) == {}  # released when the run ended
    gone = dead_pid()
    store.acquire_run(this_process(rid).model_copy(update={"pid": gone}))  # as if a killed resume held it
    warnings: list[str] = []
    again = run_suite(None, None, store=store, resume=rid, events=RunEvents(on_warning=warnings.append))
    assert again.run.status == "finished"
    [took] = [w for w in warnings if w.startswith("took over")]
    assert took.startswith(f"took over run {rid}: its holder, pid {gone} on ")
    assert took.endswith("is no longer running")
    assert store.run_holders([rid]) == {}
