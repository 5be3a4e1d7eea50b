"""Agreement floors: judges gated like tests.

A judge that drifts away from the human experts makes every verdict it gives suspect, so each
judge can declare the least agreement it must keep (``agreement_floor`` in its definition) and CI
checks it the way it checks a test: a floor is met, missed, or cannot be checked — and a floor
that cannot be checked (no labels, no verdicts on the labeled traces, an undefined statistic)
fails, since an unmeasured judge has not shown it agrees with anyone.

``use_lower_bound`` gates on the interval's lower end instead of the point value: "we are 95%
sure kappa is at least 0.6" rather than "kappa came out at 0.6 on these 30 traces". The interval
is Wilson for proportions, the normal (standard-error) interval for kappas, and the percentile
bootstrap for balanced accuracy, F1 and alpha.

A floor checked on fewer traces than its statistic needs carries a warning: below
:func:`items_needed`, not even a judge that agreed on every trace could show the floor is met, so
a pass there rests on a point estimate.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from statistics import NormalDist
from typing import Any, Literal, TypeAlias

from pydantic import BaseModel, ConfigDict, Field, model_validator

from costar.align.agreement_results import BinaryAgreement, Interval, Kappa, Proportion, Statistic
from costar.align.agreement_stats import DEFAULT_RESAMPLES, DEFAULT_SEED, MIN_KAPPA_ITEMS, krippendorff_alpha
from costar.align.agreement_store import NoLabelsError, SplitChoice, StoreAgreement, judge_agreement
from costar.errors import CostarError
from costar.store.base import Store

__all__ = [
    "FloorMetric",
    "FloorResult",
    "GateReport",
    "JudgeFloor",
    "check_agreement_floors",
    "check_floor",
    "items_needed",
    "metric_value",
]

FloorMetric: TypeAlias = Literal["kappa", "kappa_linear", "kappa_quadratic", "alpha", "accuracy", "tpr", "tnr",
                                 "balanced_accuracy", "precision", "f1"]
_BINARY_ONLY = frozenset({"tpr", "tnr", "balanced_accuracy", "precision", "f1"})
_CHANCE_CORRECTED = frozenset({"kappa", "kappa_linear", "kappa_quadratic", "alpha"})
_LABELS = {"kappa": "kappa", "kappa_linear": "linear kappa", "kappa_quadratic": "quadratic kappa",
           "alpha": "Krippendorff's alpha", "accuracy": "accuracy", "tpr": "TPR", "tnr": "TNR",
           "balanced_accuracy": "balanced accuracy", "precision": "precision", "f1": "F1"}


class JudgeFloor(BaseModel):
    """The least ``metric`` judge ``name`` must reach against human labels: over golden set
    ``golden``'s ``split`` (default the held-out test split), or over every labeled trace."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    metric: FloorMetric = "kappa"
    min: float
    golden: str | None = None
    split: SplitChoice = "test"
    use_lower_bound: bool = False

    @model_validator(mode="after")
    def _in_range(self) -> JudgeFloor:
        low = -1.0 if self.metric in _CHANCE_CORRECTED else 0.0
        if not low <= self.min <= 1.0:
            raise ValueError(f"a floor on {self.metric} must be between {low:g} and 1, got {self.min:g}")
        return self

    def describe(self) -> str:
        what = f"{_LABELS[self.metric]}{' lower bound' if self.use_lower_bound else ''} >= {self.min:g}"
        where = f"golden set {self.golden} ({self.split})" if self.golden else "all labeled traces"
        return f"{self.name}: {what} on {where}"


FloorStatus: TypeAlias = Literal["pass", "fail", "no_labels", "error"]


class FloorResult(BaseModel):
    model_config = ConfigDict(extra="forbid")

    floor: JudgeFloor
    status: FloorStatus
    value: float | None = None
    ci: Interval | None = None
    compared: int = 0
    reason: str
    warnings: list[str] = Field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.status == "pass"


class GateReport(BaseModel):
    """Every floor's outcome; ``exit_code`` is 1 when any floor is missed or cannot be checked."""

    model_config = ConfigDict(extra="forbid")

    results: list[FloorResult] = Field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results)

    @property
    def exit_code(self) -> int:
        return 0 if self.passed else 1

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "exit_code": self.exit_code,
                "results": [r.model_dump(mode="json") for r in self.results]}

    def format(self) -> str:
        if not self.results:
            return "no agreement floors to check"
        marks = {"pass": "PASS", "fail": "FAIL", "no_labels": "FAIL", "error": "FAIL"}
        width = max(len(r.floor.name) for r in self.results)
        lines = []
        for r in self.results:
            lines.append(f"{marks[r.status]}  {r.floor.name:<{width}}  {r.reason}")
            lines.extend(f"      warning: {w}" for w in r.warnings)
        missed = sum(not r.passed for r in self.results)
        tail = "all agreement floors met" if not missed else f"{missed} of {len(self.results)} agreement floors missed"
        return "\n".join([*lines, tail])


# ----------------------------------------------------------------------------- metrics


