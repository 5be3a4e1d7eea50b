"""The scenario: a test fixture for an agent (initial state, prompt, expectations), in YAML or Python."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    field_validator,
    model_validator,
)

from costar.config import find_config
from costar.scenario.checks import CheckSpec

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
    """The workspace a trial starts from.

    ``files`` are copied from the project (the folder holding costar.yaml): a path that leaves it
    (``../..``, an absolute path, a symlink pointing out) is refused unless ``allow_outside_project``
    says otherwise, and symlinks inside a copied folder that point out of the project are skipped.
    After the trial only what the agent produced or changed is stored; ``store_inputs`` also keeps
    the setup files it left untouched (e.g. for judges that compare an output with its input)."""

    model_config = ConfigDict(extra="forbid")

    files: list[SetupFile] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    commands: list[str] = Field(default_factory=list)
    command_timeout: float = Field(120.0, gt=0)
    allow_outside_project: bool = Field(False, description="allow setup files from outside the project folder")
    store_inputs: bool = Field(False, description="also store the setup files the agent left unchanged")

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


class Expectations(BaseModel):
    """``checks`` are deterministic; ``criteria`` are natural-language, kept for model judges."""

    model_config = ConfigDict(extra="forbid")

    # Each entry is parsed and validated once, here, so errors carry the entry's index.
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
        self._source = path
        return self

    def missing_setup_files(self) -> list[str]:
        return [f.src for f in self.setup.files if f.src and not (self.base_dir / f.src).exists()]
