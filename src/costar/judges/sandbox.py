"""Run a judge's Python snippet against a scratch copy of a trace's workspace files.

A trace is untrusted (with production monitoring it carries live user input), and a prompt injection
in it can steer a judge into writing code of the attacker's choosing, so snippets run in a real
sandbox (``costar.sandbox``, bubblewrap): no network, a read-only system, nothing of the user's home,
the project or the store, and only the scratch copy (``/workspace``) and its ``/tmp`` writable. On
top, each snippet runs in its own process (its own session, so a timeout kills the whole group) with
an address-space limit (RLIMIT_AS), a CPU-time backstop, a cap on file sizes, bounded output and an
environment stripped of the caller's variables. The files are copied out of the store, so nothing a
snippet does can change what was recorded.

Where no sandbox is available, snippets are refused (the judge is told why, and the verdict says
so) unless the user opted in (``costar.sandbox.unsandboxed_allowed``); then they run with the limits
only, and the verdict says that too.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from costar._util.process import run_command
from costar.run.workspace import materialize_artifacts
from costar.sandbox import Mount, bwrap_argv, describe_refusal, unavailable_reason, unsandboxed_allowed
from costar.store.base import Store
from costar.trace.model import Artifact

SandboxMode = Literal["bubblewrap", "unsandboxed", "refused"]

# Applies the limits inside the child before the snippet runs: no preexec_fn, which is unsafe in a
# process with threads (the judge runs next to store and HTTP threads).
_LAUNCHER = """\
import os, resource, runpy, sys
mem, cpu, fsize, script = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
if mem > 0:
    resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
if cpu > 0:
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
if fsize > 0:
    resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
sys.argv = [script]
sys.path.insert(0, os.getcwd())
try:
    runpy.run_path(script, run_name="__main__")
except (SystemExit, KeyboardInterrupt):
    raise
except BaseException as exc:
    import traceback
    # Only the snippet's own frames: the launcher's would cost the judge tokens and tell it nothing.
    te = traceback.TracebackException.from_exception(exc)
    te.stack = traceback.StackSummary.from_list(
        [f for f in te.stack if not f.filename.startswith("<frozen") and f.filename != "<string>"])
    sys.stderr.write("".join(te.format()))
    sys.exit(1)
