"""Human labels in and out of files: export them as CSV or JSON Lines, import them from CSV, TSV,
JSON Lines or a JSON array, every problem reported as ``file:line`` before anything is written.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import math
import os
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from costar.align.labeling import format_value, trace_heads
from costar.align.tables import LabelFileError, normalise_key, read_records
from costar.labels import (
    LabelError,
    ValueType,
    ValueTypeLike,
    same_value,
    validate_label,
)
from costar.store.base import Store
from costar.verdict import Verdict, VerdictSource

__all__ = [
    "LABEL_COLUMNS",
    "ImportResult",
    "export_labels",
    "import_labels",
]

LABEL_COLUMNS = ("trace_id", "name", "value", "labeler", "rationale", "created_at")


def _iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, tz=dt.UTC).isoformat(timespec="microseconds")


def _file_format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    raise LabelError(f"{path}: cannot tell the format from the suffix {suffix or '(none)'!r}; "
                     "name the file *.csv or *.jsonl")


def export_labels(store: Store, path: str | Path, *, name: str | None = None, labeler: str | None = None,
                  trace_ids: Sequence[str] | None = None) -> int:
    """Write labels to ``path`` (``.csv`` or ``.jsonl``, one label per row, columns
    :data:`LABEL_COLUMNS`); returns how many. The file appears whole or not at all."""
    out = Path(path)
    kind = _file_format(out)
    labels = store.labels(name=name, trace_ids=trace_ids, labeler=labeler)
    rows = [{"trace_id": v.trace_id, "name": v.name, "value": v.value, "labeler": v.source_id,
             "rationale": v.rationale, "created_at": _iso(v.created_at)} for v in labels]
    if kind == "csv":
        buf = io.StringIO(newline="")
        writer = csv.DictWriter(buf, fieldnames=LABEL_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows({**r, "value": format_value(r["value"])} for r in rows)
        text = buf.getvalue()
    else:
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return len(rows)


# ----------------------------------------------------------------------------- import


@dataclass
class ImportResult:
    records: int = 0  # rows or lines holding a record
    written: int = 0  # new or changed labels
    unchanged: int = 0  # identical to a stored label
    empty: int = 0  # rows whose value was empty (unlabelled), skipped
    labels: list[Verdict] = field(default_factory=list)

    def format(self) -> str:
        return (f"{self.records} records: {self.written} labels written, {self.unchanged} unchanged, "
                f"{self.empty} without a value skipped")


def _text(record: Mapping[str, Any], key: str) -> str:
    value = record.get(key)
    if value is None:
        return ""
    if isinstance(value, dict | list):
        raise TypeError(key)
    return str(value).strip()


def _created_at(raw: Any) -> float:
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return time.time()
    if isinstance(raw, int | float) and not isinstance(raw, bool) and math.isfinite(raw):
        return float(raw)
    text = str(raw).strip()
    try:
        return float(text)
    except ValueError:
        pass
    stamp = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=dt.UTC)  # exports write UTC; a bare time is read the same way
    return stamp.timestamp()


def _value_types(value_type: ValueTypeLike | Mapping[str, ValueTypeLike]) -> Callable[[str], ValueType]:
    if isinstance(value_type, Mapping):
        table = {k: ValueType.of(v) for k, v in value_type.items()}
        return lambda judge: table.get(judge, ValueType())
    vt = ValueType.of(value_type)
    return lambda judge: vt


def _parse_record(record: Mapping[str, Any], *, name: str | None, labeler: str | None,
                  type_of: Callable[[str], ValueType]) -> Verdict | None:
    """One label from one record; None when the value is empty. Raises LabelError."""
    if "value" not in record:
        raise LabelError(f"no 'value' field; the columns are {', '.join(LABEL_COLUMNS)}")
    try:
        tid = normalise_key(record.get("trace_id"))
        judge = _text(record, "name") or (name or "")
        who = _text(record, "labeler") or (labeler or "")
        rationale = _text(record, "rationale")
    except TypeError as exc:
        raise LabelError(f"field '{exc}' holds a structure; it must be text") from None
    if tid is None:
        raise LabelError("no trace id; every record needs a 'trace_id'")
    if not judge:
        raise LabelError("no judge name; add a 'name' column or give the judge name to import under")
    if name and judge != name:
        raise LabelError(f"the label is for judge {judge!r} but the import is for {name!r}; "
                         "import that judge's labels separately")
    raw = record["value"]
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None
    if not who:
        raise LabelError("no labeler; add a 'labeler' column or give the labeler id to import under")
    try:
        created = _created_at(record.get("created_at"))
    except (ValueError, OverflowError, OSError):
        raise LabelError(f"created_at {record.get('created_at')!r} is not an ISO 8601 time or a Unix "
                         "timestamp; fix it or leave it empty") from None
    vt = type_of(judge)
    try:
        value = vt.parse(raw)
    except LabelError as exc:
        raise LabelError(f"{exc}; fix the value, or import with the judge's value type") from None
    return validate_label(Verdict(name=judge, value=value, rationale=rationale, source=VerdictSource.HUMAN,
                                  source_id=who, trace_id=tid, gating=False, created_at=created), vt)


def import_labels(store: Store, path: str | Path, *, name: str | None = None, labeler: str | None = None,
                  value_type: ValueTypeLike | Mapping[str, ValueTypeLike] = None,
                  replace: bool = False) -> ImportResult:
    """Read labels from a CSV, TSV, JSON Lines or JSON file (columns :data:`LABEL_COLUMNS`) and
    store them, all or nothing.

    ``name`` and ``labeler`` fill records that leave those fields empty (and ``name`` rejects
    records for another judge). ``value_type`` is one type, or a mapping judge name -> type.
    Records with an empty value are skipped as unlabelled. Every other problem — a bad value,
    an unknown trace, two different labels for the same (trace, judge, labeler), a conflict with
    a stored label without ``replace`` — raises :class:`LabelFileError` naming ``file:line``, and
    nothing is written.
    """
    src = Path(path)
    type_of = _value_types(value_type)
    result = ImportResult()
    parsed: list[tuple[int, Verdict]] = []
    first: dict[tuple[str, str, str], tuple[int, Verdict]] = {}
    for line, record in read_records(src):
        result.records += 1
        try:
            label = _parse_record(record, name=name, labeler=labeler, type_of=type_of)
        except LabelError as exc:
            raise LabelFileError(str(exc), file=src, line=line) from None
        if label is None:
            result.empty += 1
            continue
        key = (label.name, str(label.trace_id), str(label.source_id))
        if key in first:
            line0, seen = first[key]
            if same_value(seen.value, label.value) and seen.rationale == label.rationale:
                continue  # exports often repeat rows
            raise LabelFileError(f"trace {key[1]!r} ({key[0]!r}) by {key[2]!r} is labeled {label.value!r} here but "
                                 f"{seen.value!r} on line {line0}; keep one of them", file=src, line=line)
        first[key] = (line, label)
        parsed.append((line, label))
    _check_against_store(store, src, parsed, replace)
    labels = [lab for _, lab in parsed]
    try:
        result.written = store.write_labels(labels, replace=replace)
    except LabelError as exc:  # the store changed between the check and the write
        raise LabelFileError(str(exc), file=src) from None
    result.unchanged = len(labels) - result.written
    result.labels = labels
    return result


def _check_against_store(store: Store, src: Path, parsed: list[tuple[int, Verdict]], replace: bool) -> None:
    """Unknown traces and conflicts with stored labels, reported at the line that causes them."""
    ids = sorted({str(lab.trace_id) for _, lab in parsed})
    known = {t.trace_id for t in trace_heads(store, ids)}
    for line, lab in parsed:
        if lab.trace_id not in known:
            raise LabelFileError(f"no trace {lab.trace_id!r} in the store; check the id, or import the trace first",
                                 file=src, line=line)
    if replace:
        return
    stored: dict[tuple[str, str, str], Verdict] = {}
    for judge in sorted({lab.name for _, lab in parsed}):
        for old in store.labels(name=judge, trace_ids=ids):
            stored[(old.name, str(old.trace_id), str(old.source_id))] = old
    for line, lab in parsed:
        existing = stored.get((lab.name, str(lab.trace_id), str(lab.source_id)))
        if existing is not None and not (same_value(existing.value, lab.value)
                                         and existing.rationale == lab.rationale):
            raise LabelFileError(
                f"{lab.source_id!r} already labeled trace {lab.trace_id!r} for {lab.name!r} as {existing.value!r} "
                f"(this line says {lab.value!r}); import with replace (--replace) to overwrite", file=src, line=line)
