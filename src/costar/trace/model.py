"""The trace contract: OpenTelemetry-shaped spans plus the trial facts coSTAR needs.

Span attributes speak the OpenTelemetry GenAI conventions (``gen_ai.*``); coSTAR's own
facts live under ``costar.*``. Messages are kept structured (the OTel GenAI "parts" shape)
rather than as JSON strings, and are serialised to strings only when exported over OTLP.
"""

from __future__ import annotations

import math
import os
from enum import StrEnum
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

from costar.trace.tool_definition import ToolDefinition

# Fields are documented with attribute docstrings, for editors and readers. Unlike the other
# contracts these models do not ask pydantic to copy them into field descriptions
# (``use_attribute_docstrings``): every agent the harness captures imports this module, and reading
# the docstrings at import costs it 15-30 ms (inspect and tokenize on the class sources).

# Numeric bounds. Stores keep times, trials and sizes in 64-bit integer columns (SQLite INTEGER,
# PostgreSQL BIGINT), so a value outside them would fail the write of the whole batch. Values come
# from untrusted producers (OTLP clients, imported files, agent code), so every one is checked where
# it enters: times are clamped into range and the clamped field is named in ``costar.clamped`` (on
# the span, the event or the trace metadata); identities (trial) and sizes are validated.
INT64_MAX = 2**63 - 1
MAX_TRIAL = 2**31 - 1
CLAMPED = "costar.clamped"
#: The project a production trace belongs to: a resource attribute its producer may set, and the
#: key under which costar server records it in the trace's metadata.
PROJECT_KEY = "costar.project"


def clamp_ns(value: Any) -> int:
    """A timestamp (ns since the epoch) within [0, 2^63-1]."""
    return 0 if value < 0 else INT64_MAX if value > INT64_MAX else value


def _flag(attributes: dict[str, Any], fields: list[str]) -> dict[str, Any]:
    already = attributes.get(CLAMPED)
    names = [*already, *fields] if isinstance(already, list) else fields
    return {**attributes, CLAMPED: list(dict.fromkeys(names))}


def _out_of_range(value: int | None) -> bool:
    return value is not None and not 0 <= value <= INT64_MAX


class SpanKind(StrEnum):
    """What a span records (the OpenInference span kinds): model calls, tool runs, agent steps."""

    AGENT = "AGENT"
    """An agent's run or one of its steps (``invoke_agent``)."""
    LLM = "LLM"
    """One model call (``chat {model}``): messages, tokens, cost."""
    TOOL = "TOOL"
    """One tool run (``execute_tool {tool}``): arguments and result."""
    RETRIEVER = "RETRIEVER"
    """A retrieval from an index or a search."""
    CHAIN = "CHAIN"
    """A step of the agent's own code that groups others (the default for ``@traced``)."""
    EMBEDDING = "EMBEDDING"
    """An embedding model call."""
    RERANKER = "RERANKER"
    """A reranking of retrieved documents."""
    GUARDRAIL = "GUARDRAIL"
    """A guardrail's check of an input or output."""
    EVALUATOR = "EVALUATOR"
    """An evaluation the agent ran on itself."""
    UNKNOWN = "UNKNOWN"
    """A span whose kind its producer did not say."""


class StatusCode(StrEnum):
    """A span's status, as OpenTelemetry defines it."""

    UNSET = "UNSET"
    """Nothing was said: the default, and not an error."""
    OK = "OK"
    """The operation was explicitly marked successful."""
    ERROR = "ERROR"
    """The operation failed (the span status message says why)."""


class TraceStatus(StrEnum):
    """How the agent's trial ended, as the harness saw it (judges decide whether it passed)."""

    OK = "ok"
    """The agent returned (or exited 0)."""
    ERROR = "error"
    """The agent raised, exited non-zero or could not start; ``Trace.error`` says why."""
    TIMEOUT = "timeout"
    """The agent ran past the scenario's timeout and was stopped."""


