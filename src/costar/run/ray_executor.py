"""The ``ray`` executor: each trial a Ray task, placed on a node with the resources its scenario asks for.

What runs where:

* **The driver** (the ``costar run`` process) plans the trials, leases the run, and is the only writer:
  each task's result — the trace and the bytes of its workspace files — comes back to it, its blobs go
  into the store (content-addressed, so writing one twice is harmless) and the trace through the
  harness's batch writer, whose unique (run, scenario, trial) key refuses a second copy. The same
  path serves both stores: the SQLite store is a folder on the driver's machine, and for the
  PostgreSQL store one writer batching 64 traces a transaction beats thousands of workers each
  committing one (see docs/SCALING.md).
* **A worker** makes the trial's workspace in its own temporary folder, starts the agent there (a
  command agent in its own process group, dying with the worker; a Python agent imported from its
  ``cwd``, which must exist on the worker), runs the OTLP receiver the agent exports to, and returns
  the trace. Setup files travel **by value**: the driver places each scenario's files once, packs
  them (at most ``max_setup_bytes``, default 64 MiB) and puts them in Ray's object store, shared
  by every trial of the scenario. The agent's own code must be on the workers already (the image, a
  shared file system, or ``runtime_env`` with a ``working_dir``).
* **A worker that dies** mid-trial (killed, out of memory, its node lost) fails the task with a system
  error, which Ray retries elsewhere up to ``max_retries`` times; only the attempt that finishes
  returns, so the trial is stored once. Exceptions inside the trial are not retried: the agent's own
  crash is recorded in its trace like anywhere else. A trial whose every attempt died is stored as an
  error trace that says so.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import io
import json
import logging
import os
import shutil
import socket
import tarfile
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from costar._util.aio import run_sync
from costar.capture.sdk import prices_set_to
from costar.errors import ConfigError, CostarError
from costar.run.agents import Agent, RunContext, make_agent
from costar.run.executors import Executor, TrialPlan
from costar.run.harness import run_sanitizer
from costar.run.trial import HarnessOptions, TrialJob, TrialRunner
from costar.run.workspace import ArtifactLimits, Workspace, place_files
from costar.scenario import Expectations, Scenario
from costar.store.base import Run, Store
from costar.trace.model import StatusCode, Trace, TraceStatus, compute_totals
from costar.trace.recorder import Recording

__all__ = ["RayExecutor", "RayExecutorConfig", "SetupBundle", "WorkerReply", "ray_executor", "worker_failure"]

MiB = 1024 * 1024


class RayExecutorConfig(BaseModel):
    """``executor: {type: ray, …}`` in costar.yaml (``--executor ray:ADDRESS`` sets ``address``)."""

    model_config = ConfigDict(extra="forbid")

    type: str = "ray"
    """Always ``ray``."""
    address: str | None = None
    """The cluster: ``HOST:PORT`` of its head (``ray start --head``), ``ray://HOST:10001`` (Ray Client) or
    ``auto``; unset: as ``ray.init()`` decides (``RAY_ADDRESS``, a cluster ``ray start`` started on this
    machine, else a Ray instance started for the run)."""
    max_retries: int = Field(default=3, ge=0, le=100)
    """How often a trial whose worker died is retried elsewhere."""
    max_setup_bytes: int = Field(default=64 * MiB, ge=0)
    """The largest setup bundle (one scenario's setup files, packed) sent to the workers."""
    max_result_bytes: int = Field(default=256 * MiB, ge=MiB)
    """The most workspace bytes one trial sends back; files beyond are left out, noted in its trace."""
    check_resources: bool = True
    """Refuse, before any trial runs, a scenario whose resources no node of the cluster has (an
    autoscaling cluster that adds such nodes on demand wants ``false``)."""
    runtime_env: dict[str, Any] = Field(default_factory=dict)
    """Ray's runtime environment for the workers (``env_vars``, ``working_dir``, ``pip`` …)."""


def ray_executor(spec: dict[str, Any]) -> Executor:
    """The ``ray`` executor (built-in of the ``costar.executors`` group)."""
    try:
        cfg = RayExecutorConfig.model_validate(spec)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        msg = "unknown option; check its spelling" if err["type"] == "extra_forbidden" else err["msg"]
        raise ConfigError(f"executor.{where}: {msg}") from None
    return RayExecutor(cfg)


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ConfigError("the ray executor needs Ray: pip install 'costar[ray]'") from None
    return ray


# --------------------------------------------------------------------------- setup files, by value


@dataclass
class SetupBundle:
    """One scenario's setup files as placed on the driver, packed to travel to the workers."""

    tar: bytes
    """The files, as an uncompressed tar archive."""
    notes: list[str] = field(default_factory=list)
    """What placing them left out (symlinks pointing out of the project)."""


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def pack_setup(scenario: Scenario, limit: int) -> SetupBundle:
    """Place ``scenario``'s setup files as a trial would (same confinement rules), then pack them."""
    with tempfile.TemporaryDirectory(prefix="costar-bundle-") as tmp:
        ws = place_files(scenario, Path(tmp), "bundle")
        size = _folder_bytes(ws.path)
        if size > limit:
            raise ConfigError(f"scenario {scenario.id!r}: its setup files are {size / MiB:.1f} MiB, more than the "
                              f"ray executor sends to workers ({limit / MiB:.1f} MiB); raise executor.max_setup_bytes "
                              "or ship the data with the workers' image (or runtime_env.working_dir)")
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for child in sorted(ws.path.iterdir()):
                tar.add(child, arcname=child.name)
        return SetupBundle(tar=buf.getvalue(), notes=list(ws.notes))


def unpack_setup(bundle: SetupBundle, scenario: Scenario, root: Path, name: str) -> Workspace:
    """A fresh workspace under ``root`` holding the bundle's files (the worker's ``place_files``)."""
    root.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=root))
    with tarfile.open(fileobj=io.BytesIO(bundle.tar), mode="r") as tar:
        tar.extractall(path, filter="data")  # no absolute paths, no escaping links, no devices
    ws = Workspace(path=path, store_inputs=scenario.setup.store_inputs, notes=list(bundle.notes))
    ws.record_setup()
    return ws


