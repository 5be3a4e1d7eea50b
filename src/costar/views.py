"""The JSON shapes of what coSTAR reports: what every ``--json`` prints, and what the server's API and
the web app serve. One module, so a shape is defined once; ``docs/JSON.md`` is generated from it.

Every view is a JSON object whose first two fields are ``schema_version`` and ``kind`` (``runs``,
``traces``, ``trace``, ``report``, ``judges``, ``metrics``, ``comparison``). Ids in a view are always
whole (never shortened), numbers are plain JSON numbers (rates between 0 and 1, money in US dollars,
times in seconds unless a field says ``_ns`` or ``_ms``), and times of day are Unix seconds.

Versioning: a field may be *added* to a view without changing :data:`SCHEMA_VERSION`, so readers
must ignore fields they do not know; removing or renaming a field, or changing what one means,
raises it. Each view parses back with its model (``RunList.model_validate_json(text)``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, model_serializer

from costar.compare import Comparison
from costar.errors import ConfigError
from costar.metrics import MetricsReport
from costar.store.base import Run, SpanQuery, Store
from costar.store.span_tree import span_facts
from costar.summary import RunSummary, summarize
from costar.trace.model import AgentInfo, Artifact, Span, SpanKind, Totals
from costar.verdict import Verdict

if TYPE_CHECKING:
    from costar.judges.registry import JudgeInfo

SCHEMA_VERSION = 1
"""The version of every view's shape; see the module docstring for when it changes."""

ARTIFACT_TEXT_CHARS = 4000
"""How much of a text artifact a trace view carries by default."""
SHOWN_ARTIFACT_CHARS = 2000
"""How much of each text artifact ``costar traces show`` reads (and its view over HTTP carries)."""


class View(BaseModel):
    """What every view starts with: its schema version and its kind."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    kind_name: ClassVar[str] = ""
    schema_version: int = SCHEMA_VERSION
    """The version of this shape (:data:`SCHEMA_VERSION` when it was written)."""
    kind: str = ""
    """Which view this is: ``runs``, ``traces``, ``trace``, ``report``, ``judges``, ``metrics``, ``comparison``."""

    def model_post_init(self, context: Any) -> None:
        """Fill ``kind`` from the class when it was not given."""
        if not self.kind:
            self.kind = self.kind_name

    @model_serializer(mode="wrap")
    def _header_first(self, handler: SerializerFunctionWrapHandler) -> Any:
        data = handler(self)
        if isinstance(data, dict):
            head = {key: data.pop(key) for key in ("schema_version", "kind") if key in data}
            return {**head, **data}
        return data


# --------------------------------------------------------------------------- runs


class RunRow(BaseModel):
    """One run in a listing: where it came from, how it went, what it cost."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    run_id: str
    """The whole run id (``costar report RUN_ID``)."""
    status: str
    """``running``, ``finished``, ``interrupted``, ``failed`` or ``imported``."""
    error: str | None = None
    """Why a failed run stopped (its traces could not be stored, say)."""
    origin: str
    """Where the run came from: ``cli``, ``api``, ``pytest``, ``refine``, ``import``, ``ci`` or ``monitor``."""
    created_at: float
    """When the run started (Unix seconds)."""
    finished_at: float | None
    """When it finished (None while running, or when it never did)."""
    agent: AgentInfo
    """The agent: name, version and git commit (``git_sha``) when known."""
    branch: str | None = None
    """The branch the run is of (from CI variables or git), when known: ``branch:NAME`` selects it."""
    tags: list[str] = Field(default_factory=list)
    """The run's tags (``costar run --run-tag``): ``tag:NAME`` selects it."""
    suite: list[str]
    """The scenario files or folders it ran."""
    description: str
    """The run's description (refine runs say which session and attempt)."""
    scenarios: int
    """Scenarios with at least one trace (or meant to run)."""
    scenarios_passed: int
    """Scenarios whose every trial passed."""
    trials: int
    """Trials recorded."""
    passed: int
    """Trials that passed."""
    failed: int
    """Trials that failed."""
    errored: int
    """Trials a judge could not decide (judge errors): neither pass nor fail."""
    unscored: int
    """Trials no judge has scored yet."""
    pass_rate: float | None
    """``passed / (passed + failed)``; None when nothing was decided."""
    total_tokens: int
    """Tokens the agent used, over every trial."""
    cost_usd: float
    """What the agent's model calls cost, over every trial."""
    judge_cost_usd: float
    """What the judges' model calls cost."""
    all_gates_passed: bool
    """True when every scenario passed (the run's exit code is 0)."""

    @classmethod
    def of(cls, run: Run, summary: RunSummary) -> RunRow:
        """The row of ``run``, from its summary."""
        t = summary.totals
        raw_vcs, raw_tags = run.metadata.get("vcs"), run.metadata.get("tags")
        vcs: dict[str, Any] = raw_vcs if isinstance(raw_vcs, dict) else {}
        tags: list[Any] = raw_tags if isinstance(raw_tags, list) else []
        return cls(run_id=run.run_id, status=run.status, error=run.error, origin=run.origin, created_at=run.created_at,
                   finished_at=run.finished_at, agent=run.agent, branch=vcs.get("branch") or None,
                   tags=[str(t) for t in tags], suite=list(run.suite),
                   description=run.description, scenarios=t.scenarios, scenarios_passed=t.scenarios_passed,
                   trials=t.trials, passed=t.passed, failed=t.failed, errored=t.errored, unscored=t.unscored,
                   pass_rate=summary.trial_rate.value, total_tokens=t.usage.total_tokens, cost_usd=t.usage.cost_usd,
                   judge_cost_usd=t.judge_cost_usd, all_gates_passed=summary.all_gates_passed)


