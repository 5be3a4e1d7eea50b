"""Judge definitions: YAML or Python files in a project's ``judges/`` folder, built-in templates, judge types.

A YAML file holds one judge, a list of judges, or ``{judges: [...]}`` (several documents work too)::

    name: polite
    type: llm                      # llm | agentic | check | python | a plugin's type
    model: openai:/gpt-4.1-mini
    instructions: |
      Is the final answer polite?  {{outputs}}
    value: bool                    # or {type: number, min: 1, max: 5, threshold: 4}
                                   # or {type: label, labels: [good, ok, bad], pass_labels: [good, ok]}
    samples: 3                     # self-consistency: majority of 3, agreement as confidence
    agreement_floor: {metric: kappa, min: 0.6}

    name: my_outcome
    template: outcome              # start from a built-in template, override any field
    model: anthropic:/claude-sonnet-4-5

A Python file exposes Judge objects at module level. Judge types are plugins (entry-point group
``costar.judge_types``); the built-in ones are resolved the same way, from ``module:attr`` references.
Errors name the file, the line and the field.
"""

from __future__ import annotations

import fnmatch
import importlib.util
import json
import os
import sys
import traceback
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from costar._util.imports import import_object, importable
from costar._util.yamlfile import YamlDocument, YamlSyntaxError, load_yaml_documents, load_yaml_file
from costar.errors import ConfigError
from costar.judges.agentic import AgenticJudge, Budget
from costar.judges.base import Judge
from costar.judges.checks import CheckJudge
from costar.judges.llm import DEFAULT_MODEL, LlmJudge, ValueSpec
from costar.judges.sandbox import SandboxLimits
from costar.judges.trace_tools import ALL_TOOLS, ToolLimits
from costar.plugins import JUDGE_TYPES, JUDGES, PluginGroup
from costar.scenario.checks import CheckSpec

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$"
TEMPLATES_DIR = Path(__file__).parent / "templates"
JUDGE_SUFFIXES = (".yaml", ".yml", ".py")
DEFAULT_MODEL_ENV = "COSTAR_JUDGE_MODEL"
MAX_DOC_CHARS = 200_000  # per document: a judge pages through docs, it never needs a whole manual


class JudgeDefinitionError(ConfigError):
    """A judge file is invalid; the message starts with ``file:line: field 'x':``."""

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None,
                 field: str | None = None) -> None:
        self.file, self.line, self.field = file, line, field
        where = file or "<judge>"
        if line is not None:
            where = f"{where}:{line}"
        prefix = f"{where}: " + (f"field '{field}': " if field else "")
        super().__init__(prefix + message)


# --------------------------------------------------------------------------- definition models


_CHANCE_CORRECTED = frozenset({"kappa", "kappa_linear", "kappa_quadratic", "alpha"})


class AgreementFloor(BaseModel):
    """The least agreement with human labels this judge must keep (checked by ``costar judges check``).

    The fields are those of ``costar.align.gates.JudgeFloor`` minus the name, so
    ``JudgeFloor(name=entry.name, **floor.model_dump())`` turns a definition's floor into a gate."""

    model_config = ConfigDict(extra="forbid")

    metric: Literal["kappa", "kappa_linear", "kappa_quadratic", "alpha", "accuracy", "tpr", "tnr",
                    "balanced_accuracy", "precision", "f1"] = "kappa"
    min: float
    golden: str | None = None  # a golden set's name; default: every labeled trace
    split: Literal["train", "validation", "test", "all"] = "test"
    use_lower_bound: bool = False  # gate on the interval's lower bound, not the point estimate

    @model_validator(mode="after")
    def _in_range(self) -> AgreementFloor:
        low = -1.0 if self.metric in _CHANCE_CORRECTED else 0.0
        if not low <= self.min <= 1.0:
            raise ValueError(f"a floor on {self.metric} must be between {low:g} and 1, got {self.min:g}")
        return self


