"""Bounded, paged views of a stored trace: a summary for judge prompts and the tools agentic judges call.

A trace may hold 100,000 spans. Nothing here loads a stored trace whole: spans are read a page at a
time through the store's span queries, every value a model sees is clipped, and every clipped result
says so and how to get the rest. The same code serves traces held in memory (not yet stored).
"""

from __future__ import annotations

import asyncio
import fnmatch
import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from costar._util.linear_regex import LinearMatch, LinearRegex, LinearRegexError
from costar._util.units import format_usd
from costar.judges.checks import tool_arguments, tool_name
from costar.store.base import SpanQuery, Store
from costar.trace.model import Span, SpanKind, StatusCode, Trace

if TYPE_CHECKING:
    from costar.judges.base import JudgeContext
    from costar.judges.sandbox import Sandbox


# --------------------------------------------------------------------------- text bounds


def to_text(value: Any) -> str:
    """A value as the model reads it: strings as they are, everything else as compact JSON."""
    if isinstance(value, str):
        return value
    try:
        return orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:  # e.g. integers beyond 64 bits
        return str(value)


def clip(text: str, limit: int, *, keep_tail: bool = False, hint: str = "") -> str:
    """``text`` cut to ``limit`` characters with a note saying how much was dropped.

    ``keep_tail`` keeps both ends: an agent's answer or a traceback usually ends with what matters."""
    if len(text) <= limit:
        return text
    dropped = len(text) - limit
    note = f"…[{dropped} more characters{'; ' + hint if hint else ''}]"
    if keep_tail:
        head = limit // 2
        return f"{text[:head]}{note}…{text[len(text) - (limit - head):]}"
    return text[:limit] + note


def _short_id(trace_id: str) -> str:
    return trace_id[:12] + ("…" if len(trace_id) > 12 else "")


# --------------------------------------------------------------------------- span sources


class SpanSource(Protocol):
    """Paged access to one trace's spans, in recording order."""

    def count(self, query: SpanQuery) -> int: ...
    def page(self, query: SpanQuery) -> list[Span]: ...
    def get(self, span_id: str) -> Span | None: ...


class StoreSpans:
    """Spans read from the store a page at a time (the trace is never loaded whole)."""

    def __init__(self, store: Store, trace_id: str) -> None:
        self.store = store
        self.trace_id = trace_id

    def count(self, query: SpanQuery) -> int:
        return self.store.count_spans(self.trace_id, query)

    def page(self, query: SpanQuery) -> list[Span]:
        return self.store.query_spans(self.trace_id, query)

    def get(self, span_id: str) -> Span | None:
        return self.store.get_span(self.trace_id, span_id)


def _unfiltered(q: SpanQuery) -> bool:
    return q.kind is None and q.status is None and q.parent_id is None and not q.name


class MemorySpans:
    """The same queries over spans already in memory (a trace that was not stored, or was loaded whole)."""

    def __init__(self, spans: Sequence[Span]) -> None:
        self.spans = spans
        self._by_id: dict[str, Span] | None = None

    def _matching(self, q: SpanQuery) -> list[Span]:
        out = []
        for s in self.spans:
            if q.kind is not None and s.kind != q.kind:
                continue
            if q.status is not None and s.status.code != q.status:
                continue
            if q.parent_id is not None and s.parent_id != q.parent_id:
                continue
            if q.name and not fnmatch.fnmatchcase(s.name, q.name):
                continue
            out.append(s)
        return out

    def count(self, query: SpanQuery) -> int:
        return len(self.spans) if _unfiltered(query) else len(self._matching(query))

    def page(self, query: SpanQuery) -> list[Span]:
        end = query.offset + query.limit
        if _unfiltered(query):
            return list(self.spans[query.offset:end])
        return self._matching(query)[query.offset:end]

    def get(self, span_id: str) -> Span | None:
        if self._by_id is None:
            self._by_id = {s.span_id: s for s in self.spans}
        return self._by_id.get(span_id)


