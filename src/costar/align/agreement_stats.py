"""Agreement statistics: how well a judge agrees with human experts, and experts with each other.

Conventions, and why:

* ``a`` is the reference (usually the human) and ``b`` the rater under test (usually the
  judge). TPR, TNR and precision are b's, measured against a, which is how a judge is read
  against a golden set; accuracy and kappa are symmetric.
* Label sources are dicts keyed by item id (items on one side only are excluded and counted)
  or equal-length sequences aligned by position. ``None`` or NaN marks an unlabelled item,
  also excluded and counted. Labels compare with ``==``, so ``True`` and ``1`` are one label
  but ``1`` and ``"1"`` are two (files read with :mod:`costar.align.agreement_files`
  have their spellings normalised first).
* A statistic that is undefined on the data is ``None`` with a note, never an exception: a
  golden set on which both sides use a single class (every trace passed) is common, and its
  accuracy is still informative. Data that cannot be compared at all (no overlap, mismatched
  lengths, a label set that does not fit the statistic) raises an :class:`AgreementError`, a
  ``ValueError`` whose one-line message names the fix.
* Proportions carry Wilson intervals (sound at small n and near 0 or 1, unlike Wald). Kappa
  carries the large-sample interval from the Fleiss, Cohen & Everitt (1969) standard error and
  a percentile bootstrap over items. For two raters, resampling items is a multinomial draw
  on the confusion table, so a replicate costs O(k²) whatever the number of items.
* No interval claims certainty the data cannot give. Below ``MIN_KAPPA_ITEMS`` items kappa has
  no interval ("too few to estimate"); when its standard error is 0 (every item agreed) the
  interval comes from the Wilson interval of the observed agreement at the observed chance
  agreement, which cannot collapse to a point; a bootstrap interval of zero width (every
  resample gave the same value) is withheld. docs/STATISTICS.md has the reasons.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import chain
from statistics import NormalDist
from typing import Any

import numpy as np

from costar.align.agreement_results import (
    AgreementError,
    BinaryAgreement,
    CategoricalAgreement,
    ConfusionMatrix,
    Coverage,
    Interval,
    Kappa,
    LabelSetError,
    LabelStats,
    LengthMismatchError,
    Level,
    MultiRaterAgreement,
    NoOverlapError,
    Proportion,
    Settings,
    Statistic,
    Weighting,
    label_text,
)
from costar.labels import LabelValue
from costar.stats import wilson_bounds, wilson_interval

__all__ = [
    "DEFAULT_RESAMPLES",
    "DEFAULT_SEED",
    "MIN_KAPPA_ITEMS",
    "binary_agreement",
    "categorical_agreement",
    "fleiss_kappa",
    "krippendorff_alpha",
    "label_sort_key",
    "pair_labels",
    "percentile_interval",
    "proportion",
    "unique_labels",
]

DEFAULT_RESAMPLES = 2000
DEFAULT_SEED = 0
# A chance-agreement term this close to 1 means every rating sits in one category: the
# kappa-type ratio is 0/0, and floating-point noise must not turn it into a number.
_DEGENERATE = 1e-12
# A bootstrap interval built from fewer than half the replicates would describe a selected
# subset of resamples, not the sampling distribution; below that share it is withheld.
_MIN_DEFINED_SHARE = 0.5
# Kappa's large-sample interval, and its bootstrap, say little below this many items (at 4 items
# perfect agreement gives [1.000, 1.000]): no interval is given, with a note saying why.
MIN_KAPPA_ITEMS = 10
# Bound on the resampling-weight matrix (replicates x items) materialised at once.
_BOOTSTRAP_CELLS = 4_000_000
# Ordinal alpha needs a k x k coincidence table per unit; beyond this many distinct values the
# data is effectively continuous and level="interval" is the right (and cheap) choice.
_ORDINAL_MAX_LABELS = 100


# ------------------------------------------------------------------------------ input pairing


@dataclass(frozen=True)
class _Pairs:
    a: list[LabelValue]
    b: list[LabelValue]
    coverage: Coverage


def _to_label(value: Any) -> LabelValue | None:
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, bool | int | float | str):
        return value
    raise LabelSetError(f"label {value!r} is a {type(value).__name__}; labels must be bools, numbers or strings")


def _as_list(values: Any, name: str) -> list[Any]:
    if isinstance(values, str | bytes):
        raise AgreementError(f"{name} is a string; pass a sequence of labels or a dict of item id -> label")
    if isinstance(values, np.ndarray):
        if values.ndim != 1:
            raise AgreementError(f"{name} has shape {values.shape}; pass one label per item (a 1-d array)")
        items: list[Any] = values.tolist()
        return items
    return list(values)


def pair_labels(a: Any, b: Any) -> _Pairs:
    if isinstance(a, Mapping) != isinstance(b, Mapping):
        raise AgreementError("pass both label sources as dicts keyed by item id, or both as sequences "
                             "aligned by position")
    pairs = _pair_mappings(a, b) if isinstance(a, Mapping) else _pair_sequences(a, b)
    if pairs.coverage.used == 0:
        raise NoOverlapError(_no_overlap_message(a, b, pairs.coverage))
    return pairs


def _pair_mappings(a: Mapping[Any, Any], b: Mapping[Any, Any]) -> _Pairs:
    left: list[LabelValue] = []
    right: list[LabelValue] = []
    only_a = unlabelled = 0
    for key, raw in a.items():
        if key not in b:
            only_a += 1
            continue
        label_a, label_b = _to_label(raw), _to_label(b[key])
        if label_a is None or label_b is None:
            unlabelled += 1
            continue
        left.append(label_a)
        right.append(label_b)
    only_b = sum(1 for key in b if key not in a)
    coverage = Coverage(n_a=len(a), n_b=len(b), used=len(left), only_a=only_a, only_b=only_b,
                        unlabelled=unlabelled)
    return _Pairs(left, right, coverage)


def _pair_sequences(a: Any, b: Any) -> _Pairs:
    seq_a, seq_b = _as_list(a, "a"), _as_list(b, "b")
    if len(seq_a) != len(seq_b):
        raise LengthMismatchError(f"a has {len(seq_a)} labels and b has {len(seq_b)}; align them by position "
                                  "or pass dicts keyed by item id")
    left: list[LabelValue] = []
    right: list[LabelValue] = []
    for raw_a, raw_b in zip(seq_a, seq_b, strict=True):
        label_a, label_b = _to_label(raw_a), _to_label(raw_b)
        if label_a is not None and label_b is not None:
            left.append(label_a)
            right.append(label_b)
    coverage = Coverage(n_a=len(seq_a), n_b=len(seq_b), used=len(left), unlabelled=len(seq_a) - len(left))
    return _Pairs(left, right, coverage)


def _no_overlap_message(a: Any, b: Any, coverage: Coverage) -> str:
    if coverage.unlabelled:
        return (f"all {coverage.unlabelled} shared items are unlabelled on at least one side; "
                "check the label fields")
    if isinstance(a, Mapping) and a and b:
        # Showing an id from each side exposes the usual cause: 7 versus "7", or different id fields.
        return (f"no item id is in both sources (a has {len(a)}, e.g. {next(iter(a))!r}; b has {len(b)}, "
                f"e.g. {next(iter(b))!r}); key both by the same id")
    return "there are no labelled items to compare; pass at least one item labelled on both sides"


# ------------------------------------------------------------------------------------ labels


def unique_labels(values: Iterable[LabelValue]) -> list[LabelValue]:
    return list(dict.fromkeys(values))


def label_sort_key(label: LabelValue) -> tuple[int, float, str]:
    if isinstance(label, bool | int | float):
        return 0, float(label), ""
    return 1, 0.0, str(label)


def _ordered_labels(observed: Iterable[LabelValue], labels: Sequence[LabelValue] | None) -> list[LabelValue]:
    seen = unique_labels(observed)
    if labels is None:
        return sorted(seen, key=label_sort_key)
    order = unique_labels(labels)
    if len(order) != len(labels):
        raise LabelSetError("labels=[...] lists a label twice; list each label once, in order")
    allowed = set(order)
    unknown = [x for x in seen if x not in allowed]
    if unknown:
        raise LabelSetError(f"labels {unknown[:5]!r} occur in the data but not in labels={order!r}; "
                            "add them to labels or recode them")
    return order


def _is_numeric(labels: Iterable[LabelValue]) -> bool:
    return all(isinstance(x, bool | int | float) for x in labels)


def _type_clash_notes(labels: Iterable[LabelValue]) -> list[str]:
    # 1 and "1" are different labels; this is almost always a loading mistake worth flagging.
    spelled = [x for x in labels if not isinstance(x, str)]
    texts = {x for x in labels if isinstance(x, str)}
    clashes = [x for x in spelled if str(x) in texts]
    return [f"labels {x!r} and {str(x)!r} differ only in type; recode one side if they mean the same"
            for x in clashes]


def _table(a: Sequence[LabelValue], b: Sequence[LabelValue], labels: Sequence[LabelValue]) -> np.ndarray:
    index = {label: i for i, label in enumerate(labels)}
    k = len(labels)
    codes = np.fromiter((index[x] * k + index[y] for x, y in zip(a, b, strict=True)), dtype=np.int64,
                        count=len(a))
    return np.bincount(codes, minlength=k * k).reshape(k, k)


# ------------------------------------------------------------------------------- intervals


def _z(confidence: float) -> float:
    if not 0 < confidence < 1:
        raise AgreementError(f"confidence must be between 0 and 1, got {confidence}; use e.g. 0.95")
    return NormalDist().inv_cdf(0.5 + confidence / 2)


def proportion(count: int, total: int, confidence: float = 0.95) -> Proportion:
    """``count / total`` with its Wilson score interval (no value and no interval when total is 0)."""
    if total == 0:
        return Proportion(value=None, count=0, total=0)
    low, high = wilson_interval(count, total, confidence)
    return Proportion(value=count / total, count=count, total=total,
                      ci=Interval(low=low, high=high, method="wilson"))


def percentile_interval(samples: np.ndarray | None, confidence: float) -> Interval | None:
    """The percentile interval of bootstrap replicates (None when too few are defined)."""
    if samples is None or samples.size == 0:
        return None
    finite = samples[np.isfinite(samples)]
    if finite.size == 0 or finite.size < _MIN_DEFINED_SHARE * samples.size:
        return None
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(finite, [tail, 100 - tail])
    if high - low <= 1e-12:
        # Every resample gave one value (a perfect table, say): resampling cannot show the
        # uncertainty there is, and a zero-width interval would claim there is none.
        return None
    return Interval(low=float(low), high=float(high), method="bootstrap-percentile")


def _settings(confidence: float, resamples: int, seed: int | None) -> Settings:
    if resamples < 0:
        raise AgreementError(f"resamples must be 0 (no bootstrap) or more, got {resamples}")
    _z(confidence)
    return Settings(confidence=confidence, resamples=resamples, seed=seed)


def _bootstrap_tables(table: np.ndarray, resamples: int, seed: int | None) -> np.ndarray | None:
    """Resampling n items with replacement, as a multinomial draw on the confusion cells."""
    if resamples == 0:
        return None
    n = int(table.sum())
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(n, table.ravel() / n, size=resamples)
    return draws.reshape(resamples, *table.shape)


@dataclass(frozen=True)
class _ItemStats:
    """Per-item sufficient statistics, stored once per distinct pattern.

    Many-rater statistics are functions of column sums of per-item statistics, so a bootstrap
    replicate is ``draw counts @ stats``. Label data repeats few patterns (three raters and
    three labels allow ten), so keeping one row per pattern makes memory and time independent
    of the number of items, even for ordinal alpha's k x k rows.
    """

    patterns: np.ndarray  # (distinct patterns, d)
    item_pattern: np.ndarray  # (items,) index of each item's pattern

    @classmethod
    def build(cls, rows: np.ndarray, stats_of: Callable[[np.ndarray], np.ndarray]) -> _ItemStats:
        distinct, inverse = np.unique(rows, axis=0, return_inverse=True)
        return cls(stats_of(distinct).astype(float), inverse.reshape(-1))

    def totals(self) -> np.ndarray:
        """Column sums over all items, as a one-row matrix."""
        sums: np.ndarray = np.bincount(self.item_pattern, minlength=len(self.patterns)) @ self.patterns
        return sums[None, :]

    def bootstrap(self, statistic: Callable[[np.ndarray], np.ndarray], resamples: int,
                  seed: int | None) -> np.ndarray | None:
        """The statistic on ``resamples`` item resamples; chunks bound the draw matrix's memory."""
        if resamples == 0:
            return None
        rng = np.random.default_rng(seed)
        n, g = self.item_pattern.size, len(self.patterns)
        chunk = max(1, min(resamples, _BOOTSTRAP_CELLS // n))
        out = []
        for start in range(0, resamples, chunk):
            size = min(chunk, resamples - start)
            drawn = self.item_pattern[rng.integers(0, n, size=(size, n))] + (np.arange(size) * g)[:, None]
            counts = np.bincount(drawn.ravel(), minlength=size * g).reshape(size, g)
            out.append(statistic(counts @ self.patterns))
        return np.concatenate(out)


# ----------------------------------------------------------------------------------- kappa


def _agreement_weights(k: int, weighting: Weighting) -> np.ndarray:
    """Credit for a (row, column) label pair: 1 on the diagonal, less the further apart."""
    if weighting == "none" or k < 2:
        return np.eye(k)
    distance = np.abs(np.subtract.outer(np.arange(k), np.arange(k))) / (k - 1)
    return 1 - (distance if weighting == "linear" else distance**2)


def _kappa_terms(tables: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Observed and chance (weighted) agreement for one table or a stack of them."""
    n = tables.sum(axis=(-2, -1), keepdims=True)
    p = tables / n
    rows, cols = p.sum(axis=-1), p.sum(axis=-2)
    observed = (p * weights).sum(axis=(-2, -1))
    chance = np.einsum("...i,ij,...j->...", rows, weights, cols)
    return observed, chance


def _kappa_values(tables: np.ndarray, weights: np.ndarray) -> np.ndarray:
    observed, chance = _kappa_terms(tables, weights)
    defined = 1 - chance > _DEGENERATE
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(defined, (observed - chance) / (1 - chance), np.nan)


def _kappa_se(table: np.ndarray, weights: np.ndarray, kappa: float) -> float:
    """Large-sample (non-null) standard error of weighted kappa, Fleiss, Cohen & Everitt (1969).

    var = [Σ_ij p_ij (w_ij − (w̄_i· + w̄_·j)(1 − κ))² − (κ − p_e(1 − κ))²] / (n (1 − p_e)²),
    with w̄_i· = Σ_j p_·j w_ij and w̄_·j = Σ_i p_i· w_ij; identity weights give Cohen's kappa.
    """
    n = table.sum()
    p = table / n
    rows, cols = p.sum(axis=1), p.sum(axis=0)
    chance = float(rows @ weights @ cols)
    row_means, col_means = weights @ cols, rows @ weights
    spread = (p * (weights - (row_means[:, None] + col_means[None, :]) * (1 - kappa)) ** 2).sum()
    variance = (spread - (kappa - chance * (1 - kappa)) ** 2) / (n * (1 - chance) ** 2)
    # Rounding can push a zero variance (perfect agreement) a hair below zero.
    return math.sqrt(max(float(variance), 0.0))


def _kappa(table: np.ndarray, weighting: Weighting, boot: np.ndarray | None, confidence: float) -> Kappa:
    weights = _agreement_weights(table.shape[0], weighting)
    value = float(_kappa_values(table, weights))
    if math.isnan(value):
        return Kappa(value=None, weights=weighting)
    n = int(table.sum())
    se = _kappa_se(table, weights, value)
    if n < MIN_KAPPA_ITEMS:
        return Kappa(value=value, weights=weighting, se=se)  # too few items for any interval (see _kappa_notes)
    z = _z(confidence)
    if se > 0:
        ci = Interval(low=max(-1.0, value - z * se), high=min(1.0, value + z * se), method="normal-se")
    else:
        # A zero standard error (every item agreed) is no certainty: bound the observed agreement
        # with Wilson's interval and carry it through kappa at the observed chance agreement.
        observed, chance = (float(x) for x in _kappa_terms(table, weights))
        low, high = wilson_bounds(observed, n, z)
        ci = Interval(low=max(-1.0, (low - chance) / (1 - chance)), high=min(1.0, (high - chance) / (1 - chance)),
                      method="wilson")
    samples = None if boot is None else _kappa_values(boot, weights)
    return Kappa(value=value, weights=weighting, se=se, ci=ci,
                 ci_bootstrap=percentile_interval(samples, confidence))


def _kappa_notes(kappa: Kappa, labels: Sequence[LabelValue]) -> list[str]:
    if kappa.value is not None:
        if kappa.ci is None and len(labels) < MIN_KAPPA_ITEMS:
            return [f"n = {len(labels)}: too few to estimate an interval for kappa (needs at least "
                    f"{MIN_KAPPA_ITEMS} items); label more traces"]
        return []
    return [f"kappa is undefined: both sides give every item the same label ({label_text(labels[0])}), "
            "so chance agreement is 1; report accuracy, or add items of other classes"]


# ---------------------------------------------------------------------------------- binary


def binary_agreement(a: Any, b: Any, positive: LabelValue = True, *, negative: LabelValue | None = None,
                     confidence: float = 0.95, resamples: int = DEFAULT_RESAMPLES,
                     seed: int | None = DEFAULT_SEED) -> BinaryAgreement:
    """Agreement of ``b`` with the reference ``a`` on a two-label task (pass/fail, yes/no).

    ``positive`` names the label whose detection TPR, precision and F1 measure; ``negative`` is
    inferred from the data unless only one label occurs. Balanced accuracy and F1 get bootstrap
    intervals (they are not simple proportions); kappa gets both kinds.
    """
    settings = _settings(confidence, resamples, seed)
    pairs = pair_labels(a, b)
    positive, negative, notes = _binary_labels(unique_labels(chain(pairs.a, pairs.b)), positive, negative)
    table = _table(pairs.a, pairs.b, [negative, positive])
    boot = _bootstrap_tables(table, resamples, seed)
    (tn, fp), (fn, tp) = table.tolist()
    n = pairs.coverage.used
    kappa = _kappa(table, "none", boot, confidence)
    tpr, tnr = proportion(tp, tp + fn, confidence), proportion(tn, tn + fp, confidence)
    notes += _type_clash_notes([negative, positive]) + _kappa_notes(kappa, pairs.a)
    return BinaryAgreement(
        positive=positive, negative=negative, n=n, coverage=pairs.coverage,
        accuracy=proportion(tp + tn, n, confidence), kappa=kappa, tpr=tpr, tnr=tnr,
        precision=proportion(tp, tp + fp, confidence),
        balanced_accuracy=_balanced_accuracy(tpr, tnr, boot, confidence),
        f1=_f1(tp, fp, fn, boot, confidence),
        positive_rate_a=proportion(tp + fn, n, confidence), positive_rate_b=proportion(tp + fp, n, confidence),
        tp=tp, fp=fp, fn=fn, tn=tn,
        confusion=ConfusionMatrix(labels=[negative, positive], counts=table.tolist()),
        settings=settings, notes=notes,
    )


def _binary_labels(observed: list[LabelValue], positive: LabelValue,
                   negative: LabelValue | None) -> tuple[LabelValue, LabelValue, list[str]]:
    if len(observed) > 2:
        raise LabelSetError(f"binary agreement needs two labels, found {len(observed)}: "
                            f"{sorted(observed, key=label_sort_key)[:6]!r}; use categorical_agreement or recode")
    if negative is not None and negative == positive:
        raise LabelSetError(f"positive and negative are the same label {positive!r}; pass two different labels")
    # Report the data's own spelling (1 rather than True) when it equals the requested label.
    positive = next((x for x in observed if x == positive), positive)
    others = [x for x in observed if x != positive]
    if len(others) == 2:
        raise LabelSetError(f"positive label {positive!r} is not among the labels {others!r}; "
                            "pass positive= one of them")
    if negative is not None and others and others[0] != negative:
        raise LabelSetError(f"label {others[0]!r} is neither positive {positive!r} nor negative {negative!r}; "
                            "fix negative= or recode")
    notes: list[str] = []
    if not others:
        notes.append(f"only the positive label {positive!r} occurs; TNR is undefined")
        return positive, negative if negative is not None else _opposite(positive), notes
    if positive not in observed:
        notes.append(f"no item is labelled positive ({positive!r}) on either side; check positive=")
    return positive, others[0], notes


def _opposite(positive: LabelValue) -> LabelValue:
    if isinstance(positive, bool):
        return not positive
    if positive == 1:
        return 0
    return f"not {positive}"


def _balanced_accuracy(tpr: Proportion, tnr: Proportion, boot: np.ndarray | None,
                       confidence: float) -> Statistic:
    if tpr.value is None or tnr.value is None:
        return Statistic(value=None)
    samples = None
    if boot is not None:
        with np.errstate(divide="ignore", invalid="ignore"):
            boot_tpr = boot[:, 1, 1] / (boot[:, 1, 1] + boot[:, 1, 0])
            boot_tnr = boot[:, 0, 0] / (boot[:, 0, 0] + boot[:, 0, 1])
        samples = (boot_tpr + boot_tnr) / 2
    return Statistic(value=(tpr.value + tnr.value) / 2, ci=percentile_interval(samples, confidence))


def _f1(tp: int, fp: int, fn: int, boot: np.ndarray | None, confidence: float) -> Statistic:
    if 2 * tp + fp + fn == 0:
        return Statistic(value=None)
    samples = None
    if boot is not None:
        boot_tp = boot[:, 1, 1]
        with np.errstate(divide="ignore", invalid="ignore"):
            samples = 2 * boot_tp / (2 * boot_tp + boot[:, 0, 1] + boot[:, 1, 0])
    return Statistic(value=2 * tp / (2 * tp + fp + fn), ci=percentile_interval(samples, confidence))


# ----------------------------------------------------------------------------- categorical


def categorical_agreement(a: Any, b: Any, *, labels: Sequence[LabelValue] | None = None,
                          confidence: float = 0.95, resamples: int = DEFAULT_RESAMPLES,
                          seed: int | None = DEFAULT_SEED) -> CategoricalAgreement:
    """Agreement of ``b`` with the reference ``a`` over any number of labels.

    ``labels`` fixes the label order, which the linear and quadratic weighted kappas use as
    the ordinal scale (distance = difference in position). Without it, numeric labels are
    ordered by value; string labels have no order, so the weighted kappas are then omitted.
    """
    settings = _settings(confidence, resamples, seed)
    pairs = pair_labels(a, b)
    order = _ordered_labels(chain(pairs.a, pairs.b), labels)
    table = _table(pairs.a, pairs.b, order)
    boot = _bootstrap_tables(table, resamples, seed)
    kappa = _kappa(table, "none", boot, confidence)
    notes = _type_clash_notes(order) + _kappa_notes(kappa, pairs.a)
    linear = quadratic = None
    if labels is not None or _is_numeric(order):
        linear = _kappa(table, "linear", boot, confidence)
        quadratic = _kappa(table, "quadratic", boot, confidence)
    else:
        notes.append("weighted kappas need an order of the labels; pass labels=[...] if they are ordinal")
    n = pairs.coverage.used
    return CategoricalAgreement(
        labels=order, n=n, coverage=pairs.coverage,
        accuracy=proportion(int(np.trace(table)), n, confidence),
        kappa=kappa, kappa_linear=linear, kappa_quadratic=quadratic,
        per_label=_per_label(table, order, confidence),
        confusion=ConfusionMatrix(labels=order, counts=table.tolist()),
        settings=settings, notes=notes,
    )


def _per_label(table: np.ndarray, order: Sequence[LabelValue], confidence: float) -> list[LabelStats]:
    rows, cols = table.sum(axis=1), table.sum(axis=0)
    return [LabelStats(label=label, count_a=int(rows[i]), count_b=int(cols[i]),
                       recall=proportion(int(table[i, i]), int(rows[i]), confidence),
                       precision=proportion(int(table[i, i]), int(cols[i]), confidence))
            for i, label in enumerate(order)]


# ----------------------------------------------------------------------------- many raters


def fleiss_kappa(ratings: Any, *, counts: bool = False, labels: Sequence[LabelValue] | None = None,
                 confidence: float = 0.95, resamples: int = DEFAULT_RESAMPLES,
                 seed: int | None = DEFAULT_SEED) -> MultiRaterAgreement:
    """Fleiss' kappa for many raters, with a percentile bootstrap interval over items.

    ``ratings`` is one list of labels per item (``None`` entries are dropped), or a dict of
    item id -> labels; with ``counts=True`` it is an items x categories matrix of how many
    raters chose each category. Every item must end up with the same number of ratings (at
    least two): Fleiss' statistic assumes it. For missing ratings use :func:`krippendorff_alpha`.
    """
    settings = _settings(confidence, resamples, seed)
    matrix, order = _count_matrix(ratings, labels) if not counts else _given_counts(ratings, labels)
    n_items, raters = matrix.shape[0], int(matrix[0].sum())

    def stats_of(rows: np.ndarray) -> np.ndarray:
        # Share of agreeing rater pairs on the item, then the category counts.
        agreement = ((rows**2).sum(axis=1) - raters) / (raters * (raters - 1))
        return np.column_stack([agreement, rows])

    def terms(sums: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        shares = sums[:, 1:] / (n_items * raters)
        return sums[:, 0] / n_items, (shares**2).sum(axis=1)

    items = _ItemStats.build(matrix, stats_of)
    observed, chance = (float(x[0]) for x in terms(items.totals()))
    value = float(_fleiss(np.array([observed]), np.array([chance]))[0])
    samples = items.bootstrap(lambda sums: _fleiss(*terms(sums)), resamples, seed)
    notes = [] if math.isfinite(value) else [
        "Fleiss' kappa is undefined: every rating is the same label, so chance agreement is 1"]
    return MultiRaterAgreement(
        kind="fleiss_kappa", value=value if math.isfinite(value) else None,
        ci_bootstrap=percentile_interval(samples, confidence), labels=order,
        n_items=n_items, n_items_used=n_items, n_raters=raters, n_ratings=n_items * raters,
        observed=observed, expected=chance, settings=settings, notes=notes,
    )


def _fleiss(observed: np.ndarray, chance: np.ndarray) -> np.ndarray:
    defined = 1 - chance > _DEGENERATE
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(defined, (observed - chance) / (1 - chance), np.nan)


def _count_matrix(ratings: Any, labels: Sequence[LabelValue] | None) -> tuple[np.ndarray, list[LabelValue]]:
    items = list(ratings.values()) if isinstance(ratings, Mapping) else _as_list(ratings, "ratings")
    cleaned = [[x for x in map(_to_label, _as_list(item, f"item {i}")) if x is not None]
               for i, item in enumerate(items)]
    if not cleaned:
        raise NoOverlapError("there are no items to rate; pass one list of labels per item")
    sizes = sorted({len(item) for item in cleaned})
    if len(sizes) > 1:
        first_odd = next(i for i, item in enumerate(cleaned) if len(item) != len(cleaned[0]))
        raise LengthMismatchError(
            f"items have different numbers of ratings ({sizes}; item 0 has {len(cleaned[0])}, item {first_odd} "
            f"has {len(cleaned[first_odd])}); drop incomplete items or use krippendorff_alpha")
    if sizes[0] < 2:
        raise NoOverlapError(f"each item has {sizes[0]} rating(s); agreement needs at least two raters per item")
    order = _ordered_labels(chain.from_iterable(cleaned), labels)
    index = {label: i for i, label in enumerate(order)}
    matrix = np.zeros((len(cleaned), len(order)), dtype=np.int64)
    for row, item in enumerate(cleaned):
        for label in item:
            matrix[row, index[label]] += 1
    return matrix, order


def _given_counts(ratings: Any, labels: Sequence[LabelValue] | None) -> tuple[np.ndarray, list[LabelValue]]:
    try:
        matrix = np.asarray(ratings)
    except ValueError:  # numpy refuses ragged nested lists
        message = "counts rows have different lengths; give every item one count per category"
        raise LengthMismatchError(message) from None
    if matrix.ndim != 2 or matrix.shape[0] == 0 or matrix.shape[1] == 0:
        raise AgreementError(f"counts must be an items x categories matrix, got shape {matrix.shape}")
    if not np.issubdtype(matrix.dtype, np.number) or np.any(matrix < 0) or np.any(matrix != np.round(matrix)):
        raise AgreementError("counts must be non-negative whole numbers of raters per category")
    matrix = matrix.astype(np.int64)
    totals = np.unique(matrix.sum(axis=1))
    if totals.size > 1:
        raise LengthMismatchError(f"rows sum to different numbers of raters ({totals.tolist()[:6]}); every item "
                                  "needs the same number of ratings, or use krippendorff_alpha")
    if totals[0] < 2:
        raise NoOverlapError(f"each item has {totals[0]} rating(s); agreement needs at least two raters per item")
    order: list[LabelValue] = list(range(matrix.shape[1])) if labels is None else list(labels)
    if len(order) != matrix.shape[1]:
        raise LabelSetError(f"labels names {len(order)} categories but counts has {matrix.shape[1]} columns")
    return matrix, order


def krippendorff_alpha(data: Any, level: Level = "nominal", *, labels: Sequence[LabelValue] | None = None,
                       confidence: float = 0.95, resamples: int = DEFAULT_RESAMPLES,
                       seed: int | None = DEFAULT_SEED) -> MultiRaterAgreement:
    """Krippendorff's alpha over coders x units reliability data with missing values.

    ``data`` is one row per coder, one column per unit, ``None``/NaN where a coder did not
    rate a unit (the layout Krippendorff uses), or a dict of coder -> {unit id: label}.
    ``level`` picks the difference function: nominal (any two different labels differ
    equally), ordinal (ranks, in ``labels`` order or by value) or interval (numeric
    differences). Units with fewer than two values are not pairable and are left out; the
    bootstrap resamples the pairable units.
    """
    settings = _settings(confidence, resamples, seed)
    rows = _coder_rows(data)
    order = _alpha_labels([x for row in rows for x in row if x is not None], level, labels)
    rated = np.array([[x is not None for x in row] for row in rows], dtype=bool)
    pairable = rated.sum(axis=0) >= 2
    if not pairable.any():
        raise NoOverlapError("no unit has values from two or more coders; alpha needs overlapping codings")
    items, terms = _alpha_level(rows, pairable, order, level)
    observed, expected = (float(x[0]) for x in terms(items.totals()))
    value = float(_alpha(np.array([observed]), np.array([expected]))[0])
    samples = items.bootstrap(lambda sums: _alpha(*terms(sums)), resamples, seed)
    notes = [] if math.isfinite(value) else [
        "alpha is undefined: all pairable values are identical, so there is no expected disagreement"]
    return MultiRaterAgreement(
        kind="krippendorff_alpha", value=value if math.isfinite(value) else None, level=level,
        ci_bootstrap=percentile_interval(samples, confidence), labels=order,
        n_items=rated.shape[1], n_items_used=int(pairable.sum()), n_raters=len(rows),
        n_ratings=int(rated[:, pairable].sum()), observed=observed, expected=expected,
        settings=settings, notes=notes,
    )


def _alpha(observed: np.ndarray, expected: np.ndarray) -> np.ndarray:
    defined = expected > _DEGENERATE
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(defined, 1 - observed / expected, np.nan)


def _coder_rows(data: Any) -> list[list[LabelValue | None]]:
    if isinstance(data, Mapping):
        coders = [_coder_mapping(name, row) for name, row in data.items()]
        units = unique_labels(chain.from_iterable(coders))
        return [[_to_label(row.get(unit)) for unit in units] for row in coders]
    if isinstance(data, np.ndarray) and data.ndim != 2:
        raise AgreementError(f"reliability data has shape {data.shape}; pass coders x units (2-d)")
    rows = [[_to_label(x) for x in _as_list(row, "a coder's row")]
            for row in (data.tolist() if isinstance(data, np.ndarray) else _as_list(data, "data"))]
    if not rows:
        raise NoOverlapError("reliability data is empty; pass one row per coder")
    lengths = sorted({len(row) for row in rows})
    if len(lengths) > 1:
        raise LengthMismatchError(f"coder rows have different lengths {lengths}; give every coder one entry per "
                                  "unit, None where not rated")
    return rows


def _coder_mapping(name: Any, row: Any) -> Mapping[Any, Any]:
    if not isinstance(row, Mapping):
        raise AgreementError(f"coder {name!r} maps to a {type(row).__name__}; pass {{coder: {{unit id: label}}}}")
    return row


def _alpha_labels(observed: list[LabelValue], level: Level, labels: Sequence[LabelValue] | None) -> list[LabelValue]:
    order = _ordered_labels(observed, labels)
    if level == "interval" and not _is_numeric(order):
        raise LabelSetError("interval alpha needs numeric labels; recode them or use level='nominal'")
    if level == "ordinal" and labels is None and not _is_numeric(order):
        raise LabelSetError("ordinal alpha needs an order of the labels; pass labels=[...] lowest first")
    if level == "ordinal" and len(order) > _ORDINAL_MAX_LABELS:
        raise LabelSetError(f"ordinal alpha over {len(order)} distinct values; use level='interval' for "
                            "near-continuous scores")
    return order


def _unit_counts(rows: list[list[LabelValue | None]], pairable: np.ndarray, order: Sequence[LabelValue]) -> np.ndarray:
    """Pairable units x labels: how many coders gave each label to each unit."""
    index = {label: i for i, label in enumerate(order)}
    counts = np.zeros((len(rows[0]), len(order)), dtype=np.int64)
    for row in rows:
        for unit, label in enumerate(row):
            if label is not None:
                counts[unit, index[label]] += 1
    pairable_counts: np.ndarray = counts[pairable]
    return pairable_counts


_Terms = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


def _alpha_level(rows: list[list[LabelValue | None]], pairable: np.ndarray, order: Sequence[LabelValue],
                 level: Level) -> tuple[_ItemStats, _Terms]:
    """Per-unit sufficient statistics and the map from their sums to (D_o, D_e).

    Each unit u with m_u values adds n_uc·n_uk / (m_u − 1) to the coincidence of labels c and k
    (minus the self-pairs on the diagonal). Nominal and interval disagreement only need scalar
    summaries of that; ordinal distances depend on the label totals, so it keeps the table.
    """
    if level == "interval":
        return _interval_stats(rows, pairable)
    counts = _unit_counts(rows, pairable, order)
    return (_nominal_stats if level == "nominal" else _ordinal_stats)(counts)


def _nominal_stats(counts: np.ndarray) -> tuple[_ItemStats, _Terms]:
    def stats_of(units: np.ndarray) -> np.ndarray:
        # Ordered pairs of different labels within a unit: m² − Σ_c n_uc², weighted by 1 / (m − 1).
        m = units.sum(axis=1)
        return np.column_stack([(m**2 - (units**2).sum(axis=1)) / (m - 1), units])

    def terms(sums: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        totals = sums[:, 1:]
        n = totals.sum(axis=1)
        return sums[:, 0] / n, (n**2 - (totals**2).sum(axis=1)) / (n * (n - 1))

    return _ItemStats.build(counts, stats_of), terms


def _interval_stats(rows: list[list[LabelValue | None]], pairable: np.ndarray) -> tuple[_ItemStats, _Terms]:
    # Σ_ck n_c n_k (v_c − v_k)² = 2(n·Σ v² − (Σ v)²): per-unit moments replace the k x k table, so
    # near-continuous scores cost O(coders x units). Centring keeps the subtraction well conditioned.
    values = np.array([[np.nan if x is None else float(x) for x in row] for row in rows])[:, pairable]
    values -= np.nanmean(values)
    m = np.sum(~np.isnan(values), axis=0)
    first, second = np.nansum(values, axis=0), np.nansum(values**2, axis=0)
    moments = np.column_stack([m, first, second])

    def stats_of(units: np.ndarray) -> np.ndarray:
        m, first, second = units.T
        return np.column_stack([2 * (m * second - first**2) / (m - 1), units])

    def terms(sums: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n = sums[:, 1]
        return sums[:, 0] / n, 2 * (n * sums[:, 3] - sums[:, 2] ** 2) / (n * (n - 1))

    return _ItemStats.build(moments, stats_of), terms


def _ordinal_stats(counts: np.ndarray) -> tuple[_ItemStats, _Terms]:
    k = counts.shape[1]
    upper = np.triu(np.ones((k, k), dtype=bool))

    def stats_of(units: np.ndarray) -> np.ndarray:
        m = units.sum(axis=1)
        pairs = np.einsum("uc,uk->uck", units, units) - units[:, :, None] * np.eye(k)
        per_pair: np.ndarray = pairs / (m - 1)[:, None, None]
        return per_pair.reshape(len(units), k * k)

    def terms(sums: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        coincidence = sums.reshape(-1, k, k)
        totals = coincidence.sum(axis=2)
        n = totals.sum(axis=1)
        cumulative = np.cumsum(totals, axis=1)
        # Σ_{g=c..k} n_g for c ≤ k, mirrored below the diagonal; minus half the end points.
        span = cumulative[:, None, :] - cumulative[:, :, None] + totals[:, :, None]
        span = np.where(upper, span, np.swapaxes(span, 1, 2))
        distance = (span - (totals[:, :, None] + totals[:, None, :]) / 2) ** 2
        observed = (coincidence * distance).sum(axis=(1, 2)) / n
        expected = np.einsum("bc,bck,bk->b", totals, distance, totals) / (n * (n - 1))
        return observed, expected

    return _ItemStats.build(counts, stats_of), terms