"""

_MEMORY_SIGNS = ("MemoryError", "Cannot allocate memory", "std::bad_alloc", "Unable to allocate")


@dataclass(frozen=True)
class SandboxLimits:
    timeout_s: float = 10.0
    memory_mb: int = 1024
    max_output_chars: int = 8000  # per stream; the start and the end are kept
    max_file_mb: int = 256  # largest file a snippet may write


@dataclass
class SandboxResult:
    exit_code: int | None
    stdout: str
    stderr: str
    timed_out: bool
    memory_exceeded: bool
    seconds: float
    mode: SandboxMode = "bubblewrap"

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"exit_code": self.exit_code, "stdout": self.stdout, "stderr": self.stderr,
                               "seconds": round(self.seconds, 2)}
        if self.mode == "refused":
            out["note"] = self.stderr
        elif self.timed_out:
            out["note"] = "timed out: the process group was killed"
        elif self.memory_exceeded:
            out["note"] = "hit the memory limit"
        return out


class Sandbox:
    """A temp folder holding a copy of one trace's artifacts; every ``run`` is a fresh process there.

    The copy is made on the first run and shared by later runs of the same judge evaluation, so a
    snippet can leave a file for the next one; ``close`` removes it."""

    def __init__(self, artifacts: Sequence[Artifact], store: Store | None,
                 limits: SandboxLimits | None = None, *, allow_unsandboxed: bool | None = None) -> None:
        """``allow_unsandboxed``: run snippets with the limits only when no sandbox is available
        (None: as the user chose, see ``costar.sandbox.unsandboxed_allowed``)."""
        self.artifacts = list(artifacts)
        self.store = store
        self.limits = limits or SandboxLimits()
        self.allow_unsandboxed = allow_unsandboxed
        self._root: Path | None = None
        self._lock = asyncio.Lock()
        self._runs = 0
        self.modes: set[SandboxMode] = set()  # how the snippets of this evaluation ran

    def mode(self) -> tuple[SandboxMode, str | None]:
        """How the next snippet runs, and why not in the sandbox when it does not."""
        reason = unavailable_reason()
        if reason is None:
            return "bubblewrap", None
        allowed = unsandboxed_allowed() if self.allow_unsandboxed is None else self.allow_unsandboxed
        return ("unsandboxed" if allowed else "refused"), reason

    @property
    def workdir(self) -> Path | None:
        return None if self._root is None else self._root / "workspace"

    async def _prepare(self) -> Path:
        async with self._lock:
            if self._root is None:
                root = Path(tempfile.mkdtemp(prefix="costar-judge-"))
                (root / "tmp").mkdir()
                (root / "snippets").mkdir()
                work = root / "workspace"
                if self.store is not None and self.artifacts:
                    await asyncio.to_thread(materialize_artifacts, self.artifacts, self.store, work)
                else:
                    work.mkdir()
                self._root = root
            return self._root

    @staticmethod
    def _env(home: str, tmp: str) -> dict[str, str]:
        # Only what Python needs: judge-written code must not see the caller's credentials.
        return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": home,
                "TMPDIR": tmp, "LANG": "C.UTF-8", "PYTHONIOENCODING": "utf-8",
                "PYTHONDONTWRITEBYTECODE": "1", "MPLBACKEND": "Agg",
                # Numeric libraries reserve address space per thread; one thread keeps RLIMIT_AS honest.
                "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}

    async def run(self, code: str, *, timeout_s: float | None = None) -> SandboxResult:
        mode, reason = self.mode()
        self.modes.add(mode)
        if mode == "refused":
            return SandboxResult(exit_code=None, stdout="", stderr=describe_refusal(reason or "unknown"),
                                 timed_out=False, memory_exceeded=False, seconds=0.0, mode=mode)
        root = await self._prepare()
        self._runs += 1
        name = f"snippet_{self._runs}.py"
        (root / "snippets" / name).write_text(code, encoding="utf-8")
        lim = self.limits
        timeout = min(timeout_s or lim.timeout_s, lim.timeout_s)

        def launcher(script: str) -> list[str]:
            return [sys.executable, "-I", "-c", _LAUNCHER, str(lim.memory_mb << 20), str(math.ceil(timeout) + 1),
                    str(lim.max_file_mb << 20), script]

        if mode == "bubblewrap":
            # Only the scratch copy (and its tmp) is writable; the snippets are read-only.
            argv = bwrap_argv(launcher(f"/snippets/{name}"), cwd="/workspace", env=self._env("/workspace", "/tmp"),
                              mounts=[Mount(root / "workspace", "/workspace", writable=True),
                                      Mount(root / "tmp", "/tmp", writable=True),
                                      Mount(root / "snippets", "/snippets")])
        else:
            argv = launcher(str(root / "snippets" / name))
        res = await run_command(argv, cwd=root / "workspace",
                                env=self._env(str(root / "workspace"), str(root / "tmp")), timeout=timeout,
                                max_output=lim.max_output_chars, grace_s=0.2)
        memory = not res.timed_out and any(sign in res.stderr for sign in _MEMORY_SIGNS)
        return SandboxResult(exit_code=res.returncode, stdout=res.stdout, stderr=res.stderr,
                             timed_out=res.timed_out, memory_exceeded=memory, seconds=res.seconds, mode=mode)

    def close(self) -> None:
        if self._root is not None:
            with contextlib.suppress(OSError):
                shutil.rmtree(self._root, ignore_errors=True)
            self._root = None

    async def __aenter__(self) -> Sandbox:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()