@dataclass
class TraceView:
    """A trace's header (ids, status, output, totals, artifacts) plus paged access to its spans."""

    trace: Trace
    spans: SpanSource
    store: Store | None = None
    _kinds: dict[str, int] | None = field(default=None, repr=False)

    @classmethod
    def of(cls, ctx: JudgeContext) -> TraceView:
        # Spans already in memory are used as they are; a trace loaded without its spans is paged
        # from the store, which is how a very large trace stays out of memory.
        t = ctx.trace
        if t.spans or ctx.store is None:
            return cls(t, MemorySpans(t.spans), ctx.store)
        return cls(t, StoreSpans(ctx.store, t.trace_id), ctx.store)

    def kind_counts(self) -> dict[str, int]:
        if self._kinds is None:
            if isinstance(self.spans, MemorySpans):
                counts: dict[str, int] = {}
                for s in self.spans.spans:
                    counts[s.kind.value] = counts.get(s.kind.value, 0) + 1
            else:
                counts = {k.value: self.spans.count(SpanQuery(kind=k)) for k in SpanKind}
            self._kinds = {k: n for k, n in sorted(counts.items()) if n}
        return self._kinds

    def total_spans(self) -> int:
        return sum(self.kind_counts().values())

    def error_count(self) -> int:
        return self.spans.count(SpanQuery(status=StatusCode.ERROR))


# --------------------------------------------------------------------------- compact rows


def span_row(s: Span, index: int | None = None, value_chars: int = 120) -> dict[str, Any]:
    """One span as a short row: enough to decide whether to open it with get_span."""
    row: dict[str, Any] = {}
    if index is not None:
        row["i"] = index
    row.update(id=s.span_id, parent=s.parent_id, name=s.name, kind=s.kind.value)
    if s.status.code != StatusCode.UNSET:
        row["status"] = s.status.code.value
    if s.status.message:
        row["message"] = clip(s.status.message, value_chars)
    if s.end_ns is not None:
        row["ms"] = round(s.duration_s * 1000, 1)
    a = s.attributes
    if s.kind == SpanKind.TOOL:
        row["tool"] = tool_name(s)
        args = tool_arguments(s)
        if args not in (None, "", {}):
            row["args"] = clip(to_text(args), value_chars)
    elif s.kind == SpanKind.LLM:
        model = a.get("gen_ai.response.model") or a.get("gen_ai.request.model")
        if model:
            row["model"] = model
        tokens = (a.get("gen_ai.usage.input_tokens"), a.get("gen_ai.usage.output_tokens"))
        if any(t is not None for t in tokens):
            row["tokens"] = [t or 0 for t in tokens]
    if "costar.skill.name" in a:
        row["skill"] = a["costar.skill.name"]
    return row


def timeline_row(s: Span, index: int, value_chars: int) -> dict[str, Any]:
    row: dict[str, Any] = {"n": index, "id": s.span_id, "tool": tool_name(s)}
    args = tool_arguments(s)
    if args not in (None, "", {}):
        row["args"] = clip(to_text(args), value_chars)
    row["status"] = s.status.code.value
    result = s.attributes.get("gen_ai.tool.call.result", s.attributes.get("output.value"))
    if result is not None:
        row["result"] = clip(to_text(result), value_chars)
    if s.status.message:
        row["error"] = clip(s.status.message, value_chars)
    return row


# --------------------------------------------------------------------------- the prompt summary