class SpanStatus(BaseModel):
    """A span's status code and, for an error, its message."""

    model_config = ConfigDict(extra="forbid")

    code: StatusCode = StatusCode.UNSET
    """UNSET, OK or ERROR."""
    message: str | None = None
    """What went wrong, for an ERROR status."""


class SpanEvent(BaseModel):
    """Something that happened at one moment inside a span (an exception, a log line)."""

    model_config = ConfigDict(extra="forbid")

    name: str
    """The event's name (``exception`` for a recorded exception)."""
    time_ns: int
    """When it happened (Unix nanoseconds)."""
    attributes: dict[str, Any] = Field(default_factory=dict)
    """Its attributes (``exception.type``, ``exception.message``, ...)."""

    @model_validator(mode="after")
    def _bounded(self) -> SpanEvent:
        bounded = bound_event(self)
        if bounded is not self:
            self.time_ns, self.attributes = bounded.time_ns, bounded.attributes
        return self


class Span(BaseModel):
    """One operation inside a trace: a model call, a tool run, an agent step.

    Shaped like an OpenTelemetry span; attributes follow the OpenTelemetry GenAI conventions
    (``gen_ai.*``, see docs/CONVENTIONS.md) and coSTAR's own facts live under ``costar.*``.
    """

    model_config = ConfigDict(extra="forbid")

    trace_id: str
    """The trace this span belongs to (32 hex digits)."""
    span_id: str
    """This span's id (16 hex digits), unique within its trace."""
    parent_id: str | None = None
    """The enclosing span's id; None for a root span."""
    name: str
    """The operation, e.g. ``chat gpt-4.1-mini`` or ``execute_tool get_weather``."""
    kind: SpanKind = SpanKind.UNKNOWN
    """What the span records (LLM, TOOL, AGENT, ...)."""
    start_ns: int
    """When the operation started (Unix nanoseconds)."""
    end_ns: int | None = None
    """When it ended (Unix nanoseconds); None while it is still open."""
    status: SpanStatus = Field(default_factory=SpanStatus)
    """Whether the operation failed, and why."""
    attributes: dict[str, Any] = Field(default_factory=dict)
    """What the operation was about: model, messages, tokens, tool arguments and result. Structured
    values (lists, dicts) stay structured."""
    events: list[SpanEvent] = Field(default_factory=list)
    """Things that happened during the span (exceptions, log lines)."""

    @model_validator(mode="after")
    def _bounded(self) -> Span:
        if _out_of_range(self.start_ns) or _out_of_range(self.end_ns):
            bounded = bound_span(self)
            self.start_ns, self.end_ns, self.attributes = bounded.start_ns, bounded.end_ns, bounded.attributes
        return self

    @property
    def duration_s(self) -> float:
        """How long the operation took, in seconds (0 while the span is open)."""
        if self.end_ns is None:
            return 0.0
        return max(0, self.end_ns - self.start_ns) / 1e9

    @property
    def is_error(self) -> bool:
        """Whether the span's status is ERROR."""
        return self.status.code == StatusCode.ERROR


class AgentInfo(BaseModel):
    """Which agent ran: its name and, when known, its version and git commit. Two runs with the same
    identity ran the same agent."""

    model_config = ConfigDict(extra="forbid")

    name: str = "agent"
    """The agent's name (from its spec, or the module or command it runs)."""
    version: str | None = None
    """The agent's own version string, when it has one."""
    git_sha: str | None = None
    """The commit of the agent's repository when it ran, when it is in one."""
    spec_fingerprint: str | None = None
    """Hash of the agent's configuration as stored with the run (``costar.run.agents.spec_fingerprint``)."""


