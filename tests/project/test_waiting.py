"""The suite's own waiting helpers (tests/support/waiting.py): they return as soon as the condition
holds, fail with a message naming what they waited for, and find processes by their command line."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid

import pytest

from tests.support.waiting import running_with, wait_for, wait_for_async


def test_wait_for_polls_until_the_condition_holds_and_returns_its_value() -> None:
    calls = []

    def third_time() -> list[int] | None:
        calls.append(1)
        return [len(calls)] if len(calls) >= 3 else None

    assert wait_for(third_time, timeout=5, what="the third call") == [3]
    assert len(calls) == 3


def test_wait_for_fails_after_its_timeout_naming_what_it_waited_for() -> None:
    started = time.monotonic()
    with pytest.raises(AssertionError, match=r"^timed out after 0.2s waiting for the moon$"):
        wait_for(lambda: False, timeout=0.2, what="the moon")
    assert time.monotonic() - started >= 0.2


def test_wait_for_async_lets_the_loop_run_the_task_it_waits_for() -> None:
    async def main() -> str:
        done: list[str] = []

        async def worker() -> None:
            await asyncio.sleep(0)
            done.append("worked")

        task = asyncio.ensure_future(worker())
        got = await wait_for_async(lambda: done and done[0], timeout=5, what="the worker")
        await task
        return got

    assert asyncio.run(main()) == "worked"


def test_wait_for_async_fails_after_its_timeout_naming_what_it_waited_for() -> None:
    with pytest.raises(AssertionError, match=r"^timed out after 0.1s waiting for nothing$"):
        asyncio.run(wait_for_async(lambda: 0, timeout=0.1, what="nothing"))


def test_running_with_sees_a_live_process_by_its_command_line_and_not_once_it_is_gone() -> None:
    token = f"waiting-test-{uuid.uuid4().hex}"
    proc = subprocess.Popen([sys.executable, "-c", f"import sys; sys.stdin.read()  # {token}"],
                            stdin=subprocess.PIPE)
    try:
        assert wait_for(lambda: running_with(token), timeout=10, what="the child's command line") == [proc.pid]
    finally:
        proc.communicate(b"", timeout=10)  # the child reads to the end, then exits
    assert running_with(token) == []
    assert running_with(f"not-running-{uuid.uuid4().hex}") == []
