"""The scenario: a test fixture for an agent (initial state, prompt, expectations), in YAML or Python."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from costar._util import units
from costar.config import find_config
from costar.scenario.checks import CheckSpec

SCENARIO_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:/@+-]*$"
"""What a scenario id may be: a letter or digit, then letters, digits and ``_.:/@+-``."""


class SetupFile(BaseModel):
    """A file or folder copied into the workspace (``src``), or a file written from ``content``."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    src: str | None = None
    """A file or folder to copy, relative to the scenario file's folder."""
    dest: str | None = None
    """Where it goes, relative to the workspace (default: ``src``'s name at the top)."""
    content: str | None = None
    """Text to write to ``dest`` instead of copying a file."""

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
        """The path in the workspace this entry writes."""
        return self.dest or Path(self.src or "").name


class Setup(BaseModel):
    """The workspace a trial starts from: files placed, then commands run in it.

    ``files`` are copied from the project (the folder holding costar.yaml): a path that leaves it
    (``../..``, an absolute path, a symlink pointing out) is refused unless ``allow_outside_project``
    says otherwise, and symlinks inside a copied folder that point out of the project are skipped.
    After the trial only what the agent produced or changed is stored; ``store_inputs`` also keeps
    the setup files it left untouched (e.g. for judges that compare an output with its input)."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    files: list[SetupFile] = Field(default_factory=list)
    """Files and folders to place in the workspace (a bare string is ``src``)."""
    env: dict[str, str] = Field(default_factory=dict)
    """Environment variables for the setup commands and the agent (non-string values are written as JSON)."""
    commands: list[str] = Field(default_factory=list)
    """Shell commands run in the workspace, in order, before the agent starts; one that fails fails the trial."""
    command_timeout: float = Field(120.0, gt=0)
    """Seconds each setup command may run."""
    allow_outside_project: bool = False
    """Allow setup files from outside the project folder."""
    store_inputs: bool = False
    """Also store the setup files the agent left unchanged (by default only what it produced or changed)."""

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


def parse_memory(value: Any) -> int:
    """Bytes from ``2147483648``, ``"2GiB"``, ``"512Mi"``, ``"1.5GB"``; a ValueError names the forms."""
    return units.parse_size(value, what="memory")


class Resources(BaseModel):
    """What one trial of the scenario needs on the machine that runs it. The Ray executor
    (``costar run --executor ray``) places each trial on a node that has them free and reserves them
    while it runs; the local executor runs trials in its own process and ignores them."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    cpus: float = Field(1.0, ge=0, le=1024)
    """CPU cores a trial holds while it runs (fractions allowed: 0.5 lets two share one core)."""
    gpus: float = Field(0.0, ge=0, le=64)
    """GPUs a trial holds (Ray's ``num_gpus``)."""
    memory: Annotated[int | None, WithJsonSchema({
        "anyOf": [{"type": "integer", "minimum": 0},
                  {"type": "string", "pattern": r"^\s*\d+(\.\d+)?\s*([KkMmGgTt][Ii]?[Bb]?|[Bb])?\s*$"},
                  {"type": "null"}],
        "description": "memory a trial reserves: bytes or a size like '4GiB'"})] = None
    """Memory a trial reserves on its node, in bytes (``"4GiB"`` and ``"512MB"`` are accepted)."""
    custom: dict[str, float] = Field(default_factory=dict)
    """Custom resources declared by nodes (``ray start --resources '{"a100": 4}'``), e.g. to place a
    trial on a node with a particular accelerator, licence or dataset."""

    @field_validator("memory", mode="before")
    @classmethod
    def _memory(cls, v: Any) -> Any:
        return None if v is None else parse_memory(v)

    @field_validator("custom")
    @classmethod
    def _custom(cls, v: dict[str, float]) -> dict[str, float]:
        for name, amount in v.items():
            if name in ("CPU", "GPU", "memory", "object_store_memory"):
                raise ValueError(f"{name!r} is not a custom resource: use cpus, gpus or memory")
            if amount < 0:
                raise ValueError(f"custom resource {name!r}: amount cannot be negative")
        return v


