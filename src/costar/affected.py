"""``costar run --affected-by BASE``: run only the scenarios a change since BASE can have affected.

A scenario is picked when (each pick says why):

* the agent changed since BASE (version, git commit or configuration): every scenario is;
* it is not in BASE (new, or renamed);
* a tool it called in BASE has a different fingerprint now, or is gone, or its server's current
  definitions are unknown (no snapshot of that server): the change is named and classified.

"Now" is what the MCP servers declared under ``mcp_servers:`` in costar.yaml offer at this moment
(each is snapshotted, and the snapshot stored); without declared servers, the newest stored
snapshot of each server BASE used. Everything else is skipped: its tools and its agent are what
BASE ran, so BASE's verdicts stand for it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from costar.attribution import AgentChange, agent_change, tool_usage
from costar.mcp.catalog import recorded_tools
from costar.mcp.diff import ToolChange, compare_tools
from costar.scenario import Scenario
from costar.store.base import Run, Store
from costar.trace.model import AgentInfo
from costar.trace.tool_definition import ToolDefinition

Reason = Literal["agent changed", "not in base", "tool changed", "tool unknown"]


class Pick(BaseModel):
    model_config = ConfigDict(extra="forbid")

    scenario_id: str
    reason: Reason
    detail: str


class AffectedSelection(BaseModel):
    """The scenarios to run, why each, and what was left out."""

    model_config = ConfigDict(extra="forbid")

    base_run_id: str
    agent: AgentChange
    picked: list[Pick] = Field(default_factory=list)
    skipped: list[str] = Field(default_factory=list)
    tool_changes: list[ToolChange] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)

    @property
    def ids(self) -> list[str]:
        return [p.scenario_id for p in self.picked]


def select_affected(store: Store, base_ref: str, scenarios: Sequence[Scenario], agent: AgentInfo,
                    agent_spec: dict[str, object], current: Sequence[ToolDefinition],
                    known_servers: Sequence[str]) -> AffectedSelection:
    """Pick the scenarios (see the module docstring). ``current``: the tool definitions the servers
    offer now; ``known_servers``: the servers ``current`` covers (a server absent from it is unknown)."""
    base = store.get_run(base_ref)
    now = Run(agent=agent, agent_spec=dict(agent_spec))
    agent_diff = agent_change(base, now)
    out = AffectedSelection(base_run_id=base.run_id, agent=agent_diff)
    if agent_diff.changed:
        why = "; ".join(agent_diff.differences)
        out.picked = [Pick(scenario_id=sc.id, reason="agent changed", detail=why) for sc in scenarios]
        return out
    base_tools, warnings = recorded_tools(store.iter_traces(base.run_id, spans=False))
    out.warnings += warnings
    usage = tool_usage(store, base.run_id, base_tools)
    before = {d.key: d for d in base_tools}
    after = {d.key: d for d in current}
    changes: dict[tuple[str, str], ToolChange] = {}
    for key, d in before.items():
        if key[0] in known_servers or key in after:
            change = compare_tools(d, after.get(key))
            if change is not None:
                changes[key] = change
    out.tool_changes = list(changes.values())
    in_base = {sid for _, sid, _ in store.trace_keys(base.run_id) if sid}
    for sc in scenarios:
        if sc.id not in in_base:
            out.picked.append(Pick(scenario_id=sc.id, reason="not in base", detail=f"{base.run_id} did not run it"))
            continue
        used = sorted(usage.used.get(sc.id, set()))
        changed = [k for k in used if k in changes]
        unknown = [k for k in used if k not in changes and k[0] and k[0] not in known_servers and k not in after]
        if changed:
            detail = "; ".join(f"{_label(k)} ({'breaking' if changes[k].breaking else 'not breaking'}: "
                               f"{changes[k].summary()})" for k in changed)
            out.picked.append(Pick(scenario_id=sc.id, reason="tool changed", detail=detail))
        elif unknown:
            out.picked.append(Pick(scenario_id=sc.id, reason="tool unknown", detail=(
                "no current definition of " + ", ".join(_label(k) for k in unknown)
                + " (declare its server under mcp_servers: or snapshot it)")))
        else:
            out.skipped.append(sc.id)
    return out


def _label(key: tuple[str, str]) -> str:
    return f"{key[0]}/{key[1]}" if key[0] else key[1]
