"""Deterministic checks: what each kind of check does with a trace, and checks as judges.

How a check is written and parsed is :mod:`costar.scenario.checks` (a :class:`CheckSpec` per entry,
validated once when the scenario loads); here each kind's :class:`Check` (its options plus ``run``)
and :class:`CheckJudge`, which applies a parsed spec to a trace, negated or not, gating or not. The
built-in kinds are entry points of the ``costar.checks`` plugin group, like a plugin's.
"""

from __future__ import annotations

import csv
import fnmatch
import io
import json
import re
from collections.abc import Callable, Iterable
from datetime import date
from typing import Any, ClassVar

import jsonschema
import yaml
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, model_validator

from costar import plugins
from costar._util.imports import import_object
from costar.errors import ConfigError
from costar.judges.base import Judge, JudgeContext
from costar.scenario.checks import CheckOptions, CheckSpec
from costar.scenario.model import Scenario
from costar.trace.model import Span, SpanKind, StatusCode, TraceStatus
from costar.trace.tool_inference import INFERRED, requested_tool_calls
from costar.verdict import Verdict, VerdictSource


class CheckResult(BaseModel):
    """What a check's ``run`` returns; the check judge turns it into a Verdict."""

    model_config = ConfigDict(use_attribute_docstrings=True)

    passed: bool
    """Whether the check holds."""
    rationale: str
    """Why, in one line a person can act on."""
    value: bool | int | float | str | None = None
    """What the check measured (a count, a size), when it measured something."""
    evidence: list[str] = Field(default_factory=list)
    """Span ids that show it, earliest first."""


class Check(CheckOptions):
    """Base class of every check: subclasses declare their options as fields, set ``kind`` (and
    optionally ``primary``, ``version``, ``uses_spans``) and implement ``run``."""

    def run(self, ctx: JudgeContext) -> CheckResult:
        """Check one trace (``ctx.trace``; its files through ``ctx``). A check that cannot tell says why in
        a failing result; an exception is recorded as a judge error."""
        raise NotImplementedError


def register_check(cls: type[Check]) -> type[Check]:
    """Register a check class in code (a decorator); it takes precedence over plugins and built-ins."""
    if not cls.kind:
        raise ValueError(f"{cls.__name__} has no kind")
    plugins.register(plugins.CHECKS, cls.kind, cls)
    return cls


# --------------------------------------------------------------------------- output checks


def _output(ctx: JudgeContext) -> str:
    return ctx.trace.output or ""


def _short(text: str, n: int = 120) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


class OutputContains(Check):
    """The agent's final output contains a text (or all, or any, of several)."""

    kind: ClassVar[str] = "output_contains"
    primary: ClassVar[str | None] = "value"
    example: ClassVar[str] = ('- output_contains: "total: 42"\n'
                              "- output_contains: {value: [median, mean], mode: any, ignore_case: true}")

    value: str | list[str]
    """The text, or a list of texts."""
    ignore_case: bool = False
    """Compare without regard to case."""
    mode: str = Field("all", pattern="^(all|any)$")
    """With a list: ``all`` must appear, or ``any`` one of them."""

    def run(self, ctx: JudgeContext) -> CheckResult:
        out = _output(ctx)
        needles = [self.value] if isinstance(self.value, str) else list(self.value)
        hay = out.lower() if self.ignore_case else out
        found = [n for n in needles if (n.lower() if self.ignore_case else n) in hay]
        missing = [n for n in needles if n not in found]
        passed = bool(found) if self.mode == "any" else not missing
        if passed:
            return CheckResult(passed=True, rationale=f"output contains {', '.join(map(repr, found))}")
        return CheckResult(passed=False, rationale=f"output lacks {', '.join(map(repr, missing))}; "
                           f"output starts {_short(out)!r}")


