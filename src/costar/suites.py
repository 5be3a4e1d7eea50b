"""Running a suite end to end, and re-scoring a stored run.

:func:`run_suite`: the harness runs every scenario's trials against the agent and stores each trace;
the assessor scores the traces as they are stored (judges run while other trials still run); the
summary folds the verdicts into rates. :func:`assess_run` scores a stored run again without the
agent: only new or changed judges run. Both are re-exported by :mod:`costar.api`, the front door.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from costar._util.aio import run_sync
from costar.assess import Assessor, AssessStats, RayJudging, current_scenarios
from costar.errors import ConfigError, CostarError
from costar.judges.base import Judge
from costar.judges.registry import JudgeRegistry
from costar.models.limits import Limits, ModelLimits, RateLimiter, process_limits, set_budget, set_limits_backend
from costar.run.agents import Agent, make_agent
from costar.run.executors import LocalExecutor, make_executor
from costar.run.harness import Harness, HarnessOptions, HarnessResult, run_sanitizer
from costar.run.ray_executor import RayExecutor
from costar.run.vcs import vcs_info
from costar.scenario import Scenario, load_scenario_file, load_suite, select
from costar.store import open_store
from costar.store.base import Run, Store
from costar.store.lease import LeaseLostError, RunLease, hold_run
from costar.summary import RunSummary, summarize_run
from costar.trace.model import Trace
from costar.trace.sanitize import REDACTED, Sanitizer, redact_env, restore_env
from costar.verdict import Verdict


@dataclass
class Selection:
    """Which scenarios of a suite to run: id globs (any of), tags (any of), excluded tags, a split."""

    ids: Sequence[str] = ()
    """Shell globs of scenario ids (``billing-*``); a scenario matching any is kept. Empty: every id."""
    tags: Sequence[str] = ()
    """Tags; a scenario with any of them is kept. Empty: every scenario."""
    exclude_tags: Sequence[str] = ()
    """Tags; a scenario with any of them is dropped."""
    split: str | None = None
    """Only scenarios of this split (``train`` or ``holdout``); None: both."""

    def apply(self, scenarios: list[Scenario]) -> list[Scenario]:
        """The scenarios this selection keeps, in their order."""
        return select(scenarios, ids=self.ids, tags=self.tags, exclude_tags=self.exclude_tags, split=self.split)

    def as_dict(self) -> dict[str, Any]:
        """The selection as JSON values (kept with the run, to resume it)."""
        return {"ids": list(self.ids), "tags": list(self.tags), "exclude_tags": list(self.exclude_tags),
                "split": self.split}


@dataclass
class RunEvents:
    """Callbacks for progress displays; all optional."""

    on_start: Callable[[int, int], None] | None = None
    """Called once the trials are planned, with (trials to run, trials skipped because a resumed run
    already has them)."""
    on_trial: Callable[[Trace, list[Verdict]], None] | None = None
    """Called as each trial is stored and judged, with its trace (as stored) and its verdicts."""
    on_plan: Callable[[dict[str, int]], None] | None = None
    """Called once before the first trial with the trials to run per scenario (a resumed run's
    finished trials left out), so a display can tell when a scenario is done."""
    on_warning: Callable[[str], None] | None = None
    """Called before the first trial with each warning (e.g. scenarios whose natural-language criteria
    no judge applies)."""


@dataclass
class RunOutcome:
    """What running (or re-scoring) a suite produced: the run record, its summary and, when the
    agent ran, the harness's and the assessor's statistics."""

    run: Run
    """The run's record (its id, status, agent, what it was given)."""
    summary: RunSummary
    """The run's verdicts folded into pass rates: per trial, scenario, judge and for the run."""
    harness: HarnessResult | None = None
    """What the harness did (traces recorded, trials skipped or abandoned); None when re-scoring."""
    assess: AssessStats | None = None
    """What judging did (judge calls, cached verdicts, errors, warnings)."""
    store: Store | None = field(default=None, repr=False)
    """The store the run is in, still open (to read its traces and verdicts)."""
    warnings: list[str] = field(default_factory=list)
    """What was said before the first trial (e.g. criteria no judge applies)."""

    @property
    def exit_code(self) -> int:
        """0 when every gating verdict passed, else 1: what ``costar run`` exits with."""
        return 0 if self.summary.all_gates_passed else 1


