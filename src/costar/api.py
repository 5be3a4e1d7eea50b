"""The library API: everything the CLI does is one call here.

    import costar
    outcome = costar.run_suite("scenarios/", {"type": "command", "command": "python agent.py"})
    print(outcome.summary.all_gates_passed)

Here are running and scoring (:func:`run_suite`, :func:`assess_run`, :func:`summarize_run`), the
judges of a project (:func:`project_judges`, :func:`list_judges`) and the judge loop: labeling
(:func:`label_in_terminal`, :func:`run_label_server`, :func:`import_labels`...), golden sets
(:func:`create_golden_set`...), agreement (:func:`judge_agreement`, :func:`agreement_between_files`,
:func:`check_agreement_floors`...) and alignment (:func:`align_judge`, :func:`judge_versions`). The
CLI, the web pages and the pytest plugin are faces over these functions.

The judge-loop functions load on first use (``costar.api.judge_agreement`` imports the agreement
code then), so importing this module stays cheap.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from costar.config import ProjectConfig, load_config
from costar.plugins import PluginInfo, describe_groups
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
from costar.summary import summarize_run

if TYPE_CHECKING:
    from costar.align.gates import JudgeFloor
    from costar.align.optimize import AlignBudget, AlignmentResult
    from costar.align.versions import Recorded, VersionRegistry
    from costar.judges.registry import JudgeInfo, JudgeRegistry

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
    "judge_agreement": "costar.align.agreement_store", "labeler_agreement": "costar.align.agreement_store",
    "judges_agreement": "costar.align.agreement_store",
    "agreement_between_files": "costar.align.agreement_files",
    "format_agreement": "costar.align.agreement_results",
    "JudgeFloor": "costar.align.gates", "check_agreement_floors": "costar.align.gates",
    "corrected_pass_rate": "costar.align.corrected",
    "AlignBudget": "costar.align.optimize",
    "compare_runs": "costar.compare", "check_metrics": "costar.metrics",
    "export_run": "costar.transfer", "import_into_store": "costar.transfer",
    "load_suite": "costar.scenario", "scenario_json_schema": "costar.scenario",
    "RefineOptions": "costar.refine", "make_assistant": "costar.refine", "refine": "costar.refine",
}
"""Names this module re-exports, loaded on first use: the judge loop, comparisons and metrics,
moving runs in and out, scenario files, refinement."""


def __getattr__(name: str) -> Any:
    module = _JUDGE_LOOP.get(name)
    if module is None:
        raise AttributeError(f"module 'costar.api' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "AgentArg",
    "HarnessOptions",
    "RunEvents",
    "RunOutcome",
    "Selection",
    "SuiteArg",
    "arun_suite",
    "assess_run",
    "list_judges",
    "open_store",
    "project_config",
    "project_judges",
    "run_suite",
    "summarize_run",
    "align_judge",
    "judge_versions",
    "agreement_floors",
    "list_plugins",
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
    st = store if isinstance(store, Store) else open_store(cfg.store_location(store), local_dir=cfg.local_path(store))
    return versions.align_judge(
        st, name, optimizer, golden=golden, golden_version=golden_version,
        budget=budget, project_dir=cfg.root, judges_dir=cfg.judges_dir, default_model=cfg.models.get("judge"),
        record=record, promote=promote, options=options)


def agreement_floors(project: ProjectConfig | str | Path | None = None, *, golden: str | None = None,
                     split: str = "test", lower_bound: bool = False) -> list[JudgeFloor]:
    """The agreement floors a project's judges declare (``agreement_floor`` in their definitions), as
    gates for :func:`check_agreement_floors`; ``golden`` (with ``split``) measures every floor on one
    golden set, ``lower_bound`` gates each on its interval's lower bound."""
    from costar.align.gates import JudgeFloor

    floors = []
    for info in list_judges(project):
        if info.agreement_floor:
            spec = {**info.agreement_floor,
                    "use_lower_bound": lower_bound or info.agreement_floor.get("use_lower_bound", False)}
            if golden:
                spec["golden"], spec["split"] = golden, split
            floors.append(JudgeFloor(name=info.name, **spec))
    return floors


# --------------------------------------------------------------------------- plugins


def list_plugins() -> dict[str, list[PluginInfo]]:
    """Every name of every plugin group and where it comes from (built-in, plugin or registered in
    code), without importing any plugin. What ``costar plugins`` shows."""
    return describe_groups()
