"""Agents that misbehave against the harness itself: an answer file that is a FIFO, a symlink or
huge; an in-process call that hangs past its trial; turns that together overrun the timeout."""

from __future__ import annotations

import asyncio
import contextvars
import importlib
import os
import stat
import sys
import textwrap
import threading
import time
from pathlib import Path

from costar.run.agents import AgentResult, AgentTask, PythonAgent, PythonAgentConfig, RunContext
from costar.scenario import Scenario
from costar.store.sqlite import SQLiteStore
from costar.trace.model import SpanKind, TraceStatus
from costar.trace.recorder import Recording, span
from tests.run.test_harness import run_harness, write_module
from tests.support.waiting import wait_for

# ----------------------------------------------------------------------------- output: file:X


def _command_agent(project: Path, code: str, **cfg: object) -> dict[str, object]:
    (project / "agent.py").write_text(textwrap.dedent(code))
    return {"type": "command", "command": [sys.executable, str(project / "agent.py")],
            "output": "file:answer.txt", **cfg}


def _unblock_fifos_after(root: Path, seconds: float, stop: threading.Event) -> threading.Thread:
    """Without the fix the harness blocks in open() of the FIFO, on the event loop, where no timeout
    can fire: open every FIFO under ``root`` for writing after ``seconds`` (the reader then gets
    EOF), so such a regression fails on the elapsed time instead of hanging the test session."""
    def guard() -> None:
        if stop.wait(seconds):
            return
        for p in root.rglob("answer.txt"):
            try:
                if stat.S_ISFIFO(p.lstat().st_mode):
                    os.close(os.open(p, os.O_WRONLY | os.O_NONBLOCK))
            except OSError:
                pass
    t = threading.Thread(target=guard, daemon=True)
    t.start()
    return t


def test_a_fifo_left_as_the_answer_file_is_refused_without_stalling_the_run(
        project: Path, sqlite_store: SQLiteStore) -> None:
    agent = _command_agent(project, """
        import os, sys
        sys.stdin.read()
        if os.environ["COSTAR_SCENARIO_ID"] == "fifo":
            os.mkfifo("answer.txt")
        else:
            with open("answer.txt", "w") as f:
                f.write("42")
        """)
    scenarios = [Scenario(id="fifo", prompt="hi", timeout=5), Scenario(id="normal", prompt="hi", timeout=5)]
    stop = threading.Event()
    _unblock_fifos_after(project, 8.0, stop)
    t0 = time.monotonic()
    try:
        fifo, normal = run_harness(sqlite_store, scenarios, agent, concurrency=2)
    finally:
        stop.set()
    assert time.monotonic() - t0 < 8.0
    assert fifo.status == TraceStatus.ERROR
    assert fifo.error == "agent.output file:answer.txt is a FIFO, not a regular file; not read"
    assert fifo.metadata["output_file_refused"] == fifo.error
    assert not fifo.output
    assert normal.status == TraceStatus.OK, normal.error
    assert normal.output == "42"


def test_an_answer_file_that_is_a_symlink_or_lies_outside_the_workspace_is_not_read(
        project: Path, sqlite_store: SQLiteStore) -> None:
    secret = project / "outside" / "answer.txt"
    secret.parent.mkdir()
    secret.write_text("the secret outside the workspace")
    link = _command_agent(project, f"""
        import os, sys
        sys.stdin.read()
        os.symlink({str(secret)!r}, "answer.txt")
        """)
    [t] = run_harness(sqlite_store, [Scenario(id="link", prompt="hi")], link)
    assert t.status == TraceStatus.ERROR
    assert t.error == "agent.output file:answer.txt is a symlink; not followed"
    assert "secret" not in (t.output or "")
    # A symlinked folder on the way leads outside just the same.
    folder = _command_agent(project, f"""
        import os, sys
        sys.stdin.read()
        os.symlink({str(secret.parent)!r}, "out")
        """)
    folder["output"] = "file:out/answer.txt"
    [t] = run_harness(sqlite_store, [Scenario(id="folder", prompt="hi")], folder)
    assert t.status == TraceStatus.ERROR
    assert t.error == "agent.output file:out/answer.txt leads outside the trial's workspace; not read"
    assert "secret" not in (t.output or "")