# --------------------------------------------------------------------------- the worker side


class MemoryBlobs:
    """A trial's workspace files, held in memory on the worker until its result goes back."""

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}
        """The files' bytes by sha256."""

    def put_blob(self, data: bytes) -> str:
        """Keep ``data``; returns its sha256."""
        sha = hashlib.sha256(data).hexdigest()
        self.blobs.setdefault(sha, bytes(data))
        return sha

    def put_file(self, path: Path) -> tuple[str, int]:
        """Keep the file's bytes; returns (sha256, size)."""
        data = path.read_bytes()
        return self.put_blob(data), len(data)


@dataclass
class WorkerReply:
    """What a finished trial sends back to the driver."""

    trace: Trace
    """The trial's trace, not yet stored."""
    blobs: dict[str, bytes]
    """The bytes of the trace's artifacts, by sha256."""


@dataclass
class RunOnWorkers:
    """What every trial of a run shares, put in Ray's object store once."""

    agent_spec: dict[str, Any]
    """The agent's configuration (rebuilt once per worker process)."""
    run: Run
    """The run record."""
    options: HarnessOptions
    """The harness options (timeout, keeping workspaces, secret binaries)."""
    max_result_bytes: int
    """The most workspace bytes a trial sends back."""


class _WorkerState:
    """One per worker process: the agent built once, one run context (thread pool, OTLP receiver)."""

    lock = threading.Lock()
    agents: dict[str, Agent] = {}
    ctx: RunContext | None = None

    @classmethod
    def agent(cls, spec: dict[str, Any]) -> Agent:
        key = json.dumps(spec, sort_keys=True, default=str)
        with cls.lock:
            agent = cls.agents.get(key)
            if agent is None:
                agent = cls.agents[key] = make_agent(spec)
            return agent

    @classmethod
    def context(cls) -> RunContext:
        with cls.lock:
            if cls.ctx is None:
                cls.ctx = RunContext(4)
            return cls.ctx


