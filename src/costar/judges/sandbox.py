"""Run a judge's Python snippet against a scratch copy of a trace's workspace files.

Each snippet runs in its own process (its own session, so a timeout kills the whole group) with an
address-space limit (RLIMIT_AS), a CPU-time backstop, a cap on file sizes, bounded output and an
environment stripped of the caller's variables, so API keys never reach judge-written code. The files
are copied out of the store, so nothing a snippet does can change what was recorded.

Not a security boundary: the snippet can reach the network and read what the user running coSTAR can.
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
from typing import Any

from costar._util.process import run_command
from costar.run.workspace import materialize_artifacts
from costar.store.base import Store
from costar.trace.model import Artifact

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

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"exit_code": self.exit_code, "stdout": self.stdout, "stderr": self.stderr,
                               "seconds": round(self.seconds, 2)}
        if self.timed_out:
            out["note"] = "timed out: the process group was killed"
        elif self.memory_exceeded:
            out["note"] = "hit the memory limit"
        return out


class Sandbox:
    """A temp folder holding a copy of one trace's artifacts; every ``run`` is a fresh process there.

    The copy is made on the first run and shared by later runs of the same judge evaluation, so a
    snippet can leave a file for the next one; ``close`` removes it."""

    def __init__(self, artifacts: Sequence[Artifact], store: Store | None,
                 limits: SandboxLimits | None = None) -> None:
        self.artifacts = list(artifacts)
        self.store = store
        self.limits = limits or SandboxLimits()
        self._root: Path | None = None
        self._lock = asyncio.Lock()
        self._runs = 0

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

    def _env(self, root: Path) -> dict[str, str]:
        # Only what Python needs: judge-written code must not see the caller's credentials.
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(root / "workspace"),
               "TMPDIR": str(root / "tmp"), "LANG": "C.UTF-8", "PYTHONIOENCODING": "utf-8",
               "PYTHONDONTWRITEBYTECODE": "1", "MPLBACKEND": "Agg",
               # Numeric libraries reserve address space per thread; one thread keeps RLIMIT_AS honest.
               "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        return env

    async def run(self, code: str, *, timeout_s: float | None = None) -> SandboxResult:
        root = await self._prepare()
        self._runs += 1
        script = root / "snippets" / f"snippet_{self._runs}.py"
        script.write_text(code, encoding="utf-8")
        lim = self.limits
        timeout = min(timeout_s or lim.timeout_s, lim.timeout_s)
        argv = [sys.executable, "-I", "-c", _LAUNCHER, str(lim.memory_mb << 20), str(math.ceil(timeout) + 1),
                str(lim.max_file_mb << 20), str(script)]
        res = await run_command(argv, cwd=root / "workspace", env=self._env(root), timeout=timeout,
                                max_output=lim.max_output_chars, grace_s=0.2)
        memory = not res.timed_out and any(sign in res.stderr for sign in _MEMORY_SIGNS)
        return SandboxResult(exit_code=res.returncode, stdout=res.stdout, stderr=res.stderr,
                             timed_out=res.timed_out, memory_exceeded=memory, seconds=res.seconds)

    def close(self) -> None:
        if self._root is not None:
            with contextlib.suppress(OSError):
                shutil.rmtree(self._root, ignore_errors=True)
            self._root = None

    async def __aenter__(self) -> Sandbox:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()