def test_a_huge_answer_file_is_read_only_up_to_max_output_bytes(project: Path, sqlite_store: SQLiteStore) -> None:
    agent = _command_agent(project, """
        import sys
        sys.stdin.read()
        with open("answer.txt", "w") as f:
            f.write("a" * 1000 + "Q" * 4_000_000)
        """, max_output_bytes=1000)
    [t] = run_harness(sqlite_store, [Scenario(id="huge", prompt="hi")], agent)
    assert t.status == TraceStatus.OK, t.error
    output = t.output or ""
    assert output.startswith("a" * 1000)
    assert "Q" not in output
    assert "[4000000 more bytes of answer.txt not read: past agent.max_output_bytes]" in output
    assert t.metadata["output_file_dropped_bytes"] == 4_000_000
    [turn] = [s for s in t.spans if s.name == "command"]
    assert turn.attributes["costar.output_file_dropped_bytes"] == 4_000_000


# ----------------------------------------------------------------------------- multi-turn deadline


def test_turns_share_the_scenarios_timeout(project: Path, sqlite_store: SQLiteStore) -> None:
    agent = {"type": "command", "command": [sys.executable, "-c", "import sys, time; sys.stdin.read(); "
                                            "time.sleep(0.8); print('ok')"]}
    # Each turn alone fits in the timeout; the two together do not.
    [t] = run_harness(sqlite_store, [Scenario(id="two", prompt=["first", "second"], timeout=1.2)], agent)
    assert t.status == TraceStatus.TIMEOUT
    assert t.error == ("timed out after 1.2s (the scenario's timeout, shared by its 2 turns); "
                       "the process group was killed")
    assert t.totals.latency_s < 2.5
    [one] = run_harness(sqlite_store, [Scenario(id="one", prompt="only", timeout=1.2)], agent)
    assert one.status == TraceStatus.OK, one.error


# ----------------------------------------------------------------------------- hung in-process calls


def test_a_hung_in_process_call_does_not_time_out_the_trials_after_it(
        project: Path, sqlite_store: SQLiteStore) -> None:
    write_module(project, "hangs_once", """
        import threading
        release = threading.Event()
        def run(task):
            if task.trial == 0:
                release.wait(30)  # hangs past its timeout: this call is abandoned
            return "ok"
        """)
    hangs_once = importlib.import_module("hangs_once")  # the agent's module: the test releases the hung call

    try:
        traces = run_harness(sqlite_store, [Scenario(id="s", prompt="x", trials=4, timeout=0.5)],
                             {"type": "python", "target": "hangs_once:run"}, concurrency=1)
    finally:
        hangs_once.release.set()
    assert [t.status for t in traces] == [TraceStatus.TIMEOUT, TraceStatus.OK, TraceStatus.OK, TraceStatus.OK]
    assert [t.output for t in traces[1:]] == ["ok", "ok", "ok"]


def test_an_abandoned_calls_late_model_calls_land_in_no_trace(project: Path, sqlite_store: SQLiteStore) -> None:
    write_module(project, "late_calls", """
        import threading, time
        from costar.trace import span
        trial1_running = threading.Event()
        late_done = threading.Event()
        def run(task):
            if task.trial == 0:
                trial1_running.wait(10)  # past the timeout: abandoned, then it goes on while trial 1 runs
                for i in range(5):
                    with span(f"late-call-{i}", kind="LLM", attributes={
                            "gen_ai.request.model": "gpt-4o", "gen_ai.usage.input_tokens": 1000,
                            "gen_ai.usage.output_tokens": 500}):
                        pass
                late_done.set()
                return "late"
            trial1_running.set()
            late_done.wait(10)
            with span("own-call", kind="LLM", attributes={"gen_ai.request.model": "gpt-4o"}):
                pass
            return "ok"
        """)
    late_calls = importlib.import_module("late_calls")

    try:
        first, second = run_harness(sqlite_store, [Scenario(id="s", prompt="x", trials=2, timeout=0.3)],
                                    {"type": "python", "target": "late_calls:run"}, concurrency=1)
    finally:
        late_calls.trial1_running.set()
    assert late_calls.late_done.is_set()  # the late calls did happen, during trial 1
    assert first.status == TraceStatus.TIMEOUT
    assert second.status == TraceStatus.OK, second.error
    names = [s.name for s in second.spans]
    assert not [n for n in names if n.startswith("late-call")]
    assert "own-call" in names
    assert not [s.name for s in first.spans if s.name.startswith("late-call")]