def metric_value(agreement: StoreAgreement, metric: FloorMetric, *, confidence: float = 0.95,
                 resamples: int = DEFAULT_RESAMPLES,
                 seed: int | None = DEFAULT_SEED) -> tuple[float | None, Interval | None, str | None]:
    """(value, interval, why it is missing) of ``metric`` in a judge-vs-human agreement."""
    result = agreement.result
    if metric in _BINARY_ONLY and not isinstance(result, BinaryAgreement):
        return None, None, (f"{_LABELS[metric]} needs pass/fail labels, and {agreement.name!r} has "
                            f"{len(result.labels)} labels; gate on kappa or accuracy")
    if metric == "alpha":
        a, b = agreement.pairs()
        numeric = all(isinstance(x, int | float) and not isinstance(x, bool) for x in (*a.values(), *b.values()))
        alpha = krippendorff_alpha({"reference": a, "judge": b}, "interval" if numeric else "nominal",
                                   confidence=confidence, resamples=resamples, seed=seed)
        return alpha.value, alpha.ci_bootstrap, "; ".join(alpha.notes) or None
    if metric in ("kappa_linear", "kappa_quadratic") and isinstance(result, BinaryAgreement):
        metric = "kappa"  # with two categories every weighting gives the same kappa
    stat: Any = getattr(result, metric, None)
    if stat is None and metric in ("kappa_linear", "kappa_quadratic"):
        return None, None, "weighted kappas need ordered labels (numbers); gate on kappa"
    if isinstance(stat, Kappa):
        return stat.value, stat.ci, "; ".join(result.notes) or None
    if isinstance(stat, Proportion | Statistic):
        why = None if stat.value is not None else f"no traces to compute {_LABELS[metric]} on"
        return stat.value, stat.ci, why
    raise CostarError(f"unknown agreement metric {metric!r}")  # the Literal type makes this unreachable


def items_needed(metric: FloorMetric, floor: float, confidence: float = 0.95) -> int | None:
    """The fewest traces at which a judge agreeing with the humans on every one could show
    ``metric >= floor`` by its interval's lower bound (None: no count can, e.g. a floor of 1).

    Perfect agreement on n items has a Wilson lower bound of n / (n + z²); a chance-corrected
    statistic is read at chance agreement 1/2 (two balanced classes), where it is 2·agreement − 1.
    Kappa needs ``MIN_KAPPA_ITEMS`` at least, below which it has no interval at all.
    """
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    chance_corrected = metric in _CHANCE_CORRECTED
    target = (1 + floor) / 2 if chance_corrected else floor
    if target >= 1:
        return None
    needed = max(1, math.ceil(z * z * max(target, 0.0) / (1 - target) - 1e-9))
    return max(needed, MIN_KAPPA_ITEMS) if chance_corrected else needed


def _sample_size(agreement: StoreAgreement, metric: FloorMetric) -> int:
    """How many traces the statistic rests on (TPR on the human passes, TNR on the fails, ...)."""
    result = agreement.result
    n = agreement.coverage.compared
    if isinstance(result, BinaryAgreement):
        if metric == "tpr":
            return result.tpr.total
        if metric == "tnr":
            return result.tnr.total
        if metric == "precision":
            return result.precision.total
        if metric in ("balanced_accuracy", "f1"):
            return min(result.tpr.total, result.tnr.total) if metric == "balanced_accuracy" else result.tpr.total
    return n


def _fmt(ci: Interval | None) -> str:
    return "" if ci is None else f"CI [{ci.low:.3f}, {ci.high:.3f}], "


def check_floor(store: Store, floor: JudgeFloor, *, confidence: float = 0.95, resamples: int = DEFAULT_RESAMPLES,
                seed: int | None = DEFAULT_SEED) -> FloorResult:
    """One floor's outcome; problems with the data become a failing result, never an exception."""
    try:
        agreement = judge_agreement(store, floor.name, golden=floor.golden, split=floor.split,
                                    confidence=confidence, resamples=resamples, seed=seed)
    except NoLabelsError as exc:
        return FloorResult(floor=floor, status="no_labels", reason=str(exc))
    except CostarError as exc:
        return FloorResult(floor=floor, status="error", reason=str(exc))
    value, ci, why = metric_value(agreement, floor.metric, confidence=confidence, resamples=resamples, seed=seed)
    n = agreement.coverage.compared
    label = _LABELS[floor.metric]
    if value is None:
        return FloorResult(floor=floor, status="fail", compared=n,
                           reason=f"{label} is undefined on {n} traces: {why}")
    gated = value
    if floor.use_lower_bound:
        if ci is None:
            return FloorResult(floor=floor, status="fail", value=value, compared=n,
                               reason=f"{label} {value:.3f} has no interval to gate on ({n} traces); "
                                      "label more traces or gate on the value")
        gated = ci.low
    ok = gated >= floor.min
    shown = f"{label} lower bound {gated:.3f}" if floor.use_lower_bound else f"{label} {value:.3f}"
    excluded = agreement.coverage
    skipped = excluded.no_verdict + excluded.errors + excluded.no_value
    reason = (f"{shown} {'>=' if ok else '<'} {floor.min:g} ({_fmt(ci)}{n} traces"
              f"{f', {skipped} labeled traces not compared' if skipped else ''}; {agreement.scope})")
    warnings = []
    needed, size = items_needed(floor.metric, floor.min, confidence), _sample_size(agreement, floor.metric)
    if needed is not None and size < needed:
        warnings.append(f"n = {size}: too few to show {label} >= {floor.min:g} even if the judge agreed with the "
                        f"humans on every trace ({needed} needed at {confidence:.0%}); label more traces")
    return FloorResult(floor=floor, status="pass" if ok else "fail", value=value, ci=ci, compared=n, reason=reason,
                       warnings=warnings)


def check_agreement_floors(store: Store, floors: Sequence[JudgeFloor], *, confidence: float = 0.95,
                           resamples: int = DEFAULT_RESAMPLES, seed: int | None = DEFAULT_SEED) -> GateReport:
    """Check every floor against the store's labels and verdicts, in the order given."""
    return GateReport(results=[check_floor(store, f, confidence=confidence, resamples=resamples, seed=seed)
                               for f in floors])
