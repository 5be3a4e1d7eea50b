"""The harness: runs scenarios × trials against an agent and records each trial as a trace."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from costar.capture.sdk import prices_set_to
from costar.errors import CostarError
from costar.run.agents import Agent
from costar.run.executors import TrialPlan, make_executor
from costar.run.trial import HarnessOptions, TrialJob, TrialRunner
from costar.scenario import Scenario
from costar.store.base import Run, Store
from costar.trace.model import Trace
from costar.trace.recorder import unrecorded
from costar.trace.sanitize import Sanitizer, secret_env_values

__all__ = ["BatchWriter", "Harness", "HarnessOptions", "HarnessResult", "OnStored", "TraceWriterError", "TrialJob",
           "plan_trials", "run_sanitizer"]


class TraceWriterError(CostarError):
    """Finished trials could not be stored (or scored as they were stored): the run stops.

    Running the remaining trials would only lose their traces too, so every trial still running
    is cancelled (its agent killed); what was stored stays, and a resume runs the rest."""

    def __init__(self, cause: BaseException, run_id: str | None = None) -> None:
        self.cause = cause
        text = " ".join(str(cause).split())[:500]
        text = f"{type(cause).__name__}: {text}" if not isinstance(cause, CostarError) else text
        resume = f"costar run --resume {run_id}" if run_id else "costar run --resume"
        self.summary = f"storing traces failed: {text}"
        super().__init__(f"storing the traces failed, so the run stopped ({text}); the finished trials are "
                         f"kept: fix the cause, then run the rest with '{resume}'")


@dataclass
class HarnessResult:
    """What :meth:`Harness.run` did."""

    trace_ids: list[str] = field(default_factory=list)
    """The traces it recorded, in the order the trials finished."""
    skipped: int = 0
    """Trials already finished in a resumed run, so not run again."""
    interrupted: bool = False
    """Whether the run was cancelled (Ctrl-C) before every trial finished."""
    abandoned: int = 0
    """In-process agent calls that timed out and are still running in a thread (they cannot be killed)."""


OnStored = Callable[[list[tuple[Trace, Scenario]]], Awaitable[None]]
"""Called with each batch of traces once it is stored (as stored: redacted and bounded)."""


class BatchWriter:
    """Stores finished trials in batches (one transaction per batch, not per trial), then hands
    each stored batch to ``on_stored``. A trial counts as finished once its batch is committed."""

    def __init__(self, store: Store, sanitizer: Sanitizer, on_stored: OnStored | None, *,
                 max_batch: int = 64, max_wait_s: float = 0.02, run_id: str | None = None) -> None:
        self.store = store
        self.run_id = run_id
        self.sanitizer = sanitizer
        self.on_stored = on_stored
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self._queue: asyncio.Queue[tuple[Trace, Scenario] | None] = asyncio.Queue()
        self._task = asyncio.ensure_future(self._loop())

    @property
    def task(self) -> asyncio.Future[None]:
        """Done (with the exception) as soon as the writer fails."""
        return self._task

    def failure(self) -> BaseException | None:
        """Why the writer stopped, once it has failed; None while it runs (or was cancelled)."""
        if not self._task.done() or self._task.cancelled():
            return None
        return self._task.exception()

    async def put(self, trace: Trace, scenario: Scenario) -> None:
        """Queue a finished trial; raises TraceWriterError if the writer has failed (a full disk)."""
        failure = self.failure()
        if failure is not None:
            raise TraceWriterError(failure, self.run_id)
        await self._queue.put((trace, scenario))

    async def close(self) -> None:
        """Store what is queued, then stop; raises TraceWriterError if storing failed."""
        if self.failure() is None:
            await self._queue.put(None)
        try:
            await self._task
        except TraceWriterError:
            raise
        except Exception as exc:
            raise TraceWriterError(exc, self.run_id) from exc

    def cancel(self) -> None:
        """Stop without flushing (an interrupted run: what is not committed is re-run on resume)."""
        self._task.cancel()

    async def _loop(self) -> None:
        closing = False
        while not closing:
            first = await self._queue.get()
            if first is None:
                return
            batch = [first]
            deadline = asyncio.get_running_loop().time() + self.max_wait_s
            while len(batch) < self.max_batch:
                timeout = deadline - asyncio.get_running_loop().time()
                try:
                    item = await asyncio.wait_for(self._queue.get(), max(0.0, timeout))
                except TimeoutError:
                    break
                if item is None:
                    closing = True
                    break
                batch.append(item)
            stored = await asyncio.to_thread(self.store.write_traces, [t for t, _ in batch],
                                             sanitizer=self.sanitizer)
            if self.on_stored is not None:
                # Judges see the traces exactly as stored (redacted, bounded): their rationales and
                # prompts must not leak what the store hides, and re-scoring sees the same input.
                await self.on_stored([(t, sc) for t, (_, sc) in zip(stored, batch, strict=True)])


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


def run_sanitizer(scenarios: list[Scenario], agent: Agent, env: dict[str, str] | None = None) -> Sanitizer:
    """The sanitizer of a run: literal values of credential-like variables the agent can see (the
    environment, the scenarios' setup.env, the agent's env) are redacted, with the usual patterns."""
    secrets = secret_env_values(dict(os.environ) if env is None else env)
    for sc in scenarios:
        secrets += secret_env_values(sc.setup.env)
    secrets += secret_env_values(agent.spec().get("env") or {})
    return Sanitizer(secrets=secrets)


class Harness:
    """Runs scenarios × trials against an agent and records each trial as a trace in the store.

    Each trial gets a fresh workspace (the scenario's setup files and commands), its own recording
    (the agent's spans, captured model calls) and a timeout; a crash or timeout of the agent is
    recorded in its trace and the suite goes on. The harness plans the trials; its executor
    (``HarnessOptions.executor``: this process by default, or a Ray cluster) places each one; finished
    trials are stored in batches, once per (run, scenario, trial); a resumed run skips the trials
    already stored. Most code calls :func:`costar.api.run_suite`, which adds judging and the summary.
    """

    def __init__(self, agent: Agent, store: Store, options: HarnessOptions | None = None) -> None:
        self.agent = agent
        """The agent under test: each trial calls it once on a scenario's prepared workspace."""
        self.store = store
        """Where traces, runs and blobs are written."""
        self.options = options or HarnessOptions()
        """Trials, concurrency, timeouts and the executor (this process or a Ray cluster)."""

    async def run(self, scenarios: list[Scenario], run: Run, *, on_stored: OnStored | None = None,
                  on_start: Callable[[int, int], None] | None = None) -> HarnessResult:
        """Run every trial of ``scenarios`` not yet stored for ``run``; ``on_start`` gets (trials to
        run, trials skipped) once planned, ``on_stored`` each stored batch (e.g. to judge it at once).
        Raises CostarError for a problem of coSTAR's own (an unwritable store); agent failures are
        recorded, not raised."""
        # An in-process agent's SDK calls are captured (and priced) in this process.
        with prices_set_to(self.options.prices):
            return await self._run(scenarios, run, on_stored=on_stored, on_start=on_start)

    async def _run(self, scenarios: list[Scenario], run: Run, *, on_stored: OnStored | None,
                   on_start: Callable[[int, int], None] | None) -> HarnessResult:
        executor = make_executor(self.options.executor)
        # Literal values of credential-like env vars the agent can see are redacted from its traces.
        base_env = dict(os.environ)
        sanitizer = run_sanitizer(scenarios, self.agent, base_env)
        finished = self.store.finished_trials(run.run_id)
        jobs, skipped = plan_trials(scenarios, self.options, finished)
        if on_start is not None:
            on_start(len(jobs), skipped)
        result = HarnessResult(skipped=skipped)
        root = self.options.workspace_root or (self.store.root / "workspaces" / run.run_id)
        runner = TrialRunner(self.agent, self.store, self.options, sanitizer, base_env)
        # The writer's task stores traces and runs the judges on them while later trials still
        # record: nothing it does belongs to a trace.
        with unrecorded():
            writer = BatchWriter(self.store, sanitizer, on_stored, run_id=run.run_id)
        tasks: list[asyncio.Future[None]] = []
        try:
            # Only the scenarios with a trial to run: a resumed run's finished ones need no setup bundle
            # or resource check on a cluster.
            planned = list({j.scenario.id: j.scenario for j in jobs}.values())
            slots = await executor.open(TrialPlan(runner=runner, run=run, scenarios=planned, store=self.store,
                                                  root=root, concurrency=self.options.concurrency))
            sem = asyncio.Semaphore(max(1, slots))

            async def one(job: TrialJob) -> None:
                async with sem:
                    trace = await executor.run_trial(job)
                result.trace_ids.append(trace.trace_id)
                await writer.put(trace, job.scenario)

            tasks = [asyncio.ensure_future(one(j)) for j in jobs]
            trials = asyncio.gather(*tasks, return_exceptions=True)
            # A failed writer stops the run at once: the trials still running are cancelled (their
            # agents killed) instead of running on only to lose their traces as well.
            first: set[asyncio.Future[Any]] = {trials, writer.task}
            await asyncio.wait(first, return_when=asyncio.FIRST_COMPLETED)
            if not trials.done():
                for t in tasks:
                    t.cancel()
            done = await trials
            await writer.close()  # raises TraceWriterError when the writer failed
            for d in done:
                if isinstance(d, BaseException) and not isinstance(d, asyncio.CancelledError):
                    raise d
        except asyncio.CancelledError:
            result.interrupted = True
            writer.cancel()
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        except BaseException:
            writer.cancel()
            raise
        finally:
            result.abandoned = executor.abandoned
            await executor.close()
        return result