def test_the_agents_own_worker_threads_still_record_into_its_trial(project: Path, sqlite_store: SQLiteStore) -> None:
    """The fallback for threads without context stays: an agent's pool threads, reused across trials."""
    write_module(project, "pooled", """
        from concurrent.futures import ThreadPoolExecutor
        from costar.trace import span
        POOL = ThreadPoolExecutor(3)
        def call_model(i):
            with span("chat", kind="LLM", attributes={"gen_ai.request.model": "gpt-4o"}):
                pass
        def run(task):
            list(POOL.map(call_model, range(3)))
            return "ok"
        """)
    traces = run_harness(sqlite_store, [Scenario(id="s", prompt="x", trials=3)],
                         {"type": "python", "target": "pooled:run"}, concurrency=1)
    assert [sum(s.kind == SpanKind.LLM for s in t.spans) for t in traces] == [3, 3, 3]


def test_a_context_of_an_ended_recording_never_falls_back_to_another() -> None:
    with Recording("trial-0") as first:
        carried = contextvars.copy_context()  # what an in-process call's thread runs in
    with Recording("trial-1") as second:
        carried.run(lambda: span("late").__enter__().end())
        with span("own"):
            pass
    assert [s.name for s in second.spans()] == ["trial-1", "own"]
    assert [s.name for s in first.spans()] == ["trial-0"]


def test_stuck_in_process_calls_are_bounded(project: Path) -> None:
    write_module(project, "stuck", """
        import threading
        release = threading.Event()
        def run(task):
            release.wait(30)
            return "late"
        """)
    stuck = importlib.import_module("stuck")

    agent = PythonAgent(PythonAgentConfig(target="stuck:run"))
    task = AgentTask(scenario=Scenario(id="s", prompt="x"), trial=0, run_id="r", workspace=project, env={},
                     timeout=0.1)

    async def main() -> list[AgentResult | str]:
        ctx = RunContext(1)
        ctx.max_stuck_threads = 2
        outcomes: list[AgentResult | str] = []
        for _ in range(3):
            with Recording() as rec:
                try:
                    outcomes.append(await asyncio.wait_for(agent.run(task, rec, ctx), 0.1))
                except TimeoutError:
                    outcomes.append("timeout")
        assert ctx.stuck_threads == 2
        stuck.release.set()
        await asyncio.to_thread(wait_for, lambda: ctx.stuck_threads == 0, 10.0, "the stuck calls to return")
        with Recording() as rec:
            outcomes.append(await agent.run(task, rec, ctx))
        return outcomes

    try:
        first, second, third, fourth = asyncio.run(main())
    finally:
        stuck.release.set()
    assert first == second == "timeout"
    assert isinstance(third, AgentResult)
    assert isinstance(fourth, AgentResult)
    assert third.status == TraceStatus.ERROR
    assert (third.error or "").startswith("not started: 2 earlier calls of this agent timed out")
    assert fourth.output == "late"


def test_a_directory_as_the_answer_file_is_refused(project: Path, sqlite_store: SQLiteStore) -> None:
    agent = _command_agent(project, """
        import os, sys
        sys.stdin.read()
        os.mkdir("answer.txt")
        """)
    [t] = run_harness(sqlite_store, [Scenario(id="dir", prompt="hi")], agent)
    assert t.status == TraceStatus.ERROR
    assert t.error == "agent.output file:answer.txt is a directory, not a regular file; not read"
