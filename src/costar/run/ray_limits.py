"""One limiter for a whole Ray cluster: model-call rates, concurrency and a money budget that hold across
every worker process, not per process.

:class:`ClusterLimiter` is a Ray actor (one per scoring job, named so every worker finds the same one). A
worker installs :class:`ClusterLimitsBackend` (:func:`install`) into the model layer; every model client
made afterwards asks the actor before each call:

1. ``acquire`` — refused when the budget is spent; else answered once a concurrency slot for the model is
   free and its pace lets the call go (the wait happens inside the actor, so calls leave in order);
2. ``release`` when the call ends, and ``charge`` with what it cost (neither waited for).

That is one round trip to the actor per model call (about a millisecond on one machine), small against
a model call. Calls already in flight when the budget runs out still finish, so the spend can
pass the budget by what they cost.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

from costar.models.limits import DEFAULT_MAX_CONCURRENCY, Limits, RateLimiter, budget_error, set_limits_backend

__all__ = ["ClusterLimiter", "ClusterLimits", "ClusterLimitsBackend", "install", "start_limiter"]


class ClusterLimiter:
    """The actor's state: per model a pace and a concurrency count; one budget for all models.

    ``requests_per_minute`` and ``max_concurrency`` apply to every model that sets none of its own
    (a judge's ``max_concurrency`` is its own); ``budget_usd`` is for all calls together. The pace is
    kept at the moment a call is let go (the actor answers ``acquire`` only then), not when it asks:
    a worker whose event loop stalls between asking and sending cannot bunch its calls up."""

    def __init__(self, requests_per_minute: float | None = None, max_concurrency: int | None = None,
                 budget_usd: float | None = None) -> None:
        self.default_rpm = requests_per_minute
        self.default_concurrency = max_concurrency
        self.budget_usd = budget_usd
        self.spent_usd = 0.0
        self.requests = 0
        self._next: dict[str, float] = {}  # per model: when the pace lets the next call go (monotonic)
        self._in_use: dict[str, int] = {}
        self._freed: asyncio.Condition | None = None
        self._budget_gone: asyncio.Event | None = None  # set once the budget is spent: wakes the waiting calls

    def _spent(self) -> bool:
        return self.budget_usd is not None and self.spent_usd >= self.budget_usd

    async def acquire(self, key: str, requests_per_minute: float | None, burst: int | None,
                      max_concurrency: int | None) -> bool:
        """Answer when a call to ``key`` may be sent: a concurrency slot is free and the pace allows it.
        False (nothing held) when the budget is spent."""
        if self._spent():
            return False
        if self._freed is None:
            self._freed = asyncio.Condition()
        limit = max_concurrency or self.default_concurrency or DEFAULT_MAX_CONCURRENCY
        async with self._freed:
            await self._freed.wait_for(lambda: self._in_use.get(key, 0) < limit)
            self._in_use[key] = self._in_use.get(key, 0) + 1
        rpm = requests_per_minute or self.default_rpm
        if rpm:
            # GCRA: calls leave in the order they asked, one interval apart, ``burst`` at once at most.
            interval = 60.0 / rpm
            now = time.monotonic()
            due = self._next.get(key, now)
            at = max(now, due - (max(1, burst or 1) - 1) * interval)
            self._next[key] = max(due, now) + interval
            if at > now:
                if self._budget_gone is None:
                    self._budget_gone = asyncio.Event()
                with contextlib.suppress(TimeoutError):  # woken early only to be refused
                    await asyncio.wait_for(self._budget_gone.wait(), at - now)
        if self._spent():  # spent while this call waited
            await self.release(key)
            return False
        self.requests += 1
        return True

    async def release(self, key: str) -> None:
        """Give one of ``key``'s slots back."""
        if self._freed is None:
            self._freed = asyncio.Condition()
        async with self._freed:
            self._in_use[key] = max(0, self._in_use.get(key, 0) - 1)
            self._freed.notify_all()

    def charge(self, cost_usd: float) -> None:
        """Add a finished call's cost to the spend."""
        self.spent_usd += max(0.0, cost_usd)
        if self._spent():
            if self._budget_gone is None:
                self._budget_gone = asyncio.Event()
            self._budget_gone.set()

    def stats(self) -> dict[str, Any]:
        """Requests let through, money spent, the budget."""
        return {"requests": self.requests, "spent_usd": self.spent_usd, "budget_usd": self.budget_usd}


_local_paces: dict[tuple[str, float], RateLimiter] = {}
_local_lock = threading.Lock()


def _local_pace(key: str, requests_per_minute: float) -> RateLimiter:
    """This process's own pace for a model, at the cluster's rate (see :class:`ClusterLimits`)."""
    with _local_lock:
        pace = _local_paces.get((key, requests_per_minute))
        if pace is None:
            pace = _local_paces[key, requests_per_minute] = RateLimiter(requests_per_minute, burst=1)
        return pace


class ClusterLimits:
    """One model's limits on a worker: each call asks the cluster's limiter (see the module).

    Calls the limiter let go are also paced by this process at the same rate: a process the machine
    did not schedule for a while (its event loop stalled) would otherwise send every call let go
    meanwhile at once when it runs again. Steadily paced calls never wait on it."""

    def __init__(self, actor: Any, key: str, requests_per_minute: float | None, burst: int | None,
                 max_concurrency: int | None, default_rpm: float | None = None) -> None:
        self.actor = actor
        """The limiter actor's handle."""
        self.key = key
        """The model's endpoint key."""
        self.requests_per_minute = requests_per_minute
        """The model's own rate, if it sets one (else the limiter's default)."""
        self.burst = burst
        """Calls let through at once after a quiet spell."""
        self.max_concurrency = max_concurrency
        """The model's own concurrency, if it sets one (else the limiter's default)."""
        rpm = requests_per_minute or default_rpm
        self.local = _local_pace(key, rpm) if rpm else None
        """This process's pace for the model (None when the model is not paced)."""

    def _budget_spent(self) -> Exception:
        stats = _get(self.actor.stats.remote())
        return budget_error(stats["spent_usd"], stats["budget_usd"] or 0.0)

    def _ask(self) -> Any:
        return self.actor.acquire.remote(self.key, self.requests_per_minute, self.burst, self.max_concurrency)

    @contextlib.contextmanager
    def slot(self) -> Iterator[None]:
        """Hold one call's place on the cluster (sync)."""
        if not _get(self._ask()):
            raise self._budget_spent()
        if self.local is not None:
            self.local.wait()
        try:
            yield
        finally:
            self.actor.release.remote(self.key)

    @contextlib.asynccontextmanager
    async def slot_async(self) -> AsyncIterator[None]:
        """Hold one call's place on the cluster (async)."""
        if not await self._ask():
            raise await asyncio.to_thread(self._budget_spent)
        if self.local is not None:
            await self.local.wait_async()
        try:
            yield
        finally:
            self.actor.release.remote(self.key)

    def charge(self, cost_usd: float) -> None:
        """Tell the limiter what a finished call cost."""
        if cost_usd > 0:
            self.actor.charge.remote(cost_usd)


def _get(ref: Any) -> Any:
    import ray

    return ray.get(ref)


class ClusterLimitsBackend:
    """The model layer's limits backend on a worker: every model's limits are :class:`ClusterLimits`."""

    def __init__(self, actor: Any, default_rpm: float | None = None) -> None:
        self.actor = actor
        """The limiter actor's handle."""
        self.default_rpm = default_rpm
        """The limiter's pace for models that set none of their own."""

    def limits_for(self, endpoint_key: str, *, max_concurrency: int | None, requests_per_minute: float | None,
                   burst: int | None) -> Limits:
        """The model's limits, asked of the cluster's limiter."""
        return ClusterLimits(self.actor, endpoint_key, requests_per_minute, burst, max_concurrency, self.default_rpm)


_installed: dict[str, Any] = {}
_install_lock = threading.Lock()


def install(actor: Any, name: str, default_rpm: float | None = None) -> None:
    """Make this worker's model clients (those made from now on) use the limiter ``name``, whose pace for
    models that set none is ``default_rpm``."""
    with _install_lock:
        if _installed.get("name") != name:
            # One round trip now: a handle's first call is slow (it looks the actor up), and it must
            # not fall between a rate token's grant and the call it paces.
            _get(actor.stats.remote())
            set_limits_backend(ClusterLimitsBackend(actor, default_rpm))
            _installed["name"] = name


def start_limiter(name: str, *, requests_per_minute: float | None, max_concurrency: int | None,
                  budget_usd: float | None) -> Any:
    """Start the limiter actor ``name`` on the cluster (Ray must be connected); returns its handle."""
    import ray

    actor_class: Any = ray.remote(ClusterLimiter)
    # Many calls wait inside the actor at once (async methods); it needs no CPU of its own.
    return actor_class.options(name=name, num_cpus=0, max_concurrency=1000).remote(
        requests_per_minute, max_concurrency, budget_usd)
