"""The reaper: a tiny watchdog process that kills coSTAR's commands if coSTAR dies first.

coSTAR starts agents and coding assistants in process groups of their own and kills those groups
when a trial ends, times out or is interrupted. When coSTAR itself is killed outright (``kill -9``,
the OOM killer, a CI runner that gives up waiting), nothing of coSTAR is left to do that. The
reaper is: a separate process in a session of its own, started once per coSTAR process, reading
a pipe whose only writer is coSTAR. coSTAR tells it which process groups it started (and the
marker each carries, below); when the pipe reaches end of file, coSTAR is gone, and the reaper
kills every group still registered and every process carrying a registered marker, then exits.

The marker: every command gets ``COSTAR_PROCESS_MARKER=<random>`` in its environment, which its
descendants inherit. A process that left the command's group (``setsid``, a double fork) still
carries it, so on Linux it is found by reading ``/proc/PID/environ`` (only processes of the same
user are readable, which is exactly the set coSTAR could have started). A process that replaced
its whole environment, or runs as another user, cannot be found this way.

This module runs as a script (``python -I -S reaper.py``): it imports nothing but the standard
library, so it starts in milliseconds. Lines on its standard input:

* ``+ PGID MARKER``: a command's process group and its marker;
* ``- PGID``: that command ended, forget it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys

MARKER_VAR = "COSTAR_PROCESS_MARKER"


def processes_with_markers(markers: set[str] | frozenset[str], *, exclude: int | None = None) -> dict[int, str]:
    """Processes (pid → marker) whose environment holds ``COSTAR_PROCESS_MARKER`` set to one of
    ``markers``. Linux only (``/proc``); elsewhere, and for unreadable processes, nothing."""
    if not markers or not os.path.isdir("/proc/self"):
        return {}
    needles = {f"\0{MARKER_VAR}={t}\0".encode(): t for t in markers}
    found: dict[int, str] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        pid = int(name)
        if pid == exclude:
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as f:
                data = b"\0" + f.read() + b"\0"
        except OSError:  # gone, or another user's
            continue
        for needle, marker in needles.items():
            if needle in data:
                found[pid] = marker
                break
    return found


def kill_marked(markers: set[str] | frozenset[str], *, rounds: int = 3) -> list[int]:
    """SIGKILL every process carrying one of ``markers``; a few rounds, since one may be forking
    while it is killed. Returns the pids killed."""
    killed: list[int] = []
    me = os.getpid()
    for _ in range(rounds):
        pids = [p for p in processes_with_markers(markers, exclude=me) if p not in killed]
        if not pids:
            break
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
    return killed


def _group_is_ours(pgid: int, marker: str) -> bool:
    """Whether killing process group ``pgid`` can only hit the command we registered: the kernel
    never hands out a pid that is still some group's id, so while the group lives its id is ours.
    Once it is gone, a new process could get that pid and make its own group; where the leader's
    environment is readable it must carry our marker."""
    try:
        with open(f"/proc/{pgid}/environ", "rb") as f:
            return f"\0{MARKER_VAR}={marker}\0".encode() in b"\0" + f.read() + b"\0"
    except FileNotFoundError:  # the leader is gone (other members may remain) or no /proc
        return True
    except OSError:  # another user's process now holds that pid
        return False


def reap(groups: dict[int, str]) -> None:
    """Kill what coSTAR left running: the registered groups and every marked process."""
    for pgid, marker in groups.items():
        if _group_is_ours(pgid, marker):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGKILL)
    kill_marked(set(groups.values()))


def main() -> None:
    """Read registrations until coSTAR's end of the pipe closes, then kill what is still registered."""
    # In a session of its own already; a Ctrl-C meant for coSTAR must not stop the cleanup.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    groups: dict[int, str] = {}
    stdin = sys.stdin.buffer
    for raw in iter(stdin.readline, b""):
        parts = raw.decode("ascii", "replace").split()
        try:
            if len(parts) == 3 and parts[0] == "+":
                groups[int(parts[1])] = parts[2]
            elif len(parts) == 2 and parts[0] == "-":
                groups.pop(int(parts[1]), None)
        except ValueError:
            continue
    reap(groups)


if __name__ == "__main__":
    main()