class ApplyTo(BaseModel):
    """Scenarios a judge applies to without being listed in them (e.g. every trace, for monitoring)."""

    model_config = ConfigDict(extra="forbid")

    ids: list[str] = Field(default_factory=list)  # globs over scenario ids
    tags: list[str] = Field(default_factory=list)  # any of
    split: Literal["train", "holdout"] | None = None

    def matches(self, scenario: Any) -> bool:
        if scenario is None:
            return False
        if self.ids and not any(fnmatch.fnmatchcase(scenario.id, p) for p in self.ids):
            return False
        if self.tags and not set(self.tags) & set(scenario.tags):
            return False
        return self.split is None or scenario.split == self.split


class JudgeDefinition(BaseModel):
    """Fields every judge type has."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME_PATTERN)
    type: str = "llm"
    description: str = ""
    gate: bool = True
    version: str = "1"
    template: str | None = None
    agreement_floor: AgreementFloor | None = None
    apply_to: ApplyTo | None = None

    @field_validator("version", mode="before")
    @classmethod
    def _version_text(cls, v: Any) -> Any:
        return str(v) if isinstance(v, int | float) else v

    @field_validator("apply_to", mode="before")
    @classmethod
    def _all(cls, v: Any) -> Any:
        return {"ids": ["*"]} if v == "all" else v


class ModelJudgeDefinition(JudgeDefinition):
    """An ``llm`` judge: one question, a typed answer."""

    model: str | None = None
    instructions: str | None = None
    instructions_file: str | None = None
    system: str | None = None
    value: ValueSpec = Field(default_factory=lambda: ValueSpec())
    samples: int = Field(default=1, ge=1, le=25)
    temperature: float | None = Field(default=None, ge=0, le=2)
    seed: int | None = None
    retries: int = Field(default=2, ge=0, le=10)
    max_output_tokens: int = Field(default=512, ge=16, le=65_536)
    max_chars: int = Field(default=6000, ge=200, le=500_000)  # per template variable
    docs: list[str] = Field(default_factory=list)
    docs_required: bool = False
    max_concurrency: int | None = Field(default=None, ge=1, le=4096)

    @model_validator(mode="after")
    def _one_instruction_source(self) -> ModelJudgeDefinition:
        if (self.instructions is None) == (self.instructions_file is None):
            raise ValueError("give exactly one of 'instructions' (text) or 'instructions_file' (a path)")
        return self


class SandboxConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    timeout_s: float = Field(default=10.0, gt=0, le=600)
    memory_mb: int = Field(default=1024, ge=64, le=65_536)
    max_output_chars: int = Field(default=8000, ge=200, le=1_000_000)


class AgenticJudgeDefinition(ModelJudgeDefinition):
    """An ``agentic`` judge: explores the trace with tools within budgets."""

    tools: list[str] | None = None
    max_iterations: int = Field(default=12, ge=1, le=200)
    max_tokens: int | None = Field(default=60_000, ge=1)
    max_cost_usd: float | None = Field(default=None, gt=0)
    max_result_chars: int = Field(default=4000, ge=500, le=100_000)
    max_context_chars: int = Field(default=40_000, ge=2000, le=2_000_000)
    scan_spans: int = Field(default=10_000, ge=100, le=10_000_000)
    max_output_tokens: int = Field(default=1024, ge=16, le=65_536)
    max_chars: int = Field(default=4000, ge=200, le=500_000)
    sandbox: SandboxConfig = Field(default_factory=lambda: SandboxConfig())
    tool_choice: Literal["required", "auto"] = "required"

    @model_validator(mode="before")
    @classmethod
    def _renamed_scan_budget(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and "scan_seconds" in data:
            raise ValueError("'scan_seconds' was replaced by 'scan_spans' (spans one search_trace call scans, "
                             "default 10000); rename it")
        return data

    @field_validator("tools")
    @classmethod
    def _known_tools(cls, v: list[str] | None) -> list[str] | None:
        unknown = [t for t in v or [] if t not in ALL_TOOLS]
        if unknown:
            raise ValueError(f"unknown tool(s) {unknown} (known: {', '.join(ALL_TOOLS)})")
        return v


class CheckJudgeDefinition(JudgeDefinition):
    """A ``check`` judge: one deterministic check spec, e.g. ``check: {csv: {file: out.csv}}``."""

    check: CheckSpec


class PythonJudgeDefinition(JudgeDefinition):
    """A ``python`` judge: ``function: module:attr`` taking the JudgeContext (and ``options``)."""

    function: str = Field(pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")
    options: dict[str, Any] = Field(default_factory=dict)


# --------------------------------------------------------------------------- judge types


@dataclass(frozen=True)
class BuildContext:
    """Where a definition came from: relative paths (docs, instructions_file) resolve against ``base_dir``,
    then against ``project_dir``."""

    base_dir: Path
    project_dir: Path | None = None
    default_model: str | None = None
    source: str = "<judge>"

    def model(self, explicit: str | None) -> str:
        return explicit or self.default_model or os.environ.get(DEFAULT_MODEL_ENV) or DEFAULT_MODEL

    def path(self, rel: str) -> Path:
        p = Path(rel).expanduser()
        if p.is_absolute():
            return p
        candidates = [self.base_dir / p] + ([self.project_dir / p] if self.project_dir else [])
        for c in candidates:
            if c.exists():
                return c
        tried = " or ".join(str(c) for c in candidates)
        raise ConfigError(f"file {rel!r} does not exist (looked for {tried})")


@runtime_checkable
class JudgeType(Protocol):
    """A kind of judge definition: its fields (a JudgeDefinition subclass) and how to build the judge."""

    name: str
    definition: type[JudgeDefinition]

    def build(self, definition: Any, ctx: BuildContext) -> Judge: ...


def _instructions(d: ModelJudgeDefinition, ctx: BuildContext) -> str:
    if d.instructions is not None:
        return d.instructions
    assert d.instructions_file is not None
    return ctx.path(d.instructions_file).read_text(encoding="utf-8")


def _docs(d: ModelJudgeDefinition, ctx: BuildContext) -> dict[str, str]:
    if d.docs_required and not d.docs:
        raise ConfigError(f"judge {d.name!r} needs reference documents: set docs: [paths] in its definition")
    docs: dict[str, str] = {}
    for rel in d.docs:
        text = ctx.path(rel).read_text(encoding="utf-8", errors="replace")
        docs[rel] = text[:MAX_DOC_CHARS]
    return docs


@dataclass(frozen=True)
class LlmType:
    name: str = "llm"
    definition: type[JudgeDefinition] = ModelJudgeDefinition

    def build(self, d: ModelJudgeDefinition, ctx: BuildContext) -> Judge:
        return LlmJudge(d.name, _instructions(d, ctx), model=ctx.model(d.model), value=d.value, samples=d.samples,
                        temperature=d.temperature, seed=d.seed, retries=d.retries,
                        max_output_tokens=d.max_output_tokens, max_chars=d.max_chars, system=d.system,
                        docs=_docs(d, ctx), gate=d.gate, description=d.description, version=d.version,
                        max_concurrency=d.max_concurrency)


@dataclass(frozen=True)
class AgenticType:
    name: str = "agentic"
    definition: type[JudgeDefinition] = AgenticJudgeDefinition

    def build(self, d: AgenticJudgeDefinition, ctx: BuildContext) -> Judge:
        return AgenticJudge(
            d.name, _instructions(d, ctx), model=ctx.model(d.model), value=d.value, tools=d.tools,
            budget=Budget(max_iterations=d.max_iterations, max_tokens=d.max_tokens, max_cost_usd=d.max_cost_usd),
            samples=d.samples, temperature=d.temperature, seed=d.seed,
            tool_limits=ToolLimits(max_result_chars=d.max_result_chars, scan_spans=d.scan_spans),
            sandbox=SandboxLimits(timeout_s=d.sandbox.timeout_s, memory_mb=d.sandbox.memory_mb,
                                  max_output_chars=d.sandbox.max_output_chars),
            max_context_chars=d.max_context_chars, max_output_tokens=d.max_output_tokens, max_chars=d.max_chars,
            system=d.system, docs=_docs(d, ctx), tool_choice=d.tool_choice, gate=d.gate,
            description=d.description, version=d.version, max_concurrency=d.max_concurrency)


@dataclass(frozen=True)
class CheckType:
    name: str = "check"
    definition: type[JudgeDefinition] = CheckJudgeDefinition

    def build(self, d: CheckJudgeDefinition, ctx: BuildContext) -> Judge:
        judge = CheckJudge.from_spec(d.check)
        judge.name = d.name
        judge.explicit_name = d.name
        judge.gating = d.gate
        judge.description = d.description or judge.description
        return judge


@dataclass(frozen=True)
class PythonType:
    name: str = "python"
    definition: type[JudgeDefinition] = PythonJudgeDefinition

    def build(self, d: PythonJudgeDefinition, ctx: BuildContext) -> Judge:
        from costar.judges.registry import FunctionJudge

        with importable(ctx.base_dir, ctx.project_dir):
            obj = import_object(d.function)
        if isinstance(obj, Judge):
            return obj.with_gating(d.gate)
        if not callable(obj):
            raise ConfigError(f"{d.function} is not callable: a python judge names a function f(ctx, **options)")
        judge = FunctionJudge(obj, d.name, gate=d.gate, options=d.options)
        judge.version = d.version
        return judge


LLM_TYPE = LlmType()
AGENTIC_TYPE = AgenticType()
CHECK_TYPE = CheckType()
PYTHON_TYPE = PythonType()

def _not_a_judge_type(obj: Any) -> str | None:
    return None if isinstance(obj, JudgeType) else "it has no 'name', 'definition' and 'build'"


class JudgeTypeRegistry:
    """Judge types by name: the ``costar.judge_types`` plugin group (built-ins included), plus types
    registered on this registry. ``load_entry_points=False`` leaves installed plugins out."""

    def __init__(self, *, load_entry_points: bool = True) -> None:
        self._group: PluginGroup[JudgeType] = PluginGroup(JUDGE_TYPES, "judge type", accept=_not_a_judge_type,
                                                          plugins=load_entry_points)

    def register(self, judge_type: JudgeType) -> None:
        self._group.register(judge_type.name, judge_type)

    def names(self) -> list[str]:
        return self._group.names()

    def get(self, name: str) -> JudgeType:
        found = self._group.find(name)
        if found is None:
            raise ConfigError(f"unknown judge type {name!r} (known: {', '.join(self.names())})")
        return found


_default_types: JudgeTypeRegistry | None = None


def default_judge_types() -> JudgeTypeRegistry:
    global _default_types
    if _default_types is None:
        _default_types = JudgeTypeRegistry()
    return _default_types


# --------------------------------------------------------------------------- entries


@dataclass
class DefinitionEntry:
    """One judge found in a file, a template or a module; builds (and caches) the Judge on demand."""

    name: str
    type: str
    source: str  # "path:line", "template <name>", or a module path
    raw: dict[str, Any] | None = None  # the merged mapping a YAML judge was validated from
    definition: JudgeDefinition | None = None
    build_ctx: BuildContext | None = None
    prebuilt: Judge | None = None
    types: JudgeTypeRegistry | None = None
    notes: list[str] = field(default_factory=list)
    """What commands should say about how this definition was resolved (e.g. an aligned version in
    use although the judge's file changed since)."""
    _judge: Judge | None = field(default=None, repr=False)
    _variants: dict[str, Judge] = field(default_factory=dict, repr=False)

    def judge(self) -> Judge:
        if self.prebuilt is not None:
            return self.prebuilt
        if self._judge is None:
            assert self.definition is not None
            assert self.build_ctx is not None
            self._judge = _build(self.definition, self.build_ctx, self.types)
        return self._judge

    def with_options(self, options: Mapping[str, Any]) -> Judge:
        """The judge with fields overridden, e.g. by a scenario's ``judges: [{name: x, options: {...}}]``."""
        if not options:
            return self.judge()
        if self.raw is None or self.build_ctx is None:
            raise ConfigError(f"judge {self.name!r} ({self.source}) is a Python object: it takes no options")
        key = json.dumps(options, sort_keys=True, default=str)
        hit = self._variants.get(key)
        if hit is None:
            if "name" in options or "type" in options:
                raise ConfigError(f"judge {self.name!r}: options cannot change 'name' or 'type'")
            data = _deep_merge(self.raw, dict(options))
            types = self.types or default_judge_types()
            try:
                d = types.get(self.type).definition.model_validate(data)
            except ValidationError as exc:
                err = exc.errors()[0]
                where = ".".join(str(p) for p in err["loc"])
                raise ConfigError(f"judge {self.name!r} options ({self.source}): {where}: "
                                  f"{_message(err, types.get(self.type).definition)}") from None
            hit = self._variants[key] = _build(d, self.build_ctx, self.types)
        return hit

    @property
    def gating(self) -> bool:
        return self.prebuilt.gating if self.prebuilt is not None else bool(self.definition and self.definition.gate)

    @property
    def description(self) -> str:
        if self.definition is not None:
            return self.definition.description
        return str(getattr(self.prebuilt, "description", "") or "")

    @property
    def apply_to(self) -> ApplyTo | None:
        return self.definition.apply_to if self.definition is not None else None

    @property
    def agreement_floor(self) -> AgreementFloor | None:
        return self.definition.agreement_floor if self.definition is not None else None


def _build(d: JudgeDefinition, ctx: BuildContext, types: JudgeTypeRegistry | None) -> Judge:
    judge = (types or default_judge_types()).get(d.type).build(d, ctx)
    if judge.name != d.name:
        judge.name = d.name
        judge.__dict__.pop("_fingerprint", None)
    return judge


# --------------------------------------------------------------------------- templates


@dataclass(frozen=True)
class JudgeTemplate:
    """A judge defined in a YAML file that each project builds with its own settings (its default
    model, its folder for documents). The built-in templates are entry points of the
    ``costar.judges`` plugin group, so a plugin can ship templates the same way."""

    path: Path
    """The YAML file: one judge mapping, like a file in a project's ``judges/`` folder."""

    @property
    def name(self) -> str:
        return self.path.stem


SKILL_INVOCATION = JudgeTemplate(TEMPLATES_DIR / "skill_invocation.yaml")
BEST_PRACTICES = JudgeTemplate(TEMPLATES_DIR / "best_practices.yaml")
OUTCOME = JudgeTemplate(TEMPLATES_DIR / "outcome.yaml")

_JUDGE_PLUGINS: PluginGroup[Any] = PluginGroup(JUDGES, "judge")


def template_names() -> list[str]:
    """The templates the ``costar.judges`` plugin group offers (built-in and from plugins)."""
    return sorted(n for n in _JUDGE_PLUGINS.names() if isinstance(_JUDGE_PLUGINS.find(n), JudgeTemplate))


def find_template(name: str) -> JudgeTemplate | None:
    found = _JUDGE_PLUGINS.find(name)
    return found if isinstance(found, JudgeTemplate) else None


def _template_doc(name: str) -> tuple[dict[str, Any], YamlDocument, Path]:
    template = find_template(name)
    if template is None:
        raise ConfigError(f"unknown judge template {name!r} (templates: {', '.join(template_names())})")
    path = template.path
    docs = load_yaml_documents(path.read_text(encoding="utf-8"))
    data = docs[0].data if docs else None
    if not isinstance(data, dict):
        raise ConfigError(f"judge template {path} must be one mapping")
    return dict(data), docs[0], path


def load_template(name: str) -> dict[str, Any]:
    """A template's mapping, with ``instructions_file`` made absolute (it is relative to the template)."""
    data, _, path = _template_doc(name)
    if isinstance(data.get("instructions_file"), str):
        data["instructions_file"] = str((path.parent / data["instructions_file"]).resolve())
    return data


def template_entries(*, default_model: str | None = None, project_dir: Path | None = None,
                     types: JudgeTypeRegistry | None = None,
                     names: Iterable[str] | None = None) -> list[DefinitionEntry]:
    """Definition entries for the templates (all, or ``names``), built for one project when first used."""
    out = []
    for name in template_names() if names is None else names:
        _, doc, path = _template_doc(name)
        ctx = BuildContext(base_dir=project_dir or Path.cwd(), project_dir=project_dir, default_model=default_model,
                           source=f"template {name}")
        out.append(_entry(load_template(name), doc, (), str(path), ctx, types, source=f"template {name}",
                          build=False))
    return out


# --------------------------------------------------------------------------- loading files


def _deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), Mapping) else v
    return out


