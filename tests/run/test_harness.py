from __future__ import annotations

import asyncio
import os
import sys
import textwrap
import time
from pathlib import Path

import pytest

from costar._util.process import pid_alive
from costar.run.agents import make_agent
from costar.run.harness import Harness, HarnessOptions
from costar.scenario import Scenario
from costar.store.base import Run
from costar.store.sqlite import SQLiteStore
from costar.trace.model import SpanKind, StatusCode, Trace, TraceStatus
from tests.support.waiting import wait_for


def run_harness(store: SQLiteStore, scenarios: list[Scenario], agent: dict, **opts) -> list[Trace]:
    agent_obj = make_agent(agent)
    run = Run(agent=agent_obj.info)
    store.create_run(run)
    res = asyncio.run(Harness(agent_obj, store, HarnessOptions(**opts)).run(scenarios, run))
    return sorted((store.get_trace(t) for t in res.trace_ids), key=lambda t: (t.scenario_id, t.trial))


def write_module(project: Path, name: str, code: str) -> None:
    (project / f"{name}.py").write_text(textwrap.dedent(code))
    # The same test runs once per store backend: import this project's module, not the last one's.
    sys.modules.pop(name, None)


def test_python_agent_workspace_setup_and_artifacts(project: Path, store: SQLiteStore) -> None:
    (project / "data").mkdir()
    (project / "data" / "in.csv").write_text("a,b\n1,2\n")
    (project / "data" / "nested").mkdir()
    (project / "data" / "nested" / "x.txt").write_text("x")
    write_module(project, "agent_a", """
        import os
        from costar.trace import span, traced

        @traced(kind="TOOL")
        def read(path):
            return open(path).read()

        def run(task):
            with span("plan"):
                text = read(str(task.workspace / "in.csv"))
            (task.workspace / "out.txt").write_text(text.upper() + task.env["MODE"])
            assert (task.workspace / "folder" / "nested" / "x.txt").exists()
            assert (task.workspace / "made_by_setup.txt").read_text().strip() == "setup ran"
            return f"rows: {len(text.splitlines()) - 1}"
        """)
    sc = Scenario.model_validate({
        "id": "s1", "prompt": "go", "trials": 2,
        "setup": {"files": ["data/in.csv", {"src": "data", "dest": "folder"},
                            {"dest": "notes/readme.md", "content": "inline"}],
                  "env": {"MODE": "-test"}, "commands": ["echo 'setup ran' > made_by_setup.txt"]},
    }).with_source(project / "suite.yaml")
    traces = run_harness(store, [sc], {"type": "python", "target": "agent_a:run"}, concurrency=2)
    assert [t.trial for t in traces] == [0, 1]
    t = traces[0]
    assert t.status == TraceStatus.OK, t.error
    assert t.output == "rows: 1", t.error
    arts = {a.path: a for a in t.artifacts}
    assert arts["out.txt"].origin == "agent"
    assert store.get_blob(arts["out.txt"].sha256) == b"A,B\n1,2\n-test"
    # Setup files the agent left as they were are not stored (they are in the project already).
    assert "in.csv" not in arts
    assert "notes/readme.md" not in arts
    assert "folder/nested/x.txt" not in arts
    assert any("left unchanged by the agent were not stored" in n for n in t.metadata["artifact_notes"])
    assert arts["made_by_setup.txt"].origin == "agent"  # created by a setup command, not copied
    kinds = {s.name: s.kind for s in t.spans}
    assert kinds == {"run": SpanKind.AGENT, "plan": SpanKind.CHAIN, "read": SpanKind.TOOL}
    assert t.totals.tool_calls == 1
    # each trial had its own fresh workspace, removed afterwards
    assert not any((store.root / "workspaces").rglob("out.txt"))