def trace_summary(view: TraceView, *, max_chars: int = 4000, max_tools: int = 20, max_errors: int = 5,
                  value_chars: int = 80) -> str:
    """A bounded picture of a trace for an LLM judge: counts, a clipped tool timeline, errors, totals.

    A long timeline keeps its first and last calls: the start shows the plan, the end the outcome."""
    t = view.trace
    tot = t.totals
    lines = [f"trace {_short_id(t.trace_id)} scenario {t.scenario_id or '-'} trial {t.trial}, agent "
             f"{t.agent.name}{' ' + t.agent.version if t.agent.version else ''}: status {t.status.value}"
             + (f" ({clip(t.error, 200)})" if t.error else "")]
    lines.append(f"totals: {tot.llm_calls} LLM calls, {tot.tool_calls} tool calls, {tot.error_spans} error spans, "
                 f"{tot.input_tokens} input + {tot.output_tokens} output tokens, {format_usd(tot.cost_usd)}, "
                 f"{tot.latency_s:.1f} s")
    kinds = view.kind_counts()
    lines.append(f"spans: {sum(kinds.values())} (" + ", ".join(f"{k} {n}" for k, n in kinds.items()) + ")")
    n_tools = kinds.get(SpanKind.TOOL.value, 0)
    if n_tools:
        half = max(1, max_tools // 2)
        if n_tools <= max_tools:
            parts = [(0, view.spans.page(SpanQuery(kind=SpanKind.TOOL, limit=n_tools)))]
            title = f"tool calls ({n_tools}):"
        else:
            parts = [(0, view.spans.page(SpanQuery(kind=SpanKind.TOOL, limit=half))),
                     (n_tools - half, view.spans.page(SpanQuery(kind=SpanKind.TOOL, offset=n_tools - half,
                                                                limit=half)))]
            title = f"tool calls ({n_tools}; the first {half} and the last {half}):"
        lines.append(title)
        for j, (start, spans) in enumerate(parts):
            if j == 1:
                lines.append(f"  … {n_tools - 2 * half} more calls …")
            for i, s in enumerate(spans, start=start + 1):
                args = tool_arguments(s)
                arg_text = "" if args in (None, "", {}) else " " + clip(to_text(args), value_chars)
                status = " ERROR" if s.status.code == StatusCode.ERROR else ""
                lines.append(f"  #{i} {tool_name(s)}{arg_text}{status}")
    n_err = view.error_count()
    if n_err:
        errs = view.spans.page(SpanQuery(status=StatusCode.ERROR, limit=max_errors))
        lines.append(f"error spans ({n_err}" + (f"; the first {len(errs)}" if n_err > len(errs) else "") + "):")
        lines.extend(f"  - {s.name}: {clip(s.status.message or '(no message)', 160)}" for s in errs)
    if t.artifacts:
        shown = t.artifacts[:15]
        arts = ", ".join(f"{a.path} ({a.size} B, {a.origin})" for a in shown)
        more = f" and {len(t.artifacts) - len(shown)} more" if len(t.artifacts) > len(shown) else ""
        lines.append(f"files in the workspace ({len(t.artifacts)}): {arts}{more}")
    return clip("\n".join(lines), max_chars, keep_tail=True)


# --------------------------------------------------------------------------- tool arguments


def _upper(v: Any) -> Any:
    # Models write "tool" as often as "TOOL"; accepting both saves a wasted iteration.
    return v.upper() if isinstance(v, str) else v


class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TraceInfoArgs(_Args):
    pass


class ListSpansArgs(_Args):
    kind: SpanKind | None = Field(default=None, description="only spans of this kind")
    name: str | None = Field(default=None, max_length=200, description="glob over span names, e.g. 'execute_tool *'")
    status: StatusCode | None = Field(default=None, description="only spans with this status (ERROR for failures)")
    parent_id: str | None = Field(default=None, max_length=64, description="only children of this span")
    offset: int = Field(default=0, ge=0, description="rows to skip (paging)")
    limit: int = Field(default=20, ge=1, le=50, description="rows to return")

    @field_validator("kind", "status", mode="before")
    @classmethod
    def _any_case(cls, v: Any) -> Any:
        return _upper(v)


class GetSpanArgs(_Args):
    span_id: str = Field(max_length=64)
    attributes: list[str] | None = Field(default=None, max_length=30, description="attribute names or globs to show "
                                         "(default: all, each value clipped)")
    attribute: str | None = Field(default=None, max_length=200, description="page through this one attribute's full "
                                  "value instead (with offset)")
    offset: int = Field(default=0, ge=0, description="character offset into 'attribute'")


class SearchTraceArgs(_Args):
    pattern: str = Field(max_length=200, description="regular expression (RE2 syntax: no lookaround or backreferences)")
    kind: SpanKind | None = Field(default=None, description="search only spans of this kind")
    ignore_case: bool = True
    start: int = Field(default=0, ge=0, description="span position to resume scanning from (from next_start)")
    limit: int = Field(default=10, ge=1, le=30, description="matches to return")

    @field_validator("kind", mode="before")
    @classmethod
    def _any_case(cls, v: Any) -> Any:
        return _upper(v)


class TimelineArgs(_Args):
    offset: int = Field(default=0, ge=0)
    limit: int = Field(default=20, ge=1, le=50)


class ListArtifactsArgs(_Args):
    pattern: str | None = Field(default=None, max_length=200, description="glob over paths, e.g. '*.csv'")
    offset: int = Field(default=0, ge=0)
    limit: int = Field(default=50, ge=1, le=100)


class ReadArtifactArgs(_Args):
    path: str = Field(max_length=500)
    offset: int = Field(default=0, ge=0, description="byte offset (from next_offset)")


class RunPythonArgs(_Args):
    code: str = Field(max_length=20_000, description="a Python script; print what you want to see")


class ReadDocArgs(_Args):
    name: str = Field(max_length=300)
    offset: int = Field(default=0, ge=0, description="character offset (from next_offset)")


def inline_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON Schema with $refs inlined and titles dropped: small local models and some
    providers handle flat schemas better."""
    raw = model.model_json_schema()
    defs = raw.pop("$defs", {})

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                return walk(defs[node["$ref"].rsplit("/", 1)[-1]])
            return {k: walk(v) for k, v in node.items() if k != "title"}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    out: dict[str, Any] = walk(raw)
    out.setdefault("properties", {})
    return out


def argument_error(tool: str, exc: ValidationError) -> str:
    problems = []
    for err in exc.errors()[:3]:
        where = ".".join(str(p) for p in err["loc"]) or "arguments"
        msg = "unknown argument" if err["type"] == "extra_forbidden" else err["msg"]
        problems.append(f"{where}: {msg}")
    return f"error: invalid arguments for {tool}: " + "; ".join(problems) + " (fix them and call again)"


class ToolError(Exception):
    """A tool could not answer (unknown span, no such file): the message goes back to the model."""


# --------------------------------------------------------------------------- the toolbox


@dataclass(frozen=True)
class ToolLimits:
    max_result_chars: int = 4000  # per tool result, after which it is clipped with a note
    value_chars: int = 300  # per attribute value in get_span and rows
    # Spans one search_trace call scans before it stops and says where to resume: a count, not a
    # time, so a judge sees the same results however loaded the machine is.
    scan_spans: int = 10_000
    scan_page: int = 1000  # spans per store query while scanning
    artifact_page_bytes: int = 3000


@dataclass(frozen=True)
class _Tool:
    name: str
    description: str
    args: type[_Args]
    run: Callable[[Any, Any], Any]  # TraceToolbox's method, unbound: run(toolbox, args)
    is_async: bool = False


@functools.cache
def _spec(tool: _Tool) -> dict[str, Any]:
    """A tool's schema for the model; built once per tool (its JSON schema is not cheap), shared."""
    return {"type": "function", "function": {"name": tool.name, "description": tool.description,
                                             "parameters": inline_schema(tool.args)}}


def tool_specs(names: Sequence[str]) -> list[dict[str, Any]]:
    """The schemas of trace tools by name, without a trace to bind them to (to size a prompt)."""
    catalog = TraceToolbox._catalog()
    return [_spec(catalog[n]) for n in names if n in catalog]


ALL_TOOLS = ("trace_info", "list_spans", "get_span", "search_trace", "tool_call_timeline", "list_artifacts",
             "read_artifact", "run_python", "read_doc")


class TraceToolbox:
    """The tools an agentic judge calls, bound to one trace. ``call`` never raises for bad input:
    it returns an error text for the model to read, so the loop goes on."""

    def __init__(self, view: TraceView, *, limits: ToolLimits | None = None, enabled: Sequence[str] | None = None,
                 sandbox: Sandbox | None = None, docs: Mapping[str, str] | None = None) -> None:
        self.view = view
        self.limits = limits or ToolLimits()
        self.sandbox = sandbox
        self.docs = dict(docs or {})
        self.calls: dict[str, int] = {}
        catalog = self._catalog()
        wanted = list(enabled) if enabled is not None else list(ALL_TOOLS)
        unknown = [n for n in wanted if n not in catalog]
        if unknown:
            raise ValueError(f"unknown trace tool(s) {unknown} (known: {', '.join(ALL_TOOLS)})")
        # Tools without what they need are left out rather than offered and then failing.
        skip = set()
        if sandbox is None:
            skip.add("run_python")
        if not self.docs:
            skip.add("read_doc")
        self.tools = {n: catalog[n] for n in wanted if n not in skip}

    @staticmethod
    @functools.cache
    def _catalog() -> dict[str, _Tool]:
        """Every tool by name, built once: its methods are unbound, called with the toolbox."""
        box = TraceToolbox
        tools = [
            _Tool("trace_info", "Overview: ids, status, input and output (clipped), totals, span counts by kind, "
                  "files in the workspace. Start here.", TraceInfoArgs, box.trace_info),
            _Tool("list_spans", "List spans as short rows, filtered by kind, name glob, status or parent, paged "
                  "with offset/limit. Returns the total matching.", ListSpansArgs, box.list_spans),
            _Tool("get_span", "Open one span: status, timing, attributes (values clipped; page a long one with "
                  "attribute+offset), events, child count.", GetSpanArgs, box.get_span),
            _Tool("search_trace", "Regex search over span names, attribute values, status messages, events and "
                  "the final output. Paged: resume with start=next_start.", SearchTraceArgs, box.search_trace),
            _Tool("tool_call_timeline", "The agent's tool calls in order with clipped arguments and results, "
                  "paged with offset/limit.", TimelineArgs, box.tool_call_timeline),
            _Tool("list_artifacts", "Files the agent's workspace held at the end (path, size, origin).",
                  ListArtifactsArgs, box.list_artifacts),
            _Tool("read_artifact", "Read a workspace file as text from a byte offset; page with next_offset.",
                  ReadArtifactArgs, box.read_artifact),
            _Tool("run_python", "Run a Python script in an isolated scratch copy of the workspace files (cwd; no "
                  "network, nothing else of the machine) with time and memory limits; returns exit code, stdout "
                  "and stderr. Use it to check numbers and code.",
                  RunPythonArgs, box.run_python, is_async=True),
            _Tool("read_doc", "Read one of the reference documents given to this judge, paged by character offset.",
                  ReadDocArgs, box.read_doc),
        ]
        return {t.name: t for t in tools}

    def specs(self) -> list[dict[str, Any]]:
        return [_spec(t) for t in self.tools.values()]

    async def call(self, name: str, arguments: Mapping[str, Any]) -> str:
        tool = self.tools.get(name)
        if tool is None:
            return f"error: there is no tool {name!r}; available: {', '.join(self.tools)}, submit_verdict"
        self.calls[name] = self.calls.get(name, 0) + 1
        try:
            args = tool.args.model_validate(dict(arguments))
        except ValidationError as exc:
            return argument_error(name, exc)
        try:
            if tool.is_async:
                result = await tool.run(self, args)
            else:
                # Store queries block; keep them off the event loop so other judges keep going.
                result = await asyncio.to_thread(tool.run, self, args)
        except ToolError as exc:
            return f"error: {exc}"
        return self.render(result)

    def render(self, result: Any) -> str:
        text = to_text(result)
        return clip(text, self.limits.max_result_chars,
                    hint="result clipped: ask for fewer rows (limit) or fewer attributes")

    # -- tools ------------------------------------------------------------------------------------

    def trace_info(self, _: TraceInfoArgs) -> dict[str, Any]:
        t = self.view.trace
        lim = self.limits.value_chars * 4
        return {
            "trace_id": t.trace_id, "run_id": t.run_id, "scenario_id": t.scenario_id, "trial": t.trial,
            "agent": t.agent.model_dump(exclude_none=True), "status": t.status.value,
            "error": clip(t.error, lim) if t.error else None,
            "input": clip(to_text(t.input), lim, keep_tail=True) if t.input is not None else None,
            "output": clip(t.output, lim, keep_tail=True) if t.output is not None else None,
            "totals": t.totals.model_dump(),
            "spans": {"total": self.view.total_spans(), "by_kind": self.view.kind_counts()},
            "artifacts": {"total": len(t.artifacts),
                          "first": [{"path": a.path, "size": a.size, "origin": a.origin} for a in t.artifacts[:20]]},
        }

    def _fit(self, rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], str | None]:
        """As many whole rows as fit the result budget: a result clipped mid-row would not parse."""
        budget = self.limits.max_result_chars - 400  # room for the envelope and the note
        used = 0
        for i, row in enumerate(rows):
            used += len(to_text(row)) + 1
            if used > budget and i > 0:
                return rows[:i], f"only {i} of {len(rows)} rows fit in one result; continue from next_offset"
        return rows, None

    def _page(self, key: str, rows: list[dict[str, Any]], offset: int, total: int) -> dict[str, Any]:
        rows, note = self._fit(rows)
        nxt = offset + len(rows)
        out: dict[str, Any] = {"total": total, "offset": offset, key: rows, "next_offset": nxt if nxt < total else None}
        if note:
            out["note"] = note
        return out

    def list_spans(self, a: ListSpansArgs) -> dict[str, Any]:
        q = SpanQuery(kind=a.kind, name=a.name, status=a.status, parent_id=a.parent_id, offset=a.offset,
                      limit=a.limit)
        total = self.view.spans.count(q)
        rows = [span_row(s, a.offset + i, self.limits.value_chars // 2)
                for i, s in enumerate(self.view.spans.page(q))]
        return self._page("rows", rows, a.offset, total)

    def _span(self, span_id: str) -> Span:
        s = self.view.spans.get(span_id)
        if s is None:
            raise ToolError(f"no span {span_id!r} in this trace; take ids from list_spans or search_trace")
        return s

    def get_span(self, a: GetSpanArgs) -> dict[str, Any]:
        s = self._span(a.span_id)
        if a.attribute is not None:
            if a.attribute not in s.attributes:
                raise ToolError(f"span {a.span_id} has no attribute {a.attribute!r}; it has: "
                                f"{', '.join(sorted(s.attributes)[:40])}")
            full = to_text(s.attributes[a.attribute])
            page = self.limits.max_result_chars - 300
            end = min(len(full), a.offset + page)
            return {"span_id": s.span_id, "attribute": a.attribute, "total_chars": len(full), "offset": a.offset,
                    "text": full[a.offset:end], "next_offset": end if end < len(full) else None}
        lim = self.limits.value_chars
        attrs: dict[str, Any] = {}
        for k, v in s.attributes.items():
            if a.attributes is not None and not any(fnmatch.fnmatchcase(k, p) for p in a.attributes):
                continue
            text = to_text(v)
            attrs[k] = v if len(text) <= lim and not isinstance(v, dict | list) else clip(
                text, lim, hint=f"get_span(span_id, attribute={k!r}, offset={lim}) for the rest")
        events = [{"name": e.name, "attributes": clip(to_text(e.attributes), lim)} for e in s.events[:10]]
        children = self.view.spans.count(SpanQuery(parent_id=s.span_id))
        out: dict[str, Any] = {
            "id": s.span_id, "parent": s.parent_id, "name": s.name, "kind": s.kind.value,
            "status": s.status.code.value, "message": clip(s.status.message, lim) if s.status.message else None,
            "start_ns": s.start_ns, "duration_ms": round(s.duration_s * 1000, 1), "children": children,
            "attributes": attrs}
        if s.events:
            out["events"] = events
            if len(s.events) > len(events):
                out["more_events"] = len(s.events) - len(events)
        return out

    def search_trace(self, a: SearchTraceArgs) -> dict[str, Any]:
        try:
            rx = LinearRegex(a.pattern, ignore_case=a.ignore_case)
        except LinearRegexError as exc:
            raise ToolError(f"invalid regular expression {a.pattern!r}: {exc}") from None
        lim = self.limits
        matches: list[dict[str, Any]] = []
        ends: list[int] = []  # scan position just after each match, to resume exactly there
        if a.start == 0 and a.kind is None:
            for label, text in (("trace.output", self.view.trace.output), ("trace.input", self.view.trace.input)):
                if text is not None:
                    m = rx.search(to_text(text))
                    if m:
                        matches.append({"where": label, "snippet": clip(_snippet(to_text(text), m), lim.value_chars)})
                        ends.append(0)
        total = self.view.spans.count(SpanQuery(kind=a.kind))
        pos = a.start
        budget_end = min(total, a.start + max(1, lim.scan_spans))
        while pos < budget_end and len(matches) < a.limit:
            page = self.view.spans.page(SpanQuery(kind=a.kind, offset=pos, limit=min(lim.scan_page, budget_end - pos)))
            if not page:
                break
            for s in page:
                pos += 1
                hit = _match_span(s, rx)
                if hit is not None:
                    field_name, snippet = hit
                    matches.append({"span_id": s.span_id, "name": s.name, "kind": s.kind.value, "field": field_name,
                                    "snippet": clip(snippet, lim.value_chars)})
                    ends.append(pos)
                    if len(matches) >= a.limit:
                        break
        budget_spent = budget_end < total and pos >= budget_end and len(matches) < a.limit
        matches, note = self._fit(matches)
        if note is not None:  # resume right after the last match shown
            pos = max(a.start, ends[len(matches) - 1])
        done = pos >= total
        out: dict[str, Any] = {"matches": matches, "scanned": f"spans {a.start}..{pos} of {total}",
                               "complete": done, "next_start": None if done else pos}
        if note is not None:
            out["note"] = "more matches did not fit in one result; continue from next_start"
        if budget_spent and note is None:
            out["note"] = (f"scan stopped after {pos - a.start} spans (its budget per call); call again with "
                           f"start={pos} to continue, or narrow with kind")
        return out

    def tool_call_timeline(self, a: TimelineArgs) -> dict[str, Any]:
        q = SpanQuery(kind=SpanKind.TOOL, offset=a.offset, limit=a.limit)
        total = self.view.spans.count(SpanQuery(kind=SpanKind.TOOL))
        rows = [timeline_row(s, a.offset + i + 1, self.limits.value_chars // 2)
                for i, s in enumerate(self.view.spans.page(q))]
        return self._page("calls", rows, a.offset, total)

    def list_artifacts(self, a: ListArtifactsArgs) -> dict[str, Any]:
        arts = [x for x in self.view.trace.artifacts
                if a.pattern is None or fnmatch.fnmatchcase(x.path, a.pattern.removeprefix("./"))]
        rows = [{"path": x.path, "size": x.size, "origin": x.origin, "media_type": x.media_type}
                for x in arts[a.offset:a.offset + a.limit]]
        return self._page("files", rows, a.offset, len(arts))

    def read_artifact(self, a: ReadArtifactArgs) -> dict[str, Any]:
        art = self.view.trace.artifact(a.path)
        if art is None:
            names = ", ".join(x.path for x in self.view.trace.artifacts[:20]) or "none"
            raise ToolError(f"no workspace file {a.path!r} (files: {names})")
        if self.view.store is None:
            raise ToolError("file contents are not available: the trace is not in a store")
        path = self.view.store.blob_path(art.sha256)
        try:
            with open(path, "rb") as f:
                f.seek(a.offset)
                chunk = f.read(self.limits.artifact_page_bytes)
        except OSError as exc:
            raise ToolError(f"cannot read {a.path!r}: {exc.strerror}") from None
        if b"\x00" in chunk:
            raise ToolError(f"{a.path!r} is a binary file ({art.size} bytes); inspect it with run_python")
        end = a.offset + len(chunk)
        return {"path": art.path, "size": art.size, "offset": a.offset,
                "text": chunk.decode("utf-8", errors="replace"), "next_offset": end if end < art.size else None}

    async def run_python(self, a: RunPythonArgs) -> dict[str, Any]:
        assert self.sandbox is not None  # the tool is only offered with a sandbox
        result = await self.sandbox.run(a.code)
        return result.as_dict()

    def read_doc(self, a: ReadDocArgs) -> dict[str, Any]:
        text = self.docs.get(a.name)
        if text is None:
            raise ToolError(f"no document {a.name!r}; documents: {', '.join(self.docs)}")
        page = self.limits.max_result_chars - 300
        end = min(len(text), a.offset + page)
        return {"name": a.name, "total_chars": len(text), "offset": a.offset, "text": text[a.offset:end],
                "next_offset": end if end < len(text) else None}


def _snippet(text: str, m: LinearMatch, around: int = 60) -> str:
    start, end = max(0, m.start() - around), min(len(text), m.end() + around)
    return ("…" if start else "") + text[start:end] + ("…" if end < len(text) else "")


def _match_span(s: Span, rx: LinearRegex) -> tuple[str, str] | None:
    """(field, snippet) of the first match in a span, cheapest fields first."""
    m = rx.search(s.name)
    if m:
        return "name", s.name
    if s.status.message:
        m = rx.search(s.status.message)
        if m:
            return "status.message", _snippet(s.status.message, m)
    # One search over the whole serialised mapping rules out most spans; only a hit is located.
    if s.attributes and rx.search(to_text(s.attributes)):
        for k, v in s.attributes.items():
            text = to_text(v)
            m = rx.search(text)
            if m:
                return f"attributes.{k}", _snippet(text, m)
            if rx.search(k):
                return f"attributes.{k}", text[:120]
    for e in s.events:
        text = e.name + " " + to_text(e.attributes)
        m = rx.search(text)
        if m:
            return f"events.{e.name}", _snippet(text, m)
    return None
