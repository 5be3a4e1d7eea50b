"""The store contract: runs, traces, spans, artifacts (blobs), verdicts, human labels."""

from __future__ import annotations

import os
import time
from collections.abc import Generator, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from costar.errors import BadReferenceError, CostarError, NotInStoreError, StoreError
from costar.labels import GoldenSet, GoldenSetInfo, ValueType
from costar.store.lease import RunHolder
from costar.trace.model import AgentInfo, Span, SpanKind, StatusCode, Trace
from costar.trace.sanitize import Sanitizer
from costar.trace.tools import McpSnapshot
from costar.verdict import Verdict

RunStatus = Literal["running", "finished", "interrupted", "failed", "imported"]
"""A run's state: ``running`` (or died while running), ``finished``, ``interrupted`` (Ctrl-C),
``failed`` (something other than the agent broke: its traces could not be stored, a judge crashed
the pipeline; ``Run.error`` says what), ``imported`` (traces read from a file). An interrupted or
failed run keeps its finished trials; ``costar run --resume`` runs the rest."""

ORIGINS = ("cli", "api", "pytest", "refine", "import", "ci", "monitor")
"""Where a run can come from (``Run.origin``): the ``costar run`` command, a library call, the
pytest plugin, ``costar refine``'s own runs, ``costar traces import``, a CI job, a monitor."""
NOT_LATEST = frozenset({"refine"})
"""Origins whose runs ``latest`` skips: refinement's internal runs are not the user's last run."""


class DuplicateTrialError(StoreError):
    """A second, different trace of a (run, scenario, trial) the store already holds: each trial of a
    run is stored exactly once, whoever ran it (a trace written again under its own id is fine)."""

    def __init__(self, run_id: str | None = None, scenario_id: str | None = None, trial: int | None = None,
                 stored: str | None = None, refused: str | None = None) -> None:
        self.key = (run_id, scenario_id, trial)
        self.stored, self.refused = stored, refused
        if run_id is None:
            what = "a trace of a (run, scenario, trial) the store already holds"
        else:
            what = (f"trace {refused} of run {run_id}, scenario {scenario_id!r}, trial {trial}: the store already "
                    f"holds trace {stored} of that trial")
        super().__init__(f"refused {what}; each trial of a run is stored once (was the run resumed twice at once? "
                         "'costar run --resume' leases the run to one process)")


def new_run_id() -> str:
    """A fresh run id: the UTC time it was made, then 6 random hex digits (``20250101-120000-a1b2c3``)."""
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + os.urandom(3).hex()


class Run(BaseModel):
    """One run of a suite (or one import of traces): the record its traces and verdicts belong to,
    with what is needed to resume it."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    run_id: str = Field(default_factory=new_run_id)
    """The run's id; commands accept a unique prefix of it, or ``latest``."""
    created_at: float = Field(default_factory=time.time)
    """When the run started (Unix seconds)."""
    finished_at: float | None = None
    """When it finished; None while running, or when it was interrupted."""
    status: RunStatus = "running"
    """running, finished, interrupted, failed or imported."""
    error: str | None = None
    """Why a failed run stopped (one line); None unless ``status`` is "failed"."""
    agent: AgentInfo = Field(default_factory=AgentInfo)
    """The agent that ran."""
    agent_spec: dict[str, Any] = Field(default_factory=dict)
    """The agent's spec (``{"type": "command", ...}``), secrets redacted, to resume the run."""
    suite: list[str] = Field(default_factory=list)
    """The scenario files and folders the run was given."""
    selection: dict[str, Any] = Field(default_factory=dict)
    """Which scenarios were selected (ids, tags, split), to resume the run."""
    options: dict[str, Any] = Field(default_factory=dict)
    """The harness options that change results (trials, timeout), to resume the run."""
    project_dir: str | None = None
    """The folder the run was started in."""
    description: str = ""
    """What the run is for, in the words of whoever started it."""
    metadata: dict[str, Any] = Field(default_factory=dict)
    """Free-form facts about the run; ``origin`` (one of :data:`ORIGINS`) says where it came from."""

    @property
    def origin(self) -> str:
        """Where the run came from (:data:`ORIGINS`). Kept in ``metadata`` so stores written before
        origins existed read as before; their runs are told apart by what they recorded."""
        origin = self.metadata.get("origin")
        if isinstance(origin, str) and origin:
            return origin
        if self.status == "imported":
            return "import"
        return "refine" if self.description.startswith("refine ") else "cli"


