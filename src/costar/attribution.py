"""Why did a scenario change between two runs: the tools it used changed, the agent changed, both, or neither?

Each run's traces record the tool definitions the agent saw (``Trace.tools``, with fingerprints)
and the tool calls it made (TOOL spans). Between BASE and HEAD:

* a **tool changed** when its fingerprint differs (or it appeared or disappeared), matched by
  (server, name) as ``costar.mcp.diff`` does, which also classifies the change (breaking or not);
* a scenario **used** a tool when a TOOL span of one of its traces, in either run, names it (an MCP
  call names its server; a call known only by name matches the definitions of that name, also
  behind a server prefix such as ``shop__list_orders``);
* the **agent changed** when its version, its git commit or the fingerprint of its configuration
  (``costar.run.agents.spec_fingerprint``) differs.

For a scenario that used changed tools, the **likely causes** are its changed tools whose change is
breaking; when none is, the changed tools whose calls failed more often in HEAD; when none did, every
changed tool it used (a reworded description changes what the model reads, so it can change what
the agent does, but nothing points at it more than at the others).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from costar.mcp.catalog import recorded_tools
from costar.mcp.diff import CatalogDiff, CatalogSide, ToolCatalog, ToolChange, diff_catalogs
from costar.run.agents import spec_fingerprint
from costar.store.base import Run, Store
from costar.trace.model import SpanKind, StatusCode, Trace
from costar.trace.tool_definition import ToolDefinition
from costar.trace.tools import server_of, tool_name_matches

Cause = Literal["tool changed", "agent changed", "both", "neither"]
ToolKey = tuple[str, str]


class AgentChange(BaseModel):
    """What differs in the agent's identity between the runs (empty when nothing does)."""

    model_config = ConfigDict(extra="forbid")

    changed: bool
    differences: list[str] = Field(default_factory=list)
    """``version 1.2 → 1.3``, ``git 3f2a9c1 → 9b0e4d2``, ``configuration 43a4… → 77c1…``."""


class ToolUse(BaseModel):
    """One changed tool a scenario used, with how its calls went in each run."""

    model_config = ConfigDict(extra="forbid")

    name: str
    server: str | None = None
    change: ToolChange
    base_calls: int = 0
    base_errors: int = 0
    head_calls: int = 0
    head_errors: int = 0
    likely_cause: bool = False

    @property
    def label(self) -> str:
        return f"{self.server}/{self.name}" if self.server else self.name

    @property
    def errors_rose(self) -> bool:
        base = self.base_errors / self.base_calls if self.base_calls else 0.0
        head = self.head_errors / self.head_calls if self.head_calls else 0.0
        return head > base


class ScenarioAttribution(BaseModel):
    model_config = ConfigDict(extra="forbid")

    scenario_id: str
    cause: Cause
    tools: list[ToolUse] = Field(default_factory=list)
    """The changed tools it used (likely causes first)."""
    explanation: str = ""

    @property
    def likely(self) -> list[ToolUse]:
        return [t for t in self.tools if t.likely_cause]


class Attribution(BaseModel):
    """The tool and agent changes between two runs, and what they mean for each scenario asked about."""

    model_config = ConfigDict(extra="forbid")

    agent: AgentChange
    tools: CatalogDiff
    scenarios: list[ScenarioAttribution] = Field(default_factory=list)

    def scenario(self, scenario_id: str) -> ScenarioAttribution | None:
        return next((s for s in self.scenarios if s.scenario_id == scenario_id), None)


# --------------------------------------------------------------------------- agent identity


def _spec_print(run: Run) -> str | None:
    if run.agent.spec_fingerprint:
        return run.agent.spec_fingerprint
    return spec_fingerprint(run.agent_spec) if run.agent_spec else None


def agent_change(base: Run, head: Run) -> AgentChange:
    diffs = []
    if base.agent.version != head.agent.version:
        diffs.append(f"version {base.agent.version or '—'} → {head.agent.version or '—'}")
    if base.agent.git_sha != head.agent.git_sha:
        def short(sha: str | None) -> str:
            return "—" if not sha else sha[:10] + ("-dirty" if sha.endswith("-dirty") else "")

        diffs.append(f"git {short(base.agent.git_sha)} → {short(head.agent.git_sha)}")
    b, h = _spec_print(base), _spec_print(head)
    if b != h:
        diffs.append(f"configuration {b or '—'} → {h or '—'}")
    return AgentChange(changed=bool(diffs), differences=diffs)


# --------------------------------------------------------------------------- tool use