class Expectations(BaseModel):
    """What a passing trial looks like: ``checks`` are deterministic; ``criteria`` are
    natural-language, for model judges."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    checks: list[CheckSpec] = Field(default_factory=list)
    """Deterministic checks, each a mapping with one check key (``output_contains: total``); each is
    parsed and validated once, when the scenario loads, so an error names the entry."""
    criteria: list[str] = Field(default_factory=list)
    """What a good answer does, in words; LLM and agentic judges read them (a single string is one criterion)."""
    require_completion: bool = True
    """The implicit ``agent_completed`` gate: the agent must finish without error or timeout. Switch
    off for scenarios that expect a crash."""

    @field_validator("criteria", mode="before")
    @classmethod
    def _criteria_list(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v


class JudgeRef(BaseModel):
    """A named judge to apply (from the project's ``judges/`` folder, entry points or ``module:attr``)."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    name: str
    """The judge's name (a file in ``judges/``, a plugin, a built-in template) or ``module:attr``."""
    gate: bool = True
    """Whether the judge's verdict decides the trial; False makes it a diagnostic. Written here, it
    overrides the judge definition's own."""
    options: dict[str, Any] = Field(default_factory=dict)
    """Keyword arguments for a Python judge (``module:attr``)."""


class Scenario(BaseModel):
    """A test fixture for an agent: the workspace it starts in, what it is asked, and what a good
    run looks like. Written in YAML (``costar schema`` gives editors the schema) or built in Python;
    the harness runs it ``trials`` times, each in a fresh workspace."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    id: str = Field(pattern=SCENARIO_ID_PATTERN)
    """Unique within the suite; names the scenario in reports and on the command line."""
    description: str = ""
    """What the scenario tests, for people reading reports."""
    tags: list[str] = Field(default_factory=list)
    """Labels to select scenarios by (``costar run --tag``); a single string is one tag."""
    split: Literal["train", "holdout"] = "train"
    """``holdout`` scenarios are never shown to the coding assistant of ``costar refine``: they catch
    changes that only fit the scenarios it saw."""
    setup: Setup = Field(default_factory=Setup)
    """The workspace's initial state: files, environment, commands."""
    prompt: str | list[str]
    """What the agent is asked; a list is a conversation, one user turn per item."""
    expectations: Expectations = Field(default_factory=Expectations)
    """Checks and criteria a passing trial meets."""
    judges: list[JudgeRef] = Field(default_factory=list)
    """Named judges to apply besides the checks (a bare string is a name)."""
    trials: int = Field(1, ge=1, le=10_000)
    """How many times to run the scenario (pass rates and pass@k need several)."""
    timeout: float = Field(300.0, gt=0)
    """Seconds each trial may run before the agent is stopped."""
    resources: Resources = Field(default_factory=Resources)
    """What each trial needs on the machine that runs it (cpus, gpus, memory, custom resources): the
    Ray executor places trials by it; the local executor ignores it."""
    metadata: dict[str, Any] = Field(default_factory=dict)
    """Anything else, kept with the scenario (judges and reports may read it)."""

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
        """The prompt as a list of user turns (one for a plain prompt)."""
        return [self.prompt] if isinstance(self.prompt, str) else list(self.prompt)

    @property
    def source(self) -> Path | None:
        """The YAML file this scenario was loaded from (None for scenarios built in Python)."""
        return self._source

    @property
    def base_dir(self) -> Path:
        """Setup paths are relative to the scenario file's folder (or the working directory)."""
        return self._source.parent if self._source else Path.cwd()

    @property
    def project_root(self) -> Path:
        """The folder holding the project's costar.yaml (the nearest one above the scenario), else the
        scenario's own folder: setup files must come from inside it."""
        config = find_config(self.base_dir)
        return (config.parent if config is not None else self.base_dir).resolve()

    def setup_files_outside_project(self) -> list[tuple[int, str, Path]]:
        """(index, src, where it really is) of each setup file that resolves outside the project."""
        if self.setup.allow_outside_project:
            return []
        root = self.project_root
        out = []
        for i, f in enumerate(self.setup.files):
            if f.src is None:
                continue
            real = (self.base_dir / f.src).resolve()  # follows symlinks: a link out of the project is out
            if not real.is_relative_to(root):
                out.append((i, f.src, real))
        return out

    def with_source(self, path: Path | None) -> Scenario:
        """Record the file this scenario came from (setup paths resolve from its folder); returns self."""
        self._source = path
        return self

    def missing_setup_files(self) -> list[str]:
        """The setup ``src`` paths that do not exist."""
        return [f.src for f in self.setup.files if f.src and not (self.base_dir / f.src).exists()]
