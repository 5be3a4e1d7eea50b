"""Subprocesses with bounded output and a timeout that kills the whole process group."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path


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
    returncode: int | None
    stdout: str
    stderr: str
    stdout_dropped: int
    stderr_dropped: int
    timed_out: bool
    seconds: float


def kill_group(pid: int, sig: int = signal.SIGKILL) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


async def _pump(stream: asyncio.StreamReader | None, buf: BoundedBuffer) -> None:
    if stream is None:
        return
    while True:
        chunk = await stream.read(65536)
        if not chunk:
            return
        buf.feed(chunk)


async def run_command(argv: list[str] | str, *, cwd: Path, env: dict[str, str], stdin: bytes | None = None,
                      timeout: float | None = None, max_output: int = 1 << 20,
                      grace_s: float = 2.0) -> CommandResult:
    """Run a command in its own session. On timeout or cancellation the whole group is killed:
    SIGTERM first, SIGKILL after ``grace_s``. When the command exits, children it left behind are
    killed too (they would otherwise keep its output pipes, and the trial, open)."""
    started = time.perf_counter()
    pipe = asyncio.subprocess.PIPE
    stdin_from = pipe if stdin is not None else asyncio.subprocess.DEVNULL
    if isinstance(argv, str):
        proc = await asyncio.create_subprocess_shell(argv, cwd=str(cwd), env=env, stdin=stdin_from, stdout=pipe,
                                                     stderr=pipe, start_new_session=True, limit=1 << 16)
    else:
        proc = await asyncio.create_subprocess_exec(*argv, cwd=str(cwd), env=env, stdin=stdin_from, stdout=pipe,
                                                    stderr=pipe, start_new_session=True, limit=1 << 16)
    out, err = BoundedBuffer.make(max_output), BoundedBuffer.make(max_output)

    async def feed_stdin() -> None:
        if stdin is None or proc.stdin is None:
            return
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            proc.stdin.write(stdin)
            await proc.stdin.drain()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            proc.stdin.close()

    pumps = asyncio.gather(feed_stdin(), _pump(proc.stdout, out), _pump(proc.stderr, err))

    async def body() -> int:
        # asyncio's wait() also waits for the pipes to close, and children the agent left running
        # keep them open: watch the exit status itself, then end those children.
        waiter = asyncio.ensure_future(proc.wait())
        while not waiter.done():
            await asyncio.wait({waiter}, timeout=0.1)
            if proc.returncode is not None and not waiter.done():
                kill_group(proc.pid)
                break
        kill_group(proc.pid)
        try:
            await asyncio.wait_for(asyncio.shield(asyncio.gather(waiter, pumps)), 2.0)
        except TimeoutError:
            pumps.cancel()
        return proc.returncode if proc.returncode is not None else waiter.result()

    timed_out = False
    task = asyncio.ensure_future(body())
    try:
        returncode: int | None = await asyncio.wait_for(asyncio.shield(task), timeout)
    except TimeoutError:
        timed_out = True
        returncode = await _terminate(proc, task, grace_s)
    except asyncio.CancelledError:
        await _terminate(proc, task, grace_s)
        raise
    finally:
        kill_group(proc.pid)  # background children the agent left behind
    return CommandResult(returncode=returncode, stdout=out.text(), stderr=err.text(),
                         stdout_dropped=out.dropped, stderr_dropped=err.dropped, timed_out=timed_out,
                         seconds=time.perf_counter() - started)


async def _terminate(proc: asyncio.subprocess.Process, task: asyncio.Future[int], grace_s: float) -> int | None:
    kill_group(proc.pid, signal.SIGTERM)
    try:
        await asyncio.wait_for(asyncio.shield(task), grace_s)
    except (TimeoutError, asyncio.CancelledError):
        kill_group(proc.pid, signal.SIGKILL)
        # Pipes close once every process holding them is gone; bound the wait regardless.
        with contextlib.suppress(TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(asyncio.shield(task), 5.0)
    if not task.done():
        task.cancel()
    return proc.returncode
