"""The project file (``costar.yaml``): where the suite, the agent and the store are."""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from costar._util.yamlfile import YamlDocument, YamlSyntaxError, load_yaml_file
from costar.errors import ConfigError, ConfigFileError
from costar.pricing import PriceError, PriceTable, load_price_table, model_name_problem

CONFIG_NAMES = ("costar.yaml", "costar.yml")

# Where the store is (costar.store.location opens it): a folder, or a URL for a database store.
ENV_VAR = "COSTAR_STORE"
DEFAULT_FOLDER = ".costar"
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def is_url(location: str | os.PathLike[str] | None) -> bool:
    """Whether a store ``location`` is a URL (a database store) rather than a folder."""
    return isinstance(location, str) and _URL.match(location) is not None


def from_environment(location: str | os.PathLike[str] | None) -> str | os.PathLike[str] | None:
    """A store ``location`` when given, else ``COSTAR_STORE`` when set, else None."""
    if location is not None and str(location) != "":
        return location
    return os.environ.get(ENV_VAR) or None


class RefineConfig(BaseModel):
    """How ``costar refine`` may change the agent."""

    model_config = ConfigDict(extra="forbid")

    agent_dir: str = "."  # relative to the project folder; edits anywhere else reject an attempt
    components: list[str] = Field(default_factory=list)  # globs (in agent_dir) the built-in assistant may edit
    assistant: dict[str, Any] | str | None = None
    # Scenarios left out of refinement (e.g. known failures no agent change is meant to fix).
    exclude_tags: list[str] = Field(default_factory=list)
    iterations: int = Field(3, ge=1, le=100)
    trials: int | None = Field(None, ge=1)
    budget_usd: float | None = Field(None, gt=0)
    budget_seconds: float | None = Field(None, gt=0)
    # The significance level an attempt must reach to be accepted (one-sided Boschloo test over
    # the failing scenarios' trials; docs/STATISTICS.md).
    alpha: float = Field(0.05, gt=0, lt=1)


_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def expand_vars(text: str, where: str) -> str:
    """``${NAME}`` replaced by the environment variable, so tokens stay out of costar.yaml."""
    def value(m: re.Match[str]) -> str:
        if m.group(1) not in os.environ:
            raise ConfigError(f"{where} uses ${{{m.group(1)}}} but the environment variable {m.group(1)} is not "
                              "set; export it")
        return os.environ[m.group(1)]

    return _VAR.sub(value, text)


class McpServerConfig(BaseModel):
    """An MCP server the agent depends on (``mcp_servers:`` in costar.yaml): snapshotted by
    ``costar mcp snapshot NAME`` and by the nightly workflow, so changes to its tools are caught."""

    model_config = ConfigDict(extra="forbid")

    command: list[str] | str | None = None
    """Started over stdio (``python`` means coSTAR's own interpreter); relative paths are relative to
    the project folder."""
    url: str | None = None
    """A streamable HTTP endpoint instead of a command."""
    env: dict[str, str] = Field(default_factory=dict)
    headers: dict[str, str] = Field(default_factory=dict)
    """HTTP headers (e.g. ``Authorization: Bearer ${MCP_TOKEN}``); ``${VAR}`` reads the environment."""
    cwd: str | None = None
    timeout: float = Field(30.0, gt=0)

    @model_validator(mode="after")
    def _one_target(self) -> McpServerConfig:
        if (self.command is None) == (self.url is None):
            raise ValueError("give either 'command' (stdio) or 'url' (streamable HTTP)")
        return self

    def argv(self) -> list[str]:
        cmd = self.command or []
        return shlex.split(cmd) if isinstance(cmd, str) else list(cmd)


class SecretsConfig(BaseModel):
    """What coSTAR does with secret values it finds in what an agent leaves behind.

    Secret values are the literal values of credential-like environment variables the agent can see
    (names with KEY, TOKEN, SECRET, PASSWORD, …) plus well-known credential shapes. They are always
    redacted from traces, artifact paths, text artifacts and the scenario copies kept with a run."""

    model_config = ConfigDict(extra="forbid")

    drop_binary_artifacts: bool = False
    """Binary workspace files holding a secret value cannot be redacted: they are stored flagged
    (``holds_secret``) unless this is true, then they are not stored at all (the trace says so)."""


class ProjectConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    suite: list[str] = Field(default_factory=list)
    agent: dict[str, Any] | str | None = None
    # A folder (the embedded SQLite store) or a postgresql:// URL; COSTAR_STORE overrides it.
    store: str = ".costar"
    # This machine's folder for local state when the store is a database (workspaces, the blob
    # cache, judge versions); default .costar beside this file. A folder store is its own.
    local_dir: str | None = None
    concurrency: int = Field(4, ge=1, le=1024)
    # Where trials (and `costar assess` judges) run: "local" (default), "ray", "ray:ADDRESS" or a mapping
    # {type: ray, address: …, max_retries: …}; --executor overrides it. See docs/SCALING.md.
    executor: str | dict[str, Any] | None = None
    trials: int | None = Field(None, ge=1)
    timeout: float | None = Field(None, gt=0)
    judges_dir: str = "judges"
    # Judges every scenario gets, as if each listed them (a name, or {name, options, gate}); a
    # scenario that lists one itself keeps its own options.
    judges: list[str | dict[str, Any]] = Field(default_factory=list)
    # Monitor definitions (costar monitor; docs/MONITORING.md), relative to this file's folder.
    monitors_dir: str = "monitors"
    # models.judge: the default model of judges that name none (else COSTAR_JUDGE_MODEL, else local:/smollm2).
    models: dict[str, Any] = Field(default_factory=dict)
    refine: RefineConfig = Field(default_factory=RefineConfig)
    mcp_servers: dict[str, McpServerConfig] = Field(default_factory=dict)
    secrets: SecretsConfig = Field(default_factory=SecretsConfig)
    # Judge-written code (the agentic judges' run_python) runs in a bubblewrap sandbox; where there is
    # none, it is refused unless this is true (then it runs with resource limits only, and verdicts say so).
    allow_unsandboxed_code: bool = False
    # Keys are checked when the prices are parsed, not here, so a model name YAML read as a number
    # (``1:``) is refused with its line and the fix (quote it) rather than pydantic's "prices.str".
    prices: str | dict[Any, Any] | None = None
    """Model prices that extend or override the built-in table: a price file (YAML/JSON, relative to
    this file) or a mapping in the price-file format (model -> {input, output, cache_read, …} in USD per
    1M tokens). Every cost of the project's runs uses them: SDK capture, spans received over
    OpenTelemetry, the judges' model calls (docs/CONVENTIONS.md "Tokens and cost")."""

    # Where the file was found; relative paths in it are relative to this folder.
    root: Path = Field(default_factory=Path.cwd, exclude=True)

    _price_table: PriceTable | None = PrivateAttr(None)

    @field_validator("prices", mode="before")
    @classmethod
    def _prices_shape(cls, v: Any) -> Any:
        if v is None or isinstance(v, str | dict):
            return v
        raise ValueError(f"must be a price file path (relative to costar.yaml) or a mapping of model names to "
                         f"{{input: <USD per 1M tokens>, output: <USD per 1M tokens>}}, not a {type(v).__name__}")

    @field_validator("suite", mode="before")
    @classmethod
    def _suite_list(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v

    def path(self, p: str | Path) -> Path:
        p = Path(p)
        return p if p.is_absolute() else self.root / p

    def store_location(self, override: str | Path | None = None) -> str:
        """Where the store is: ``override`` (``--store``), else COSTAR_STORE, else ``store`` (a folder
        in it is relative to this file's folder), as a folder path or a URL."""
        where = from_environment(override)
        if where is not None:  # given on the command line or in the environment: relative to the cwd
            return str(where)
        return self.store if is_url(self.store) else str(self.path(self.store))

    def local_path(self, override: str | Path | None = None) -> Path:
        """The local folder of the store at ``store_location(override)``: the store itself for a
        folder, else ``local_dir`` (default ``.costar`` beside this file) for a database."""
        where = self.store_location(override)
        if not is_url(where):
            return Path(where)
        return self.path(self.local_dir or ".costar")

    @property
    def store_path(self) -> Path:
        """The local folder of the configured store (see :meth:`local_path`)."""
        return self.local_path()

    def price_table(self) -> PriceTable:
        """The project's prices: the built-in table extended by ``prices:`` (parsed once; ConfigError
        when an entry is malformed, which :func:`load_config` reports with the file and line)."""
        if self._price_table is None:
            self._price_table = self._load_prices()
        return self._price_table

    def _load_prices(self) -> PriceTable:
        if self.prices is None:
            return PriceTable()
        if isinstance(self.prices, dict):
            return PriceTable().with_overrides(self.prices, source="costar.yaml prices")
        return load_price_table(self.path(self.prices))

    def agent_spec(self) -> dict[str, Any] | str | None:
        """The agent mapping with ``cwd`` defaulting to the project folder."""
        if isinstance(self.agent, dict):
            spec = dict(self.agent)
            spec["cwd"] = str(self.path(spec.get("cwd", ".")))
            return spec
        return self.agent


def find_config(start: Path | None = None) -> Path | None:
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        for name in CONFIG_NAMES:
            if (folder / name).is_file():
                return folder / name
        if (folder / ".git").exists():
            break
    return None


def load_config(path: str | Path | None = None) -> ProjectConfig:
    """Load ``path`` (or the nearest costar.yaml); no file means defaults rooted at the cwd."""
    file = Path(path) if path else find_config()
    if file is None:
        return ProjectConfig()
    if not file.is_file():
        raise ConfigError(f"{file}: no such project file")
    try:
        docs = load_yaml_file(file)
    except YamlSyntaxError as exc:
        raise ConfigError(f"{file}:{exc.line or '?'}: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read the project file ({exc.strerror}); fix its path or "
                          "permissions") from None
    doc = docs[0] if docs else None
    data = doc.data if doc is not None else {}
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{file}:{doc.start_line if doc is not None else 1}: the project file must be a mapping "
                          f"of settings (suite:, agent:, store: …), not a {type(data).__name__}")
    try:
        cfg = ProjectConfig.model_validate({**data, "root": file.parent.resolve()})
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = tuple(err["loc"])
        line = doc.line_of(loc) if doc is not None else "?"
        msg = ("unknown setting; check its spelling" if err["type"] == "extra_forbidden"
               else str(err["msg"]).removeprefix("Value error, "))
        raise ConfigError(f"{file}:{line}: {'.'.join(map(str, loc))}: {msg}") from None
    _check_prices(cfg, file, doc)
    return cfg