class ToolUsage:
    """Per scenario and tool: calls and failed calls, from TOOL spans."""

    def __init__(self) -> None:
        self.calls: dict[tuple[str, ToolKey], int] = defaultdict(int)
        self.errors: dict[tuple[str, ToolKey], int] = defaultdict(int)
        self.used: dict[str, set[ToolKey]] = defaultdict(set)

    def add(self, trace: Trace, definitions: Sequence[ToolDefinition]) -> None:
        sid = trace.scenario_id or ""
        for s in trace.spans:
            if s.kind != SpanKind.TOOL:
                continue
            for key in _keys_of(s.attributes.get("gen_ai.tool.name") or s.name.removeprefix("execute_tool ").strip(),
                                server_of(s.attributes)[0], definitions):
                self.used[sid].add(key)
                self.calls[(sid, key)] += 1
                self.errors[(sid, key)] += s.status.code == StatusCode.ERROR


def _keys_of(name: str, server: str | None, definitions: Sequence[ToolDefinition]) -> list[ToolKey]:
    if server:
        return [(server, name)]
    matches = [d.key for d in definitions if tool_name_matches(name, d.name)]
    return matches or [("", name)]


def tool_usage(store: Store, run_id: str, definitions: Sequence[ToolDefinition]) -> ToolUsage:
    """Which tools each scenario of a run called, how often, and how often the call failed."""
    usage = ToolUsage()
    for t in store.iter_traces(run_id):
        usage.add(t, definitions)
    return usage


def _catalog(run: Run, tools: list[ToolDefinition], warnings: list[str]) -> ToolCatalog:
    servers = {d.server: d.server_version for d in tools if d.server}
    return ToolCatalog(side=CatalogSide(kind="run", ref=run.run_id, label=run.agent.name, servers=servers,
                                        created_at=run.created_at), tools=tools, warnings=warnings)


def _explain(cause: Cause, agent: AgentChange, tools: Sequence[ToolUse]) -> str:
    likely = [t for t in tools if t.likely_cause]
    parts = []
    if likely:
        parts.append("likely cause: " + ", ".join(
            f"{t.label} ({'breaking' if t.change.breaking else 'not breaking'}: {t.change.summary()})"
            for t in likely))
    others = [t for t in tools if not t.likely_cause]
    if others:
        parts.append("also changed: " + ", ".join(
            f"{t.label} ({'breaking' if t.change.breaking else 'not breaking'}: {t.change.summary()})" for t in others))
    if agent.changed:
        parts.append("agent changed: " + "; ".join(agent.differences))
    if cause == "neither":
        parts.append("no tool it used changed and the agent is the same: the change is the agent's or the "
                     "model's variance, or something outside both (data, services, the model behind the API)")
    return " · ".join(parts)


def attribute(store: Store, base_run_id: str, head_run_id: str,
              scenario_ids: Iterable[str] | None = None) -> Attribution:
    """Tool and agent changes from BASE to HEAD, and for each of ``scenario_ids`` (default: every
    scenario either run ran) which changed tools it used and what most likely explains its change."""
    base, head = store.get_run(base_run_id), store.get_run(head_run_id)
    base_tools, base_warn = recorded_tools(store.iter_traces(base.run_id, spans=False))
    head_tools, head_warn = recorded_tools(store.iter_traces(head.run_id, spans=False))
    diff = diff_catalogs(_catalog(base, base_tools, base_warn), _catalog(head, head_tools, head_warn))
    agent = agent_change(base, head)
    changed = {(t.server or "", t.name): t for t in diff.tools}
    base_use = tool_usage(store, base.run_id, base_tools)
    head_use = tool_usage(store, head.run_id, head_tools)
    wanted = list(scenario_ids) if scenario_ids is not None else sorted({*base_use.used, *head_use.used})
    out = []
    for sid in wanted:
        used = base_use.used.get(sid, set()) | head_use.used.get(sid, set())
        uses = [ToolUse(name=key[1], server=key[0] or None, change=changed[key],
                        base_calls=base_use.calls.get((sid, key), 0), base_errors=base_use.errors.get((sid, key), 0),
                        head_calls=head_use.calls.get((sid, key), 0), head_errors=head_use.errors.get((sid, key), 0))
                for key in sorted(used) if key in changed]
        breaking = [u for u in uses if u.change.breaking]
        failing = [u for u in uses if u.errors_rose]
        for u in breaking or failing or uses:
            u.likely_cause = True
        uses.sort(key=lambda u: (not u.likely_cause, not u.change.breaking, u.label))
        cause: Cause = ("both" if uses and agent.changed else "tool changed" if uses
                        else "agent changed" if agent.changed else "neither")
        out.append(ScenarioAttribution(scenario_id=sid, cause=cause, tools=uses,
                                       explanation=_explain(cause, agent, uses)))
    return Attribution(agent=agent, tools=diff, scenarios=out)
