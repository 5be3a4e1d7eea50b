"""Cleaning up after refinement: every session leaves a worktree and a branch per attempt (kept so a
reviewer can read and merge them); ``costar refine clean`` removes them once they are not needed.

A session is found by its branches (``costar/refine/SESSION/attempt-N``) and its folder under the
store's ``refine/``. Cleaning a session removes its attempt worktrees and branches; its report and
briefs (``report.md``, ``report.json``, ``attempt-N.brief.*``) stay, small and useful as history. A
branch that is checked out somewhere is left alone and said so.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel, Field

from costar.config import ProjectConfig, load_config
from costar.errors import ConfigError
from costar.refine import git

BRANCH_PREFIX = "costar/refine/"


class CleanReport(BaseModel):
    """What ``costar refine clean`` removed (or, with ``dry_run``, would remove)."""

    sessions: list[str] = Field(default_factory=list)
    """The sessions cleaned, oldest first."""
    kept: list[str] = Field(default_factory=list)
    """The newest sessions left as they were (``keep``)."""
    branches: list[str] = Field(default_factory=list)
    """Branches deleted."""
    worktrees: list[str] = Field(default_factory=list)
    """Worktree folders removed."""
    skipped: list[str] = Field(default_factory=list)
    """What could not be removed, and why."""
    dry_run: bool = False


@dataclass
class _Session:
    name: str
    branches: list[str] = field(default_factory=list)
    worktrees: list[Path] = field(default_factory=list)


def _sessions(root: Path, refine_dir: Path) -> dict[str, _Session]:
    found: dict[str, _Session] = {}
    refs = git.git(["for-each-ref", "--format=%(refname:short)", f"refs/heads/{BRANCH_PREFIX}"], root)
    for branch in refs.split():
        name = branch.removeprefix(BRANCH_PREFIX).split("/", 1)[0]
        found.setdefault(name, _Session(name)).branches.append(branch)
    if refine_dir.is_dir():
        for folder in sorted(refine_dir.iterdir()):
            if not folder.is_dir():
                continue
            trees = [p for p in sorted(folder.iterdir()) if p.is_dir() and (p / ".git").exists()]
            if trees:
                found.setdefault(folder.name, _Session(folder.name)).worktrees.extend(trees)
    return found


def _checked_out(root: Path, refine_dir: Path) -> set[str]:
    """Branches checked out in a worktree that is not one of refinement's own (those go first)."""
    out: set[str] = set()
    path = Path()
    for line in git.git(["worktree", "list", "--porcelain"], root).splitlines():
        if line.startswith("worktree "):
            path = Path(line.removeprefix("worktree ")).resolve()
        elif line.startswith("branch refs/heads/") and not path.is_relative_to(refine_dir.resolve()):
            out.add(line.removeprefix("branch refs/heads/"))
    return out


def clean_sessions(project: ProjectConfig | str | Path | None = None, *, keep: int = 0,
                   dry_run: bool = False) -> CleanReport:
    """Remove the attempt worktrees and branches of every refine session but the ``keep`` newest."""
    if keep < 0:
        raise ConfigError(f"--keep is {keep}; give how many of the newest sessions to keep (0 or more)")
    cfg = project if isinstance(project, ProjectConfig) else load_config(project)
    root = git.repo_root(cfg.root)
    refine_dir = cfg.store_path / "refine"
    sessions = _sessions(root, refine_dir)
    order = sorted(sessions)  # session names start with their time: YYYYmmdd-HHMMSS
    keep_names = set(order[len(order) - keep:]) if keep else set()
    report = CleanReport(dry_run=dry_run, kept=[s for s in order if s in keep_names])
    busy = _checked_out(root, refine_dir)
    for name in order:
        if name in keep_names:
            continue
        session = sessions[name]
        report.sessions.append(name)
        for tree in session.worktrees:
            report.worktrees.append(str(tree))
            if not dry_run:
                git.git(["worktree", "remove", "--force", str(tree)], root, check=False)
                if tree.exists():  # not a registered worktree any more (moved repository): just the folder
                    shutil.rmtree(tree, ignore_errors=True)
        for branch in session.branches:
            if branch in busy:
                report.skipped.append(f"branch {branch}: checked out in another worktree")
                continue
            report.branches.append(branch)
            if not dry_run:
                git.git(["branch", "-D", branch], root)
    if not dry_run:
        git.git(["worktree", "prune"], root, check=False)
    return report


def describe(report: CleanReport) -> str:
    """The report in a few lines for the terminal."""
    verb = "would remove" if report.dry_run else "removed"
    if not report.sessions:
        kept = f" ({len(report.kept)} kept)" if report.kept else ""
        return f"nothing to clean: no refine session beyond the ones kept{kept}"
    lines = [f"{verb} {len(report.worktrees)} worktree(s) and {len(report.branches)} branch(es) of "
             f"{len(report.sessions)} refine session(s): {', '.join(report.sessions)}"]
    if report.kept:
        lines.append(f"kept the newest {len(report.kept)}: {', '.join(report.kept)}")
    lines += [f"skipped {s}" for s in report.skipped]
    lines.append("reports and briefs stay in each session's folder")
    return "\n".join(lines)
