"""The store contract: runs, traces, spans, artifacts (blobs), verdicts, human labels."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from costar.errors import CostarError, StoreError
from costar.labels import GoldenSet, GoldenSetInfo, ValueType
from costar.trace.model import AgentInfo, Span, SpanKind, StatusCode, Trace
from costar.trace.sanitize import Sanitizer
from costar.trace.tools import McpSnapshot
from costar.verdict import Verdict

# "failed": the run stopped because something other than the agent broke (its traces could not be
# stored, a judge crashed the pipeline); ``Run.error`` says what. Finished trials are kept, and
# ``costar run --resume`` runs the rest once the cause is fixed.
RunStatus = Literal["running", "finished", "interrupted", "failed", "imported"]


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + os.urandom(3).hex()


class Run(BaseModel):
    model_config = ConfigDict(extra="forbid")

    run_id: str = Field(default_factory=new_run_id)
    created_at: float = Field(default_factory=time.time)
    finished_at: float | None = None
    status: RunStatus = "running"
    error: str | None = None
    """Why a failed run stopped (one line); None unless ``status`` is "failed"."""
    agent: AgentInfo = Field(default_factory=AgentInfo)
    # Enough to resume: the agent spec, the suite paths, the selection and run options.
    agent_spec: dict[str, Any] = Field(default_factory=dict)
    suite: list[str] = Field(default_factory=list)
    selection: dict[str, Any] = Field(default_factory=dict)
    options: dict[str, Any] = Field(default_factory=dict)
    project_dir: str | None = None
    description: str = ""
    metadata: dict[str, Any] = Field(default_factory=dict)


class SpanQuery(BaseModel):
    """Filters for paging through a large trace without loading it whole."""

    kind: SpanKind | None = None
    name: str | None = None  # glob
    status: StatusCode | None = None
    parent_id: str | None = None
    offset: int = 0
    limit: int = 100


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
        raise StoreError(f"bad run reference {ref!r}: write {kind}:NAME or {kind}:NAME~N")
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
        raise StoreError(f"{ref!r}: only {len(matching)} finished run(s) {what} in {where}")
    hint = "run the suite on that branch first" if kind == "branch" else f"run with --run-tag {value}"
    raise StoreError(f"no finished run {what} in {where}; {hint}")


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
    :func:`costar.store.location.open_store`.
    """

    #: This machine's folder for local state (workspaces, cached files, judge versions). For the
    #: embedded store it is the store itself; for a database store it is a separate local folder.
    root: Path
    #: The store as shown to people: a folder, or a database URL without its password.
    location: str

    # runs
    def create_run(self, run: Run) -> None: ...
    def update_run(self, run: Run) -> None: ...
    def get_run(self, run_id: str) -> Run: ...
    def resolve_run_id(self, ref: str) -> str: ...
    def list_runs(self, limit: int = 50) -> list[Run]: ...
    def save_scenarios(self, run_id: str, scenarios: Sequence[Any]) -> None: ...
    def load_scenarios(self, run_id: str) -> list[Any]: ...

    # traces and spans
    def write_trace(self, trace: Trace, *, sanitizer: Sanitizer | None = None) -> Trace: ...
    def write_traces(self, traces: Sequence[Trace], *, sanitizer: Sanitizer | None = None) -> list[Trace]: ...
    def get_trace(self, trace_id: str, *, spans: bool = True) -> Trace: ...
    def iter_traces(self, run_id: str | None = None, *, spans: bool = True) -> Iterator[Trace]: ...
    def get_traces(self, trace_ids: Sequence[str], *, spans: bool = True) -> list[Trace]: ...
    def trace_ids(self, run_id: str | None = None) -> list[str]: ...
    def finished_trials(self, run_id: str) -> set[tuple[str, int]]: ...
    def count_spans(self, trace_id: str, query: SpanQuery | None = None) -> int: ...
    def query_spans(self, trace_id: str, query: SpanQuery) -> list[Span]: ...
    def get_span(self, trace_id: str, span_id: str) -> Span | None: ...

    # artifacts
    def put_blob(self, data: bytes) -> str: ...
    def put_file(self, path: Path) -> tuple[str, int]: ...
    def get_blob(self, sha256: str) -> bytes | None: ...
    def blob_path(self, sha256: str) -> Path: ...

    # verdicts
    def write_verdicts(self, verdicts: Sequence[Verdict], run_id: str | None = None) -> None: ...
    def verdicts(self, *, run_id: str | None = None, trace_ids: Sequence[str] | None = None,
                 latest: bool = True) -> list[Verdict]: ...
    def activate_verdicts(self, trace_ids: Sequence[str], names: Sequence[str]) -> None: ...
    def trace_keys(self, run_id: str | None = None) -> list[tuple[str, str | None, int]]: ...
    def latest_fingerprints(self, trace_ids: Sequence[str]) -> dict[tuple[str, str], str | None]: ...
    def find_verdict(self, trace_id: str, fingerprint: str, name: str) -> Verdict | None: ...

    # human labels: one per (trace, name, labeler); see validate_label for what is checked
    def write_labels(self, labels: Sequence[Verdict], *, replace: bool = False,
                     value_type: ValueType | None = None) -> int: ...
    def labels(self, *, name: str | None = None, trace_ids: Sequence[str] | None = None,
               labeler: str | None = None) -> list[Verdict]: ...
    def delete_labels(self, *, name: str, trace_ids: Sequence[str] | None = None,
                      labeler: str | None = None) -> int: ...

    # golden sets: immutable versions, written once each
    def write_golden_set(self, golden: GoldenSet) -> None: ...
    def golden_set(self, name: str, version: int | None = None) -> GoldenSet: ...
    def golden_sets(self, name: str | None = None) -> list[GoldenSetInfo]: ...

    # MCP server snapshots: by id, by name (newest), "latest", each with ~N for older ones
    def write_mcp_snapshot(self, snapshot: McpSnapshot) -> None: ...
    def mcp_snapshot(self, ref: str) -> McpSnapshot: ...
    def mcp_snapshots(self, name: str | None = None, limit: int = 50) -> list[McpSnapshot]: ...

    def close(self) -> None: ...
