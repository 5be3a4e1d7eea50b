"""/api/v1/views: each endpoint answers exactly what its command prints with --json, over real HTTP on
loopback, and a bad query is a one-line 400 or a 404 naming what is missing."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from costar._util.server import BackgroundServer
from costar.ui.app import create_ui_app
from tests.support.server import costar_cmd
from tests.support.webapp_seed import Seeded, seed_store


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seeded]:
    root = tmp_path_factory.mktemp("views")
    s = seed_store(root)
    (root / "costar.yaml").write_text("suite: scenarios\n")
    try:
        yield s
    finally:
        s.store.close()


@pytest.fixture(scope="module")
def api(seeded: Seeded) -> Iterator[httpx.Client]:
    with BackgroundServer(create_ui_app(seeded.store, project_dir=str(seeded.store.root.parent))) as srv, \
            httpx.Client(base_url=f"{srv.url}/api/v1/views", timeout=60) as client:
        yield client


def cli_json(cwd: Path, *args: str) -> object:
    done = subprocess.run([*costar_cmd(), *args, "--json"], cwd=cwd, capture_output=True, text=True, timeout=120)
    assert done.returncode in (0, 1), done.stderr
    return json.loads(done.stdout)


def test_each_view_is_what_its_command_prints(seeded: Seeded, api: httpx.Client) -> None:
    project = seeded.store.root.parent
    trace = seeded.traces[seeded.head_run][0]
    cases = [
        ("/runs", ["runs"]),
        ("/runs?all=true&limit=1", ["runs", "--all", "--limit", "1"]),
        (f"/runs/{seeded.head_run}/report", ["report", seeded.head_run]),
        ("/runs/latest/report", ["report"]),
        (f"/runs/{seeded.base_run}/traces", ["traces", "list", seeded.base_run]),
        (f"/traces/{quote(trace, safe='')}", ["traces", "show", trace]),
        (f"/traces/{quote(trace, safe='')}?max_spans=2&artifact_chars=10",
         ["traces", "show", trace, "--max-spans", "2", "--artifact-chars", "10"]),
        (f"/compare?base={seeded.base_run}&head={seeded.head_run}", ["compare", seeded.base_run, seeded.head_run]),
        (f"/compare?base={seeded.base_run}&head={seeded.head_run}&alpha=0.2&correction=none&attribution=false",
         ["compare", seeded.base_run, seeded.head_run, "--alpha", "0.2", "--correction", "none", "--no-attribution"]),
        (f"/runs/{seeded.head_run}/metrics", ["metrics", seeded.head_run]),
        (f"/runs/{seeded.head_run}/metrics?history=1&max=total_tokens=10",
         ["metrics", seeded.head_run, "--history", "1", "--max", "total_tokens=10"]),
    ]
    for path, command in cases:
        got = api.get(path)
        assert got.status_code == 200, (path, got.text)
        assert got.headers["content-type"] == "application/json"
        assert got.json() == cli_json(project, *command), path
    # The views say which they are, as docs/JSON.md lists them.
    kinds = [api.get(path).json()["kind"] for path, _ in cases[::2]]
    assert kinds == ["runs", "report", "traces", "trace", "comparison", "metrics"]


def test_bad_queries_are_one_line_errors(seeded: Seeded, api: httpx.Client) -> None:
    missing = api.get("/runs/0000dead/report")
    assert missing.status_code == 404
    assert "0000dead" in missing.json()["detail"]
    assert api.get("/traces/nope").status_code == 404
    origin = api.get("/runs?origin=mars")
    assert origin.status_code == 400
    assert origin.json()["detail"] == "unknown origin 'mars'; use one of cli, api, pytest, refine, import, ci, monitor"
    limit = api.get(f"/runs/{seeded.head_run}/metrics?max=tokens")
    assert limit.status_code == 400
    assert "max takes METRIC=LIMIT" in limit.json()["detail"]
    assert api.get(f"/compare?base={seeded.base_run}&correction=bonferroni").status_code == 422
    assert api.get("/compare").status_code == 422  # base is required
