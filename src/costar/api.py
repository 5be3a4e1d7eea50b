"""The library API: everything the CLI does is one call here.

    import costar
    outcome = costar.run_suite("scenarios/", {"type": "command", "command": "python agent.py"})
    print(outcome.summary.all_gates_passed)

Here are running and scoring (:func:`run_suite`, :func:`assess_run`, :func:`summarize_run`),
comparisons (:func:`compare`, :func:`rejudge`), MCP servers (:func:`snapshot_mcp_servers`,
:func:`diff_mcp`, :func:`select_affected`), CI (:func:`init_ci`), the
judges of a project (:func:`project_judges`, :func:`list_judges`) and the judge loop: labeling
(:func:`label_in_terminal`, :func:`run_label_server`, :func:`import_labels`...), golden sets
(:func:`create_golden_set`...), agreement (:func:`judge_agreement`, :func:`agreement_between_files`,
:func:`check_agreement_floors`...) and alignment (:func:`align_judge`, :func:`judge_versions`). The
CLI, the web pages and the pytest plugin are faces over these functions.

Every function that reads or writes a store takes it as ``store=``: a Store, a folder, or a
``postgresql://`` URL, or None for the project's own (``--store``'s rules: COSTAR_STORE, else
``costar.yaml``, else ``.costar``); what the function is about (a run, a judge) comes first:
``summarize_run("latest", store=".costar")``. The older order, a Store object first
(``summarize_run(store, run_id)``), still works.

What ``--json`` prints comes from here too, as the versioned views of :mod:`costar.views`
(:func:`list_runs`, :func:`list_traces`, :func:`show_trace`, :func:`run_report`, :func:`judge_list`,
:func:`compare_runs`, :func:`check_metrics`), the same shapes the server's API serves.

The judge-loop functions load on first use (``costar.api.judge_agreement`` imports the agreement
code then), so importing this module stays cheap.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import inspect
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

from costar.config import ProjectConfig, load_config
from costar.plugins import PluginInfo, describe_groups
from costar.run.executors import Executor, executor_spec, make_executor
from costar.run.harness import HarnessOptions
from costar.store import open_store
from costar.store.base import Store
from costar.suites import (
    AgentArg,
    RunEvents,
    RunOutcome,
    Selection,
    SuiteArg,
    arun_suite,
    assess_run,
    run_suite,
)
from costar.summary import RunSummary
from costar.summary import summarize_run as _summarize_run

if TYPE_CHECKING:
    from collections.abc import Sequence

    # Also what the names below load on first use are, for type checkers and editors (``X as X``:
    # re-exported).
    from costar.affected import AffectedSelection
    from costar.align.active import format_candidates as format_candidates
    from costar.align.active import queue_file as queue_file
    from costar.align.active import rank_for_labeling as rank_for_labeling
    from costar.align.agreement_files import agreement_between_files as agreement_between_files
    from costar.align.agreement_results import format_agreement as format_agreement
    from costar.align.agreement_store import SplitChoice as SplitChoice
    from costar.align.agreement_store import judge_agreement as judge_agreement
    from costar.align.agreement_store import judges_agreement as judges_agreement
    from costar.align.agreement_store import labeler_agreement as labeler_agreement
    from costar.align.corrected import corrected_pass_rate as corrected_pass_rate
    from costar.align.gates import JudgeFloor as JudgeFloor
    from costar.align.gates import check_agreement_floors as check_agreement_floors
    from costar.align.golden import create_golden_set as create_golden_set
    from costar.align.golden import diff_golden_set as diff_golden_set
    from costar.align.golden import extend_golden_set as extend_golden_set
    from costar.align.golden import get_golden_set as get_golden_set
    from costar.align.golden import golden_set_splits as golden_set_splits
    from costar.align.golden import list_golden_sets as list_golden_sets
    from costar.align.golden import remove_from_golden_set as remove_from_golden_set
    from costar.align.label_files import export_labels as export_labels
    from costar.align.label_files import import_labels as import_labels
    from costar.align.labeling import label_queue as label_queue
    from costar.align.labeling import new_label as new_label
    from costar.align.labeling import save_labels as save_labels
    from costar.align.labeling_terminal import label_in_terminal as label_in_terminal
    from costar.align.labeling_web import run_label_server as run_label_server
    from costar.align.labeling_web import start_label_server as start_label_server
    from costar.align.optimize import AlignBudget as AlignBudget
    from costar.align.optimize import AlignmentResult
    from costar.align.versions import PromoteMode as PromoteMode
    from costar.align.versions import Recorded, VersionRegistry
    from costar.compare import Correction as Correction
    from costar.config import McpServerConfig
    from costar.judges.base import Judge
    from costar.judges.registry import JudgeInfo, JudgeRegistry
    from costar.mcp.diff import CatalogDiff
    from costar.monitor.drafts import ScenarioDraft
    from costar.monitor.files import Monitor
    from costar.monitor.model import MonitorDefinition
    from costar.monitor.overview import MonitorRow, MonitorStatus, WindowTraces
    from costar.monitor.service import BackfillReport, MonitorService, ServiceOptions
    from costar.monitor.service import RunReport as MonitorRunReport
    from costar.refine import RefineOptions as RefineOptions
    from costar.refine import make_assistant as make_assistant
    from costar.refine import refine as refine
    from costar.refine import refine_clean as refine_clean
    from costar.rejudge import RejudgeReport
    from costar.scenario import Scenario
    from costar.scenario import load_suite as load_suite
    from costar.scenario import scenario_json_schema as scenario_json_schema
    from costar.store.monitor_tables import AlertRecord, SeriesPoint
    from costar.trace.model import Trace
    from costar.trace.recorder import Recording
    from costar.trace.tool_definition import ToolDefinition
    from costar.trace.tools import McpSnapshot
    from costar.transfer import export_run as export_run
    from costar.transfer import import_into_store as import_into_store
    from costar.verdict import Verdict
    from costar.views import ComparisonView, JudgeList, MetricsView, RunList, RunReport, TraceDetail, TraceList

_JUDGE_LOOP = {
    "new_label": "costar.align.labeling", "save_labels": "costar.align.labeling",
    "label_queue": "costar.align.labeling",
    "label_in_terminal": "costar.align.labeling_terminal",
    "run_label_server": "costar.align.labeling_web", "start_label_server": "costar.align.labeling_web",
    "import_labels": "costar.align.label_files", "export_labels": "costar.align.label_files",
    "rank_for_labeling": "costar.align.active", "format_candidates": "costar.align.active",
    "queue_file": "costar.align.active",
    "create_golden_set": "costar.align.golden", "extend_golden_set": "costar.align.golden",
    "remove_from_golden_set": "costar.align.golden", "get_golden_set": "costar.align.golden",
    "list_golden_sets": "costar.align.golden", "diff_golden_set": "costar.align.golden",
    "golden_set_splits": "costar.align.golden",
    "judge_agreement": "costar.align.agreement_store", "labeler_agreement": "costar.align.agreement_store",
    "judges_agreement": "costar.align.agreement_store", "SplitChoice": "costar.align.agreement_store",
    "agreement_between_files": "costar.align.agreement_files",
    "format_agreement": "costar.align.agreement_results",
    "JudgeFloor": "costar.align.gates", "check_agreement_floors": "costar.align.gates",
    "corrected_pass_rate": "costar.align.corrected",
    "AlignBudget": "costar.align.optimize", "PromoteMode": "costar.align.versions",
    "Correction": "costar.compare",
    "export_run": "costar.transfer", "import_into_store": "costar.transfer",
    "load_suite": "costar.scenario", "scenario_json_schema": "costar.scenario",
    "RefineOptions": "costar.refine", "make_assistant": "costar.refine", "refine": "costar.refine",
    "refine_clean": "costar.refine",
}
"""Names this module re-exports, loaded on first use: the judge loop, comparisons and metrics,
moving runs in and out, scenario files, refinement."""


_WRITERS = frozenset({"save_labels", "import_labels", "create_golden_set", "extend_golden_set",
                      "remove_from_golden_set", "import_into_store", "label_in_terminal", "run_label_server",
                      "start_label_server"})
"""Re-exported functions that write a store: given a location, they create the store if needed."""


def __getattr__(name: str) -> Any:
    module = _JUDGE_LOOP.get(name)
    if module is None:
        raise AttributeError(f"module 'costar.api' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    if inspect.isfunction(value) and next(iter(inspect.signature(value).parameters), None) == "store":
        value = _store_keyword(value, create=name in _WRITERS, keep_open=name in _KEEPS_STORE)
    globals()[name] = value
    return value


def _open_at(location: str | Path | None, *, project: ProjectConfig | str | Path | None = None,
             create: bool = False) -> Store:
    """The store at ``location``, else the project's (``--store``'s rules)."""
    cfg = project_config(project)
    return open_store(cfg.store_location(location), local_dir=cfg.local_path(location), create=create)


@contextlib.contextmanager
def _using(store: Store | str | Path | None, *, project: ProjectConfig | str | Path | None = None,
           create: bool = False) -> Iterator[Store]:
    """``store`` itself when it is a Store (the caller owns it: left open), else the store at that
    location, else the project's (COSTAR_STORE, else ``costar.yaml``'s ``store``, else ``.costar``),
    closed when the block ends."""
    if isinstance(store, Store):
        yield store
        return
    st = _open_at(store, project=project, create=create)
    try:
        yield st
    finally:
        st.close()


_KEEPS_STORE = frozenset({"start_label_server"})
"""Re-exported functions whose result goes on using the store (a server started in the background)."""


def _store_keyword(fn: Callable[..., Any], *, create: bool, keep_open: bool) -> Callable[..., Any]:
    """``fn(store, a, b, ...)`` callable as ``fn(a, b, ..., store=LOCATION)`` as well (a Store, a
    folder, a URL, or None for the project's store), and still as ``fn(store_object, a, b)``. A store
    opened from a location is closed when ``fn`` returns, unless its result keeps using it."""

    @functools.wraps(fn)
    def call(*args: Any, store: Store | str | Path | None = None, **kwargs: Any) -> Any:
        if args and store is None and isinstance(args[0], Store):
            return fn(*args, **kwargs)
        if keep_open and not isinstance(store, Store):
            return fn(_open_at(store, create=create), *args, **kwargs)
        with _using(store, create=create) as st:
            return fn(st, *args, **kwargs)

    return call


__all__ = [
    "AgentArg",
    "Executor",
    "HarnessOptions",
    "RunEvents",
    "RunOutcome",
    "Selection",
    "SuiteArg",
    "arun_suite",
    "assess_run",
    "executor_spec",
    "list_judges",
    "make_executor",
    "open_store",
    "project_config",
    "project_judges",
    "run_suite",
    "summarize_run",
    "align_judge",
    "judge_versions",
    "agreement_floors",
    "list_plugins",
    "compare",
    "rejudge",
    "snapshot_mcp_servers",
    "snapshot_mcp_server",
    "diff_mcp",
    "current_tools",
    "select_affected",
    "init_ci",
    "serve",
    "serve_ui",
    "create_server_token",
    "server_tokens",
    "server_traces",
    "revoke_server_token",
    "prune_store",
    "list_runs",
    "list_traces",
    "show_trace",
    "run_report",
    "judge_list",
    "compare_runs",
    "check_metrics",
    "judge_trace",
    "assert_passes",
    "TraceFailed",
    "load_monitors",
    "monitor_service",
    "run_monitors",
    "backfill_monitor",
    "monitor_list",
    "monitor_status",
    "monitor_window_traces",
    "monitor_alerts",
    "monitor_series",
    "save_monitor",
    "delete_monitor",
    "scenario_from_trace",
    *_JUDGE_LOOP,
]


# --------------------------------------------------------------------------- the project's judges


def project_config(project: ProjectConfig | str | Path | None = None) -> ProjectConfig:
    """``project`` as a loaded project file: a ProjectConfig as is, a path to a ``costar.yaml``, or
    None for the nearest one above the working directory (defaults when there is none)."""
    return project if isinstance(project, ProjectConfig) else load_config(project)


def project_judges(project: ProjectConfig | str | Path | None = None) -> JudgeRegistry:
    """The judges a project's runs use: its ``judges/`` folder, plugins and templates, with each
    aligned judge's promoted version in place of its file's definition."""
    from costar.align.versions import project_judges as judges_of

    return judges_of(project_config(project))


def list_judges(project: ProjectConfig | str | Path | None = None) -> list[JudgeInfo]:
    """Every judge a project can use, with fingerprints (what ``costar judges list`` shows)."""
    return project_judges(project).infos()


# --------------------------------------------------------------------------- alignment


def _store_root(project: ProjectConfig, store: Store | str | Path | None) -> Path:
    """The local folder of ``store`` (a Store, a folder or a URL; None: the project's own)."""
    return store.root if isinstance(store, Store) else project.local_path(store)


def judge_versions(project: ProjectConfig | str | Path | None = None,
                   store: Store | str | Path | None = None) -> VersionRegistry:
    """The stored versions of a project's aligned judges (under its store folder, or ``store``):
    list, compare, promote, roll back. Reading them opens no store."""
    from costar.align.versions import VersionRegistry

    cfg = project_config(project)
    return VersionRegistry(_store_root(cfg, store), cfg.root)


def align_judge(name: str, optimizer: str = "memalign", *, project: ProjectConfig | str | Path | None = None,
                store: Store | str | Path | None = None, golden: str | None = None,
                golden_version: int | None = None, budget: AlignBudget | None = None,
                options: dict[str, Any] | None = None, record: bool = True,
                promote: Literal["auto", "never", "force"] = "auto") -> tuple[AlignmentResult, Recorded | None]:
    """Align a project's judge on a golden set (default: the newest made for it) with ``optimizer``
    (``memalign``, ``gepa`` or a plugin); unless ``record`` is False the new definition is stored as a
    version, promoted by the held-out rule (``promote``). What ``costar judges align`` runs."""
    from costar.align import versions

    cfg = project_config(project)
    with _using(store, project=cfg, create=True) as st:
        return versions.align_judge(
            st, name, optimizer, golden=golden, golden_version=golden_version,
            budget=budget, project_dir=cfg.root, judges_dir=cfg.judges_dir, default_model=cfg.models.get("judge"),
            record=record, promote=promote, options=options)


def agreement_floors(project: ProjectConfig | str | Path | None = None, *, golden: str | None = None,
                     split: str | None = None, lower_bound: bool = False,
                     judges: Iterable[JudgeInfo] | None = None) -> list[JudgeFloor]:
    """The agreement floors a project's judges declare (``agreement_floor`` in their definitions), as
    gates for :func:`check_agreement_floors`; ``golden`` measures every floor on one golden set,
    ``split`` on one split of each floor's golden set (``"all"``: every split; default each floor's
    own, else the held-out test split), ``lower_bound`` gates each on its interval's lower bound.
    ``judges``: what :func:`list_judges` returned for the project, when the caller has it already."""
    from costar.align.gates import JudgeFloor

    floors = []
    for info in list_judges(project) if judges is None else judges:
        if info.agreement_floor:
            spec = {**info.agreement_floor,
                    "use_lower_bound": lower_bound or info.agreement_floor.get("use_lower_bound", False)}
            if golden:
                spec["golden"] = golden
            if split is not None:
                spec["split"] = split
            floors.append(JudgeFloor(name=info.name, **spec))
    return floors


# --------------------------------------------------------------------------- plugins


def list_plugins() -> dict[str, list[PluginInfo]]:
    """Every name of every plugin group and where it comes from (built-in, plugin or registered in
    code), without importing any plugin. What ``costar plugins`` shows."""
    return describe_groups()


# --------------------------------------------------------------------------- comparisons


def compare(base: str, head: str = "latest", *, store: Store | str | Path | None = None, alpha: float = 0.05,
            correction: Literal["holm", "none"] = "holm", attribution: bool = True, rejudge: int | None = None,
            registry: JudgeRegistry | None = None) -> ComparisonView:
    """BASE against HEAD (ids, prefixes, ``latest``, ``branch:NAME``, ``tag:NAME``): per scenario and
    judge, improved / regressed / unchanged / inconclusive; for each scenario, the changed tools it used
    and whether the agent changed; with ``rejudge=k``, how much of each regression is the judge's noise
    (re-judged with ``registry``, default the judges of the project in the working directory)."""
    from costar.compare import compare_runs
    from costar.views import ComparisonView

    if rejudge is not None and registry is None:
        registry = project_judges()
    with _using(store) as st:
        return ComparisonView.of(compare_runs(st, base, head, alpha=alpha, correction=correction,
                                              attribute_tools=attribution, rejudge=rejudge, registry=registry))


def rejudge(base: str, head: str, scenario_ids: Sequence[str], *, k: int = 5,
            store: Store | str | Path | None = None, registry: JudgeRegistry | None = None,
            seed: int = 0) -> RejudgeReport:
    """Flaky agent or flaky judge: re-judge both runs' stored traces of each scenario ``k`` times
    (model cache bypassed) and split each change into the agent's part and the judge's."""
    from costar.rejudge import rejudge as run_rejudge

    with _using(store) as st:
        return run_rejudge(st, st.resolve_run_id(base), st.resolve_run_id(head), scenario_ids, k=k,
                           registry=registry or project_judges(), seed=seed)


# --------------------------------------------------------------------------- MCP servers


def snapshot_mcp_servers(servers: dict[str, McpServerConfig], *, root: str | Path | None = None,
                         store: Store | str | Path | None = None, names: Sequence[str] | None = None,
                         ) -> list[McpSnapshot]:
    """Snapshot MCP servers declared as in costar.yaml (``mcp_servers:``; ``names`` picks some) and store
    the snapshots. Raises a one-line error naming the first server that fails (after trying all)."""
    from costar._util.aio import run_sync
    from costar.errors import ConfigError
    from costar.mcp.snapshot import McpServerError, snapshot_configured

    chosen = list(names) if names else list(servers)
    unknown = [n for n in chosen if n not in servers]
    if unknown:
        known = ", ".join(servers) or "none declared"
        raise ConfigError(f"no MCP server {unknown[0]!r} under mcp_servers: in costar.yaml (declared: {known})")
    base = Path(root) if root is not None else Path.cwd()
    taken, failed = [], []
    with _using(store, create=True) as st:
        for name in chosen:
            try:
                snap = run_sync(functools.partial(snapshot_configured, name, servers[name], base))
            except McpServerError as exc:
                failed.append(f"{name}: {exc}")
                continue
            st.write_mcp_snapshot(snap)
            taken.append(snap)
    if failed:
        raise McpServerError(failed[0] + (f" (and {len(failed) - 1} more failed)" if len(failed) > 1 else ""))
    return taken


def snapshot_mcp_server(*, command: Sequence[str] | None = None, url: str | None = None, name: str | None = None,
                        headers: dict[str, str] | None = None, timeout: float = 30.0,
                        store: Store | str | Path | None = None) -> McpSnapshot:
    """Snapshot one server (a stdio command or a streamable HTTP URL) and store it."""
    from costar._util.aio import run_sync
    from costar.mcp.snapshot import snapshot_server

    snap = run_sync(lambda: snapshot_server(command=command, url=url, name=name, headers=headers, timeout=timeout))
    with _using(store, create=True) as st:
        st.write_mcp_snapshot(snap)
    return snap


def diff_mcp(base: str, head: str, *, store: Store | str | Path | None = None) -> CatalogDiff:
    """Tool, prompt and resource changes between two snapshots, runs or traces (``costar.mcp.catalog``)."""
    from costar.mcp.catalog import resolve_catalog
    from costar.mcp.diff import diff_catalogs

    with _using(store) as st:
        return diff_catalogs(resolve_catalog(st, base), resolve_catalog(st, head))


def current_tools(store: Store, servers: dict[str, McpServerConfig], *, root: Path,
                  base_run_id: str) -> tuple[list[ToolDefinition], list[str], list[str]]:
    """The tool definitions the MCP servers offer now, the servers that covers, and notes: the
    declared servers are snapshotted (and stored); without any, the newest stored snapshot of each
    server ``base_run_id`` used stands in."""
    from costar.mcp.catalog import recorded_tools

    if servers:
        snaps = snapshot_mcp_servers(servers, root=root, store=store)
        return ([d for s in snaps for d in s.tools], [s.server.name or s.name for s in snaps],
                [f"snapshotted {s.name} ({s.server.name} {s.server.version or ''})".strip() for s in snaps])
    used, _ = recorded_tools(store.iter_traces(store.resolve_run_id(base_run_id), spans=False))
    wanted = sorted({d.server for d in used if d.server})
    latest: dict[str, McpSnapshot] = {}
    for snap in store.mcp_snapshots(limit=1000):
        key = snap.server.name or snap.name
        if key in wanted and key not in latest:
            latest[key] = snap
    notes = [f"no mcp_servers: in costar.yaml; used the stored snapshot {s.snapshot_id} of {k}"
             for k, s in latest.items()]
    return [d for s in latest.values() for d in s.tools], list(latest), notes


def select_affected(base: str, suite: SuiteArg, agent: AgentArg, *, store: Store | str | Path | None = None,
                    mcp_servers: dict[str, McpServerConfig] | None = None, root: str | Path | None = None,
                    selection: Selection | None = None) -> tuple[list[Scenario], AffectedSelection]:
    """The scenarios of ``suite`` a change since the run ``base`` can have affected, and why
    (``costar.affected``): pass the first to :func:`run_suite`."""
    from costar.affected import select_affected as pick
    from costar.errors import ConfigError
    from costar.run.agents import Agent, make_agent
    from costar.suites import redacted_spec, scenarios_from

    if suite is None:
        raise ConfigError("no scenarios given: pass a suite path or set 'suite' in costar.yaml")
    if agent is None:
        raise ConfigError("no agent given: pass --agent or set 'agent' in costar.yaml")
    scenarios = (selection or Selection()).apply(scenarios_from(suite)[0])
    agent_obj = agent if isinstance(agent, Agent) else make_agent(agent)
    with _using(store, create=True) as st:
        base_id = st.resolve_run_id(base)
        tools, servers, notes = current_tools(st, mcp_servers or {}, root=Path(root) if root else Path.cwd(),
                                              base_run_id=base_id)
        picked = pick(st, base_id, scenarios, agent_obj.info, redacted_spec(agent_obj.spec()), tools, servers)
    picked.warnings = [*notes, *picked.warnings]
    ids = set(picked.ids)
    return [sc for sc in scenarios if sc.id in ids], picked


# --------------------------------------------------------------------------- CI


def init_ci(provider: str, root: str | Path = ".", *, force: bool = False, **options: Any) -> list[Path]:
    """Write the CI workflows for ``github`` or ``gitlab`` under ``root`` (``costar.ci.CiOptions``)."""
    from costar.ci import CiOptions, Provider, write

    # CiOptions checks the provider (a ConfigError names the choices).
    return write(Path(root), CiOptions(provider=cast("Provider", provider), **options), force=force)


# --------------------------------------------------------------------------- the server


def serve(config: Any = None, *, store: Store | str | Path | None = None, host: str | None = None,
          port: int | None = None, log_level: str = "info", project: ProjectConfig | str | Path | None = None,
          monitors: bool | None = None, web: bool = True) -> None:
    """Run ``costar server`` in the foreground until SIGINT/SIGTERM. ``config`` is a ServerConfig, a
    path to a server.yaml, or None (``server.yaml`` in the working directory when it exists);
    ``store``, ``host`` and ``port`` override it. The monitors of ``project`` (its ``monitors/``
    folder and those kept in the store) score the traces the server stores, unless ``monitors`` is
    False (default: server.yaml's ``monitors.enabled``); a monitor that cannot be built is a one-line
    error before the server starts. ``web``: serve the web app's pages at ``/`` too."""
    from costar.server.config import ServerConfig, load_server_config
    from costar.server.run import serve as run_server

    cfg = config if isinstance(config, ServerConfig) else load_server_config(config)
    updates = {k: v for k, v in (("host", host), ("port", port)) if v is not None}
    if updates:
        cfg = ServerConfig.model_validate({**cfg.model_dump(), **updates})

    def mount(server: Any) -> None:
        from costar.ui.app import mount_webapp

        # The pages read the project's judges and monitors (files and those kept in the store).
        mount_webapp(server, project_dir=str(project_config(project).root))

    scoring = cfg.monitors.enabled if monitors is None else monitors
    with _using(store if store is not None else cfg.store, create=True) as st:
        service = None
        if scoring:
            from costar.monitor.service import ServiceOptions

            settings = cfg.monitors
            options = ServiceOptions(concurrency=settings.concurrency, queue_size=settings.queue_size,
                                     evaluate_every=settings.evaluate_every)
            chosen = load_monitors(project, store=st)
            if any(m.definition.enabled for m in chosen):
                service = monitor_service(project, store=st, options=options, monitors=chosen)
        run_server(cfg, st, log_level=log_level, monitors=service, extend=mount if web else None)


def serve_ui(*, store: Store | str | Path | None = None, host: str = "127.0.0.1", port: int = 8766,
             open_browser: bool = True, project: ProjectConfig | str | Path | None = None,
             announce: Any = None, stop: Any = None) -> None:
    """``costar ui``: the web app over a store (the project's by default), on loopback, until Ctrl-C
    (or until ``stop``, a ``threading.Event``, is set); opens a browser unless ``open_browser`` is False."""
    from costar.ui.app import serve_ui as run_ui

    cfg = project_config(project)
    with _using(store if store is not None else cfg.store_location(None)) as st:
        run_ui(st, host=host, port=port, open_browser=open_browser, project_dir=str(cfg.root), announce=announce,
               stop=stop)


def create_server_token(kind: Literal["ingest", "api"], *, project: str | None = None, name: str = "",
                        store: Store | str | Path | None = None) -> Any:
    """A new server token (``NewToken``: its record and the token, shown only now)."""
    from costar.server.auth import create_token
    from costar.store.server_tables import ServerTables

    with _using(store, create=True) as st:
        return create_token(ServerTables(st), kind, project=project, name=name)  # type: ignore[arg-type]


def server_tokens(*, store: Store | str | Path | None = None) -> list[Any]:
    """Every token's record (never the tokens themselves), oldest first."""
    from costar.store.server_tables import ServerTables

    with _using(store) as st:
        return ServerTables(st).tokens()  # type: ignore[arg-type]


def server_traces(*, project: str | None = None, limit: int = 50, store: Store | str | Path | None = None) -> list[Any]:
    """The traces ``costar server`` stored (``ServerTrace`` records), newest first."""
    from costar.store.server_tables import ServerTables

    with _using(store) as st:
        return ServerTables(st).list_traces(project=project, limit=limit)  # type: ignore[arg-type]


def revoke_server_token(token_id: str, *, store: Store | str | Path | None = None) -> Any:
    """Revoke a token by id; the server refuses it from its next request on."""
    from costar.server.auth import revoke_token
    from costar.store.server_tables import ServerTables

    with _using(store) as st:
        return revoke_token(ServerTables(st), token_id)  # type: ignore[arg-type]


def prune_store(config: Any = None, *, store: Store | str | Path | None = None, project: str | None = None,
                dry_run: bool = False) -> Any:
    """Apply the retention rules of ``config`` (a ServerConfig or a server.yaml path) once: a PruneReport."""
    from costar.server.config import ServerConfig, load_server_config
    from costar.server.retention import prune
    from costar.store.server_tables import ServerTables

    cfg = config if isinstance(config, ServerConfig) else load_server_config(config)
    with _using(store if store is not None else cfg.store) as st:
        return prune(ServerTables(st), cfg, project=project, dry_run=dry_run)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- runs, traces and reports


def _store_first(args: tuple[Any, ...], store: Any) -> tuple[tuple[Any, ...], Any]:
    """Calls written the older way, a Store object first (``summarize_run(store, run_id)``): the
    store and the remaining arguments."""
    if args and isinstance(args[0], Store) and store is None:
        return args[1:], args[0]
    return args, store


def summarize_run(*args: Any, store: Store | str | Path | None = None,
                  scenarios: Sequence[Scenario] | dict[str, Scenario] | None = None) -> RunSummary:
    """``summarize_run(run="latest", store=None)``: a stored run's verdicts folded into rates (``run``:
    an id, a unique prefix or ``latest``; ``scenarios`` as for :func:`costar.summary.summarize`)."""
    rest, store = _store_first(args, store)
    run = rest[0] if rest else "latest"
    with _using(store) as st:
        return _summarize_run(st, run, *rest[1:2], **({"scenarios": scenarios} if scenarios else {}))


def list_runs(*, store: Store | str | Path | None = None, limit: int = 20,
              origins: Sequence[str] = ()) -> RunList:
    """The newest runs with their pass rates, trials, tokens, cost, agent commit and origin
    (``origins``: only runs from these, e.g. ``["cli", "ci"]``). What ``costar runs`` shows."""
    from costar.views import run_list

    with _using(store) as st:
        return run_list(st, limit=limit, origins=origins)


def list_traces(run: str = "latest", *, store: Store | str | Path | None = None) -> TraceList:
    """A run's traces with whole ids, status, outcome and totals. What ``costar traces list`` shows."""
    from costar.views import trace_list

    with _using(store) as st:
        return trace_list(st, run)


def show_trace(trace_id: str, *, store: Store | str | Path | None = None, max_spans: int = 500,
               attributes: bool = True, artifact_chars: int = 4000) -> TraceDetail:
    """One trace (a whole id or a unique prefix): spans with tokens and cost (``attributes``: every
    attribute too), artifacts with the start of each text file (``artifact_chars``), verdicts."""
    from costar.views import trace_detail

    with _using(store) as st:
        return trace_detail(st, trace_id, max_spans=max_spans, attributes=attributes, artifact_chars=artifact_chars)


def run_report(run: str = "latest", *, store: Store | str | Path | None = None) -> RunReport:
    """A stored run's report (its summary as a versioned view). What ``costar report --json`` prints."""
    from costar.views import run_report as report_of

    with _using(store) as st:
        return report_of(st, run)


def judge_list(project: ProjectConfig | str | Path | None = None) -> JudgeList:
    """Every judge a project can use, as a versioned view. What ``costar judges list --json`` prints."""
    from costar.views import judge_list as view_of

    return view_of(list_judges(project))


def compare_runs(*args: Any, store: Store | str | Path | None = None, alpha: float = 0.05,
                 correction: Literal["holm", "none"] = "holm", attribute_tools: bool = True,
                 rejudge: int | None = None, registry: JudgeRegistry | None = None) -> ComparisonView:
    """``compare_runs(base, head="latest", store=None)``: :func:`compare` under its older name, which
    also takes the older order, a Store object first (``compare_runs(store, base, head)``)."""
    rest, store = _store_first(args, store)
    if not rest:
        raise TypeError("compare_runs() needs the base run: compare_runs(base, head='latest', store=...)")
    return compare(rest[0], rest[1] if len(rest) > 1 else "latest", store=store, alpha=alpha,
                   correction=correction, attribution=attribute_tools, rejudge=rejudge, registry=registry)


def check_metrics(*args: Any, store: Store | str | Path | None = None, **options: Any) -> MetricsView:
    """``check_metrics(run="latest", store=None, history=10, ...)``: a run's operational metrics per
    scenario against its history, with alerts and breached limits (``options`` as for
    :func:`costar.metrics.check_metrics`). What ``costar metrics`` shows."""
    from costar.metrics import check_metrics as check
    from costar.views import MetricsView

    rest, store = _store_first(args, store)
    with _using(store) as st:
        run = st.resolve_run_id(rest[0] if rest else "latest")
        return MetricsView.of(check(st, run, **options))


# --------------------------------------------------------------------------- one trace, inline


class TraceFailed(AssertionError):
    """:func:`assert_passes` found a judge that failed or could not decide; ``verdicts`` has them all."""

    def __init__(self, message: str, verdicts: list[Verdict]) -> None:
        super().__init__(message)
        self.verdicts = verdicts


def _as_trace(trace: Trace | Recording | str, store: Store | None, output: str | None) -> Trace:
    from costar.trace.finalize import finalize_spans
    from costar.trace.model import Trace, compute_totals
    from costar.trace.recorder import Recording

    if isinstance(trace, str):
        assert store is not None  # judge_trace opens one for a stored trace
        return store.get_trace(trace)
    if isinstance(trace, Recording):
        spans = finalize_spans(trace.spans())
        root = next((sp for sp in spans if sp.span_id == trace.root.span_id), None)
        start = min((sp.start_ns for sp in spans), default=0)
        end = max((sp.end_ns or sp.start_ns for sp in spans), default=0)
        said = output if output is not None else (root.attributes.get("output.value") if root else None)
        return Trace(trace_id=trace.trace_id, spans=spans, output=None if said is None else str(said),
                     start_ns=start, end_ns=end, totals=compute_totals(spans, (end - start) / 1e9))
    if output is not None:
        trace = trace.model_copy(update={"output": output})
    return trace


def _as_judges(judges: Sequence[Any], project: ProjectConfig | str | Path | None) -> list[Judge]:
    from costar.judges.base import Judge
    from costar.judges.checks import parse_check
    from costar.scenario.checks import CHECKS
    from costar.scenario.model import JudgeRef

    out: list[Judge] = []
    registry: JudgeRegistry | None = None
    for j in judges:
        if isinstance(j, Judge):
            out.append(j)
            continue
        kind = j.removeprefix("not_") if isinstance(j, str) else None
        if isinstance(j, str) and kind not in CHECKS:
            registry = registry or project_judges(project)
            out.append(registry.resolve(JudgeRef(name=j)))
            continue
        try:
            out.append(parse_check(j))
        except ValueError as exc:
            from costar.errors import ConfigError

            raise ConfigError(f"{exc}; a judge is a check entry ({{output_contains: '42'}}), a judge name, or a "
                              "Judge") from None
    return out


def judge_trace(trace: Trace | Recording | str, judges: Sequence[Any], *,
                store: Store | str | Path | None = None, project: ProjectConfig | str | Path | None = None,
                output: str | None = None) -> list[Verdict]:
    """The verdicts of ``judges`` on one trace, without storing anything.

    ``trace``: a Trace, a :class:`~costar.trace.recorder.Recording` you just recorded (``output``
    sets what the agent answered), or the id (or a unique prefix) of a stored trace. ``judges``: check
    entries as a scenario writes them (``{"output_contains": "42"}``, ``"no_error_spans"``), names of
    the project's judges (``"outcome"``), or Judge objects. A stored trace's files are read from
    ``store``, so file checks work on it."""
    from costar._util.aio import run_sync
    from costar.judges.base import JudgeContext

    chosen = _as_judges(judges, project)
    needed = isinstance(trace, str) or store is not None
    with _using(store) if needed else contextlib.nullcontext(None) as st:
        ctx = JudgeContext(trace=_as_trace(trace, st, output), store=st)

        async def score() -> list[Verdict]:
            return [await j.judge(ctx) for j in chosen]

        return run_sync(score)


def assert_passes(trace: Trace | Recording | str, judges: Sequence[Any], *,
                  store: Store | str | Path | None = None, project: ProjectConfig | str | Path | None = None,
                  output: str | None = None) -> list[Verdict]:
    """Assert that every judge passes ``trace`` (see :func:`judge_trace` for the arguments); return
    the verdicts. A judge that fails, or cannot decide (a judge error), raises :class:`TraceFailed`
    (an AssertionError) whose message lists each with its rationale, one per line."""
    verdicts = judge_trace(trace, judges, store=store, project=project, output=output)
    bad = [v for v in verdicts if v.outcome in ("fail", "error")]
    if bad:
        subject = trace if isinstance(trace, str) else getattr(trace, "trace_id", "")
        lines = [f"trace {subject}: {len(bad)} of {len(verdicts)} judges did not pass"]
        for v in bad:
            mark = "✗" if v.outcome == "fail" else "‼ judge error:"
            lines.append(f"  {mark} {v.name}: {v.error or v.rationale}")
        raise TraceFailed("\n".join(lines), verdicts)
    return verdicts
# --------------------------------------------------------------------------- monitors


def load_monitors(project: ProjectConfig | str | Path | None = None, *,
                  store: Store | str | Path | None = None) -> list[Monitor]:
    """A project's monitors: every file under its ``monitors/`` folder, then the monitors created
    through the API (kept in the store; ``store`` None reads the project's store when it exists)."""
    from costar.errors import StoreError
    from costar.monitor.files import load_monitors as load
    from costar.monitor.overview import stored_definitions

    cfg = project_config(project)
    stored: list[MonitorDefinition] = []
    try:
        with _using(store, project=cfg) as st:
            stored = stored_definitions(st)
    except StoreError:  # no store yet (or one this coSTAR cannot read): only the files
        stored = []
    return load(cfg.path(cfg.monitors_dir), stored)


def monitor_service(project: ProjectConfig | str | Path | None = None, *, store: Store | str | Path | None = None,
                    options: ServiceOptions | None = None, monitors: Sequence[Monitor] | None = None,
                    registry: JudgeRegistry | None = None) -> MonitorService:
    """The project's monitors at work over its store (or ``store``), their judges resolved with the
    project's registry (promoted aligned versions included). What a server runs and what
    :func:`run_monitors` and :func:`backfill_monitor` drive."""
    from costar.monitor.service import MonitorService

    cfg = project_config(project)
    # The service goes on using the store (a server's whole life): one opened here stays open.
    st = store if isinstance(store, Store) else _open_at(store, project=cfg, create=True)
    chosen = list(monitors) if monitors is not None else load_monitors(cfg, store=st)
    return MonitorService(st, chosen, registry or project_judges(cfg), options=options)


def run_monitors(names: Sequence[str] | None = None, *, since: float | None = None,
                 project: ProjectConfig | str | Path | None = None, store: Store | str | Path | None = None,
                 options: ServiceOptions | None = None) -> MonitorRunReport:
    """``costar monitor run``: consider the stored traces the monitors have not seen (since ``since``,
    Unix seconds; default: since each monitor's last sweep, or the last day), score the sampled ones,
    evaluate the series and alert rules (delivering alerts)."""
    from costar._util.aio import run_sync

    cfg = project_config(project)
    with _using(store, project=cfg, create=True) as st:
        service = monitor_service(cfg, store=st, options=options)
        return run_sync(lambda: service.run_once(names, since=since))


def backfill_monitor(name: str, since: float, *, until: float | None = None,
                     project: ProjectConfig | str | Path | None = None, store: Store | str | Path | None = None,
                     options: ServiceOptions | None = None) -> BackfillReport:
    """``costar monitor backfill``: score the stored traces monitor ``name`` matches since ``since``
    (Unix seconds) and fill its series over the period."""
    from costar._util.aio import run_sync

    cfg = project_config(project)
    with _using(store, project=cfg, create=True) as st:
        service = monitor_service(cfg, store=st, options=options)
        service.require(name)
        return run_sync(lambda: service.backfill(name, since, until))


def monitor_list(*, project: ProjectConfig | str | Path | None = None,
                 store: Store | str | Path | None = None) -> list[MonitorRow]:
    """``costar monitor list``: the project's monitors with how many traces each considered, sampled
    and scored (without counts when there is no store yet)."""
    from costar.errors import StoreError
    from costar.monitor.overview import monitor_rows

    cfg = project_config(project)
    try:
        with _using(store, project=cfg) as st:
            return monitor_rows(load_monitors(cfg, store=st), st)
    except StoreError:  # no store yet (or one this coSTAR cannot read): the files' definitions only
        return monitor_rows(load_monitors(cfg), None)


def monitor_status(name: str, *, at: float | None = None, project: ProjectConfig | str | Path | None = None,
                   store: Store | str | Path | None = None) -> MonitorStatus:
    """``costar monitor show``: a monitor's definition, judges with fingerprints, counts, every window's
    values computed at ``at`` (Unix seconds; default now) and its alert rules' states."""
    import time

    from costar._util.aio import run_sync
    from costar.monitor.overview import monitor_status as status

    cfg = project_config(project)
    with _using(store, project=cfg) as st:
        service = monitor_service(cfg, store=st)
        when = time.time() if at is None else at
        return run_sync(lambda: status(service, name, when))


def monitor_window_traces(name: str, *, window: float, at: float, judge: str = "", outcome: str | None = None,
                          limit: int = 500, project: ProjectConfig | str | Path | None = None,
                          store: Store | str | Path | None = None) -> WindowTraces:
    """The traces behind one point of a monitor's series: those that happened in ``(at - window, at]``,
    with ``judge``'s outcome on each (``judge`` empty: every trace the monitor considered)."""
    from costar.monitor.overview import window_traces

    with _using(store, project=project) as st:
        return window_traces(st, name, window=window, at=at, judge=judge, outcome=outcome, limit=limit)


def monitor_alerts(monitor: str | None = None, *, since: float | None = None, limit: int = 100,
                   project: ProjectConfig | str | Path | None = None,
                   store: Store | str | Path | None = None) -> list[AlertRecord]:
    """The alert history (firing and resolved, with each delivery's outcome), newest first."""
    from costar.store.monitor_tables import MonitorTables

    with _using(store, project=project) as st:
        return MonitorTables(st).alerts(monitor=monitor, since=since, limit=limit)


def monitor_series(monitor: str, *, judge: str | None = None, window: float | None = None,
                   metric: str | None = None, since: float | None = None, limit: int = 10_000,
                   project: ProjectConfig | str | Path | None = None,
                   store: Store | str | Path | None = None) -> list[SeriesPoint]:
    """Stored points of a monitor's series, oldest first (``judge`` "" for the operational ones)."""
    from costar.store.monitor_tables import MonitorTables

    with _using(store, project=project) as st:
        return MonitorTables(st).points(monitor, judge=judge, window=window, metric=metric, since=since, limit=limit)


def save_monitor(definition: MonitorDefinition | dict[str, Any], *, project: ProjectConfig | str | Path | None = None,
                 store: Store | str | Path | None = None) -> tuple[MonitorDefinition, bool]:
    """Create or replace a monitor kept in the store (the API's way; files stay in ``monitors/``).
    Its judges are resolved first, so a monitor that cannot score is refused. Returns it and whether
    it was new. A name a monitor file already uses is refused."""
    from costar.monitor.files import Monitor as MonitorEntry
    from costar.monitor.files import load_monitors as load
    from costar.monitor.files import parse_monitor
    from costar.monitor.scoring import MonitorJudges
    from costar.store.monitor_tables import MonitorTables

    cfg = project_config(project)
    d = definition if not isinstance(definition, dict) else parse_monitor(definition)
    for m in load(cfg.path(cfg.monitors_dir)):
        if m.name == d.name:
            from costar.errors import ConfigError

            raise ConfigError(f"monitor {d.name!r} is defined in {m.where()}; edit that file, or choose another name")
    MonitorJudges(MonitorEntry(d, "store"), project_judges(cfg))
    with _using(store, project=cfg, create=True) as st:
        new = MonitorTables(st).save_monitor(d.name, d.model_dump(mode="json"))
    return d, new


def delete_monitor(name: str, *, project: ProjectConfig | str | Path | None = None,
                   store: Store | str | Path | None = None) -> bool:
    """Delete a monitor kept in the store (its series and alert history stay); False when there is none."""
    from costar.store.monitor_tables import MonitorTables

    with _using(store, project=project) as st:
        return MonitorTables(st).delete_monitor(name)


def scenario_from_trace(trace_id: str, *, project: ProjectConfig | str | Path | None = None,
                        store: Store | str | Path | None = None, files_dir: str | None = None,
                        scenario_id: str | None = None) -> ScenarioDraft:
    """A scenario draft from a stored trace (``costar scenarios from-trace``): prompt or turns, input
    files recovered from the trace, its failing verdicts as expectations; for a person to review."""
    from costar.errors import CostarError
    from costar.monitor.drafts import scenario_draft
    from costar.monitor.scoring import MonitorJudges

    cfg = project_config(project)
    with _using(store, project=cfg) as st:
        judged: list[MonitorJudges] = []
        registry = None
        for m in load_monitors(cfg, store=st):
            try:
                registry = registry or project_judges(cfg)
                judged.append(MonitorJudges(m, registry))
            except CostarError:  # a monitor that cannot be built only means its checks are not looked up
                continue
        return scenario_draft(st, trace_id, monitors=judged, files_dir=files_dir, scenario_id=scenario_id)
