"""/api/v1/views: each endpoint answers exactly what its command prints with --json, over real HTTP on
loopback, and a bad query is a one-line 400 or a 404 naming what is missing (503 only when the store
fails); trace ids holding '/' are read by every trace route of /api/v1."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from costar._util.server import BackgroundServer
from costar.errors import StoreError
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
def url(seeded: Seeded) -> Iterator[str]:
    with BackgroundServer(create_ui_app(seeded.store, project_dir=str(seeded.store.root.parent))) as srv:
        yield srv.url


@pytest.fixture(scope="module")
def api(url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{url}/api/v1/views", timeout=60) as client:
        yield client


@pytest.fixture(scope="module")
def api_v1(url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{url}/api/v1", timeout=60) as client:
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


AMBIGUOUS = "run id '2026120' is ambiguous (20261201-090000-ab1234, 20261202-090000-cd1234); give more of it"


@pytest.mark.parametrize(("path", "detail"), [
    ("/views/runs/2026120/report", AMBIGUOUS),
    ("/views/runs/2026120/traces", AMBIGUOUS),
    ("/views/runs/2026120/metrics", AMBIGUOUS),
    ("/views/compare?base=2026120", AMBIGUOUS),
    ("/views/compare?base=latest&head=2026120", AMBIGUOUS),
    ("/runs/2026120", AMBIGUOUS),
    ("/runs/2026120/traces", AMBIGUOUS),
    ("/views/runs/branch:/report", "bad run reference 'branch:': write branch:NAME or branch:NAME~N"),
    ("/views/compare?base=tag:", "bad run reference 'tag:': write tag:NAME or tag:NAME~N"),
    ("/runs/tag:x~y", "bad run reference 'tag:x~y': write tag:NAME or tag:NAME~N"),
    ("/traces/ab1234-revenue", "trace id 'ab1234-revenue' is the start of several trace ids; give more of it"),
    ("/views/traces/ab1234-revenue", "trace id 'ab1234-revenue' is the start of several trace ids; give more of it"),
])
def test_a_bad_or_ambiguous_reference_is_a_400_not_a_retry(api_v1: httpx.Client, path: str, detail: str) -> None:
    # 503 would tell a client to retry the same request; only a changed reference can succeed.
    r = api_v1.get(path)
    assert r.status_code == 400, r.text
    assert r.json() == {"detail": detail}


@pytest.mark.parametrize("path", ["/views/runs/2026120_-090000-cd1234/report", "/runs/2026120_-090000-cd1234",
                                  "/runs/2026120%25"])
def test_a_run_prefix_is_literal_over_http(api_v1: httpx.Client, path: str) -> None:
    r = api_v1.get(path)
    assert r.status_code == 404, r.text
    assert r.json()["detail"].startswith("no run '2026120")


def test_a_store_that_fails_is_still_a_503(seeded: Seeded, api_v1: httpx.Client,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    def unavailable(ref: str) -> str:
        raise StoreError("the store is locked by another process; retry in a moment")

    monkeypatch.setattr(seeded.store, "resolve_run_id", unavailable)
    for path in ("/views/runs/latest/report", "/runs/latest", "/views/compare?base=latest"):
        r = api_v1.get(path)
        assert r.status_code == 503, path
        assert r.json() == {"detail": "the store is locked by another process; retry in a moment"}


def test_a_trace_id_with_a_slash_is_read_by_every_trace_route(seeded: Seeded, api_v1: httpx.Client) -> None:
    tid = seeded.hostile_trace
    assert tid is not None
    assert "/" in tid
    listed = api_v1.get("/views/runs/latest/traces").json()
    assert tid in [t["trace_id"] for t in listed["traces"]]
    enc = quote(tid, safe="")
    detail = api_v1.get(f"/views/traces/{enc}")
    assert detail.status_code == 200, detail.text
    assert detail.json() == cli_json(seeded.store.root.parent, "traces", "show", tid)
    head = api_v1.get(f"/traces/{enc}")
    assert head.status_code == 200, head.text
    assert (head.json()["trace"]["trace_id"], head.json()["spans_total"]) == (tid, 3)
    spans = api_v1.get(f"/traces/{enc}/spans").json()
    assert [s["trace_id"] for s in spans["items"]] == [tid] * 3
    span_id = spans["items"][2]["span_id"]
    span = api_v1.get(f"/traces/{enc}/spans/{quote(span_id, safe='')}")
    assert span.status_code == 200, span.text
    assert span.json()["span_id"] == span_id
    assert [v["trace_id"] for v in api_v1.get(f"/traces/{enc}/verdicts").json()] == [tid]
    assert api_v1.get(f"/traces/{enc}/tree").json()["spans_total"] == 3
    assert api_v1.get(f"/traces/{enc}/tree/locate", params={"span_id": span_id}).status_code == 200
    # A prefix of such an id works too, and a missing one is the store's 404, not the router's.
    assert api_v1.get(f"/traces/{quote(tid[:10], safe='')}").json()["trace"]["trace_id"] == tid
    missing = api_v1.get("/views/traces/hostile%2Fnope")
    assert missing.status_code == 404
    assert missing.json()["detail"].startswith("no trace 'hostile/nope'")
