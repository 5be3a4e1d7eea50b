"""Active learning: which unlabeled traces a human should label next for a judge.

A label teaches the most where the judge is unsure, so traces are ranked by four signals of
judge uncertainty, each scaled to [0, 1]:

* ``consistency`` — the judge's self-consistency samples disagree. For pass/fail, the binary
  entropy of the share of samples that passed (1 at a 50/50 split, 0.92 at 2/1): unlike
  ``1 - confidence``, which cannot exceed 0.5 for two classes, it spans the whole scale. For
  other values, ``1 - confidence``.
* ``versions`` — judge versions (fingerprints in the verdict history) decided the trace
  differently: the share of version pairs that disagree (1 for two that differ).
* ``judges`` — judges the caller says measure the same thing decided it differently: the share of
  judge pairs that disagree, on their pass/fail decisions.
* ``threshold`` — a numeric score close to the pass threshold: ``1 - |score - threshold| / margin``,
  floored at 0.

The score is the weighted sum (weights below, all 1 except ``threshold`` at 0.5), so a trace with
several kinds of evidence outranks one with a single kind. Closeness to a threshold weighs half:
a score near the line can still be a confident, correct call, whereas split samples, flipped
versions and judges at odds are direct evidence of doubt. Ties break on the number of signals,
then on trace id, so the same store always gives the same queue.

Judge errors carry no information about the trace and are ignored. The ranking is for finding
the judge's weak spots: a golden set filled only from it over-represents hard traces, so measure
agreement and corrected rates on a random sample (a golden set's test split), not on this queue.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from costar.errors import CostarError
from costar.store.base import Store
from costar.verdict import Verdict

__all__ = [
    "ActiveLearningError",
    "Candidate",
    "Weights",
    "format_candidates",
    "queue_file",
    "rank_for_labeling",
]

Decision = bool | str


class ActiveLearningError(CostarError, ValueError):
    """The ranking cannot be made as asked; the message names the fix."""


class Weights(BaseModel):
    """How much each uncertainty signal (each in [0, 1]) adds to a trace's score."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    consistency: float = Field(1.0, ge=0)
    versions: float = Field(1.0, ge=0)
    judges: float = Field(1.0, ge=0)
    threshold: float = Field(0.5, ge=0)

    @model_validator(mode="after")
    def _some(self) -> Weights:
        if not any((self.consistency, self.versions, self.judges, self.threshold)):
            raise ValueError("at least one weight must be positive")
        return self


class Candidate(BaseModel):
    """An unlabeled trace, its uncertainty score, the signals behind it and why, in words."""

    model_config = ConfigDict(extra="forbid")

    trace_id: str
    score: float
    signals: dict[str, float] = Field(default_factory=dict)  # signal -> uncertainty before weighting
    reasons: list[str] = Field(default_factory=list)
    scenario_id: str | None = None
    """The scenario the trace ran (with ``trial``), so a reader knows what a trace is about."""
    trial: int | None = None

    @property
    def reason(self) -> str:
        return "; ".join(self.reasons)


# ----------------------------------------------------------------------------- signals


def binary_entropy(p: float) -> float:
    """Entropy in bits of a pass/fail split with pass share ``p``: 0 when unanimous, 1 at 50/50."""
    if p <= 0 or p >= 1:
        return 0.0
    return -(p * math.log2(p) + (1 - p) * math.log2(1 - p))


def _show(value: object) -> str:
    if isinstance(value, bool):
        return "pass" if value else "fail"
    return f"{value:g}" if isinstance(value, float) else str(value)


def _consistency(v: Verdict) -> tuple[float, str] | None:
    raw = v.metadata.get("samples")
    samples = [s for s in raw if s is not None] if isinstance(raw, list) else []
    failed = len(raw) - len(samples) if isinstance(raw, list) else 0
    asked = f" ({failed} failed)" if failed else ""
    if isinstance(v.value, bool):
        if isinstance(raw, list):
            # The votes themselves, not the confidence: a failed sample is no vote either way.
            bools = [s for s in samples if isinstance(s, bool)]
            passed = sum(bools)
            u = binary_entropy(passed / len(bools)) if len(bools) >= 2 else 0.0
            split = f"{max(passed, len(bools) - passed)}/{min(passed, len(bools) - passed)}"
            return (u, f"{len(bools)} samples split {split}{asked}") if u > 0 else None
        if v.confidence is not None and v.confidence < 1:
            return binary_entropy(v.confidence), f"self-consistency {v.confidence:.2f}"
        return None
    if v.confidence is None or v.confidence >= 1:
        return None
    if samples and all(isinstance(s, str) for s in samples):
        counts = "/".join(str(c) for _, c in Counter(samples).most_common())
        return 1 - v.confidence, f"{len(samples)} samples split {counts}{asked}"
    if samples:
        return 1 - v.confidence, (f"{len(samples)} samples, {v.confidence:.0%} agree with "
                                  f"{_show(v.value)}: {', '.join(_show(s) for s in samples)}")
    return 1 - v.confidence, f"self-consistency {v.confidence:.2f}"


