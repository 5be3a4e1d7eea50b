"""Per-trial workspaces: a fresh folder with the scenario's files, then its files become artifacts."""

from __future__ import annotations

import asyncio
import mimetypes
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from costar._util.process import run_command
from costar.errors import ConfigError
from costar.scenario import Scenario
from costar.store.base import Store
from costar.trace.model import Artifact

SKIP_DIRS = {".git", "__pycache__", "node_modules", ".venv", ".mypy_cache", ".pytest_cache", ".ruff_cache"}


class SetupError(Exception):
    """A scenario's setup step failed; the trial is recorded as an error."""


@dataclass
class ArtifactLimits:
    max_files: int = 2000
    max_file_bytes: int = 256 * 1024 * 1024
    max_total_bytes: int = 2 * 1024 * 1024 * 1024


@dataclass
class Workspace:
    path: Path
    # (size, mtime_ns) of each setup file as placed, to tell untouched setup files from agent output.
    setup_stats: dict[str, tuple[int, int]] = field(default_factory=dict)

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def _copy(src: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    if src.is_dir():
        shutil.copytree(src, dest, dirs_exist_ok=True, symlinks=True)
    else:
        shutil.copy2(src, dest)


def place_files(scenario: Scenario, root: Path, name: str) -> Workspace:
    """Create a fresh folder under ``root`` holding the scenario's setup files."""
    try:
        path = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=root))
    except FileNotFoundError:  # first trial of this scenario
        root.mkdir(parents=True, exist_ok=True)
        path = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=root))
    ws = Workspace(path=path)
    base = scenario.base_dir
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
        _copy(src, dest)
    for p in _walk(path):
        st = p.stat()
        ws.setup_stats[p.relative_to(path).as_posix()] = (st.st_size, st.st_mtime_ns)
    return ws


async def prepare_workspace(scenario: Scenario, root: Path, name: str, env: dict[str, str]) -> Workspace:
    """Place the scenario's files in a fresh folder (off the event loop: files can be large),
    then run its setup commands there."""
    if scenario.setup.files:
        ws = await asyncio.to_thread(place_files, scenario, root, name)
    else:  # just a folder: cheaper than a hop to a thread
        ws = place_files(scenario, root, name)
    for cmd in scenario.setup.commands:
        res = await run_command(cmd, cwd=ws.path, env=env, timeout=scenario.setup.command_timeout,
                                max_output=64 * 1024)
        if res.timed_out:
            raise SetupError(f"setup command {cmd!r} timed out after {scenario.setup.command_timeout:g}s")
        if res.returncode != 0:
            tail = (res.stderr or res.stdout).strip().splitlines()[-3:]
            raise SetupError(f"setup command {cmd!r} exited {res.returncode}: {' | '.join(tail)}")
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


def collect_artifacts(ws: Workspace, store: Store,
                      limits: ArtifactLimits | None = None) -> tuple[list[Artifact], list[str]]:
    """Store every workspace file content-addressed; returns artifacts and notes on what was skipped."""
    limits = limits or ArtifactLimits()
    artifacts: list[Artifact] = []
    notes: list[str] = []
    total = 0
    for p in _walk(ws.path):
        rel = p.relative_to(ws.path).as_posix()
        if len(artifacts) >= limits.max_files:
            notes.append(f"more than {limits.max_files} files: the rest were not stored")
            break
        st = p.stat()
        if st.st_size > limits.max_file_bytes:
            notes.append(f"{rel}: {st.st_size} bytes exceeds the {limits.max_file_bytes}-byte limit; not stored")
            continue
        if total + st.st_size > limits.max_total_bytes:
            notes.append(f"{rel}: workspace exceeds {limits.max_total_bytes} bytes; not stored")
            continue
        sha, size = store.put_file(p)
        total += size
        origin = "setup" if ws.setup_stats.get(rel) == (st.st_size, st.st_mtime_ns) else "agent"
        artifacts.append(Artifact(path=rel, sha256=sha, size=size, origin=origin,
                                  media_type=mimetypes.guess_type(rel)[0]))
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
