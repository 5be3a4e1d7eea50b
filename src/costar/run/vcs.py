"""Which branch and commit a run is of, so CI can find "the latest run of the target branch".

The branch comes from the CI's variables when there are any (GitHub Actions: the pull request's
source branch ``GITHUB_HEAD_REF``, else the pushed branch in ``GITHUB_REF``; GitLab: the merge
request's source branch, else ``CI_COMMIT_BRANCH``), else from ``git`` in the project folder
(nothing on a detached HEAD). The commit is ``git rev-parse HEAD`` there.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path


def _git(path: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=path, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = out.stdout.strip()
    return text if out.returncode == 0 and text else None


def ci_branch(env: dict[str, str] | None = None) -> str | None:
    env = dict(os.environ) if env is None else env
    if env.get("GITHUB_HEAD_REF"):
        return env["GITHUB_HEAD_REF"]
    if env.get("GITHUB_REF", "").startswith("refs/heads/"):
        return env["GITHUB_REF"].removeprefix("refs/heads/")
    for key in ("CI_MERGE_REQUEST_SOURCE_BRANCH_NAME", "CI_COMMIT_BRANCH"):
        if env.get(key):
            return env[key]
    return None


def vcs_info(path: Path | None = None, env: dict[str, str] | None = None) -> dict[str, str]:
    """``{"branch": ..., "commit": ...}`` with whatever could be found."""
    folder = path or Path.cwd()
    out: dict[str, str] = {}
    branch = ci_branch(env)
    if branch is None:
        head = _git(folder, "rev-parse", "--abbrev-ref", "HEAD")
        branch = head if head and head != "HEAD" else None
    if branch:
        out["branch"] = branch
    commit = _git(folder, "rev-parse", "HEAD")
    if commit:
        out["commit"] = commit
    return out
