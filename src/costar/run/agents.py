"""Agent adapters: how the harness runs the agent under test.

Built-ins (``python``, ``command``, ``http``) are registered the same way plugins are, through
the ``costar.agents`` entry-point group: a factory taking the agent's config mapping.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import hashlib
import importlib.util
import inspect
import itertools
import json
import logging
import os
import shlex
import stat
import subprocess
import sys
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from costar._util.imports import import_object
from costar._util.process import run_command
from costar._util.text import head_and_tail_lines
from costar.capture import instrument
from costar.errors import AgentConfigError
from costar.plugins import AGENTS, PluginGroup
from costar.scenario import Scenario
from costar.trace.model import AgentInfo, SpanKind, StatusCode, TraceStatus
from costar.trace.recorder import Recording
from costar.trace.sanitize import redact_env

log = logging.getLogger("costar.run")

SITE_DIR = str(Path(__file__).resolve().parents[1] / "capture" / "site")


@dataclass
class AgentTask:
    """What an agent receives for one trial."""

    scenario: Scenario
    """The scenario being run."""
    trial: int
    """Which trial of it, from 0."""
    run_id: str
    """The run the trial belongs to."""
    workspace: Path
    """The trial's fresh workspace folder (the agent runs in it; the files it leaves there are kept)."""
    env: dict[str, str]
    """The environment for the agent: the harness's, the scenario's ``setup.env`` and ``COSTAR_*``
    variables (run id, scenario id, trial, workspace)."""
    timeout: float
    """Seconds the trial may take."""

    @property
    def prompt(self) -> str:
        """The first (for most scenarios the only) user turn."""
        return self.scenario.turns[0]

    @property
    def turns(self) -> list[str]:
        """Every user turn, in order."""
        return self.scenario.turns


@dataclass
class AgentResult:
    """What an agent's run of one trial returned."""

    output: str | None = None
    """The agent's final answer, as text."""
    status: TraceStatus = TraceStatus.OK
    """ok, error or timeout."""
    error: str | None = None
    """Why the agent failed, for an error or timeout."""
    metadata: dict[str, Any] = field(default_factory=dict)
    """Anything else to keep in the trace's metadata."""


