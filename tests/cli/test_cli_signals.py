"""A real ``costar run`` stopped the ways CI and terminals stop it: SIGTERM and SIGHUP are handled
like Ctrl-C (agents' process groups killed, the run marked interrupted); on ``kill -9`` the agents
die with it anyway and the run reads as interrupted. Two resumes of one run at once: the second is
refused with the holder's name (exit 2) and every trial is stored exactly once."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from costar.store.sqlite import SQLiteStore
from tests._util.test_process_control import kill_all, wait_dead
from tests.support.cli import as_in_a_terminal, child_env, costar_cmd

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="process control is tested on Linux")

# Each trial: the agent, a child in its process group and one that escaped it (setsid). While the
# file HOLD exists the agent waits (a long-running agent); without it, it answers at once.
AGENT = textwrap.dedent("""
    import os, subprocess, sys, time
    piddir = os.environ["PIDDIR"]
    inner = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    # The escaped child writes its pid itself, once it has left the group.
    subprocess.Popen([sys.executable, "-c", "import os, sys, time; os.setsid(); "
                      "open(os.path.join(sys.argv[1], 'escaped-%d' % os.getpid()), 'w').close(); time.sleep(300)",
                      piddir])
    for name, pid in (("agent", os.getpid()), ("inner", inner.pid)):
        open(os.path.join(piddir, f"{name}-{pid}"), "w").close()
    while os.path.exists(os.environ["HOLD"]):
        time.sleep(0.05)
    print("answer", os.environ["COSTAR_SCENARIO_ID"], os.environ["COSTAR_TRIAL"])
    """)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "agent.py").write_text(AGENT)
    (tmp_path / "pids").mkdir()
    (tmp_path / "hold").write_text("")
    (tmp_path / "suite.yaml").write_text(textwrap.dedent("""
        - {id: a, prompt: go, trials: 3, timeout: 600}
        - {id: b, prompt: go, trials: 3, timeout: 600}
        """))
    (tmp_path / "costar.yaml").write_text(textwrap.dedent(f"""
        suite: [suite.yaml]
        concurrency: 2
        agent:
          type: command
          command: [{json.dumps(sys.executable)}, agent.py]
          env: {{PIDDIR: {json.dumps(str(tmp_path / "pids"))}, HOLD: {json.dumps(str(tmp_path / "hold"))}}}
        """))
    return tmp_path


def start(project: Path, *args: str, nohup: bool = False) -> subprocess.Popen[str]:
    # A session of its own: the signals of the test go to coSTAR only, as a CI runner's would.
    def signals() -> None:
        as_in_a_terminal()
        if nohup:
            signal.signal(signal.SIGHUP, signal.SIG_IGN)

    return subprocess.Popen([*costar_cmd(), "run", "--no-progress", *args], cwd=project, env=child_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=signals)


def pids(project: Path) -> list[int]:
    return [int(p.name.split("-", 1)[1]) for p in (project / "pids").iterdir()]


def wait_for_agents(project: Path, proc: subprocess.Popen[str], n: int, deadline_s: float = 60.0) -> list[int]:
    """The pids of ``n`` running trials (agent, inner and escaped each), once all are written."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        found = pids(project)
        if len(found) >= 3 * n:
            return found
        if proc.poll() is not None:
            pytest.fail(f"costar exited early ({proc.returncode}): {proc.stderr.read() if proc.stderr else ''}")
        time.sleep(0.05)
    pytest.fail(f"{len(pids(project))} pid files after {deadline_s} s; expected {3 * n}")


def finish(proc: subprocess.Popen[str], deadline_s: float = 60.0) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=deadline_s)
    return proc.returncode, out, err


def runs(project: Path) -> list:
    st = SQLiteStore(project / ".costar", create=False)
    try:
        return st.list_runs()
    finally:
        st.close()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT], ids=["SIGTERM", "SIGHUP", "SIGINT"])
