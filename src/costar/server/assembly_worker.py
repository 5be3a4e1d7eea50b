"""The assembler's child process (``python -m costar.server.assembly_worker``), and the pipe
protocol it speaks with the server that supervises it (:mod:`costar.server.assembly_process`).

The server commits each request's spans to the write-ahead log and then writes the row (its id,
span count and the committed payload) to the child's stdin. The child replays the write-ahead log
first, exactly as a server in one process does at start, then assembles the rows it is sent and
stores complete traces; rows it already replayed are skipped, so the order in which the server
starts it and commits rows cannot lose or repeat one. It answers on its stdout with JSON lines:
``ready`` (replay done), ``stored`` (the traces of one commit, for the server's listeners: once the
server has sent :data:`TRACES_ROW`, with the traces as stored, so the server never reads them back
from the store) and ``stats`` (counters, and how many spans it has taken from the pipe, which the
server's backpressure needs).

It ignores SIGINT and SIGTERM (a terminal's Ctrl-C reaches the whole process group): the server
ends it by closing its stdin, after which it stores what is complete and exits, and the kernel
kills it when the server dies (``PR_SET_PDEATHSIG``, set by the server when it starts it).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import struct
import sys
import threading
from collections.abc import Sequence
from typing import IO, Any

import orjson

from costar.server.assembler import Assembler, AssemblerStats, CompletedTrace
from costar.server.gc_tuning import tune_gc
from costar.server.wal import dumps, span_fields, span_from_fields
from costar.trace.model import Trace

log = logging.getLogger("costar.server")

HEADER = struct.Struct("<qII")
"""A frame from the server: write-ahead row id, its span count, payload length; then the payload."""
SETTINGS_ROW = -1
"""The row id of the first frame, whose payload is the child's settings (JSON)."""
TRACES_ROW = -2
"""The row id of a frame (no payload) asking for the stored traces in each ``stored`` line from now on:
the server has listeners."""
STATUS_INTERVAL = 0.05
"""Seconds between stats lines while something changes."""


def frame(row_id: int, spans: int, payload: bytes) -> bytes:
    """One frame of the server-to-child pipe."""
    return HEADER.pack(row_id, spans, len(payload)) + payload


def _read_exact(stream: IO[bytes], n: int) -> bytes | None:
    data = stream.read(n)
    if len(data) < n:  # EOF: the server closed the pipe (or died)
        return None
    return data


def read_frame(stream: IO[bytes]) -> tuple[int, int, bytes] | None:
    """The next frame, or None at the end of the pipe."""
    head = _read_exact(stream, HEADER.size)
    if head is None:
        return None
    row_id, spans, length = HEADER.unpack(head)
    payload = _read_exact(stream, length) if length else b""
    return None if payload is None else (row_id, spans, payload)


def pack_trace(trace: Trace) -> list[Any]:
    """A stored trace for a ``stored`` line: its head as JSON and its spans' fields."""
    return [trace.model_dump(mode="json", exclude={"spans"}), [span_fields(s) for s in trace.spans]]


def unpack_trace(packed: list[Any]) -> Trace:
    """The trace :func:`pack_trace` packed (the spans were valid when stored: not validated again)."""
    trace = Trace.model_validate(packed[0])
    trace.spans = [span_from_fields(f) for f in packed[1]]
    return trace


def stats_dict(stats: AssemblerStats, received: int) -> dict[str, Any]:
    """The child's counters as sent to the server."""
    return {**dataclasses.asdict(stats), "received": received}


class _Reporter:
    """JSON lines to the server, from several threads."""

    def __init__(self, out: IO[bytes]) -> None:
        self._out = out
        self._lock = threading.Lock()

    def send(self, message: dict[str, Any]) -> None:
        line = dumps(message) + b"\n"
        with self._lock:
            try:
                self._out.write(line)
                self._out.flush()
            except (BrokenPipeError, ValueError):  # the server is gone; the kernel ends this process
                pass


def _open(settings: dict[str, Any]) -> Assembler:
    from costar.models.pricing import PriceTable
    from costar.store import open_store
    from costar.store.server_tables import ServerTables
    from costar.store.sql import SQLStore

    store = open_store(settings["store"], local_dir=settings.get("local_dir"))
    if not isinstance(store, SQLStore):
        raise TypeError(f"costar server needs a SQL store, not {type(store).__name__}")
    store.checkpoint_in_background()
    return Assembler(ServerTables(store), price=PriceTable().cost, **settings["assembler"])


def main() -> int:
    """Run until the server closes stdin; the exit code is 0 when everything complete was stored."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # anything else printed goes to the server's stderr, never into the protocol
    inp = sys.stdin.buffer
    first = read_frame(inp)
    if first is None or first[0] != SETTINGS_ROW:
        print("costar assembler: no settings on stdin (the server starts this process)", file=sys.stderr)
        return 2
    settings = orjson.loads(first[2])
    logging.basicConfig(level=settings.get("log_level", "WARNING"), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s (assembler): %(message)s")
    asm = _open(settings)
    tune_gc()  # the open traces are a large heap the default collector would walk again and again
    reporter = _Reporter(out)
    received = 0
    send_traces = False

    def stored(done: Sequence[CompletedTrace]) -> None:
        message: dict[str, Any] = {"t": "stored", "stats": stats_dict(asm.stats, received),
                                   "items": [[c.trace.trace_id, c.project, c.amended, c.incomplete] for c in done]}
        if send_traces:
            message["traces"] = [pack_trace(c.trace) for c in done]
        reporter.send(message)

    asm.listeners.append(stored)
    recovered = asm.recover()
    reporter.send({"t": "ready", "recovered": recovered, "stats": stats_dict(asm.stats, received)})
    asm.start()
    stopping = threading.Event()

    def report() -> None:
        last: dict[str, Any] = {}
        while not stopping.wait(STATUS_INTERVAL):
            now = stats_dict(asm.stats, received)
            if now != last:
                reporter.send({"t": "stats", "stats": now})
                last = now

    reporter_thread = threading.Thread(target=report, name="costar-assembler-stats", daemon=True)
    reporter_thread.start()
    while (item := read_frame(inp)) is not None:
        row_id, spans, payload = item
        if row_id == TRACES_ROW:
            send_traces = True
            continue
        if row_id in asm.recovered_rows:  # committed before the replay read it: taken already
            asm.recovered_rows.discard(row_id)
        else:
            # Rows arrive in commit order, so none of the replayed ones comes after a new one. (Taking a
            # row twice would change nothing stored anyway: its spans are known, the trace is not amended.)
            asm.recovered_rows.clear()
            asm.add_row(row_id, payload)
        received += spans
    code = 0
    try:
        asm.stop(flush=True)
    except Exception as exc:  # what could not be stored stays in the write-ahead log
        log.error("stopping: some traces stay in the write-ahead log for the next start: %s", exc)
        code = 1
    stopping.set()
    reporter_thread.join(5)
    reporter.send({"t": "stats", "stats": stats_dict(asm.stats, received)})
    asm.tables.store.close()
    return code


if __name__ == "__main__":
    sys.exit(main())
