"""``--executor ray`` on a real local Ray cluster: a head and a second node on this machine (each with one
CPU and a custom resource of its own, so a scenario can be pinned to either), started once for these
tests and stopped at the end (also on failure) by killing exactly the processes it started.

Command agents run through the ``costar`` command in a child process (the Ray driver), an in-process
agent through the library API; a Ray worker killed with SIGKILL mid-trial is retried on a worker and
the trial is stored once; a run interrupted half-way is resumed on the cluster.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from costar.errors import ConfigError
from costar.run.executors import executor_spec, make_executor
from costar.run.ray_executor import MemoryBlobs, RayExecutor, pack_setup, unpack_setup
from costar.scenario import Scenario
from costar.store.sqlite import SQLiteStore
from tests.support.cli import child_env, costar_cmd

pytest.importorskip("ray")

@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[object]:
    from costar.testing.ray_cluster import LocalRayCluster, RayNode

    cluster = LocalRayCluster([RayNode(1, {"head_node": 1}), RayNode(1, {"second_node": 1})])
    with cluster:
        yield cluster
        started = [pid for pid, _ in cluster.processes()]
    assert started
    left = [pid for pid in started if Path(f"/proc/{pid}").exists()
            and Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"]
    assert left == [], "the cluster's processes outlived its stop"


def _wait_for(what: str, cond, timeout: float = 90.0, proc: subprocess.Popen | None = None):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else ""
            raise AssertionError(f"the run ended ({proc.returncode}) before {what}: {out[-3000:]}")
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _project(root: Path, scenarios: str, agent: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "costar.yaml").write_text("suite: scenarios\nstore: .costar\n")
    (root / "scenarios").mkdir()
    (root / "scenarios" / "suite.yaml").write_text(textwrap.dedent(scenarios))
    (root / "agent.py").write_text(textwrap.dedent(agent))
    (root / "data").mkdir()
    (root / "data" / "input.csv").write_text("region,revenue\nnorth,3\nsouth,4\n")
    return root


PLACED_AGENT = """
import os, pathlib, sys
ws = pathlib.Path(os.environ["COSTAR_WORKSPACE"])
rows = (ws / "input.csv").read_text().splitlines()
(ws / "report.txt").write_text(f"{len(rows) - 1} rows on {os.getppid()}")
print(f"{os.environ['COSTAR_SCENARIO_ID']}: {len(rows) - 1} rows")
"""

PLACED_SUITE = """
- id: on-head
  prompt: count the rows
  trials: 2
  resources: {custom: {head_node: 1}}
  setup: {files: [../data/input.csv]}
  expectations: {checks: [{output_contains: "2 rows"}]}
- id: on-second
  prompt: count the rows
  trials: 2
  resources: {cpus: 0.5, memory: 64MiB, custom: {second_node: 1}}
  setup: {files: [../data/input.csv]}
  expectations: {checks: [{output_contains: "2 rows"}]}
"""


@pytest.mark.slow
@pytest.mark.xdist_group("ray_cluster")
def test_command_agent_trials_are_placed_by_their_resources(ray_cluster, tmp_path: Path) -> None:
    proj = _project(tmp_path / "p", PLACED_SUITE, PLACED_AGENT)
    res = subprocess.run([*costar_cmd(), "run", "--agent", "cmd:python agent.py", "--executor",
                          f"ray:{ray_cluster.address}", "--no-progress"],
                         cwd=proj, env=child_env(), capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    store = SQLiteStore(proj / ".costar")
    run = store.list_runs()[0]
    traces = list(store.iter_traces(run.run_id))
    assert sorted((t.scenario_id, t.trial) for t in traces) == [("on-head", 0), ("on-head", 1),
                                                                ("on-second", 0), ("on-second", 1)]
    assert all(t.status == "ok" for t in traces)
    nodes = {sc: {t.metadata["executor"]["node_id"] for t in traces if t.scenario_id == sc}
             for sc in ("on-head", "on-second")}
    assert len(nodes["on-head"]) == 1
    assert len(nodes["on-second"]) == 1
    assert nodes["on-head"] != nodes["on-second"]  # each scenario ran on the node whose resource it asked for
    # The workspace's new file came back with the trace and is in the driver's store.
    report = next(a for a in traces[0].artifacts if a.path == "report.txt")
    assert store.get_blob(report.sha256) is not None
    assert (store.get_blob(report.sha256) or b"").startswith(b"2 rows on ")


IN_PROCESS_AGENT = """
import os

