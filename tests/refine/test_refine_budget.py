"""The refine time budget is a hard stop: an assistant still running when it runs out is killed
(its whole process group) and the report says so; and a refine session killed outright takes
its assistant with it."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from costar.refine import CommandAssistant, RefineOptions, Refiner
from tests._util.test_process_control import kill_all, wait_dead, wait_for_files
from tests.refine.test_refine import repo  # noqa: F401  (the fixture: a small git repository with a failing agent)
from tests.support.cli import child_env, costar_cmd

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="process control is tested on Linux")

# An assistant that never finishes: it and a child of its write their pids, then wait.
SLOW_ASSISTANT = textwrap.dedent("""
    import os, subprocess, sys, time
    piddir = sys.argv[1]
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    for name, pid in (("assistant", os.getpid()), ("helper", child.pid)):
        open(os.path.join(piddir, f"{name}-{pid}"), "w").close()
    time.sleep(300)
    """)


def slow_assistant(tmp_path: Path) -> tuple[list[str], Path]:
    script = tmp_path / "slow_assistant.py"
    script.write_text(SLOW_ASSISTANT)
    piddir = tmp_path / "pids"
    piddir.mkdir()
    return [sys.executable, str(script), str(piddir)], piddir


def refine_with_slow_assistant(project: Path, tmp_path: Path) -> tuple[subprocess.Popen[str], list[int]]:
    """``costar refine`` in a child process, once its slow assistant and the assistant's child run."""
    argv, piddir = slow_assistant(tmp_path)
    proc = subprocess.Popen([*costar_cmd(), "refine", "--trials", "1", "--iterations", "1",
                             "--assistant", "cmd:" + " ".join(json.dumps(a) for a in argv)],
                            cwd=project, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        return proc, wait_for_files(piddir, "assistant", 1, 120) + wait_for_files(piddir, "helper", 1, 30)
    except BaseException:
        proc.kill()
        proc.wait(timeout=10)
        raise


def test_the_time_budget_stops_a_running_assistant(repo: Path, tmp_path: Path) -> None:  # noqa: F811
    argv, piddir = slow_assistant(tmp_path)
    budget = 8.0  # the baseline (3 scenarios, 1 trial) takes a second or two; the rest is the assistant's
    refiner = Refiner(repo / "costar.yaml", CommandAssistant(argv, timeout=1800),
                      RefineOptions(iterations=3, trials=1, budget_seconds=budget))
    report = refiner.run()
    pids = [int(p.name.split("-", 1)[1]) for p in piddir.iterdir()]
    try:
        assert len(pids) == 2
        assert wait_dead(pids) == [], "the assistant outlived the budget"
        [attempt] = report.attempts
        assert attempt.status == "rejected"
        assert attempt.reason.startswith("stopped when the time budget ran out: the assistant had run for ")
        assert attempt.reason.endswith("s; its processes were killed")
        assert re.match(r"time budget spent \(\d+ s of 8 s\); attempt 1 stopped when", report.stopped_because)
        assert report.seconds < 300  # it did not wait for the assistant
        text = (Path(report.session_dir) / "report.md").read_text()
        assert "stopped when the time budget ran out" in text
    finally:
        kill_all(pids)


def test_a_killed_refine_session_takes_its_assistant_with_it(repo: Path, tmp_path: Path) -> None:  # noqa: F811
    proc, pids = refine_with_slow_assistant(repo, tmp_path)
    try:
        proc.kill()
        proc.wait(timeout=10)
        assert wait_dead(pids) == [], "the assistant outlived a kill -9 of coSTAR"
    finally:
        kill_all(pids)
        if proc.poll() is None:
            proc.kill()


def test_sigterm_stops_a_refine_session_in_one_line(repo: Path, tmp_path: Path) -> None:  # noqa: F811
    proc, pids = refine_with_slow_assistant(repo, tmp_path)
    try:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 128 + signal.SIGTERM
        assert err.strip().splitlines()[-1].startswith("interrupted by SIGTERM: ")
        assert "Traceback" not in err
        assert wait_dead(pids) == []
    finally:
        kill_all(pids)
        if proc.poll() is None:
            proc.kill()
