"""Agreement measured on the store: a judge's verdicts against the human labels of the same name,
two labelers against each other, or two judges (two verdict names, or two versions of one judge).

The statistics are :mod:`costar.align.agreement_stats`'s; this module decides which values meet, and
accounts for every trace that could not be compared:

* The judge side is the newest verdict per trace among judges still configured (what reports
  show) or, given a fingerprint, the newest verdict that judge version wrote, retired or not:
  comparing an old version with the current one is what the verdict history is kept for.
* A judge error is neither a pass nor a fail. It is excluded and counted, as is a verdict that
  carries nothing comparable (a metric without pass/fail, against pass/fail labels).
* The human side is a golden set split's reference labels, one labeler's labels, or the
  labelers' majority. Where the labelers split evenly there is no reference: the trace is
  counted as tied rather than failing the whole measurement, as a golden set build does.
* Pass/fail labels are compared with a verdict's ``passed``, the gating decision (a negated
  check or a thresholded score sets it, and its ``value`` can say something else); other labels
  with its ``value``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from costar.align.agreement_results import AgreementError, BinaryAgreement, CategoricalAgreement, NoOverlapError
from costar.align.agreement_stats import DEFAULT_RESAMPLES, DEFAULT_SEED, binary_agreement, categorical_agreement
from costar.labels import SPLITS, GoldenSet, LabelValue, Split
from costar.store.base import Store
from costar.verdict import Verdict

__all__ = [
    "Compare",
    "FingerprintError",
    "NoLabelsError",
    "Scope",
    "SplitChoice",
    "StoreAgreement",
    "StoreCoverage",
    "golden_scope",
    "judge_agreement",
    "judge_decision",
    "judges_agreement",
    "labeler_agreement",
    "resolve_fingerprint",
]

SplitChoice: TypeAlias = Split | Literal["all"]
Compare: TypeAlias = Literal["auto", "passed", "value"]
AgreementResult: TypeAlias = BinaryAgreement | CategoricalAgreement

_SHOWN = 5  # trace ids kept per exclusion reason, enough to go and look


class NoLabelsError(AgreementError):
    """The judge (or labeler) has no human labels to compare with."""


class FingerprintError(AgreementError):
    """A fingerprint names no judge version, or more than one."""


class StoreCoverage(BaseModel):
    """Which traces were compared, and why each of the others was not.

    ``reference`` counts traces with a usable value on the reference side (side a); each one is
    compared or lands in exactly one of ``no_verdict``, ``errors`` and ``no_value``.
    """

    model_config = ConfigDict(extra="forbid")

    reference: int
    compared: int
    no_verdict: int = Field(0, description="reference traces the other side says nothing about")
    errors: int = Field(0, description="reference traces where the other side's judge failed (excluded)")
    no_value: int = Field(0, description="reference traces where the other side's verdict has nothing comparable")
    tied: int = Field(0, description="traces whose labelers split evenly, so there is no reference")
    reference_errors: int = Field(0, description="traces where the reference judge failed (excluded)")
    reference_no_value: int = 0
    only_compared: int = Field(0, description="traces with a value on the other side only")
    examples: dict[str, list[str]] = Field(default_factory=dict)

    def format(self) -> str:
        parts = [f"{self.compared} of {self.reference} compared"]
        for count, what in ((self.no_verdict, "without a verdict"), (self.errors, "judge errors excluded"),
                            (self.no_value, "with no comparable value"), (self.tied, "tied labelers"),
                            (self.reference_errors, "reference judge errors"),
                            (self.reference_no_value, "reference with no comparable value"),
                            (self.only_compared, "only on the compared side")):
            if count:
                parts.append(f"{count} {what}")
        return ", ".join(parts)


class StoreAgreement(BaseModel):
    """Agreement of side b (``compared``) with the reference side a, and the coverage behind it."""

    model_config = ConfigDict(extra="forbid")

    name: str
    reference: str
    compared: str
    reference_kind: Literal["human", "judge"] = "human"
    """Who the reference side (a, the confusion matrix's rows) is."""
    compared_kind: Literal["human", "judge"] = "judge"
    """Who the compared side (b, the columns) is."""
    scope: str
    on: Literal["passed", "value"]
    result: AgreementResult = Field(discriminator="kind")
    coverage: StoreCoverage
    notes: list[str] = Field(default_factory=list)
    _pairs: tuple[dict[str, LabelValue], dict[str, LabelValue]] = PrivateAttr(default_factory=lambda: ({}, {}))

    def pairs(self) -> tuple[dict[str, LabelValue], dict[str, LabelValue]]:
        """The compared values, trace id -> label, reference side first (for other statistics)."""
        return self._pairs

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def format(self) -> str:
        head = [f"{self.compared} vs {self.reference} ({self.scope})",
                f"  coverage: {self.coverage.format()}"]
        for reason, ids in self.coverage.examples.items():
            head.append(f"  {reason}: " + ", ".join(ids))
        return "\n".join([*head, self.result.format(a=f"{self.reference_kind}, {self.reference}",
                                                   b=f"{self.compared_kind}, {self.compared}"),
                          *(f"  note: {n}" for n in self.notes)])


# ----------------------------------------------------------------------------- sides


@dataclass
class _Side:
    values: dict[str, LabelValue]
    excluded: dict[str, str] = field(default_factory=dict)  # trace id -> "error" | "no_value" | "tied"

    def covers(self, trace_id: str) -> bool:
        return trace_id in self.values or trace_id in self.excluded


def judge_decision(verdict: Verdict, on: Literal["passed", "value"]) -> LabelValue | None:
    """What a verdict contributes to a comparison; None for an error or nothing comparable."""
    if verdict.error is not None:
        return None
    if on == "passed":
        if verdict.passed is not None:
            return verdict.passed
        return verdict.value if isinstance(verdict.value, bool) else None
    if verdict.value is not None:
        return verdict.value
    return verdict.passed


def _judge_side(verdicts: Mapping[str, Verdict], on: Literal["passed", "value"]) -> _Side:
    side = _Side({})
    for tid, v in verdicts.items():
        value = judge_decision(v, on)
        if value is not None:
            side.values[tid] = value
        else:
            side.excluded[tid] = "error" if v.error is not None else "no_value"
    return side


def _label_key(value: LabelValue) -> tuple[str, LabelValue]:
    # True and 1 are equal in Python; as labels they must stay apart.
    return type(value).__name__, value


def _human_side(labels: Sequence[Verdict]) -> _Side:
    """One labeler's labels as they are; several labelers' by majority, ties excluded."""
    votes: dict[str, Counter[tuple[str, LabelValue]]] = {}
    for lab in labels:
        if lab.value is not None:
            votes.setdefault(str(lab.trace_id), Counter())[_label_key(lab.value)] += 1
    side = _Side({})
    for tid, tally in votes.items():
        ranked = tally.most_common(2)
        if len(ranked) > 1 and ranked[0][1] == ranked[1][1]:
            side.excluded[tid] = "tied"
        else:
            side.values[tid] = ranked[0][0][1]
    return side


def _restrict(side: _Side, ids: set[str]) -> _Side:
    return _Side({t: v for t, v in side.values.items() if t in ids},
                 {t: r for t, r in side.excluded.items() if t in ids})


@dataclass
class Scope:
    """The traces a measurement looks at (None: all), how to describe them, and the golden set
    they come from, if any."""

    trace_ids: list[str] | None
    text: str
    golden: GoldenSet | None = None


def golden_scope(store: Store, golden: str, version: int | None, split: SplitChoice) -> Scope:
    """The traces of a golden set's split (``"all"``: every split); an empty split is an error."""
    if split != "all" and split not in SPLITS:
        raise AgreementError(f"unknown split {split!r}; use one of {', '.join(SPLITS)} or 'all'")
    gs = store.golden_set(golden, version)
    which: Split | None = None if split == "all" else split
    ids = gs.trace_ids(which)
    where = f"golden set {gs.name} v{gs.version}" + ("" if which is None else f", {which} split")
    if not ids:
        raise AgreementError(f"{where} has no examples; use another split (split='all' for every example) "
                             "or add examples to the set")
    return Scope(ids, where, gs)


def _scope(store: Store, *, golden: str | None, version: int | None, split: SplitChoice,
           run_id: str | None) -> Scope:
    base = golden_scope(store, golden, version, split) if golden is not None else Scope(None, "all traces")
    if run_id is None:
        return base
    run = store.resolve_run_id(run_id)
    in_run = store.trace_ids(run)
    if base.trace_ids is None:
        return Scope(in_run, f"run {run}")
    members = set(in_run)
    return Scope([t for t in base.trace_ids if t in members], f"{base.text}, run {run}", base.golden)


def _pair(a: _Side, b: _Side) -> tuple[StoreCoverage, dict[str, LabelValue], dict[str, LabelValue]]:
    left: dict[str, LabelValue] = {}
    right: dict[str, LabelValue] = {}
    missed: dict[str, list[str]] = {}
    for tid, value in a.values.items():
        if tid in b.values:
            left[tid], right[tid] = value, b.values[tid]
        else:
            missed.setdefault(b.excluded.get(tid, "no_verdict"), []).append(tid)
    ref_excluded = Counter(a.excluded.values())
    coverage = StoreCoverage(
        reference=len(a.values), compared=len(left),
        no_verdict=len(missed.get("no_verdict", [])), errors=len(missed.get("error", [])),
        no_value=len(missed.get("no_value", [])), tied=ref_excluded["tied"],
        reference_errors=ref_excluded["error"], reference_no_value=ref_excluded["no_value"],
        only_compared=sum(1 for t in b.values if not a.covers(t)),
        examples={_REASONS[r]: sorted(ids)[:_SHOWN] for r, ids in sorted(missed.items())})
    return coverage, left, right


_REASONS = {"no_verdict": "without a verdict", "error": "judge errors", "no_value": "no comparable value"}


def _measure(a: Mapping[str, LabelValue], b: Mapping[str, LabelValue], *, labels: Sequence[LabelValue] | None,
             confidence: float, resamples: int, seed: int | None) -> AgreementResult:
    if all(isinstance(x, bool) for x in (*a.values(), *b.values())):
        return binary_agreement(a, b, True, confidence=confidence, resamples=resamples, seed=seed)
    return categorical_agreement(a, b, labels=labels, confidence=confidence, resamples=resamples, seed=seed)


# ----------------------------------------------------------------------------- verdict history


def _short(fingerprint: str | None) -> str:
    return "none" if fingerprint is None else fingerprint[:8]


def resolve_fingerprint(name: str, given: str, known: Sequence[str | None]) -> str:
    """The full fingerprint ``given`` (or a unique prefix of it) names among ``known``."""
    distinct = sorted({fp for fp in known if fp is not None})
    if given in distinct:
        return given
    matches = [fp for fp in distinct if fp.startswith(given)]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise FingerprintError(f"fingerprint {given!r} matches {len(matches)} versions of judge {name!r} "
                               f"({', '.join(_short(m) for m in matches[:_SHOWN])}); give more of it")
    shown = ", ".join(_short(fp) for fp in distinct[:_SHOWN]) or "none"
    raise FingerprintError(f"judge {name!r} has no verdicts with fingerprint {given!r} here (its fingerprints: "
                           f"{shown}); check the fingerprint or the traces")


def _verdicts(store: Store, name: str, scope: Scope, fingerprint: str | None) -> dict[str, Verdict]:
    """trace id -> the verdict of ``name`` to compare: the current one, or the newest by ``fingerprint``."""
    if scope.trace_ids is not None and not scope.trace_ids:
        return {}
    if fingerprint is None:
        current = store.verdicts(trace_ids=scope.trace_ids, latest=True)
        return {str(v.trace_id): v for v in current if v.name == name}
    history = [v for v in store.verdicts(trace_ids=scope.trace_ids, latest=False) if v.name == name]
    fp = resolve_fingerprint(name, fingerprint, [v.fingerprint for v in history])
    # History comes oldest first, so the newest verdict of that version on a trace wins.
    return {str(v.trace_id): v for v in history if v.fingerprint == fp}


def _describe_judge(name: str, verdicts: Mapping[str, Verdict]) -> str:
    fps = _fingerprints(verdicts)
    if len(fps) == 1:
        return f"judge {name!r} (fp {_short(next(iter(fps)))})"
    return f"judge {name!r} (latest verdicts of {len(fps)} versions)" if fps else f"judge {name!r}"


def _all_bool(values: Mapping[str, LabelValue]) -> bool:
    return bool(values) and all(isinstance(x, bool) for x in values.values())


def _on_for_labels(reference: _Side, compare: Compare) -> Literal["passed", "value"]:
    if compare != "auto":
        return compare
    return "passed" if _all_bool(reference.values) else "value"


# ----------------------------------------------------------------------------- public API


def judge_agreement(store: Store, name: str, *, golden: str | None = None, version: int | None = None,
                    split: SplitChoice = "test", labeler: str | None = None, fingerprint: str | None = None,
                    run_id: str | None = None, compare: Compare = "auto", labels: Sequence[LabelValue] | None = None,
                    confidence: float = 0.95, resamples: int = DEFAULT_RESAMPLES,
                    seed: int | None = DEFAULT_SEED) -> StoreAgreement:
    """Agreement of judge ``name``'s verdicts with the human labels of the same name.

    The reference is golden set ``golden`` (``version``, default latest; ``split``, default the
    held-out test split, ``"all"`` for every split), or else every trace labeled for ``name``
    (``labeler``'s labels, or the labelers' majority). ``fingerprint`` (a unique prefix will do)
    picks one judge version; ``run_id`` keeps only that run's traces. A golden set made for another
    judge name is allowed (a renamed or candidate judge measuring the same thing) and noted.

    Binary statistics (TPR, TNR, kappa, …) when both sides are pass/fail, categorical otherwise.
    Raises :class:`NoLabelsError` without labels, ``NoOverlapError`` when no labeled trace has a
    usable verdict, ``GoldenSetError`` for an unknown golden set.
    """
    if golden is not None and labeler is not None:
        raise AgreementError("give a golden set or a labeler, not both: a golden set already fixes its labels")
    scope = _scope(store, golden=golden, version=version, split=split, run_id=run_id)
    notes: list[str] = []
    if scope.golden is not None:
        ref = _Side(dict(scope.golden.labels()))
        reference = f"golden set {scope.golden.name} v{scope.golden.version} labels"
        if scope.golden.judge_name != name:
            notes.append(f"golden set {scope.golden.name!r} was made for judge {scope.golden.judge_name!r}; "
                         f"its labels are used for {name!r}")
    else:
        found = store.labels(name=name, labeler=labeler)
        if not found:
            who = f" from {labeler!r}" if labeler else ""
            raise NoLabelsError(f"judge {name!r} has no human labels{who} in {store.root}; "
                                f"label some traces first: costar label {name}")
        ref = _human_side(found)
        reference = f"labels by {labeler!r}" if labeler else _labelers_text(found)
    if scope.trace_ids is not None:
        ref = _restrict(ref, set(scope.trace_ids))
    if not ref.values and not ref.excluded:
        raise NoOverlapError(f"none of the traces labeled for {name!r} is in {scope.text}; "
                             "label traces of that run or widen the scope")
    ids = sorted(set(ref.values) | set(ref.excluded))
    verdicts = _verdicts(store, name, Scope(ids, scope.text), fingerprint)
    on = _on_for_labels(ref, compare)
    side = _judge_side(verdicts, on)
    coverage, a, b = _pair(ref, side)
    if not a:
        raise NoOverlapError(
            f"none of the {coverage.reference} labeled traces in {scope.text} has a usable verdict from "
            f"{name!r} ({coverage.no_verdict} without a verdict, {coverage.errors} judge errors, "
            f"{coverage.no_value} with no comparable value); score them first: costar assess RUN")
    result = _measure(a, b, labels=labels, confidence=confidence, resamples=resamples, seed=seed)
    out = StoreAgreement(name=name, reference=reference, compared=_describe_judge(name, verdicts),
                         scope=scope.text, on=on, result=result, coverage=coverage, notes=notes)
    out._pairs = (a, b)
    return out


def _labelers_text(labels: Sequence[Verdict]) -> str:
    who = sorted({str(lab.source_id) for lab in labels})
    return f"labels by {who[0]!r}" if len(who) == 1 else f"majority of {len(who)} labelers"


def labeler_agreement(store: Store, name: str, labeler_a: str, labeler_b: str, *, golden: str | None = None,
                      version: int | None = None, split: SplitChoice = "all", run_id: str | None = None,
                      labels: Sequence[LabelValue] | None = None, confidence: float = 0.95,
                      resamples: int = DEFAULT_RESAMPLES, seed: int | None = DEFAULT_SEED) -> StoreAgreement:
    """Agreement between two labelers' labels for judge ``name`` (``labeler_b`` against ``labeler_a``),
    on the traces both labeled; optionally only a golden set's traces (every split by default:
    humans were not tuned on any of them) or a run's."""
    scope = _scope(store, golden=golden, version=version, split=split, run_id=run_id)
    sides = []
    for who in (labeler_a, labeler_b):
        found = store.labels(name=name, labeler=who, trace_ids=scope.trace_ids)
        if not found:
            raise NoLabelsError(f"{who!r} has no labels for judge {name!r} in {scope.text}; "
                                f"label some traces first: costar label {name} --labeler {who}")
        sides.append(_human_side(found))
    coverage, a, b = _pair(sides[0], sides[1])
    if not a:
        raise NoOverlapError(f"{labeler_a!r} and {labeler_b!r} labeled no trace in common for {name!r} in "
                             f"{scope.text}; have both label the same traces (costar label {name} --queue FILE)")
    result = _measure(a, b, labels=labels, confidence=confidence, resamples=resamples, seed=seed)
    out = StoreAgreement(name=name, reference=f"labeler {labeler_a!r}", compared=f"labeler {labeler_b!r}",
                         compared_kind="human", scope=scope.text, on="value", result=result, coverage=coverage)
    out._pairs = (a, b)
    return out


def judges_agreement(store: Store, name_a: str, name_b: str | None = None, *, fingerprint_a: str | None = None,
                     fingerprint_b: str | None = None, golden: str | None = None, version: int | None = None,
                     split: SplitChoice = "test", run_id: str | None = None, compare: Compare = "auto",
                     labels: Sequence[LabelValue] | None = None, confidence: float = 0.95,
                     resamples: int = DEFAULT_RESAMPLES, seed: int | None = DEFAULT_SEED) -> StoreAgreement:
    """Agreement between two judges (``name_b`` against ``name_a``), or between two versions of one
    judge (``name_b`` omitted, ``fingerprint_a`` and ``fingerprint_b`` given), on the traces both
    judged: every trace, a run's, or a golden set split's.

    ``compare="auto"`` compares values when both judges give pass/fail values, else their
    ``passed`` decisions when both always make one, else values.
    """
    if name_b is None:
        if fingerprint_a is None or fingerprint_b is None:
            raise AgreementError(f"to compare two versions of judge {name_a!r} give both fingerprints "
                                 "(fingerprint_a and fingerprint_b); to compare two judges give two names")
        name_b = name_a
    scope = _scope(store, golden=golden, version=version, split=split, run_id=run_id)
    va = _verdicts(store, name_a, scope, fingerprint_a)
    vb = _verdicts(store, name_b, scope, fingerprint_b)
    if name_a == name_b and va and vb and _fingerprints(va) == _fingerprints(vb):
        raise AgreementError(f"both sides are the same version of judge {name_a!r}; give two different "
                             "fingerprints")
    for name, found in ((name_a, va), (name_b, vb)):
        if not found:
            raise NoOverlapError(f"judge {name!r} has no verdicts in {scope.text}; score the traces first: "
                                 "costar assess RUN")
    on = _on_for_judges(va, vb) if compare == "auto" else compare
    coverage, a, b = _pair(_judge_side(va, on), _judge_side(vb, on))
    if not a:
        raise NoOverlapError(f"judges {name_a!r} and {name_b!r} have no usable verdicts on the same trace in "
                             f"{scope.text} ({coverage.errors} errors, {coverage.no_verdict} not judged by both)")
    result = _measure(a, b, labels=labels, confidence=confidence, resamples=resamples, seed=seed)
    out = StoreAgreement(name=name_a if name_a == name_b else f"{name_a} vs {name_b}",
                         reference=_describe_judge(name_a, va), reference_kind="judge",
                         compared=_describe_judge(name_b, vb), scope=scope.text, on=on,
                         result=result, coverage=coverage)
    out._pairs = (a, b)
    return out


def _fingerprints(verdicts: Mapping[str, Verdict]) -> set[str]:
    return {v.fingerprint for v in verdicts.values() if v.fingerprint is not None}


def _on_for_judges(va: Mapping[str, Verdict], vb: Mapping[str, Verdict]) -> Literal["passed", "value"]:
    ok_a = [v for v in va.values() if v.error is None]
    ok_b = [v for v in vb.values() if v.error is None]
    if all(isinstance(v.value, bool) for v in (*ok_a, *ok_b)):
        return "value"
    if all(v.passed is not None for v in (*ok_a, *ok_b)):
        return "passed"
    return "value"
