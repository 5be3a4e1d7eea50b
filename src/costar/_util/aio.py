"""Calling async code from sync code: one way, on one event loop.

coSTAR is async inside (trials, judges and model calls overlap on an event loop) and offers a
sync API on top (``costar.run_suite``, alignment, refinement). Every sync entry point runs its
coroutine with :func:`run_sync`, on one long-lived loop in a daemon thread:

* Model clients keep an async HTTP pool per event loop. A fresh loop per call (``asyncio.run``)
  would strand those pools when each loop closes, and their finalisers then fail inside the next
  loop; one long-lived loop keeps every pool usable.
* It works from inside a running event loop too (a notebook, an async test): the calling thread
  simply waits, where ``asyncio.run`` refuses.
* The caller's context variables (the current span, for one) carry over into the coroutine.
* Ctrl-C in the waiting thread cancels the coroutine and waits for its cleanup (an interrupted run
  is marked so, process groups are killed) before ``KeyboardInterrupt`` propagates.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


class _LoopThread:
    """One event loop running forever on a daemon thread, started on first use."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None or self._thread is None or not self._thread.is_alive():
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name="costar-loop", daemon=True)
                thread.start()
                self._loop, self._thread = loop, thread
            return self._loop

    def on_loop_thread(self) -> bool:
        return threading.current_thread() is self._thread


_LOOP = _LoopThread()


def run_sync(work: Awaitable[T] | Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine (or a function returning one, called on the loop) to completion and return
    its result; exceptions propagate unchanged."""
    if _LOOP.on_loop_thread():
        if inspect.iscoroutine(work):
            work.close()
        raise RuntimeError("synchronous coSTAR code called from its own event loop; await the async API instead")
    finished = threading.Event()

    async def body() -> T:
        try:
            return await (work if inspect.isawaitable(work) else work())
        finally:
            finished.set()

    # run_coroutine_threadsafe schedules the task in this thread's context: context variables carry over.
    future = asyncio.run_coroutine_threadsafe(body(), _LOOP.loop())
    try:
        return future.result()
    except KeyboardInterrupt:
        future.cancel()
        finished.wait()  # the coroutine's own cleanup (a second Ctrl-C stops waiting)
        raise