def _message(err: Any, model: type[BaseModel]) -> str:
    if err["type"] == "extra_forbidden":
        return f"unknown field; remove it or check its spelling (fields: {', '.join(model.model_fields)})"
    if err["type"] == "missing":
        return "required field is missing"
    return str(err["msg"]).removeprefix("Value error, ")


def _field(loc: Iterable[Any]) -> str:
    return ".".join(str(p) if isinstance(p, str) else f"[{p}]" for p in loc).replace(".[", "[")


def _entry(data: dict[str, Any], doc: YamlDocument, prefix: tuple[Any, ...], file: str, ctx: BuildContext,
           types: JudgeTypeRegistry | None, *, source: str | None = None, build: bool = True) -> DefinitionEntry:
    """Validate one judge mapping (after applying its template) and build it, so every error surfaces
    at load time with the file and line it comes from. Templates are built when first used: one that
    needs settings (documents) is only an error where it is used without them."""
    types = types or default_judge_types()
    line = doc.line_of(prefix)
    if "template" in data and data["template"] is not None:
        tname = data["template"]
        if not isinstance(tname, str):
            raise JudgeDefinitionError("must be a template name", file=file, line=doc.line_of((*prefix, "template")),
                                       field="template")
        try:
            base = load_template(tname)
        except ConfigError as exc:
            raise JudgeDefinitionError(str(exc), file=file, line=doc.line_of((*prefix, "template")),
                                       field="template") from None
        data = _deep_merge(base, data)
        data.setdefault("name", tname)
    type_name = data.get("type", "llm")
    try:
        jtype = types.get(str(type_name))
    except ConfigError as exc:
        raise JudgeDefinitionError(str(exc), file=file, line=doc.line_of((*prefix, "type")), field="type") from None
    try:
        definition = jtype.definition.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = tuple(err["loc"])
        msg = _message(err, jtype.definition)
        for other in exc.errors()[1:]:  # every problem, each with its own line and field
            at = tuple(other["loc"])
            msg += (f"; also line {doc.line_of(prefix + at)} field '{_field(at)}': "
                    f"{_message(other, jtype.definition)}")
        raise JudgeDefinitionError(msg, file=file, line=doc.line_of(prefix + loc), field=_field(loc) or None) from None
    where = source or f"{file}:{line}"
    ctx = BuildContext(base_dir=ctx.base_dir, project_dir=ctx.project_dir, default_model=ctx.default_model,
                       source=where)
    entry = DefinitionEntry(name=definition.name, type=definition.type, source=where, raw=data, definition=definition,
                            build_ctx=ctx, types=types)
    if not build:
        return entry
    try:
        entry.judge()
    except (ConfigError, OSError, ValueError) as exc:
        culprit = _culprit(str(exc), data)
        raise JudgeDefinitionError(str(exc), file=file, line=doc.line_of((*prefix, *culprit)) if culprit else line,
                                   field=_field(culprit) if culprit else None) from None
    return entry


