"""Where the definitions of a diff come from: a stored snapshot, or what a run or a trace recorded.

A reference is ``snapshot:REF``, ``run:REF`` or ``trace:ID``; without a prefix it is tried as a
snapshot (id, server name, ``latest``, each with ``~N``), then as a run (id, prefix, ``latest``),
then as a trace id, and the first that exists is used.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from costar.errors import CostarError, StoreError
from costar.mcp.diff import CatalogSide, ToolCatalog
from costar.store.base import Store, UnknownSnapshotError
from costar.trace.model import Trace
from costar.trace.tool_definition import ToolDefinition
from costar.trace.tools import McpSnapshot

PREFIXES = ("snapshot:", "run:", "trace:")


def snapshot_catalog(snapshot: McpSnapshot) -> ToolCatalog:
    return ToolCatalog(side=CatalogSide(kind="snapshot", ref=snapshot.snapshot_id, label=snapshot.name,
                                        servers={snapshot.server.name or snapshot.name: snapshot.server.version},
                                        created_at=snapshot.created_at),
                       tools=snapshot.tools, prompts=snapshot.prompts, resources=snapshot.resources)


def recorded_tools(traces: Iterable[Trace]) -> tuple[list[ToolDefinition], list[str]]:
    """The definitions a set of traces recorded: per tool, the one most traces saw (warning when a
    tool changed during the run)."""
    seen: dict[tuple[str, str], Counter[str]] = {}
    defs: dict[str, ToolDefinition] = {}
    for t in traces:
        for d in {d.fingerprint: d for d in t.tools}.values():
            seen.setdefault(d.key, Counter())[d.fingerprint] += 1
            defs.setdefault(d.fingerprint, d)
    out, warnings = [], []
    for key, counts in seen.items():
        fingerprint, _ = counts.most_common(1)[0]
        out.append(defs[fingerprint])
        if len(counts) > 1:
            label = f"{key[0]}/{key[1]}" if key[0] else key[1]
            warnings.append(f"tool {label} had {len(counts)} different definitions across the traces; "
                            f"the one {counts[fingerprint]} of them saw is compared")
    return out, warnings


def _servers(tools: Iterable[ToolDefinition]) -> dict[str, str | None]:
    return {d.server: d.server_version for d in tools if d.server}


def run_catalog(store: Store, ref: str) -> ToolCatalog:
    run = store.get_run(ref)
    tools, warnings = recorded_tools(store.iter_traces(run.run_id, spans=False))
    if not tools:
        warnings.append(f"run {run.run_id} recorded no tool definitions (its agent listed no MCP tools and sent "
                        "no tool definitions to a model)")
    return ToolCatalog(side=CatalogSide(kind="run", ref=run.run_id, label=run.agent.name, servers=_servers(tools),
                                        created_at=run.created_at), tools=tools, warnings=warnings)


def trace_catalog(store: Store, ref: str) -> ToolCatalog:
    trace = store.get_trace(ref, spans=False)
    return ToolCatalog(side=CatalogSide(kind="trace", ref=trace.trace_id, label=trace.scenario_id or "",
                                        servers=_servers(trace.tools)), tools=list(trace.tools))


def resolve_catalog(store: Store, ref: str) -> ToolCatalog:
    """The definitions ``ref`` names (see the module docstring for the lookup order)."""
    text = ref.strip()
    if text.startswith("snapshot:"):
        return snapshot_catalog(store.mcp_snapshot(text.removeprefix("snapshot:")))
    if text.startswith("run:"):
        return run_catalog(store, text.removeprefix("run:"))
    if text.startswith("trace:"):
        return trace_catalog(store, text.removeprefix("trace:"))
    try:
        return snapshot_catalog(store.mcp_snapshot(text))
    except UnknownSnapshotError:
        pass
    try:
        return run_catalog(store, text)
    except StoreError:
        pass
    try:
        return trace_catalog(store, text)
    except StoreError:
        pass
    raise CostarError(f"no MCP snapshot, run or trace {ref!r} in the store; 'costar mcp snapshots' and "
                      "'costar runs' list them (prefix with snapshot:, run: or trace: to be explicit)")