def run_on_worker(shared: RunOnWorkers, scenario: Scenario, trial: int, bundle: SetupBundle | None) -> WorkerReply:
    """A Ray task: one trial on this worker, its trace and workspace bytes returned to the driver."""
    agent = _WorkerState.agent(shared.agent_spec)
    base_env = dict(os.environ)
    blobs = MemoryBlobs()
    limits = ArtifactLimits(max_total_bytes=shared.max_result_bytes,
                            max_file_bytes=min(ArtifactLimits.max_file_bytes, shared.max_result_bytes))
    runner = TrialRunner(agent, blobs, shared.options, run_sanitizer([scenario], agent, base_env), base_env,
                         artifact_limits=limits)
    # A folder of its own: other worker processes on this node run trials of the same run meanwhile.
    root = Path(tempfile.mkdtemp(prefix=f"costar-{shared.run.run_id[:12]}-"))

    def place(sc: Scenario, where: Path, name: str) -> Workspace:
        if bundle is None:
            return place_files(sc, where, name)
        return unpack_setup(bundle, sc, where, name)

    try:
        # One task at a time runs in a worker process: the run's prices hold for its in-process agent's calls.
        with prices_set_to(shared.options.prices):
            trace = run_sync(lambda: runner.run_trial(TrialJob(scenario, trial), shared.run,
                                                      _WorkerState.context(), root, place=place))
    finally:
        if not shared.options.keep_workspaces:
            shutil.rmtree(root, ignore_errors=True)
    import ray

    trace.metadata["executor"] = {"name": "ray", "node_id": ray.get_runtime_context().get_node_id(),
                                  "host": socket.gethostname(), "pid": os.getpid()}
    return WorkerReply(trace=trace, blobs=blobs.blobs)


# --------------------------------------------------------------------------- the driver side


def _node_has(node: dict[str, Any], needs: dict[str, float]) -> bool:
    have = node.get("Resources") or {}
    return all(float(have.get(name, 0.0)) >= amount for name, amount in needs.items() if amount > 0)


def _needs(sc: Scenario) -> dict[str, float]:
    r = sc.resources
    return {"CPU": r.cpus, "GPU": r.gpus, **({"memory": float(r.memory)} if r.memory else {}), **r.custom}


def _shown(needs: dict[str, float]) -> str:
    return ", ".join(f"{k}={v:g}" for k, v in needs.items() if v > 0) or "nothing"


