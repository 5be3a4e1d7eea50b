"""Making human labels and the queue of traces to label: what the terminal and the web labeling
pages share.

A label is a :class:`~costar.verdict.Verdict` with source ``human``: the same ``name`` as the judge
it calibrates, ``source_id`` the labeler (:mod:`costar.labels` holds the value types and checks).
The store keeps at most one label per (trace, judge, labeler) and checks every batch before writing
any of it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from costar.labels import (
    LabelError,
    UnknownTraceError,
    ValueType,
    ValueTypeLike,
    validate_label,
)
from costar.store.base import Store
from costar.trace.model import Trace
from costar.verdict import Verdict, VerdictSource

__all__ = [
    "QueueItem",
    "TraceFacts",
    "format_value",
    "label_queue",
    "new_label",
    "save_labels",
    "trace_heads",
]


def new_label(trace_id: str, name: str, value: Any, *, labeler: str, rationale: str = "",
              value_type: ValueTypeLike = None, created_at: float | None = None) -> Verdict:
    """A human label, its value checked (and, for text such as "pass" or "3", parsed) against
    ``value_type``. Raises :class:`LabelError`."""
    vt = ValueType.of(value_type)
    try:
        parsed = vt.parse(value)
    except LabelError as exc:
        raise LabelError(f"label for trace {trace_id!r} ({name!r}): {exc}") from None
    label = Verdict(name=name, value=parsed, rationale=rationale.strip(), source=VerdictSource.HUMAN,
                    source_id=labeler, trace_id=trace_id, gating=False,
                    created_at=time.time() if created_at is None else created_at)
    return validate_label(label, vt)


def save_labels(store: Store, labels: Sequence[Verdict], *, value_type: ValueTypeLike = None,
                replace: bool = False) -> int:
    """Store labels all-or-nothing; returns how many were new or changed."""
    vt = None if value_type is None else ValueType.of(value_type)
    return store.write_labels(labels, replace=replace, value_type=vt)


def format_value(value: Any) -> str:
    """A label value as text that :meth:`ValueType.parse` reads back to the same value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


# ----------------------------------------------------------------------------- the labeling queue


@dataclass
class QueueItem:
    """A trace waiting for (or holding) labels for one judge, with what a labeler needs to pick it."""

    trace_id: str
    position: int  # in the queue's own order (before unlabeled traces are moved to the front)
    scenario_id: str | None
    trial: int
    status: str
    verdict: Verdict | None  # the judge's latest verdict of the same name
    labels: list[Verdict] = field(default_factory=list)
    mine: Verdict | None = None  # the current labeler's label, when the labeler is known
    done: bool = False  # labeled by this labeler (by anyone, when no labeler is known)


def _queue_ids(store: Store, run_id: str | None, queue: Sequence[str] | None) -> list[str]:
    if queue is not None:
        ids = list(dict.fromkeys(str(t) for t in queue))
        known = {tr.trace_id for tr in store.get_traces(ids, spans=False)}
        missing = [t for t in ids if t not in known]
        if missing:
            raise UnknownTraceError(f"the queue names {len(missing)} trace(s) the store does not hold "
                                    f"(first: {missing[0]!r}); check the ids or import those traces")
        return ids
    if run_id is not None:
        return store.trace_ids(store.resolve_run_id(run_id))
    return store.trace_ids()


TraceFacts = tuple[str | None, int, str]  # scenario id, trial, agent status


def label_queue(store: Store, name: str, *, run_id: str | None = None, queue: Sequence[str] | None = None,
                labeler: str | None = None,
                facts_cache: MutableMapping[str, TraceFacts] | None = None) -> list[QueueItem]:
    """The traces to label for judge ``name``: those of ``queue`` (in that order), else of run
    ``run_id``, else every stored trace; the ones not yet labeled (by ``labeler`` when given,
    by anyone otherwise) first, each group keeping the queue's order.

    ``facts_cache`` lets a long-lived caller (the web app) keep each trace's scenario, trial and
    status between calls: loading them is most of the cost for a queue of thousands.
    """
    ids = _queue_ids(store, run_id, queue)
    heads: MutableMapping[str, TraceFacts] = facts_cache if facts_cache is not None else {}
    unseen = [t for t in ids if t not in heads]
    for t in trace_heads(store, unseen):
        heads[t.trace_id] = (t.scenario_id, t.trial, t.status.value)
    verdicts = {v.trace_id: v for v in store.verdicts(trace_ids=ids) if v.name == name}
    by_trace: dict[str, list[Verdict]] = {}
    for lab in store.labels(name=name, trace_ids=ids):
        by_trace.setdefault(str(lab.trace_id), []).append(lab)
    who = labeler.strip() if labeler else None
    items = []
    for position, tid in enumerate(ids):
        facts = heads.get(tid)
        if facts is None:  # deleted meanwhile
            continue
        labs = by_trace.get(tid, [])
        mine = next((x for x in labs if x.source_id == who), None) if who else None
        items.append(QueueItem(trace_id=tid, position=position, scenario_id=facts[0], trial=facts[1],
                               status=facts[2], verdict=verdicts.get(tid), labels=labs, mine=mine,
                               done=mine is not None if who else bool(labs)))
    return [i for i in items if not i.done] + [i for i in items if i.done]


def trace_heads(store: Store, ids: Sequence[str], batch: int = 500) -> Iterator[Trace]:
    """The heads (no spans) of the traces ``ids``, read in batches: a trace head carries the agent's
    whole input and output, so batches keep memory bounded."""
    for i in range(0, len(ids), batch):
        yield from store.get_traces(ids[i:i + batch], spans=False)


