"""The server's settings (``server.yaml``): where it listens, which store, how spans find their
project, each project's redaction and retention rules, and the limits that keep memory bounded.

Every setting has a default, so ``costar server`` runs without a file. Command-line options
override the file. Durations are written ``90s``, ``15m``, ``12h``, ``30d`` (or a number of seconds);
sizes ``512KB``, ``200MB``, ``10GB`` (or a number of bytes).
"""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator

from costar._util import units
from costar._util.linear_regex import LinearRegex, LinearRegexError
from costar._util.yamlfile import YamlSyntaxError, load_yaml_file
from costar.errors import ConfigError
from costar.trace.model import PROJECT_KEY

DEFAULT_PORT = 4319
"""The default port: OTLP/HTTP's own (4318) plus one, so a local collector and the server can coexist."""

DEFAULT_PROJECT = "default"
PROJECT_HEADER = "x-costar-project"
PROJECT_ATTRIBUTE = PROJECT_KEY
_PROJECT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")

def parse_duration(value: Any) -> float:
    """``30d`` / ``12h`` / ``15m`` / ``90s`` / ``250ms`` / a number of seconds -> seconds (zero allowed)."""
    return units.parse_duration(value)


def parse_size(value: Any) -> int:
    """``10GB`` / ``512MiB`` / ``200kb`` / a number of bytes -> bytes."""
    return units.parse_size(value)


Duration = Annotated[float, BeforeValidator(parse_duration)]
Size = Annotated[int, BeforeValidator(parse_size)]


def check_project_name(name: str) -> str:
    if not _PROJECT_NAME.match(name):
        raise ValueError(f"{name!r} is not a project name: use letters, digits, '_', '.' or '-' (at most 64, "
                         "starting with a letter or digit)")
    return name


class RedactionRules(BaseModel):
    """PII redaction at ingest, before anything is stored (on top of coSTAR's secret redaction)."""

    model_config = ConfigDict(extra="forbid")

    patterns: dict[str, str] = Field(default_factory=dict)
    """Name -> regular expression, in RE2 syntax (:mod:`costar._util.linear_regex`: linear time). Every
    match in any text (attribute values, nested message contents, event attributes, status messages,
    span names, resource attributes) becomes
    ``[REDACTED:name]``."""
    attributes: list[str] = Field(default_factory=list)
    """Attribute keys (shell globs: ``user.*``, ``*.email``) whose whole value becomes ``[REDACTED]``,
    on spans, events and resources, and keys of nested objects inside attribute values."""

    @field_validator("patterns")
    @classmethod
    def _compiles(cls, v: dict[str, str]) -> dict[str, str]:
        for name, pattern in v.items():
            if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
                raise ValueError(f"pattern name {name!r}: use letters, digits, '_', '.' or '-'")
            try:
                compiled = LinearRegex(pattern)
            except LinearRegexError as exc:
                raise ValueError(f"pattern {name!r} is not a valid regular expression: {exc}") from None
            if compiled.match(""):
                raise ValueError(f"pattern {name!r} matches the empty string, so it would redact nothing useful; "
                                 "make it match at least one character")
        return v

    def merged(self, other: RedactionRules) -> RedactionRules:
        return RedactionRules(patterns={**self.patterns, **other.patterns},
                              attributes=list(dict.fromkeys([*self.attributes, *other.attributes])))

    @property
    def empty(self) -> bool:
        return not self.patterns and not self.attributes


class RetentionRules(BaseModel):
    """How long a project's traces are kept. Metric series (the monitors') are never deleted."""

    model_config = ConfigDict(extra="forbid")

    max_age: Duration | None = None
    """Traces completed longer ago than this are deleted (with their spans, verdicts and blobs)."""
    max_size: Size | None = None
    """When the project's traces take more than this, the oldest are deleted until they fit."""

    @property
    def empty(self) -> bool:
        return self.max_age is None and self.max_size is None


class ProjectRules(BaseModel):
    """One project's rules (``projects: NAME:`` in server.yaml; ``"*"`` applies to every project)."""

    model_config = ConfigDict(extra="forbid")

    redact: RedactionRules = Field(default_factory=RedactionRules)
    retention: RetentionRules = Field(default_factory=RetentionRules)


class Limits(BaseModel):
    """What keeps the server's memory bounded and its answers honest under load."""

    model_config = ConfigDict(extra="forbid")

    max_body: Size = 16 * 1024 * 1024
    """Largest request body, compressed or not (413 beyond it)."""
    max_inflight_bytes: Size = 256 * 1024 * 1024
    """Request bodies being decoded or waiting to be committed at once; beyond it requests get 503."""
    max_open_spans: int = Field(500_000, ge=1000)
    """Spans of traces not yet stored, held in memory; beyond it new requests get 503 while the
    oldest open traces are stored early (as incomplete) to make room."""
    max_open_traces: int = Field(100_000, ge=100)
    """Traces open at once; beyond it the oldest are stored early (incomplete)."""
    retry_after: Duration = 1.0
    """Seconds a refused exporter is told to wait (the Retry-After header)."""


