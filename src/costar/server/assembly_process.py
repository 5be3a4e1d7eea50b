"""Trace assembly in a child process that the server supervises, so ingest (decoding, redaction,
the write-ahead commit, HTTP) and assembly (finalisation, the store's rows) each have a core.

:class:`AssemblerProcess` has the face the server uses of :class:`~costar.server.assembler.Assembler`
(``take``, ``recover``, ``start``, ``stop``, ``stats``, ``listeners``, ``open_spans``). The child
is :mod:`costar.server.assembly_worker`; each committed write-ahead row goes to it through a pipe.

Durability does not depend on the pipe: a row is sent only after it committed, and the child
replays the whole write-ahead log when it starts, so a row lost with a dead child (``kill -9``, a
crash) is assembled by the next one. The supervisor restarts a child that exits (with a growing
delay while it keeps failing); ingest answers 503 while no child has finished its replay, so
memory stays bounded. The child gets SIGKILL from the kernel when the server dies, even by
``kill -9`` (``PR_SET_PDEATHSIG`` on Linux), and is stopped by the server's shutdown: it then stores
what is complete, as the server in one process does.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

import orjson

from costar._util.process import die_with_parent
from costar.server.assembler import AssemblerStats, CompletedTrace, Listener
from costar.server.assembly_worker import SETTINGS_ROW, TRACES_ROW, frame, unpack_trace
from costar.server.wal import SpanGroup
from costar.store.server_tables import ServerTables

log = logging.getLogger("costar.server")

_GAUGES = ("open_traces", "open_spans")
_COUNTERS = tuple(f.name for f in dataclasses.fields(AssemblerStats) if f.name not in (*_GAUGES, "last_error"))
class _Channel:
    """One child process and the pipe to it: a queue of frames that a writer thread drains."""

    def __init__(self, settings: bytes) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        self.sent = 0
        """Spans of the rows queued for this child."""
        self.received = 0
        """Spans of the rows the child has taken (it reports them)."""
        self.ready = False
        """The child has replayed the write-ahead log."""
        self.alive = True
        self.last_stats: dict[str, Any] = {}
        self.traces_wanted = False
        """The child was asked to put the stored traces in its ``stored`` lines."""
        self._queue: deque[bytes | None] = deque([frame(SETTINGS_ROW, 0, settings)])
        self._cv = threading.Condition()

    def want_traces(self) -> None:
        """Ask the child for the traces it stores from now on (once)."""
        with self._cv:
            if not self.traces_wanted:
                self.traces_wanted = True
                self._queue.append(frame(TRACES_ROW, 0, b""))
                self._cv.notify()

    def send(self, row_id: int, spans: int, payload: bytes) -> None:
        with self._cv:
            self._queue.append(frame(row_id, spans, payload))
            self.sent += spans
            self._cv.notify()

    def close(self) -> None:
        """End the pipe once what is queued was written: the child stores what is complete and exits."""
        with self._cv:
            self._queue.append(None)
            self._cv.notify()

    def write_loop(self) -> None:
        assert self.proc is not None
        assert self.proc.stdin is not None
        stdin = self.proc.stdin
        while True:
            with self._cv:
                while not self._queue:
                    self._cv.wait()
                items = list(self._queue)
                self._queue.clear()
            end = None in items
            try:
                stdin.write(b"".join(i for i in items if i is not None))
                stdin.flush()
                if end:
                    stdin.close()
                    return
            except (BrokenPipeError, OSError, ValueError):  # the child died: its rows are in the log
                self.alive = False
                with self._cv:
                    self._queue.clear()
                return


class AssemblerProcess:
    """Assembly in a supervised child process (see the module's documentation). Thread-safe."""

    def __init__(self, tables: ServerTables, settings: dict[str, Any], *, log_level: str | None = None,
                 restart_delay: float = 0.5, max_restart_delay: float = 10.0) -> None:
        self.tables = tables
        """The server's tables; the child opens the same store by its location."""
        self.settings = settings
        """The :class:`~costar.server.assembler.Assembler`'s settings in the child (idle, limits)."""
        self.log_level = log_level
        """The child's logging level (its log goes to the server's stderr); default: the server's, when
        the child starts."""
        self.restart_delay = restart_delay
        """Seconds before a child that exited is restarted; doubled while children keep failing."""
        self.max_restart_delay = max_restart_delay
        """The longest wait between restarts."""
        self.stats = AssemblerStats()
        """The child's counters (summed over every child this server started) and gauges."""
        self.listeners: list[Listener] = []
        """Called with the traces each child stores; once the child runs, add one with :meth:`add_listener`."""
        self.restarts = 0
        """Children restarted after they exited on their own."""
        self.recovered_spans = 0
        """Spans the children replayed from the write-ahead log, summed."""
        self._base = AssemblerStats()
        self._lock = threading.Lock()
        self._channel: _Channel | None = None
        self._stopping = threading.Event()
        self._first = threading.Event()
        self._first_error: str | None = None
        self._supervisor: threading.Thread | None = None

    # ------------------------------------------------------------------ the face ingest uses

    @property
    def open_spans(self) -> int:
        """Spans acknowledged and not yet stored: the child's open spans and what waits in the pipe."""
        ch = self._channel
        backlog = max(0, ch.sent - ch.received) if ch is not None else 0
        return self.stats.open_spans + backlog

    @property
    def accepting(self) -> bool:
        """Whether a child is running and has replayed the write-ahead log."""
        ch = self._channel
        return ch is not None and ch.ready and ch.alive

    @property
    def pid(self) -> int | None:
        """The running child's process id."""
        ch = self._channel
        return ch.proc.pid if ch is not None and ch.proc is not None and ch.alive else None

    def add_listener(self, listener: Listener) -> None:
        """``listener`` gets the traces stored from now on (the child sends them with its ``stored``
        lines once it has listeners, so nothing is read back from the store)."""
        self.listeners.append(listener)
        ch = self._channel
        if ch is not None:
            ch.want_traces()

    def take(self, batch_id: int, groups: Sequence[SpanGroup], payload: bytes) -> None:
        """Send a committed write-ahead row to the child. Without a child it waits in the log and the
        next child replays it."""
        ch = self._channel
        if ch is not None and ch.alive:
            ch.send(batch_id, sum(len(g.spans) for g in groups), payload)

    # ------------------------------------------------------------------ lifecycle

    def recover(self, timeout: float = 3600.0) -> int:
        """Start the supervisor and wait until the first child has replayed the write-ahead log;
        returns the spans it replayed. Raises RuntimeError when the child cannot start."""
        self._supervisor = threading.Thread(target=self._supervise, name="costar-assembler-supervisor", daemon=True)
        self._supervisor.start()
        if not self._first.wait(timeout) or self._first_error is not None:
            error = self._first_error or f"it did not replay the write-ahead log within {timeout:g}s"
            self.stop(flush=False, timeout=5)
            raise RuntimeError(f"the assembler process could not start: {error}")
        return self.recovered_spans

    def start(self) -> None:
        """Nothing to do: :meth:`recover` started the child, which assembles from then on."""

    def stop(self, *, flush: bool = True, timeout: float = 30.0) -> None:
        """Stop the child: with ``flush`` it first stores the open traces whose root span has arrived
        (the rest stay in the write-ahead log); without, it is killed."""
        self._stopping.set()
        with self._lock:
            ch = self._channel
        if ch is not None and ch.proc is not None:
            if flush:
                ch.close()
            else:
                ch.proc.kill()
            try:
                ch.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log.error("the assembler process did not stop within %gs; killed (the write-ahead log keeps "
                          "what it held)", timeout)
                ch.proc.kill()
                ch.proc.wait()
        if self._supervisor is not None:
            self._supervisor.join(timeout)
            self._supervisor = None

    # ------------------------------------------------------------------ the supervisor

    def _settings_bytes(self) -> bytes:
        store = self.tables.store
        location = getattr(store, "url", None) if store.backend == "postgresql" else str(store.root)
        level = self.log_level or logging.getLevelName(log.getEffectiveLevel())
        return orjson.dumps({"store": location, "local_dir": str(store.root), "assembler": self.settings,
                             "log_level": level})

    def _spawn(self) -> subprocess.Popen[bytes]:
        return subprocess.Popen([sys.executable, "-m", "costar.server.assembly_worker"], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=None, close_fds=True,
                                preexec_fn=die_with_parent(os.getpid()))

    def _supervise(self) -> None:
        delay = self.restart_delay
        while not self._stopping.is_set():
            ch = _Channel(self._settings_bytes())
            with self._lock:
                if self._stopping.is_set():
                    return
                self._channel = ch  # rows committed from now on go to this child (or were replayed by it)
                if self.listeners:
                    ch.want_traces()
                try:
                    ch.proc = self._spawn()
                except OSError as exc:
                    ch.alive = False
                    self._fail_first(f"{type(exc).__name__}: {exc}")
                    proc = None
                else:
                    proc = ch.proc
            started = time.monotonic()
            if proc is not None:
                writer = threading.Thread(target=ch.write_loop, name="costar-assembler-writer", daemon=True)
                reader = threading.Thread(target=self._read_loop, args=(ch,), name="costar-assembler-reader",
                                          daemon=True)
                writer.start()
                reader.start()
                code = proc.wait()
                ch.alive = False
                reader.join(10)
                with ch._cv:
                    ch._queue.clear()
                    ch._queue.append(None)
                    ch._cv.notify()
                writer.join(10)
                self._fold(ch)
                if not ch.ready:
                    self._fail_first(f"it exited with code {code} before it was ready (see the log above)")
                if self._stopping.is_set():
                    return
                log.error("the assembler process exited with code %s; restarting it in %gs (acknowledged spans "
                          "wait in the write-ahead log)", code, delay)
                self.restarts += 1
            if time.monotonic() - started > 60:
                delay = self.restart_delay
            self._stopping.wait(delay)
            delay = min(delay * 2, self.max_restart_delay)

    def _fail_first(self, error: str) -> None:
        if not self._first.is_set():
            self._first_error = error
            self._first.set()

    def _fold(self, ch: _Channel) -> None:
        """A child ended: its counters become the base the next child's add to; its gauges are gone."""
        last = ch.last_stats
        for name in _COUNTERS:
            setattr(self._base, name, getattr(self._base, name) + int(last.get(name, 0)))
            setattr(self.stats, name, getattr(self._base, name))
        for name in _GAUGES:
            setattr(self.stats, name, 0)

    def _read_loop(self, ch: _Channel) -> None:
        assert ch.proc is not None
        assert ch.proc.stdout is not None
        for line in ch.proc.stdout:
            try:
                message = orjson.loads(line)
            except orjson.JSONDecodeError:
                log.warning("unexpected output from the assembler process: %r", line[:200])
                continue
            stats = message.get("stats")
            if isinstance(stats, dict):
                self._update(ch, stats)
            kind = message.get("t")
            if kind == "ready":
                self.recovered_spans += int(message.get("recovered", 0))
                if message.get("recovered"):
                    log.info("recovered %d span(s) from the write-ahead log", message["recovered"])
                ch.ready = True
                self._first.set()
            elif kind == "stored" and self.listeners and "traces" in message:
                self._notify(message["items"], message["traces"])

    def _update(self, ch: _Channel, stats: dict[str, Any]) -> None:
        ch.last_stats = stats
        ch.received = int(stats.get("received", 0))
        for name in _COUNTERS:
            setattr(self.stats, name, getattr(self._base, name) + int(stats.get(name, 0)))
        for name in _GAUGES:
            setattr(self.stats, name, int(stats.get(name, 0)))
        self.stats.last_error = stats.get("last_error") or self.stats.last_error

    def _notify(self, items: list[list[Any]], traces: list[list[Any]]) -> None:
        """The listeners get the traces as the child stored them."""
        try:
            done = [CompletedTrace(trace=unpack_trace(packed), project=project, amended=bool(amended),
                                   incomplete=bool(incomplete))
                    for (_, project, amended, incomplete), packed in zip(items, traces, strict=True)]
        except Exception:  # this thread must keep reading the child's lines
            log.exception("the assembler process sent stored traces that could not be read")
            return
        for listener in self.listeners:
            try:
                listener(done)
            except Exception:  # a listener's failure must not stop the server
                log.exception("a trace listener failed")
