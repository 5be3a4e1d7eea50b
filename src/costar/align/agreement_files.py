"""Agreement between two label files: each file's labels are read (CSV, TSV, JSON Lines or a JSON
array, spellings normalised by :func:`costar.labels.normalise_label`), optionally recoded, paired by
item id and measured with :mod:`costar.align.agreement_stats`. What ``costar agreement`` runs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import Any

from costar.align.agreement_results import BinaryAgreement, CategoricalAgreement
from costar.align.agreement_stats import (
    DEFAULT_RESAMPLES,
    DEFAULT_SEED,
    binary_agreement,
    categorical_agreement,
    label_sort_key,
    pair_labels,
    unique_labels,
)
from costar.align.tables import load_labels
from costar.labels import LabelValue, normalise_label

__all__ = [
    "agreement_between_files",
]

def agreement_between_files(path_a: str | Path, path_b: str | Path, key: str, a_field: str, b_field: str, *,
                            b_key: str | None = None, positive: LabelValue | None = None,
                            labels: Sequence[LabelValue] | None = None,
                            recode_a: Mapping[str, LabelValue | None] | None = None,
                            recode_b: Mapping[str, LabelValue | None] | None = None,
                            confidence: float = 0.95, resamples: int = DEFAULT_RESAMPLES,
                            seed: int | None = DEFAULT_SEED) -> dict[str, Any]:
    """Agreement of file B's labels with file A's (the reference), as a JSON-serialisable dict.

    Items are matched on ``key`` (``b_key`` if B names its id differently). ``recode_a`` and
    ``recode_b`` rename labels before comparing (``{"Tie": 0}``; a ``None`` target marks the
    label as unlabelled so it is excluded and counted). The result is binary when the
    compared items use exactly two labels (or ``positive`` is given), else categorical.
    """
    side_a = _recoded(load_labels(path_a, key, a_field), recode_a, "recode_a")
    side_b = _recoded(load_labels(path_b, b_key or key, b_field), recode_b, "recode_b")
    pairs = pair_labels(side_a.labels, side_b.labels)
    observed = unique_labels(chain(pairs.a, pairs.b))
    options: dict[str, Any] = {"confidence": confidence, "resamples": resamples, "seed": seed}
    result: BinaryAgreement | CategoricalAgreement
    if positive is not None or len(observed) == 2:
        chosen, note = (positive, None) if positive is not None else _guess_positive(observed)
        result = binary_agreement(side_a.labels, side_b.labels, chosen, **options)
        result.notes += [note] if note else []
    else:
        result = categorical_agreement(side_a.labels, side_b.labels, labels=labels, **options)
    result.notes += side_a.notes + side_b.notes
    sources = {"a": side_a.describe(path_a, key, a_field), "b": side_b.describe(path_b, b_key or key, b_field)}
    return {"sources": sources, **result.to_dict()}


@dataclass
class _Side:
    labels: dict[str, LabelValue | None]
    recode: dict[str, Any]
    notes: list[str]

    def describe(self, path: str | Path, key: str, field: str) -> dict[str, Any]:
        return {"path": str(path), "key": key, "field": field, "items": len(self.labels),
                "recode": self.recode}


def _recoded(labels: dict[str, LabelValue | None], recode: Mapping[str, LabelValue | None] | None, name: str) -> _Side:
    if not recode:
        return _Side(labels, {}, [])
    # Keys go through the same normalisation as file values, so "1" in a recode matches a 1.
    table = {normalise_label(source): normalise_label(target) for source, target in recode.items()}
    used = {source for source in table if any(value == source for value in labels.values())}
    notes = [f"{name} entry {source!r} matched no label" for source in table if source not in used]
    mapped = {item: table.get(value, value) if value is not None else None for item, value in labels.items()}
    return _Side(mapped, {str(k): v for k, v in recode.items()}, notes)


_POSITIVE_NAMES = frozenset({"pass", "passed", "yes", "y", "true", "positive", "pos", "correct",
                             "good", "accept", "accepted", "ok", "1"})


def _guess_positive(observed: list[LabelValue]) -> tuple[LabelValue, str | None]:
    named = [x for x in observed if str(x).strip().lower() in _POSITIVE_NAMES]
    if len(named) == 1:
        return named[0], None
    chosen = sorted(observed, key=label_sort_key)[-1]
    return chosen, f"positive label chosen as {chosen!r} (last in sorted order); pass positive= to choose"


