"""Trace assembly: spans from committed write-ahead batches gather into open traces, and a trace is
stored once it is complete.

When a trace is complete:

* its root span (a span without a parent) has arrived (OpenTelemetry exports a span when it
  ends, so arrived means ended) and no span of it arrived for ``idle`` seconds; or
* it has no root span here (its root lives in a service that does not send to this server) and
  nothing arrived for ``root_wait`` seconds; or
* it has been open ``max_open`` seconds; or memory is short (more than ``max_open_spans`` spans or
  ``max_open_traces`` traces held): the traces idle longest are stored early.

The last three are stored *incomplete* (``server_traces.incomplete``; the trace's metadata says
why). A span that arrives for a trace already stored *amends* it: the stored spans and the new
ones (a span id seen again replaces the old span) are assembled again, the trace is rewritten and
its ``amended`` count goes up. A span id that is already stored and brings nothing new (an exporter
retrying a request that had in fact succeeded, or the write-ahead log replayed after a crash)
changes nothing.

The write-ahead rows a trace used are deleted in the transaction that stores it (once no open trace
still needs them), so whatever happens, every acknowledged span is in the store or still in the log.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from costar.server.config import ServerConfig
from costar.server.redaction import ProjectRedactors, RedactedAtIngest
from costar.server.wal import SpanGroup, decode, span_from_fields
from costar.store.server_tables import ServerTables, ServerTrace
from costar.trace.finalize import Pricer, finalize_spans
from costar.trace.model import PROJECT_KEY, Span, Trace
from costar.trace.otlp import assemble_trace
from costar.trace.tools import tool_definitions

log = logging.getLogger("costar.server")

_REDACTED_AT_INGEST = RedactedAtIngest()
SERVER_KEY = "costar.server"
INFERRED = "costar.inferred"


@dataclass
class CompletedTrace:
    """What the server tells its listeners (the monitors) about a trace it just stored."""

    trace: Trace
    """The trace as stored (redacted, finalised)."""
    project: str
    amended: bool
    """True when late spans changed a trace that was stored before."""
    incomplete: bool


Listener = Callable[[Sequence[CompletedTrace]], None]


def assembler_settings(config: ServerConfig) -> dict[str, Any]:
    """The :class:`Assembler`'s keyword arguments from server.yaml (JSON-ready, for a child process too)."""
    return {"idle": config.idle, "root_wait": max(60.0, config.idle), "max_open": config.max_open,
            "max_open_spans": config.limits.max_open_spans, "max_open_traces": config.limits.max_open_traces,
            "projects": {name: rules.model_dump(mode="json") for name, rules in config.projects.items()}}


@dataclass(slots=True)
class _Open:
    trace_id: str
    project: str
    pinned: bool
    service: str | None
    resource: dict[str, Any]
    first_seen: float
    last_seen: float
    spans: dict[str, Span] = field(default_factory=dict)
    batches: set[int] = field(default_factory=set)
    has_root: bool = False
    stored_before: bool = False
    redacted_as: set[str] = field(default_factory=set)
    """The projects whose redaction rules ingest applied to the spans (routing can differ per request)."""


@dataclass
class AssemblerStats:
    open_traces: int = 0
    open_spans: int = 0
    traces_stored: int = 0
    traces_amended: int = 0
    traces_incomplete: int = 0
    spans_stored: int = 0
    spans_refused: int = 0
    """Spans a token pinned to one project that belonged to another project's trace."""
    duplicates: int = 0
    """Traces whose late spans were all stored already (nothing to amend)."""
    commit_errors: int = 0
    build_errors: int = 0
    """Traces whose finalisation failed on their content; each was stored as received, flagged."""
    last_error: str | None = None