def test_agent_exceptions_setup_failures_and_timeouts_are_recorded(project: Path, store: SQLiteStore) -> None:
    write_module(project, "agent_b", """
        import asyncio
        def crash(task):
            raise RuntimeError("model said no")
        async def slow(task):
            await asyncio.sleep(30)
        def returns_dict(prompt):
            return {"output": prompt[::-1], "extra": 1}
        """)
    crash = Scenario(id="crash", prompt="x")
    setup_fail = Scenario.model_validate({"id": "setup", "prompt": "x", "setup": {"commands": ["exit 3"]}})
    [t1, t2] = run_harness(store, [crash, setup_fail], {"type": "python", "target": "agent_b:crash"})
    assert t1.status == TraceStatus.ERROR
    assert "RuntimeError: model said no" in t1.error
    assert t1.spans[0].status.code == StatusCode.ERROR
    assert t2.status == TraceStatus.ERROR
    assert "setup failed" in t2.error
    assert "exited 3" in t2.error
    slow = Scenario(id="slow", prompt="x", timeout=0.3)
    [t3] = run_harness(store, [slow], {"type": "python", "target": "agent_b:slow"})
    assert t3.status == TraceStatus.TIMEOUT
    assert "timed out after 0.3s" in t3.error
    [t4] = run_harness(store, [Scenario(id="d", prompt="abc")], {"type": "python", "target": "agent_b:returns_dict"})
    assert t4.output == "cba"
    assert t4.metadata["extra"] == 1


def test_command_agent_prompt_channels_and_turns(project: Path, store: SQLiteStore) -> None:
    script = project / "echo_agent.py"
    script.write_text(textwrap.dedent("""
        import os, sys
        src = sys.argv[1] if len(sys.argv) > 1 else (sys.stdin.read() if os.environ.get("VIA") == "stdin" else os.environ["COSTAR_PROMPT"])
        with open("log.txt", "a") as f:
            f.write(f"{os.environ['COSTAR_TURN']}:{src}\\n")
        print(f"echo {src} in {os.environ['COSTAR_SCENARIO_ID']}[{os.environ['COSTAR_TRIAL']}]")
        """))
    sc = Scenario(id="multi", prompt=["first", "second"])
    for via in ("stdin", "arg", "env"):
        [t] = run_harness(store, [sc], {"type": "command", "command": [sys.executable, str(script)],
                                        "prompt_via": via, "env": {"VIA": via}})
        assert t.status == TraceStatus.OK, t.error
        assert t.output.strip() == "echo second in multi[0]"
        assert store.get_blob(t.artifact("log.txt").sha256) == b"0:first\n1:second\n"
        turns = [s for s in t.spans if s.name.startswith("turn")]
        assert [s.attributes["input.value"] for s in turns] == ["first", "second"]
        assert all(s.attributes["process.exit_code"] == 0 for s in turns)


def test_command_agent_failures(project: Path, store: SQLiteStore) -> None:
    (project / "bad.py").write_text(textwrap.dedent("""
        import os, subprocess, sys, time
        mode = sys.stdin.read().strip()
        if mode == "crash":
            raise SystemExit("fatal: cannot open model")
        if mode == "exit":
            print("partial answer"); sys.exit(7)
        if mode == "flood":
            chunk = "y" * 65536
            for _ in range(320):  # 20 MiB
                sys.stdout.write(chunk)
            print("END")
        if mode == "hang":
            child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
            open(os.environ["PIDFILE"], "w").write(str(child.pid))
            time.sleep(300)
        """))
    pidfile = project / "grandchild.pid"
    # The hang timeout leaves room for a loaded CI machine to start the agent and its child.
    scs = [Scenario(id=m, prompt=m, timeout=6 if m == "hang" else 60) for m in ("crash", "exit", "flood", "hang")]
    started = time.monotonic()
    traces = {t.scenario_id: t for t in run_harness(
        store, scs, {"type": "command", "command": [sys.executable, "bad.py"], "env": {"PIDFILE": str(pidfile)},
                     "max_output_bytes": 1 << 20}, concurrency=4)}
    assert time.monotonic() - started < 60
    assert traces["crash"].status == TraceStatus.ERROR
    assert "exited with code 1" in traces["crash"].error
    assert "fatal: cannot open model" in traces["crash"].error
    assert traces["exit"].status == TraceStatus.ERROR
    assert "code 7" in traces["exit"].error
    assert traces["exit"].output.strip() == "partial answer"
    flood = traces["flood"]
    assert flood.status == TraceStatus.OK
    assert flood.output.rstrip().endswith("END")
    assert "…[truncated" in flood.output
    assert len(flood.output) < 2 << 20
    assert flood.metadata["stdout_dropped_bytes"] > 19 << 20
    hang = traces["hang"]
    assert hang.status == TraceStatus.TIMEOUT
    assert "process group was killed" in hang.error
    grandchild = int(pidfile.read_text())
    wait_for(lambda: not pid_alive(grandchild), timeout=5, what="the agent's child to die with the timeout")


