"""What the agreement statistics return and raise, and how a result reads as text.

The result models (:class:`BinaryAgreement`, :class:`CategoricalAgreement`,
:class:`MultiRaterAgreement`) are plain data that round-trip through JSON (``to_dict``); their
``format()`` is the compact terminal text, and :func:`format_agreement` gives the same text for a
result read back from JSON (what ``costar agreement --json`` printed). The statistics themselves
are :mod:`costar.align.agreement_stats`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from costar.errors import CostarError
from costar.labels import LabelValue

__all__ = [
    "AgreementError",
    "BinaryAgreement",
    "CategoricalAgreement",
    "ConfusionMatrix",
    "Coverage",
    "Interval",
    "Kappa",
    "LabelSetError",
    "LabelStats",
    "LengthMismatchError",
    "Level",
    "MultiRaterAgreement",
    "NoOverlapError",
    "Proportion",
    "Settings",
    "Statistic",
    "Weighting",
    "format_agreement",
    "label_text",
]

Weighting = Literal["none", "linear", "quadratic"]
Level = Literal["nominal", "ordinal", "interval"]


class AgreementError(CostarError, ValueError):
    """Labels that cannot be compared as given; the one-line message names the fix."""


class NoOverlapError(AgreementError):
    """No item carries a label from both sources (or, for many raters, from two raters)."""


class LengthMismatchError(AgreementError):
    """Positionally aligned inputs differ in length, or items differ in their number of ratings."""


class LabelSetError(AgreementError):
    """The labels do not fit the statistic: not two for binary, not ordered for weights, etc."""


# ----------------------------------------------------------------------------------- results


class Interval(BaseModel):
    model_config = ConfigDict(extra="forbid")

    low: float
    high: float
    method: Literal["wilson", "normal-se", "bootstrap-percentile"]


class Proportion(BaseModel):
    """``count / total`` with a Wilson interval; ``value`` is None when ``total`` is 0."""

    model_config = ConfigDict(extra="forbid")

    value: float | None
    count: int
    total: int
    ci: Interval | None = None


class Statistic(BaseModel):
    """A derived rate (balanced accuracy, F1) whose interval comes from the bootstrap."""

    model_config = ConfigDict(extra="forbid")

    value: float | None
    ci: Interval | None = None


class Kappa(BaseModel):
    """Cohen's kappa with its standard error, a normal interval and a bootstrap interval."""

    model_config = ConfigDict(extra="forbid")

    value: float | None
    weights: Weighting = "none"
    se: float | None = None
    ci: Interval | None = None
    ci_bootstrap: Interval | None = None


class ConfusionMatrix(BaseModel):
    """Counts with rows = labels given by ``a`` (reference), columns = labels given by ``b``."""

    model_config = ConfigDict(extra="forbid")

    labels: list[LabelValue]
    counts: list[list[int]]


class Coverage(BaseModel):
    """Which items were compared and why the others were not."""

    model_config = ConfigDict(extra="forbid")

    n_a: int
    n_b: int
    used: int
    only_a: int = 0
    only_b: int = 0
    unlabelled: int = Field(0, description="items on both sides with no label on at least one side")

    @property
    def excluded(self) -> int:
        return self.only_a + self.only_b + self.unlabelled


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    confidence: float
    resamples: int
    seed: int | None


class LabelStats(BaseModel):
    """How b does on one label: recall over items a gave it, precision over items b gave it."""

    model_config = ConfigDict(extra="forbid")

    label: LabelValue
    count_a: int
    count_b: int
    recall: Proportion
    precision: Proportion