class RunList(View):
    """``costar runs --json``: the store's runs, newest first."""

    kind_name: ClassVar[str] = "runs"
    store: str
    """The store, as shown to people (a folder, or a database URL without its password)."""
    runs: list[RunRow] = Field(default_factory=list)
    """The runs, newest first."""
    hidden: int = 0
    """Runs among the newest that the origin filter left out."""


def run_summary(store: Store, run: Run) -> RunSummary:
    """A stored run's summary, from its trace heads and latest verdicts (spans are not read)."""
    return summarize(run, store.iter_traces(run.run_id, spans=False), store.verdicts(run_id=run.run_id))


def listed_origins(origins: Sequence[str] = (), *, include_hidden: bool = False) -> tuple[str, ...]:
    """The origins ``costar runs`` lists: those asked for, else every origin but refine's own runs
    (unless ``include_hidden``; ``()`` then means all). An unknown origin is a ConfigError."""
    from costar.store.base import NOT_LATEST, ORIGINS

    for o in origins:
        if o not in ORIGINS:
            raise ConfigError(f"unknown origin {o!r}; use one of {', '.join(ORIGINS)}")
    return tuple(origins) or (() if include_hidden else tuple(o for o in ORIGINS if o not in NOT_LATEST))


def run_list(store: Store, *, limit: int = 20, origins: Sequence[str] = ()) -> RunList:
    """The newest ``limit`` runs (of the given ``origins`` only, when some are given)."""
    runs = store.list_runs(limit if not origins else max(limit * 10, 200))
    hidden = 0
    if origins:
        kept = [r for r in runs if r.origin in origins]
        newest_kept = kept[limit - 1].created_at if len(kept) >= limit else float("-inf")
        hidden = sum(1 for r in runs if r.origin not in origins and r.created_at >= newest_kept)
        runs = kept[:limit]
    return RunList(store=store.location, runs=[RunRow.of(r, run_summary(store, r)) for r in runs], hidden=hidden)


# --------------------------------------------------------------------------- traces


