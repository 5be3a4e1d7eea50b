"""Running the ``costar`` command as a user does: a child process with plain, wide output."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path


def costar_cmd() -> list[str]:
    return [sys.executable, "-m", "costar.cli"]


def as_in_a_terminal() -> None:
    """``preexec_fn`` for a child the test stops with a signal: SIGINT, SIGHUP and SIGTERM at their
    defaults, as in a terminal's foreground job. A test run started in the background (``nohup
    pytest &`` in a script) ignores SIGINT and SIGHUP, children inherit that, and Python and coSTAR
    then leave them ignored."""
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM):
        signal.signal(sig, signal.SIG_DFL)


def child_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("COLUMNS", None)
    env.update({"NO_COLOR": "1", "COLUMNS": "200"}, **extra)
    return env


def one_line_error(res: subprocess.CompletedProcess[str]) -> str:
    """The error a failed command printed, after checking it is what users get: exit 2, one line, no traceback."""
    assert res.returncode == 2, (res.returncode, res.stdout, res.stderr)
    err = res.stderr.strip()
    assert err.startswith("error: "), res.stderr
    assert len(err.splitlines()) == 1, res.stderr
    assert "Traceback" not in res.stderr
    return err


def costar(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``costar ARGS`` run in ``cwd`` the way a user runs it: a child process with plain output."""
    return subprocess.run([*costar_cmd(), *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env=child_env())
