"""The git operations refinement needs: every attempt lives in its own worktree and branch."""

from __future__ import annotations

import subprocess
from pathlib import Path

from costar.errors import ConfigError


class GitError(ConfigError):
    pass


def git(args: list[str], cwd: Path, *, check: bool = True, timeout: float = 60) -> str:
    try:
        res = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError:
        raise GitError("git is not installed; refinement needs git for its worktrees") from None
    if check and res.returncode != 0:
        raise GitError(f"git {' '.join(args)} failed: {(res.stderr or res.stdout).strip().splitlines()[-1:]}")
    return res.stdout


def repo_root(path: Path) -> Path:
    res = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=path, capture_output=True, text=True)
    if res.returncode != 0:
        raise GitError(f"{path} is not inside a git repository; run 'git init' and commit the agent first "
                       "(each refinement attempt is a branch)")
    return Path(res.stdout.strip()).resolve()


def head_sha(root: Path) -> str:
    return git(["rev-parse", "HEAD"], root).strip()


def dirty_paths(root: Path, paths: list[Path]) -> list[str]:
    """Uncommitted changes (tracked or untracked) under ``paths``."""
    rel = [str(p.relative_to(root)) if p.is_absolute() else str(p) for p in paths]
    out = git(["status", "--porcelain", "--untracked-files=all", "--", *rel], root)
    return [line[3:] for line in out.splitlines() if line.strip()]


def add_worktree(root: Path, dest: Path, branch: str, base: str) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    git(["worktree", "add", "-q", "-b", branch, str(dest), base], root)
    return dest


def remove_worktree(root: Path, dest: Path) -> None:
    git(["worktree", "remove", "--force", str(dest)], root, check=False)


def changed_files(worktree: Path) -> list[str]:
    """Files changed in the worktree (modified, added, deleted, untracked), relative to its root."""
    out = git(["status", "--porcelain", "--untracked-files=all"], worktree)
    files = []
    for line in out.splitlines():
        path = line[3:]
        if " -> " in path:  # a rename lists both names
            files.extend(path.split(" -> "))
        else:
            files.append(path)
    return [f.strip('"') for f in files]


def commit_all(worktree: Path, message: str) -> str | None:
    """Commit everything in the worktree; None when there was nothing to commit."""
    git(["add", "-A"], worktree)
    if not git(["status", "--porcelain"], worktree).strip():
        return None
    git(["-c", "user.name=coSTAR refine", "-c", "user.email=refine@costar.invalid", "commit", "-q", "-m", message],
        worktree)
    return head_sha(worktree)


def tree_sha(root: Path, commit: str) -> str:
    """The id of a commit's tree: two commits with the same files have the same tree."""
    return git(["rev-parse", f"{commit}^{{tree}}"], root).strip()


def diff(root: Path, base: str, head: str, *, stat: bool = False) -> str:
    return git(["diff", "--stat" if stat else "--patch", f"{base}..{head}"], root)