def _pairwise_disagreement(decisions: Sequence[Decision]) -> float:
    """Share of pairs that differ: 1 for two different, 2/3 for a 2/1 split."""
    m = len(decisions)
    if m < 2:
        return 0.0
    same = sum(c * (c - 1) for c in Counter((type(d).__name__, d) for d in decisions).values())
    return 1 - same / (m * (m - 1))


def decision(v: Verdict, threshold: float | None = None) -> Decision | None:
    """A verdict's discrete call: pass/fail when it makes one (or its score against ``threshold``),
    else its label; None for errors and for scores that decide nothing."""
    if v.error is not None:
        return None
    if v.passed is not None:
        return v.passed
    if isinstance(v.value, bool | str):
        return v.value
    if threshold is not None and isinstance(v.value, int | float):
        return v.value >= threshold
    return None


def _groups(calls: Iterable[tuple[str, Decision]], first: Decision | None) -> str:
    """ "pass (a, b) vs fail (c)", the current decision's group first."""
    by: dict[tuple[str, Decision], list[str]] = {}
    for who, d in calls:
        by.setdefault((type(d).__name__, d), []).append(who)
    order = sorted(by, key=lambda k: (first is None or k != (type(first).__name__, first), str(k[1])))
    return " vs ".join(f"{_show(k[1])} ({', '.join(by[k])})" for k in order)


def _versions(history: Sequence[Verdict], current: Verdict | None,
              threshold: float | None) -> tuple[float, str] | None:
    newest: dict[str | None, Verdict] = {}
    for v in history:  # oldest first, so the newest verdict of each version wins
        if v.error is None:
            newest[v.fingerprint] = v
    calls = [(fp, d) for fp, v in newest.items() if (d := decision(v, threshold)) is not None]
    u = _pairwise_disagreement([d for _, d in calls])
    if u == 0:
        return None
    shown = [(f"fp {'none' if fp is None else fp[:8]}", d) for fp, d in calls]
    first = decision(current, threshold) if current is not None else None
    return u, "versions disagree: " + _groups(shown, first)


def _judges(name: str, current: dict[str, Verdict], threshold: float | None) -> tuple[float, str] | None:
    calls = [(n, d) for n, v in current.items()
             if (d := decision(v, threshold if n == name else None)) is not None]
    u = _pairwise_disagreement([d for _, d in calls])
    if u == 0:
        return None
    main = current.get(name)
    return u, "judges disagree: " + _groups(calls, decision(main, threshold) if main is not None else None)


def _closeness(v: Verdict, threshold: float, margin: float | None) -> tuple[float, str] | None:
    value = v.value
    if v.error is not None or isinstance(value, bool) or not isinstance(value, int | float):
        return None
    distance = abs(value - threshold)
    u = (1.0 if distance == 0 else 0.0) if not margin else max(0.0, 1 - distance / margin)
    if u == 0:
        return None
    return u, f"score {_show(value)} is {distance:g} from the pass threshold {threshold:g}"


def _default_margin(scores: Sequence[float]) -> float | None:
    # A tenth of the observed spread, the same scale LLM judges use for "samples agree".
    spread = max(scores) - min(scores) if scores else 0.0
    return 0.1 * spread if spread > 0 else None


# ----------------------------------------------------------------------------- ranking


@dataclass
class _TraceVerdicts:
    current: dict[str, Verdict]  # verdict name -> latest non-retired verdict
    history: list[Verdict]  # every verdict of the judge's own name, oldest first


def _collect(store: Store, name: str, names: set[str], run_id: str | None) -> dict[str, _TraceVerdicts]:
    out: dict[str, _TraceVerdicts] = {}
    for v in store.verdicts(run_id=run_id, latest=True):
        if v.name in names:
            out.setdefault(str(v.trace_id), _TraceVerdicts({}, [])).current[v.name] = v
    for v in store.verdicts(run_id=run_id, latest=False):
        if v.name == name and str(v.trace_id) in out:
            out[str(v.trace_id)].history.append(v)
    return out


