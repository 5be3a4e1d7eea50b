"""Scenarios: test fixtures for agents (initial state, prompt, expectations), YAML or Python."""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from costar._util.yamlfile import YamlDocument, YamlSyntaxError, load_yaml_file
from costar.errors import ScenarioError
from costar.judges.checks import CheckJudge, check_json_schema, parse_check

SCENARIO_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:/@+-]*$"


class SetupFile(BaseModel):
    """A file or folder copied into the workspace (``src``), or a file written from ``content``."""

    model_config = ConfigDict(extra="forbid")

    src: str | None = None
    dest: str | None = None
    content: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> SetupFile:
        if (self.src is None) == (self.content is None):
            raise ValueError("a setup file needs exactly one of 'src' (a path) or 'content' (inline text)")
        if self.content is not None and not self.dest:
            raise ValueError("an inline setup file ('content') needs a 'dest' path")
        if self.dest and (Path(self.dest).is_absolute() or ".." in Path(self.dest).parts):
            raise ValueError(f"'dest' must be a relative path inside the workspace, got {self.dest!r}")
        return self

    @property
    def target(self) -> str:
        return self.dest or Path(self.src or "").name


class Setup(BaseModel):
    model_config = ConfigDict(extra="forbid")

    files: list[SetupFile] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    commands: list[str] = Field(default_factory=list)
    command_timeout: float = Field(120.0, gt=0)

    @field_validator("files", mode="before")
    @classmethod
    def _shorthand(cls, v: Any) -> Any:
        if isinstance(v, list):
            return [{"src": item} if isinstance(item, str) else item for item in v]
        return v

    @field_validator("env", mode="before")
    @classmethod
    def _env_strings(cls, v: Any) -> Any:
        if isinstance(v, dict):
            return {str(k): v2 if isinstance(v2, str) else json.dumps(v2) for k, v2 in v.items()}
        return v


# Each entry is validated (and normalised) by the check registry, so errors carry the entry's index.
CheckSpec = Annotated[dict[str, Any], BeforeValidator(lambda v: parse_check(v).spec())]


class Expectations(BaseModel):
    """``checks`` are deterministic; ``criteria`` are natural-language, kept for model judges."""

    model_config = ConfigDict(extra="forbid")

    checks: list[CheckSpec] = Field(default_factory=list)
    criteria: list[str] = Field(default_factory=list)
    # The implicit "agent_completed" gate; switch off for scenarios that expect a crash.
    require_completion: bool = True

    @field_validator("criteria", mode="before")
    @classmethod
    def _criteria_list(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v


class JudgeRef(BaseModel):
    """A named judge to apply (from the project's ``judges/`` folder, entry points or ``module:attr``)."""

    model_config = ConfigDict(extra="forbid")

    name: str
    gate: bool = True
    options: dict[str, Any] = Field(default_factory=dict)


class Scenario(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=SCENARIO_ID_PATTERN)
    description: str = ""
    tags: list[str] = Field(default_factory=list)
    split: Literal["train", "holdout"] = "train"
    setup: Setup = Field(default_factory=Setup)
    prompt: str | list[str]
    expectations: Expectations = Field(default_factory=Expectations)
    judges: list[JudgeRef] = Field(default_factory=list)
    trials: int = Field(1, ge=1, le=10_000)
    timeout: float = Field(300.0, gt=0, description="seconds per trial")
    metadata: dict[str, Any] = Field(default_factory=dict)

    _source: Path | None = PrivateAttr(default=None)

    @field_validator("judges", mode="before")
    @classmethod
    def _judge_shorthand(cls, v: Any) -> Any:
        if isinstance(v, list):
            return [{"name": j} if isinstance(j, str) else j for j in v]
        return v

    @field_validator("prompt")
    @classmethod
    def _non_empty_prompt(cls, v: str | list[str]) -> str | list[str]:
        if isinstance(v, list) and not v:
            raise ValueError("a list of turns needs at least one turn")
        return v

    @field_validator("tags", mode="before")
    @classmethod
    def _tags_list(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v

    @property
    def turns(self) -> list[str]:
        return [self.prompt] if isinstance(self.prompt, str) else list(self.prompt)

    @property
    def source(self) -> Path | None:
        """The YAML file this scenario was loaded from (None for scenarios built in Python)."""
        return self._source

    @property
    def base_dir(self) -> Path:
        """Setup paths are relative to the scenario file's folder (or the working directory)."""
        return self._source.parent if self._source else Path.cwd()

    def with_source(self, path: Path | None) -> Scenario:
        self._source = path
        return self

    def check_judges(self) -> list[CheckJudge]:
        judges = [parse_check(spec) for spec in self.expectations.checks]
        if self.expectations.require_completion:
            judges.insert(0, parse_check({"agent_completed": True, "name": "agent_completed"}))
        seen: dict[str, int] = {}
        for j in judges:
            n = seen.get(j.name, 0)
            seen[j.name] = n + 1
            if n:
                j.name = f"{j.name} #{n + 1}"
        return judges

    def missing_setup_files(self) -> list[str]:
        return [f.src for f in self.setup.files if f.src and not (self.base_dir / f.src).exists()]


# --------------------------------------------------------------------------- loading


def _format_validation_error(exc: ValidationError, doc: YamlDocument, file: str,
                             prefix: tuple[str | int, ...]) -> ScenarioError:
    err = exc.errors()[0]
    loc = tuple(err["loc"])
    msg = str(err["msg"]).removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        msg = "unknown field; remove it or check its spelling (run 'costar schema' for the fields)"
    elif err["type"] == "missing":
        msg = "required field is missing"
    field = ".".join(str(p) if isinstance(p, str) else f"[{p}]" for p in loc).replace(".[", "[")
    more = len(exc.errors()) - 1
    if more:
        msg += f" (+{more} more problem{'s' if more > 1 else ''})"
    return ScenarioError(msg, file=file, line=doc.line_of(prefix + loc), field=field or None)


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
