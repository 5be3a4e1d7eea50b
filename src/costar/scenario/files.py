"""Scenario files: YAML loading with errors that name the file, the line and the field; a folder of
files is a suite; selection by id, tag and split; the JSON Schema for editors."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from costar._util.yamlfile import YamlDocument, YamlSyntaxError, field_path, load_yaml_file
from costar.errors import ScenarioError
from costar.scenario.checks import check_json_schema
from costar.scenario.model import Scenario


def _problem(err: Any) -> str:
    if err["type"] == "extra_forbidden":
        return "unknown field; remove it or check its spelling (run 'costar schema' for the fields)"
    if err["type"] == "missing":
        return "required field is missing"
    return str(err["msg"]).removeprefix("Value error, ")


def _format_validation_error(exc: ValidationError, doc: YamlDocument, file: str,
                             prefix: tuple[str | int, ...]) -> ScenarioError:
    """Every problem of a scenario on one line: the first with the file, line and field, each
    other with its own line and field."""
    errors = exc.errors()
    first = errors[0]
    loc = tuple(first["loc"])
    msg = _problem(first)
    for err in errors[1:]:
        other = tuple(err["loc"])
        msg += f"; also line {doc.line_of(prefix + other)} field '{field_path(other)}': {_problem(err)}"
    return ScenarioError(msg, file=file, line=doc.line_of(prefix + loc), field=field_path(loc) or None)


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _scenario_entries(doc: YamlDocument, file: str) -> Iterable[tuple[dict[str, Any], tuple[str | int, ...]]]:
    data = doc.data
    if data is None:
        return
    if isinstance(data, list):
        for i, item in enumerate(data):
            yield item, (i,)
        return
    if isinstance(data, dict) and "scenarios" in data and "prompt" not in data:
        unknown = set(data) - {"scenarios", "defaults"}
        if unknown:
            first = sorted(unknown)[0]
            raise ScenarioError("unknown top-level key beside 'scenarios' (allowed: scenarios, defaults)",
                                file=file, line=doc.line_of((first,)), field=first)
        defaults = data.get("defaults") or {}
        if not isinstance(defaults, dict):
            raise ScenarioError("'defaults' must be a mapping", file=file, line=doc.line_of(("defaults",)))
        items = data["scenarios"]
        if not isinstance(items, list):
            raise ScenarioError("'scenarios' must be a list", file=file, line=doc.line_of(("scenarios",)))
        for i, item in enumerate(items):
            yield (_deep_merge(defaults, item) if isinstance(item, dict) else item), ("scenarios", i)
        return
    yield data, ()


def load_scenario_file(path: str | Path) -> list[Scenario]:
    """Load every scenario in one YAML file; errors name the file, line and field."""
    path = Path(path)
    file = str(path)
    try:
        docs = load_yaml_file(path)
    except YamlSyntaxError as exc:
        raise ScenarioError(str(exc), file=file, line=exc.line) from None
    except OSError as exc:
        raise ScenarioError(f"cannot read: {exc.strerror}", file=file) from None
    except UnicodeDecodeError:
        raise ScenarioError("not UTF-8 text", file=file) from None
    scenarios: list[Scenario] = []
    for doc in docs:
        for entry, prefix in _scenario_entries(doc, file):
            if not isinstance(entry, dict):
                raise ScenarioError(f"a scenario must be a mapping, got {type(entry).__name__}",
                                    file=file, line=doc.line_of(prefix))
            try:
                sc = Scenario.model_validate(entry).with_source(path.resolve())
            except ValidationError as exc:
                raise _format_validation_error(exc, doc, file, prefix) from None
            missing = sc.missing_setup_files()
            if missing:
                idx = next(i for i, f in enumerate(sc.setup.files) if f.src == missing[0])
                raise ScenarioError(
                    f"setup file {missing[0]!r} does not exist (looked in {sc.base_dir})",
                    file=file, line=doc.line_of((*prefix, "setup", "files", idx)),
                    field=f"setup.files[{idx}]")
            outside = sc.setup_files_outside_project()
            if outside:
                idx, src, real = outside[0]
                raise ScenarioError(
                    f"setup file {src!r} is {real}, outside the project folder {sc.project_root}; move it into "
                    "the project, or set 'allow_outside_project: true' under setup",
                    file=file, line=doc.line_of((*prefix, "setup", "files", idx)), field=f"setup.files[{idx}]")
            scenarios.append(sc)
    return scenarios


SCENARIO_SUFFIXES = (".yaml", ".yml")


def discover_scenario_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise ScenarioError("no such file or folder", file=str(path))
    return sorted(p for p in path.rglob("*") if p.suffix in SCENARIO_SUFFIXES and p.is_file()
                  and not any(part.startswith(".") for part in p.relative_to(path).parts))


def load_suite(paths: str | Path | Sequence[str | Path]) -> list[Scenario]:
    """Load scenarios from files and folders (a folder is a suite: every *.yaml below it)."""
    if isinstance(paths, str | Path):
        paths = [paths]
    out: list[Scenario] = []
    where: dict[str, str] = {}
    for raw in paths:
        for file in discover_scenario_files(Path(raw)):
            for sc in load_scenario_file(file):
                if sc.id in where:
                    raise ScenarioError(f"duplicate scenario id {sc.id!r} (also in {where[sc.id]})",
                                        file=str(file), field="id")
                where[sc.id] = str(file)
                out.append(sc)
    return out


def select(scenarios: Iterable[Scenario], *, ids: Sequence[str] = (), tags: Sequence[str] = (),
           exclude_tags: Sequence[str] = (), split: str | None = None) -> list[Scenario]:
    """Filter by id glob (any of), tag (any of), excluded tag, and split."""
    out = []
    for sc in scenarios:
        if ids and not any(fnmatch.fnmatchcase(sc.id, pat) for pat in ids):
            continue
        if tags and not set(tags) & set(sc.tags):
            continue
        if exclude_tags and set(exclude_tags) & set(sc.tags):
            continue
        if split and sc.split != split:
            continue
        out.append(sc)
    return out


def scenario_json_schema() -> dict[str, Any]:
    """A JSON Schema for scenario files: one scenario, a list, or {defaults, scenarios}."""
    schema = Scenario.model_json_schema()
    checks = check_json_schema()
    defs = schema.setdefault("$defs", {})
    defs.update(checks.pop("$defs"))
    for internal in ("CheckSpec", "CheckOptions"):  # parsed forms; files are described by "Check"
        defs.pop(internal, None)
    defs["Check"] = checks
    defs["Expectations"]["properties"]["checks"]["items"] = {"$ref": "#/$defs/Check"}
    defs["Scenario"] = {k: v for k, v in schema.items() if k not in ("$defs",)}
    defs["Scenario"]["properties"]["judges"]["items"] = {
        "anyOf": [{"type": "string"}, {"$ref": "#/$defs/JudgeRef"}]}
    defs["Setup"]["properties"]["files"]["items"] = {"anyOf": [{"type": "string"}, {"$ref": "#/$defs/SetupFile"}]}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "coSTAR scenario file",
        "anyOf": [
            {"$ref": "#/$defs/Scenario"},
            {"type": "array", "items": {"$ref": "#/$defs/Scenario"}},
            {"type": "object", "properties": {"defaults": {"type": "object"},
                                              "scenarios": {"type": "array", "items": {"$ref": "#/$defs/Scenario"}}},
             "required": ["scenarios"], "additionalProperties": False},
        ],
        "$defs": defs,
    }