class RayExecutor(Executor):
    """Trials as Ray tasks (see the module's docstring for what runs where)."""

    name = "ray"

    def __init__(self, config: RayExecutorConfig | None = None) -> None:
        self.config = config or RayExecutorConfig()
        """The executor's options."""
        self._ray: Any = None
        self._started = False  # this executor connected Ray (and disconnects it at close)
        self._plan: TrialPlan | None = None
        self._task: Any = None
        self._shared: Any = None
        self._bundles: dict[str, Any] = {}

    def describe(self) -> str:
        return f"ray ({self.config.address})" if self.config.address else "ray"

    async def connect(self) -> Any:
        """Connect this process to the cluster (unless it already is); returns the ``ray`` module."""
        ray = self._ray = _import_ray()
        if not ray.is_initialized():
            await asyncio.to_thread(self._connect, ray)
            self._started = True
        return ray

    async def disconnect(self) -> None:
        """Disconnect, if :meth:`connect` connected."""
        if self._started and self._ray is not None:
            self._started = False
            await asyncio.to_thread(self._ray.shutdown)

    async def open(self, plan: TrialPlan) -> int:
        ray = await self.connect()
        self._plan = plan
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        if self.config.check_resources:
            for sc in plan.scenarios:
                needs = _needs(sc)
                if not any(_node_has(n, needs) for n in nodes):
                    raise ConfigError(f"scenario {sc.id!r} asks for {_shown(needs)} per trial, which no node of the "
                                      f"Ray cluster has ({len(nodes)} node(s)); lower its resources, add such a node, "
                                      "or set executor.check_resources: false for an autoscaling cluster")
        options = dataclasses.replace(plan.runner.options, executor=None, workspace_root=None)
        spec = plan.runner.agent.spec()
        if plan.runner.agent.kind in ("command", "python", "http") and not spec.get("cwd"):
            # Resolved here: a worker's own working directory is Ray's, not the project's.
            spec = {**spec, "cwd": str(Path.cwd())}
        self._shared = ray.put(RunOnWorkers(agent_spec=spec, run=plan.run, options=options,
                                            max_result_bytes=self.config.max_result_bytes))
        for sc in plan.scenarios:
            if sc.setup.files:
                bundle = await asyncio.to_thread(pack_setup, sc, self.config.max_setup_bytes)
                self._bundles[sc.id] = ray.put(bundle)
        self._task = ray.remote(run_on_worker)
        cpus = int(sum(float((n.get("Resources") or {}).get("CPU", 0)) for n in nodes))
        # Enough tasks in flight to keep every CPU busy while results travel back; Ray queues the rest.
        return max(plan.concurrency, 2 * max(1, cpus))

    def _connect(self, ray: Any) -> None:
        address = self.config.address or None
        _check_reachable(address or os.environ.get("RAY_ADDRESS"))
        try:
            ray.init(address=address, namespace="costar", runtime_env=self.config.runtime_env or None,
                     logging_level=logging.ERROR, log_to_driver=False, include_dashboard=False)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            where = address or os.environ.get("RAY_ADDRESS") or "this machine"
            text = " ".join(str(exc).split())[:300]
            raise ConfigError(f"cannot connect to the Ray cluster at {where} ({text}); start it with "
                              "'ray start --head' or fix the executor's address") from None

    async def run_trial(self, job: TrialJob) -> Trace:
        assert self._plan is not None, "open() first"
        assert self._task is not None, "open() first"
        ray = self._ray
        sc = job.scenario
        r = sc.resources
        task = self._task.options(num_cpus=r.cpus, num_gpus=r.gpus, memory=r.memory, resources=r.custom or None,
                                  max_retries=self.config.max_retries, retry_exceptions=False,
                                  name=f"costar {sc.id} #{job.trial}")
        # Workers need neither the checks nor the judges: judging happens where the traces are stored.
        travelling = sc.model_copy(update={"expectations": Expectations(), "judges": []})
        ref = task.remote(self._shared, travelling, job.trial, self._bundles.get(sc.id))
        try:
            reply: WorkerReply = await ref
        except asyncio.CancelledError:
            ray.cancel(ref, force=True)  # kills the worker, and with it the agent's process group
            raise
        except ray.exceptions.RayTaskError as exc:
            raise worker_failure(exc, f"trial {job.trial} of {sc.id!r}") from None
        except (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError,
                ray.exceptions.ObjectLostError, ray.exceptions.OutOfMemoryError) as exc:
            return self._lost_trial(job, exc)
        await asyncio.to_thread(_put_blobs, self._plan.store, reply.blobs)
        return reply.trace

    def _lost_trial(self, job: TrialJob, exc: BaseException) -> Trace:
        """The trace of a trial whose every attempt's worker died."""
        assert self._plan is not None
        agent = self._plan.runner.agent
        text = " ".join(str(exc).split())[:300]
        error = (f"the Ray worker running this trial died {self.config.max_retries + 1} time(s) "
                 f"({type(exc).__name__}: {text}); check the nodes' memory and logs, or raise executor.max_retries")
        started = time.time_ns()
        rec = Recording(agent.info.name, attributes={"costar.scenario.id": job.scenario.id,
                                                     "costar.trial": job.trial})
        with rec:
            rec.root.set_status(StatusCode.ERROR, error)
        spans = rec.spans()
        return Trace(trace_id=rec.trace_id, run_id=self._plan.run.run_id, scenario_id=job.scenario.id,
                     trial=job.trial, agent=agent.info, status=TraceStatus.ERROR, error=error,
                     input=job.scenario.prompt, start_ns=started, end_ns=time.time_ns(),
                     totals=compute_totals(spans, 0.0), spans=spans, metadata={"executor": {"name": "ray"}})

    async def close(self) -> None:
        self._bundles.clear()
        self._shared = None
        await self.disconnect()


def worker_failure(exc: BaseException, what: str) -> CostarError:
    """The error to raise for a Ray task that raised (``RayTaskError``): coSTAR's own error as the
    worker raised it (a bad judge, an unreachable store), else one line saying ``what`` failed and why."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, CostarError):
        return cause
    text = " ".join(str(cause if isinstance(cause, BaseException) else exc).split())[:500]
    return CostarError(f"{what} failed on a Ray worker: {text}")


def _check_reachable(address: str | None, timeout: float = 5.0) -> None:
    """Refuse a ``HOST:PORT`` nothing listens on at once: Ray itself keeps retrying for minutes."""
    if not address or address == "auto" or "://" in address:
        return
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ConfigError(f"executor address {address!r} is not HOST:PORT (the head's GCS port, 6379 by default), "
                          "'auto' or ray://HOST:PORT")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        raise ConfigError(f"cannot connect to the Ray cluster at {address} ({exc.strerror or exc}); start it with "
                          "'ray start --head' or fix the executor's address") from None


def _put_blobs(store: Store, blobs: dict[str, bytes]) -> None:
    for data in blobs.values():
        store.put_blob(data)