class Totals(BaseModel):
    """A trace's totals, derived from its spans by :func:`compute_totals`."""

    model_config = ConfigDict(extra="forbid")

    input_tokens: int = 0
    """Prompt tokens over every LLM span, the ones read from or written to a prompt cache included."""
    output_tokens: int = 0
    """Completion tokens over every LLM span."""
    total_tokens: int = 0
    """input_tokens + output_tokens."""
    cost_usd: float = 0.0
    """The model calls' price in US dollars (unknown prices count 0)."""
    latency_s: float = 0.0
    """The trial's wall time in seconds."""
    llm_calls: int = 0
    """How many LLM spans (model calls) the trace has."""
    tool_calls: int = 0
    """How many TOOL spans (tool runs, emitted or inferred) the trace has."""
    error_spans: int = 0
    """How many spans have an ERROR status."""
    retries: int = 0
    """Model-call retries the model client made (``costar.retries`` on LLM spans)."""


SHA256_PATTERN = r"^[0-9a-f]{64}$"


class Artifact(BaseModel):
    """A file the agent left in its workspace; the bytes live in the blob store under ``sha256``."""

    model_config = ConfigDict(extra="forbid")

    path: str
    """The file's path relative to the workspace (forward slashes)."""
    sha256: str = Field(pattern=SHA256_PATTERN)
    """The blob store's key: a plain hex digest, since anything else (``../``, ``/etc``) would make
    the blob path point outside the store."""
    size: int = Field(ge=0, le=INT64_MAX)
    """The file's size in bytes."""
    media_type: str | None = None
    """Its media type guessed from the name (``text/csv``), when one is known."""
    origin: Literal["agent", "setup"] = "agent"
    """``setup`` marks a file that is byte-identical to what the scenario put there; ``agent`` the rest."""
    redacted: bool = False
    """Secret values in the file's text were replaced by [REDACTED] before its bytes were stored."""
    holds_secret: bool = False
    """A binary file that contains a secret value, stored as it is (see ``secrets.drop_binary_artifacts``)."""


class Trace(BaseModel):
    """One trial of one scenario (or one imported or received trace): what the agent did, as spans,
    plus the facts judges need: its input and final output, status, totals and the files it left.

    Judges read traces from the store; every trace is finalised before it is stored (see
    :mod:`costar.trace.finalize`): one span per model call, a cost on each, inferred tool spans.
    """

    model_config = ConfigDict(extra="forbid")

    trace_id: str
    """The trace's id (32 hex digits)."""
    run_id: str | None = None
    """The run it belongs to; None for a trace not stored in a run yet."""
    scenario_id: str | None = None
    """The scenario it is a trial of; None for a trace from production or an import without one."""
    trial: int = Field(0, ge=0, le=MAX_TRIAL)
    """Which trial of the scenario, from 0."""
    agent: AgentInfo = Field(default_factory=AgentInfo)
    """The agent that ran."""
    status: TraceStatus = TraceStatus.OK
    """How the trial ended: ok, error or timeout (whether it passed is for the judges)."""
    error: str | None = None
    """Why the agent failed, for an error or timeout status."""
    input: Any = None
    """What the agent was given: the scenario's prompt (a list of turns for a conversation)."""
    output: str | None = None
    """The agent's final answer, as text."""
    start_ns: int = 0
    """When the trial started (Unix nanoseconds)."""
    end_ns: int = 0
    """When it ended (Unix nanoseconds)."""
    totals: Totals = Field(default_factory=Totals)
    """Tokens, cost, latency and counts, derived from the spans."""
    artifacts: list[Artifact] = Field(default_factory=list)
    """Files the agent left in its workspace."""
    spans: list[Span] = Field(default_factory=list)
    """Every span of the trace (empty when the trace was read without its spans)."""
    tools: list[ToolDefinition] = Field(default_factory=list)
    """The tool definitions the agent saw, with their fingerprints (``costar.trace.tools``)."""
    metadata: dict[str, Any] = Field(default_factory=dict)
    """Anything else: what the agent reported, notes on files not stored, the OTel resource."""

    @model_validator(mode="after")
    def _bounded(self) -> Trace:
        bounded = bound_trace_fields(self)
        if bounded is not self:
            self.start_ns, self.end_ns, self.totals, self.metadata = (bounded.start_ns, bounded.end_ns,
                                                                      bounded.totals, bounded.metadata)
        return self

    def root_spans(self) -> list[Span]:
        """Spans without a parent in this trace (their parent is None or was not recorded)."""
        ids = {s.span_id for s in self.spans}
        return [s for s in self.spans if s.parent_id is None or s.parent_id not in ids]

    def children(self, span_id: str) -> list[Span]:
        """The spans whose parent is ``span_id``."""
        return [s for s in self.spans if s.parent_id == span_id]

    def spans_of_kind(self, kind: SpanKind) -> list[Span]:
        """The spans of one kind (``SpanKind.TOOL``...), in order."""
        return [s for s in self.spans if s.kind == kind]

    def artifact(self, path: str) -> Artifact | None:
        """The artifact at ``path`` (relative to the workspace; a leading ``./`` is ignored), or None."""
        norm = path.removeprefix("./")
        return next((a for a in self.artifacts if a.path == norm), None)