def test_sigterm_and_sighup_stop_a_run_like_ctrl_c(project: Path, sig: signal.Signals) -> None:
    proc = start(project)
    agents: list[int] = []
    try:
        agents = wait_for_agents(project, proc, 2)
        proc.send_signal(sig)
        code, _, err = finish(proc, 30)
        assert code == 128 + sig
        assert ("interrupted: " if sig == signal.SIGINT else f"interrupted by {sig.name}: ") in err
        assert "Traceback" not in err
        assert wait_dead(agents) == [], "agents survived coSTAR's shutdown"
        [run] = runs(project)
        assert run.status == "interrupted"
    finally:
        kill_all(agents)
        if proc.poll() is None:
            proc.kill()


def test_a_run_started_under_nohup_outlives_its_terminal(project: Path) -> None:
    """``nohup costar run``: a closed terminal's SIGHUP stays ignored, as the person asked; SIGTERM still stops it."""
    proc = start(project, nohup=True)
    agents: list[int] = []
    try:
        agents = wait_for_agents(project, proc, 2)
        proc.send_signal(signal.SIGHUP)
        with pytest.raises(subprocess.TimeoutExpired):
            proc.wait(timeout=3)
        assert all(Path(f"/proc/{pid}").exists() for pid in agents)
        proc.send_signal(signal.SIGTERM)
        code, _, err = finish(proc, 30)
        assert code == 128 + signal.SIGTERM, err
        assert "interrupted by SIGTERM: " in err
    finally:
        kill_all(agents)
        if proc.poll() is None:
            proc.kill()


def test_agents_die_with_costar_on_kill_9_and_the_run_reads_interrupted(project: Path) -> None:
    proc = start(project)
    agents: list[int] = []
    try:
        agents = wait_for_agents(project, proc, 2)
        [before] = runs(project)
        assert before.status == "running"  # a live process holds its lease
        proc.kill()
        proc.wait(timeout=10)
        assert wait_dead(agents) == [], "agents survived a kill -9 of coSTAR"
        [run] = runs(project)
        assert run.status == "interrupted"
        listed = subprocess.run([*costar_cmd(), "runs"], cwd=project, env=child_env(), capture_output=True,
                                text=True, timeout=60)
        assert "interrupted" in listed.stdout
    finally:
        kill_all(agents)
        if proc.poll() is None:
            proc.kill()


def test_a_second_resume_is_refused_and_each_trial_is_stored_once(project: Path) -> None:
    first = start(project)
    procs = [first]
    seen: list[int] = []
    try:
        seen = wait_for_agents(project, first, 2)
        first.send_signal(signal.SIGTERM)
        assert finish(first, 30)[0] == 128 + signal.SIGTERM
        assert wait_dead(seen) == []
        for p in (project / "pids").iterdir():
            p.unlink()

        holder = start(project, "--resume", "latest")
        procs.append(holder)
        seen = wait_for_agents(project, holder, 2)
        second = subprocess.run([*costar_cmd(), "run", "--no-progress", "--resume", "latest"], cwd=project,
                                env=child_env(), capture_output=True, text=True, timeout=60)
        assert second.returncode == 2
        assert f"is being run by pid {holder.pid} on " in second.stderr
        assert "Traceback" not in second.stderr

        (project / "hold").unlink()  # the holder's agents answer now
        code, _, err = finish(holder, 120)
        assert code == 0, err
        # its agents' escaped children were killed at each trial's end, without a word from asyncio
        for sign in ("Traceback", "never retrieved", "Event loop is closed", "Exception ignored"):
            assert sign not in err, err
        assert wait_dead(seen) == []
        st = SQLiteStore(project / ".costar", create=False)
        try:
            [run] = st.list_runs()
            keys = [(sc, trial) for _, sc, trial in st.trace_keys(run.run_id)]
        finally:
            st.close()
        assert run.status == "finished"
        assert sorted(keys) == [(sc, t) for sc in "ab" for t in range(3)]
    finally:
        kill_all(seen + pids(project))
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