class _Result(BaseModel, ABC):
    model_config = ConfigDict(extra="forbid")

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (labels keep their JSON type: bool, number or string)."""
        return self.model_dump(mode="json")

    @abstractmethod
    def format(self, a: str = "a", b: str = "b") -> str:
        """Compact terminal text; ``a`` and ``b`` name the two sides (the confusion matrix's rows
        and columns), e.g. the human labels and the judge."""


class BinaryAgreement(_Result):
    kind: Literal["binary"] = "binary"
    positive: LabelValue
    negative: LabelValue
    n: int
    coverage: Coverage
    accuracy: Proportion
    kappa: Kappa
    tpr: Proportion
    tnr: Proportion
    precision: Proportion
    balanced_accuracy: Statistic
    f1: Statistic
    positive_rate_a: Proportion
    positive_rate_b: Proportion
    tp: int
    fp: int
    fn: int
    tn: int
    confusion: ConfusionMatrix
    settings: Settings
    notes: list[str] = Field(default_factory=list)

    def format(self, a: str = "a", b: str = "b") -> str:
        lines = [f"binary agreement, positive label {self.positive!r}: {_coverage_text(self.coverage)}",
                 _proportion_line("accuracy", self.accuracy),
                 *_kappa_lines("Cohen's kappa", self.kappa),
                 _proportion_line("TPR (recall)", self.tpr),
                 _proportion_line("TNR (specificity)", self.tnr),
                 _proportion_line("precision", self.precision),
                 _statistic_line("balanced accuracy", self.balanced_accuracy),
                 _statistic_line("F1", self.f1),
                 f"  {'positive rate':<19}a {_num(self.positive_rate_a.value)}, "
                 f"b {_num(self.positive_rate_b.value)}"]
        return "\n".join([*lines, *_confusion_lines(self.confusion, a, b), *_note_lines(self.notes)])


class CategoricalAgreement(_Result):
    kind: Literal["categorical"] = "categorical"
    labels: list[LabelValue]
    n: int
    coverage: Coverage
    accuracy: Proportion
    kappa: Kappa
    kappa_linear: Kappa | None = None
    kappa_quadratic: Kappa | None = None
    per_label: list[LabelStats]
    confusion: ConfusionMatrix
    settings: Settings
    notes: list[str] = Field(default_factory=list)

    def format(self, a: str = "a", b: str = "b") -> str:
        lines = [f"categorical agreement over {len(self.labels)} labels: {_coverage_text(self.coverage)}",
                 _proportion_line("accuracy", self.accuracy),
                 *_kappa_lines("Cohen's kappa", self.kappa)]
        if self.kappa_linear is not None:
            lines += _kappa_lines("kappa, linear", self.kappa_linear)
        if self.kappa_quadratic is not None:
            lines += _kappa_lines("kappa, quadratic", self.kappa_quadratic)
        lines.append("  per label (b against a):")
        width = max(len(label_text(s.label)) for s in self.per_label)
        for stats in self.per_label:
            lines.append(f"    {label_text(stats.label):>{width}}  a {stats.count_a:>5}  b {stats.count_b:>5}"
                         f"  recall {_num(stats.recall.value)}  precision {_num(stats.precision.value)}")
        return "\n".join([*lines, *_confusion_lines(self.confusion, a, b), *_note_lines(self.notes)])


class MultiRaterAgreement(_Result):
    """Fleiss' kappa or Krippendorff's alpha over many raters.

    ``observed`` and ``expected`` are the statistic's own terms: mean pairwise agreement and
    chance agreement for Fleiss' kappa, observed and expected disagreement (D_o, D_e) for alpha.
    """

    kind: Literal["fleiss_kappa", "krippendorff_alpha"]
    value: float | None
    ci_bootstrap: Interval | None = None
    level: Level | None = None
    labels: list[LabelValue]
    n_items: int
    n_items_used: int
    n_raters: int
    n_ratings: int
    observed: float | None = None
    expected: float | None = None
    settings: Settings
    notes: list[str] = Field(default_factory=list)

    def format(self, a: str = "a", b: str = "b") -> str:
        if self.kind == "fleiss_kappa":
            title = "Fleiss' kappa"
            detail = (f"{self.n_items_used} items x {self.n_raters} raters; "
                      f"observed agreement {_num(self.observed)}, chance {_num(self.expected)}")
        else:
            title = f"Krippendorff's alpha ({self.level})"
            detail = (f"{self.n_items_used} of {self.n_items} units pairable, {self.n_raters} coders, "
                      f"{self.n_ratings} values; D_o {_num(self.observed)}, D_e {_num(self.expected)}")
        head = f"{title} {_num(self.value)}  bootstrap {_interval_text(self.ci_bootstrap)}"
        return "\n".join([head, f"  {detail}", *_note_lines(self.notes)])


_RESULT_TYPES: dict[str, type[_Result]] = {
    "binary": BinaryAgreement, "categorical": CategoricalAgreement,
    "fleiss_kappa": MultiRaterAgreement, "krippendorff_alpha": MultiRaterAgreement,
}


def format_agreement(result: Mapping[str, Any] | _Result) -> str:
    """Terminal text for a result model or for the dict :func:`agreement_between_files` returns."""
    if isinstance(result, _Result):
        return result.format()
    body = {k: v for k, v in result.items() if k != "sources"}
    kind = body.get("kind")
    if kind not in _RESULT_TYPES:
        raise AgreementError(f"not an agreement result (kind={kind!r}); pass what agreement_between_files returns")
    sources = result.get("sources")
    if not sources:
        return _RESULT_TYPES[kind].model_validate(body).format()
    text = _RESULT_TYPES[kind].model_validate(body).format(
        *(f"{side} = {src['path']} [{src['field']}]" for side, src in sources.items()))
    header = [f"{side} = {src['path']} [{src['field']}] by {src['key']}" + (" (reference)" if side == "a" else "")
              for side, src in sources.items()]
    return "\n".join([*header, text])


# ----------------------------------------------------------------------------- formatting


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _interval_text(ci: Interval | None) -> str:
    return "n/a" if ci is None else f"[{ci.low:.3f}, {ci.high:.3f}]"


def label_text(label: LabelValue) -> str:
    """A label as shown in tables and messages (text as is, others as their repr)."""
    return label if isinstance(label, str) else repr(label)


def _coverage_text(coverage: Coverage) -> str:
    text = f"{coverage.used} items"
    if coverage.excluded:
        text += (f" (excluded: {coverage.only_a} only in a, {coverage.only_b} only in b, "
                 f"{coverage.unlabelled} unlabelled)")
    return text


def _proportion_line(name: str, p: Proportion) -> str:
    return f"  {name:<19}{_num(p.value)}  CI {_interval_text(p.ci)}  {p.count}/{p.total}"


def _statistic_line(name: str, s: Statistic) -> str:
    return f"  {name:<19}{_num(s.value)}  bootstrap {_interval_text(s.ci)}"


def _kappa_lines(name: str, kappa: Kappa) -> list[str]:
    if kappa.value is None:
        return [f"  {name:<19}n/a (undefined)"]
    return [f"  {name:<19}{_num(kappa.value)}  CI {_interval_text(kappa.ci)} (SE {_num(kappa.se)}), "
            f"bootstrap {_interval_text(kappa.ci_bootstrap)}"]


def _confusion_lines(confusion: ConfusionMatrix, a: str = "a", b: str = "b") -> list[str]:
    names = [label_text(x) for x in confusion.labels]
    width = max(6, *(len(x) for x in names), *(len(str(c)) for row in confusion.counts for c in row))
    lines = [f"  confusion (rows: {a}; columns: {b}):",
             "    " + " " * width + "".join(f" {x:>{width}}" for x in names)]
    for name, row in zip(names, confusion.counts, strict=True):
        lines.append(f"    {name:>{width}}" + "".join(f" {c:>{width}}" for c in row))
    return lines


def _note_lines(notes: list[str]) -> list[str]:
    return [f"  note: {note}" for note in notes]