class OutputEquals(Check):
    """The agent's final output is exactly a text."""

    kind: ClassVar[str] = "output_equals"
    primary: ClassVar[str | None] = "value"
    example: ClassVar[str] = '- output_equals: "42"'

    value: str
    """The expected output."""
    strip: bool = True
    """Ignore leading and trailing whitespace on both sides."""
    ignore_case: bool = False
    """Compare without regard to case."""

    def run(self, ctx: JudgeContext) -> CheckResult:
        out, want = _output(ctx), self.value
        if self.strip:
            out, want = out.strip(), want.strip()
        if self.ignore_case:
            out, want = out.lower(), want.lower()
        if out == want:
            return CheckResult(passed=True, rationale="output equals the expected value")
        return CheckResult(passed=False, rationale=f"expected {_short(want)!r}, got {_short(out)!r}")


class OutputMatches(Check):
    """The agent's final output matches a regular expression (Python ``re.search``)."""

    kind: ClassVar[str] = "output_matches"
    primary: ClassVar[str | None] = "pattern"
    example: ClassVar[str] = "- output_matches: 'total:? \\$?[0-9,]+(\\.[0-9]+)?'"

    pattern: str
    """The regular expression; checked when the scenario loads."""
    ignore_case: bool = False
    """Match without regard to case."""
    multiline: bool = True
    """``^`` and ``$`` match at every line."""

    @model_validator(mode="after")
    def _compiles(self) -> OutputMatches:
        try:
            re.compile(self.pattern)
        except re.error as exc:
            raise ValueError(f"invalid regular expression {self.pattern!r}: {exc}") from None
        return self

    def run(self, ctx: JudgeContext) -> CheckResult:
        flags = (re.IGNORECASE if self.ignore_case else 0) | (re.MULTILINE if self.multiline else 0)
        m = re.search(self.pattern, _output(ctx), flags)
        if m:
            return CheckResult(passed=True, rationale=f"output matches /{self.pattern}/ at {m.group(0)!r:.80}")
        return CheckResult(passed=False, rationale=f"output does not match /{self.pattern}/")


# --------------------------------------------------------------------------- file and structure checks


def _read_source(ctx: JudgeContext, file: str | None) -> tuple[str | None, str]:
    """The text of the output (file None) or of a workspace file, with a label for rationales."""
    if file is None:
        return ctx.trace.output, "output"
    text = ctx.artifact_text(file)
    return text, f"file {file!r}"


_FENCE = re.compile(r"```(?:json|yaml|yml)?\s*\n(.*?)```", re.DOTALL)