def _culprit(message: str, data: Mapping[str, Any]) -> tuple[Any, ...] | None:
    """The field a build error is about, when the message shows it: errors point at their line."""
    if "template variable" in message and "instructions" in data:
        return ("instructions",)
    model = data.get("model")
    if isinstance(model, str) and (model in message or f"'{model.partition(':')[0]}'" in message):
        return ("model",)
    if isinstance(data.get("instructions_file"), str) and repr(data["instructions_file"]) in message:
        return ("instructions_file",)
    raw_docs = data.get("docs")
    docs: list[Any] = raw_docs if isinstance(raw_docs, list) else []
    for i, d in enumerate(docs):
        if isinstance(d, str) and repr(d) in message:
            return ("docs", i)
    if "docs" in message:
        return ("docs",)
    if isinstance(data.get("function"), str) and data["function"].partition(":")[0] in message:
        return ("function",)
    return None


def _judge_mappings(doc: YamlDocument, file: str) -> Iterable[tuple[Any, tuple[Any, ...]]]:
    data = doc.data
    if data is None:
        return
    if isinstance(data, list):
        for i, item in enumerate(data):
            yield item, (i,)
        return
    if isinstance(data, dict) and "judges" in data and "name" not in data and "template" not in data:
        extra = sorted(set(data) - {"judges"})
        if extra:
            raise JudgeDefinitionError("unknown top-level key beside 'judges'", file=file,
                                       line=doc.line_of((extra[0],)), field=extra[0])
        items = data["judges"]
        if not isinstance(items, list):
            raise JudgeDefinitionError("'judges' must be a list", file=file, line=doc.line_of(("judges",)))
        for i, item in enumerate(items):
            yield item, ("judges", i)
        return
    yield data, ()


