"""Run leases: one process runs a run at a time.

A run (a new one, or one being resumed) is *leased* by the process that runs its trials: a row in
the store's ``run_leases`` table names the holder (host, pid, the process's start time, a random
token) and carries a heartbeat the holder renews every few seconds from a thread of its own. A
second process that wants the run (``costar run --resume``) is refused with the holder's name,
unless the lease is stale:

* the holder is dead: it ran on this machine (same kernel boot and pid namespace) and its pid is
  gone, or now belongs to a process that started at another time (a reused pid); or
* its heartbeat is older than the bound (:data:`STALE_AFTER_S`): a holder on another machine that
  crashed or lost the store, or one so stuck it no longer runs anything.

A stale lease is taken over (and the new holder says whose it took). A holder whose lease was
taken over while it still ran finds out at its next heartbeat and stops; the store's unique key on
(run, scenario, trial) refuses any trace it still tries to store, so each trial is stored once.

Heartbeats use the database's clock, so machines with skewed clocks agree on a lease's age.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from costar._util.process import machine_id, pid_alive, process_start_time
from costar.errors import StoreError

if TYPE_CHECKING:
    from costar.store.base import Store

HEARTBEAT_S = 5.0
"""How often a holder renews its lease."""
STALE_AFTER_S = 60.0
"""A lease not renewed for this long is stale: its holder crashed, hung or lost the store."""


class RunHolder(BaseModel):
    """Who holds a run's lease."""

    run_id: str
    """The run leased."""
    token: str
    """Random, one per acquisition: only the acquirer renews or releases the lease."""
    host: str
    """The holder's host name (for people)."""
    machine: str
    """Kernel boot and pid namespace (Linux) or host name: pids compare only within one machine id."""
    pid: int
    process_started: float | None = None
    """The holder process's start time (epoch seconds), telling its pid apart from a reused one."""
    acquired_at: float = 0.0
    """When the lease was acquired (epoch seconds, the store's clock)."""
    heartbeat_at: float = 0.0
    """When the holder last renewed it (epoch seconds, the store's clock)."""

    def describe(self, now: float | None = None) -> str:
        """``pid 4242 on build-7 (since 12:00:03, last heartbeat 4 s ago)``."""
        since = time.strftime("%H:%M:%S", time.localtime(self.acquired_at)) if self.acquired_at else "?"
        ago = f", last heartbeat {max(0.0, (now or time.time()) - self.heartbeat_at):.0f} s ago" \
            if self.heartbeat_at else ""
        return f"pid {self.pid} on {self.host} (since {since}{ago})"

    def dead(self) -> bool:
        """Known to be dead: it ran on this machine and its process is gone (or its pid reused)."""
        if self.machine != machine_id():
            return False
        if not pid_alive(self.pid):
            return True
        started = process_start_time(self.pid)
        return self.process_started is not None and started is not None and abs(started - self.process_started) > 1.0

    def stale_because(self, now: float, stale_after_s: float = STALE_AFTER_S) -> str | None:
        """Why the lease may be taken over, or None while its holder is alive and renewing it."""
        if self.dead():
            return f"its holder, {self.describe(now)}, is no longer running"
        if now - self.heartbeat_at > stale_after_s:
            return f"its holder, {self.describe(now)}, stopped renewing it"
        return None


class RunLeasedError(StoreError):
    """Another live process is running this run."""

    def __init__(self, holder: RunHolder, now: float | None = None) -> None:
        self.holder = holder
        super().__init__(
            f"run {holder.run_id} is being run by {holder.describe(now)}; wait for it to finish, or stop that "
            f"process (kill {holder.pid}) and resume again")


class LeaseLostError(StoreError):
    """The lease was taken over by another process while this one still ran the run."""

    def __init__(self, run_id: str, by: RunHolder | None) -> None:
        who = by.describe() if by is not None else "another process"
        super().__init__(f"run {run_id} was taken over by {who} after this process stopped renewing its lease "
                         "(was it suspended?); stopped here, the other process finishes it")


def this_process(run_id: str) -> RunHolder:
    """A holder for ``run_id`` naming the calling process (times are set by the store)."""
    pid = os.getpid()
    return RunHolder(run_id=run_id, token=secrets.token_hex(16), host=socket.gethostname(), machine=machine_id(),
                     pid=pid, process_started=process_start_time(pid))


class RunLease:
    """A lease this process holds, renewed by a daemon thread until :meth:`release`.

    When a renewal finds the lease gone (another process took it over), :attr:`lost` is set and
    ``on_lost`` is called once, from the heartbeat thread. A renewal that fails for another reason
    (the store briefly unreachable) is retried at the next beat: the lease only goes stale after
    :data:`STALE_AFTER_S`, many beats later."""

    def __init__(self, store: Store, holder: RunHolder, *, heartbeat_s: float = HEARTBEAT_S,
                 on_lost: Callable[[], Any] | None = None, replaced: str | None = None) -> None:
        self.store = store
        """The store holding the lease."""
        self.holder = holder
        """This process, as the store recorded it."""
        self.replaced = replaced
        """Why a stale lease was taken over to get this one (None when the run was free)."""
        self.heartbeat_s = heartbeat_s
        """Seconds between renewals."""
        self.on_lost = on_lost
        """Called once, from the heartbeat thread, when another process took the run over."""
        self.lost = threading.Event()
        """Set once another process took the run over."""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"costar-lease-{holder.run_id}", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            try:
                held = self.store.renew_run(self.holder.run_id, self.holder.token)
            except Exception:  # the store is briefly unreachable: try again at the next beat
                continue
            if not held:
                self.lost.set()
                if self.on_lost is not None and not self._stop.is_set():
                    with contextlib.suppress(Exception):  # e.g. the caller's event loop already closed
                        self.on_lost()
                return

    def taken_by(self) -> RunHolder | None:
        """Who holds the run now that this lease is lost (None if nobody)."""
        try:
            return self.store.run_holders([self.holder.run_id]).get(self.holder.run_id)
        except StoreError:
            return None

    def release(self) -> None:
        """Stop renewing and give the run up (a no-op for a lease already lost)."""
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=self.heartbeat_s + 1.0)
        if not self.lost.is_set():
            try:
                self.store.release_run(self.holder.run_id, self.holder.token)
            except StoreError:
                pass  # unreachable store: the lease goes stale on its own

    def __enter__(self) -> RunLease:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def hold_run(store: Store, run_id: str, *, stale_after_s: float | None = None, heartbeat_s: float | None = None,
             on_lost: Callable[[], Any] | None = None) -> RunLease:
    """Lease ``run_id`` for this process (:class:`RunLeasedError` when a live process holds it)
    and keep the lease alive until it is released (defaults: :data:`STALE_AFTER_S`, :data:`HEARTBEAT_S`)."""
    holder, replaced = store.acquire_run(this_process(run_id), stale_after_s=stale_after_s or STALE_AFTER_S)
    return RunLease(store, holder, heartbeat_s=heartbeat_s or HEARTBEAT_S, on_lost=on_lost, replaced=replaced)
