"""Subprocesses that never outlive their purpose: bounded output, a timeout that kills the whole
process group, and no survivors when coSTAR itself dies.

Every command :func:`run_command` starts (an agent, a setup command, a coding assistant, judge code)

* runs in a session and process group of its own, killed whole (SIGTERM, then SIGKILL) on timeout
  or cancellation, and killed whole when the command exits (children it left behind would keep its
  output pipes, and the trial, open);
* carries a marker in its environment, ``COSTAR_PROCESS_MARKER``, inherited by its descendants: a
  child that escaped the group (``setsid``, a double fork) is found by the marker on Linux
  (``/proc/PID/environ``) and killed too, and its hold on the output pipes is cut so the trial ends
  on time. Processes that replace their whole environment cannot be found this way (a cgroup per
  command could, but needs privileges coSTAR does not assume);
* dies with coSTAR even on ``kill -9``: on Linux the direct child asks the kernel for SIGKILL when
  its parent dies (``PR_SET_PDEATHSIG``), and everywhere a watchdog process (:mod:`costar._util.reaper`)
  holding the other end of a pipe kills every registered group and marked process once coSTAR is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from costar._util.reaper import MARKER_VAR, kill_marked

__all__ = ["MARKER_VAR", "BoundedBuffer", "CommandResult", "kill_group", "pid_alive", "process_start_time",
           "run_command", "watchdog"]


@dataclass
class BoundedBuffer:
    """Keeps the first and last ``limit // 2`` bytes of a stream and counts what it drops."""

    limit: int
    head: bytearray
    tail: bytearray
    dropped: int = 0

    @classmethod
    def make(cls, limit: int) -> BoundedBuffer:
        return cls(limit=limit, head=bytearray(), tail=bytearray())

    def feed(self, chunk: bytes) -> None:
        half = self.limit // 2
        room = half - len(self.head)
        if room > 0:
            self.head += chunk[:room]
            chunk = chunk[room:]
        if chunk:
            self.tail += chunk
            excess = len(self.tail) - (self.limit - half)
            if excess > 0:
                del self.tail[:excess]
                self.dropped += excess

    def text(self) -> str:
        body = bytes(self.head)
        if self.dropped:
            body += f"\n…[{self.dropped} bytes of output dropped]…\n".encode()
        body += bytes(self.tail)
        return body.decode("utf-8", errors="replace")


@dataclass
class CommandResult:
    """How a command ended and what it printed (bounded)."""

    returncode: int | None
    stdout: str
    stderr: str
    stdout_dropped: int
    stderr_dropped: int
    timed_out: bool
    seconds: float
    escaped: int = 0
    """Processes that had left the command's process group (``setsid``) and were killed by marker."""