def rank_for_labeling(store: Store, name: str, *, k: int = 20, run_id: str | None = None,
                      labeler: str | None = None, related: Sequence[str] = (), threshold: float | None = None,
                      margin: float | None = None, weights: Weights | None = None) -> list[Candidate]:
    """The ``k`` unlabeled traces where judge ``name`` is least sure, most uncertain first.

    Traces already labeled for ``name`` are left out (labeled by ``labeler`` when given, by anyone
    otherwise); ``run_id`` keeps one run's traces. ``related`` names other judges (verdict names)
    that measure the same thing. ``threshold`` is the judge's pass threshold for numeric scores
    and ``margin`` the distance from it at which closeness stops counting (default: a tenth of the
    spread of the judge's scores). Only traces with some uncertainty are returned, so the list
    can be shorter than ``k``; see the module text for the score.
    """
    if k < 1:
        raise ActiveLearningError(f"k is {k}; ask for at least one trace")
    if margin is not None and margin <= 0:
        raise ActiveLearningError(f"margin is {margin:g}; give a positive distance from the threshold")
    w = weights or Weights()
    run = store.resolve_run_id(run_id) if run_id is not None else None
    names = {name, *related}
    by_trace = _collect(store, name, names, run)
    if not any(name in tv.current for tv in by_trace.values()):
        where = f" in run {run}" if run else ""
        raise ActiveLearningError(f"judge {name!r} has no verdicts{where}; score traces first: costar assess RUN")
    done = {str(lab.trace_id) for lab in store.labels(name=name, labeler=labeler)}
    scores = [float(v.value) for tv in by_trace.values() if (v := tv.current.get(name)) is not None
              and v.error is None and isinstance(v.value, int | float) and not isinstance(v.value, bool)]
    margin = margin if margin is not None else _default_margin(scores)
    out = []
    for tid, tv in by_trace.items():
        if tid in done:
            continue
        candidate = _score(tid, name, tv, w, threshold, margin)
        if candidate is not None:
            out.append(candidate)
    out.sort(key=lambda c: (-c.score, -len(c.signals), c.trace_id))
    chosen = out[:k]
    heads = {t.trace_id: t for t in store.get_traces([c.trace_id for c in chosen], spans=False)}
    for c in chosen:
        if c.trace_id in heads:
            c.scenario_id, c.trial = heads[c.trace_id].scenario_id, heads[c.trace_id].trial
    return chosen


def _score(tid: str, name: str, tv: _TraceVerdicts, w: Weights, threshold: float | None,
           margin: float | None) -> Candidate | None:
    main = tv.current.get(name)
    found: dict[str, tuple[float, str]] = {}
    if main is not None and main.error is None:
        if (c := _consistency(main)) is not None:
            found["consistency"] = c
        if threshold is not None and (t := _closeness(main, threshold, margin)) is not None:
            found["threshold"] = t
    if (ver := _versions(tv.history, main, threshold)) is not None:
        found["versions"] = ver
    if len(tv.current) > 1 and (j := _judges(name, tv.current, threshold)) is not None:
        found["judges"] = j
    weighted = {s: getattr(w, s) for s in found if getattr(w, s) > 0}
    if not weighted:
        return None
    order = ("consistency", "versions", "judges", "threshold")
    signals = {s: round(found[s][0], 6) for s in order if s in weighted}
    score = sum(weighted[s] * found[s][0] for s in signals)
    return Candidate(trace_id=tid, score=round(score, 6), signals=signals, reasons=[found[s][1] for s in signals])


# ----------------------------------------------------------------------------- output


def queue_file(candidates: Sequence[Candidate], path: str | Path) -> Path:
    """Write the trace ids, one per line in rank order: the file ``costar label --queue FILE`` reads."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(f"{c.trace_id}\n" for c in candidates), encoding="utf-8")
    return out


def format_candidates(candidates: Sequence[Candidate]) -> str:
    """One line per trace: rank, score, trace id, scenario and trial, reasons."""
    if not candidates:
        return "no unlabeled trace shows judge uncertainty"
    width = max(len(c.trace_id) for c in candidates)
    where = [f"{c.scenario_id}[{c.trial}]" if c.scenario_id is not None else "" for c in candidates]
    place = max(len(w) for w in where)
    return "\n".join(f"{i:>3}. {c.score:5.2f}  {c.trace_id:<{width}}  {w:<{place}}  {c.reason}".rstrip()
                     for i, (c, w) in enumerate(zip(candidates, where, strict=True), 1))
