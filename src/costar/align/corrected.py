"""Corrected pass rates: what the pass rate would be if humans had judged every trace.

A judge's raw pass rate is biased by its errors: a lenient judge inflates it, a strict one
deflates it. A golden set measures those errors, so the rate can be corrected two ways, shown
beside the raw rate:

* **Rogan–Gladen** (1978). With the judge's sensitivity (TPR) and specificity (TNR) against the
  humans, the observed pass share is ``p_obs = θ·TPR + (1 − θ)(1 − TNR)``, so
  ``θ = (p_obs + TNR − 1) / (TPR + TNR − 1)``, clipped to [0, 1]. The denominator is Youden's J,
  the judge's advantage over chance; when it is near 0 the judge's verdicts say nothing about the
  truth and the division only amplifies noise, so the estimate is refused. The interval is a
  percentile bootstrap that resamples both sources of error: the labeled pairs (for TPR and
  TNR) and the judged population (for p_obs).
* **Prediction-powered inference** (Angelopoulos et al., Science 2023) for a mean. The judge's
  mean over the unlabeled traces, minus its mean error on the labeled ones (the "rectifier"):
  ``θ = mean(f, unlabeled) − mean(f − y, labeled)``, with the normal interval
  ``± z·sqrt(var(f)/N + var(f − y)/n)``. It needs no model of the judge's errors and stays valid
  however poor the judge is; a good judge only makes the interval narrower.

Both assume the labeled traces are drawn like the judged ones (a golden set's test split from
the same kind of traffic, not a hand-picked set of hard cases), and that the judge errs on the
run as it did on the golden set.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from statistics import NormalDist
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike
from pydantic import BaseModel, ConfigDict, Field

from costar.align.agreement_results import AgreementError, Interval, NoOverlapError, Proportion
from costar.align.agreement_stats import (
    DEFAULT_RESAMPLES,
    DEFAULT_SEED,
    binary_agreement,
    percentile_interval,
    proportion,
)
from costar.align.agreement_store import SplitChoice, golden_scope, judge_decision
from costar.store.base import Store

__all__ = [
    "MIN_YOUDEN",
    "ChanceJudgeError",
    "CorrectedRate",
    "Estimate",
    "corrected_pass_rate",
    "ppi_mean",
    "rogan_gladen",
]

# Below this advantage over chance the correction multiplies p_obs's noise by more than 20.
MIN_YOUDEN = 0.05


class ChanceJudgeError(AgreementError):
    """The judge is no better than chance (or its TPR/TNR is unknown): Rogan–Gladen is undefined."""


class Estimate(BaseModel):
    """A corrected rate with its interval; ``clipped`` when the raw estimate left [0, 1]."""

    model_config = ConfigDict(extra="forbid")

    method: Literal["rogan-gladen", "ppi"]
    value: float
    ci: Interval | None = None
    unclipped: float
    se: float | None = None
    notes: list[str] = Field(default_factory=list)

    @property
    def clipped(self) -> bool:
        return self.value != self.unclipped


def _z(confidence: float) -> float:
    if not 0 < confidence < 1:
        raise AgreementError(f"confidence must be between 0 and 1, got {confidence}; use e.g. 0.95")
    return NormalDist().inv_cdf(0.5 + confidence / 2)


def _clip(x: float) -> float:
    return min(1.0, max(0.0, x))


# ----------------------------------------------------------------------------- Rogan–Gladen


def rogan_gladen(passed: int, judged: int, tp: int, fn: int, fp: int, tn: int, *, confidence: float = 0.95,
                 resamples: int = DEFAULT_RESAMPLES, seed: int | None = DEFAULT_SEED,
                 min_youden: float = MIN_YOUDEN) -> Estimate:
    """The true pass rate from the judge's ``passed`` of ``judged`` and its confusion counts on
    labeled pairs (tp: human pass, judge pass; fn: human pass, judge fail; fp; tn).

    Raises :class:`ChanceJudgeError` when TPR + TNR − 1 ≤ ``min_youden`` or when the labeled pairs
    lack a class (TPR or TNR unknown).
    """
    _z(confidence)  # reject a bad confidence before any work
    if judged <= 0 or not 0 <= passed <= judged:
        raise AgreementError(f"need 0 <= passed <= judged and judged > 0, got {passed} of {judged}")
    if min(tp, fn, fp, tn) < 0:
        raise AgreementError("confusion counts must be non-negative")
    if resamples < 0:
        raise AgreementError(f"resamples must be 0 (no interval) or more, got {resamples}")
    if tp + fn == 0 or tn + fp == 0:
        missing = "pass" if tp + fn == 0 else "fail"
        raise ChanceJudgeError(f"the labeled traces include no human {missing}, so the judge's "
                               f"{'TPR' if missing == 'pass' else 'TNR'} is unknown; label some {missing}ing traces")
    tpr, tnr = tp / (tp + fn), tn / (tn + fp)
    youden = tpr + tnr - 1
    if youden <= min_youden:
        raise ChanceJudgeError(
            f"the judge is no better than chance on the labeled traces (TPR {tpr:.2f} + TNR {tnr:.2f} - 1 = "
            f"{youden:.2f}, needs > {min_youden:g}); the correction would divide by ~0: improve the judge first")
    p_obs = passed / judged
    raw = (p_obs + tnr - 1) / youden
    notes: list[str] = []
    ci = None
    if resamples > 0:
        samples, undefined = _rg_bootstrap(passed, judged, (tp, fn, fp, tn), resamples, seed)
        ci = percentile_interval(samples, confidence)
        finite = samples[np.isfinite(samples)]
        if ci is None and finite.size and float(finite.max() - finite.min()) <= 1e-12:
            notes.append(f"every resample gave {float(finite[0]):.3f} (clipped to [0, 1]): the bootstrap cannot "
                         "show the uncertainty; no interval")
        if undefined:
            notes.append(f"{undefined} of {resamples} resamples had a judge no better than chance and were left out"
                         + ("; too many to give an interval" if ci is None else ", so the interval is optimistic"))
    return Estimate(method="rogan-gladen", value=_clip(raw), unclipped=raw, ci=ci, notes=notes)


def _rg_bootstrap(passed: int, judged: int, cells: tuple[int, int, int, int], resamples: int,
                  seed: int | None) -> tuple[np.ndarray, int]:
    rng = np.random.default_rng(seed)
    counts = np.asarray(cells, dtype=float)
    n = int(counts.sum())
    # Resampling n labeled pairs with replacement is a multinomial draw on the four confusion cells,
    # and resampling the judged population is a binomial draw on its pass count.
    tp, fn, fp, tn = rng.multinomial(n, counts / n, size=resamples).T
    p_obs = rng.binomial(judged, passed / judged, size=resamples) / judged
    with np.errstate(divide="ignore", invalid="ignore"):
        tpr, tnr = tp / (tp + fn), tn / (tn + fp)
        youden = tpr + tnr - 1
        theta = np.clip((p_obs + tnr - 1) / youden, 0.0, 1.0)
    defined = np.isfinite(youden) & (youden > 0)
    return np.where(defined, theta, np.nan), int((~defined).sum())


# ----------------------------------------------------------------------------- PPI


def ppi_mean(judge_unlabeled: ArrayLike, judge_labeled: ArrayLike, human_labeled: ArrayLike, *,
             confidence: float = 0.95) -> Estimate:
    """Prediction-powered estimate of the mean of the human value (1 pass, 0 fail, or any number),
    from the judge's values on N unlabeled traces and on n labeled traces beside the humans'.

    The value and the interval are clipped to [0, 1] (the estimate of a rate can leave it).
    """
    z = _z(confidence)
    f_u = np.asarray(judge_unlabeled, dtype=float)
    f_l = np.asarray(judge_labeled, dtype=float)
    y_l = np.asarray(human_labeled, dtype=float)
    if f_l.shape != y_l.shape or f_l.ndim != 1 or f_u.ndim != 1:
        raise AgreementError(f"judge and human values on the labeled traces must be two 1-d arrays of one length, "
                             f"got shapes {f_l.shape} and {y_l.shape}")
    if f_u.size < 2 or f_l.size < 2:
        raise AgreementError(f"PPI needs at least 2 unlabeled and 2 labeled traces, got {f_u.size} and {f_l.size}")
    rectifier = f_l - y_l
    raw = float(f_u.mean() - rectifier.mean())
    notes = []
    binary = bool(np.isin(f_u, (0.0, 1.0)).all() and np.isin(f_l, (0.0, 1.0)).all() and np.isin(y_l, (0.0, 1.0)).all())
    var_f, var_r = float(f_u.var(ddof=1)), float(rectifier.var(ddof=1))
    # A zero sample variance (every judge value equal, or the judge matched every label) is no
    # certainty: for pass/fail values the variance of a proportion with z²/2 pseudo-observations
    # on each side (Agresti-Coull) stands in, so a handful of perfect matches gives a real interval.
    if binary and var_f == 0.0:
        var_f = _pseudo_variance(float(f_u.sum()), f_u.size, z)
    if binary and var_r == 0.0:
        var_r = _pseudo_variance(float(np.abs(rectifier).sum()), f_l.size, z)
        notes.append(f"the judge matched all {f_l.size} labels, so the labeled traces show no error variance; "
                     "it is bounded as for a proportion (Agresti-Coull) instead of taken as 0")
    se = math.sqrt(var_f / f_u.size + var_r / f_l.size)
    low, high = raw - z * se, raw + z * se
    ci: Interval | None = Interval(low=_clip(low), high=_clip(high), method="normal-se")
    if high < 0.0 or low > 1.0:
        ci = None
        notes.append(f"the estimate and its whole interval lie outside [0, 1] (unclipped {raw:.3f} "
                     f"[{low:.3f}, {high:.3f}]): the labeled traces do not look like the judged ones; no interval")
    elif raw != _clip(raw):
        notes.append(f"clipped to {_clip(raw):.3f} from {raw:.3f}; the interval is clipped to [0, 1] too")
    return Estimate(method="ppi", value=_clip(raw), unclipped=raw, ci=ci, se=se, notes=notes)


def _pseudo_variance(count: float, n: int, z: float) -> float:
    """p(1 - p) of the proportion ``count / n`` with z²/2 pseudo-successes and pseudo-failures added."""
    shrunk = (count + z * z / 2) / (n + z * z)
    return shrunk * (1 - shrunk)


# ----------------------------------------------------------------------------- from the store


class CorrectedRate(BaseModel):
    """A judge's raw pass rate on a run, beside the rates corrected with a golden set."""

    model_config = ConfigDict(extra="forbid")

    judge: str
    run_id: str | None
    golden: str
    golden_version: int
    split: SplitChoice
    raw: Proportion = Field(description="the judge's pass rate over the traces it judged (Wilson interval)")
    errors: int = Field(description="judge errors on the run, excluded (never a pass or a fail)")
    no_decision: int = Field(0, description="verdicts on the run without pass/fail, excluded")
    human: Proportion = Field(description="the human pass rate on the labeled pairs alone (Wilson interval)")
    tpr: Proportion
    tnr: Proportion
    labeled_missing: int = Field(0, description="golden traces without a usable verdict, left out")
    unlabeled: int = Field(description="judged traces of the run outside the labeled pairs (PPI's N)")
    rogan_gladen: Estimate | None = None
    rogan_gladen_error: str | None = None
    ppi: Estimate | None = None
    ppi_error: str | None = None
    confidence: float
    notes: list[str] = Field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def format(self) -> str:
        where = f"run {self.run_id}" if self.run_id else "all traces"
        head = (f"pass rate of judge {self.judge!r} on {where}, corrected with golden set {self.golden} "
                f"v{self.golden_version} ({self.split} split, {self.human.total} labeled traces)")
        raw = self.raw
        lines = [head, _rate_line("judge (raw)", raw.value, raw.ci,
                                  f"{raw.count}/{raw.total}" + _excluded(self.errors, self.no_decision))]
        for label, p in (("humans (labels)", self.human), ("TPR", self.tpr), ("TNR", self.tnr)):
            lines.append(_rate_line(label, p.value, p.ci, f"{p.count}/{p.total}"))
        for label, est, err in (("Rogan-Gladen", self.rogan_gladen, self.rogan_gladen_error),
                                ("PPI", self.ppi, self.ppi_error)):
            if est is None:
                lines.append(f"  {label:<17}refused: {err}")
                continue
            extra = f"unclipped {est.unclipped:.3f}" if est.clipped else ""
            lines.append(_rate_line(label, est.value, est.ci, extra))
            lines += [f"    note: {n}" for n in est.notes]
        return "\n".join([*lines, *(f"  note: {n}" for n in self.notes)])