class Assembler:
    """Holds open traces (bounded) and stores them when complete. ``add`` is called from the
    ingest path; ``run`` (a thread) stores what is due. Thread-safe."""

    def __init__(self, tables: ServerTables, *, idle: float = 5.0, root_wait: float = 60.0, max_open: float = 3600.0,
                 max_open_spans: int = 500_000, max_open_traces: int = 100_000, price: Pricer | None = None,
                 max_commit_spans: int = 20_000, clock: Callable[[], float] = time.monotonic,
                 projects: dict[str, Any] | None = None) -> None:
        self.tables = tables
        self._rules = ServerConfig.model_validate({"projects": projects or {}})
        """server.yaml's projects: a trace's spans routed to another project are redacted with its rules."""
        self._redactors = ProjectRedactors(self._rules)
        self.idle = idle
        self.root_wait = max(root_wait, idle)
        self.max_open = max_open
        self.max_open_spans = max_open_spans
        self.max_open_traces = max_open_traces
        self.max_commit_spans = max_commit_spans
        self.price = price
        self.clock = clock
        self.stats = AssemblerStats()
        self.listeners: list[Listener] = []
        self._lock = threading.Lock()
        self._open: OrderedDict[str, _Open] = OrderedDict()  # by last arrival, oldest first
        self._refs: dict[int, int] = {}  # write-ahead row -> open traces holding spans of it
        self._recent: OrderedDict[str, str] = OrderedDict()  # stored trace -> project (bounded)
        self._recent_max = 50_000
        self.recovered_rows: set[int] = set()
        """Ids of the write-ahead rows :meth:`recover` replayed."""
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ adding spans

    @property
    def open_spans(self) -> int:
        """Spans acknowledged but not yet stored in a trace (what ingest's backpressure watches)."""
        return self.stats.open_spans

    def add_listener(self, listener: Listener) -> None:
        """``listener`` gets the traces stored from now on."""
        self.listeners.append(listener)

    @property
    def accepting(self) -> bool:
        """Whether new spans can be taken (always, in the server's own process)."""
        return True

    def take(self, batch_id: int, groups: Sequence[SpanGroup], payload: bytes) -> None:
        """A committed write-ahead row (its groups, and ``payload``, the row's encoded bytes)."""
        self.add(batch_id, groups)

    def add(self, batch_id: int, groups: Sequence[SpanGroup]) -> None:
        """Spans of a committed write-ahead row (its groups, spans as rows) join their traces."""
        self._add(batch_id, [(g, [span_from_fields(f) for f in g.spans]) for g in groups])

    def _add(self, batch_id: int, groups: Sequence[tuple[SpanGroup, list[Span]]]) -> None:
        now = self.clock()
        with self._lock:
            touched: set[str] = set()
            for g, spans in groups:
                service = g.resource.get("service.name")
                for s in spans:
                    ot = self._open.get(s.trace_id)
                    if ot is None:
                        known = self._recent.get(s.trace_id)
                        if known is not None and g.pinned and known != g.project:
                            self._refuse(s, known, g.project)
                            continue
                        ot = _Open(trace_id=s.trace_id, project=known or g.project, pinned=g.pinned,
                                   service=str(service) if service is not None else None, resource=g.resource,
                                   first_seen=now, last_seen=now, stored_before=known is not None)
                        self._open[s.trace_id] = ot
                        self.stats.open_traces += 1
                    elif g.pinned and ot.project != g.project:
                        if ot.pinned:
                            self._refuse(s, ot.project, g.project)
                            continue
                        ot.project, ot.pinned = g.project, True  # a token's word beats a resource attribute
                    ot.redacted_as.add(g.project)
                    if s.span_id not in ot.spans:
                        self.stats.open_spans += 1
                    ot.spans[s.span_id] = s
                    if s.parent_id is None:
                        ot.has_root = True
                    if batch_id not in ot.batches:
                        ot.batches.add(batch_id)
                        self._refs[batch_id] = self._refs.get(batch_id, 0) + 1
                    if s.trace_id not in touched:
                        touched.add(s.trace_id)
                        ot.last_seen = now
                        self._open.move_to_end(s.trace_id)
            if batch_id not in self._refs:  # nothing of it is open (every span refused): it is done
                self._refs[batch_id] = 0
        if self.stats.open_spans > self.max_open_spans or self.stats.open_traces > self.max_open_traces:
            self._wake.set()

    def add_row(self, batch_id: int, data: bytes) -> int:
        """A write-ahead row as stored (its encoded bytes) joins the open traces; returns its span
        count. An unreadable row is logged and left in the log."""
        try:
            groups = [(g, [span_from_fields(f) for f in g.spans]) for g in decode(data)]
        except (ValueError, KeyError, TypeError, IndexError) as exc:  # orjson's JSONDecodeError is a ValueError
            log.error("write-ahead row %d is unreadable (%s); it is kept for inspection", batch_id, exc)
            return 0
        self._add(batch_id, groups)
        return sum(len(spans) for _, spans in groups)

    def _refuse(self, s: Span, project: str, pinned: str) -> None:
        self.stats.spans_refused += 1
        log.warning("refused span %s of trace %s: the trace belongs to project %r, the token to %r",
                    s.span_id, s.trace_id, project, pinned)

    # ------------------------------------------------------------------ choosing what to store

    def _due(self, now: float, *, force: bool = False) -> tuple[list[tuple[_Open, str | None]], list[int]]:
        """Pop the traces to store now (with why they are incomplete, if they are) and the
        write-ahead rows that then hold nothing open. Caller holds the lock."""
        out: list[tuple[_Open, str | None]] = []
        spans = 0
        over = self._over_limits()
        for ot in list(self._open.values()):
            idle_for = now - ot.last_seen
            reason: str | None
            if force:  # stopping: store what only waits out its idle time; the log keeps the rest
                if not (ot.has_root or ot.stored_before):
                    continue
                reason = None
            elif now - ot.first_seen >= self.max_open:
                reason = f"open longer than {self.max_open:g}s"
            elif idle_for >= self.idle and (ot.has_root or ot.stored_before):
                reason = None
            elif idle_for >= self.root_wait:
                reason = "its root span never arrived"
            elif over:
                reason = "stored early: the server held too many open spans"
            elif idle_for < self.idle:
                break  # ordered by last arrival: nothing after this one is idle either
            else:
                continue
            out.append((ot, reason))
            spans += len(ot.spans)
            self._forget(ot)
            over = over and self._over_limits(0.9)
            if spans >= self.max_commit_spans:
                break
        for ot, _ in out:
            for b in ot.batches:
                self._refs[b] -= 1
        done = [b for b, n in self._refs.items() if n == 0]
        for b in done:
            del self._refs[b]
        return out, done

    def _over_limits(self, fraction: float = 1.0) -> bool:
        return (self.stats.open_spans > self.max_open_spans * fraction
                or self.stats.open_traces > self.max_open_traces * fraction)

    def _forget(self, ot: _Open) -> None:
        del self._open[ot.trace_id]
        self.stats.open_traces -= 1
        self.stats.open_spans -= len(ot.spans)

    def _restore(self, items: Sequence[tuple[_Open, str | None]], done: Sequence[int]) -> None:
        """Put traces back after a failed commit (merging with spans that arrived meanwhile)."""
        with self._lock:
            for b in done:
                self._refs.setdefault(b, 0)
            for ot, _ in items:
                for b in ot.batches:
                    self._refs[b] = self._refs.get(b, 0) + 1
                cur = self._open.get(ot.trace_id)
                if cur is None:
                    self._open[ot.trace_id] = ot
                    self._open.move_to_end(ot.trace_id, last=False)
                    self.stats.open_traces += 1
                    self.stats.open_spans += len(ot.spans)
                    continue
                for sid, s in ot.spans.items():
                    if sid not in cur.spans:
                        cur.spans[sid] = s
                        self.stats.open_spans += 1
                for b in ot.batches:
                    if b in cur.batches:
                        self._refs[b] -= 1
                cur.batches |= ot.batches
                cur.has_root = cur.has_root or ot.has_root
                cur.redacted_as |= ot.redacted_as
                cur.first_seen = min(cur.first_seen, ot.first_seen)

    # ------------------------------------------------------------------ storing

    def store_due(self, *, force: bool = False) -> int:
        """Store every trace that is due (all open ones with ``force``); returns how many."""
        total = 0
        while True:
            with self._lock:
                items, done = self._due(self.clock(), force=force)
            if not items and not done:
                return total
            try:
                self._commit(items, done)
            except Exception as exc:
                self._restore(items, done)
                self.stats.commit_errors += 1
                self.stats.last_error = f"{type(exc).__name__}: {exc}"
                log.error("could not store %d trace(s); will retry: %s", len(items), exc)
                raise
            total += len(items)
            if not items:
                return total

    def _commit(self, items: Sequence[tuple[_Open, str | None]], done: Sequence[int]) -> None:
        ids = [ot.trace_id for ot, _ in items]
        stored_before = self.tables.server_traces(ids) if items else {}
        # A run's trace with the same id (an agent server exporting here while the harness tests it,
        # continuing the harness's trace): the server never overwrites it.
        of_runs = self.tables.run_trace_ids([i for i in ids if i not in stored_before]) if items else set()
        old_traces = {t.trace_id: t for t in self.tables.store.get_traces(sorted(stored_before))} \
            if stored_before else {}
        traces: list[Trace] = []
        records: list[ServerTrace] = []
        meta: list[tuple[str, bool, bool]] = []
        now = time.time()
        for ot, reason in items:
            if ot.trace_id in of_runs:
                self.stats.spans_refused += len(ot.spans)
                log.warning("refused %d span(s) of trace %s: a run's trace has that id", len(ot.spans), ot.trace_id)
                continue
            prev = stored_before.get(ot.trace_id)
            if prev is not None and prev.project != ot.project:
                if ot.pinned:
                    self.stats.spans_refused += len(ot.spans)
                    log.warning("refused %d span(s) of trace %s: it belongs to project %r, the token to %r",
                                len(ot.spans), ot.trace_id, prev.project, ot.project)
                    continue
                ot.project = prev.project
            old = old_traces.get(ot.trace_id)
            spans = list(ot.spans.values())
            if old is not None:
                known = {s.span_id for s in old.spans}
                if all(sid in known for sid in ot.spans):
                    self.stats.duplicates += 1
                    continue
                new_ids = set(ot.spans)
                # Inferred TOOL spans are derived: drop them, finalisation infers them again.
                spans = [s for s in old.spans if s.span_id not in new_ids and not s.attributes.get(INFERRED)] + spans
                if prev is not None and reason is not None and prev.incomplete is False:
                    reason = None  # a late span does not make a complete trace incomplete
            spans = self._redacted_for(ot, spans)
            try:
                trace = self._build(ot, spans, old, reason)
            except Exception as exc:  # the content of one trace must not keep every other trace out
                trace = self._unfinished(ot, spans, old, exc)
            amended = (prev.amended + 1) if prev is not None else 0
            trace.metadata[SERVER_KEY] = {**trace.metadata.get(SERVER_KEY, {}), "amended": amended,
                                          **({"incomplete": reason} if reason else {})}
            if not reason:
                trace.metadata[SERVER_KEY].pop("incomplete", None)
            traces.append(trace)
            records.append(ServerTrace(trace_id=ot.trace_id, project=ot.project, service=ot.service,
                                       start_ns=trace.start_ns, completed_at=now, amended=amended,
                                       incomplete=reason is not None, spans=len(trace.spans)))
            meta.append((ot.project, prev is not None, reason is not None))
        stored = self.tables.commit_traces(traces, records, done, sanitizer=_REDACTED_AT_INGEST) \
            if (traces or done) else []
        with self._lock:
            for (project, _, _), t in zip(meta, stored, strict=True):
                self._recent[t.trace_id] = project
                self._recent.move_to_end(t.trace_id)
            while len(self._recent) > self._recent_max:
                self._recent.popitem(last=False)
        self.stats.traces_stored += sum(1 for m in meta if not m[1])
        self.stats.traces_amended += sum(1 for m in meta if m[1])
        self.stats.traces_incomplete += sum(1 for m in meta if m[2])
        self.stats.spans_stored += sum(len(t.spans) for t in stored)
        if stored and self.listeners:
            done_traces = [CompletedTrace(trace=t, project=m[0], amended=m[1], incomplete=m[2])
                           for m, t in zip(meta, stored, strict=True)]
            for listener in self.listeners:
                try:
                    listener(done_traces)
                except Exception:  # a listener's failure must not lose or repeat stored traces
                    log.exception("a trace listener failed")

    def _build(self, ot: _Open, spans: list[Span], old: Trace | None, reason: str | None) -> Trace:
        spans = finalize_spans(spans, price=self.price)
        trace = assemble_trace(ot.trace_id, spans, ot.resource)
        trace.tools = tool_definitions(trace.spans)
        metadata = dict(old.metadata) if old is not None else {}
        metadata.update(trace.metadata)
        metadata[PROJECT_KEY] = ot.project
        trace.metadata = metadata
        return trace

    def _redacted_for(self, ot: _Open, spans: list[Span]) -> list[Span]:
        """The spans redacted with the rules of the project the trace is stored in, where ingest routed
        some of them to a project with other rules (a late span without the project's attribute)."""
        if len(ot.redacted_as) == 1 and ot.project in ot.redacted_as:
            return spans  # the common case: every span was routed where the trace is stored
        rules = self._rules.redaction(ot.project)
        if all(self._rules.redaction(p) == rules for p in ot.redacted_as):
            return spans
        red = self._redactors.get(ot.project)
        return [red.span(s) for s in spans]

    def _unfinished(self, ot: _Open, spans: list[Span], old: Trace | None, exc: Exception) -> Trace:
        """The trace as received, without finalisation or derived facts, when building it failed
        (a bug meeting an unusual span): stored and flagged rather than retried forever."""
        self.stats.build_errors += 1
        error = f"{type(exc).__name__}: {exc}"[:500]
        self.stats.last_error = error
        log.exception("trace %s could not be finalised; stored as received", ot.trace_id)
        metadata = dict(old.metadata) if old is not None else {}
        metadata[PROJECT_KEY] = ot.project
        metadata[SERVER_KEY] = {**metadata.get(SERVER_KEY, {}), "build_error": error}
        if ot.resource:
            metadata["otel.resource"] = dict(ot.resource)
        spans = sorted(spans, key=lambda s: s.start_ns)
        start = min((s.start_ns for s in spans), default=0)
        end = max(((s.end_ns or s.start_ns) for s in spans), default=0)
        return Trace(trace_id=ot.trace_id, start_ns=start, end_ns=end, spans=spans, metadata=metadata)

    # ------------------------------------------------------------------ recovery and the thread

    def recover(self, batch: int = 64) -> int:
        """Replay the write-ahead log (after a restart): every row's spans join their traces again.
        Returns the number of spans replayed."""
        last, spans = 0, 0
        while True:
            rows = self.tables.pending_batches(last, batch)
            if not rows:
                return spans
            for batch_id, data in rows:
                self.recovered_rows.add(batch_id)
                spans += self.add_row(batch_id, data)
                last = batch_id
            if self._over_limits():
                self.store_due()

    def start(self, poll: float = 0.1) -> None:
        self._thread = threading.Thread(target=self._run, args=(poll,), name="costar-assembler", daemon=True)
        self._thread.start()

    def _run(self, poll: float) -> None:
        while not self._stop.is_set():
            self._wake.wait(poll)
            self._wake.clear()
            try:
                self.store_due()
            except Exception:  # logged by store_due; the traces stay open and are retried
                self._stop.wait(min(5.0, poll * 20))

    def stop(self, *, flush: bool = True, timeout: float = 30.0) -> None:
        """Stop the thread; with ``flush``, store the open traces whose root span has arrived (the
        others stay in the write-ahead log and are assembled after the next start)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        if flush:
            self.store_due(force=True)