class SpanQuery(BaseModel):
    """Filters for paging through a large trace without loading it whole; every filter given must match."""

    model_config = ConfigDict(use_attribute_docstrings=True)

    kind: SpanKind | None = None
    """Only spans of this kind."""
    name: str | None = None
    """Only spans whose name matches this shell glob (``chat *``), case-sensitively."""
    status: StatusCode | None = None
    """Only spans with this status (``ERROR``)."""
    parent_id: str | None = None
    """Only the children of this span."""
    offset: int = 0
    """How many matching spans to skip (in recorded order)."""
    limit: int = 100
    """How many matching spans to return at most."""


# ----------------------------------------------------------------------------- run selectors
#
# Besides ids, prefixes and ``latest``, a run can be named by what it is of: ``branch:NAME`` (the
# newest finished run of that branch, ``Run.metadata["vcs"]["branch"]``) or ``tag:NAME`` (the newest
# finished run tagged so, ``Run.metadata["tags"]``), each with ``~N`` for the Nth one before it.


def parse_run_selector(ref: str) -> tuple[str, str, int] | None:
    """``branch:main~1`` -> ("branch", "main", 1); None when ``ref`` is not a selector."""
    kind, sep, rest = ref.partition(":")
    if not sep or kind not in ("branch", "tag"):
        return None
    value, tilde, back = rest.partition("~")
    if not value or (tilde and back and not back.isdigit()):
        raise BadReferenceError(f"bad run reference {ref!r}: write {kind}:NAME or {kind}:NAME~N")
    return kind, value, (int(back) if back else 1) if tilde else 0


def run_matches(run: Run, kind: str, value: str) -> bool:
    if run.status not in ("finished", "imported"):
        return False
    meta = run.metadata or {}
    if kind == "branch":
        return isinstance(meta.get("vcs"), dict) and meta["vcs"].get("branch") == value
    tags = meta.get("tags")
    return isinstance(tags, list) and value in tags


def select_run(runs: Sequence[Run], ref: str, where: str) -> str:
    """The run a selector names among ``runs`` (newest first)."""
    parsed = parse_run_selector(ref)
    assert parsed is not None
    kind, value, back = parsed
    matching = [r for r in runs if run_matches(r, kind, value)]
    if len(matching) > back:
        return matching[back].run_id
    what = f"on branch {value!r}" if kind == "branch" else f"tagged {value!r}"
    if matching:
        raise NotInStoreError(f"{ref!r}: only {len(matching)} finished run(s) {what} in {where}")
    hint = "run the suite on that branch first" if kind == "branch" else f"run with --run-tag {value}"
    raise NotInStoreError(f"no finished run {what} in {where}; {hint}")


# ----------------------------------------------------------------------------- MCP server snapshots


class UnknownSnapshotError(CostarError, LookupError):
    """No stored MCP snapshot answers to the reference given."""


def parse_snapshot_ref(ref: str) -> tuple[str, int]:
    """``NAME~N`` / ``ID`` / ``latest~N`` -> (the name, id or ``latest``; how many versions back)."""
    text = ref.strip()
    base, sep, back = text.partition("~")
    if not base:
        raise UnknownSnapshotError(f"empty snapshot reference {ref!r}; give an id, a server name or 'latest'")
    if not sep:
        return base, 0
    if not back:
        return base, 1
    if not back.isdigit():
        raise UnknownSnapshotError(f"bad snapshot reference {ref!r}: after '~' comes a number of versions back "
                                   "(shop~1 is the one before the newest)")
    return base, int(back)