def _agent_dir(agent: Agent) -> Path:
    cwd = agent.spec().get("cwd")
    return Path(cwd) if isinstance(cwd, str) and Path(cwd).is_dir() else Path.cwd()


def redacted_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """The agent spec as stored with the run: credential-like env values never reach the store."""
    return {**spec, "env": redact_env(spec["env"])} if spec.get("env") else spec


def _restored_spec(spec: dict[str, Any]) -> dict[str, Any]:
    if not spec.get("env"):
        return spec
    env, missing = restore_env(spec["env"], dict(os.environ))
    if missing:
        raise ConfigError(f"the run's agent.env {', '.join(missing)} was not stored (it looks like a secret); "
                          "export it, then resume")
    return {**spec, "env": env}


def _snapshot(sc: Scenario, sanitizer: Sanitizer) -> Scenario:
    """The scenario as stored with the run: credential-like setup.env values hidden by name (restored
    from the environment on resume) and secret values redacted everywhere else (prompt, files, …)."""
    data = sc.model_dump(mode="json")
    env = data["setup"].pop("env")
    body = {k: v for k, v in data.items() if k != "id"}  # an id is an identity, not content
    clean = sanitizer.value(body)
    if clean is body and not env:
        return sc
    return Scenario.model_validate({**clean, "id": sc.id, "setup": {**clean["setup"], "env": redact_env(env)}}
                                   ).with_source(sc.source)


def _has_redactions(sc: Scenario) -> bool:
    data = sc.model_dump(mode="json")
    data["setup"].pop("env")
    return REDACTED in json.dumps(data, ensure_ascii=False)


def _file_version(sc: Scenario) -> Scenario | None:
    """The scenario as its file says now (None without a readable file that still defines it)."""
    if sc.source is None or not sc.source.exists():
        return None
    try:
        return next((f for f in load_scenario_file(sc.source) if f.id == sc.id), None)
    except ConfigError:
        return None


def _restored_scenarios(stored: list[Scenario], agent: Agent) -> list[Scenario]:
    """The stored scenario copies made runnable again for a resume. Where the file still says what the
    copy says (once redacted the same way), the file's version is used, secrets included; otherwise the
    copy, with its hidden setup.env values taken from the environment."""
    files = {sc.id: _file_version(sc) for sc in stored}
    sanitizer = run_sanitizer([files[sc.id] or sc for sc in stored], agent)
    out = []
    for sc in stored:
        current = files[sc.id]
        if current is not None and _snapshot(current, sanitizer).model_dump() == sc.model_dump():
            out.append(current.with_source(sc.source))
            continue
        if _has_redactions(sc):
            raise ConfigError(f"scenario {sc.id!r}: its stored copy had secret values redacted and "
                              f"{sc.source or 'its file'} no longer says the same; restore the file and export the "
                              "same secrets, then resume (or start a new run)")
        out.append(_restored(sc))
    return out


def _restored(sc: Scenario) -> Scenario:
    if not sc.setup.env:
        return sc
    written: dict[str, str] = {}
    current = _file_version(sc)
    if current is not None:  # values written in the scenario file itself
        written = current.setup.env
    env, missing = restore_env(sc.setup.env, {**written, **os.environ})
    if missing:
        raise ConfigError(f"scenario {sc.id!r}: setup.env {', '.join(missing)} was not stored (it looks like a "
                          "secret); export it, then resume")
    return sc.model_copy(update={"setup": sc.setup.model_copy(update={"env": env})}).with_source(sc.source)


def scenarios_from(suite: Sequence[Scenario] | str | Path | Sequence[str | Path]) -> tuple[list[Scenario], list[str]]:
    if isinstance(suite, str | Path):
        return load_suite(suite), [str(suite)]
    items = list(suite)
    scenarios = [s for s in items if isinstance(s, Scenario)]
    paths = [s for s in items if not isinstance(s, Scenario)]
    if scenarios and paths:
        raise ConfigError("a suite is either Scenario objects or paths to scenario files, not both; "
                          "load the paths with costar.load_suite and pass one list of scenarios")
    if scenarios:
        return scenarios, [str(s.source) for s in scenarios if s.source]
    return load_suite(paths), [str(p) for p in paths]