def run(task):
    (task.workspace / "answer.txt").write_text(task.prompt.upper())
    return f"{task.prompt} from {os.getpid()}"
"""


@pytest.mark.slow
@pytest.mark.xdist_group("ray_cluster")
def test_in_process_agent_through_the_api(ray_cluster, tmp_path: Path) -> None:
    from costar.api import HarnessOptions, run_suite

    agent_dir = tmp_path / "agent"
    agent_dir.mkdir()
    (agent_dir / "ray_inproc_agent.py").write_text(textwrap.dedent(IN_PROCESS_AGENT))
    scenarios = [Scenario(id=f"s{i}", prompt=f"question {i}", trials=2) for i in range(3)]
    outcome = run_suite(scenarios, {"type": "python", "target": "ray_inproc_agent:run", "cwd": str(agent_dir)},
                        store=tmp_path / "store", options=HarnessOptions(executor=f"ray:{ray_cluster.address}"))
    assert outcome.exit_code == 0
    store = outcome.store
    assert store is not None
    traces = list(store.iter_traces(outcome.run.run_id))
    assert len(traces) == 6
    assert {(t.scenario_id, t.trial) for t in traces} == {(f"s{i}", k) for i in range(3) for k in range(2)}
    for t in traces:
        assert t.output is not None
        assert t.output.startswith(t.input)
        pid = int(t.output.rsplit(" ", 1)[1])
        assert pid != os.getpid()  # it ran in a Ray worker, not here
        assert t.metadata["executor"]["pid"] == pid
        blob = store.get_blob(t.artifacts[0].sha256)
        assert blob == str(t.input).upper().encode()
    assert outcome.summary.totals.trials == 6


KILLED_AGENT = """
import os, pathlib, sys, time
state = pathlib.Path(os.environ["STATE_DIR"])
with open(state / "attempts.txt", "a") as f:
    f.write(f"{os.getppid()}\\n")
first = state / "first.pid"
if not first.exists():
    first.write_text(str(os.getppid()))  # the Ray worker running this trial: the test kills it
    time.sleep(120)
    print("first attempt finished (it should have been killed)")
else:
    print("second attempt finished")
"""


@pytest.mark.slow
@pytest.mark.xdist_group("ray_cluster")
def test_worker_killed_mid_trial_is_retried_and_stored_once(ray_cluster, tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    proj = _project(tmp_path / "p", """
        - id: survives
          prompt: go
          timeout: 200
    """, KILLED_AGENT)
    (proj / "costar.yaml").write_text(textwrap.dedent(f"""\
        suite: scenarios
        store: .costar
        agent: {{type: command, command: python agent.py, env: {{STATE_DIR: "{state}"}}}}
        executor: {{type: ray, address: "{ray_cluster.address}", max_retries: 2}}
    """))
    proc = subprocess.Popen([*costar_cmd(), "run", "--no-progress"], cwd=proj, env=child_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        worker = int(_wait_for("the first attempt to start", lambda: (state / "first.pid").exists()
                               and (state / "first.pid").read_text(), proc=proc))
        assert worker in ray_cluster.worker_pids()
        os.kill(worker, signal.SIGKILL)
        out, _ = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, out
    attempts = (state / "attempts.txt").read_text().split()
    assert len(attempts) == 2
    assert attempts[0] != attempts[1]  # the retry ran in another worker process
    store = SQLiteStore(proj / ".costar")
    run = store.list_runs()[0]
    assert run.status == "finished"
    keys = store.trace_keys(run.run_id)
    assert [(k[1], k[2]) for k in keys] == [("survives", 0)]  # counted once
    trace = store.get_trace(keys[0][0])
    assert trace.status == "ok"
    assert trace.output is not None
    assert "second attempt finished" in trace.output


RESUMED_AGENT = """
import os, pathlib, time
gate = pathlib.Path(os.environ["STATE_DIR"]) / "open"
if os.environ["COSTAR_SCENARIO_ID"] == "slow" and not gate.exists():
    time.sleep(120)