class TraceRow(BaseModel):
    """One trace in a run's listing."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    trace_id: str
    """The whole trace id (``costar traces show TRACE_ID``; any unique prefix works there too)."""
    run_id: str | None
    """The whole id of the run it belongs to."""
    scenario_id: str | None
    """The scenario it ran (None for an imported trace without one)."""
    trial: int
    """The trial number within its scenario, from 0."""
    status: str
    """How the agent ended: ``ok``, ``error`` or ``timeout``."""
    error: str | None
    """Why the agent failed (crash message, stderr head and tail), when it did."""
    outcome: str
    """How the judges decided the trial: ``pass``, ``fail``, ``error`` (a judge could not say) or ``unscored``."""
    spans: int
    """Spans recorded."""
    totals: Totals
    """Tokens, cost, latency, model and tool calls, error spans, retries."""


class TraceList(View):
    """``costar traces list --json``: a run's traces, by scenario and trial."""

    kind_name: ClassVar[str] = "traces"
    run_id: str
    """The whole run id."""
    traces: list[TraceRow] = Field(default_factory=list)
    """Its traces, by scenario and trial."""


def trace_list(store: Store, run: str = "latest") -> TraceList:
    """The traces of a run (an id, a unique prefix, or ``latest``)."""
    from costar.summary import latest_per_name, trial_status

    run_id = store.resolve_run_id(run)
    by_trace = latest_per_name(store.verdicts(run_id=run_id))
    rows = [TraceRow(trace_id=t.trace_id, run_id=t.run_id, scenario_id=t.scenario_id, trial=t.trial,
                     status=t.status.value, error=t.error, outcome=trial_status(by_trace.get(t.trace_id, [])),
                     spans=store.count_spans(t.trace_id), totals=t.totals)
            for t in store.iter_traces(run_id, spans=False)]
    return TraceList(run_id=run_id, traces=rows)


class SpanRow(BaseModel):
    """One span of a trace, with the facts a reader looks for first."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    span_id: str
    parent_id: str | None
    """The parent span's id (None for a root span)."""
    name: str
    kind: SpanKind
    start_ns: int
    """Start, in nanoseconds since the Unix epoch."""
    end_ns: int | None
    duration_ms: float
    status: str
    """``UNSET``, ``OK`` or ``ERROR``."""
    status_message: str | None
    model: str | None
    """The model an LLM span called (``gen_ai.response.model``, else ``gen_ai.request.model``)."""
    tool: str | None
    """The tool a TOOL span ran (``gen_ai.tool.name``)."""
    input_tokens: int | None
    """Prompt tokens of this model call, the cached ones included (``gen_ai.usage.input_tokens``)."""
    output_tokens: int | None
    """Completion tokens of this model call."""
    cost_usd: float | None
    """What this model call cost (``costar.usage.cost_usd``; cached prompt tokens at their own price), when priced."""
    attributes: dict[str, Any] | None = None
    """Every attribute as stored (``gen_ai.*``, ``costar.*``...); None when not asked for."""

    @classmethod
    def of(cls, s: Span, *, attributes: bool) -> SpanRow:
        """The row of span ``s``; with ``attributes``, every attribute too (else None)."""
        return cls(span_id=s.span_id, parent_id=s.parent_id, duration_ms=s.duration_s * 1000,
                   attributes=dict(s.attributes) if attributes else None, **span_facts(s))


class ArtifactRow(BaseModel):
    """A file the agent left in its workspace, with the start of its text when it is text."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    path: str
    """The file's path in the workspace."""
    sha256: str
    """The blob's key in the store (the whole SHA-256)."""
    size: int
    """Bytes."""
    media_type: str | None
    """Its media type, when known (``text/csv``)."""
    origin: str
    """``agent`` (made or changed by the agent) or ``setup`` (as the scenario put it there)."""
    text: str | None = None
    """The file's text (UTF-8), up to the view's bound; None for binary files, missing blobs, or when not asked for."""
    text_truncated: bool = False
    """True when ``text`` is only the start of the file."""
    binary: bool = False
    """True when the file is not UTF-8 text."""


