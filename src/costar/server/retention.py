"""Retention: each project's traces are kept for ``max_age`` and within ``max_size``
(``projects:`` in server.yaml). Deleting a trace deletes its spans, verdicts and the blobs no other
trace uses, unless they were stored in the last day (a writer may be about to store a trace that
uses them: :data:`~costar.store.server_tables.BLOB_GRACE_S`). Never deleted: traces a person
labeled (they may be in a golden set), runs' traces (only traces the server ingested are subject
to retention), and the monitors' metric series.

The server applies the rules every ``retention_interval``; ``costar store prune`` applies them once.
"""

from __future__ import annotations

import dataclasses
import logging
import time

from pydantic import BaseModel, ConfigDict, Field

from costar.server.config import ServerConfig
from costar.store.server_tables import PruneCounts, ServerTables

log = logging.getLogger("costar.server")


class ProjectPruned(BaseModel):
    """What retention deleted in one project (the counts are :class:`PruneCounts`'s)."""

    model_config = ConfigDict(extra="forbid")

    project: str
    max_age_s: float | None
    """The age limit applied (seconds), if any."""
    max_size: int | None
    """The size limit applied (bytes), if any."""
    traces: int = 0
    spans: int = 0
    verdicts: int = 0
    blobs: int = 0
    bytes: int = 0
    """Approximate bytes freed (the traces' recorded sizes)."""
    kept_labeled: int = 0
    """Traces kept although old or over the size because a person labeled them."""


class PruneReport(BaseModel):
    """``costar store prune``'s result, per project."""

    model_config = ConfigDict(extra="forbid")

    dry_run: bool = False
    projects: list[ProjectPruned] = Field(default_factory=list)


def prune(tables: ServerTables, config: ServerConfig, *, now: float | None = None,
          project: str | None = None, dry_run: bool = False) -> PruneReport:
    """Apply every project's retention rules once (or only ``project``'s)."""
    now = time.time() if now is None else now
    report = PruneReport(dry_run=dry_run)
    names = [p["project"] for p in tables.projects()]
    for name in names:
        if project is not None and name != project:
            continue
        rules = config.retention(name)
        if rules.empty:
            continue
        older_than = now - rules.max_age if rules.max_age is not None else None
        counts = PruneCounts()
        for chunk in tables.expired(name, older_than=older_than, max_bytes=rules.max_size):
            if dry_run:
                counts.traces += len(chunk)
                counts.bytes += sum(size for _, size in chunk)
            else:
                counts.add(tables.delete_traces([tid for tid, _ in chunk]))
        report.projects.append(ProjectPruned(
            project=name, max_age_s=rules.max_age, max_size=rules.max_size, **dataclasses.asdict(counts),
            kept_labeled=tables.labeled_count(name) if (counts.traces or dry_run) else 0))
        if counts.traces and not dry_run:
            log.info("retention: deleted %d trace(s) of project %s", counts.traces, name)
    return report
