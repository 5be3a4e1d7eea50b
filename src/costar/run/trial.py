"""One trial: a fresh workspace, the agent run once under its timeout, the result made a trace.

:class:`TrialRunner` is what every executor runs, wherever it runs: in the harness's own process (the
local executor) or on a Ray worker (``--executor ray``). Where the workspace's files go is a
:class:`BlobSink`: the store itself locally, memory on a worker that sends its trial back to the driver.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from costar.capture.sdk import PRICES_ENV
from costar.errors import ConfigError, StoreError
from costar.pricing import PriceTable
from costar.run.agents import Agent, AgentResult, AgentTask, RunContext, failed_with
from costar.run.workspace import (
    ArtifactLimits,
    BlobSink,
    PlaceFiles,
    SecretPolicy,
    SetupError,
    Workspace,
    collect_artifacts,
    prepare_workspace,
)
from costar.scenario import Scenario
from costar.store.base import Run
from costar.trace.finalize import finalize_spans
from costar.trace.model import Artifact, StatusCode, Trace, TraceStatus, compute_totals
from costar.trace.recorder import Recording
from costar.trace.sanitize import Sanitizer
from costar.trace.tools import tool_definitions


@dataclass
class HarnessOptions:
    """How the harness runs a suite; what a scenario says applies unless an option here overrides it."""

    concurrency: int = 4
    """How many trials run at once (with ``--executor ray``: at least twice the cluster's CPUs are in flight)."""
    trials: int | None = None
    """Trials per scenario for every scenario (None: each scenario's own ``trials``)."""
    timeout: float | None = None
    """Seconds per trial for every scenario (None: each scenario's own ``timeout``)."""
    keep_workspaces: bool = False
    """Keep each trial's workspace folder after the run (for debugging), on the machine that ran it;
    its path goes in the trace's metadata."""
    workspace_root: Path | None = None
    """Where workspaces are made (None: ``<store>/workspaces/<run id>``; a temporary folder on a Ray worker)."""
    drop_secret_binaries: bool = False
    """Binary workspace files holding a secret value are not stored at all (by default they are
    stored, flagged ``holds_secret``)."""
    executor: Any = None
    """Where trials run: None or ``"local"`` (this process), ``"ray"``, ``"ray:ADDRESS"``, a mapping
    ``{"type": "ray", "address": …}`` or an :class:`~costar.run.executors.Executor` (docs/SCALING.md)."""
    prices: PriceTable | None = None
    """The model prices of the run (the project's ``prices:``; None: the built-in table): they price the
    agent's captured SDK calls, in this process and in a command agent's, and the LLM spans it sends
    over OpenTelemetry without a cost."""


@dataclass
class TrialJob:
    """One trial to run: a scenario and the trial's number."""

    scenario: Scenario
    """The scenario to run."""
    trial: int
    """Which trial, from 0."""


def safe_name(text: str) -> str:
    """``text`` usable as a file name (for workspace folders)."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)[:60]


PRICES_FILE = "~prices.json"
"""The run's price table for command agents, in the workspace root (no scenario's folder has a ``~``)."""


def _is_empty(folder: Path) -> bool:
    with os.scandir(folder) as entries:
        return next(entries, None) is None


class TrialRunner:
    """Runs single trials of one agent: the part of the harness an executor places somewhere."""

    def __init__(self, agent: Agent, blobs: BlobSink, options: HarnessOptions, sanitizer: Sanitizer,
                 base_env: dict[str, str], *, artifact_limits: ArtifactLimits | None = None) -> None:
        self.agent = agent
        """The agent under test."""
        self.blobs = blobs
        """Where the workspace's files go."""
        self.options = options
        """The run's harness options (timeout, keeping workspaces, secret binaries)."""
        self.sanitizer = sanitizer
        """Redacts secret values from the workspace's text files."""
        self.base_env = base_env
        """The environment the agent starts from (before the scenario's and the trial's own)."""
        self.artifact_limits = artifact_limits
        """Bounds on the workspace files kept (default: :class:`ArtifactLimits`)."""
        # Prices LLM spans that arrive over OpenTelemetry without a cost.
        self._prices = options.prices or PriceTable()
        self._prices_files: set[Path] = set()

    def _harvest(self, ws: Workspace) -> tuple[list[Artifact], list[str]]:
        """Store the workspace's files as artifacts, then remove it (one thread hop for both)."""
        try:
            return collect_artifacts(ws, self.blobs, self.artifact_limits, secrets=SecretPolicy(
                self.sanitizer, drop_binaries=self.options.drop_secret_binaries))
        finally:
            if not self.options.keep_workspaces:
                ws.remove()

    def _env(self, job: TrialJob, run: Run, workspace: Path, root: Path) -> dict[str, str]:
        env = dict(self.base_env)
        env.update(job.scenario.setup.env)
        env.update({
            "COSTAR_RUN_ID": run.run_id,
            "COSTAR_SCENARIO_ID": job.scenario.id,
            "COSTAR_TRIAL": str(job.trial),
            "COSTAR_WORKSPACE": str(workspace),
        })
        env.pop(PRICES_ENV, None)  # an outer harness's prices are not this run's
        if self.options.prices is not None and not self.options.prices.is_builtin and not self.agent.in_process:
            env[PRICES_ENV] = str(self._prices_file(root))
        return env

    def _prices_file(self, root: Path) -> Path:
        """The run's prices as a JSON price file under ``root``, written once (atomically: trials of
        other processes may read it meanwhile), for the capture in a command agent's process."""
        path = root / PRICES_FILE
        if path not in self._prices_files:
            root.mkdir(parents=True, exist_ok=True)
            part = path.with_name(f"{PRICES_FILE}.{os.getpid()}.part")
            part.write_text(json.dumps({"models": self._prices.to_mapping()}), encoding="utf-8")
            os.replace(part, path)
            self._prices_files.add(path)
        return path

    async def run_trial(self, job: TrialJob, run: Run, ctx: RunContext, root: Path,
                        place: PlaceFiles | None = None) -> Trace:
        """Run one trial in a fresh workspace under ``root`` and return its finalised trace (not stored).
        ``place(scenario, root, name)`` makes the workspace folder with the setup files in it (default:
        copied from the project)."""
        sc = job.scenario
        timeout = self.options.timeout or sc.timeout
        started_ns = time.time_ns()
        t0 = time.perf_counter()
        rec = Recording(self.agent.info.name, attributes={
            "gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": self.agent.info.name,
            "costar.scenario.id": sc.id, "costar.trial": job.trial, "input.value": sc.turns[0]},
            # Threads without context may fall back to this trial only when the agent's code runs here.
            fallback=self.agent.in_process)
        ws: Workspace | None = None
        outcome = AgentResult()
        notes: list[str] = []
        artifacts: list[Artifact] = []
        with rec:
            try:
                ws_root = root / safe_name(sc.id)
                ws = await prepare_workspace(sc, ws_root, f"t{job.trial}", {**self.base_env, **sc.setup.env},
                                             place=place)
                env = self._env(job, run, ws.path, root)
                task = AgentTask(scenario=sc, trial=job.trial, run_id=run.run_id, workspace=ws.path,
                                 env=env, timeout=timeout)
                # A command agent enforces its own timeout (and kills its process group): this is
                # only the safety net for it. An in-process agent has nothing else.
                limit = timeout if self.agent.kind == "python" else timeout + 5.0
                async with asyncio.timeout(limit):  # cheaper than wait_for: no extra task
                    outcome = await self.agent.run(task, rec, ctx)
            except TimeoutError:
                if self.agent.kind == "python":
                    ctx.abandoned += 1
                outcome = AgentResult(status=TraceStatus.TIMEOUT, error=(
                    f"timed out after {timeout:g}s" + (
                        "; in-process Python agents cannot be killed, run it as a command agent "
                        "to have its process group killed" if self.agent.kind == "python" else "")))
            except SetupError as exc:
                outcome = AgentResult(status=TraceStatus.ERROR, error=f"setup failed: {exc}")
                rec.root.add_event("setup failed", {"command": exc.command, "stdout": exc.stdout,
                                                    "stderr": exc.stderr})
            except (StoreError, ConfigError):
                raise  # coSTAR's own store or configuration: no trial can run, so the run stops
            except asyncio.CancelledError as exc:
                current = asyncio.current_task()
                if current is None or current.cancelling():
                    raise  # the run itself is being cancelled
                # The agent's own code leaked a cancellation (an inner task it cancelled): its failure.
                outcome = failed_with(exc, rec)
            except Exception as exc:
                # The agent under test crashed or raised a model error of its own: record it, keep
                # running the suite. (Its sys.exit is turned into a result where it runs: a
                # KeyboardInterrupt here is the person's Ctrl-C, which stops the run.)
                outcome = failed_with(exc, rec)
            if outcome.status != TraceStatus.OK and rec.root.status_code != StatusCode.ERROR:
                rec.root.set_status(StatusCode.ERROR, outcome.error)
            rec.root.set_attribute("output.value", outcome.output or "")
        latency = time.perf_counter() - t0
        if ws is not None:
            try:
                if _is_empty(ws.path):  # nothing to store: skip the hop to a thread
                    artifacts, notes = [], []
                    if not self.options.keep_workspaces:
                        ws.remove()
                else:
                    artifacts, notes = await asyncio.to_thread(self._harvest, ws)
            except OSError as exc:  # the agent removed its workspace or made it unreadable
                artifacts, notes = [], [f"the workspace could not be read ({type(exc).__name__}: "
                                        f"{exc.strerror or exc}); no files stored"]
        # One span per model call, a cost on each, a TOOL span per tool run the messages prove.
        spans = finalize_spans(rec.spans(), price=self._prices.cost)
        return Trace(
            trace_id=rec.trace_id, run_id=run.run_id, scenario_id=sc.id, trial=job.trial, agent=self.agent.info,
            status=outcome.status, error=outcome.error, input=sc.prompt, output=outcome.output,
            start_ns=started_ns, end_ns=started_ns + int(latency * 1e9), totals=compute_totals(spans, latency),
            artifacts=artifacts, spans=spans, tools=tool_definitions(spans),
            metadata={**outcome.metadata, **({"artifact_notes": notes} if notes else {}),
                      **({"workspace": str(ws.path)} if ws is not None and self.options.keep_workspaces else {})},
        )