class TraceDetail(View):
    """``costar traces show --json``: one trace with its spans, artifacts and verdicts."""

    kind_name: ClassVar[str] = "trace"
    trace_id: str
    """The whole trace id."""
    run_id: str | None
    """The whole id of its run."""
    scenario_id: str | None
    trial: int
    agent: AgentInfo
    """The agent: name, version, git commit."""
    status: str
    """How the agent ended: ``ok``, ``error`` or ``timeout``."""
    error: str | None
    """Why the agent failed, when it did."""
    input: Any
    """What the agent was given (the prompt, or the turns)."""
    output: str | None
    """The agent's final output."""
    start_ns: int
    end_ns: int
    totals: Totals
    """Tokens, cost, latency, model and tool calls, error spans, retries."""
    metadata: dict[str, Any]
    """What the harness and importers noted about the trace."""
    spans_total: int
    """How many spans the trace has."""
    spans: list[SpanRow] = Field(default_factory=list)
    """The first spans, in recorded order (bounded; ``spans_total`` says how many there are)."""
    artifacts: list[ArtifactRow] = Field(default_factory=list)
    """The files the workspace held at the end."""
    verdicts: list[Verdict] = Field(default_factory=list)
    """The latest verdict of each judge on this trace."""


def trace_detail(store: Store, trace_id: str, *, max_spans: int = 500, attributes: bool = True,
                 artifact_chars: int = ARTIFACT_TEXT_CHARS) -> TraceDetail:
    """One trace (a whole id or a unique prefix): its first ``max_spans`` spans, its artifacts with the
    first ``artifact_chars`` characters of each text file (0: none), its latest verdicts."""
    head = store.get_trace(trace_id, spans=False)
    total = store.count_spans(head.trace_id)
    spans = store.query_spans(head.trace_id, SpanQuery(limit=max_spans)) if max_spans else []
    return TraceDetail(
        trace_id=head.trace_id, run_id=head.run_id, scenario_id=head.scenario_id, trial=head.trial,
        agent=head.agent, status=head.status.value, error=head.error, input=head.input, output=head.output,
        start_ns=head.start_ns, end_ns=head.end_ns, totals=head.totals, metadata=head.metadata,
        spans_total=total, spans=[SpanRow.of(s, attributes=attributes) for s in spans],
        artifacts=[artifact_row(store, a, artifact_chars if i < MAX_ARTIFACT_PREVIEWS else 0)
                   for i, a in enumerate(head.artifacts)],
        verdicts=store.verdicts(trace_ids=[head.trace_id]))


def artifact_row(store: Store, artifact: Artifact, chars: int) -> ArtifactRow:
    """An artifact with the start of its text (``chars`` characters; 0 reads nothing)."""
    row = ArtifactRow(path=artifact.path, sha256=artifact.sha256, size=artifact.size,
                      media_type=artifact.media_type, origin=artifact.origin)
    if chars <= 0:
        return row
    text, truncated, binary = artifact_text(store, artifact, chars)
    row.text, row.text_truncated, row.binary = text, truncated, binary
    return row


MAX_ARTIFACT_PREVIEWS = 20
"""Artifacts of a trace whose text a page shows (the agent decides how many files it leaves)."""


def _blob_head(store: Store, sha256: str, n: int) -> tuple[bytes, int] | None:
    """The first ``n`` bytes of a blob and its size, without reading the rest (a blob may be GBs)."""
    found = store.read_blob(sha256)
    if found is None:
        return None
    size, chunks = found
    head = bytearray()
    try:
        for chunk in chunks:
            head += chunk
            if len(head) >= n:
                break
    finally:
        chunks.close()
    return bytes(head[:n]), size


def artifact_text(store: Store, artifact: Artifact, chars: int) -> tuple[str | None, bool, bool]:
    """(the first ``chars`` characters of a text artifact, whether there is more, whether it is
    binary). A file with a NUL byte in its first 8 KiB, or that is not UTF-8, is binary."""
    found = _blob_head(store, artifact.sha256, max(8192, chars * 4))  # a character is at most 4 bytes
    if found is None:
        return None, False, False
    data, size = found
    if b"\x00" in data[:8192]:
        return None, False, True
    head = data[: chars * 4]
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        cut_mid_character = len(head) < size and exc.start >= len(head) - 3
        if not cut_mid_character:
            return None, False, True
        text = head[: exc.start].decode("utf-8")
    return text[:chars], len(text) > chars or len(head) < size, False


# --------------------------------------------------------------------------- reports