SuiteArg = Sequence[Scenario] | str | Path | Sequence[str | Path] | None
AgentArg = Agent | dict[str, Any] | str | None


def run_suite(suite: SuiteArg, agent: AgentArg, *, store: Store | str | Path | None = None,
              selection: Selection | None = None,
              options: HarnessOptions | None = None, resume: str | None = None,
              registry: JudgeRegistry | None = None, extra_judges: Sequence[Judge] = (),
              events: RunEvents | None = None, description: str = "", run_tags: Sequence[str] = (),
              origin: str = "api") -> RunOutcome:
    """Run scenarios × trials against the agent, store the traces, score them, summarise.

    The run records the branch and commit it is of and ``run_tags``, so ``branch:NAME`` and ``tag:NAME``
    name it later (``costar compare branch:main latest``), and ``origin`` (``Run.origin``: ``cli``,
    ``api``, ``pytest``, ``refine``...): ``costar runs`` shows it, and ``latest`` skips refinement's runs."""
    return run_sync(lambda: arun_suite(suite, agent, store=store, selection=selection, options=options, resume=resume,
                                  registry=registry, extra_judges=extra_judges, events=events,
                                  description=description, run_tags=run_tags, origin=origin))


async def arun_suite(suite: SuiteArg, agent: AgentArg, *, store: Store | str | Path | None = None,
                     selection: Selection | None = None, options: HarnessOptions | None = None,
                     resume: str | None = None, registry: JudgeRegistry | None = None,
                     extra_judges: Sequence[Judge] = (), events: RunEvents | None = None,
                     description: str = "", run_tags: Sequence[str] = (), origin: str = "api") -> RunOutcome:
    """:func:`run_suite` for async code (an event loop already running): the same arguments and result."""
    options = options or HarnessOptions()
    events = events or RunEvents()
    selection = selection or Selection()
    if resume:
        st = open_store(store)
        run = st.get_run(resume)
    else:  # everything that can be checked without the store is checked before it is opened
        run, scenarios, agent_obj = _new_run(suite, agent, selection, options, description, run_tags, origin)
        st = open_store(store)
    # One process runs a run at a time: a second resumer is refused here, before it changes anything.
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    lease = hold_run(st, run.run_id, on_lost=lambda: loop.call_soon_threadsafe(task.cancel) if task else None)
    try:
        if lease.replaced and events.on_warning is not None:
            events.on_warning(f"took over run {run.run_id}: {lease.replaced}")
        if resume:
            agent_obj = agent if isinstance(agent, Agent) else make_agent(agent or _restored_spec(run.agent_spec))
            scenarios = _restored_scenarios(st.load_scenarios(run.run_id), agent_obj)
            stored = run.options
            options = HarnessOptions(concurrency=options.concurrency, trials=stored.get("trials"),
                                     timeout=stored.get("timeout"), keep_workspaces=options.keep_workspaces,
                                     workspace_root=options.workspace_root,
                                     drop_secret_binaries=options.drop_secret_binaries, executor=options.executor,
                                     prices=options.prices)
            run.status = "running"
            run.error = None
            st.update_run(run)
        else:
            st.create_run(run)
            sanitizer = run_sanitizer(scenarios, agent_obj)
            st.save_scenarios(run.run_id, [_snapshot(sc, sanitizer) for sc in scenarios])
        return await _leased_run(st, run, scenarios, agent_obj, options, registry, extra_judges, events, lease,
                                 resumed=bool(resume))
    except asyncio.CancelledError:
        if lease.lost.is_set():  # another process took the run over: it is not ours to mark
            if task is not None:
                task.uncancel()  # the cancellation was ours, and is answered by this error
            raise LeaseLostError(run.run_id, lease.taken_by()) from None
        raise
    finally:
        lease.release()