print("done", os.environ["COSTAR_SCENARIO_ID"])
"""


@pytest.mark.slow
@pytest.mark.xdist_group("ray_cluster")
def test_an_interrupted_ray_run_resumes_on_the_cluster(ray_cluster, tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    proj = _project(tmp_path / "p", """
        - {id: quick-1, prompt: go}
        - {id: quick-2, prompt: go}
        - {id: slow, prompt: go, timeout: 200}
    """, RESUMED_AGENT)
    # Workers see their own environment, not the driver's: what the agent needs goes in its env.
    (proj / "costar.yaml").write_text(textwrap.dedent(f"""\
        suite: scenarios
        store: .costar
        agent: {{type: command, command: python agent.py, env: {{STATE_DIR: "{state}"}}}}
    """))
    env = child_env()
    cmd = [*costar_cmd(), "run", "--executor", f"ray:{ray_cluster.address}", "--no-progress"]
    proc = subprocess.Popen(cmd, cwd=proj, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        def quick_ones_stored() -> bool:
            if not (proj / ".costar" / "costar.db").exists():
                return False
            watch = SQLiteStore(proj / ".costar")
            try:
                runs = watch.list_runs()
                return bool(runs) and len(watch.trace_keys(runs[0].run_id)) == 2
            finally:
                watch.close()
        _wait_for("the two quick trials to be stored", quick_ones_stored, proc=proc)
        proc.send_signal(signal.SIGTERM)  # the slow trial is still running on a worker
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode != 0, out
    store = SQLiteStore(proj / ".costar")
    run = store.list_runs()[0]
    assert run.status == "interrupted"
    (state / "open").write_text("")
    res = subprocess.run([*costar_cmd(), "run", "--resume", run.run_id, "--executor",
                          f"ray:{ray_cluster.address}", "--no-progress"],
                         cwd=proj, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "2 trial(s) already finished, 1 to run" in res.stdout
    keys = store.trace_keys(run.run_id)
    assert sorted((k[1], k[2]) for k in keys) == [("quick-1", 0), ("quick-2", 0), ("slow", 0)]
    assert store.get_run(run.run_id).status == "finished"


@pytest.mark.slow
@pytest.mark.xdist_group("ray_cluster")
def test_resources_no_node_has_are_refused_before_any_trial(ray_cluster, tmp_path: Path) -> None:
    from costar.api import HarnessOptions, run_suite

    scenarios = [Scenario.model_validate({"id": "needs-tpu", "prompt": "go", "resources": {"custom": {"tpu": 1}}})]
    with pytest.raises(ConfigError, match=r"'needs-tpu' asks for CPU=1, tpu=1 per trial, which no node"):
        run_suite(scenarios, {"type": "command", "command": "echo hi"}, store=tmp_path / "store",
                  options=HarnessOptions(executor=f"ray:{ray_cluster.address}"))


# --------------------------------------------------------------------------- without a cluster


def test_executor_names_and_their_mistakes() -> None:
    assert executor_spec(None) == {"type": "local"}
    assert executor_spec("ray") == {"type": "ray"}
    assert executor_spec("ray:10.0.0.5:6379") == {"type": "ray", "address": "10.0.0.5:6379"}
    assert make_executor("local").name == "local"
    ray_exec = make_executor({"type": "ray", "address": "auto", "max_retries": 5})
    assert isinstance(ray_exec, RayExecutor)
    assert ray_exec.config.max_retries == 5
    with pytest.raises(ConfigError, match=r"unknown executor 'dask'; use one of .*local.*ray"):
        make_executor("dask")
    with pytest.raises(ConfigError, match=r"executor.max_retrys: unknown option; check its spelling"):
        make_executor({"type": "ray", "max_retrys": 2})
    with pytest.raises(ConfigError, match=r"executor.address: the local executor takes no options"):
        make_executor("local:somewhere")


def test_cli_refuses_an_unknown_executor_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "s.yaml").write_text("- {id: a, prompt: go}\n")
    res = subprocess.run([*costar_cmd(), "run", "s.yaml", "--agent", "cmd:echo hi", "--executor", "dask"],
                         cwd=tmp_path, env=child_env(), capture_output=True, text=True, timeout=120)
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == ["error: unknown executor 'dask'; use one of local, ray "
                                               "(or install a plugin that provides it)"]


def test_an_address_nothing_listens_on_is_one_line_at_once(tmp_path: Path) -> None:
    (tmp_path / "s.yaml").write_text("- {id: a, prompt: go}\n")
    t0 = time.monotonic()
    res = subprocess.run([*costar_cmd(), "run", "s.yaml", "--agent", "cmd:echo hi", "--executor", "ray:127.0.0.1:1"],
                         cwd=tmp_path, env=child_env(), capture_output=True, text=True, timeout=120)
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == ["error: cannot connect to the Ray cluster at 127.0.0.1:1 (Connection "
                                               "refused); start it with 'ray start --head' or fix the executor's address"]
    assert time.monotonic() - t0 < 60
    bad = subprocess.run([*costar_cmd(), "run", "s.yaml", "--agent", "cmd:echo hi", "--executor", "ray:headnode"],
                         cwd=tmp_path, env=child_env(), capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2
    assert "error: executor address 'headnode' is not HOST:PORT" in bad.stderr


def test_without_ray_installed_the_executor_says_how_to_get_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from costar.run import ray_executor

    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ConfigError, match=r"^the ray executor needs Ray: pip install 'costar\[ray\]'$"):
        ray_executor._import_ray()


def test_resources_in_scenarios_and_their_mistakes() -> None:
    sc = Scenario.model_validate({"id": "a", "prompt": "x",
                                  "resources": {"cpus": 2, "gpus": 0.5, "memory": "1.5GiB", "custom": {"a100": 1}}})
    assert sc.resources.memory == int(1.5 * 1024**3)
    assert Scenario(id="b", prompt="x").resources.cpus == 1.0
    for bad, fragment in [({"memory": "lots"}, "write bytes or a size like '2GiB'"),
                          ({"cpus": -1}, "greater than or equal to 0"),
                          ({"custom": {"GPU": 1}}, "use cpus, gpus or memory"),
                          ({"cpu": 1}, "Extra inputs are not permitted")]:
        with pytest.raises(ValueError, match=fragment):
            Scenario.model_validate({"id": "a", "prompt": "x", "resources": bad})


def test_setup_files_travel_packed_and_bounded(tmp_path: Path) -> None:
    (tmp_path / "costar.yaml").write_text("")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "big.bin").write_bytes(os.urandom(4096))
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "s.yaml").write_text("")
    sc = Scenario.model_validate({"id": "a", "prompt": "x", "setup": {"files": [
        "data", "notes.txt", {"content": "inline", "dest": "sub/inline.txt"}]}}).with_source(tmp_path / "s.yaml")
    bundle = pack_setup(sc, limit=1 << 20)
    ws = unpack_setup(bundle, sc, tmp_path / "worker", "t0")
    assert (ws.path / "data" / "big.bin").read_bytes() == (tmp_path / "data" / "big.bin").read_bytes()
    assert (ws.path / "notes.txt").read_text() == "hello"
    assert (ws.path / "sub" / "inline.txt").read_text() == "inline"
    assert set(ws.setup_stats) == {"data/big.bin", "notes.txt", "sub/inline.txt"}
    with pytest.raises(ConfigError, match=r"scenario 'a': its setup files are 0.0 MiB, more than the ray executor "
                                          r"sends to workers \(0.0 MiB\); raise executor.max_setup_bytes"):
        pack_setup(sc, limit=1000)


def test_memory_blobs_are_content_addressed(tmp_path: Path) -> None:
    blobs = MemoryBlobs()
    (tmp_path / "f").write_bytes(b"abc")
    sha, size = blobs.put_file(tmp_path / "f")
    assert size == 3
    assert blobs.put_blob(b"abc") == sha
    assert list(blobs.blobs) == [sha]
    store = SQLiteStore(tmp_path / "store")
    assert store.put_blob(b"abc") == sha  # the same key the store gives it


# --------------------------------------------------------------------------- costar assess --executor ray


def _judged_project(root: Path, model_uri: str, scenarios: int) -> Path:
    """A project whose run is stored (no model judge yet), then given an LLM judge to score it with."""
    root.mkdir(parents=True)
    (root / "costar.yaml").write_text("suite: scenarios.yaml\nstore: .costar\nagent: 'cmd:echo the total is 42'\n")
    body = "".join(f"- {{id: s{i}, prompt: 'total?'}}\n" for i in range(scenarios))
    (root / "scenarios.yaml").write_text(body)
    res = subprocess.run([*costar_cmd(), "run", "--no-progress"], cwd=root, env=child_env(), capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    (root / "judges").mkdir()
    (root / "judges" / "quality.yaml").write_text(
        f"name: quality\ntype: llm\nmodel: {model_uri}\ninstructions: Does the answer give the total?\n")
    (root / "scenarios.yaml").write_text(body.replace("prompt: 'total?'", "prompt: 'total?', judges: [quality]"))
    return root


@pytest.mark.slow
@pytest.mark.xdist_group("ray_cluster")
def test_assess_on_the_cluster_honours_one_rate_limit_across_workers(ray_cluster, tmp_path: Path) -> None:
    from costar.testing import Rule, ScriptedModelServer

    server = ScriptedModelServer([], default=Rule(name="judge", json={"value": True, "rationale": "It says 42."}))
    server.start()
    try:
        proj = _judged_project(tmp_path / "p", f"openai-compatible:/judge?base_url={server.base_url}", 16)
        rpm = 240  # 4 calls a second for the whole cluster
        res = subprocess.run([*costar_cmd(), "assess", "--executor", f"ray:{ray_cluster.address}", "--rpm", str(rpm)],
                             cwd=proj, env=child_env(), capture_output=True, text=True, timeout=300)
        assert res.returncode == 0, res.stdout + res.stderr
        assert "16 verdicts computed" in res.stdout
        times = sorted(r.received_at for r in server.requests)
    finally:
        server.stop()
    assert len(times) == 16
    # Measured at the model server: requests per second across every worker stay within the limit
    # (a token bucket with a burst of one: n requests need at least (n - 1) / rate seconds).
    # The limiter lets calls go one interval apart (a burst of one); a worker's event loop that stalls
    # after a call was let go (its first call makes the HTTP client) can delay it next to the following
    # one, so one request of jitter is allowed: between any two requests i < j, j - i ≤ rate·Δt + 2.
    # Without the limiter, the 16 calls arrive within a fraction of a second.
    rate = rpm / 60
    for i, t in enumerate(times):
        for j in range(i + 1, len(times)):
            assert j - i <= rate * (times[j] - t) + 2, (i, j, times[j] - t)
    store = SQLiteStore(proj / ".costar")
    verdicts = [v for v in store.verdicts() if v.name == "quality"]
    assert len(verdicts) == 16
    assert all(v.passed is True for v in verdicts)
    assert len({v.metadata["executor"]["pid"] for v in verdicts}) >= 2  # judged by more than one worker process
    store.close()


@pytest.mark.slow
@pytest.mark.xdist_group("ray_cluster")
def test_assess_on_the_cluster_stops_at_one_money_budget(ray_cluster, tmp_path: Path) -> None:
    from costar.testing import Rule, ScriptedModelServer

    server = ScriptedModelServer([], default=Rule(name="judge", json={"value": True, "rationale": "It says 42."}))
    server.start()
    try:
        # gpt-4o has a price, so each call costs something; the budget is spent by the first.
        proj = _judged_project(tmp_path / "p", f"openai-compatible:/gpt-4o?base_url={server.base_url}", 8)
        # Paced at one call per 2 s: the first call's cost reaches the limiter long before the next may go.
        res = subprocess.run([*costar_cmd(), "assess", "--executor", f"ray:{ray_cluster.address}", "--rpm", "30",
                              "--budget-usd", "0.000001"],
                             cwd=proj, env=child_env(), capture_output=True, text=True, timeout=300)
        requests = len(server.requests)
    finally:
        server.stop()
    assert res.returncode == 1, res.stdout + res.stderr  # error verdicts never pass
    assert requests == 1  # one budget for the cluster, not one per worker process
    store = SQLiteStore(proj / ".costar")
    verdicts = [v for v in store.verdicts() if v.name == "quality"]
    assert len(verdicts) == 8
    assert sum(v.passed is True for v in verdicts) == 1
    refused = [v for v in verdicts if v.error]
    assert len(refused) == 7
    assert all("the model budget of $0.000001 is spent" in (v.error or "") for v in refused)
    store.close()