class RunReport(View, RunSummary):
    """``costar report --json`` (and ``costar run``'s summary): a run's verdicts folded into rates,
    per scenario (with each trial), per judge, and for the run; pass@k and pass^k for every k."""

    kind_name: ClassVar[str] = "report"
    origin: str = "cli"
    """Where the run came from (see :class:`RunRow`)."""

    @classmethod
    def of(cls, run: Run | None, summary: RunSummary) -> RunReport:
        """The report of ``run`` (None: a summary not stored as a run, origin ``api``)."""
        return cls(**summary.model_dump(), origin=run.origin if run is not None else "api")


def run_report(store: Store, run: str = "latest") -> RunReport:
    """The report of a stored run (an id, a unique prefix, or ``latest``)."""
    from costar.summary import summarize_run

    run_obj = store.get_run(run)
    return RunReport.of(run_obj, summarize_run(store, run_obj.run_id))


class ComparisonView(View, Comparison):
    """``costar compare --json``: BASE against HEAD per scenario and judge (improved, regressed,
    unchanged, inconclusive, with exact tests), metric deltas, and ``exit_code``."""

    kind_name: ClassVar[str] = "comparison"

    @classmethod
    def of(cls, comparison: Comparison) -> ComparisonView:
        """``comparison`` as a versioned view."""
        return cls.model_validate(comparison.model_dump())


class MetricsView(View, MetricsReport):
    """``costar metrics --json``: a run's operational metrics per scenario, their history, the alerts
    and the breached limits, and ``exit_code``."""

    kind_name: ClassVar[str] = "metrics"

    @classmethod
    def of(cls, report: MetricsReport) -> MetricsView:
        """``report`` as a versioned view."""
        return cls.model_validate(report.model_dump())


# --------------------------------------------------------------------------- judges


class JudgeRow(BaseModel):
    """One judge a project can use."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    name: str
    """The judge's (and its verdicts') name."""
    type: str
    """``llm``, ``agentic``, ``check``, ``python``, ``memalign`` or a plugin's type."""
    source: str
    """Where it is defined: a file and line, a template, a plugin, or an aligned version."""
    fingerprint: str | None
    """Its fingerprint (verdicts are cached by it); None when it cannot be built (``error`` says why)."""
    model: str | None
    """The model URI it asks, for model judges."""
    gating: bool
    """True when its verdicts decide trials; False for diagnostics."""
    description: str
    """What the judge is for."""
    agreement_floor: dict[str, Any] | None
    """The agreement with human labels it must keep (``costar judges check``)."""
    applies_to: dict[str, Any] | None
    """Which scenarios it applies to, when limited."""
    error: str | None
    """Why it cannot be built as configured."""
    notes: list[str] = Field(default_factory=list)
    """What the project should know about it, e.g. an aligned version in use although its judges/
    file changed since."""


class JudgeList(View):
    """``costar judges list --json``: every judge the project can use."""

    kind_name: ClassVar[str] = "judges"
    judges: list[JudgeRow] = Field(default_factory=list)
    """The judges, as ``costar judges list`` shows them."""


def judge_list(infos: Iterable[JudgeInfo]) -> JudgeList:
    """The judges ``infos`` describe, as a view (what ``costar judges list --json`` prints)."""
    return JudgeList(judges=[JudgeRow(**asdict(i)) for i in infos])


VIEWS: tuple[type[View], ...] = (RunList, TraceList, TraceDetail, RunReport, JudgeList, MetricsView, ComparisonView)
"""Every view, in the order docs/JSON.md lists them."""


__all__ = ["ARTIFACT_TEXT_CHARS", "SCHEMA_VERSION", "SHOWN_ARTIFACT_CHARS", "VIEWS", "ArtifactRow",
           "ComparisonView", "JudgeList", "JudgeRow", "MetricsView", "RunList", "RunReport", "RunRow", "SpanRow",
           "TraceDetail", "TraceList", "TraceRow", "View", "artifact_row", "artifact_text", "judge_list",
           "listed_origins", "run_list", "run_report", "run_summary", "trace_detail", "trace_list"]


# --------------------------------------------------------------------------- docs/JSON.md