def load_judge_yaml(path: str | Path, *, project_dir: Path | None = None, default_model: str | None = None,
                    types: JudgeTypeRegistry | None = None) -> list[DefinitionEntry]:
    """Every judge in one YAML file, validated and built."""
    path = Path(path)
    file = str(path)
    try:
        docs = load_yaml_file(path)
    except YamlSyntaxError as exc:
        raise JudgeDefinitionError(str(exc), file=file, line=exc.line) from None
    except OSError as exc:
        raise JudgeDefinitionError(f"cannot read: {exc.strerror}", file=file) from None
    except UnicodeDecodeError:
        raise JudgeDefinitionError("not UTF-8 text", file=file) from None
    ctx = BuildContext(base_dir=path.parent.resolve(), project_dir=project_dir, default_model=default_model)
    out = []
    for doc in docs:
        for data, prefix in _judge_mappings(doc, file):
            if not isinstance(data, dict):
                raise JudgeDefinitionError(f"a judge must be a mapping, got {type(data).__name__}", file=file,
                                           line=doc.line_of(prefix))
            out.append(_entry(dict(data), doc, prefix, file, ctx, types))
    return out


def load_judge_module(path: str | Path, *, project_dir: Path | None = None) -> list[DefinitionEntry]:
    """The Judge objects a Python file defines at module level."""
    path = Path(path).resolve()
    file = str(path)
    module_name = "costar_project_judges." + "_".join(path.with_suffix("").parts[-3:]).replace("-", "_")
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise JudgeDefinitionError("cannot be imported as a Python module", file=file)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        with importable(path.parent, project_dir):
            spec.loader.exec_module(module)
    except SyntaxError as exc:
        sys.modules.pop(module_name, None)
        raise JudgeDefinitionError(f"syntax error: {exc.msg}", file=file, line=exc.lineno) from None
    except Exception as exc:
        sys.modules.pop(module_name, None)
        frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == file]
        line = frames[-1].lineno if frames else None
        raise JudgeDefinitionError(f"importing it failed: {type(exc).__name__}: {exc}", file=file,
                                   line=line) from None
    out: list[DefinitionEntry] = []
    seen: set[int] = set()
    for attr, obj in vars(module).items():
        if attr.startswith("_") or not isinstance(obj, Judge) or id(obj) in seen:
            continue
        seen.add(id(obj))
        out.append(DefinitionEntry(name=obj.name, type=judge_type_of(obj), source=f"{file} ({attr})", prebuilt=obj))
    return out


