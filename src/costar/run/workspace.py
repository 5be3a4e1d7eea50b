"""Per-trial workspaces: a fresh folder with the scenario's files, then its files become artifacts."""

from __future__ import annotations

import asyncio
import mimetypes
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from costar._util.process import run_command
from costar.errors import ConfigError
from costar.scenario import Scenario
from costar.store.base import Store
from costar.trace.model import Artifact
from costar.trace.sanitize import Sanitizer

SKIP_DIRS = {".git", "__pycache__", "node_modules", ".venv", ".mypy_cache", ".pytest_cache", ".ruff_cache"}


class BlobSink(Protocol):
    """Where a workspace's files are put, content-addressed: the store, or memory on a Ray worker
    that sends its trial back to the driver."""

    def put_blob(self, data: bytes) -> str:
        """Keep ``data``; returns its sha256."""
        ...

    def put_file(self, path: Path) -> tuple[str, int]:
        """Keep the file's bytes; returns (sha256, size)."""
        ...


class SetupError(Exception):
    """A scenario's setup step failed; the trial is recorded as an error."""

    def __init__(self, message: str, *, command: str = "", stdout: str = "", stderr: str = "") -> None:
        super().__init__(message)
        self.command = command
        """The setup command that failed."""
        self.stdout = stdout
        """What it printed (bounded, like every command's output)."""
        self.stderr = stderr
        """What it printed on stderr (bounded)."""


@dataclass
class ArtifactLimits:
    max_files: int = 2000
    max_file_bytes: int = 256 * 1024 * 1024
    max_total_bytes: int = 2 * 1024 * 1024 * 1024
    max_redact_bytes: int = 64 * 1024 * 1024  # text files up to this size are redacted; larger ones are scanned


@dataclass
class SecretPolicy:
    """What happens to workspace files that hold a secret value (an API key the agent could see, a
    credential shape). Text files are always stored redacted; binary files cannot be, so they are
    stored flagged (``Artifact.holds_secret``) or, with ``drop_binaries``, not stored at all."""

    sanitizer: Sanitizer
    drop_binaries: bool = False


def _scan_file(path: Path, sanitizer: Sanitizer, chunk: int = 1 << 20, overlap: int = 4096) -> bool:
    """Whether a file too large to hold in memory contains a secret (chunks overlap so none is split)."""
    tail = b""
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            if sanitizer.holds_secret(tail + block):
                return True
            tail = block[-overlap:]
    return False


def _store_file(path: Path, rel: str, size: int, store: BlobSink, policy: SecretPolicy | None,
                limits: ArtifactLimits) -> tuple[str, int, dict[str, bool]] | str:
    """(sha256, size, artifact flags), or why the file was not stored."""
    if policy is None:
        sha, n = store.put_file(path)
        return sha, n, {}
    if size > limits.max_redact_bytes:
        if not _scan_file(path, policy.sanitizer):
            sha, n = store.put_file(path)
            return sha, n, {}
        data = None
    else:
        data = path.read_bytes()
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            text = None
        if text is not None:
            clean = policy.sanitizer.redact(text)
            if clean == text:
                return store.put_blob(data), len(data), {}
            blob = clean.encode("utf-8")
            return store.put_blob(blob), len(blob), {"redacted": True}
        if not policy.sanitizer.holds_secret(data):
            return store.put_blob(data), len(data), {}
    if policy.drop_binaries:
        return f"{rel}: a binary file holding a secret value; not stored (secrets.drop_binary_artifacts)"
    sha, n = (store.put_blob(data), len(data)) if data is not None else store.put_file(path)
    return sha, n, {"holds_secret": True}


@dataclass
class Workspace:
    path: Path
    # (size, mtime_ns) of each setup file as placed, to tell untouched setup files from agent output.
    setup_stats: dict[str, tuple[int, int]] = field(default_factory=dict)
    # Store the setup files the agent left unchanged too (Setup.store_inputs).
    store_inputs: bool = False
    # What setup left out (symlinks pointing out of the project), reported with the artifacts.
    notes: list[str] = field(default_factory=list)

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)

    def record_setup(self) -> None:
        """Note every file now in the folder as placed by setup (:attr:`setup_stats`)."""
        for p in _walk(self.path):
            st = p.stat()
            self.setup_stats[p.relative_to(self.path).as_posix()] = (st.st_size, st.st_mtime_ns)


def _copy(src: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    if src.is_dir():
        shutil.copytree(src, dest, dirs_exist_ok=True, symlinks=True)
    else:
        shutil.copy2(src, dest)


def _copy_confined(src: Path, dest: Path, root: Path, notes: list[str], seen: set[Path] | None = None) -> None:
    """Copy ``src`` to ``dest`` without ever leaving ``root``: a symlink is followed only when its target
    is inside the project (its content is copied, not the link); one pointing out is skipped and noted."""
    seen = set() if seen is None else seen
    real = src.resolve()
    if not real.is_relative_to(root):
        notes.append(f"setup: skipped {src} -> {real}: it points outside the project folder {root}")
        return
    if real.is_dir():
        if real in seen:  # a link back to a folder being copied
            notes.append(f"setup: skipped {src}: it links back to a folder already being copied")
            return
        dest.mkdir(parents=True, exist_ok=True)
        for child in sorted(real.iterdir()):
            _copy_confined(child, dest / child.name, root, notes, seen | {real})
    elif real.is_file():
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(real, dest)


def place_files(scenario: Scenario, root: Path, name: str) -> Workspace:
    """Create a fresh folder under ``root`` holding the scenario's setup files."""
    try:
        path = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=root))
    except FileNotFoundError:  # first trial of this scenario
        root.mkdir(parents=True, exist_ok=True)
        path = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=root))
    ws = Workspace(path=path, store_inputs=scenario.setup.store_inputs)
    base = scenario.base_dir
    confined = not scenario.setup.allow_outside_project
    root = scenario.project_root if confined else base
    for f in scenario.setup.files:
        dest = path / f.target
        if f.content is not None:
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_text(f.content, encoding="utf-8")
            continue
        src = base / (f.src or "")
        if not src.exists():
            raise ConfigError(f"scenario {scenario.id!r}: setup file {f.src!r} does not exist "
                              f"(looked in {base})")
        if not confined:
            _copy(src, dest)
        elif not src.resolve().is_relative_to(root):  # checked at load too; the files may have moved since
            raise ConfigError(f"scenario {scenario.id!r}: setup file {f.src!r} is {src.resolve()}, outside the "
                              f"project folder {root}; move it into the project, or set "
                              "'allow_outside_project: true' under setup")
        else:
            _copy_confined(src, dest, root, ws.notes)
    ws.record_setup()
    return ws


