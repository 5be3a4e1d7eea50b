"""The library API: everything the CLI does is one call here.

    import costar
    outcome = costar.run_suite("scenarios/", {"type": "command", "command": "python agent.py"})
    print(outcome.summary.all_gates_passed)

Running and scoring (:func:`run_suite`, :func:`assess_run`, :func:`summarize_run`) and the judges
of a project (:func:`project_judges`, :func:`list_judges`) are here; the CLI, the web pages and the
pytest plugin are faces over these functions.
"""

from __future__ import annotations

from pathlib import Path

from costar.align import versions as align_versions
from costar.config import ProjectConfig, load_config
from costar.judges.registry import JudgeInfo, JudgeRegistry
from costar.store import open_store
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

__all__ = [
    "AgentArg",
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
]


# --------------------------------------------------------------------------- the project's judges


def project_config(project: ProjectConfig | str | Path | None = None) -> ProjectConfig:
    """``project`` as a loaded project file: a ProjectConfig as is, a path to a ``costar.yaml``, or
    None for the nearest one above the working directory (defaults when there is none)."""
    return project if isinstance(project, ProjectConfig) else load_config(project)


def project_judges(project: ProjectConfig | str | Path | None = None) -> JudgeRegistry:
    """The judges a project's runs use: its ``judges/`` folder, plugins and templates, with each
    aligned judge's promoted version in place of its file's definition."""
    return align_versions.project_judges(project_config(project))


def list_judges(project: ProjectConfig | str | Path | None = None) -> list[JudgeInfo]:
    """Every judge a project can use, with fingerprints (what ``costar judges list`` shows)."""
    return project_judges(project).infos()
