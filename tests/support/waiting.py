"""Waiting for a condition with a deadline, instead of sleeping for a fixed time and hoping."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


def wait_for(condition: Callable[[], T], timeout: float = 20.0, what: str = "condition") -> T:
    """Poll ``condition`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    delay = 0.01
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 1.5, 0.2)


async def wait_for_async(condition: Callable[[], T], timeout: float = 20.0, what: str = "condition") -> T:
    """:func:`wait_for` inside an event loop: the loop runs the other tasks between two polls."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.001)


def running_with(token: str) -> list[int]:
    """The live processes whose command line holds ``token`` (zombies have none, so they do not count).

    Found through /proc, so it also sees processes in a sandbox's pid namespace, whose own pids mean
    nothing outside it. A process in the middle of its exec shows no command line for an instant: look
    for processes that have had time to start."""
    needle = token.encode()
    pids = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if needle in (proc / "cmdline").read_bytes():
                pids.append(int(proc.name))
        except OSError:
            continue
    return pids