def _excluded(errors: int, no_decision: int) -> str:
    parts = [f"{errors} errors"] * bool(errors) + [f"{no_decision} without pass/fail"] * bool(no_decision)
    return f" ({', '.join(parts)} excluded)" if parts else ""


def _rate_line(label: str, value: float | None, ci: Interval | None, extra: str) -> str:
    shown = "n/a" if value is None else f"{value:.3f}"
    interval = "" if ci is None else f"  [{ci.low:.3f}, {ci.high:.3f}] ({ci.method})"
    return f"  {label:<17}{shown}{interval}  {extra}".rstrip()


def _decisions(verdicts: Mapping[str, Any]) -> tuple[dict[str, bool], int, int]:
    """trace id -> the judge's pass/fail; and how many were errors or undecided."""
    out: dict[str, bool] = {}
    errors = undecided = 0
    for tid, v in verdicts.items():
        d = judge_decision(v, "passed")
        if isinstance(d, bool):
            out[tid] = d
        elif v.error is not None:
            errors += 1
        else:
            undecided += 1
    return out, errors, undecided


def corrected_pass_rate(store: Store, judge_name: str, *, run_id: str | None, golden: str,
                        version: int | None = None, split: SplitChoice = "test", confidence: float = 0.95,
                        resamples: int = DEFAULT_RESAMPLES, seed: int | None = DEFAULT_SEED,
                        min_youden: float = MIN_YOUDEN) -> CorrectedRate:
    """Judge ``judge_name``'s pass rate on run ``run_id`` (None: every stored trace), raw and corrected
    with golden set ``golden``'s ``split`` (its labels are the truth, the judge's current verdicts on
    those traces its measured errors).

    Rogan–Gladen or PPI, when one cannot be computed, is None with the reason in
    ``rogan_gladen_error`` / ``ppi_error`` (e.g. a judge no better than chance), so the other and
    the raw rate are still reported. Raises when there is nothing to correct: no pass/fail golden
    labels, no verdicts on the run, or no labeled trace with a verdict.
    """
    scope = golden_scope(store, golden, version, split)
    gs = scope.golden
    assert gs is not None  # a golden scope always carries its set
    labels = gs.labels(None if split == "all" else split)
    if not all(isinstance(x, bool) for x in labels.values()):
        raise AgreementError(f"golden set {gs.name!r} holds {gs.value_type.describe()} labels; corrected pass "
                             "rates need pass/fail labels")
    run = store.resolve_run_id(run_id) if run_id is not None else None
    population = {str(v.trace_id): v for v in store.verdicts(run_id=run, trace_ids=None, latest=True)
                  if v.name == judge_name}
    judged, errors, undecided = _decisions(population)
    if not judged:
        where = f"run {run}" if run else "the store"
        raise NoOverlapError(f"judge {judge_name!r} has no pass/fail verdicts in {where} ({errors} errors); "
                             "score the run first: costar assess RUN")
    on_golden = {str(v.trace_id): v for v in store.verdicts(trace_ids=list(labels), latest=True)
                 if v.name == judge_name}
    golden_calls, _, _ = _decisions(on_golden)
    pairs = {t: (y, golden_calls[t]) for t, y in labels.items() if t in golden_calls}
    if not pairs:
        raise NoOverlapError(f"none of the {len(labels)} traces of {scope.text} has a pass/fail verdict from "
                             f"{judge_name!r}; score them first: costar assess RUN")
    human = {t: y is True for t, (y, _) in pairs.items()}  # every label is a bool (checked above)
    calls = {t: f for t, (_, f) in pairs.items()}
    fit = binary_agreement(human, calls, True, resamples=0, confidence=confidence)
    passed = sum(judged.values())
    out = CorrectedRate(
        judge=judge_name, run_id=run, golden=gs.name, golden_version=gs.version, split=split,
        raw=proportion(passed, len(judged), confidence), errors=errors, no_decision=undecided,
        human=proportion(sum(human.values()), len(human), confidence), tpr=fit.tpr, tnr=fit.tnr,
        labeled_missing=len(labels) - len(pairs), unlabeled=sum(1 for t in judged if t not in pairs),
        confidence=confidence)
    if gs.judge_name != judge_name:
        out.notes.append(f"golden set {gs.name!r} was made for judge {gs.judge_name!r}")
    try:
        out.rogan_gladen = rogan_gladen(passed, len(judged), fit.tp, fit.fn, fit.fp, fit.tn, confidence=confidence,
                                        resamples=resamples, seed=seed, min_youden=min_youden)
    except ChanceJudgeError as exc:
        out.rogan_gladen_error = str(exc)
    # PPI's unlabeled sample must not contain the labeled traces: each trace counts once.
    unlabeled = [float(f) for t, f in judged.items() if t not in pairs]
    try:
        out.ppi = ppi_mean(unlabeled, [float(f) for f in calls.values()], [float(y) for y in human.values()],
                           confidence=confidence)
    except AgreementError as exc:
        out.ppi_error = str(exc)
    return out