class RunContext:
    """Resources shared by all trials of a run (the in-process agent's threads, OTLP receiver)."""

    def __init__(self, concurrency: int) -> None:
        self.receiver: Any = None
        self.fixed_receivers: dict[tuple[str, int], Any] = {}  # for agents that run outside the harness
        self.abandoned = 0  # timed-out in-process calls whose threads could not be stopped
        # Threads of timed-out in-process calls still running (they cannot be killed). Each call gets
        # a thread of its own, so these take no slot from later trials; past the bound no more calls
        # are started, so an agent that hangs on every trial cannot pile up threads without end.
        self.max_stuck_threads = max(32, 4 * max(1, concurrency))
        self._stuck: set[_ThreadCall] = set()
        self._calls = itertools.count()
        self._lock = threading.Lock()

    @property
    def stuck_threads(self) -> int:
        """How many timed-out in-process calls are still running."""
        with self._lock:
            return len(self._stuck)

    async def call_in_thread(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Call ``fn(*args)`` in a new daemon thread, in a copy of the caller's context (the trial's
        recording is current there), and await its result. Cancelled (the trial timed out), the call
        is left running: its thread is the only one it holds, and a daemon thread does not keep
        coSTAR from exiting."""
        with self._lock:
            if len(self._stuck) >= self.max_stuck_threads:
                raise _TooManyStuck(len(self._stuck))
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        call = _ThreadCall()
        run_in_context = contextvars.copy_context().run

        def settle(result: Any, exc: BaseException | None) -> None:
            if fut.done():  # cancelled: nobody waits for it any more
                return
            if exc is not None:
                fut.set_exception(exc)
            else:
                fut.set_result(result)

        def work() -> None:
            result: Any = None
            error: BaseException | None = None
            try:
                result = run_in_context(fn, *args)
            except StopIteration as exc:  # a future cannot hold StopIteration (asyncio does the same)
                error = RuntimeError(f"the agent raised StopIteration: {exc}")
            except BaseException as exc:  # handed to the awaiting trial, as an executor would
                error = exc
            with self._lock:
                call.done = True
                self._stuck.discard(call)
            with contextlib.suppress(RuntimeError):  # the loop is closed: the run is over
                loop.call_soon_threadsafe(settle, result, error)

        thread = threading.Thread(target=work, name=f"costar-agent-{next(self._calls)}", daemon=True)
        thread.start()
        try:
            return await fut
        except asyncio.CancelledError:
            with self._lock:
                if not call.done:
                    self._stuck.add(call)
                    stuck = len(self._stuck)
                else:
                    stuck = 0
            if stuck:
                log.warning("in-process agent call in thread %s timed out and keeps running (%d such threads); "
                            "later trials get threads of their own", thread.name, stuck)
            raise

    def ensure_receiver(self, address: tuple[str, int] | None = None) -> Any:
        """The run's OTLP receiver: on a free port, or on ``address`` for an agent server the harness
        did not start (it was told where to export before the run)."""
        from costar.trace.receiver import OtlpReceiver

        with self._lock:
            if address is not None:
                if address not in self.fixed_receivers:
                    try:
                        self.fixed_receivers[address] = OtlpReceiver(address[0], address[1]).start()
                    except OSError as exc:
                        raise AgentConfigError(f"cannot receive OpenTelemetry spans on {address[0]}:{address[1]}: "
                                               f"{exc}; choose a free port for agent.otlp_receiver") from None
                return self.fixed_receivers[address]
            if self.receiver is None:
                self.receiver = OtlpReceiver().start()
            return self.receiver

    def close(self) -> None:
        """Stop the receivers. Threads of timed-out in-process calls are daemons: not waited on."""
        for receiver in self.fixed_receivers.values():
            receiver.stop()
        self.fixed_receivers.clear()
        if self.receiver is not None:
            self.receiver.stop()
            self.receiver = None


class _ThreadCall:
    """One in-process agent call in its thread: whether it returned (under ``RunContext._lock``)."""

    __slots__ = ("done",)

    def __init__(self) -> None:
        self.done = False


class _TooManyStuck(Exception):
    def __init__(self, stuck: int) -> None:
        super().__init__(stuck)
        self.stuck = stuck


class Agent(ABC):
    """An agent the harness can run: a Python callable, a command, an HTTP endpoint, or a plugin's
    (the ``costar.agents`` group). Build one from a spec with :func:`make_agent`."""

    info: AgentInfo
    """The agent's name, version and git commit, recorded with every trace."""
    kind: str = ""
    """The agent's type (``python``, ``command``, ``http``...)."""
    in_process: bool = False
    """Whether the agent's code runs in the harness's process (its threads may then record into the
    trial without carrying context); a command or HTTP agent runs elsewhere."""

    @abstractmethod
    def spec(self) -> dict[str, Any]:
        """The configuration mapping that recreates this agent (stored with the run for --resume)."""

    @abstractmethod
    async def run(self, task: AgentTask, recording: Recording, ctx: RunContext) -> AgentResult:
        """Run one trial: record what the agent does into ``recording`` and return its result. A
        failure of the agent is returned as an error result; raise only for a problem of coSTAR's own."""


def _git_sha(path: Path) -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=path, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    sha = out.stdout.strip()
    try:
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=path,
                               capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return sha
    return sha + ("-dirty" if dirty.returncode == 0 and dirty.stdout.strip() else "")


