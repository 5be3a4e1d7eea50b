"""The harness: runs scenarios × trials against an agent and records each trial as a trace."""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from costar.errors import CostarError
from costar.run.agents import Agent, AgentResult, AgentTask, RunContext
from costar.run.workspace import SetupError, Workspace, collect_artifacts, prepare_workspace
from costar.scenario import Scenario
from costar.store.base import Run, Store
from costar.trace.model import StatusCode, Trace, TraceStatus, compute_totals
from costar.trace.recorder import Recording
from costar.trace.sanitize import Sanitizer, secret_env_values


@dataclass
class HarnessOptions:
    concurrency: int = 4
    trials: int | None = None  # overrides every scenario's trial count
    timeout: float | None = None  # overrides every scenario's timeout (seconds)
    keep_workspaces: bool = False
    workspace_root: Path | None = None  # default: <store>/workspaces


@dataclass
class TrialJob:
    scenario: Scenario
    trial: int


@dataclass
class HarnessResult:
    trace_ids: list[str] = field(default_factory=list)
    skipped: int = 0  # trials already finished in a resumed run
    interrupted: bool = False


OnTrace = Callable[[Trace, Scenario], Awaitable[None]]


def plan_trials(scenarios: list[Scenario], options: HarnessOptions,
                finished: set[tuple[str, int]]) -> tuple[list[TrialJob], int]:
    """Every (scenario, trial) not yet finished, trial-major so one slow scenario does not hog the pool."""
    jobs: list[TrialJob] = []
    skipped = 0
    max_trials = max((options.trials or sc.trials for sc in scenarios), default=0)
    for trial in range(max_trials):
        for sc in scenarios:
            if trial >= (options.trials or sc.trials):
                continue
            if (sc.id, trial) in finished:
                skipped += 1
                continue
            jobs.append(TrialJob(sc, trial))
    return jobs, skipped


def _safe_name(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)[:60]


class Harness:
    def __init__(self, agent: Agent, store: Store, options: HarnessOptions | None = None) -> None:
        self.agent = agent
        self.store = store
        self.options = options or HarnessOptions()
        self._sanitizer = Sanitizer()

    async def run(self, scenarios: list[Scenario], run: Run, *, on_trace: OnTrace | None = None,
                  on_start: Callable[[int, int], None] | None = None) -> HarnessResult:
        # Literal values of credential-like env vars the agent can see are redacted from its traces.
        env_secrets = secret_env_values(dict(os.environ))
        for sc in scenarios:
            env_secrets += secret_env_values(sc.setup.env)
        env_secrets += secret_env_values(self.agent.spec().get("env") or {})
        self._sanitizer = Sanitizer(secrets=env_secrets)
        finished = self.store.finished_trials(run.run_id)
        jobs, skipped = plan_trials(scenarios, self.options, finished)
        if on_start is not None:
            on_start(len(jobs), skipped)
        result = HarnessResult(skipped=skipped)
        ctx = RunContext(self.options.concurrency)
        sem = asyncio.Semaphore(max(1, self.options.concurrency))
        root = self.options.workspace_root or (self.store.root / "workspaces" / run.run_id)

        async def one(job: TrialJob) -> None:
            async with sem:
                trace = await self.run_trial(job, run, ctx, root)
                await asyncio.to_thread(self.store.write_trace, trace)
                result.trace_ids.append(trace.trace_id)
                if on_trace is not None:
                    await on_trace(trace, job.scenario)

        try:
            tasks = [asyncio.ensure_future(one(j)) for j in jobs]
            done = await asyncio.gather(*tasks, return_exceptions=True)
            for d in done:
                if isinstance(d, BaseException) and not isinstance(d, asyncio.CancelledError):
                    raise d
        except asyncio.CancelledError:
            result.interrupted = True
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        finally:
            ctx.close()
            if not self.options.keep_workspaces:
                shutil.rmtree(root, ignore_errors=True)
        return result

    def _env(self, job: TrialJob, run: Run, workspace: Path) -> dict[str, str]:
        env = dict(os.environ)
        env.update(job.scenario.setup.env)
        env.update({
            "COSTAR_RUN_ID": run.run_id,
            "COSTAR_SCENARIO_ID": job.scenario.id,
            "COSTAR_TRIAL": str(job.trial),
            "COSTAR_WORKSPACE": str(workspace),
        })
        return env

    async def run_trial(self, job: TrialJob, run: Run, ctx: RunContext, root: Path) -> Trace:
        sc = job.scenario
        timeout = self.options.timeout or sc.timeout
        started_ns = time.time_ns()
        t0 = time.perf_counter()
        rec = Recording(self.agent.info.name, attributes={
            "gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": self.agent.info.name,
            "costar.scenario.id": sc.id, "costar.trial": job.trial, "input.value": sc.turns[0]})
        ws: Workspace | None = None
        outcome = AgentResult()
        notes: list[str] = []
        artifacts = []
        with rec:
            try:
                ws_root = root / _safe_name(sc.id)
                ws = await prepare_workspace(sc, ws_root, f"t{job.trial}", {**os.environ, **sc.setup.env})
                env = self._env(job, run, ws.path)
                task = AgentTask(scenario=sc, trial=job.trial, run_id=run.run_id, workspace=ws.path,
                                 env=env, timeout=timeout)
                outcome = await asyncio.wait_for(self.agent.run(task, rec, ctx), timeout + 5.0)
            except TimeoutError:
                outcome = AgentResult(status=TraceStatus.TIMEOUT, error=(
                    f"timed out after {timeout:g}s" + (
                        "; in-process Python agents cannot be killed, run it as a command agent "
                        "to have its process group killed" if self.agent.kind == "python" else "")))
            except SetupError as exc:
                outcome = AgentResult(status=TraceStatus.ERROR, error=f"setup failed: {exc}")
            except CostarError:
                raise
            except Exception as exc:  # the agent under test crashed: record it, keep running the suite
                outcome = AgentResult(status=TraceStatus.ERROR, error=f"{type(exc).__name__}: {exc}")
                rec.root.record_exception(exc)
            if outcome.status != TraceStatus.OK and rec.root.status_code != StatusCode.ERROR:
                rec.root.set_status(StatusCode.ERROR, outcome.error)
            rec.root.set_attribute("output.value", outcome.output or "")
        latency = time.perf_counter() - t0
        if ws is not None:
            try:
                artifacts, notes = await asyncio.to_thread(collect_artifacts, ws, self.store)
            finally:
                if not self.options.keep_workspaces:
                    await asyncio.to_thread(ws.remove)
        spans = rec.spans()
        trace = Trace(
            trace_id=rec.trace_id, run_id=run.run_id, scenario_id=sc.id, trial=job.trial, agent=self.agent.info,
            status=outcome.status, error=outcome.error, input=sc.prompt, output=outcome.output,
            start_ns=started_ns, end_ns=started_ns + int(latency * 1e9), totals=compute_totals(spans, latency),
            artifacts=artifacts, spans=spans,
            metadata={**outcome.metadata, **({"artifact_notes": notes} if notes else {}),
                      **({"workspace": str(ws.path)} if ws is not None and self.options.keep_workspaces else {})},
        )
        return self._sanitizer.trace(trace)