@runtime_checkable
class Store(Protocol):
    """Runs, traces, verdicts, labels and golden sets: the one place every stage reads and writes.

    Implementations: :class:`~costar.store.sqlite.SQLiteStore` (embedded, a folder) and
    :class:`~costar.store.postgres.PostgresStore` (shared, a database); open either by location with
    :func:`costar.store.open_store`. Every method raises :class:`~costar.errors.StoreError` when the
    store cannot be read or written (locked, disk full, database unreachable), with a message that
    says what to do; the errors below are the ones particular to each method.
    """

    root: Path
    """This machine's folder for local state (workspaces, cached files, judge versions). For the
    embedded store it is the store itself; for a database store it is a separate local folder."""
    location: str
    """The store as shown to people: a folder, or a database URL without its password."""

    # runs
    def create_run(self, run: Run) -> None:
        """Record a new run (before its traces). Raises StoreError when a run with its id exists."""

    def update_run(self, run: Run) -> None:
        """Replace a run's record (its status, finish time...) with ``run``."""

    def get_run(self, run_id: str) -> Run:
        """The run named by ``run_id`` (anything :meth:`resolve_run_id` accepts). Raises NotInStoreError
        when there is no such run, BadReferenceError when the reference is malformed or ambiguous."""

    def resolve_run_id(self, ref: str) -> str:
        """The full id of the run ``ref`` names: an id, a unique prefix, ``latest``/``last``, or a
        selector (``branch:NAME``, ``tag:NAME``, each with ``~N`` for an older run); a prefix is
        literal (``_`` and ``%`` are no wildcards). Raises NotInStoreError when no run matches (or none
        exists yet), BadReferenceError when the prefix is ambiguous or the selector malformed."""

    def list_runs(self, limit: int = 50) -> list[Run]:
        """The newest ``limit`` runs, newest first. A ``running`` run whose lease holder is known to
        be dead reads ``interrupted``."""

    # run leases: one process runs a run at a time (see costar.store.lease)
    def acquire_run(self, holder: RunHolder, *, stale_after_s: float = ...) -> tuple[RunHolder, str | None]:
        """Lease a run to ``holder`` and return it as stored (times set by the store's clock) with why
        a stale lease was taken over (None when the run was free). Raises
        :class:`~costar.store.lease.RunLeasedError` naming the holder while a live process holds it."""

    def renew_run(self, run_id: str, token: str) -> bool:
        """Renew the heartbeat of the lease acquired with ``token``; False when it is no longer that
        token's (another process took the run over)."""

    def release_run(self, run_id: str, token: str) -> None:
        """Give up the lease acquired with ``token`` (nothing happens when it is no longer that token's)."""

    def run_holders(self, run_ids: Sequence[str]) -> dict[str, RunHolder]:
        """Who holds each of these runs' leases (runs nobody holds are absent)."""

    def save_scenarios(self, run_id: str, scenarios: Sequence[Any]) -> None:
        """Keep the definitions of a run's scenarios (each replaces the one with its id), so the run can
        be resumed and re-scored exactly as it ran."""

    def load_scenarios(self, run_id: str) -> list[Any]:
        """The scenarios saved for a run, in the order saved, each knowing its source file."""

    # traces and spans
    def write_trace(self, trace: Trace, *, sanitizer: Sanitizer | None = None) -> Trace:
        """Store one trace; see :meth:`write_traces`. Returns it as stored."""

    def write_traces(self, traces: Sequence[Trace], *, sanitizer: Sanitizer | None = None) -> list[Trace]:
        """Redact secrets and bound sizes (with ``sanitizer``, default the store's), then store the
        traces and their spans in one transaction. A trace written again replaces the stored one and
        its spans. Returns the traces as stored, which is what judges should see. Raises StoreError
        when the disk is full, and :class:`DuplicateTrialError` for a second, different trace of a
        (run, scenario, trial) already stored (nothing of the batch is stored either way)."""

    def get_trace(self, trace_id: str, *, spans: bool = True) -> Trace:
        """The trace with this id (or unique prefix), with its spans unless ``spans`` is False (a
        trace's head is much cheaper). Raises NotInStoreError when there is no such trace,
        BadReferenceError when the prefix starts several, StoreError when the stored one is invalid."""

    def iter_traces(self, run_id: str | None = None, *, spans: bool = True) -> Iterator[Trace]:
        """Every trace of a run (of the store when ``run_id`` is None), by scenario and trial, read in
        batches so memory stays bounded."""

    def get_traces(self, trace_ids: Sequence[str], *, spans: bool = True) -> list[Trace]:
        """Several traces in the order given; unknown ids are skipped."""

    def trace_ids(self, run_id: str | None = None) -> list[str]:
        """The ids of a run's traces by scenario and trial (of every trace by start time when
        ``run_id`` is None), without loading them."""

    def finished_trials(self, run_id: str) -> set[tuple[str, int]]:
        """(scenario id, trial) of every trial stored for a run: what a resumed run skips."""

    def count_spans(self, trace_id: str, query: SpanQuery | None = None) -> int:
        """How many of a trace's spans match ``query`` (all of them without one)."""

    def query_spans(self, trace_id: str, query: SpanQuery) -> list[Span]:
        """One page of a trace's spans matching ``query``, in recorded order; only that page is read."""

    def get_span(self, trace_id: str, span_id: str) -> Span | None:
        """One span of a trace, or None when the trace has no such span."""

    def span_outline(self, trace_id: str) -> list[tuple[int, str, str | None, int, int | None]]:
        """Every span's (seq, span id, parent id, start, end) in recorded order, without attributes."""

    def spans_at(self, trace_id: str, seqs: Sequence[int]) -> dict[int, Span]:
        """The spans at these recorded positions (``seq``), read by key; missing ones are left out."""

    # artifacts
    def put_blob(self, data: bytes) -> str:
        """Store bytes content-addressed; returns their sha256, the key. Storing the same bytes again
        only refreshes when they were stored (retention spares recent blobs). Raises StoreError when
        the disk is full."""

    def put_file(self, path: Path) -> tuple[str, int]:
        """Store a file's bytes content-addressed, streamed; returns (sha256, size). Raises StoreError
        when the disk is full, OSError when the file cannot be read."""

    def get_blob(self, sha256: str) -> bytes | None:
        """A blob's bytes; None when it is absent or ``sha256`` is not a valid key."""

    def read_blob(self, sha256: str) -> tuple[int, Generator[bytes, None, None]] | None:
        """(size, chunks) of a stored blob, read lazily (close the chunks to stop early); None when absent."""

    def blob_path(self, sha256: str) -> Path:
        """A local file with a blob's bytes (a database store caches it under ``root``); for a blob the
        store does not hold, a path that does not exist. Raises StoreError for a key that is not a
        sha256 (it could name a file outside the store)."""

    # verdicts
    def write_verdicts(self, verdicts: Sequence[Verdict], run_id: str | None = None) -> None:
        """Add verdicts (earlier ones of the same judge stay, as history), in one transaction."""

    def verdicts(self, *, run_id: str | None = None, trace_ids: Sequence[str] | None = None,
                 latest: bool = True) -> list[Verdict]:
        """Verdicts on a run's traces, or on ``trace_ids`` (on every trace when both are None), oldest
        first. With ``latest``, only the newest per (trace, name) among the current judges: verdicts of
        judges retired by :meth:`activate_verdicts` are left out."""

    def activate_verdicts(self, trace_ids: Sequence[str], names: Sequence[str]) -> None:
        """On these traces, mark the verdicts named ``names`` current and retire every other one (a
        judge removed or renamed since they were scored)."""

    def trace_keys(self, run_id: str | None = None) -> list[tuple[str, str | None, int]]:
        """(trace id, scenario id, trial) of a run's traces (of every trace when ``run_id`` is None),
        without loading them."""

    def latest_fingerprints(self, trace_ids: Sequence[str]) -> dict[tuple[str, str], str | None]:
        """The fingerprint of the newest verdict per (trace id, verdict name), leaving out the pairs
        whose newest verdict is a judge error: an error is never a cached result, so the next assess
        retries it."""

    def find_verdict(self, trace_id: str, fingerprint: str, name: str) -> Verdict | None:
        """The newest verdict named ``name`` a judge with this fingerprint gave the trace that is not a
        judge error, or None: what lets an unchanged judge skip a trace it already scored."""

    # human labels: one per (trace, name, labeler)
    def write_labels(self, labels: Sequence[Verdict], *, replace: bool = False,
                     value_type: ValueType | None = None) -> int:
        """Store human labels (one per trace, name and labeler), all or none. Each is checked and put
        in canonical form by :func:`costar.labels.validate_label` (``value_type`` checks its value); a
        label equal to the stored one is left as it is; a different one needs ``replace``. Returns how
        many were written. Raises LabelError for an invalid label, UnknownTraceError for a trace the
        store does not hold, LabelConflictError for a changed label without ``replace`` (or two
        different labels of one labeler in the batch)."""

    def labels(self, *, name: str | None = None, trace_ids: Sequence[str] | None = None,
               labeler: str | None = None) -> list[Verdict]:
        """Human labels, oldest first, filtered by judge name, traces and labeler."""

    def delete_labels(self, *, name: str, trace_ids: Sequence[str] | None = None,
                      labeler: str | None = None) -> int:
        """Delete a judge's labels (only on ``trace_ids``, only by ``labeler`` when given), all at once;
        returns how many were deleted."""

    # golden sets: immutable versions, written once each
    def write_golden_set(self, golden: GoldenSet) -> None:
        """Save a new version of a golden set. Raises GoldenSetError unless it is the next version
        (so two concurrent edits cannot both win: reload and apply the change again)."""

    def golden_set(self, name: str, version: int | None = None) -> GoldenSet:
        """A version of a golden set (the latest when ``version`` is None). Raises GoldenSetError when
        there is no such set or version (the message lists what exists)."""

    def golden_sets(self, name: str | None = None) -> list[GoldenSetInfo]:
        """Every version of one set (of every set when ``name`` is None), by name then version, without
        their examples."""

    # MCP server snapshots: by id, by name (newest), "latest", each with ~N for older ones
    def write_mcp_snapshot(self, snapshot: McpSnapshot) -> None:
        """Store a snapshot of an MCP server's catalog (its tools and their fingerprints)."""

    def mcp_snapshot(self, ref: str) -> McpSnapshot:
        """The snapshot ``ref`` names: an id (or unique prefix), a server name (its newest), or
        ``latest``, each with ``~N`` for the Nth older one. Raises UnknownSnapshotError when none matches."""

    def mcp_snapshots(self, name: str | None = None, limit: int = 50) -> list[McpSnapshot]:
        """The newest ``limit`` snapshots (of one server when ``name`` is given), newest first."""

    def close(self) -> None:
        """Release connections and files. The store cannot be used afterwards."""