def _new_run(suite: SuiteArg, agent: AgentArg, selection: Selection, options: HarnessOptions, description: str,
             run_tags: Sequence[str], origin: str) -> tuple[Run, list[Scenario], Agent]:
    """A new run's record, its scenarios and its agent; ConfigError when any is missing."""
    if suite is None:
        raise ConfigError("no scenarios given: pass a suite path or set 'suite' in costar.yaml")
    if agent is None:
        raise ConfigError("no agent given: pass --agent or set 'agent' in costar.yaml")
    all_scenarios, suite_paths = scenarios_from(suite)
    scenarios = selection.apply(all_scenarios)
    if not scenarios:
        raise ConfigError(f"no scenarios selected (of {len(all_scenarios)}); check --id/--tag/--split")
    agent_obj = agent if isinstance(agent, Agent) else make_agent(agent)
    executor = make_executor(options.executor)  # a mistake in its options fails before the run is recorded
    run = Run(agent=agent_obj.info, agent_spec=redacted_spec(agent_obj.spec()), suite=suite_paths,
              selection=selection.as_dict(), options={"trials": options.trials, "timeout": options.timeout,
                                                      "concurrency": options.concurrency,
                                                      "executor": executor.describe()},
              project_dir=str(Path.cwd()), description=description,
              metadata={"vcs": vcs_info(_agent_dir(agent_obj)), "tags": list(dict.fromkeys(run_tags)),
                        "origin": origin})
    return run, scenarios, agent_obj


async def _leased_run(st: Store, run: Run, scenarios: list[Scenario], agent_obj: Agent, options: HarnessOptions,
                      registry: JudgeRegistry | None, extra_judges: Sequence[Judge], events: RunEvents,
                      lease: RunLease, *, resumed: bool) -> RunOutcome:
    # Validate every judge before the first trial, so a typo fails fast rather than after the run.
    assessor = Assessor(st, registry, extra_judges=extra_judges)
    for sc in scenarios:
        assessor.judges_for(sc)
    warnings = [] if any(j.uses_criteria for j in extra_judges) else assessor.registry.unapplied_criteria(scenarios)
    for warning in warnings:
        if events.on_warning is not None:
            events.on_warning(warning)

    async def on_stored(batch: list[tuple[Trace, Scenario]]) -> None:
        for trace, verdicts in await assessor.assess_new_traces(batch):
            if events.on_trial is not None:
                events.on_trial(trace, verdicts)

    if events.on_plan is not None:
        done = st.finished_trials(run.run_id) if resumed else set()
        events.on_plan({sc.id: sum(1 for i in range(options.trials or sc.trials) if (sc.id, i) not in done)
                        for sc in scenarios})
    harness = Harness(agent_obj, st, options)
    try:
        hres = await harness.run(scenarios, run, on_stored=on_stored, on_start=events.on_start)
        # Traces written by an earlier, killed attempt may lack verdicts: score whatever is missing.
        stats = await assessor.assess_run(run.run_id, scenarios={sc.id: sc for sc in scenarios})
    except (asyncio.CancelledError, KeyboardInterrupt):
        if not lease.lost.is_set():
            run.status = "interrupted"
            st.update_run(run)
        raise
    except Exception as exc:
        _mark_failed(st, run, exc)
        raise
    run.status = "finished"
    run.finished_at = time.time()
    st.update_run(run)
    # Reports show the scenarios as stored with the run (secret values redacted), like the traces.
    summary = summarize_run(st, run.run_id, {sc.id: sc for sc in st.load_scenarios(run.run_id)})
    return RunOutcome(run=run, summary=summary, harness=hres, assess=stats, store=st, warnings=warnings)


def _mark_failed(st: Store, run: Run, exc: BaseException) -> None:
    """Record why the run stopped, so 'costar runs' and reports say it instead of "running"."""
    run.status = "failed"
    run.error = " ".join(str(getattr(exc, "summary", None) or exc).split())[:1000] or type(exc).__name__
    try:
        st.update_run(run)
    except Exception as again:  # the store itself is what failed: the original error says more
        if isinstance(exc, CostarError):
            raise CostarError(f"{exc} (the run could not be marked failed either: {again})") from again
        raise