class _Base(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    type: str
    """The agent's type: ``python``, ``command``, ``http`` or a plugin's."""
    name: str | None = None
    """The agent's name in reports (default: derived from the target, command or URL)."""
    version: str | None = None
    """The agent's version, recorded with each trace."""
    env: dict[str, str] = Field(default_factory=dict)
    """Environment variables for the agent (credential-like values are redacted before the spec is stored)."""
    cwd: str | None = None
    """Where the agent's code lives (for its git commit and imports); default: the working directory."""


# --------------------------------------------------------------------------- python callable


class PythonAgentConfig(_Base):
    """A Python callable run in-process (``type: python``)."""

    type: Literal["python"] = "python"
    """Selects this kind of agent."""
    target: str
    """The function to call, ``module:function``."""
    capture_sdk: bool = True
    """Record the openai/anthropic SDK calls it makes as LLM spans."""
    capture_otel: bool = True
    """Record the OpenTelemetry spans it emits through its own tracer providers (Pydantic AI's
    ``instrument_all()``, OpenInference instrumentors, its own tracer), when the OpenTelemetry SDK
    is installed."""


class PythonAgent(Agent):
    """Calls ``module:function`` in-process. The function receives an ``AgentTask`` (or the
    prompt string if its first parameter is named ``prompt``) and returns the output text, an
    ``AgentResult`` or a dict with ``output``. Sync functions run in a worker thread."""

    kind = "python"
    in_process = True

    def __init__(self, cfg: PythonAgentConfig) -> None:
        self.cfg = cfg
        base = Path(cfg.cwd).resolve() if cfg.cwd else Path.cwd()
        if str(base) not in sys.path:
            sys.path.insert(0, str(base))
        self._otel_scope: Callable[[], contextlib.AbstractContextManager[None]] = contextlib.nullcontext
        if cfg.capture_otel and importlib.util.find_spec("opentelemetry.sdk") is not None:
            from costar.capture.otel import capturing_otel, instrument_otel

            # Before the import: tracer providers the agent's module creates are then recorded too.
            instrument_otel()
            self._otel_scope = capturing_otel
        self.fn: Callable[..., Any] = import_object(cfg.target)
        if not callable(self.fn):
            raise AgentConfigError(f"{cfg.target!r} is not callable")
        params = list(inspect.signature(self.fn).parameters)
        self._wants_prompt = bool(params) and params[0] == "prompt"
        if cfg.capture_sdk:
            instrument()
        self.info = AgentInfo(name=cfg.name or cfg.target.split(":")[-1], version=cfg.version,
                              git_sha=_git_sha(base))

    def spec(self) -> dict[str, Any]:
        return self.cfg.model_dump(exclude_none=True)

    async def run(self, task: AgentTask, recording: Recording, ctx: RunContext) -> AgentResult:
        arg: Any = task.prompt if self._wants_prompt else task
        with self._otel_scope():
            if inspect.iscoroutinefunction(self.fn):
                try:
                    result = await self.fn(arg)
                except SystemExit as exc:  # sys.exit() in the agent's code: its failure, not the run's
                    return failed_with(exc, recording)
            else:
                # A thread per call, the recording's root span current in it (see call_in_thread).
                try:
                    result = await ctx.call_in_thread(self.fn, arg)
                except _TooManyStuck as exc:
                    return AgentResult(status=TraceStatus.ERROR, error=(
                        f"not started: {exc.stuck} earlier calls of this agent timed out and are still running "
                        "in coSTAR's process; run it as a command agent to have hung calls killed"))
                except (KeyboardInterrupt, SystemExit) as exc:
                    # Raised in the agent's thread (sys.exit, a KeyboardInterrupt of its own): a Ctrl-C of
                    # the person running coSTAR never arrives this way, and still stops the run.
                    return failed_with(exc, recording)
        return _coerce_result(result)


def failed_with(exc: BaseException, recording: Recording) -> AgentResult:
    """The result of an agent call that raised ``exc`` (recorded on the trial's root span)."""
    recording.root.record_exception(exc)
    return AgentResult(status=TraceStatus.ERROR, error=f"{type(exc).__name__}: {exc}")


def _coerce_result(result: Any) -> AgentResult:
    if isinstance(result, AgentResult):
        return result
    if result is None or isinstance(result, str):
        return AgentResult(output=result)
    if isinstance(result, dict) and "output" in result:
        return AgentResult(output=None if result["output"] is None else str(result["output"]),
                           metadata={k: v for k, v in result.items() if k != "output"})
    return AgentResult(output=json.dumps(result, default=str))


# --------------------------------------------------------------------------- command


class CommandAgentConfig(_Base):
    """A command run in the trial's workspace, once per user turn (``type: command``)."""

    type: Literal["command"] = "command"
    """Selects this kind of agent."""
    command: str | list[str]
    """The command: a string (split like a shell would) or a list of arguments. A bare ``python``
    means the interpreter coSTAR runs in."""
    prompt_via: Literal["stdin", "arg", "env"] = "stdin"
    """How the turn reaches the command: on stdin, as an argument (in place of ``{prompt}``, else
    last), or in the environment variable ``prompt_env``."""
    prompt_env: str = "COSTAR_PROMPT"
    """The environment variable that holds the turn (always set, whatever ``prompt_via`` says)."""
    output: str = "stdout"
    """Where the answer is: ``stdout``, or ``file:<path in the workspace>``."""
    shell: bool = False
    """Run the command through the shell (pipes, redirections)."""
    capture_otlp: bool = True
    """Receive the OpenTelemetry spans the agent exports (the harness sets its OTLP endpoint)."""
    capture_sdk: bool = True
    """For Python agents: record their openai/anthropic SDK calls as LLM spans, with no code change."""
    max_output_bytes: int = Field(1 << 20, gt=0)
    """The most of stdout and of stderr kept per turn; the rest is counted and dropped."""


class CommandAgent(Agent):
    """Runs a shell command in the trial's workspace, once per user turn."""

    kind = "command"

    def __init__(self, cfg: CommandAgentConfig) -> None:
        self.cfg = cfg
        if not cfg.output == "stdout" and not cfg.output.startswith("file:"):
            raise AgentConfigError(f"agent output must be 'stdout' or 'file:<path>', got {cfg.output!r}")
        argv = cfg.command if isinstance(cfg.command, list) else shlex.split(cfg.command)
        if not argv:
            raise AgentConfigError("the agent command is empty; set agent.command")
        self.cwd = Path(cfg.cwd).resolve() if cfg.cwd else Path.cwd()
        self.info = AgentInfo(name=cfg.name or Path(argv[0]).name, version=cfg.version, git_sha=_git_sha(self.cwd))

    def spec(self) -> dict[str, Any]:
        return self.cfg.model_dump(exclude_none=True)

    def _argv(self, prompt: str) -> list[str] | str:
        cmd = self.cfg.command
        if self.cfg.shell:
            text = cmd if isinstance(cmd, str) else shlex.join(cmd)
            if self.cfg.prompt_via == "arg":
                text = text.replace("{prompt}", shlex.quote(prompt)) if "{prompt}" in text \
                    else f"{text} {shlex.quote(prompt)}"
            return text
        argv = list(cmd) if isinstance(cmd, list) else shlex.split(cmd)
        # A bare "python" means the interpreter coSTAR runs in (its virtualenv, its packages), not
        # whatever comes first on PATH; give a path to use another Python.
        if argv and argv[0] in ("python", "python3"):
            argv[0] = sys.executable
        # The agent runs in the workspace, so a path that names a file of the project is made absolute.
        # Only what looks like a path (a slash, or a script's extension) is rewritten, so module names
        # (python -m pkg) and flag values stay as written.
        # (abspath, not resolve: a venv's python is a symlink whose target is outside the venv)
        argv = [os.path.abspath(self.cwd / a) if _looks_like_path(a) and (self.cwd / a).exists() else a
                for a in argv]
        if self.cfg.prompt_via == "arg":
            argv = [a.replace("{prompt}", prompt) for a in argv] if any("{prompt}" in a for a in argv) \
                else [*argv, prompt]
        return argv

    async def run(self, task: AgentTask, recording: Recording, ctx: RunContext) -> AgentResult:
        receiver = ctx.ensure_receiver() if self.cfg.capture_otlp else None
        key = f"{recording.trace_id}"
        try:
            return await self._run_turns(task, recording, receiver, key)
        finally:
            if receiver is not None:
                receiver.release(key)  # later posts to this trial's endpoint are refused, not buffered

    async def _run_turns(self, task: AgentTask, recording: Recording, receiver: Any, key: str) -> AgentResult:
        env = {**task.env, **self.cfg.env}
        # The agent's own child processes (and shell commands) find the same Python first, and the
        # project's modules stay importable from the workspace (`python -m my_agent`).
        env["PATH"] = os.pathsep.join(p for p in (os.path.dirname(sys.executable), env.get("PATH")) if p)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(self.cwd), env.get("PYTHONPATH")) if p)
        if receiver is not None:
            env.update(receiver.child_env(key))
            if self.cfg.capture_sdk:
                env["COSTAR_CAPTURE"] = "1"
                env["PYTHONPATH"] = os.pathsep.join(p for p in (SITE_DIR, env.get("PYTHONPATH")) if p)
        output: str | None = None
        meta: dict[str, Any] = {}
        # The scenario's timeout is for the whole trial: the turns share one deadline, each getting
        # what the turns before it left (not the full timeout each, which let N turns take N times it).
        deadline = time.monotonic() + task.timeout
        timed_out = f"timed out after {task.timeout:g}s"
        if len(task.turns) > 1:
            timed_out += f" (the scenario's timeout, shared by its {len(task.turns)} turns)"
        for i, turn in enumerate(task.turns):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return AgentResult(output=output, status=TraceStatus.TIMEOUT, metadata=meta,
                                   error=f"{timed_out}; turn {i + 1} was not started")
            env_turn = {**env, "COSTAR_TURN": str(i), self.cfg.prompt_env: turn}
            argv = self._argv(turn)
            with recording.start_span(f"turn {i + 1}" if len(task.turns) > 1 else "command", SpanKind.CHAIN,
                                      {"input.value": turn,
                                       "process.command_args": argv if isinstance(argv, list) else [argv]}) as sp:
                try:
                    res = await run_command(argv, cwd=task.workspace, env=env_turn,
                                            stdin=turn.encode() if self.cfg.prompt_via == "stdin" else None,
                                            timeout=remaining, max_output=self.cfg.max_output_bytes)
                except FileNotFoundError as exc:
                    sp.set_status(StatusCode.ERROR, str(exc))
                    return AgentResult(status=TraceStatus.ERROR,
                                       error=f"agent command not found: {exc.filename}; check agent.command")
                finally:
                    if receiver is not None:
                        rejected = _attach_otlp(recording, receiver, key, parent=sp.span_id)
                        if rejected:
                            meta.setdefault("otlp_rejected", []).extend(rejected)
                refused: str | None = None
                if self.cfg.output == "stdout":
                    output = res.stdout
                else:
                    # In a thread: reading the agent's file must never hold up the event loop (and the
                    # other trials) however hostile the file is.
                    got = await asyncio.to_thread(_read_output_file, task.workspace, self.cfg.output,
                                                  self.cfg.max_output_bytes)
                    output, refused = got.text, got.refused
                    if got.dropped:
                        sp.set_attribute("costar.output_file_dropped_bytes", got.dropped)
                        meta["output_file_dropped_bytes"] = meta.get("output_file_dropped_bytes", 0) + got.dropped
                    if refused:
                        sp.set_attribute("costar.output_file_refused", refused)
                        meta["output_file_refused"] = refused
                sp.set_attributes({"output.value": output or "", "process.exit_code": res.returncode,
                                   "costar.stderr": res.stderr[-8192:]})
                if res.stdout_dropped:
                    sp.set_attribute("costar.stdout_dropped_bytes", res.stdout_dropped)
                    meta["stdout_dropped_bytes"] = meta.get("stdout_dropped_bytes", 0) + res.stdout_dropped
                if res.timed_out:
                    sp.set_status(StatusCode.ERROR, "timed out")
                    return AgentResult(output=output, status=TraceStatus.TIMEOUT, metadata=meta,
                                       error=f"{timed_out}; the process group was killed")
                if res.returncode != 0:
                    # The cause is usually near the top of stderr and the context at the bottom.
                    excerpt = head_and_tail_lines(res.stderr) or "(nothing on stderr)"
                    sp.set_status(StatusCode.ERROR, f"exit code {res.returncode}")
                    return AgentResult(output=output, status=TraceStatus.ERROR, metadata=meta,
                                       error=f"agent exited with code {res.returncode}: {excerpt}")
                if refused:
                    sp.set_status(StatusCode.ERROR, refused)
                    return AgentResult(output=None, status=TraceStatus.ERROR, metadata=meta, error=refused)
        return AgentResult(output=output, metadata=meta)