class MonitorSettings(BaseModel):
    """How the server runs the project's monitors (``monitors/*.yaml`` and those created through the
    API; docs/MONITORING.md)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    """Score stored traces with the project's monitors (false: ingest only; ``costar monitor run``
    can score them later)."""
    evaluate_every: Duration = Field(60.0, gt=0)
    """Seconds between evaluations of the series and the alert rules."""
    concurrency: int = Field(8, ge=1, le=256)
    """Judge calls at once, across every monitor (the model layer's own limits apply too)."""
    queue_size: int = Field(10_000, ge=1)
    """Stored traces waiting to be scored; beyond it they are left to the next sweep of the store."""


class ServerConfig(BaseModel):
    """``server.yaml``."""

    model_config = ConfigDict(extra="forbid")

    host: str = "127.0.0.1"
    """Where to listen. Any address other than loopback requires tokens (``require_tokens``)."""
    port: int = Field(DEFAULT_PORT, ge=0, le=65535)
    store: str | None = None
    """A store folder or ``postgresql://`` URL (default: COSTAR_STORE, else costar.yaml's, else .costar)."""
    require_tokens: bool | None = None
    """Refuse requests without a valid token; default: on when listening beyond loopback (and then
    it cannot be turned off)."""
    idle: Duration = 5.0
    """A trace is complete when its root span has ended and no span of it arrived for this long."""
    max_open: Duration = 3600.0
    """A trace still open this long after its first span is stored anyway (marked incomplete)."""
    assembly: Literal["process", "thread"] = "process"
    """Where traces are assembled: ``process`` (a child process the server supervises, so ingest
    and assembly use two cores) or ``thread`` (inside the server process: one process, less memory,
    a single core for everything)."""
    default_project: str = DEFAULT_PROJECT
    """The project of spans that name none (no header, token or resource attribute says)."""
    services: dict[str, str] = Field(default_factory=dict)
    """``service.name`` -> project, for spans whose resource names no ``costar.project``. Keys are
    shell globs (``shop-*``); the first match wins."""
    projects: dict[str, ProjectRules] = Field(default_factory=dict)
    """Per project redaction and retention; the key ``"*"`` applies to every project (a project's
    own patterns add to it; its own retention limits replace it)."""
    retention_interval: Duration = 3600.0
    """How often the server applies the retention rules (0: never; ``costar store prune`` does it)."""
    limits: Limits = Field(default_factory=Limits)
    monitors: MonitorSettings = Field(default_factory=MonitorSettings)
    """The monitors' scoring workers and alert evaluations."""

    @field_validator("default_project")
    @classmethod
    def _default_project(cls, v: str) -> str:
        return check_project_name(v)

    @field_validator("services")
    @classmethod
    def _service_projects(cls, v: dict[str, str]) -> dict[str, str]:
        for project in v.values():
            check_project_name(project)
        return v

    @field_validator("projects")
    @classmethod
    def _project_names(cls, v: dict[str, ProjectRules]) -> dict[str, ProjectRules]:
        for name in v:
            if name != "*":
                check_project_name(name)
        return v

    def project_for_service(self, service: str | None) -> str | None:
        if not service:
            return None
        for pattern, project in self.services.items():
            if fnmatch.fnmatchcase(service, pattern):
                return project
        return None

    def redaction(self, project: str) -> RedactionRules:
        base = self.projects.get("*", ProjectRules()).redact
        own = self.projects.get(project)
        return base.merged(own.redact) if own is not None else base

    def retention(self, project: str) -> RetentionRules:
        own = self.projects.get(project)
        if own is not None and not own.retention.empty:
            return own.retention
        return self.projects.get("*", ProjectRules()).retention


def load_server_config(path: str | Path | None = None) -> ServerConfig:
    """Read ``path`` (default: ``server.yaml`` in the working directory when it exists)."""
    if path is None:
        default = Path("server.yaml")
        if not default.is_file():
            return ServerConfig()
        path = default
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"{file}: no such server configuration file; create it or drop --config")
    try:
        docs = load_yaml_file(file)
    except YamlSyntaxError as exc:
        raise ConfigError(f"{file}:{exc.line or '?'}: {exc}") from None
    doc = docs[0] if docs else None
    data = doc.data if doc is not None else None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{file}: the server configuration must be a mapping of settings")
    try:
        return ServerConfig.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = tuple(err["loc"])
        line = doc.line_of(loc) if doc is not None else "?"
        msg = "unknown setting; check its spelling" if err["type"] == "extra_forbidden" else err["msg"]
        msg = msg.removeprefix("Value error, ")
        raise ConfigError(f"{file}:{line}: {'.'.join(map(str, loc))}: {msg}") from None
