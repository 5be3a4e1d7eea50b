"""What each page shows, read from the store: the same functions and shapes as the CLI's ``--json``."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from costar.store.base import Store
from costar.trace.model import AgentInfo, Totals
from costar.verdict import Verdict
from costar.views import artifact_text

ARTIFACT_TEXT_CHARS = 4000


class ArtifactRow(BaseModel):
    """A file the agent left in its workspace, with the start of its text when it is text."""

    model_config = ConfigDict(extra="forbid")

    path: str
    sha256: str
    size: int
    media_type: str | None
    origin: str
    text: str | None = None
    text_truncated: bool = False
    binary: bool = False


class TraceView(BaseModel):
    """One trace's head, artifacts and latest verdicts (its spans are paged separately)."""

    model_config = ConfigDict(extra="forbid")

    trace_id: str
    run_id: str | None
    scenario_id: str | None
    trial: int
    agent: AgentInfo
    status: str
    error: str | None
    input: Any
    output: str | None
    start_ns: int
    end_ns: int
    totals: Totals
    metadata: dict[str, Any]
    spans_total: int
    artifacts: list[ArtifactRow] = Field(default_factory=list)
    verdicts: list[Verdict] = Field(default_factory=list)


def trace_view(store: Store, trace_id: str, artifact_chars: int = ARTIFACT_TEXT_CHARS) -> TraceView:
    head = store.get_trace(trace_id, spans=False)
    artifacts = []
    for a in head.artifacts:
        text, truncated, binary = artifact_text(store, a, artifact_chars)
        artifacts.append(ArtifactRow(path=a.path, sha256=a.sha256, size=a.size, media_type=a.media_type,
                                     origin=a.origin, text=text, text_truncated=truncated, binary=binary))
    return TraceView(trace_id=head.trace_id, run_id=head.run_id, scenario_id=head.scenario_id, trial=head.trial,
                     agent=head.agent, status=head.status.value, error=head.error, input=head.input,
                     output=head.output, start_ns=head.start_ns, end_ns=head.end_ns, totals=head.totals,
                     metadata=head.metadata, spans_total=store.count_spans(head.trace_id), artifacts=artifacts,
                     verdicts=store.verdicts(trace_ids=[head.trace_id]))