_COMMANDS = {"runs": "costar runs --json", "traces": "costar traces list RUN --json",
             "trace": "costar traces show TRACE_ID --json", "report": "costar report RUN --json",
             "judges": "costar judges list --json", "metrics": "costar metrics RUN --json",
             "comparison": "costar compare BASE HEAD --json"}
_HTTP = {"runs": "/api/v1/views/runs", "traces": "/api/v1/views/runs/{run}/traces",
         "trace": "/api/v1/views/traces/{trace_id}", "report": "/api/v1/views/runs/{run}/report",
         "judges": "— (reads the project's files)", "metrics": "/api/v1/views/runs/{run}/metrics",
         "comparison": "/api/v1/views/compare?base=&head="}
_API = {"runs": "api.list_runs", "traces": "api.list_traces", "trace": "api.show_trace", "report": "api.run_report",
        "judges": "api.judge_list", "metrics": "api.check_metrics", "comparison": "api.compare_runs"}


def _type_name(annotation: Any, seen: list[type[BaseModel]]) -> str:
    """A field's type in words, with models linked (and queued to be described)."""
    import enum
    import types
    import typing

    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a, seen) for a in args)
    if origin is typing.Literal:
        return " or ".join(f"`{json.dumps(a)}`" for a in args)
    if origin in (list, tuple, Sequence) or annotation is list:
        inner = ", ".join(_type_name(a, seen) for a in args if a is not Ellipsis) or "any"
        return f"list of {inner}"
    if origin is dict or annotation is dict:
        return f"mapping of {_type_name(args[1], seen)}" if len(args) == 2 else "mapping"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        if annotation not in seen:
            seen.append(annotation)
        return f"[{annotation.__name__}](#{annotation.__name__.lower()})"
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return " or ".join(f"`{json.dumps(m.value)}`" for m in annotation)
    if annotation is type(None):
        return "null"
    names = {str: "text", int: "integer", float: "number", bool: "true/false"}
    if annotation in names:
        return names[annotation]
    return "any"


def _model_table(model: type[BaseModel], seen: list[type[BaseModel]]) -> list[str]:
    rows = ["| field | type | meaning |", "|---|---|---|"]
    for name, info in model.model_fields.items():
        if name == "kind_name":
            continue
        meaning = " ".join((info.description or "").split()).replace("|", "\\|") or "—"
        rows.append(f"| `{info.alias or name}` | {_type_name(info.annotation, seen)} | {meaning} |")
    for name in model.model_computed_fields:
        rows.append(f"| `{name}` | computed | written for scripts to read; ignored when read back |")
    return rows


def json_reference() -> str:
    """docs/JSON.md: every view, its fields and the models inside it (``python -m costar.views``)."""
    import inspect

    head = inspect.cleandoc(__doc__ or "").split("\n\n", 1)[1]
    out = ["# JSON output", "", "What `--json` prints, and the shapes the server's API serves (generated from",
           "`costar/views.py` by `python -m costar.views > docs/JSON.md`; a test fails when it is stale).", "",
           head, "", "The server (`costar server`, `costar ui`) serves each view at `GET` *path* with the command's "
           "options as query parameters: the same JSON the command prints (compact, not indented).", "",
           "| kind | command | library | server |", "|---|---|---|---|"]
    for view in VIEWS:
        http = _HTTP[view.kind_name]
        out.append(f"| [`{view.kind_name}`](#{view.__name__.lower()}) | `{_COMMANDS[view.kind_name]}` | "
                   f"`{_API[view.kind_name]}` | {f'`{http}`' if http.startswith('/') else http} |")
    seen: list[type[BaseModel]] = []
    for view in VIEWS:
        doc = " ".join((view.__doc__ or "").split())
        out += ["", f"## {view.__name__}", "", doc, "", *_model_table(view, seen)]
    out += ["", "## Models inside the views"]
    done: set[type[BaseModel]] = set(VIEWS)
    while seen:
        model = seen.pop(0)
        if model in done:
            continue
        done.add(model)
        doc = " ".join((model.__doc__ or "").split())
        out += ["", f"### {model.__name__}", ""] + ([doc, ""] if doc and "BaseModel" not in doc else [])
        out += _model_table(model, seen)
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    print(json_reference(), end="")
