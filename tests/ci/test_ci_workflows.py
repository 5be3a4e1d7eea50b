"""``costar ci init``: the workflows it writes are valid (actionlint, the vendored JSON Schemas), say what
they do, and refuse bad options with one-line errors."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from costar.ci import CiOptions, render, write
from costar.errors import ConfigError
from tests.support.cli import child_env, costar_cmd

VARIANTS = [
    CiOptions("github"),
    CiOptions("github", tags=["smoke", "fast"], store="shared", rejudge=3, fail_on="gates", branch="develop"),
    CiOptions("gitlab"),
    CiOptions("gitlab", tags=["smoke"], store="shared", store_secret="TEAM_STORE", rejudge=4, python="3.12"),
]


def _tool(name: str) -> str:
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed (pip install -e '.[dev]'; scripts/setup --dev does it)")
    return found


@pytest.mark.parametrize("options", VARIANTS, ids=lambda o: f"{o.provider}-{o.store}-{len(o.tags)}")
def test_the_workflows_pass_their_validators(tmp_path: Path, options: CiOptions) -> None:
    written = write(tmp_path, options)
    for path in written:
        yaml.safe_load(path.read_text())  # plain YAML first
    if options.provider == "github":
        lint = subprocess.run([_tool("actionlint"), "-color=false", *map(str, written)], cwd=tmp_path,
                              capture_output=True, text=True)
        assert lint.returncode == 0, lint.stdout + lint.stderr
        schema = "vendor.github-workflows"
    else:
        schema = "vendor.gitlab-ci"
    check = subprocess.run([_tool("check-jsonschema"), "--builtin-schema", schema, *map(str, written)],
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


def test_github_workflows_wire_the_options_through() -> None:
    files = render(CiOptions("github", tags=["smoke"], rejudge=3, branch="develop", cron="5 4 * * 1"))
    pr = yaml.safe_load(files[".github/workflows/costar.yml"])
    nightly = yaml.safe_load(files[".github/workflows/costar-nightly.yml"])
    assert pr[True]["push"]["branches"] == ["develop"]  # YAML 1.1 reads the key "on" as True
    assert pr[True]["pull_request"] is None
    steps = {s.get("id"): s for s in pr["jobs"]["costar"]["steps"]}
    assert "--tag smoke" in steps["suite"]["run"]
    assert 'costar compare "branch:$BASE_REF"' in steps["compare"]["run"]
    assert "--rejudge 3" in steps["compare"]["run"]
    assert "gh pr comment" in steps["comment"]["run"]
    assert steps["comment"]["continue-on-error"] is True
    assert nightly[True]["schedule"] == [{"cron": "5 4 * * 1"}]
    night = {s.get("id"): s for s in nightly["jobs"]["nightly"]["steps"]}
    assert "--tag" not in night["suite"]["run"].replace("--run-tag", "")  # nightly runs everything
    assert "costar mcp snapshot" in night["snapshot"]["run"]
    assert "costar mcp diff" in night["mcp_diff"]["run"]
    assert "tag:nightly~1" in night["compare"]["run"]
    # No ${{ }} inside a script: values reach scripts through env, so a branch name cannot inject code.
    for wf in (pr, nightly):
        for job in wf["jobs"].values():
            for step in job["steps"]:
                assert "${{" not in step.get("run", ""), step.get("name")


def test_artifact_and_shared_stores() -> None:
    artifact = render(CiOptions("github"))[".github/workflows/costar.yml"]
    shared = render(CiOptions("github", store="shared", store_secret="TEAM_STORE"))[".github/workflows/costar.yml"]
    assert "costar-baseline" in artifact
    assert "gh run download" in artifact
    assert "COSTAR_STORE: .costar" in artifact
    assert "costar-baseline" not in shared
    assert "COSTAR_STORE: ${{ secrets.TEAM_STORE }}" in shared
    gitlab = render(CiOptions("gitlab", store="shared"))[".gitlab/costar.gitlab-ci.yml"]
    assert "COSTAR_STORE: $COSTAR_STORE" in gitlab
    assert "jobs/artifacts" not in gitlab


def test_existing_files_are_kept_unless_forced(tmp_path: Path) -> None:
    write(tmp_path, CiOptions("gitlab"))
    root_ci = tmp_path / ".gitlab-ci.yml"
    root_ci.write_text("stages: [test]\n")
    with pytest.raises(ConfigError, match="exists; pass --force"):
        write(tmp_path, CiOptions("gitlab"))
    write(tmp_path, CiOptions("gitlab", tags=["smoke"]), force=True)
    assert root_ci.read_text() == "stages: [test]\n"  # the project's own .gitlab-ci.yml is never changed
    assert "--tag smoke" in (tmp_path / ".gitlab" / "costar.gitlab-ci.yml").read_text()


@pytest.mark.parametrize(("args", "message"), [
    (["ci", "init", "jenkins"], "'github' or 'gitlab'"),
    (["ci", "init", "github", "--schedule", "every night"], "not a cron expression"),
    (["ci", "init", "github", "--store", "s3"], "'artifact' or 'shared'"),
    (["ci", "init", "github", "--tag", "smoke; rm -rf /"], "tags are letters"),
    (["ci", "init", "github", "--branch", "main && evil"], "not a branch name"),
    (["ci", "init", "gitlab", "--store-secret", "lower-case"], "upper-case variable name"),
])
def test_bad_options_are_one_line_errors(tmp_path: Path, args: list[str], message: str) -> None:
    proc = subprocess.run([*costar_cmd(), *args], cwd=tmp_path, env=child_env(), capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / ".github").exists()


def test_the_cli_writes_and_refuses_to_overwrite(tmp_path: Path) -> None:
    (tmp_path / "costar.yaml").write_text("suite: scenarios\n")
    first = subprocess.run([*costar_cmd(), "ci", "init", "github", "--tag", "smoke"], cwd=tmp_path, env=child_env(),
                           capture_output=True, text=True, timeout=60)
    assert first.returncode == 0, first.stderr
    assert "wrote" in first.stdout
    assert "no mcp_servers:" in first.stdout
    again = subprocess.run([*costar_cmd(), "ci", "init", "github"], cwd=tmp_path, env=child_env(),
                           capture_output=True, text=True, timeout=60)
    assert again.returncode == 2
    assert again.stderr.strip().startswith("error: .github/workflows/costar.yml exists; pass --force")