def judge_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.rglob("*") if p.suffix in JUDGE_SUFFIXES and p.is_file()
                  and not any(part.startswith((".", "_")) for part in p.relative_to(folder).parts))


def discover_judges(project_dir: str | Path | None = None, judges_dir: str | Path = "judges", *,
                    default_model: str | None = None,
                    types: JudgeTypeRegistry | None = None) -> list[DefinitionEntry]:
    """Every judge defined under ``project_dir/judges_dir`` (a missing folder defines none).

    Files and folders starting with '.' or '_' are skipped (helpers a Python judge imports live there)."""
    root = Path(project_dir or Path.cwd()).resolve()
    folder = Path(judges_dir)
    folder = folder if folder.is_absolute() else root / folder
    found: dict[str, DefinitionEntry] = {}
    for path in judge_files(folder):
        entries = (load_judge_module(path, project_dir=root) if path.suffix == ".py"
                   else load_judge_yaml(path, project_dir=root, default_model=default_model, types=types))
        for e in entries:
            if e.name in found:
                raise JudgeDefinitionError(f"duplicate judge name {e.name!r} (also defined at {found[e.name].source})",
                                           file=e.source, field="name")
            found[e.name] = e
    return list(found.values())


def judge_type_of(judge: Judge) -> str:
    from costar.judges.checks import CheckJudge
    from costar.judges.registry import FunctionJudge

    kinds: list[tuple[type, str]] = [(AgenticJudge, "agentic"), (LlmJudge, "llm"), (CheckJudge, "check"),
                                     (FunctionJudge, "python")]
    for cls, name in kinds:
        if isinstance(judge, cls):
            return name
    return type(judge).__name__

