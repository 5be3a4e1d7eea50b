"""High-level CSV operations: one call does what would otherwise take a script.

They exist so a small model can finish a task with one well-chosen call instead of writing code.
Each returns a short summary with the numbers an answer needs, and the files they write keep the
input's header. count_by and profile_csv read row by row and keep only counts (the huge-file
scenario has 300,000 rows); the cleaning tools hold the rows they are about to write.
"""

from __future__ import annotations

import csv
import json
import statistics
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from analyst.errors import ToolError

# Spellings of "no value" seen in real exports; they count as missing and are never parsed as numbers.
MISSING = frozenset({"", "na", "n/a", "nan", "null", "none", "unknown", "-"})
CURRENCY = "$€£¥"


def is_missing(value: str) -> bool:
    return value.strip().lower() in MISSING


def parse_number(value: str) -> float:
    """``"$1,200.50"`` -> 1200.5; raises ValueError for text that is not a number."""
    text = value.strip().strip(CURRENCY).replace(",", "").replace(" ", "")
    return float(text)


def format_number(x: float) -> str:
    return str(round(x, 2))


def _rows(path: Path) -> Iterator[list[str]]:
    with open(path, newline="", encoding="utf-8", errors="replace") as f:
        yield from csv.reader(f)


def read_header(path: Path) -> list[str] | None:
    """The header row, or None for a file with no header (empty)."""
    return next(_rows(path), None)


def _column(header: list[str], column: str, name: str) -> int:
    stripped = [h.strip() for h in header]
    if column in stripped:
        return stripped.index(column)
    lowered = [h.lower() for h in stripped]
    if column.strip().lower() in lowered:
        return lowered.index(column.strip().lower())
    raise ToolError(f"{name} has no column {column}; its columns are: {', '.join(stripped)}")


