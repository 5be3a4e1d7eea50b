"""Monitors from files (``monitors/*.yaml`` in the project) and from the store (created through the
API), with errors that name the file, the line and the field, as scenario files do."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from costar._util.yamlfile import YamlDocument, YamlSyntaxError, field_path, load_yaml_file
from costar.monitor.model import MonitorDefinition, MonitorError

MONITORS_DIR = "monitors"
SUFFIXES = (".yaml", ".yml")


@dataclass
class Monitor:
    """A monitor definition and where it came from."""

    definition: MonitorDefinition
    """The definition."""
    source: str
    """The file (``path``) or ``store`` for a monitor created through the API."""
    lines: dict[tuple[str | int, ...], int] = field(default_factory=dict)
    """Line of each field in its file (empty for stored monitors), for errors found after loading."""
    start_line: int | None = None
    """Where its document starts in the file."""

    @property
    def name(self) -> str:
        """The monitor's name."""
        return self.definition.name

    def where(self, loc: Sequence[str | int] = ()) -> str:
        """``file:line`` of a field (its deepest known parent), or the source alone."""
        for n in range(len(loc), 0, -1):
            line = self.lines.get(tuple(loc[:n]))
            if line is not None:
                return f"{self.source}:{line}"
        return f"{self.source}:{self.start_line}" if self.start_line is not None else self.source

    def error(self, message: str, loc: Sequence[str | int] = ()) -> MonitorError:
        """A MonitorError naming this monitor's file and the line of the field at ``loc``."""
        where = self.where(loc)
        file, _, line = where.rpartition(":")
        if file and line.isdigit():
            return MonitorError(message, file=file, line=int(line), field=field_path(loc) or None)
        return MonitorError(message, file=where, field=field_path(loc) or None)


def validation_error(exc: ValidationError, *, file: str, line_of: Any = None,
                     prefix: tuple[str | int, ...] = ()) -> MonitorError:
    err = exc.errors()[0]
    loc = tuple(err["loc"])
    msg = str(err["msg"]).removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        msg = "unknown field; remove it or check its spelling (docs/MONITORING.md lists the fields)"
    elif err["type"] == "missing":
        msg = "required field is missing"
    more = len(exc.errors()) - 1
    if more:
        msg += f" (+{more} more problem{'s' if more > 1 else ''})"
    line = line_of(prefix + loc) if line_of is not None else None
    return MonitorError(msg, file=file, line=line, field=field_path(loc) or None)


def _entries(doc: YamlDocument, file: str) -> Iterable[tuple[Any, tuple[str | int, ...]]]:
    data = doc.data
    if data is None:
        return
    if isinstance(data, list):
        for i, item in enumerate(data):
            yield item, (i,)
        return
    if isinstance(data, dict) and set(data) == {"monitors"}:
        items = data["monitors"]
        if not isinstance(items, list):
            raise MonitorError("'monitors' must be a list of monitors", file=file, line=doc.line_of(("monitors",)))
        for i, item in enumerate(items):
            yield item, ("monitors", i)
        return
    yield data, ()


def load_monitor_file(path: str | Path) -> list[Monitor]:
    """Every monitor in one YAML file (a mapping, a list, or ``monitors: [...]``)."""
    path = Path(path)
    file = str(path)
    try:
        docs = load_yaml_file(path)
    except YamlSyntaxError as exc:
        raise MonitorError(str(exc), file=file, line=exc.line) from None
    except OSError as exc:
        raise MonitorError(f"cannot read: {exc.strerror}; fix the path or its permissions", file=file) from None
    out: list[Monitor] = []
    for doc in docs:
        for entry, prefix in _entries(doc, file):
            if not isinstance(entry, dict):
                raise MonitorError(f"a monitor must be a mapping (name:, filter:, judges: …), got "
                                   f"{type(entry).__name__}", file=file, line=doc.line_of(prefix))
            try:
                definition = MonitorDefinition.model_validate(entry)
            except ValidationError as exc:
                raise validation_error(exc, file=file, line_of=doc.line_of, prefix=prefix) from None
            lines = {loc[len(prefix):]: n for loc, n in doc.lines.items() if loc[:len(prefix)] == prefix}
            out.append(Monitor(definition, file, lines, doc.line_of(prefix)))
    return out


def monitor_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.rglob("*") if p.suffix in SUFFIXES and p.is_file()
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def load_monitors(folder: str | Path | None, stored: Sequence[MonitorDefinition] = ()) -> list[Monitor]:
    """The monitors of a project: every file under ``folder`` (``monitors/``; missing is fine), then
    the ``stored`` ones. Two monitors with one name are an error naming both places."""
    found: list[Monitor] = []
    if folder is not None:
        for path in monitor_files(Path(folder)):
            found.extend(load_monitor_file(path))
    found.extend(Monitor(d, "store") for d in stored)
    seen: dict[str, Monitor] = {}
    for m in found:
        other = seen.get(m.name)
        if other is not None:
            raise m.error(f"monitor {m.name!r} is also defined at {other.where()}; give each monitor its own name",
                          ("name",))
        seen[m.name] = m
    return found


def parse_monitor(data: Any, *, where: str = "<monitor>") -> MonitorDefinition:
    """A monitor definition from data (the API's JSON), or a one-line MonitorError."""
    if not isinstance(data, dict):
        raise MonitorError(f"a monitor must be a mapping, got {type(data).__name__}", file=where)
    try:
        return MonitorDefinition.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc, file=where) from None