_SPAN_FIELDS = frozenset(Span.model_fields)
_STATUS_FIELDS = frozenset(SpanStatus.model_fields)


_Model = TypeVar("_Model", bound=BaseModel)


def _assemble(cls: type[_Model], values: dict[str, Any], fields: frozenset[str]) -> _Model:
    # model_construct costs ~3 µs per object; the recorder and the store build millions of spans
    # from values that are already valid, so they fill the instance directly (every field given).
    obj = cls.__new__(cls)
    object.__setattr__(obj, "__dict__", values)
    object.__setattr__(obj, "__pydantic_fields_set__", set(fields))
    object.__setattr__(obj, "__pydantic_extra__", None)
    object.__setattr__(obj, "__pydantic_private__", None)
    return obj


def bound_event(e: SpanEvent) -> SpanEvent:
    """The event with its time in range (flagged when clamped); the same object when it was."""
    if not _out_of_range(e.time_ns):
        return e
    return SpanEvent.model_construct(name=e.name, time_ns=clamp_ns(e.time_ns),
                                     attributes=_flag(e.attributes, ["time_ns"]))


def bound_span(s: Span) -> Span:
    """The span with start/end in range (flagged in ``costar.clamped``); the same object when they were.
    Covers spans built without validation (``make_span``, ``model_construct``, later assignment)."""
    fields = [name for name, v in (("start_ns", s.start_ns), ("end_ns", s.end_ns)) if _out_of_range(v)]
    if not fields:
        return s
    values = dict(s.__dict__)
    values["start_ns"] = clamp_ns(s.start_ns)
    values["end_ns"] = None if s.end_ns is None else clamp_ns(s.end_ns)
    values["attributes"] = _flag(s.attributes, fields)
    return _assemble(Span, values, _SPAN_FIELDS)


def _bound_totals(t: Totals) -> tuple[Totals, list[str]]:
    fixed: dict[str, Any] = {}
    for name, value in t.__dict__.items():
        if isinstance(value, float) and not math.isfinite(value):
            fixed[name] = 0.0
        elif isinstance(value, int) and not -INT64_MAX <= value <= INT64_MAX:
            fixed[name] = INT64_MAX if value > 0 else -INT64_MAX
    return (t.model_copy(update=fixed), [f"totals.{k}" for k in fixed]) if fixed else (t, [])


def bound_trace_fields(t: Trace) -> Trace:
    """The trace with its own numbers in range (times, trial, totals), clamped fields named in
    ``metadata['costar.clamped']``; the same object when nothing was out of range. Spans are not
    looked at (see ``bound_span``)."""
    fields = [name for name, v in (("start_ns", t.start_ns), ("end_ns", t.end_ns)) if _out_of_range(v)]
    trial_bad = not 0 <= t.trial <= MAX_TRIAL
    totals, totals_fixed = _bound_totals(t.totals)
    if not fields and not trial_bad and not totals_fixed:
        return t
    update: dict[str, Any] = {"start_ns": clamp_ns(t.start_ns), "end_ns": clamp_ns(t.end_ns), "totals": totals}
    if trial_bad:
        update["trial"] = 0 if t.trial < 0 else MAX_TRIAL
        fields.append("trial")
    update["metadata"] = _flag(t.metadata, [*fields, *totals_fixed])
    return t.model_copy(update=update)


