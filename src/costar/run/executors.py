"""Executors: where a run's trials run. The harness plans the trials; an executor places each one and
hands back its trace; the harness's batch writer stores it, once per (run, scenario, trial).

Executors are the ``costar.executors`` plugin group. Built-ins: ``local`` (this process, the default)
and ``ray`` (tasks on a Ray cluster, :mod:`costar.run.ray_executor`). An executor is named by a string
(``"ray"``, ``"ray:ADDRESS"``: the text after the first colon is its ``address``) or a mapping
(``{"type": "ray", "address": …, …}``, e.g. ``executor:`` in costar.yaml).
"""

from __future__ import annotations

import shutil
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from costar.errors import ConfigError
from costar.plugins import EXECUTORS, PluginGroup
from costar.run.agents import RunContext
from costar.run.trial import TrialJob, TrialRunner
from costar.scenario import Scenario
from costar.store.base import Run, Store
from costar.trace.model import Trace

__all__ = ["EXECUTOR_TYPES", "Executor", "ExecutorFactory", "LocalExecutor", "TrialPlan", "executor_spec",
           "make_executor"]


@dataclass
class TrialPlan:
    """What an executor is given when a run starts."""

    runner: TrialRunner
    """Runs one trial (locally, or rebuilt on a worker from the agent's spec)."""
    run: Run
    """The run the trials belong to."""
    scenarios: list[Scenario]
    """Every scenario with a trial to run."""
    store: Store
    """The run's store (the harness's writer stores the traces; an executor may put blobs in it)."""
    root: Path
    """Where workspaces go on this machine."""
    concurrency: int
    """Trials at once the user asked for."""


class Executor(ABC):
    """Places trials. :meth:`open` once per run, :meth:`run_trial` per trial (at most :meth:`open`'s
    answer at once), :meth:`close` at the end, also after a failure or an interruption."""

    name: str = ""
    """The executor's name as users write it (``local``, ``ray``)."""

    @property
    def abandoned(self) -> int:
        """In-process agent calls that timed out and still run in a thread of this process."""
        return 0

    @abstractmethod
    async def open(self, plan: TrialPlan) -> int:
        """Get ready to run the plan's trials; returns how many may run at once."""

    @abstractmethod
    async def run_trial(self, job: TrialJob) -> Trace:
        """Run one trial and return its trace, not yet stored (its blobs are in the store already)."""

    @abstractmethod
    async def close(self) -> None:
        """Release what :meth:`open` took; trials still running have been cancelled."""

    def describe(self) -> str:
        """One line for the run record and messages."""
        return self.name


class LocalExecutor(Executor):
    """Every trial in this process, ``concurrency`` at once (command agents in their own process groups)."""

    name = "local"

    def __init__(self) -> None:
        self._plan: TrialPlan | None = None
        self._ctx: RunContext | None = None

    @property
    def abandoned(self) -> int:
        return self._ctx.abandoned if self._ctx is not None else 0

    async def open(self, plan: TrialPlan) -> int:
        self._plan = plan
        self._ctx = RunContext(plan.concurrency)
        return max(1, plan.concurrency)

    async def run_trial(self, job: TrialJob) -> Trace:
        assert self._plan is not None, "open() first"
        assert self._ctx is not None, "open() first"
        plan = self._plan
        return await plan.runner.run_trial(job, plan.run, self._ctx, plan.root)

    async def close(self) -> None:
        if self._ctx is not None:
            self._ctx.close()
        plan = self._plan
        if plan is not None and not plan.runner.options.keep_workspaces:
            shutil.rmtree(plan.root, ignore_errors=True)


ExecutorFactory = Callable[[dict[str, Any]], Executor]
"""What the ``costar.executors`` group holds: a function from the executor's mapping to an executor."""


def local_executor(spec: dict[str, Any]) -> Executor:
    """The ``local`` executor (it takes no options)."""
    extra = sorted(k for k in spec if k != "type")
    if extra:
        raise ConfigError(f"executor.{extra[0]}: the local executor takes no options; remove it")
    return LocalExecutor()


def _not_a_factory(obj: Any) -> str | None:
    return None if callable(obj) else "it must be a function f(spec: dict) -> Executor"


EXECUTOR_TYPES: PluginGroup[ExecutorFactory] = PluginGroup(EXECUTORS, "executor", accept=_not_a_factory)
"""Executors by name: the ``costar.executors`` plugin group, built-ins included."""


def executor_spec(value: Any) -> dict[str, Any]:
    """The mapping an executor is made from: ``"ray:ADDRESS"`` → ``{"type": "ray", "address": ADDRESS}``."""
    if value is None:
        return {"type": "local"}
    if isinstance(value, str):
        kind, _, address = value.strip().partition(":")
        if not kind:
            raise ConfigError(f"executor {value!r} names no executor; write 'local', 'ray' or 'ray:ADDRESS'")
        return {"type": kind, **({"address": address} if address else {})}
    if isinstance(value, dict):
        if not isinstance(value.get("type"), str):
            raise ConfigError("executor: a mapping needs a 'type' (local, ray, or an executor plugin's name)")
        return dict(value)
    raise ConfigError(f"executor: expected a name like 'ray:ADDRESS' or a mapping with 'type', got {value!r}")


def make_executor(value: Any) -> Executor:
    """The executor ``value`` names (see :func:`executor_spec`); an :class:`Executor` is used as it is."""
    if isinstance(value, Executor):
        return value
    spec = executor_spec(value)
    factory = EXECUTOR_TYPES.find(spec["type"])
    if factory is None:
        raise ConfigError(f"unknown executor {spec['type']!r}; use one of {', '.join(EXECUTOR_TYPES.names())} "
                          "(or install a plugin that provides it)")
    return factory(spec)