def assess_run(run_id: str, *, store: Store | str | Path | None = None, force: bool = False,
               suite: str | Path | Sequence[str | Path] | None = None,
               registry: JudgeRegistry | None = None, extra_judges: Sequence[Judge] = (),
               on_progress: Callable[[int, int], None] | None = None, executor: Any = None,
               requests_per_minute: float | None = None, budget_usd: float | None = None) -> RunOutcome:
    """Re-score a stored run without running the agent: only new or changed judges run.

    ``suite`` supplies (or replaces) the scenario definitions, e.g. for imported traces; they
    are kept with the run for later re-scoring. ``executor`` ``"ray[:ADDRESS]"`` runs the judges on a
    Ray cluster. ``requests_per_minute`` paces each model the judges call (unless a judge's model sets
    its own) and ``budget_usd`` caps what their model calls cost together; with Ray both hold for the
    whole cluster (one limiter), else for this process."""
    st = open_store(store)
    run = st.get_run(run_id)
    if suite is not None:
        present = {k[1] for k in st.trace_keys(run.run_id)}
        chosen = [sc for sc in load_suite(suite) if sc.id in present]
        if not chosen:
            raise ConfigError(f"none of the scenarios in {suite} match this run's traces "
                              f"(scenario ids: {', '.join(sorted(p for p in present if p)[:5])}…)")
        st.save_scenarios(run.run_id, chosen)
    problems: list[str] = []
    scenarios = current_scenarios(st, run.run_id, problems)
    chosen_executor = make_executor(executor)
    if isinstance(chosen_executor, LocalExecutor):
        stats = _assess_here(st, run.run_id, scenarios, registry, extra_judges, force, on_progress,
                             requests_per_minute, budget_usd)
    else:
        if not isinstance(chosen_executor, RayExecutor):
            raise ConfigError(f"the {chosen_executor.name} executor runs trials but cannot score traces; "
                              "use 'local' or 'ray' for costar assess")
        judging = RayJudging(chosen_executor, st, requests_per_minute=requests_per_minute, budget_usd=budget_usd)
        assessor = Assessor(st, registry, extra_judges=extra_judges, remote=judging)

        async def scored() -> AssessStats:
            await judging.open()
            try:
                return await assessor.assess_run(run.run_id, force=force, scenarios=scenarios,
                                                 on_progress=on_progress)
            finally:
                await judging.close()

        stats = run_sync(scored)
    stats.warnings += problems
    return RunOutcome(run=run, summary=summarize_run(st, run.run_id, scenarios), assess=stats, store=st)


class _DefaultRate:
    """This process's model limits, with a pace for every model that sets none of its own (set once per
    model, so the clients of many judges share one pace; taken off again by :meth:`clear`)."""

    def __init__(self, requests_per_minute: float) -> None:
        self.requests_per_minute = requests_per_minute
        self.paced: list[ModelLimits] = []

    def limits_for(self, endpoint_key: str, *, max_concurrency: int | None, requests_per_minute: float | None,
                   burst: int | None) -> Limits:
        limits = process_limits(endpoint_key, max_concurrency=max_concurrency,
                                requests_per_minute=requests_per_minute, burst=burst)
        if limits.rate is None:
            limits.rate = RateLimiter(self.requests_per_minute)
            self.paced.append(limits)
        return limits

    def clear(self) -> None:
        for limits in self.paced:
            limits.rate = None


def _assess_here(st: Store, run_id: str, scenarios: dict[str, Scenario], registry: JudgeRegistry | None,
                 extra_judges: Sequence[Judge], force: bool, on_progress: Callable[[int, int], None] | None,
                 requests_per_minute: float | None, budget_usd: float | None) -> AssessStats:
    pace = _DefaultRate(requests_per_minute) if requests_per_minute is not None else None
    if pace is not None:
        set_limits_backend(pace)
    if budget_usd is not None:
        set_budget(budget_usd)
    try:
        assessor = Assessor(st, registry, extra_judges=extra_judges)
        return run_sync(lambda: assessor.assess_run(run_id, force=force, scenarios=scenarios, on_progress=on_progress))
    finally:
        if pace is not None:
            set_limits_backend(None)
            pace.clear()
        if budget_usd is not None:
            set_budget(None)
