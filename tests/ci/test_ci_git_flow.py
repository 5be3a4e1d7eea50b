"""The pull-request / merge-request flow the generated workflows run, over a real git repository.

A real ``git init``, a base commit on ``main`` and a head commit on a feature branch that changes the
agent's prompt (and breaks it); the suite runs at each commit through the very steps ``costar ci
init`` wrote, the baseline travels as the CI artifact would, the comparison becomes the Markdown
comment, and the gate fails the job. GitHub: the steps that need GitHub itself (``gh`` downloading
the artifact, commenting) are emulated by copying the store / skipped. GitLab: the whole job script
runs, against a stand-in for GitLab's API on loopback that serves the baseline artifact and records
the merge-request note.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import threading
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

from costar.testing import Rule, ScriptedModelServer
from tests.support.cli import costar_cmd
from tests.support.mcp_shop.shop import AGENT, SERVER_V1, rules, scenario_docs
from tests.support.workflow_steps import GithubJob, base_env, run_gitlab_job

TRIALS = 5
CONCISE = 'SYSTEM = "You are a support agent for the shop. Be concise. Use the tools."'


def git(repo: Path, *args: str) -> str:
    out = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True,
                         env={**base_env(), "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
                              "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"})
    return out.stdout.strip()


def make_repo(root: Path, model_url: str, provider: str) -> Path:
    root.mkdir(parents=True)
    git(root, "init", "-q", "-b", "main")
    (root / "scenarios").mkdir()
    (root / "servers").mkdir()
    shutil.copy(SERVER_V1, root / "servers" / "shop_server.py")
    shutil.copy(AGENT, root / "agent.py")
    (root / "scenarios" / "orders.yaml").write_text(yaml.safe_dump(scenario_docs(TRIALS)["orders.yaml"]))
    (root / ".gitignore").write_text(".costar/\ncostar-*\n.gh-*\n")
    (root / "costar.yaml").write_text(yaml.safe_dump({
        "suite": "scenarios",
        "agent": {"type": "command", "name": "shop-agent", "command": ["python", "agent.py"],
                  "env": {"SHOP_MCP": str(root / "servers" / "shop_server.py"), "MODEL_BASE_URL": model_url}},
        "mcp_servers": {"shop": {"command": ["python", "servers/shop_server.py"]}},
    }))
    init = subprocess.run([*costar_cmd(), "ci", "init", provider], cwd=root, env=base_env(), capture_output=True,
                          text=True, timeout=120)
    assert init.returncode == 0, init.stderr
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "base")
    return root


def head_commit(repo: Path) -> str:
    """A feature branch whose agent prompt change breaks it (the scripted model then answers without tools)."""
    git(repo, "checkout", "-q", "-b", "feature")
    agent = repo / "agent.py"
    text = agent.read_text()
    assert 'SYSTEM = "You are a support agent for the shop. Use the tools."' in text
    agent.write_text(text.replace('SYSTEM = "You are a support agent for the shop. Use the tools."', CONCISE))
    git(repo, "commit", "-q", "-am", "Make the agent concise")
    return git(repo, "rev-parse", "HEAD")


def model_rules() -> list[Rule]:
    return [Rule(name="concise-refuses", system="(?i)be concise", text="I cannot help with that."), *rules()]


def clean_checkout(repo: Path) -> None:
    """CI starts from a fresh checkout: no store, no reports from the previous job."""
    shutil.rmtree(repo / ".costar", ignore_errors=True)
    for f in repo.glob("costar-*"):
        f.unlink()


@pytest.mark.slow
def test_github_pull_request_flow(tmp_path: Path) -> None:
    artifact = tmp_path / "costar-baseline"
    with ScriptedModelServer(model_rules()) as model:
        repo = make_repo(tmp_path / "repo", model.base_url, "github")
        base_sha = git(repo, "rev-parse", "HEAD")
        workflow = repo / ".github" / "workflows" / "costar.yml"

        # A push to main: the suite runs and its store is kept as the baseline artifact.
        push = GithubJob.load(workflow, "costar", repo, {"github.event_name": "push"},
                              base_env(GITHUB_EVENT_NAME="push", GITHUB_REF="refs/heads/main", GITHUB_SHA=base_sha))
        push.run("suite")
        assert push.outputs["suite"]["exit"] == "0"
        assert push.run("gate", check=False).returncode == 0
        shutil.copytree(repo / ".costar", artifact)

        # The pull request: a new commit on a branch, a fresh checkout, the baseline downloaded.
        clean_checkout(repo)
        head_sha = head_commit(repo)
        shutil.copytree(artifact, repo / ".costar")
        context = {"github.event_name": "pull_request", "github.base_ref": "main", "github.token": "unused",
                   "github.event.pull_request.number": "7"}
        pr = GithubJob.load(workflow, "costar", repo, context,
                            base_env(GITHUB_EVENT_NAME="pull_request", GITHUB_REF="refs/pull/7/merge",
                                     GITHUB_HEAD_REF="feature", GITHUB_BASE_REF="main", GITHUB_SHA=head_sha))
        pr.run("suite")
        pr.run("compare")
        gate = pr.run("gate", check=False)
        runs = subprocess.run([*costar_cmd(), "runs"], cwd=repo, env=base_env(), capture_output=True, text=True,
                              timeout=120)

    assert pr.outputs["suite"]["exit"] == "1"
    assert pr.outputs["compare"]["exit"] == "1"
    assert gate.returncode == 1
    assert "significant regression against the baseline" in gate.stdout
    comment = (repo / "costar-comment.md").read_text()
    assert comment.startswith("<!-- costar -->")
    assert "Significant regression" in comment
    assert "| `orders` | 5/5" in comment
    assert "❌ regressed" in comment
    assert "Cause: **agent changed**" in comment
    assert f"git {base_sha[:10]} → {head_sha[:10]}" in comment.replace("\\", "")
    assert comment in (repo / ".gh-step-summary").read_text()  # the job summary has it too
    assert (repo / "costar-report.html").stat().st_size > 1000
    assert "<testsuite" in (repo / "costar-junit.xml").read_text()
    assert pr.step_ids()[:4] == ["actions/checkout@v5", "actions/setup-python@v6", "install", "baseline"]
    rows = [line for line in runs.stdout.splitlines() if "shop-agent" in line]
    assert ["feature" in rows[0], "main" in rows[1]] == [True, True]  # newest first, each with its branch


class FakeGitLab:
    """The two GitLab API calls the merge-request job makes: the baseline artifact, and the note."""

    def __init__(self, artifact_zip: bytes) -> None:
        self.artifact = artifact_zip
        self.notes: list[dict[str, Any]] = []
        self.downloads: list[str] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None: ...

            def do_GET(self) -> None:
                url = urlsplit(self.path)
                ok = (url.path == "/api/v4/projects/42/jobs/artifacts/main/download"
                      and parse_qs(url.query).get("job") == ["costar:baseline"]
                      and self.headers.get("JOB-TOKEN") == "job-token")
                fake.downloads.append(self.path)
                self.send_response(200 if ok else 404)
                self.end_headers()
                if ok:
                    self.wfile.write(fake.artifact)

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
                fake.notes.append({"path": self.path, "token": self.headers.get("PRIVATE-TOKEN"),
                                   "body": parse_qs(body).get("body", [""])[0]})
                self.send_response(201)
                self.end_headers()
                self.wfile.write(b"{}")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/api/v4"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeGitLab:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)


def zip_folder(folder: Path, *paths: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for rel in paths:
            target = folder / rel
            for f in [target] if target.is_file() else sorted(p for p in target.rglob("*") if p.is_file()):
                z.write(f, f.relative_to(folder))
    return buf.getvalue()


@pytest.fixture
def gitlab_repo(tmp_path: Path) -> Iterator[tuple[Path, ScriptedModelServer]]:
    with ScriptedModelServer(model_rules()) as model:
        yield make_repo(tmp_path / "repo", model.base_url, "gitlab"), model


@pytest.mark.slow
def test_gitlab_merge_request_flow(gitlab_repo: tuple[Path, ScriptedModelServer]) -> None:
    repo, _ = gitlab_repo
    ci = repo / ".gitlab" / "costar.gitlab-ci.yml"
    assert "local: .gitlab/costar.gitlab-ci.yml" in (repo / ".gitlab-ci.yml").read_text()
    push_env = base_env(CI_PIPELINE_SOURCE="push", CI_COMMIT_BRANCH="main", CI_DEFAULT_BRANCH="main")
    baseline = run_gitlab_job(ci, "costar:baseline", repo, push_env)
    assert baseline.returncode == 0, baseline.stdout + baseline.stderr
    artifact = zip_folder(repo, ".costar", "costar-report.html", "costar-junit.xml")

    clean_checkout(repo)
    head_commit(repo)
    with FakeGitLab(artifact) as gitlab:
        mr_env = base_env(CI_PIPELINE_SOURCE="merge_request_event", CI_MERGE_REQUEST_TARGET_BRANCH_NAME="main",
                          CI_MERGE_REQUEST_SOURCE_BRANCH_NAME="feature", CI_MERGE_REQUEST_IID="3",
                          CI_PROJECT_ID="42", CI_API_V4_URL=gitlab.url, CI_JOB_TOKEN="job-token",
                          COSTAR_GITLAB_TOKEN="api-token")
        mr = run_gitlab_job(ci, "costar:merge-request", repo, mr_env)

    assert mr.returncode == 1, mr.stdout + mr.stderr
    assert "a significant regression against the baseline" in mr.stdout
    assert len(gitlab.downloads) == 1
    assert len(gitlab.notes) == 1
    note = gitlab.notes[0]
    assert note["path"] == "/api/v4/projects/42/merge_requests/3/notes"
    assert note["token"] == "api-token"
    comment = (repo / "costar-comment.md").read_text()
    assert note["body"] == comment
    assert "Significant regression" in comment
    assert "Cause: **agent changed**" in comment