_SCRIPT_SUFFIXES = (".py", ".sh", ".js", ".mjs", ".ts", ".rb", ".pl", ".jar", ".exe")


def _looks_like_path(arg: str) -> bool:
    if os.path.isabs(arg) or arg.startswith("-") or "{prompt}" in arg:
        return False
    return "/" in arg or arg.endswith(_SCRIPT_SUFFIXES)


@dataclass
class _OutputFile:
    """What reading an agent's ``file:`` answer gave: its text (None when there is no such file),
    why it was refused (it is not a regular file of the workspace), and how many bytes were not read."""

    text: str | None = None
    refused: str | None = None
    dropped: int = 0


def _read_output_file(workspace: Path, spec: str, limit: int) -> _OutputFile:
    """Read at most ``limit`` bytes of the agent's answer file. The agent chose what is at that path:
    a symlink (to /dev/zero, to a file outside the workspace), a FIFO, a device or a directory is
    refused rather than read, and a huge file is cut at ``limit``. Blocking I/O: call it off the loop."""
    rel = spec.removeprefix("file:")
    path = workspace / rel
    if os.path.islink(path):
        return _OutputFile(refused=f"agent.output {spec} is a symlink; not followed")
    # A symlinked folder on the way (or an absolute path) could lead anywhere; the answer must be in the workspace.
    real, root = os.path.realpath(path), os.path.realpath(workspace)
    if os.path.commonpath([real, root]) != root:
        return _OutputFile(refused=f"agent.output {spec} leads outside the trial's workspace; not read")
    # O_NOFOLLOW: the file itself may not be a symlink. O_NONBLOCK: opening a FIFO returns at once
    # (without it, open waits for a writer that may never come) and then fstat shows what it is.
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        return _OutputFile()
    except OSError as exc:  # ELOOP: it became a symlink since the check above
        return _OutputFile(refused=f"agent.output {spec} cannot be read: {exc.strerror or exc}")
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            what = ("a directory" if stat.S_ISDIR(st.st_mode) else "a FIFO" if stat.S_ISFIFO(st.st_mode)
                    else "a socket" if stat.S_ISSOCK(st.st_mode) else "a device" if
                    stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) else "not a regular file")
            return _OutputFile(refused=f"agent.output {spec} is {what}, not a regular file; not read")
        chunks: list[bytes] = []
        got = 0
        while got < limit:
            chunk = os.read(fd, min(limit - got, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            got += len(chunk)
        # The file may still be growing (an escaped child writing it): count what lies past the bound.
        dropped = max(os.fstat(fd).st_size - got, 0) if got >= limit else 0
    except OSError as exc:
        return _OutputFile(refused=f"agent.output {spec} cannot be read: {exc.strerror or exc}")
    finally:
        os.close(fd)
    text = b"".join(chunks).decode("utf-8", errors="replace")
    if dropped:
        # Like stdout past the bound: the answer says it was cut, so a judge does not take it as whole.
        text += f"\n…[{dropped} more bytes of {rel} not read: past agent.max_output_bytes]…\n"
    return _OutputFile(text=text, dropped=dropped)


def _attach_otlp(recording: Recording, receiver: Any, key: str, parent: str) -> list[str]:
    """Re-home spans the child exported: our trace id; its root spans under the turn span.
    Returns why any of the child's payloads were rejected."""
    received = receiver.take(key)
    rejected: list[str] = receiver.errors(key)
    if not received:
        return rejected
    ids = {rs.span.span_id for rs in received}
    spans = []
    for rs in received:
        s = rs.span
        s.trace_id = recording.trace_id
        if s.parent_id is None or s.parent_id not in ids:
            s.parent_id = parent
        spans.append(s)
    recording.add_spans(spans)
    return rejected


# --------------------------------------------------------------------------- http chat endpoint


class HttpAgentConfig(_Base):
    """An agent served behind an OpenAI-compatible chat endpoint, one request per turn (``type: http``)."""

    type: Literal["http"] = "http"
    """Selects this kind of agent."""
    url: str
    """The endpoint: an OpenAI-compatible ``/v1/chat/completions`` URL (or its base)."""
    model: str = "agent"
    """The ``model`` field of each request."""
    headers: dict[str, str] = Field(default_factory=dict)
    """Extra HTTP headers for each request."""
    api_key_env: str | None = None
    """An environment variable holding a bearer token for the ``Authorization`` header."""
    system: str | None = None
    """A system message sent before the conversation."""
    request_timeout: float = Field(600.0, gt=0)
    """Seconds one request may take."""
    otlp_receiver: str | None = None
    """``host:port`` where the agent server exports its OpenTelemetry spans (its
    OTEL_EXPORTER_OTLP_ENDPOINT): coSTAR listens there during the run and sends each request a W3C
    traceparent, so the spans of the server's work join the trial's trace."""
    otlp_wait: float = Field(3.0, ge=0)
    """Seconds to wait after a reply for the server's spans to arrive."""


def _address(text: str) -> tuple[str, int]:
    host, sep, port = text.strip().removeprefix("http://").rstrip("/").rpartition(":")
    if not sep or not port.isdigit():
        raise AgentConfigError(f"agent.otlp_receiver must be host:port (e.g. 127.0.0.1:4318), got {text!r}")
    return host or "127.0.0.1", int(port)


class HttpAgent(Agent):
    """Talks to an agent served behind an OpenAI-compatible chat endpoint, one request per turn.

    Each exchange is recorded as an LLM span: the endpoint is a model as far as coSTAR can see. When
    the server sends its own OpenTelemetry spans (``otlp_receiver``), its model calls are the LLM
    spans and each exchange is recorded as an AGENT span (``invoke_agent``) over them instead."""

    kind = "http"

    def __init__(self, cfg: HttpAgentConfig) -> None:
        self.cfg = cfg
        url = cfg.url.rstrip("/")
        self.url = url if url.endswith("/chat/completions") else f"{url}/chat/completions"
        self.otlp = _address(cfg.otlp_receiver) if cfg.otlp_receiver else None
        self.info = AgentInfo(name=cfg.name or cfg.model, version=cfg.version)

    def spec(self) -> dict[str, Any]:
        return self.cfg.model_dump(exclude_none=True)

    async def run(self, task: AgentTask, recording: Recording, ctx: RunContext) -> AgentResult:
        headers = dict(self.cfg.headers)
        if self.cfg.api_key_env:
            key = os.environ.get(self.cfg.api_key_env)
            if not key:
                return AgentResult(status=TraceStatus.ERROR,
                                   error=f"environment variable {self.cfg.api_key_env} is not set; export it")
            headers["Authorization"] = f"Bearer {key}"
        headers["X-Costar-Scenario"] = task.scenario.id
        headers["X-Costar-Trial"] = str(task.trial)
        # The trial's workspace folder: a server on the same machine can leave its files there.
        headers["X-Costar-Workspace"] = str(task.workspace)
        messages: list[dict[str, Any]] = [{"role": "system", "content": self.cfg.system}] if self.cfg.system else []
        output: str | None = None
        receiver = ctx.ensure_receiver(self.otlp) if self.otlp is not None else None
        if receiver is not None:
            receiver.expect_trace(recording.trace_id)  # the server's spans carry no trial key, only the trace id
        try:
            async with httpx.AsyncClient(timeout=self.cfg.request_timeout) as client:
                for turn in task.turns:
                    messages.append({"role": "user", "content": turn})
                    attrs = {"gen_ai.operation.name": "chat", "gen_ai.request.model": self.cfg.model,
                             "gen_ai.provider.name": "openai-compatible", "server.address": self.url,
                             "gen_ai.input.messages": [_to_parts(m) for m in messages]}
                    name, kind = f"chat {self.cfg.model}", SpanKind.LLM
                    if receiver is not None:
                        attrs = {**attrs, "gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": self.cfg.model}
                        name, kind = f"invoke_agent {self.cfg.model}", SpanKind.AGENT
                    with recording.start_span(name, kind, attrs) as sp:
                        if receiver is not None:
                            headers["traceparent"] = f"00-{recording.trace_id}-{sp.span_id}-01"
                        try:
                            resp = await client.post(self.url, json={"model": self.cfg.model, "messages": messages},
                                                     headers=headers)
                        except httpx.HTTPError as exc:
                            sp.set_status(StatusCode.ERROR, str(exc))
                            return AgentResult(status=TraceStatus.ERROR,
                                               error=f"cannot reach the agent at {self.url}: {exc}; is it running?")
                        if resp.status_code >= 400:
                            sp.set_status(StatusCode.ERROR, f"HTTP {resp.status_code}")
                            return AgentResult(status=TraceStatus.ERROR,
                                               error=f"the agent at {self.url} answered HTTP {resp.status_code}: "
                                                     f"{resp.text[:300]}")
                        try:
                            body = resp.json()
                            msg = body["choices"][0]["message"]
                        except (ValueError, KeyError, IndexError, TypeError):
                            sp.set_status(StatusCode.ERROR, "malformed response")
                            return AgentResult(status=TraceStatus.ERROR,
                                               error=f"the agent at {self.url} returned a body that is not a chat "
                                                     f"completion: {resp.text[:200]!r}")
                        output = msg.get("content") or ""
                        messages.append({"role": "assistant", "content": output})
                        usage = body.get("usage") or {}
                        sp.set_attributes({
                            "gen_ai.output.messages": [{**_to_parts(msg), "finish_reason":
                                                        body["choices"][0].get("finish_reason") or "stop"}],
                            "gen_ai.response.model": body.get("model") or self.cfg.model,
                        })
                        if receiver is None:  # the endpoint's usage is the model usage coSTAR can see
                            sp.set_attributes({"gen_ai.usage.input_tokens": int(usage.get("prompt_tokens") or 0),
                                               "gen_ai.usage.output_tokens": int(usage.get("completion_tokens") or 0)})
                    if receiver is not None:
                        await _collect_server_spans(recording, receiver, sp.span_id, self.cfg.otlp_wait)
            return AgentResult(output=output)
        finally:
            if receiver is not None:
                receiver.release_trace(recording.trace_id)


async def _collect_server_spans(recording: Recording, receiver: Any, parent: str, wait: float) -> None:
    """Attach the spans an agent server exported for this trace: they arrive after its reply (an
    SDK exports in batches), so wait until some came and then a quiet moment, or ``wait`` seconds."""
    deadline = time.monotonic() + wait
    got: list[Any] = []
    quiet_since = time.monotonic()
    while time.monotonic() < deadline:
        new = receiver.take_trace(recording.trace_id)
        if new:
            got.extend(new)
            quiet_since = time.monotonic()
        elif got and time.monotonic() - quiet_since > 0.5:
            break
        await asyncio.sleep(0.05)
    ids = {rs.span.span_id for rs in got}
    spans = []
    for rs in got:
        if rs.span.parent_id is None or (rs.span.parent_id not in ids and rs.span.parent_id != parent):
            rs.span.parent_id = parent
        spans.append(rs.span)
    recording.add_spans(spans)


def _to_parts(msg: dict[str, Any]) -> dict[str, Any]:
    return {"role": msg.get("role", "assistant"), "parts": [{"type": "text", "content": msg.get("content") or ""}]}


# --------------------------------------------------------------------------- registry

AgentFactory = Callable[[dict[str, Any]], Agent]


def _builtin(config_cls: type[_Base], agent_cls: Callable[[Any], Agent]) -> AgentFactory:
    def make(cfg: dict[str, Any]) -> Agent:
        try:
            parsed = config_cls.model_validate(cfg)
        except ValidationError as exc:
            # A misspelt field also shows up as a missing one; name the misspelling first.
            err = sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")[0]
            where = ".".join(str(p) for p in err["loc"])
            msg = "unknown field; check its spelling" if err["type"] == "extra_forbidden" else err["msg"]
            raise AgentConfigError(f"agent.{where}: {msg}") from None
        return agent_cls(parsed)
    return make


python_agent = _builtin(PythonAgentConfig, PythonAgent)
command_agent = _builtin(CommandAgentConfig, CommandAgent)
http_agent = _builtin(HttpAgentConfig, HttpAgent)


def _not_a_factory(obj: Any) -> str | None:
    return None if callable(obj) else "it must be a function f(spec: dict) -> Agent"


AGENT_TYPES: PluginGroup[AgentFactory] = PluginGroup(AGENTS, "agent type", accept=_not_a_factory)
"""Agent types by name (``type:`` in an agent spec): the ``costar.agents`` plugin group, built-ins included."""


def parse_agent_shorthand(text: str) -> dict[str, Any]:
    """``py:module:fn`` / ``python:module:fn``, ``cmd:<command line>``, ``http(s)://...``."""
    for prefix in ("python:", "py:"):
        if text.startswith(prefix):
            return {"type": "python", "target": text[len(prefix):]}
    if text.startswith(("cmd:", "command:")):
        return {"type": "command", "command": text.split(":", 1)[1]}
    if text.startswith(("http://", "https://")):
        return {"type": "http", "url": text}
    if ":" in text and " " not in text and "/" not in text.split(":")[0]:
        return {"type": "python", "target": text}
    return {"type": "command", "command": text}


def spec_fingerprint(spec: dict[str, Any]) -> str:
    """A hash of the agent's configuration: what runs (type, command or target or URL, options, env)
    but not where the project sits (``cwd``), with credential-like env values redacted, so moving a
    checkout or rotating a key is not an agent change."""
    doc = {k: v for k, v in spec.items() if k != "cwd"}
    if isinstance(doc.get("env"), dict):
        doc["env"] = redact_env({str(k): str(v) for k, v in doc["env"].items()})
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def make_agent(spec: dict[str, Any] | str) -> Agent:
    if isinstance(spec, str):
        spec = parse_agent_shorthand(spec)
    if not isinstance(spec, dict):
        raise AgentConfigError("agent must be a mapping with a 'type' (python, command, http) or a shorthand "
                               "string like 'cmd:python agent.py'")
    kind = spec.get("type")
    factory = AGENT_TYPES.find(str(kind))
    if factory is None:
        raise AgentConfigError(f"unknown agent type {kind!r}; use one of {', '.join(AGENT_TYPES.names())} "
                               "(or install a plugin that provides it)")
    agent = factory(spec)
    if agent.info.spec_fingerprint is None:
        agent.info = agent.info.model_copy(update={"spec_fingerprint": spec_fingerprint(agent.spec())})
    return agent