def kill_group(pid: int, sig: int = signal.SIGKILL) -> None:
    """Send ``sig`` to process group ``pid``; a group already gone (or not ours) is ignored."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


# --------------------------------------------------------------------------- process identity


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists (a zombie counts as gone)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, another user's
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]
        return state not in (b"Z", b"X")
    except (OSError, IndexError):
        return True


def _boot_time() -> float | None:
    try:
        with open("/proc/stat", "rb") as f:
            for line in f:
                if line.startswith(b"btime "):
                    return float(line.split()[1])
    except OSError:
        pass
    return None


def process_start_time(pid: int) -> float | None:
    """When the process started (seconds since the epoch, 10 ms resolution); None where it cannot
    be known (not Linux, gone). With the pid it identifies a process: pids are reused, start
    times of one pid are not."""
    boot = _boot_time()
    if boot is None:
        return None
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        ticks = int(fields[19])  # field 22 of stat(5), counted after the command name
    except (OSError, IndexError, ValueError):
        return None
    return round(boot + ticks / os.sysconf("SC_CLK_TCK"), 2)


def machine_id() -> str:
    """What makes two pids comparable: the same kernel boot and the same pid namespace (Linux),
    else the host name. A pid recorded under another machine id says nothing about this one."""
    import socket

    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            boot = f.read().strip()
        return f"{boot}/{os.readlink('/proc/self/ns/pid')}"
    except OSError:
        return socket.gethostname()


# --------------------------------------------------------------------------- dying with coSTAR

_PR_SET_PDEATHSIG = 1


def _prctl() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    fn.restype = ctypes.c_int
    return fn


_PRCTL = _prctl()


def die_with_parent(parent: int) -> Callable[[], None] | None:
    """A preexec function (None where the platform has no ``prctl``): in the child, after fork and
    before exec, ask for SIGKILL when the parent dies. Safe next to threads because it only calls
    one prebuilt foreign function and ``getppid``: it allocates no locks and imports nothing
    (glibc's malloc is fork-safe). The parent may have died already between fork and prctl; then
    the child kills itself. The kernel's "parent" is the *thread* that forked: start the child from
    a thread that lives as long as the child should (the server's supervisor thread waits on it)."""
    prctl = _PRCTL
    if prctl is None:
        return None

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:
            os.kill(os.getpid(), signal.SIGKILL)

    return preexec


class Watchdog:
    """coSTAR's end of the reaper's pipe (see :mod:`costar._util.reaper`): registers each command's
    process group and marker while it runs. The reaper starts on first use, once per process, and
    again if it was killed."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._fd: int | None = None
        self._groups: dict[int, str] = {}

    def _start(self) -> None:
        read, write = os.pipe()  # both ends non-inheritable: no command ever holds the write end
        try:
            script = str(Path(__file__).with_name("reaper.py"))
            actions = [(os.POSIX_SPAWN_DUP2, read, 0), (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
                       (os.POSIX_SPAWN_OPEN, 2, os.devnull, os.O_WRONLY, 0)]
            argv = [sys.executable, "-I", "-S", script]
            # Out of the terminal's process group: a Ctrl-C or a kill of coSTAR's group misses it.
            try:
                self._pid = os.posix_spawn(sys.executable, argv, dict(os.environ), file_actions=actions, setsid=True)
            except NotImplementedError:
                self._pid = os.posix_spawn(sys.executable, argv, dict(os.environ), file_actions=actions,
                                           setpgroup=0)
        except OSError:
            os.close(write)
            raise
        finally:
            os.close(read)
        self._fd = write

    def _alive(self) -> bool:
        if self._pid is None or self._fd is None:
            return False
        try:
            pid, _ = os.waitpid(self._pid, os.WNOHANG)
        except ChildProcessError:
            return False
        return pid == 0

    def _send(self, line: str) -> None:
        """Write one line (under the lock), restarting the reaper with every live group if it died."""
        if not self._alive():
            self._close_fd()
            try:
                self._start()
            except OSError:
                return  # no watchdog: the group kills and PR_SET_PDEATHSIG remain
            line = "".join(f"+ {g} {t}\n" for g, t in self._groups.items())
        with contextlib.suppress(OSError):
            assert self._fd is not None
            os.write(self._fd, line.encode("ascii"))

    def watch(self, pgid: int, marker: str) -> None:
        """Tell the reaper about a command: its process group and the marker its processes carry."""
        with self._lock:
            self._groups[pgid] = marker
            self._send(f"+ {pgid} {marker}\n")

    def forget(self, pgid: int) -> None:
        """The command of group ``pgid`` ended and was cleaned up: the reaper need not kill it."""
        with self._lock:
            if self._groups.pop(pgid, None) is not None and self._fd is not None:
                with contextlib.suppress(OSError):
                    os.write(self._fd, f"- {pgid}\n".encode("ascii"))

    @property
    def pid(self) -> int | None:
        """The reaper's pid while it runs (for tests and diagnostics)."""
        with self._lock:
            return self._pid if self._alive() else None

    def _close_fd(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None

    def _after_fork(self) -> None:
        # A forked child must not keep the parent's reaper waiting (it holds a copy of the write
        # end) nor speak for the parent's groups: it starts its own reaper when it runs a command.
        self._lock = threading.Lock()
        self._close_fd()
        self._pid = None
        self._groups = {}


_WATCHDOG = Watchdog()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_WATCHDOG._after_fork)


def watchdog() -> Watchdog:
    """This process's watchdog."""
    return _WATCHDOG


# --------------------------------------------------------------------------- running a command


class _Protocol(asyncio.SubprocessProtocol):
    """Feeds the output straight into bounded buffers (no reader tasks to cancel or leak) and says
    when the process exited and when its output pipes closed: with a child that escaped holding
    them, those are different moments."""

    def __init__(self, loop: asyncio.AbstractEventLoop, out: BoundedBuffer, err: BoundedBuffer) -> None:
        self._buffers = {1: out, 2: err}
        self._open = {1, 2}
        self.exited: asyncio.Future[None] = loop.create_future()
        self.drained: asyncio.Future[None] = loop.create_future()

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        buf = self._buffers.get(fd)
        if buf is not None:
            buf.feed(data)

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        self._open.discard(fd)
        if not self._open and not self.drained.done():
            self.drained.set_result(None)

    def process_exited(self) -> None:
        if not self.exited.done():
            self.exited.set_result(None)


async def _wait(fut: asyncio.Future[None], seconds: float) -> bool:
    """Wait up to ``seconds`` for ``fut`` without cancelling it; whether it is done."""
    if not fut.done():
        await asyncio.wait({fut}, timeout=seconds)
    return fut.done()


async def run_command(argv: list[str] | str, *, cwd: Path, env: dict[str, str], stdin: bytes | None = None,
                      timeout: float | None = None, max_output: int = 1 << 20,
                      grace_s: float = 2.0, linger_s: float = 1.0) -> CommandResult:
    """Run a command (an argv list, or a shell command line) in its own session and return how it
    ended with its output, bounded to ``max_output`` bytes per stream.

    On timeout or cancellation the whole group gets SIGTERM, then SIGKILL after ``grace_s``. When
    the command ends, whatever it left running is killed: its group, and processes carrying its
    marker that escaped the group. Output still arriving after that is read for at most
    ``linger_s`` seconds, then the pipes are closed."""
    started = time.perf_counter()
    loop = asyncio.get_running_loop()
    marker = secrets.token_hex(16)
    out, err = BoundedBuffer.make(max_output), BoundedBuffer.make(max_output)
    proto = _Protocol(loop, out, err)
    options: dict[str, Any] = dict(
        cwd=str(cwd), env={**env, MARKER_VAR: marker}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL, start_new_session=True)
    preexec = die_with_parent(os.getpid())
    if preexec is not None:
        options["preexec_fn"] = preexec
    if isinstance(argv, str):
        transport, _ = await loop.subprocess_shell(lambda: proto, argv, **options)
    else:
        transport, _ = await loop.subprocess_exec(lambda: proto, *argv, **options)
    pid = transport.get_pid()
    _WATCHDOG.watch(pid, marker)
    timed_out = False
    escaped = 0
    try:
        if stdin is not None:
            pipe = transport.get_pipe_transport(0)
            if isinstance(pipe, asyncio.WriteTransport):  # written as the child reads; closed after the last byte
                with contextlib.suppress(OSError):
                    pipe.write(stdin)
                    pipe.close()
        try:
            async with asyncio.timeout(timeout):
                await asyncio.shield(proto.exited)
        except TimeoutError:
            timed_out = True
            await _terminate(pid, proto, grace_s)
        except asyncio.CancelledError:
            await _terminate(pid, proto, grace_s)
            raise
    finally:
        kill_group(pid)  # children the command left behind
        escaped = len(kill_marked({marker}))  # and those that left its group
        try:
            # The pipes close once the last process holding them is gone; one we could not find
            # may hold them for good, so stop reading after a moment.
            await _wait(proto.drained, linger_s)
        finally:
            transport.close()
            _WATCHDOG.forget(pid)
    return CommandResult(returncode=transport.get_returncode(), stdout=out.text(), stderr=err.text(),
                         stdout_dropped=out.dropped, stderr_dropped=err.dropped, timed_out=timed_out,
                         seconds=time.perf_counter() - started, escaped=escaped)


async def _terminate(pid: int, proto: _Protocol, grace_s: float) -> None:
    kill_group(pid, signal.SIGTERM)
    if not await _wait(proto.exited, grace_s):
        kill_group(pid, signal.SIGKILL)
        await _wait(proto.exited, 5.0)
