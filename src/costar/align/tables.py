"""Load one label per item from a CSV, TSV, JSON Lines or JSON-array file.

Labels from different tools disagree about quoting: a CSV holds only strings, one JSON file
writes ``1`` and another ``"1"``; :func:`costar.labels.normalise_label` maps them to one canonical
value, so agreement is computed on meaning, not on spelling. Item ids are compared as strings
for the same reason (``7`` in JSON, ``"7"`` in a CSV).

An empty cell or a JSON ``null`` marks an unlabelled item: it is kept as ``None`` so that the
agreement statistics can exclude and count it. A field that is absent altogether is an error,
because it is far more often a typo in the field name than a deliberate gap.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from costar.errors import CostarError
from costar.labels import LabelValue, normalise_label

_INT = re.compile(r"[+-]?\d+")

_PREVIEW = 8


class LabelFileError(CostarError, ValueError):
    """A label file cannot be read as asked; the message starts with ``file:line``."""

    def __init__(self, message: str, *, file: str | Path, line: int | None = None) -> None:
        self.file = str(file)
        self.line = line
        where = self.file if line is None else f"{self.file}:{line}"
        super().__init__(f"{where}: {message}")


class FieldNotFoundError(LookupError):
    """A dotted path does not resolve in a record; the message says where it stopped."""


def normalise_key(value: Any) -> str | None:
    """Item ids compare as stripped strings; integral floats lose their ``.0``; ``None`` if empty."""
    if value is None or isinstance(value, dict | list):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value).strip()
    return text or None


def get_field(record: Mapping[str, Any], path: str) -> Any:
    """Value at a dotted path (``info.label``, ``labels.0``); a literal key with dots wins.

    Raises ``FieldNotFoundError`` describing the level where the path stopped resolving.
    """
    if path in record:
        return record[path]
    node: Any = record
    walked: list[str] = []
    for part in path.split("."):
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        elif isinstance(node, list) and _INT.fullmatch(part) and -len(node) <= int(part) < len(node):
            node = node[int(part)]
        else:
            raise FieldNotFoundError(_describe_miss(path, walked, node))
        walked.append(part)
    return node


def _describe_miss(path: str, walked: list[str], node: Any) -> str:
    where = f" under '{'.'.join(walked)}'" if walked else ""
    if isinstance(node, Mapping):
        return f"no field '{path}'{where}; fields there: {_preview(list(node))}"
    if isinstance(node, list):
        return f"no field '{path}'{where}: it is a list of {len(node)}, index it with a number"
    return f"no field '{path}'{where}: '{'.'.join(walked)}' is a {type(node).__name__}, not an object"


def _preview(names: list[Any]) -> str:
    if not names:
        return "(none)"
    shown = ", ".join(str(n) for n in names[:_PREVIEW])
    return shown + (", …" if len(names) > _PREVIEW else "")


def read_records(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line, record)`` for every record, ``line`` being where the record starts.

    The format comes from the suffix (``.csv``, ``.tsv``, ``.jsonl``/``.ndjson``, ``.json``)
    and, for anything else, from the first character. A ``.json`` file whose text starts with
    ``{`` is read as JSON Lines, since many tools write JSON Lines under that suffix.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise LabelFileError(f"cannot read the file ({exc.strerror}); check the path", file=path) from None
    except UnicodeDecodeError as exc:
        raise LabelFileError(f"not UTF-8 text (byte {exc.start} cannot be decoded); save it as UTF-8",
                             file=path) from None
    kind = _kind(path, text)
    if kind in ("csv", "tsv"):
        yield from _csv_records(text, path, "\t" if kind == "tsv" else ",")
    elif kind == "jsonl":
        yield from _jsonl_records(text, path)
    else:
        yield from _json_array_records(text, path)


def _kind(path: Path, text: str) -> str:
    suffix = path.suffix.lower()
    first = text.lstrip()[:1]
    if suffix in (".csv", ".tsv"):
        return suffix[1:]
    if suffix in (".jsonl", ".ndjson") or first == "{":
        return "jsonl"
    if suffix == ".json" or first == "[":
        return "json"
    return "csv"


def _csv_records(text: str, path: Path, delimiter: str) -> Iterator[tuple[int, dict[str, Any]]]:
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    header = [cell.strip() for cell in next(reader, [])]
    if not any(header):
        raise LabelFileError("no header row; the first line must name the columns", file=path, line=1)
    duplicated = sorted({h for h in header if header.count(h) > 1})
    if duplicated:
        raise LabelFileError(f"column(s) {', '.join(duplicated)} appear twice in the header; rename them",
                             file=path, line=1)
    previous_end = reader.line_num
    for row in reader:
        # A quoted cell may span lines, so a row starts right after the previous row ended.
        start, previous_end = previous_end + 1, reader.line_num
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            raise LabelFileError(
                f"row has {len(row)} cells but the header has {len(header)} columns; "
                "fix the row's quoting or delimiter", file=path, line=start)
        yield start, dict(zip(header, row, strict=True))


def _jsonl_records(text: str, path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise LabelFileError(f"invalid JSON ({exc.msg}); each line must hold one JSON object",
                                 file=path, line=number) from None
        yield number, _object(record, path, number)


def _json_array_records(text: str, path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    # Decoding element by element (instead of json.loads on the whole text) keeps the line
    # each record starts on, so errors can point at it.
    decoder = json.JSONDecoder()
    lines = _LineCounter(text)
    pos = _skip_space(text, 0)
    if text[pos:pos + 1] != "[":
        raise LabelFileError("expected a JSON array of objects or JSON Lines (one object per line)",
                             file=path, line=lines.at(pos))
    pos = _skip_space(text, pos + 1)
    if text[pos:pos + 1] == "]":
        return
    while True:
        line = lines.at(pos)
        try:
            record, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            raise LabelFileError(f"invalid JSON ({exc.msg})", file=path, line=exc.lineno) from None
        yield line, _object(record, path, line)
        pos = _skip_space(text, pos)
        separator = text[pos:pos + 1]
        if separator not in (",", "]"):
            raise LabelFileError("invalid JSON (expected ',' or ']' after an array element)",
                                 file=path, line=lines.at(pos))
        pos = _skip_space(text, pos + 1)
        if separator == "]":
            break
    if pos < len(text):
        raise LabelFileError("unexpected text after the JSON array", file=path, line=lines.at(pos))


class _LineCounter:
    """Line numbers for increasing offsets, counting each stretch of text once (not O(n²))."""

    def __init__(self, text: str) -> None:
        self._text = text
        self._offset = 0
        self._line = 1

    def at(self, pos: int) -> int:
        self._line += self._text.count("\n", self._offset, pos)
        self._offset = pos
        return self._line


def _skip_space(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\r\n":
        pos += 1
    return pos


def _object(record: Any, path: Path, line: int) -> dict[str, Any]:
    if not isinstance(record, dict):
        raise LabelFileError(f"expected a JSON object per record, got a {type(record).__name__}",
                             file=path, line=line)
    return record


def load_labels(path: str | Path, key: str, field: str, *, coerce: bool = True) -> dict[str, LabelValue | None]:
    """Map each item id (the value at ``key``, as a string) to its label (the value at ``field``).

    Both ``key`` and ``field`` may be dotted paths into nested JSON. A record repeating an id
    with the same label is tolerated (exports often duplicate rows); with a different label it
    is an error naming both lines, since silently picking one would bias the agreement.
    """
    labels: dict[str, LabelValue | None] = {}
    first_line: dict[str, int] = {}
    for line, record in read_records(path):
        item = normalise_key(_lookup(record, key, "key", path, line))
        if item is None:
            raise LabelFileError(f"the id at key '{key}' is empty or not a scalar; give every record an id",
                                 file=path, line=line)
        value = _label(_lookup(record, field, "field", path, line), field, coerce, path, line)
        if item in labels:
            if not _same_label(labels[item], value):
                raise LabelFileError(
                    f"id {item!r} appears again with {field}={value!r} but line {first_line[item]} has "
                    f"{labels[item]!r}; remove the duplicate or resolve the conflict", file=path, line=line)
            continue
        labels[item] = value
        first_line[item] = line
    if not labels:
        raise LabelFileError("no records found; the file must hold at least one labelled item", file=path)
    return labels


def _lookup(record: Mapping[str, Any], dotted: str, role: str, path: str | Path, line: int) -> Any:
    try:
        return get_field(record, dotted)
    except FieldNotFoundError as exc:
        fix = ("pass the id field's name as the key" if role == "key"
               else "fix the field name, or add the field with null to mark the item unlabelled")
        raise LabelFileError(f"{exc}; {fix}", file=path, line=line) from None


def _label(raw: Any, field: str, coerce: bool, path: str | Path, line: int) -> LabelValue | None:
    try:
        return normalise_label(raw, coerce=coerce)
    except TypeError:
        hint = f"'{field}.<name>'" if isinstance(raw, dict) else f"'{field}.0'"
        raise LabelFileError(f"field '{field}' holds a {type(raw).__name__}, not a label; "
                             f"point at a scalar inside it, e.g. {hint}", file=path, line=line) from None


def _same_label(first: LabelValue | None, second: LabelValue | None) -> bool:
    return (first is None) == (second is None) and first == second
