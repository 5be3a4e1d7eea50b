"""Run the steps of a generated CI workflow here, as the CI would: the very scripts ``costar ci init`` wrote.

GitHub Actions steps run with ``bash -eo pipefail`` (the runner's default shell), their ``env:``
expressions filled from a context (``github.*``, ``steps.*.outputs.*``, ``secrets.*``, ``env.*``),
``$GITHUB_OUTPUT`` and ``$GITHUB_STEP_SUMMARY`` as files; GitLab jobs run their ``script:`` lines
in one ``bash -eo pipefail`` (the runner stops at the first failing line). Steps that need the
forge itself (downloading artifacts, commenting) are the caller's to emulate or skip.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

_EXPR = re.compile(r"\$\{\{\s*([^}]+?)\s*\}\}")


def _bin_path() -> str:
    return str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")


def base_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "CI_", "COSTAR_"))}
    env.update({"PATH": _bin_path(), "NO_COLOR": "1", "COLUMNS": "200"}, **extra)
    return env


@dataclass
class GithubJob:
    """One job of a GitHub workflow, run step by step."""

    workflow: dict[str, Any]
    job: str
    workdir: Path
    context: dict[str, str] = field(default_factory=dict)
    """Values for ``${{ }}`` expressions: ``github.base_ref``, ``secrets.X``, …"""
    env: dict[str, str] = field(default_factory=dict)
    outputs: dict[str, dict[str, str]] = field(default_factory=dict)
    summary: Path | None = None

    @classmethod
    def load(cls, path: Path, job: str, workdir: Path, context: dict[str, str], env: dict[str, str]) -> GithubJob:
        return cls(yaml.safe_load(path.read_text()), job, workdir, dict(context), dict(env))

    def step(self, step_id: str) -> dict[str, Any]:
        steps = self.workflow["jobs"][self.job]["steps"]
        found = [s for s in steps if s.get("id") == step_id]
        assert found, f"no step {step_id!r} in job {self.job}: {[s.get('id') for s in steps]}"
        return found[0]

    def step_ids(self) -> list[str]:
        return [s.get("id", s.get("uses", "?")) for s in self.workflow["jobs"][self.job]["steps"]]

    def _value(self, expr: str) -> str:
        if expr.startswith("steps."):
            _, sid, _, key = expr.split(".", 3)
            return self.outputs.get(sid, {}).get(key, "")
        if expr.startswith("env."):
            return self._env_level().get(expr[4:], "")
        if expr in self.context:
            return self.context[expr]
        raise AssertionError(f"the test gave no value for the expression ${{{{ {expr} }}}}")

    def _fill(self, text: Any) -> str:
        return _EXPR.sub(lambda m: self._value(m.group(1)), str(text))

    def _env_level(self) -> dict[str, str]:
        out = {k: self._fill_plain(v) for k, v in (self.workflow.get("env") or {}).items()}
        out.update({k: self._fill_plain(v) for k, v in (self.workflow["jobs"][self.job].get("env") or {}).items()})
        return out

    def _fill_plain(self, text: Any) -> str:
        return _EXPR.sub(lambda m: self.context.get(m.group(1), ""), str(text))

    def run(self, step_id: str, *, check: bool = True) -> subprocess.CompletedProcess[str]:
        step = self.step(step_id)
        assert "run" in step, f"step {step_id} uses an action; emulate it in the test"
        out_file = self.workdir / f".gh-output-{step_id}"
        out_file.write_text("")
        summary = self.summary or self.workdir / ".gh-step-summary"
        summary.touch()
        env = {**self.env, **self._env_level(),
               **{k: self._fill(v) for k, v in (step.get("env") or {}).items()},
               "GITHUB_OUTPUT": str(out_file), "GITHUB_STEP_SUMMARY": str(summary)}
        proc = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step["run"]],
                              cwd=self.workdir, env=env, capture_output=True, text=True, timeout=600)
        self.outputs[step_id] = dict(line.split("=", 1) for line in out_file.read_text().splitlines() if "=" in line)
        if check:
            assert proc.returncode == 0, f"step {step_id} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
        return proc


def gitlab_script(path: Path, job: str) -> str:
    """A GitLab job's ``script:`` (after resolving ``extends``) as one bash program."""
    doc = yaml.safe_load(path.read_text())
    spec = doc[job]
    lines = spec.get("script") or doc[spec["extends"]].get("script")
    return "\n".join(str(line) for line in lines)


def run_gitlab_job(path: Path, job: str, workdir: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    doc = yaml.safe_load(path.read_text())
    variables = {k: str(v) for k, v in (doc.get("variables") or {}).items()}
    return subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", gitlab_script(path, job)],
                          cwd=workdir, env={**env, **variables}, capture_output=True, text=True, timeout=600)