def test_missing_command_is_an_error_trace(project: Path, store: SQLiteStore) -> None:
    [t] = run_harness(store, [Scenario(id="x", prompt="p")], {"type": "command", "command": "no-such-binary-xyz"})
    assert t.status == TraceStatus.ERROR
    assert "not found" in t.error


def test_concurrency_is_respected(project: Path, store: SQLiteStore) -> None:
    log = project / "spans.log"
    write_module(project, "agent_c", f"""
        import time
        def run(task):
            start = time.monotonic()
            time.sleep(0.15)  # the trial's work: long enough for trials to overlap
            with open({str(log)!r}, "a") as f:
                f.write(f"{{start}} {{time.monotonic()}}\\n")
            return "ok"
        """)
    scs = [Scenario(id=f"s{i}", prompt="x", trials=2) for i in range(6)]
    traces = run_harness(store, scs, {"type": "python", "target": "agent_c:run"}, concurrency=3)
    assert len(traces) == 12
    intervals = [tuple(map(float, line.split())) for line in log.read_text().splitlines()]
    peak = max(sum(1 for s, e in intervals if s <= t < e) for t, _ in intervals)
    assert peak == 3


def test_secrets_in_agent_env_are_redacted(project: Path, store: SQLiteStore, monkeypatch) -> None:
    monkeypatch.setenv("MY_SERVICE_TOKEN", "tok-very-secret-value-123")
    write_module(project, "agent_d", """
        import os
        def run(task):
            return "token is " + os.environ["MY_SERVICE_TOKEN"] + " and key " + task.env["EXTRA_API_KEY"]
        """)
    sc = Scenario.model_validate({"id": "s", "prompt": "x", "setup": {"env": {"EXTRA_API_KEY": "plain-looking-secret"}}})
    [t] = run_harness(store, [sc], {"type": "python", "target": "agent_d:run"})
    assert "tok-very-secret-value-123" not in t.output
    assert "plain-looking-secret" not in t.output
    assert t.output.count("[REDACTED]") == 2