class _StructuredCheck(Check):
    file: str | None = Field(None, validation_alias=AliasChoices("file", "path"))
    """A workspace file to read; without it, the agent's final output (a fenced block in it counts)."""
    schema_: dict[str, Any] | None = Field(None, alias="schema")
    """A JSON Schema the parsed value must match; checked when the scenario loads."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, use_attribute_docstrings=True)

    @model_validator(mode="after")
    def _schema_valid(self) -> _StructuredCheck:
        if self.schema_ is not None:
            try:
                jsonschema.validators.validator_for(self.schema_).check_schema(self.schema_)
            except jsonschema.SchemaError as exc:
                raise ValueError(f"invalid JSON Schema: {exc.message}") from None
        return self

    def parse(self, text: str) -> Any:
        raise NotImplementedError

    def run(self, ctx: JudgeContext) -> CheckResult:
        text, label = _read_source(ctx, self.file)
        if text is None:
            return CheckResult(passed=False, rationale=f"{label} does not exist")
        try:
            data = self.parse(text)
        except ValueError as first:
            # Agents often wrap structured output in a fenced block; accept the first one.
            m = _FENCE.search(text) if self.file is None else None
            if m is None:
                return CheckResult(passed=False, rationale=f"{label} is not valid {self.kind.upper()}: {first}")
            try:
                data = self.parse(m.group(1))
            except ValueError as exc:
                return CheckResult(passed=False, rationale=f"{label} is not valid {self.kind.upper()}: {exc}")
        if self.schema_ is not None:
            validator = jsonschema.validators.validator_for(self.schema_)(self.schema_)
            errors = sorted(validator.iter_errors(data), key=lambda e: list(e.path))
            if errors:
                e = errors[0]
                where = "/".join(map(str, e.path)) or "(root)"
                more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
                return CheckResult(passed=False, rationale=f"{label} violates the schema at {where}: "
                                   f"{e.message}{more}")
            return CheckResult(passed=True, rationale=f"{label} is valid {self.kind.upper()} matching the schema")
        return CheckResult(passed=True, rationale=f"{label} is valid {self.kind.upper()}")


class JsonCheck(_StructuredCheck):
    """A workspace file (or the output) parses as JSON, optionally matching a JSON Schema."""

    kind: ClassVar[str] = "json"
    primary: ClassVar[str | None] = "file"
    example: ClassVar[str] = ("- json: total.json\n"
                              "- json: {file: total.json, schema: {type: object, required: [total]}}")

    def parse(self, text: str) -> Any:
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(str(exc)) from None


class YamlCheck(_StructuredCheck):
    """A workspace file (or the output) parses as YAML, optionally matching a JSON Schema."""

    kind: ClassVar[str] = "yaml"
    primary: ClassVar[str | None] = "file"
    example: ClassVar[str] = "- yaml: {file: config.yaml, schema: {type: object, required: [name]}}"

    def parse(self, text: str) -> Any:
        try:
            return yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ValueError(str(exc).replace("\n", " ")) from None


def _workspace_file() -> Any:
    """The option naming a workspace file: ``file`` in every check, ``path`` accepted as an alias."""
    return Field(validation_alias=AliasChoices("file", "path"))


class FileExists(Check):
    """A workspace file (a glob) exists at the end of the trial."""

    kind: ClassVar[str] = "file_exists"
    primary: ClassVar[str | None] = "file"
    example: ClassVar[str] = ("- file_exists: report.md\n"
                              '- file_exists: {file: "out/*.csv", min_size: 1, created_by_agent: true}')

    file: str = _workspace_file()
    """The file, or a glob (``reports/*.csv``)."""
    min_size: int = 0
    """The smallest size in bytes that counts."""
    created_by_agent: bool = False
    """Only files the agent made or changed count (not ones the scenario put there)."""

    def run(self, ctx: JudgeContext) -> CheckResult:
        matches = [a for a in ctx.trace.artifacts if fnmatch.fnmatchcase(a.path, self.file.removeprefix("./"))]
        if self.created_by_agent:
            matches = [a for a in matches if a.origin == "agent"]
        matches = [a for a in matches if a.size >= self.min_size]
        if matches:
            return CheckResult(passed=True, rationale=f"found {', '.join(a.path for a in matches[:5])}")
        present = ", ".join(a.path for a in ctx.trace.artifacts[:10]) or "none"
        return CheckResult(passed=False, rationale=f"no workspace file matches {self.file!r} "
                           f"(files: {present})")


class FileContains(Check):
    """A workspace file contains a text."""

    kind: ClassVar[str] = "file_contains"
    example: ClassVar[str] = '- file_contains: {file: counts.csv, value: "alpha,59855"}'

    file: str = _workspace_file()
    """The file, relative to the workspace."""
    value: str
    """The text it must contain."""
    ignore_case: bool = False
    """Compare without regard to case."""

    def run(self, ctx: JudgeContext) -> CheckResult:
        text = ctx.artifact_text(self.file)
        if text is None:
            return CheckResult(passed=False, rationale=f"file {self.file!r} does not exist")
        hay, needle = (text.lower(), self.value.lower()) if self.ignore_case else (text, self.value)
        if needle in hay:
            return CheckResult(passed=True, rationale=f"file {self.file!r} contains {self.value!r}")
        return CheckResult(passed=False, rationale=f"file {self.file!r} lacks {self.value!r}")


_CSV_TYPES: dict[str, Callable[[str], Any]] = {
    "int": int,
    "float": float,
    "str": str,
    "bool": lambda v: {"true": True, "false": False, "1": True, "0": False}[v.strip().lower()],
    "date": date.fromisoformat,
}


class CsvCheck(Check):
    """A workspace CSV file has the columns, value types, filled cells and row count asked for."""

    kind: ClassVar[str] = "csv"
    primary: ClassVar[str | None] = "file"
    example: ClassVar[str] = ("- csv: {file: clean.csv, columns: [id, price], types: {price: float}, "
                              "no_missing: [price], min_rows: 1}")

    file: str = _workspace_file()
    """The CSV file, relative to the workspace."""
    columns: list[str] | None = None
    """Columns the header must have."""
    exact_columns: bool = False
    """The header has exactly ``columns``, no others."""
    types: dict[str, str] = Field(default_factory=dict)
    """Column name to type (``int``, ``float``, ``str``, ``bool``, ``date``); empty cells are not checked."""
    min_rows: int | None = None
    """The fewest data rows (the header not counted)."""
    max_rows: int | None = None
    """The most data rows."""
    no_missing: list[str] = Field(default_factory=list)
    """Columns that may have no empty cell."""
    delimiter: str = ","
    """The field separator."""

    @model_validator(mode="after")
    def _known_types(self) -> CsvCheck:
        bad = sorted(set(self.types.values()) - set(_CSV_TYPES))
        if bad:
            raise ValueError(f"unknown column type(s) {bad}; use one of {sorted(_CSV_TYPES)}")
        return self

    def run(self, ctx: JudgeContext) -> CheckResult:
        text = ctx.artifact_text(self.file)
        if text is None:
            return CheckResult(passed=False, rationale=f"file {self.file!r} does not exist")
        reader = csv.reader(io.StringIO(text), delimiter=self.delimiter)
        try:
            header = next(reader)
        except StopIteration:
            return CheckResult(passed=False, rationale=f"{self.file!r} is empty (no header row)")
        except csv.Error as exc:
            return CheckResult(passed=False, rationale=f"{self.file!r} is not valid CSV: {exc}")
        header = [h.strip() for h in header]
        problems: list[str] = []
        if self.columns is not None:
            missing = [c for c in self.columns if c not in header]
            if missing:
                problems.append(f"missing columns {missing} (has {header})")
            if self.exact_columns and set(header) != set(self.columns):
                problems.append(f"columns are {header}, expected exactly {self.columns}")
        index = {h: i for i, h in enumerate(header)}
        rows = 0
        bad_types: dict[str, str] = {}
        missing_values: dict[str, int] = {}
        try:
            for row in reader:
                if not row:
                    continue
                rows += 1
                for col, tname in self.types.items():
                    i = index.get(col)
                    if i is None or i >= len(row) or not row[i].strip() or col in bad_types:
                        continue
                    try:
                        _CSV_TYPES[tname](row[i].strip())
                    except (ValueError, KeyError):
                        bad_types[col] = f"row {rows}: {row[i]!r} is not {tname}"
                for col in self.no_missing:
                    i = index.get(col)
                    if i is not None and (i >= len(row) or not row[i].strip()):
                        missing_values[col] = missing_values.get(col, 0) + 1
        except csv.Error as exc:
            return CheckResult(passed=False, rationale=f"{self.file!r} is not valid CSV at row {rows}: {exc}")
        absent_typed = [c for c in self.types if c not in index]
        if absent_typed:
            problems.append(f"typed columns absent: {absent_typed}")
        problems.extend(f"column {c!r} {msg}" for c, msg in bad_types.items())
        problems.extend(f"column {c!r} has {n} missing values" for c, n in missing_values.items())
        if self.min_rows is not None and rows < self.min_rows:
            problems.append(f"{rows} rows < min_rows {self.min_rows}")
        if self.max_rows is not None and rows > self.max_rows:
            problems.append(f"{rows} rows > max_rows {self.max_rows}")
        if problems:
            return CheckResult(passed=False, rationale=f"{self.file!r}: " + "; ".join(problems), value=rows)
        return CheckResult(passed=True, rationale=f"{self.file!r}: {len(header)} columns, {rows} rows, "
                           "all constraints hold", value=rows)


# --------------------------------------------------------------------------- trace checks


def producing_spans(ctx: JudgeContext, path: str, limit: int = 5) -> list[str]:
    """Tool spans whose arguments or result mention the file, earliest first."""
    spans = [s for s in ctx.trace.spans if s.kind == SpanKind.TOOL]
    if not ctx.trace.spans and ctx.store is not None:  # re-scoring from the trace head: page the tool spans
        from costar.store.base import SpanQuery

        spans = ctx.store.query_spans(ctx.trace.trace_id, SpanQuery(kind=SpanKind.TOOL, limit=2000))
    name = path.rsplit("/", 1)[-1]
    hits = [s for s in spans if name in json.dumps(s.attributes.get("gen_ai.tool.call.arguments"), default=str)
            or name in str(s.attributes.get("gen_ai.tool.call.result", ""))]
    return [s.span_id for s in sorted(hits, key=lambda s: s.start_ns)[:limit]]


def tool_calls(spans: Iterable[Span]) -> list[Span]:
    """TOOL spans in start order: the agent's tool-call timeline."""
    return sorted((s for s in spans if s.kind == SpanKind.TOOL), key=lambda s: s.start_ns)


def tool_name(span: Span) -> str:
    return str(span.attributes.get("gen_ai.tool.name") or span.name)


def tool_arguments(span: Span) -> Any:
    args = span.attributes.get("gen_ai.tool.call.arguments")
    if isinstance(args, str):
        try:
            return json.loads(args)
        except json.JSONDecodeError:
            return args
    return args


def _subset(want: Any, have: Any) -> bool:
    if isinstance(want, dict):
        return isinstance(have, dict) and all(k in have and _subset(v, have[k]) for k, v in want.items())
    if isinstance(want, str) and isinstance(have, str):
        return want == have or fnmatch.fnmatchcase(have, want)
    return bool(want == have)


class ToolCalled(Check):
    """The agent ran a tool (a TOOL span: emitted by the agent, or inferred from the model's messages),
    optionally with some arguments, a number of times."""

    kind: ClassVar[str] = "tool_called"
    uses_spans: ClassVar[bool] = True
    primary: ClassVar[str | None] = "name"
    example: ClassVar[str] = ("- tool_called: read_file\n"
                              "- tool_called: {name: read_file, args: {path: sales.csv}, max: 2}")

    name: str
    """The tool's name; a glob (``search_*``) matches several."""
    args: dict[str, Any] | None = None
    """Arguments the call must have (a subset; string values may be globs)."""
    min: int = 1
    """The fewest matching calls."""
    max: int | None = None
    """The most matching calls (``min: 0, max: 0``: never called)."""

    def run(self, ctx: JudgeContext) -> CheckResult:
        calls = [s for s in tool_calls(ctx.trace.spans) if fnmatch.fnmatchcase(tool_name(s), self.name)]
        if self.args is not None:
            calls = [s for s in calls if _subset(self.args, tool_arguments(s))]
        n = len(calls)
        what = f"tool {self.name!r}" + (f" with args ⊇ {json.dumps(self.args)[:80]}" if self.args else "")
        bound = f"[{self.min}, {'∞' if self.max is None else self.max}]"
        ok = n >= self.min and (self.max is None or n <= self.max)
        rationale = f"{what} called {n} time(s); expected {bound}"
        inferred = sum(1 for s in calls if s.attributes.get(INFERRED))
        if inferred:
            rationale += f" ({inferred} inferred from the model's messages)"
        if n < self.min:
            rationale += "; " + seen_tool_requests(ctx.trace.spans, self.name)
        return CheckResult(passed=ok, value=n, evidence=[s.span_id for s in calls[:20]], rationale=rationale)


def _times(n: int) -> str:
    return {1: "once", 2: "twice"}.get(n, f"{n} times")


def seen_tool_requests(spans: list[Span], pattern: str) -> str:
    """What the trace shows about a tool that was not (or not often enough) executed: the calls
    the model asked for, and why none of them became a recorded execution."""
    requested = requested_tool_calls(spans)
    wanted = [c for c in requested if fnmatch.fnmatchcase(c.name, pattern)]
    if wanted:
        names = sorted({c.name for c in wanted})
        executed = {str(s.attributes.get("gen_ai.tool.call.id")) for s in tool_calls(spans)}
        missing = sum(1 for c in wanted if c.call_id is None or c.call_id not in executed)
        said = f"the model requested {', '.join(names)} {_times(len(wanted))}; "
        if missing == len(wanted):
            return said + "no tool execution was recorded (no TOOL span, and no result was sent back to the model)"
        return said + f"{missing} of those calls have no recorded execution"
    if not any(s.kind == SpanKind.LLM for s in spans):
        return "the trace has no LLM span, so the tool calls the model requested cannot be seen"
    if not any(s.kind == SpanKind.LLM and s.attributes.get("gen_ai.output.messages") for s in spans):
        return "no LLM span records its output messages, so the tool calls the model requested cannot be seen"
    others = sorted({c.name for c in requested} | {tool_name(s) for s in tool_calls(spans)})
    return (f"the model never requested {pattern!r}"
            + (f"; tools seen: {', '.join(others[:10])}" if others else "; no tool was requested or called"))


class ToolOrder(Check):
    """Tools were called in this order (other calls may come between them)."""

    kind: ClassVar[str] = "tool_order"
    uses_spans: ClassVar[bool] = True
    primary: ClassVar[str | None] = "sequence"
    example: ClassVar[str] = "- tool_order: [list_files, read_file, write_file]"

    sequence: list[str] = Field(min_length=1)
    """Tool names (globs allowed), in the order they must first be called."""

    def run(self, ctx: JudgeContext) -> CheckResult:
        timeline = tool_calls(ctx.trace.spans)
        i = 0
        for s in timeline:
            if i < len(self.sequence) and fnmatch.fnmatchcase(tool_name(s), self.sequence[i]):
                i += 1
        names = [tool_name(s) for s in timeline]
        if i == len(self.sequence):
            return CheckResult(passed=True, rationale=f"tools called in order {self.sequence}")
        rationale = f"expected {self.sequence} in order; matched {self.sequence[:i]}; timeline {names[:20]}"
        requested = [c.name for c in requested_tool_calls(ctx.trace.spans)]
        if requested != names:
            # Calls the model asked for that never became a recorded execution explain the gap.
            rationale += f"; the model requested {requested[:20]}"
        return CheckResult(passed=False, rationale=rationale)


SKILL_TOOLS = ("load_skill", "skill", "Skill", "read_skill", "use_skill")


def skill_spans(spans: Iterable[Span], skill: str) -> list[Span]:
    """Spans that show the skill was invoked: an explicit ``costar.skill.name``, a skill tool,
    or a tool call that read the skill's own folder."""
    out = []
    for s in spans:
        if s.attributes.get("costar.skill.name") == skill:
            out.append(s)
            continue
        if s.kind != SpanKind.TOOL:
            continue
        args = tool_arguments(s)
        flat = json.dumps(args, default=str) if not isinstance(args, str) else args
        named = tool_name(s) in SKILL_TOOLS and (skill == flat or f'"{skill}"' in flat)
        if named or re.search(rf"skills?/{re.escape(skill)}(/|\.md|\")", flat):
            out.append(s)
    return out


class SkillInvoked(Check):
    """The agent used a skill: a span named for it (``costar.skill.name``), a skill tool called with
    its name, or a tool call that read the skill's folder."""

    kind: ClassVar[str] = "skill_invoked"
    uses_spans: ClassVar[bool] = True
    primary: ClassVar[str | None] = "name"
    example: ClassVar[str] = "- skill_invoked: data-cleaning"

    name: str
    """The skill's name."""

    def run(self, ctx: JudgeContext) -> CheckResult:
        found = skill_spans(ctx.trace.spans, self.name)
        if found:
            return CheckResult(passed=True, evidence=[s.span_id for s in found],
                               rationale=f"skill {self.name!r} invoked in span {found[0].name!r}")
        return CheckResult(passed=False, rationale=f"skill {self.name!r} was never invoked")


class NoErrorSpans(Check):
    """No span of the trace ended in error (a failed tool, model call or step)."""

    kind: ClassVar[str] = "no_error_spans"
    uses_spans: ClassVar[bool] = True
    primary: ClassVar[str | None] = "enabled"
    example: ClassVar[str] = "- no_error_spans\n- no_error_spans: {kinds: [TOOL]}\n  gate: false"

    enabled: bool = True
    """False turns the check off."""
    kinds: list[SpanKind] | None = None
    """Only spans of these kinds count (``LLM``, ``TOOL``, ``AGENT``...)."""

    def run(self, ctx: JudgeContext) -> CheckResult:
        errs = [s for s in ctx.trace.spans if s.status.code == StatusCode.ERROR
                and (self.kinds is None or s.kind in self.kinds)]
        if not self.enabled or not errs:
            return CheckResult(passed=True, rationale="no span ended in error", value=0)
        first = errs[0]
        return CheckResult(passed=False, value=len(errs), evidence=[s.span_id for s in errs[:20]],
                           rationale=f"{len(errs)} error span(s); first {first.name!r}: "
                           f"{_short(first.status.message or '', 160)}")


class _UpperBound(Check):
    attribute: ClassVar[str] = ""
    unit: ClassVar[str] = ""
    primary: ClassVar[str | None] = "limit"

    limit: float = Field(ge=0)
    """The largest value that passes."""

    def run(self, ctx: JudgeContext) -> CheckResult:
        actual = getattr(ctx.trace.totals, self.attribute)
        ok = actual <= self.limit
        return CheckResult(passed=ok, value=actual,
                           rationale=f"{self.attribute} {actual:g}{self.unit} {'≤' if ok else '>'} "
                           f"limit {self.limit:g}{self.unit}")


class MaxTokens(_UpperBound):
    """The trial used at most this many tokens (input plus output, over every model call)."""

    kind: ClassVar[str] = "max_tokens"
    attribute: ClassVar[str] = "total_tokens"
    example: ClassVar[str] = "- max_tokens: 20000\n  gate: false"


class MaxCost(_UpperBound):
    """The trial's model calls cost at most this many US dollars."""

    kind: ClassVar[str] = "max_cost"
    attribute: ClassVar[str] = "cost_usd"
    unit: ClassVar[str] = " USD"
    example: ClassVar[str] = "- max_cost: 0.05"


class MaxLatency(_UpperBound):
    """The trial took at most this many seconds."""

    kind: ClassVar[str] = "max_latency"
    attribute: ClassVar[str] = "latency_s"
    unit: ClassVar[str] = " s"
    example: ClassVar[str] = "- max_latency: 60"


class MaxToolCalls(_UpperBound):
    """The agent ran at most this many tools."""

    kind: ClassVar[str] = "max_tool_calls"
    attribute: ClassVar[str] = "tool_calls"
    example: ClassVar[str] = "- max_tool_calls: 8"


class MaxLlmCalls(_UpperBound):
    """The agent called its model at most this many times."""

    kind: ClassVar[str] = "max_llm_calls"
    attribute: ClassVar[str] = "llm_calls"
    example: ClassVar[str] = "- max_llm_calls: 10"


class AgentCompleted(Check):
    """The trial ended normally: no crash, no timeout."""

    kind: ClassVar[str] = "agent_completed"
    primary: ClassVar[str | None] = "enabled"
    example: ClassVar[str] = "expectations:\n  require_completion: false   # drop the check every scenario gets"

    enabled: bool = True
    """False turns the check off."""

    def run(self, ctx: JudgeContext) -> CheckResult:
        t = ctx.trace
        if not self.enabled or t.status == TraceStatus.OK:
            return CheckResult(passed=True, rationale="the agent finished normally")
        return CheckResult(passed=False, rationale=f"the agent did not finish ({t.status.value}): "
                           f"{_short(t.error or '', 200)}")


class PythonCheck(Check):
    """A user function ``f(ctx, **args)`` returning bool, (bool, rationale), dict or CheckResult."""

    kind: ClassVar[str] = "python"
    uses_spans: ClassVar[bool] = True
    primary: ClassVar[str | None] = "function"
    example: ClassVar[str] = "- python: {function: my_checks:totals_add_up, args: {tolerance: 0.01}}"

    function: str
    """``module:function``, importable from the project folder."""
    args: dict[str, Any] = Field(default_factory=dict)
    """Keyword arguments passed to the function after the context."""

    def run(self, ctx: JudgeContext) -> CheckResult:
        fn = import_object(self.function)
        result = fn(ctx, **self.args)
        if isinstance(result, CheckResult):
            return result
        if isinstance(result, bool):
            return CheckResult(passed=result, rationale=f"{self.function} returned {result}")
        if isinstance(result, tuple) and len(result) == 2 and isinstance(result[0], bool):
            return CheckResult(passed=result[0], rationale=str(result[1]))
        if isinstance(result, dict) and isinstance(result.get("passed"), bool):
            return CheckResult(**result)
        raise TypeError(f"{self.function} returned {type(result).__name__}; expected bool, "
                        "(bool, rationale), a dict with 'passed', or CheckResult")


# --------------------------------------------------------------------------- parsing and judges


class CheckJudge(Judge):
    """A check applied as a judge: gating unless ``gate: false``; ``negate`` inverts it."""

    source = VerdictSource.CODE

    def __init__(self, check: Check, *, name: str | None = None, gate: bool = True,
                 negate: bool = False, description: str | None = None) -> None:
        self.check = check
        self.negate = negate
        self.gating = gate
        self.description = description
        self.explicit_name = name
        self.name = name or (("not " if negate else "") + check.describe())
        self.version = str(check.version)
        self.needs_spans = check.uses_spans

    def config(self) -> dict[str, Any]:
        return {"kind": self.check.kind, "params": self.check.model_dump(mode="json", by_alias=True),
                "negate": self.negate}

    @classmethod
    def from_spec(cls, spec: CheckSpec) -> CheckJudge:
        """The judge for one parsed check entry (nothing is parsed again)."""
        if not isinstance(spec.options, Check):
            raise ConfigError(f"check {spec.kind!r} ({type(spec.options).__name__}) has no run(ctx): a check class "
                              "must subclass costar.judges.checks.Check")
        return cls(spec.options, name=spec.name, gate=spec.gate, negate=spec.negate, description=spec.description)

    def to_spec(self) -> CheckSpec:
        return CheckSpec(options=self.check, negate=self.negate, name=self.explicit_name, gate=self.gating,
                         description=self.description)

    def spec(self) -> dict[str, Any]:
        """The check as written in a scenario file (round-trips through ``parse_check``)."""
        return self.to_spec().written()

    async def aevaluate(self, ctx: JudgeContext) -> Verdict:
        # Built-in checks are quick and bounded: inline (a thread hop would cost more than the
        # check). A python check is user code of unknown cost: a worker thread.
        if isinstance(self.check, PythonCheck):
            return await super().aevaluate(ctx)
        return self.evaluate(ctx)

    def evaluate(self, ctx: JudgeContext) -> Verdict:
        r = self.check.run(ctx)
        passed = r.passed != self.negate
        target = getattr(self.check, "file", None)
        if not passed and not r.evidence and isinstance(target, str):
            # A failing file check points at the tool calls that produced (or should have) the file.
            r.evidence = producing_spans(ctx, target)
        rationale = r.rationale if not self.negate else f"negated: {r.rationale}"
        value: Any = r.value if r.value is not None else r.passed
        return Verdict(name=self.name, value=value, passed=passed, rationale=rationale,
                       source=VerdictSource.CODE, evidence=r.evidence)


def parse_check(spec: Any) -> CheckJudge:
    """Turn one entry of ``expectations.checks`` (as written, or parsed) into a judge; ValueError
    names what is wrong."""
    if isinstance(spec, CheckJudge):
        return spec
    return CheckJudge.from_spec(CheckSpec.parse(spec))


def scenario_checks(scenario: Scenario) -> list[CheckJudge]:
    """The check judges of a scenario: ``agent_completed`` (unless switched off) and its checks,
    with repeated names numbered (``#2``) so each verdict keeps its own name."""
    judges = [CheckJudge.from_spec(spec) for spec in scenario.expectations.checks]
    if scenario.expectations.require_completion:
        judges.insert(0, CheckJudge(AgentCompleted(), name="agent_completed"))
    seen: dict[str, int] = {}
    for j in judges:
        n = seen.get(j.name, 0)
        seen[j.name] = n + 1
        if n:
            j.name = f"{j.name} #{n + 1}"
    return judges