def _check_prices(cfg: ProjectConfig, file: Path, doc: YamlDocument | None) -> None:
    """Parse ``prices:`` now, so a bad price fails at load naming the file and line, before any run."""
    line = doc.line_of(("prices",)) if doc is not None else "?"
    try:
        cfg.price_table()
    except PriceError as exc:
        if isinstance(cfg.prices, dict):
            loc = ("prices", exc.key, *((exc.field,) if exc.field else ()))
            where = doc.line_of(loc) if doc is not None else "?"
            problem = _name_problem(exc, doc, loc[:2])
            if problem is not None:
                raise ConfigError(f"{file}:{where}: prices: {problem}") from None
            raise ConfigError(f"{file}:{where}: {'.'.join(map(str, loc))}: {exc.problem}") from None
        assert cfg.prices is not None
        price_file = cfg.path(cfg.prices)
        at, problem = _price_file_place(price_file, exc)
        raise ConfigError(f"{price_file}:{at}: price for '{exc.model}': {problem} "
                          f"(the price file of prices: at {file}:{line})") from None
    except ConfigFileError as exc:
        raise ConfigError(f"{exc.path}:{exc.line or '?'}: {exc.problem} "
                          f"(the price file of prices: at {file}:{line})") from None
    except ConfigError as exc:
        raise ConfigError(f"{file}:{line}: prices: {exc}") from None


def _name_problem(exc: PriceError, doc: YamlDocument | None, loc: tuple[Any, ...]) -> str | None:
    """The problem of a model name that is not text, showing the key as the file writes it."""
    if isinstance(exc.key, str) or doc is None or loc not in doc.key_texts:
        return None
    return model_name_problem(exc.key, doc.key_texts[loc])


def _price_file_place(path: Path, exc: PriceError) -> tuple[int | str, str]:
    """The line of the bad entry in a price file (YAML or JSON), when the file parses with lines, and
    the problem (a model name shown as the file writes it)."""
    try:
        docs = load_yaml_file(path)
    except (OSError, YamlSyntaxError):
        return "?", exc.problem
    if not docs:
        return "?", exc.problem
    doc = docs[0]
    field = (exc.field,) if exc.field else ()
    nested = isinstance(doc.data, dict) and isinstance(doc.data.get("models"), dict)
    entry = (*(("models",) if nested else ()), exc.key)
    return doc.line_of((*entry, *field)), _name_problem(exc, doc, entry) or exc.problem
