"""SIGTERM and SIGHUP handled like Ctrl-C.

What a CI system sends to cancel a job is SIGTERM (then SIGKILL a few seconds later); closing a
terminal sends SIGHUP. Python's default for both is to die on the spot: no ``finally`` runs, a
run stays "running" and its agents are orphaned. Inside :func:`terminations_interrupt` they raise
:class:`Terminated`, a ``KeyboardInterrupt``, so they take the path Ctrl-C takes: the running
coroutine is cancelled, process groups are killed, the run is marked interrupted.

A signal the process was started with ignored stays ignored, the way Python leaves an ignored
SIGINT alone: ``nohup costar run`` means the run should outlive its terminal.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType

SIGNALS: tuple[signal.Signals, ...] = tuple(
    s for s in (getattr(signal, "SIGTERM", None), getattr(signal, "SIGHUP", None)) if s is not None)


class Terminated(KeyboardInterrupt):
    """The process was asked to stop by a signal (SIGTERM, SIGHUP)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        """The signal's number."""

    @property
    def exit_code(self) -> int:
        """The shell's convention for a process ended by this signal: 128 + its number."""
        return 128 + self.signum


def exit_code(interrupt: KeyboardInterrupt) -> int:
    """130 for Ctrl-C (SIGINT), 128 + the signal for a :class:`Terminated`."""
    return interrupt.exit_code if isinstance(interrupt, Terminated) else 130


def interruption(interrupt: KeyboardInterrupt) -> str:
    """How the CLI says what stopped it: ``interrupted`` (Ctrl-C) or ``interrupted by SIGTERM``."""
    return f"interrupted by {interrupt.args[0]}" if isinstance(interrupt, Terminated) else "interrupted"


@contextlib.contextmanager
def terminations_interrupt() -> Iterator[None]:
    """Within this block (in the main thread; elsewhere it does nothing), SIGTERM and SIGHUP raise
    :class:`Terminated` in the main thread, unless they are ignored (``nohup``); the previous
    handlers come back afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        raise Terminated(signum)

    previous = {s: signal.signal(s, handler) for s in SIGNALS if signal.getsignal(s) != signal.SIG_IGN}
    try:
        yield
    finally:
        for s, old in previous.items():
            signal.signal(s, old)
