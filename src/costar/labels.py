"""Human labels and golden sets: the values a label may take, how spellings of one value are
made canonical, and the models the store keeps and the judge loop works on.

A human label is a :class:`~costar.verdict.Verdict` with source ``human``: the same ``name`` as the
judge it calibrates, ``source_id`` the labeler. The store keeps labels in their own table beside
the verdicts, so a label never shadows the judge's own verdict of the same name, and agreement can
be measured at any time.

Labels from different tools disagree about spelling: a CSV holds only strings, one JSON file
writes ``1`` and another ``"1"``. :func:`normalise_label` maps them to one canonical value
(``1``, ``True``, ``0.5``, ``"tie"``) so labels compare on meaning, not on spelling.

This module sits low in the stack (beside :mod:`costar.verdict`): the store, the agreement
statistics and the alignment code all share these definitions.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Sequence
from typing import Any, Literal, TypeAlias

from pydantic import BaseModel, ConfigDict, Field, model_validator

from costar.errors import CostarError
from costar.verdict import Verdict, VerdictSource

LabelValue: TypeAlias = bool | int | float | str
"""What one label may be: pass/fail, a score or a category."""

_INT = re.compile(r"[+-]?\d+")
# No "nan"/"inf": a label that compares unequal to itself would silently never agree.
_FLOAT = re.compile(r"[+-]?(\d+\.\d*|\.\d+|\d+)([eE][+-]?\d+)?")


def normalise_label(value: Any, *, coerce: bool = True) -> LabelValue | None:
    """Canonical form of one label: ``None`` for unlabelled, else a bool, int, float or str.

    With ``coerce`` (the default) strings that spell a boolean or a number become one, and
    integral floats become ints, so ``"1"``, ``1`` and ``1.0`` are the same label. Raises
    ``TypeError`` for objects and lists, which cannot be labels.
    """
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        if math.isnan(value):
            return None
        return _integral(value)
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        if not coerce:
            return value
        return _parse_text(text)
    raise TypeError(f"a {type(value).__name__} is not a label")


def _parse_text(text: str) -> LabelValue:
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if _INT.fullmatch(text):
        return int(text)
    if _FLOAT.fullmatch(text):
        return _integral(float(text))  # never NaN: the pattern spells digits only
    return text


def _integral(value: float) -> int | float:
    """An integral float as an int, so ``1.0`` and ``1`` are the same label."""
    return int(value) if value.is_integer() else value



_TRUE_WORDS = frozenset({"pass", "passed", "p", "true", "t", "yes", "y", "1", "good", "ok"})
_FALSE_WORDS = frozenset({"fail", "failed", "f", "false", "no", "n", "0", "bad"})


class LabelError(CostarError, ValueError):
    """A label cannot be stored as given; nothing of the batch was written."""


class UnknownTraceError(LabelError):
    """A label names a trace the store does not hold."""


class LabelConflictError(LabelError):
    """A labeler already gave a different label for the same trace and judge."""


class GoldenSetError(CostarError, ValueError):
    """A golden set cannot be built, found or saved as asked."""


class ValueType(BaseModel):
    """The kind of value a judge produces, so a human label can be checked against it.

    ``bool`` is pass/fail, ``number`` a score (optionally bounded), ``label`` one of ``labels``,
    ``any`` any scalar (used when the judge's type is not known).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["bool", "number", "label", "any"] = "any"
    labels: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None

    @model_validator(mode="after")
    def _consistent(self) -> ValueType:
        if self.kind == "label":
            if not self.labels:
                raise ValueError("a 'label' value type needs the list of allowed labels")
            if len(set(self.labels)) != len(self.labels) or any(not x.strip() for x in self.labels):
                raise ValueError("labels must be distinct, non-empty strings")
        elif self.labels:
            raise ValueError(f"labels only apply to the 'label' kind, not '{self.kind}'")
        if self.kind != "number" and (self.minimum is not None or self.maximum is not None):
            raise ValueError("minimum/maximum only apply to the 'number' kind")
        return self

    @classmethod
    def of(cls, spec: ValueTypeLike) -> ValueType:
        """``"bool"``, ``"number"``, ``"any"``/None, a list of labels, or a ValueType."""
        if isinstance(spec, ValueType):
            return spec
        if spec is None:
            return cls()
        if isinstance(spec, str):
            match spec:
                case "bool" | "number" | "any":
                    return cls(kind=spec)
            raise LabelError(f"unknown value type {spec!r}; use 'bool', 'number', 'any' or a list of labels")
        try:
            return cls(kind="label", labels=tuple(str(x) for x in spec))
        except ValueError as exc:
            raise LabelError(f"invalid list of labels: {_first_error(exc)}") from None

    def describe(self) -> str:
        if self.kind == "bool":
            return "pass/fail (true or false)"
        if self.kind == "number":
            lo = "" if self.minimum is None else f" ≥ {self.minimum:g}"
            hi = "" if self.maximum is None else f" ≤ {self.maximum:g}"
            return "a number" + (f"{lo}{' and' if lo and hi else ''}{hi}" if lo or hi else "")
        if self.kind == "label":
            return "one of " + ", ".join(self.labels)
        return "a boolean, number or text"

    def check(self, value: Any) -> LabelValue:
        """A typed value (bool, number, str) as this type's canonical value; raises LabelError."""
        if value is None or (isinstance(value, float) and not math.isfinite(value)):
            raise LabelError(f"expected {self.describe()}, got {value!r}")
        if self.kind == "bool":
            if isinstance(value, bool):
                return value
        elif self.kind == "number":
            if isinstance(value, int | float) and not isinstance(value, bool):
                return self._in_range(int(value) if isinstance(value, float) and value.is_integer() else value)
        elif self.kind == "label":
            if isinstance(value, str) and value in self.labels:
                return value
        elif isinstance(value, bool | int | float | str):
            if isinstance(value, str) and not value.strip():
                raise LabelError(f"expected {self.describe()}, got an empty text")
            return value
        raise LabelError(f"expected {self.describe()}, got {value!r}")

    def parse(self, raw: Any) -> LabelValue:
        """Like :meth:`check`, but also accepts text from a CSV cell, a form or a prompt ("pass", "3")."""
        if not isinstance(raw, str):
            if self.kind == "bool" and isinstance(raw, int) and not isinstance(raw, bool) and raw in (0, 1):
                return bool(raw)
            if self.kind == "label" and isinstance(raw, int | float) and not isinstance(raw, bool):
                raw = str(normalise_label(raw))
            else:
                return self.check(raw)
        text: str = raw.strip()
        if not text:
            raise LabelError(f"expected {self.describe()}, got an empty value")
        if self.kind == "bool":
            low = text.lower()
            if low in _TRUE_WORDS or low in _FALSE_WORDS:
                return low in _TRUE_WORDS
        elif self.kind == "number":
            number = normalise_label(text)
            if isinstance(number, int | float) and not isinstance(number, bool):
                return self.check(number)
        elif self.kind == "label":
            if text in self.labels:
                return text
            folded = [x for x in self.labels if x.casefold() == text.casefold()]
            if len(folded) == 1:
                return folded[0]
        else:
            return self.check(normalise_label(text))
        raise LabelError(f"expected {self.describe()}, got {text[:80]!r}")

    def _in_range(self, number: int | float) -> int | float:
        if (self.minimum is not None and number < self.minimum) or (
                self.maximum is not None and number > self.maximum):
            raise LabelError(f"expected {self.describe()}, got {number!r}")
        return number


ValueTypeLike: TypeAlias = ValueType | str | Sequence[str] | None


def _first_error(exc: ValueError) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        return str(errors()[0].get("msg", exc)).removeprefix("Value error, ")
    return str(exc)


def same_value(a: Any, b: Any) -> bool:
    """Equality that keeps ``True`` and ``1`` apart (Python's ``==`` does not)."""
    return isinstance(a, bool) == isinstance(b, bool) and a == b


def validate_label(label: Verdict, value_type: ValueType | None = None) -> Verdict:
    """Check one label on its own (no store access) and return it in canonical form.

    Canonical: source human, labeler stripped, value checked against ``value_type`` (when
    given), ``passed`` set from a boolean value.
    """
    where = f"label for trace {label.trace_id!r} ({label.name!r})"
    if not label.trace_id or not label.trace_id.strip():
        raise LabelError(f"label for {label.name!r} has no trace id; give the id of a stored trace")
    if not label.name or not label.name.strip():
        raise LabelError(f"label for trace {label.trace_id!r} has no name; use the name of the judge it calibrates")
    if label.source != VerdictSource.HUMAN:
        raise LabelError(f"{where} has source {label.source.value!r}; labels come from humans (source 'human'), "
                         "judge verdicts go through write_verdicts")
    labeler = (label.source_id or "").strip()
    if not labeler:
        raise LabelError(f"{where} has an empty labeler id; give who labeled it (a name or email)")
    if label.error is not None:
        raise LabelError(f"{where} carries an error; a human label is a value, not a judge failure")
    try:
        value = (value_type or ValueType()).check(label.value)
    except LabelError as exc:
        raise LabelError(f"{where}: {exc}; fix the value, or the value type if the judge's is different") from None
    passed = value if isinstance(value, bool) else label.passed
    if labeler == label.source_id and same_value(value, label.value) and passed == label.passed:
        return label
    return label.model_copy(update={"source_id": labeler, "value": value, "passed": passed})


# ----------------------------------------------------------------------------- golden sets

Split = Literal["train", "validation", "test"]
SPLITS: tuple[Split, Split, Split] = ("train", "validation", "test")


class GoldenExample(BaseModel):
    """One trace of a golden set with its reference label (the labelers' consensus)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    trace_id: str
    label: LabelValue
    split: Split
    labelers: tuple[str, ...] = ()


class GoldenSetInfo(BaseModel):
    """One version of a golden set, without its examples (cheap to list)."""

    model_config = ConfigDict(extra="forbid")

    name: str
    version: int
    judge_name: str
    created_at: float
    size: int
    note: str = ""


class GoldenSet(BaseModel):
    """A named, versioned set of human-labeled traces for one judge, split train/validation/test.

    Versions are immutable snapshots: a later relabel never changes what an earlier version says.
    """

    model_config = ConfigDict(extra="forbid")

    name: str
    version: int = 1
    judge_name: str
    value_type: ValueType = Field(default_factory=ValueType)
    seed: int = 0
    fractions: tuple[float, float, float] = (0.6, 0.2, 0.2)
    min_per_class: int = 1
    # Only this labeler's labels count when set; otherwise the labelers' majority is the reference.
    labeler: str | None = None
    created_at: float = Field(default_factory=time.time)
    note: str = ""
    examples: list[GoldenExample] = Field(default_factory=list)
    # Members of earlier versions that were removed, with the split they had: re-adding one puts it
    # back there, so an example a judge was tuned on cannot come back as a test example.
    retired: dict[str, Split] = Field(default_factory=dict)

    def split(self, which: Split) -> list[GoldenExample]:
        return [e for e in self.examples if e.split == which]

    def trace_ids(self, split: Split | None = None) -> list[str]:
        return [e.trace_id for e in self.examples if split is None or e.split == split]

    def labels(self, split: Split | None = None) -> dict[str, LabelValue]:
        """trace id -> reference label, the shape the agreement statistics take."""
        return {e.trace_id: e.label for e in self.examples if split is None or e.split == split}

    def counts(self) -> dict[Split, dict[str, int]]:
        """Examples per split and label (labels as text, for printing)."""
        out: dict[Split, dict[str, int]] = {s: {} for s in SPLITS}
        for e in self.examples:
            key = str(e.label).lower() if isinstance(e.label, bool) else str(e.label)
            out[e.split][key] = out[e.split].get(key, 0) + 1
        return out

    def info(self) -> GoldenSetInfo:
        return GoldenSetInfo(name=self.name, version=self.version, judge_name=self.judge_name,
                             created_at=self.created_at, size=len(self.examples), note=self.note)
