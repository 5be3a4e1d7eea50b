"""The pytest plugin (entry point ``pytest11``): coSTAR scenarios as pytest test items.

``pytest --costar`` collects every scenario of the project's suite (``suite`` in ``costar.yaml``) as a
test item; ``pytest --costar scenarios/checkout.yaml`` collects the scenarios of the files or folders
given. Each item runs its scenario the way ``costar run`` does (the project's agent, trials and
judges, a run recorded in the project's store with origin ``pytest``) and passes when every trial
passes; otherwise its failure message lists each failing trial with its verdicts and rationales and
the trace ids to open with ``costar traces show``. ``-k``, ``--lf``, ``-x`` and xdist work as for any
test. Options: ``--costar-config``, ``--costar-store``, ``--costar-trials``, ``--costar-agent``.

For a trace you hold in a test, :func:`costar.api.assert_passes` asserts inline that given judges
pass it. The scripted model server fixture lives in :mod:`costar.testing.fixtures`.

This module is imported by every pytest run where coSTAR is installed, so it imports nothing of
coSTAR until ``--costar`` is given.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from costar.config import ProjectConfig
    from costar.judges.registry import JudgeRegistry
    from costar.scenario import Scenario
    from costar.store.base import Store
    from costar.summary import ScenarioSummary

_SCENARIO_SUFFIXES = (".yaml", ".yml")


def pytest_addoption(parser: pytest.Parser) -> None:
    """``--costar [SUITE]`` and its options."""
    group = parser.getgroup("costar", "coSTAR scenarios as tests")
    group.addoption("--costar", nargs="?", const="", default=None, metavar="SUITE",
                    help="Collect coSTAR scenarios as tests: the suite in costar.yaml, or these scenario "
                         "files or folders (comma-separated).")
    group.addoption("--costar-config", default=None, metavar="PATH",
                    help="The coSTAR project file (default: the nearest costar.yaml).")
    group.addoption("--costar-store", default=None, metavar="STORE",
                    help="Where runs are recorded: a folder or a postgresql:// URL (default: the project's).")
    group.addoption("--costar-trials", type=int, default=None, metavar="N",
                    help="Trials per scenario (default: each scenario's own).")
    group.addoption("--costar-agent", default=None, metavar="SPEC",
                    help="The agent, as 'costar run --agent' takes it (default: agent in costar.yaml).")


class _Suite:
    """What ``--costar`` asked for, resolved once per session."""

    def __init__(self, config: pytest.Config) -> None:
        from costar.config import load_config
        from costar.errors import CostarError

        self.config = config
        given = config.getoption("costar")
        project_file = config.getoption("costar_config")
        try:
            self.project: ProjectConfig = load_config(Path(project_file) if project_file else None)
        except CostarError as exc:
            raise pytest.UsageError(f"--costar: {exc}") from None
        if given:
            self.paths = [Path(p).resolve() for p in str(given).split(",") if p.strip()]
        else:
            self.paths = [Path(self.project.path(s)).resolve() for s in self.project.suite]
        if not self.paths:
            raise pytest.UsageError("--costar: no scenarios: give a suite (pytest --costar scenarios/) or set "
                                    "'suite' in costar.yaml")
        missing = [str(p) for p in self.paths if not p.exists()]
        if missing:
            raise pytest.UsageError(f"--costar: {', '.join(missing)} does not exist")

    @cached_property
    def store(self) -> Store:
        """The store every scenario's run is recorded in, opened on the first item that runs (never
        on an xdist controller, which runs none) and closed when the session ends."""
        from costar.store import open_store

        where = self.config.getoption("costar_store")
        return open_store(self.project.store_location(where), local_dir=self.project.local_path(where))

    @cached_property
    def judges(self) -> JudgeRegistry:
        """The project's judges, built once for the session."""
        from costar.api import project_judges

        return project_judges(self.project)

    def close(self) -> None:
        if "store" in self.__dict__:
            self.store.close()

    def owns(self, path: Path) -> bool:
        """Whether ``path`` is a scenario file of the suite."""
        resolved = path.resolve()
        return resolved.suffix in _SCENARIO_SUFFIXES and any(
            resolved == p or (p.is_dir() and resolved.is_relative_to(p)) for p in self.paths)


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``costar`` marker."""
    config.addinivalue_line("markers", "costar: a coSTAR scenario run as a test (pytest --costar)")
    if config.getoption("costar", default=None) is None:
        return
    suite = _Suite(config)
    config.stash[_SUITE] = suite
    # The suite's files are collected as well as whatever pytest collects anyway (a path collected
    # twice is collected once); '-m costar' keeps only the scenarios.
    config.args[:] = [*config.args, *(str(p) for p in suite.paths if str(p) not in config.args)]


_SUITE = pytest.StashKey[_Suite]()


def pytest_unconfigure(config: pytest.Config) -> None:
    """Close the suite's store, when a scenario opened it."""
    suite = config.stash.get(_SUITE, None)
    if suite is not None:
        suite.close()


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    """With ``--costar``: the scenario files of the suite, each a collector of its scenarios."""
    suite = parent.config.stash.get(_SUITE, None)
    if suite is None or not suite.owns(file_path):
        return None
    return ScenarioFile.from_parent(parent, path=file_path)


