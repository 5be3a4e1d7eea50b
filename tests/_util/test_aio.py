"""run_sync: the one way coSTAR's sync API runs its coroutines (costar._util.aio)."""

from __future__ import annotations

import asyncio
import contextvars

import pytest

from costar._util.aio import run_sync

_CURRENT: contextvars.ContextVar[str] = contextvars.ContextVar("current", default="unset")


async def _loop_and_value() -> tuple[asyncio.AbstractEventLoop, str]:
    await asyncio.sleep(0)
    return asyncio.get_running_loop(), _CURRENT.get()


def test_every_call_runs_on_one_long_lived_loop_with_the_callers_context() -> None:
    token = _CURRENT.set("the caller's span")
    try:
        first_loop, seen = run_sync(_loop_and_value())
        second_loop, _ = run_sync(_loop_and_value)  # a function returning the coroutine, called on the loop
    finally:
        _CURRENT.reset(token)
    assert seen == "the caller's span"
    assert first_loop is second_loop
    assert not first_loop.is_closed()


def test_exceptions_propagate_unchanged() -> None:
    class Boom(Exception):
        pass

    async def fail() -> None:
        raise Boom("as raised")

    with pytest.raises(Boom, match="as raised"):
        run_sync(fail())


def test_it_works_inside_a_running_loop_and_refuses_its_own() -> None:
    async def in_a_notebook() -> str:
        # A caller already inside an event loop (a notebook, an async test): asyncio.run would refuse.
        return run_sync(_loop_and_value())[1]

    assert asyncio.run(in_a_notebook()) == "unset"

    async def on_its_own_loop() -> None:
        run_sync(_loop_and_value())

    with pytest.raises(RuntimeError, match="called from its own event loop; await the async API instead"):
        run_sync(on_its_own_loop())
