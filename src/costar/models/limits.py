"""Per-model concurrency and request-rate limits, shared by every client of the same model in a process.

Both limits serve threads and coroutines at once (an agent may call a model from a thread pool while a
judge calls it from asyncio), and coroutines on any event loop, so they are built on a thread lock
rather than on asyncio primitives, which bind to one loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Iterator

DEFAULT_MAX_CONCURRENCY = 16


class _ThreadWaiter:
    __slots__ = ("event",)

    def __init__(self) -> None:
        self.event = threading.Event()

    def wake(self) -> bool:
        self.event.set()
        return True


class _TaskWaiter:
    __slots__ = ("fut", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.fut: asyncio.Future[None] = loop.create_future()

    def wake(self) -> bool:
        try:
            self.loop.call_soon_threadsafe(self._set)
        except RuntimeError:  # the waiter's loop is closed: nobody is left to take the slot
            return False
        return True

    def _set(self) -> None:
        if not self.fut.done():
            self.fut.set_result(None)


class ConcurrencyLimiter:
    """A FIFO semaphore whose limit can change at run time. Releasing hands the slot directly to the
    oldest waiter, so a newcomer cannot overtake a woken waiter."""

    def __init__(self, limit: int) -> None:
        self._limit = max(1, limit)
        self._in_use = 0
        self._lock = threading.Lock()
        self._waiters: deque[_ThreadWaiter | _TaskWaiter] = deque()

    @property
    def limit(self) -> int:
        return self._limit

    @property
    def in_use(self) -> int:
        return self._in_use

    def set_limit(self, limit: int) -> None:
        with self._lock:
            self._limit = max(1, limit)
            self._grant_locked()

    def acquire(self) -> None:
        with self._lock:
            if self._in_use < self._limit and not self._waiters:
                self._in_use += 1
                return
            waiter = _ThreadWaiter()
            self._waiters.append(waiter)
        waiter.event.wait()

    async def acquire_async(self) -> None:
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._in_use < self._limit and not self._waiters:
                self._in_use += 1
                return
            waiter = _TaskWaiter(loop)
            self._waiters.append(waiter)
        try:
            await waiter.fut
        except asyncio.CancelledError:
            with self._lock:
                still_waiting = waiter in self._waiters
                if still_waiting:
                    self._waiters.remove(waiter)
            if not still_waiting:  # the slot was handed over as we were cancelled: pass it on
                self.release()
            raise

    def release(self) -> None:
        with self._lock:
            self._in_use -= 1
            self._grant_locked()

    def _grant_locked(self) -> None:
        while self._waiters and self._in_use < self._limit:
            waiter = self._waiters.popleft()
            if waiter.wake():
                self._in_use += 1

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        self.acquire()
        try:
            yield
        finally:
            self.release()

    @contextlib.asynccontextmanager
    async def hold_async(self) -> AsyncIterator[None]:
        await self.acquire_async()
        try:
            yield
        finally:
            self.release()


class RateLimiter:
    """Token bucket over requests per minute. Callers reserve a token (the balance may go negative)
    and sleep until it matures, so waiting needs no wake-ups and works for threads and tasks alike."""

    def __init__(self, requests_per_minute: float, burst: int | None = None) -> None:
        if requests_per_minute <= 0:
            raise ValueError("requests_per_minute must be positive")
        self.rate = requests_per_minute / 60.0
        # Default burst: one second's worth, so a fresh limiter does not fire a minute's quota at once.
        self.capacity = float(burst if burst is not None else max(1, int(self.rate)))
        self._tokens = self.capacity
        self._stamp = time.monotonic()
        self._lock = threading.Lock()

    def reserve(self) -> float:
        """Take a token; returns the seconds to wait before using it."""
        with self._lock:
            now = time.monotonic()
            self._tokens = min(self.capacity, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now
            self._tokens -= 1.0
            return 0.0 if self._tokens >= 0 else -self._tokens / self.rate

    def wait(self) -> None:
        delay = self.reserve()
        if delay > 0:
            time.sleep(delay)

    async def wait_async(self) -> None:
        delay = self.reserve()
        if delay > 0:
            await asyncio.sleep(delay)


class ModelLimits:
    def __init__(self, max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
                 requests_per_minute: float | None = None, burst: int | None = None) -> None:
        self.concurrency = ConcurrencyLimiter(max_concurrency)
        self.rate: RateLimiter | None = (
            RateLimiter(requests_per_minute, burst) if requests_per_minute else None)

    @contextlib.contextmanager
    def slot(self) -> Iterator[None]:
        # Pace first, then take a slot: a request waiting for its rate token must not hold a slot.
        if self.rate is not None:
            self.rate.wait()
        with self.concurrency.hold():
            yield

    @contextlib.asynccontextmanager
    async def slot_async(self) -> AsyncIterator[None]:
        if self.rate is not None:
            await self.rate.wait_async()
        async with self.concurrency.hold_async():
            yield


_registry: dict[str, ModelLimits] = {}
_registry_lock = threading.Lock()


def limits_for(endpoint_key: str, *, max_concurrency: int | None = None,
               requests_per_minute: float | None = None, burst: int | None = None) -> ModelLimits:
    """The process-wide limits of one model. Settings given here replace earlier ones (latest wins);
    omitted settings keep their current value."""
    with _registry_lock:
        limits = _registry.get(endpoint_key)
        if limits is None:
            limits = ModelLimits(max_concurrency or DEFAULT_MAX_CONCURRENCY, requests_per_minute, burst)
            _registry[endpoint_key] = limits
            return limits
        if max_concurrency is not None:
            limits.concurrency.set_limit(max_concurrency)
        if requests_per_minute is not None:
            limits.rate = RateLimiter(requests_per_minute, burst)
        return limits
