"""Per-model concurrency and request-rate limits, shared by every client of the same model in a process,
and a money budget for all model calls.

Both limits serve threads and coroutines at once (an agent may call a model from a thread pool while a
judge calls it from asyncio), and coroutines on any event loop, so they are built on a thread lock
rather than on asyncio primitives, which bind to one loop.

Where limits must hold for many processes (judges scoring on a Ray cluster), a :class:`LimitsBackend`
installed with :func:`set_limits_backend` hands out limits that ask one shared limiter instead
(``costar.run.ray_limits``); clients made afterwards use it.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Iterator
from typing import Protocol

from costar._util.units import format_usd
from costar.models.errors import ModelBudgetExceededError

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


class SpendingBudget:
    """A money budget for model calls: each call's cost is charged after it; once the spend reaches the
    limit, further calls are refused before they are sent (calls already in flight still finish, so
    the spend can pass the limit by what those cost)."""

    def __init__(self, limit_usd: float) -> None:
        if limit_usd <= 0:
            raise ValueError("a budget must be positive")
        self.limit_usd = limit_usd
        """The most to spend, in US dollars."""
        self.spent_usd = 0.0
        """What the calls charged so far cost."""
        self._lock = threading.Lock()

    def check(self) -> None:
        """Raise :class:`ModelBudgetExceededError` when the budget is spent."""
        if self.spent_usd >= self.limit_usd:
            raise budget_error(self.spent_usd, self.limit_usd)

    def charge(self, cost_usd: float) -> None:
        """Add one call's cost."""
        if cost_usd > 0:
            with self._lock:
                self.spent_usd += cost_usd


def budget_error(spent: float, limit: float) -> ModelBudgetExceededError:
    """The error of a call refused because the budget is spent."""
    return ModelBudgetExceededError(f"the model budget of {format_usd(limit)} is spent ({format_usd(spent)}); no "
                                    "further model calls are made: raise the budget (--budget-usd) and score again")


_budget: SpendingBudget | None = None


def set_budget(limit_usd: float | None) -> SpendingBudget | None:
    """Set (or with ``None`` clear) the process-wide money budget for model calls; returns it."""
    global _budget
    _budget = SpendingBudget(limit_usd) if limit_usd else None
    return _budget


class ModelLimits:
    """One model's limits in this process: concurrency, request rate, and the process's money budget."""

    def __init__(self, max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
                 requests_per_minute: float | None = None, burst: int | None = None) -> None:
        self.concurrency = ConcurrencyLimiter(max_concurrency)
        """Requests in flight at once."""
        self.rate: RateLimiter | None = (
            RateLimiter(requests_per_minute, burst) if requests_per_minute else None)
        """Requests per minute (none: unpaced)."""

    @contextlib.contextmanager
    def slot(self) -> Iterator[None]:
        """Hold one request's place: paced, refused when the budget is spent by then, then a concurrency slot."""
        # Pace first, then take a slot: a request waiting for its rate token must not hold a slot.
        if self.rate is not None:
            self.rate.wait()
        if _budget is not None:  # after the wait: the calls before it may have spent the budget meanwhile
            _budget.check()
        with self.concurrency.hold():
            yield

    @contextlib.asynccontextmanager
    async def slot_async(self) -> AsyncIterator[None]:
        """:meth:`slot` for coroutines."""
        if self.rate is not None:
            await self.rate.wait_async()
        if _budget is not None:
            _budget.check()
        async with self.concurrency.hold_async():
            yield

    def charge(self, cost_usd: float) -> None:
        """Charge a finished call's cost to the budget."""
        if _budget is not None:
            _budget.charge(cost_usd)


class Limits(Protocol):
    """What a model client needs of its limits (:class:`ModelLimits`, or a cluster-wide stand-in)."""

    def slot(self) -> contextlib.AbstractContextManager[None]:
        """Hold one request's place (sync)."""
        ...

    def slot_async(self) -> contextlib.AbstractAsyncContextManager[None]:
        """Hold one request's place (async)."""
        ...

    def charge(self, cost_usd: float) -> None:
        """Charge a finished call's cost."""
        ...


class LimitsBackend(Protocol):
    """Hands out each model's limits in place of this process's own (see :func:`set_limits_backend`)."""

    def limits_for(self, endpoint_key: str, *, max_concurrency: int | None, requests_per_minute: float | None,
                   burst: int | None) -> Limits:
        """The limits of the model at ``endpoint_key``."""
        ...


_backend: LimitsBackend | None = None


def set_limits_backend(backend: LimitsBackend | None) -> None:
    """Use ``backend`` for the limits of model clients made from now on (``None``: this process's own)."""
    global _backend
    _backend = backend


_registry: dict[str, ModelLimits] = {}
_registry_lock = threading.Lock()


def limits_for(endpoint_key: str, *, max_concurrency: int | None = None,
               requests_per_minute: float | None = None, burst: int | None = None) -> Limits:
    """The limits of one model: the installed backend's, else this process's. Settings given here
    replace earlier ones (latest wins); omitted settings keep their current value."""
    if _backend is not None:
        return _backend.limits_for(endpoint_key, max_concurrency=max_concurrency,
                                   requests_per_minute=requests_per_minute, burst=burst)
    return process_limits(endpoint_key, max_concurrency=max_concurrency, requests_per_minute=requests_per_minute,
                          burst=burst)


def process_limits(endpoint_key: str, *, max_concurrency: int | None = None,
                   requests_per_minute: float | None = None, burst: int | None = None) -> ModelLimits:
    """The process-wide limits of one model (see :func:`limits_for`)."""
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