def _write(path: Path, header: list[str], rows: list[list[str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def _require_header(src: Path, name: str) -> tuple[list[str], list[list[str]]]:
    rows = _rows(src)
    header = next(rows, None)
    if header is None:
        raise ToolError(f"{name} is empty: it has no header and no rows")
    return header, [r for r in rows if r]


def _distinct_output(src: Path, out: Path, out_name: str) -> None:
    if src.resolve() == out.resolve():
        raise ToolError(f"output {out_name} is the input file; write to a new file such as "
                        f"{src.stem}_clean.csv so the original data is kept")


# --------------------------------------------------------------------------- profiling


@dataclass
class _ColumnStats:
    missing: int = 0
    ints: int = 0
    floats: int = 0
    dates: int = 0
    texts: int = 0
    numbers: list[float] = field(default_factory=list)

    def add(self, value: str) -> None:
        if is_missing(value):
            self.missing += 1
            return
        raw = value.strip()
        try:
            int(raw)
            self.ints += 1
            self.numbers.append(float(raw))
            return
        except ValueError:
            pass
        try:
            self.numbers.append(parse_number(raw))
            self.floats += 1
            return
        except ValueError:
            pass
        try:
            date.fromisoformat(raw)
            self.dates += 1
        except ValueError:
            self.texts += 1

    @property
    def type(self) -> str:
        if self.texts or (self.dates and self.numbers):
            return "text"
        if self.dates:
            return "date"
        if self.floats:
            return "float"
        return "int" if self.ints else "empty"

    def summary(self) -> dict[str, float]:
        if self.type not in ("int", "float") or not self.numbers:
            return {}
        return {"min": min(self.numbers), "median": statistics.median(self.numbers),
                "mean": round(statistics.fmean(self.numbers), 2), "max": max(self.numbers)}


def profile(src: Path, name: str, out: Path | None = None, out_name: str = "") -> str:
    rows = _rows(src)
    header = next(rows, None)
    if header is None:
        if out is not None:
            out.write_text(json.dumps({"rows": 0, "columns": [], "missing": {}, "empty": True}, indent=2))
        return f"{name} is empty: it has no header and no rows, so there is nothing to profile."
    header = [h.strip() for h in header]
    stats = [_ColumnStats() for _ in header]
    count = 0
    for row in rows:
        if not row:
            continue
        count += 1
        for i, s in enumerate(stats):
            s.add(row[i] if i < len(row) else "")
    doc = {"rows": count, "columns": header,
           "missing": {c: s.missing for c, s in zip(header, stats, strict=True)},
           "types": {c: s.type for c, s in zip(header, stats, strict=True)},
           "numeric": {c: s.summary() for c, s in zip(header, stats, strict=True) if s.summary()}}
    lines = [f"{name}: {count} rows, {len(header)} columns."]
    for c, s in zip(header, stats, strict=True):
        nums = ", ".join(f"{k} {v:g}" for k, v in s.summary().items())
        lines.append(f"- {c}: {s.type}, {s.missing} missing" + (f", {nums}" if nums else ""))
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(doc, indent=2))
        lines.append(f"Wrote {out_name}.")
    return "\n".join(lines)


# --------------------------------------------------------------------------- cleaning


def drop_duplicates(src: Path, name: str, out: Path, out_name: str) -> str:
    _distinct_output(src, out, out_name)
    header, body = _require_header(src, name)
    seen: set[tuple[str, ...]] = set()
    kept: list[list[str]] = []
    for row in body:
        key = tuple(row)
        if key not in seen:
            seen.add(key)
            kept.append(row)
    _write(out, header, kept)
    removed = len(body) - len(kept)
    return f"removed {removed} duplicate rows from {name} (kept {len(kept)} of {len(body)}); wrote {out_name}"


def fill_missing(src: Path, name: str, column: str, strategy: str, out: Path, out_name: str) -> str:
    if strategy not in ("median", "mean"):
        raise ToolError(f"strategy must be median or mean, not {strategy}")
    _distinct_output(src, out, out_name)
    header, body = _require_header(src, name)
    i = _column(header, column, name)
    values: list[float] = []
    for row in body:
        if i < len(row) and not is_missing(row[i]):
            try:
                values.append(parse_number(row[i]))
            except ValueError:
                raise ToolError(f"column {header[i]} has a value that is not a number ({row[i]}); "
                                "convert it with convert_numeric first") from None
    if not values:
        raise ToolError(f"column {header[i]} has no numeric values to compute a {strategy} from")
    fill = statistics.median(values) if strategy == "median" else statistics.fmean(values)
    filled = 0
    for row in body:
        row.extend([""] * (len(header) - len(row)))
        if is_missing(row[i]):
            row[i] = format_number(fill)
            filled += 1
    _write(out, header, body)
    return (f"filled {filled} missing {header[i]} values in {name} with the {strategy} ({format_number(fill)}); "
            f"wrote {out_name}")


def convert_numeric(src: Path, name: str, column: str, out: Path, out_name: str) -> str:
    _distinct_output(src, out, out_name)
    header, body = _require_header(src, name)
    i = _column(header, column, name)
    converted = unknown = 0
    unparsed: list[str] = []
    for row in body:
        row.extend([""] * (len(header) - len(row)))
        if is_missing(row[i]):
            row[i] = ""  # "unknown" must stay unknown: a zero would be a made-up value
            unknown += 1
            continue
        try:
            row[i] = str(parse_number(row[i]))
            converted += 1
        except ValueError:
            unparsed.append(row[i])
            row[i] = ""
    note = f"; {len(unparsed)} unreadable values left empty ({', '.join(unparsed[:3])})" if unparsed else ""
    _write(out, header, body)
    return (f"converted {converted} {header[i]} values in {name} to numbers; {unknown} unknown values left "
            f"empty{note}; wrote {out_name}")


def count_by(src: Path, name: str, column: str, out: Path, out_name: str) -> str:
    _distinct_output(src, out, out_name)
    rows = _rows(src)
    header = next(rows, None)
    if header is None:
        raise ToolError(f"{name} is empty: it has no header and no rows")
    i = _column(header, column, name)
    counts: Counter[str] = Counter()
    for row in rows:
        if row:
            counts[row[i] if i < len(row) else ""] += 1
    ordered = sorted(counts.items())
    _write(out, [header[i].strip(), "count"], [[k, str(v)] for k, v in ordered])
    shown = ", ".join(f"{k} {v}" for k, v in ordered[:20]) + (", …" if len(ordered) > 20 else "")
    return (f"counted {sum(counts.values())} rows of {name} in {len(ordered)} groups by {header[i].strip()} "
            f"(total {sum(counts.values())}): {shown}; wrote {out_name}")
