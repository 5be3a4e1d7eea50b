"""OS-level isolation for code written by something untrusted (a judge steered by a trace, an agent).

coSTAR uses bubblewrap (``bwrap``, Debian's ``bubblewrap`` package): the code runs in new namespaces
with no network, a read-only view of the system (``/usr``, the libraries, the Python installation and
its packages, a few harmless files of ``/etc``), a fresh ``/proc`` and ``/dev``, none of the user's
home, the project or the store, and exactly one writable folder (the scratch copy it works on). It
loses every capability, gets its own session (no typing into the caller's terminal) and dies with
coSTAR. Resource limits (memory, CPU, file size) are applied inside by the caller as before.

Where bubblewrap is missing or cannot create namespaces (some containers), callers refuse to run
such code unless the user opts in: ``COSTAR_ALLOW_UNSANDBOXED=1`` (set by ``--allow-unsandboxed-code``
and by ``allow_unsandboxed_code: true`` in costar.yaml).
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

ALLOW_ENV = "COSTAR_ALLOW_UNSANDBOXED"
INSTALL_HINT = "install bubblewrap (Debian/Ubuntu: apt-get install bubblewrap)"

# System folders shown read-only (as symlinks when the host has them as symlinks, e.g. /bin -> usr/bin).
_SYSTEM = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
# What of /etc programs need to start (the dynamic loader, time zones, names of users); no secrets.
_ETC = ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/alternatives", "/etc/localtime",
        "/etc/nsswitch.conf", "/etc/passwd", "/etc/group", "/etc/mime.types", "/etc/ssl/certs")


def unsandboxed_allowed() -> bool:
    """Whether the user opted in to running untrusted code without a sandbox when none is available."""
    return os.environ.get(ALLOW_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def find_bwrap() -> str | None:
    return shutil.which("bwrap")


@dataclass(frozen=True)
class Mount:
    """A host folder shown inside the sandbox at ``inside`` (read-only unless ``writable``)."""

    host: Path
    inside: str
    writable: bool = False


def python_paths() -> list[Path]:
    """What the running interpreter needs outside the system folders: its installation and the
    virtualenv holding its packages (shown at their own paths, read-only)."""
    out: list[Path] = []
    for p in (Path(sys.base_prefix), Path(sys.prefix)):
        real = p.resolve()
        if any(real == Path(s) or real.is_relative_to(s) for s in _SYSTEM) or p in out:
            continue
        out.append(p)
    return out


def bwrap_argv(argv: Sequence[str], *, mounts: Iterable[Mount], cwd: str, env: Mapping[str, str],
               readonly: Iterable[Path] = ()) -> list[str]:
    """The bubblewrap command that runs ``argv`` isolated (see the module docstring).

    ``mounts`` are the folders the code may see (one of them writable: its scratch copy); ``readonly``
    are extra host paths shown read-only at the same path (the Python installation, by default)."""
    bwrap = find_bwrap()
    if bwrap is None:
        raise FileNotFoundError(f"bwrap not found; {INSTALL_HINT}")
    args = [bwrap, "--unshare-all", "--die-with-parent", "--new-session", "--cap-drop", "ALL", "--clearenv"]
    for system in _SYSTEM:
        path = Path(system)
        if path.is_symlink():
            args += ["--symlink", os.readlink(path), system]
        elif path.is_dir():
            args += ["--ro-bind", system, system]
    for etc in _ETC:
        args += ["--ro-bind-try", etc, etc]
    args += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]
    for m in mounts:
        args += ["--bind" if m.writable else "--ro-bind", str(m.host), m.inside]
    # The interpreter last: bwrap mounts in order, so a Python installation or virtualenv living
    # under /tmp (a checkout there) is bound on top of the fresh /tmp or a scratch folder shown at
    # /tmp, instead of being hidden by them.
    for extra in [*python_paths(), *readonly]:
        args += ["--ro-bind", str(extra), str(extra)]
    for key, value in env.items():
        args += ["--setenv", key, value]
    args += ["--chdir", cwd, "--", *argv]
    return args


@functools.cache
def unavailable_reason() -> str | None:
    """None when bubblewrap works here; otherwise why not, with the fix (checked once per process)."""
    if find_bwrap() is None:
        return f"bubblewrap (bwrap) is not installed; {INSTALL_HINT}"
    probe = bwrap_argv([sys.executable, "-I", "-c", "pass"], mounts=(), cwd="/", env={"PATH": "/usr/bin:/bin"})
    try:
        res = subprocess.run(probe, capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"bubblewrap cannot start here ({exc})"
    if res.returncode != 0:
        detail = " ".join((res.stderr or res.stdout).split())[:200] or f"exit code {res.returncode}"
        return (f"bubblewrap cannot create its namespaces here ({detail}); allow unprivileged user "
                "namespaces, or run coSTAR where they are allowed")
    return None


def describe_refusal(reason: str, what: str = "judge code") -> str:
    """One line: why untrusted code was not run, and the two ways forward."""
    return (f"refused to run {what}: no sandbox is available ({reason}); {what} comes from untrusted input and "
            "runs only in a sandbox unless you opt in with --allow-unsandboxed-code, "
            f"'allow_unsandboxed_code: true' in costar.yaml or {ALLOW_ENV}=1")
