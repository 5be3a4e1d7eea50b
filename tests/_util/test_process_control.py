"""Commands never outlive their purpose: children that escape the process group (``setsid``) are
found by their marker and killed, a trial is not held open by their pipes, no asyncio traceback is
printed, and when coSTAR itself is killed outright (``kill -9``) its commands die with it."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from costar._util.process import MARKER_VAR, pid_alive, process_start_time, run_command, watchdog

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="process control is tested on Linux")

# An agent whose child leaves the process group with setsid and keeps writing to the inherited
# stdout: before, the trial waited ~2 s for the pipe, the child survived, asyncio printed tracebacks.
ESCAPING_AGENT = textwrap.dedent("""
    import os, subprocess, sys, time
    piddir = sys.argv[1]
    # The child says when it has left the group; the agent ends only then (else killing the group
    # would catch it before it escaped).
    child = subprocess.Popen([sys.executable, "-c",
        "import os, sys, time\\nos.setsid()\\nopen(sys.argv[1], 'w').close()\\n"
        "while True:\\n    print('x' * 80, flush=True); time.sleep(0.01)",
        os.path.join(piddir, f"left-{os.getpid()}")])
    flag = os.path.join(piddir, f"left-{os.getpid()}")
    while not os.path.exists(flag):
        time.sleep(0.01)
    os.replace(flag, os.path.join(piddir, f"escaped-{child.pid}"))
    print("agent done", flush=True)
    if sys.argv[2] == "hang":
        time.sleep(300)
    """)


def alive(pid: int) -> bool:
    return pid_alive(pid)


def wait_dead(pids: list[int], deadline_s: float = 15.0) -> list[int]:
    """The pids still alive after the deadline (zombies count as dead)."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        left = [p for p in pids if alive(p)]
        if not left:
            return []
        time.sleep(0.05)
    return [p for p in pids if alive(p)]


def wait_for_files(folder: Path, prefix: str, n: int, deadline_s: float = 30.0) -> list[int]:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        found = [int(p.name.split("-", 1)[1]) for p in folder.glob(f"{prefix}-*")]
        if len(found) >= n:
            return found
        time.sleep(0.05)
    pytest.fail(f"only {len(list(folder.glob(prefix + '-*')))} of {n} '{prefix}' pid files appeared")


def kill_all(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.mark.parametrize("mode", ["exit", "hang"])
def test_an_escaped_child_is_killed_and_does_not_hold_the_command_open(tmp_path: Path, mode: str) -> None:
    agent = tmp_path / "agent.py"
    agent.write_text(ESCAPING_AGENT)
    # A script of its own, so stderr shows exactly what asyncio prints at exit (and at loop close).
    script = tmp_path / "drive.py"
    script.write_text(textwrap.dedent(f"""
        import asyncio, json, os, sys
        from pathlib import Path
        from costar._util.process import run_command

        async def main():
            res = await run_command([sys.executable, {str(agent)!r}, {str(tmp_path)!r}, {mode!r}], cwd=Path("."),
                                    env=dict(os.environ), timeout=3, linger_s=30)
            print(json.dumps({{"rc": res.returncode, "timed_out": res.timed_out, "seconds": res.seconds,
                              "escaped": res.escaped, "done": "agent done" in res.stdout}}))
        asyncio.run(main())
        """))
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    import json

    res = json.loads(out.stdout.strip().splitlines()[-1])
    escaped = [int(p.name.split("-", 1)[1]) for p in tmp_path.glob("escaped-*")]
    try:
        assert res["done"] is True
        assert res["escaped"] == 1
        assert res["timed_out"] is (mode == "hang")
        # The escaped child does not hold the command open: it is killed, so its pipe closes at
        # once instead of after linger_s (30 s here, generous enough for a loaded machine).
        assert res["seconds"] < (3 + 20 if mode == "hang" else 20), res
        assert wait_dead(escaped) == []
        for sign in ("Traceback", "never retrieved", "Event loop is closed", "Exception ignored"):
            assert sign not in out.stderr, out.stderr
    finally:
        kill_all(escaped)

# A child that escapes the group *and* drops its environment (so no marker finds it), then keeps
# writing to the stdout it inherited: the one case coSTAR cannot kill. The trial must still end.
UNFINDABLE_AGENT = textwrap.dedent("""
    import os, subprocess, sys, time
    code = ("import os, sys, time\\nos.setsid()\\n"
            "open(os.path.join(sys.argv[1], 'hidden-%d' % os.getpid()), 'w').close()\\n"
            "while True:\\n    print('x' * 80, flush=True); time.sleep(0.01)")
    subprocess.Popen([sys.executable, "-c", code, sys.argv[1]], env={})
    while not any(n.startswith("hidden-") for n in os.listdir(sys.argv[1])):
        time.sleep(0.01)
    print("agent done", flush=True)
    """)


def test_pipes_held_by_a_child_that_cannot_be_found_are_closed_after_the_linger(tmp_path: Path) -> None:
    agent = tmp_path / "agent.py"
    agent.write_text(UNFINDABLE_AGENT)
    script = tmp_path / "drive.py"
    script.write_text(textwrap.dedent(f"""
        import asyncio, json, os, sys
        from pathlib import Path
        from costar._util.process import run_command

        async def main():
            res = await run_command([sys.executable, {str(agent)!r}, {str(tmp_path)!r}], cwd=Path("."),
                                    env=dict(os.environ), timeout=120, linger_s=1.0)
            print(json.dumps({{"rc": res.returncode, "timed_out": res.timed_out, "seconds": res.seconds,
                              "escaped": res.escaped, "done": "agent done" in res.stdout}}))
        asyncio.run(main())
        """))
    hidden: list[int] = []
    try:
        out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=90)
        hidden = [int(p.name.split("-", 1)[1]) for p in tmp_path.glob("hidden-*")]
        import json

        res = json.loads(out.stdout.strip().splitlines()[-1])
        assert res["done"] is True
        assert res["rc"] == 0
        assert res["timed_out"] is False
        assert res["escaped"] == 0  # not found: it carries no marker
        # The command ended when the agent did, plus the linger: not when the hidden child (which never
        # stops) lets go of the pipe. 30 s of slack for a loaded machine.
        assert res["seconds"] < 30, res
        for sign in ("Traceback", "never retrieved", "Event loop is closed", "Exception ignored"):
            assert sign not in out.stderr, out.stderr
    finally:
        kill_all(hidden)