def test_http_agent_against_a_loopback_server(store: SQLiteStore) -> None:
    from fastapi import FastAPI

    from costar._util.server import BackgroundServer

    app = FastAPI()
    seen: list[list[dict]] = []

    @app.post("/v1/chat/completions")
    def chat(body: dict) -> dict:
        seen.append(body["messages"])
        last = body["messages"][-1]["content"]
        return {"model": "echo-1", "choices": [{"message": {"role": "assistant", "content": f"you said {last}"},
                                                "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 7, "completion_tokens": 3}}

    with BackgroundServer(app) as srv:
        [t] = run_harness(store, [Scenario(id="h", prompt=["hi", "bye"])],
                          {"type": "http", "url": f"{srv.base_url}/v1", "system": "be brief"})
        assert t.status == TraceStatus.OK
        assert t.output == "you said bye"
        assert [m["role"] for m in seen[1]] == ["system", "user", "assistant", "user"]
        assert t.totals.input_tokens == 14
        assert t.totals.llm_calls == 2
        llm = [s for s in t.spans if s.kind == SpanKind.LLM]
        assert llm[0].attributes["gen_ai.output.messages"][0]["parts"][0]["content"] == "you said hi"
    # the server is gone: the trial errors with a clear message and the run goes on
    [t2] = run_harness(store, [Scenario(id="h2", prompt="x")], {"type": "http", "url": srv.base_url})
    assert t2.status == TraceStatus.ERROR
    assert "cannot reach the agent" in t2.error


def test_unknown_agent_type_and_bad_fields() -> None:
    from costar.errors import AgentConfigError, ConfigError

    with pytest.raises(AgentConfigError, match=r"unknown agent type 'grpc'; use one of"):
        make_agent({"type": "grpc"})
    with pytest.raises(AgentConfigError, match=r"agent\.comand: unknown field"):
        make_agent({"type": "command", "comand": "x"})
    with pytest.raises(ConfigError, match="module:attribute"):
        make_agent({"type": "python", "target": "nocolon"})
    assert make_agent("cmd:python agent.py").spec()["command"] == "python agent.py"
    assert os.environ.get("COSTAR_RUN_ID") is None


def test_background_children_do_not_keep_the_trial_open(project: Path, store: SQLiteStore) -> None:
    (project / "bg.py").write_text(textwrap.dedent("""
        import os, subprocess, sys
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
        open(os.environ["PIDFILE"], "w").write(str(child.pid))
        print("done")
        """))
    pidfile = project / "bg.pid"
    started = time.monotonic()
    [t] = run_harness(store, [Scenario(id="bg", prompt="x", timeout=60)],
                      {"type": "command", "command": [sys.executable, "bg.py"], "env": {"PIDFILE": str(pidfile)}})
    assert time.monotonic() - started < 30
    assert t.status == TraceStatus.OK, t.error
    assert t.output.strip() == "done", t.error
    pid = int(pidfile.read_text())
    wait_for(lambda: not pid_alive(pid), timeout=5, what="the agent's background child to be killed with the trial")


def test_a_suite_that_mixes_scenario_objects_and_paths_is_a_clear_error(tmp_path: Path) -> None:
    from costar.api import run_suite
    from costar.errors import ConfigError

    scenario_file = tmp_path / "more.yaml"
    scenario_file.write_text("id: b\nprompt: hi\n")
    with pytest.raises(ConfigError, match="either Scenario objects or paths to scenario files, not both"):
        run_suite([Scenario(id="a", prompt="hi"), scenario_file], {"type": "command", "command": "true"},
                  store=tmp_path / "store")


def test_an_executor_is_given_only_the_scenarios_with_trials_left(store: SQLiteStore) -> None:
    """A resumed run's finished scenarios are not planned again (a Ray executor would pack their setup
    files and check their resources for nothing)."""
    from costar.run.executors import LocalExecutor, TrialPlan

    class Recording(LocalExecutor):
        planned: list[str] = []

        async def open(self, plan: TrialPlan) -> int:
            Recording.planned = [sc.id for sc in plan.scenarios]
            return await super().open(plan)

    agent = make_agent({"type": "command", "command": "true"})
    run = Run(agent=agent.info)
    store.create_run(run)
    done, left = Scenario(id="done", prompt="x"), Scenario(id="left", prompt="x", trials=2)
    first = asyncio.run(Harness(agent, store, HarnessOptions(trials=1)).run([done, left], run))
    assert len(first.trace_ids) == 2
    resumed = asyncio.run(Harness(agent, store, HarnessOptions(executor=Recording())).run([done, left], run))
    assert resumed.skipped == 2
    assert len(resumed.trace_ids) == 1
    assert Recording.planned == ["left"]


def test_a_failed_setup_commands_whole_output_is_kept_on_the_trace(project: Path, store: SQLiteStore) -> None:
    write_module(project, "agent_setup", """
        def run(prompt):
            return "never runs"
        """)
    lines = "; ".join(f"echo step {i} >&2" for i in range(10))
    sc = Scenario.model_validate({"id": "setup", "prompt": "x",
                                  "setup": {"commands": [f"echo to stdout; {lines}; exit 4"]}})
    [t] = run_harness(store, [sc], {"type": "python", "target": "agent_setup:run"})
    assert t.error is not None
    assert "\n" not in t.error
    assert "exited 4: step 7 | step 8 | step 9 (" in t.error  # the message keeps the last lines ...
    [event] = [e for e in t.spans[0].events if e.name == "setup failed"]
    assert event.attributes["stderr"].splitlines() == [f"step {i}" for i in range(10)]  # ... the trace keeps all
    assert event.attributes["stdout"] == "to stdout\n"
    assert event.attributes["command"].endswith("exit 4")
