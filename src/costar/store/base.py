"""The store contract: runs, traces, spans, artifacts (blobs), verdicts, human labels."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from costar.trace.model import AgentInfo, Span, SpanKind, StatusCode, Trace
from costar.verdict import Verdict

RunStatus = Literal["running", "finished", "interrupted", "imported"]


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + os.urandom(3).hex()


class Run(BaseModel):
    model_config = ConfigDict(extra="forbid")

    run_id: str = Field(default_factory=new_run_id)
    created_at: float = Field(default_factory=time.time)
    finished_at: float | None = None
    status: RunStatus = "running"
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


@runtime_checkable
class Store(Protocol):
    root: Path

    # runs
    def create_run(self, run: Run) -> None: ...
    def update_run(self, run: Run) -> None: ...
    def get_run(self, run_id: str) -> Run: ...
    def resolve_run_id(self, ref: str) -> str: ...
    def list_runs(self, limit: int = 50) -> list[Run]: ...
    def save_scenarios(self, run_id: str, scenarios: Sequence[Any]) -> None: ...
    def load_scenarios(self, run_id: str) -> list[Any]: ...

    # traces and spans
    def write_trace(self, trace: Trace) -> None: ...
    def write_traces(self, traces: Sequence[Trace]) -> None: ...
    def get_trace(self, trace_id: str, *, spans: bool = True) -> Trace: ...
    def iter_traces(self, run_id: str | None = None, *, spans: bool = True) -> Iterator[Trace]: ...
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
    def verdict_fingerprints(self, trace_ids: Sequence[str]) -> set[tuple[str, str]]: ...

    def close(self) -> None: ...