class ScenarioFile(pytest.File):
    """A scenario file: one test item per scenario."""

    def collect(self) -> Any:
        """One test item per scenario in the file; a file that does not load is a collection error saying why."""
        from costar.errors import CostarError
        from costar.scenario import load_scenario_file

        try:
            scenarios = load_scenario_file(self.path)
        except CostarError as exc:
            raise self.CollectError(str(exc)) from None
        for sc in scenarios:
            yield ScenarioItem.from_parent(self, name=sc.id, scenario=sc)


class ScenarioFailed(Exception):
    """A scenario did not pass; the message says which trials and verdicts."""


class ScenarioItem(pytest.Item):
    """One scenario, its trials and judges as configured."""

    def __init__(self, *, scenario: Scenario, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.scenario = scenario
        self.add_marker("costar")
        for tag in scenario.tags:  # a scenario's tags are markers: pytest --costar -m smoke
            if tag.isidentifier():
                self.config.addinivalue_line("markers", f"{tag}: coSTAR scenario tag")
                self.add_marker(tag)

    def runtest(self) -> None:
        """Run the scenario's trials and judges, recorded as a run with origin ``pytest``."""
        from costar import api
        from costar.errors import CostarError

        suite = self.config.stash[_SUITE]
        cfg = suite.project
        trials = self.config.getoption("costar_trials")
        options = api.HarnessOptions(concurrency=cfg.concurrency, trials=trials or cfg.trials, timeout=cfg.timeout,
                                     prices=cfg.price_table())
        agent = self.config.getoption("costar_agent") or cfg.agent_spec()
        try:
            outcome = api.run_suite([self.scenario], agent, store=suite.store,
                                    selection=api.Selection(ids=[self.scenario.id]), options=options,
                                    registry=suite.judges, origin="pytest", description=f"pytest {self.nodeid}")
        except CostarError as exc:
            raise ScenarioFailed(f"error: {exc}") from None
        result = outcome.summary.scenario(self.scenario.id)
        self.user_properties.append(("costar_run_id", outcome.run.run_id))
        if result is None or result.status != "pass":
            raise ScenarioFailed(failure_message(result, outcome.run.run_id))

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException],
                     style: Any = None) -> str | Any:
        """The verdicts of the failing trials, instead of a traceback into coSTAR."""
        if isinstance(excinfo.value, ScenarioFailed):
            return str(excinfo.value)
        return super().repr_failure(excinfo)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        """Where the item comes from, as pytest prints it."""
        return self.path, None, f"scenario {self.scenario.id}"


def failure_message(result: ScenarioSummary | None, run_id: str) -> str:
    """Why a scenario failed, one line per failing verdict, with the ids to look further. Trace
    content in it (rationales quote the agent) cannot drive the terminal pytest prints to."""
    from costar.safe_text import for_terminal

    return for_terminal(_failure_text(result, run_id), None)


def _failure_text(result: ScenarioSummary | None, run_id: str) -> str:
    from costar.summary import fmt_rate

    if result is None:
        return f"the scenario recorded no trial (run {run_id})"
    lines = [f"{result.scenario_id}: {result.status.upper()} · {result.passed}/{result.decided} trials passed "
             f"({fmt_rate(result.rate)}) · run {run_id}"]
    for trial in result.trial_results:
        if trial.status == "pass":
            continue
        lines.append(f"trial {trial.trial} ({trial.status}) · trace {trial.trace_id}")
        if trial.agent_status != "ok":
            lines.append(f"  agent {trial.agent_status}: {trial.agent_error or '(no message)'}")
        for v in trial.failures:
            lines.append(f"  ✗ {v.name}: {v.rationale}")
        for v in trial.judge_errors:
            lines.append(f"  ‼ {v.name}: judge error: {v.error or v.rationale}")
        if trial.status == "unscored":
            lines.append("  no judge scored this trial")
    if result.missing_trials:
        lines.append(f"trials not recorded: {', '.join(map(str, result.missing_trials))}")
    lines.append(f"more: costar report {run_id} · costar traces show TRACE_ID")
    return "\n".join(lines)