PlaceFiles = Callable[[Scenario, Path, str], Workspace]
"""Makes a trial's workspace: a fresh folder under a root, named after the trial, holding the setup files."""


async def prepare_workspace(scenario: Scenario, root: Path, name: str, env: dict[str, str],
                            place: PlaceFiles | None = None) -> Workspace:
    """Place the scenario's files in a fresh folder (off the event loop: files can be large),
    then run its setup commands there. ``place`` makes the folder (default :func:`place_files`:
    copied from the project; a Ray worker unpacks what the driver sent)."""
    place = place or place_files
    if scenario.setup.files:
        ws = await asyncio.to_thread(place, scenario, root, name)
    else:  # just a folder: cheaper than a hop to a thread
        ws = place(scenario, root, name)
    for cmd in scenario.setup.commands:
        res = await run_command(cmd, cwd=ws.path, env=env, timeout=scenario.setup.command_timeout,
                                max_output=64 * 1024)
        if res.timed_out:
            raise SetupError(f"setup command {cmd!r} timed out after {scenario.setup.command_timeout:g}s",
                             command=cmd, stdout=res.stdout, stderr=res.stderr)
        if res.returncode != 0:
            # The message keeps the last lines; the whole output goes on the trace (see run.trial).
            tail = (res.stderr or res.stdout).strip().splitlines()[-3:]
            raise SetupError(f"setup command {cmd!r} exited {res.returncode}: {' | '.join(tail)}"
                             " (its whole output is an event on the trace's root span)",
                             command=cmd, stdout=res.stdout, stderr=res.stderr)
    return ws


def _walk(root: Path) -> list[Path]:
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS)
        for fn in sorted(filenames):
            p = Path(dirpath) / fn
            if p.is_file() and not p.is_symlink():
                out.append(p)
    return out


def collect_artifacts(ws: Workspace, store: BlobSink, limits: ArtifactLimits | None = None,
                      secrets: SecretPolicy | None = None) -> tuple[list[Artifact], list[str]]:
    """Store what the agent produced or changed, content-addressed; returns artifacts and notes on what
    was skipped. With ``secrets``, text files are stored with secret values redacted and binary files
    holding one are flagged or dropped (paths are redacted where the trace is stored)."""
    limits = limits or ArtifactLimits()
    artifacts: list[Artifact] = []
    notes: list[str] = list(ws.notes)
    total = 0
    unchanged = 0
    for p in _walk(ws.path):
        rel = p.relative_to(ws.path).as_posix()
        if len(artifacts) >= limits.max_files:
            notes.append(f"more than {limits.max_files} files: the rest were not stored")
            break
        st = p.stat()
        untouched = ws.setup_stats.get(rel) == (st.st_size, st.st_mtime_ns)
        if untouched and not ws.store_inputs:
            unchanged += 1  # the scenario's own input, as placed: it is in the project already
            continue
        if st.st_size > limits.max_file_bytes:
            notes.append(f"{rel}: {st.st_size} bytes exceeds the {limits.max_file_bytes}-byte limit; not stored")
            continue
        if total + st.st_size > limits.max_total_bytes:
            notes.append(f"{rel}: workspace exceeds {limits.max_total_bytes} bytes; not stored")
            continue
        try:
            stored = _store_file(p, rel, st.st_size, store, secrets, limits)
        except OSError as exc:  # the agent left a file nobody may read, or removed it meanwhile
            notes.append(f"{rel}: could not be read ({type(exc).__name__}: {exc.strerror or exc}); not stored")
            continue
        if isinstance(stored, str):
            notes.append(stored)
            continue
        sha, size, flags = stored
        total += size
        artifacts.append(Artifact(path=rel, sha256=sha, size=size, origin="setup" if untouched else "agent",
                                  media_type=mimetypes.guess_type(rel)[0], **flags))
    if unchanged:
        many = unchanged > 1
        notes.append(f"{unchanged} setup file{'s' if many else ''} left unchanged by the agent "
                     f"{'were' if many else 'was'} not stored (setup.store_inputs: true keeps them)")
    return artifacts, notes


def materialize_artifacts(artifacts: list[Artifact], store: Store, dest: Path) -> Path:
    """Write a trace's artifacts back to a folder (for judges that run code against them)."""
    dest.mkdir(parents=True, exist_ok=True)
    for a in artifacts:
        target = (dest / a.path).resolve()
        if not target.is_relative_to(dest.resolve()):
            continue  # never write outside the folder, whatever the stored path says
        target.parent.mkdir(parents=True, exist_ok=True)
        src = store.blob_path(a.sha256)
        if src.exists():
            shutil.copyfile(src, target)
    return dest