def test_every_command_carries_its_own_marker(tmp_path: Path) -> None:
    async def both() -> list[str]:
        cmd = [sys.executable, "-c", f"import os; print(os.environ['{MARKER_VAR}'])"]
        results = await asyncio.gather(*(run_command(cmd, cwd=tmp_path, env=dict(os.environ)) for _ in range(2)))
        return [r.stdout.strip() for r in results]

    first, second = asyncio.run(both())
    assert len(first) == 32
    assert first != second


def test_process_identity_tells_a_reused_pid_apart() -> None:
    me = os.getpid()
    assert alive(me)
    started = process_start_time(me)
    assert started is not None
    assert abs(started - time.time()) < 24 * 3600
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    assert not alive(proc.pid)
    assert process_start_time(proc.pid) is None


# A coSTAR process running a command whose group holds a direct child, a grandchild in the same
# group, and a grandchild that escaped it; it writes their pids, then waits to be killed.
_HOLDER = textwrap.dedent("""
    import asyncio, os, sys
    from pathlib import Path
    from costar._util.process import run_command, watchdog

    piddir = Path(sys.argv[1])
    agent = '''
    import os, subprocess, sys, time
    piddir = sys.argv[1]
    inner = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    # The escaped child writes its pid itself, once it has left the group.
    subprocess.Popen([sys.executable, "-c", "import os, sys, time; os.setsid(); "
                      "open(os.path.join(sys.argv[1], 'escaped-%d' % os.getpid()), 'w').close(); time.sleep(300)",
                      piddir])
    for name, pid in (("agent", os.getpid()), ("inner", inner.pid)):
        open(os.path.join(piddir, f"{name}-{pid}"), "w").close()
    time.sleep(300)
    '''

    async def main():
        await run_command([sys.executable, "-c", agent, str(piddir)], cwd=piddir, env=dict(os.environ))

    asyncio.run(main())
    """)


@pytest.mark.parametrize("pdeathsig", [True, False], ids=["pdeathsig+watchdog", "watchdog-only"])
def test_commands_die_with_costar_on_kill_9(tmp_path: Path, pdeathsig: bool) -> None:
    env = dict(os.environ)
    script = _HOLDER if pdeathsig else _HOLDER.replace(
        "from costar._util.process import run_command, watchdog",
        "import costar._util.process as p\np._PRCTL = None\nfrom costar._util.process import run_command")
    holder = subprocess.Popen([sys.executable, "-c", script, str(tmp_path)], env=env, start_new_session=True)
    pids: list[int] = []
    try:
        pids = [p for prefix in ("agent", "inner", "escaped") for p in wait_for_files(tmp_path, prefix, 1)]
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(timeout=10)
        assert wait_dead(pids) == [], "a command outlived the coSTAR process that started it"
    finally:
        kill_all(pids)
        if holder.poll() is None:
            holder.kill()


def test_the_watchdog_is_restarted_if_it_dies(tmp_path: Path) -> None:
    async def one() -> None:
        await run_command([sys.executable, "-c", "pass"], cwd=tmp_path, env=dict(os.environ))

    asyncio.run(one())
    first = watchdog().pid
    assert first is not None
    os.kill(first, signal.SIGKILL)
    assert wait_dead([first]) == []
    asyncio.run(one())
    second = watchdog().pid
    assert second is not None
    assert second != first