def make_span(trace_id: str, span_id: str, parent_id: str | None, name: str, kind: SpanKind, start_ns: int,
              end_ns: int | None, code: StatusCode, message: str | None, attributes: dict[str, Any],
              events: list[SpanEvent]) -> Span:
    """A Span from trusted, already-typed values, without validation (hot paths only)."""
    status = _assemble(SpanStatus, {"code": code, "message": message}, _STATUS_FIELDS)
    return _assemble(Span, {"trace_id": trace_id, "span_id": span_id, "parent_id": parent_id, "name": name,
                            "kind": kind, "start_ns": start_ns, "end_ns": end_ns, "status": status,
                            "attributes": attributes, "events": events}, _SPAN_FIELDS)


def new_trace_id() -> str:
    """A fresh random trace id (32 hex digits, as OpenTelemetry's)."""
    return os.urandom(16).hex()


def new_span_id() -> str:
    """A fresh random span id (16 hex digits, as OpenTelemetry's)."""
    return os.urandom(8).hex()


def compute_totals(spans: list[Span], latency_s: float) -> Totals:
    """Totals are derived from the spans so every capture path (recorder, OTLP, import) agrees."""
    # Summed in locals: each assignment to a model's field costs more than the addition.
    llm_calls = input_tokens = output_tokens = retries = tool_calls = error_spans = 0
    cost_usd = 0.0
    for s in spans:
        a = s.attributes
        if s.kind == SpanKind.LLM:
            llm_calls += 1
            input_tokens += _int(a.get("gen_ai.usage.input_tokens"))
            output_tokens += _int(a.get("gen_ai.usage.output_tokens"))
            cost_usd = _add_cost(cost_usd, a.get("costar.usage.cost_usd"))
            retries += _int(a.get("costar.retries"))
        elif s.kind == SpanKind.TOOL:
            tool_calls += 1
        if s.status.code == StatusCode.ERROR:
            error_spans += 1
    return Totals(input_tokens=input_tokens, output_tokens=output_tokens, total_tokens=input_tokens + output_tokens,
                  cost_usd=cost_usd, latency_s=latency_s, llm_calls=llm_calls, tool_calls=tool_calls,
                  error_spans=error_spans, retries=retries)


def _int(v: Any) -> int:
    # Attribute values are untrusted: a count that is negative, beyond 64 bits or not a number counts
    # as nothing (a negative count would let a trace slip under a token budget).
    try:
        n = int(v or 0)
    except (TypeError, ValueError, OverflowError):
        return 0
    return n if 0 <= n <= INT64_MAX else 0


MAX_COST_USD = 1e15
"""The most a trace's cost counts for: a cost beyond any budget, so ``max_cost`` fails on it, and small
enough that sums over millions of traces (a run's total, metric means) stay finite."""


def _add_cost(total: float, v: Any) -> float:
    # A cost too large for a float or for any budget (an attribute "inf", as the store keeps an infinite
    # float) counts as MAX_COST_USD: a trial's cost never becomes inf, which the store would clamp to $0
    # and max_cost would pass. A cost that is negative or not a number counts as nothing: a span
    # reporting -$50 must not pull a trial under max_cost.
    try:
        x = float(v or 0.0)
    except (TypeError, ValueError):
        return total
    except OverflowError:  # an integer beyond a float
        x = math.inf if v > 0 else math.nan
    if math.isnan(x) or x <= 0:
        return total
    return min(total + min(x, MAX_COST_USD), MAX_COST_USD)
