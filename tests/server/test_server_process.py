"""costar server as a real process, on both stores: kill -9 mid-ingest loses no acknowledged span; an
agent instrumented with the OpenTelemetry SDK (its own exporter, unmodified) sends traffic and the
traces are readable through the API and the CLI; the token and prune commands."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.support.cli import child_env, costar_cmd
from tests.support.server import (
    PROTOBUF,
    ServerProcess,
    agent_spans,
    encode,
    run_otel_agent,
    server_process,
    span_ids,
    store_location,
    stored_span_ids,
    wait_for,
)


@pytest.fixture
def location(store) -> str:
    """The store the server process uses: the test's store, by folder or URL."""
    return store_location(store)


@pytest.mark.slow
def test_kill_9_mid_ingest_loses_no_acknowledged_span(store, location: str, tmp_path: Path) -> None:
    (tmp_path / "server.yaml").write_text("idle: 3s\n")
    srv = ServerProcess(location, tmp_path).start()
    acknowledged: set[str] = set()
    lock = threading.Lock()
    stop = threading.Event()
    errors: list[str] = []

    def send() -> None:
        with httpx.Client(timeout=10) as client:
            while not stop.is_set():
                batch = agent_spans(20)
                try:
                    r = client.post(srv.url + "/v1/traces", content=encode(batch), headers=PROTOBUF)
                except httpx.HTTPError:
                    continue  # the server is gone: nothing was acknowledged
                if r.status_code == 200:
                    with lock:
                        acknowledged.update(span_ids(batch))
                elif r.status_code != 503:
                    errors.append(f"{r.status_code} {r.text[:200]}")

    senders = [threading.Thread(target=send) for _ in range(4)]
    for t in senders:
        t.start()
    try:
        wait_for(lambda: len(acknowledged) >= 3000, timeout=120, what="3000 acknowledged spans")
        srv.kill()  # kill -9 while the senders keep posting
    finally:
        stop.set()
        for t in senders:
            t.join(30)
    assert not errors
    with lock:
        acked = set(acknowledged)
    from costar.store.server_tables import ServerTables

    _rows, pending = ServerTables(store).pending_counts()
    assert pending > 0, "nothing was left in the write-ahead log: the kill did not happen mid-ingest"
    missing_before = acked - stored_span_ids(store)
    assert missing_before, "every span was already stored: the kill did not happen mid-ingest"
    with server_process(location, tmp_path) as again:
        wait_for(lambda: not (acked - stored_span_ids(store)), timeout=120,
                 what="every acknowledged span stored after the restart")
        metrics = again.get("/api/v1/server").json()["stats"]
        assert metrics["costar_wal_recovered_spans"] >= len(missing_before)
    assert ServerTables(store).pending_counts() == (0, 0)


@pytest.mark.slow
def test_an_otel_sdk_agent_sends_traces_readable_through_the_api_and_the_cli(location: str, tmp_path: Path) -> None:
    (tmp_path / "server.yaml").write_text("idle: 0.5s\nservices:\n  weather-*: weather\n")
    cities = ["Paris", "Oslo", "Lima"]
    with server_process(location, tmp_path) as srv:
        run_otel_agent(tmp_path, srv.url, cities)
        page = wait_for(lambda: (p := srv.get("/api/v1/traces", params={"project": "weather"}).json())
                        and len(p["items"]) == 3 and p, what="three traces")
        assert {t["service"] for t in page["items"]} == {"weather-agent"}
        assert all(t["spans"] == 3 and not t["incomplete"] for t in page["items"])
        outputs = set()
        for item in page["items"]:
            head = srv.get(f"/api/v1/traces/{item['trace_id']}").json()
            outputs.add(head["trace"]["output"])
            assert head["trace"]["agent"]["name"] == "weather"
            assert head["trace"]["totals"]["llm_calls"] == 1
            assert head["trace"]["totals"]["tool_calls"] == 1
            assert head["trace"]["tools"] == [] or isinstance(head["trace"]["tools"], list)
        assert outputs == {f"It is rainy in {c}." for c in cities}
        tid = page["items"][0]["trace_id"]
        # The CLI reads the same store: the listing and one trace's span tree.
        listed = subprocess.run([*costar_cmd(), "server", "traces", "--project", "weather", "--json",
                                 "--store", location], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                                env=child_env())
        assert listed.returncode == 0, listed.stderr
        assert {t["trace_id"] for t in json.loads(listed.stdout)["items"]} == {t["trace_id"] for t in page["items"]}
        shown = subprocess.run([*costar_cmd(), "traces", "show", tid, "--store", location], cwd=tmp_path,
                               capture_output=True, text=True, timeout=120, env=child_env())
        assert shown.returncode == 0, shown.stderr
        assert "invoke_agent weather" in shown.stdout
        assert "execute_tool get_weather" in shown.stdout
        health = srv.get("/readyz")
        assert health.status_code == 200
        metrics = srv.get("/metrics").text
        assert "costar_traces_stored_total 3" in metrics


@pytest.mark.slow
def test_tokens_through_the_cli_and_an_exporter_with_headers(location: str, tmp_path: Path) -> None:
    (tmp_path / "server.yaml").write_text("idle: 0.5s\nrequire_tokens: true\n")

    def costar(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*costar_cmd(), *args, "--store", location], cwd=tmp_path, capture_output=True,
                              text=True, timeout=120, env=child_env())

    made = costar("server", "token", "create", "--kind", "ingest", "--project", "shop", "--name", "exporter", "--json")
    assert made.returncode == 0, made.stderr
    ingest = json.loads(made.stdout)
    api = json.loads(costar("server", "token", "create", "--kind", "api", "--json").stdout)
    bad = costar("server", "token", "create", "--kind", "ingest")
    assert bad.returncode == 2
    assert bad.stderr.strip() == "error: an ingest token sends spans to one project; give it with --project NAME"
    with server_process(location, tmp_path) as srv:
        run_otel_agent(tmp_path, srv.url, ["Rome"], OTEL_EXPORTER_OTLP_HEADERS=f"Authorization=Bearer {ingest['token']}")
        headers = {"Authorization": f"Bearer {api['token']}"}
        page = wait_for(lambda: srv.get("/api/v1/traces", headers=headers).json()["items"], what="the trace")
        assert [t["project"] for t in page] == ["shop"]
        listed = costar("server", "token", "list")
        assert ingest["token_id"] in listed.stdout
        assert ingest["token"] not in listed.stdout
        revoked = costar("server", "token", "revoke", ingest["token_id"])
        assert revoked.returncode == 0, revoked.stderr
        r = httpx.post(srv.url + "/v1/traces", content=encode(agent_spans(1)),
                       headers={**PROTOBUF, "Authorization": f"Bearer {ingest['token']}"})
        assert r.status_code == 401
        again = costar("server", "token", "revoke", ingest["token_id"])
        assert again.returncode == 2
        assert "already revoked" in again.stderr


def test_store_prune_applies_retention_from_server_yaml(store, location: str, tmp_path: Path) -> None:
    from costar.server.app import CostarServer
    from costar.server.config import ServerConfig
    from costar.server.wal import encode as wal_encode

    srv = CostarServer(ServerConfig(assembly="thread"), store)  # stored on demand, in this process
    spans = agent_spans(4, resource={"costar.project": "shop"})
    groups = srv.ingestor._groups(encode(spans), "application/x-protobuf", None)
    row = srv.tables.append_batches([(12, wal_encode(groups))])[0]
    srv.assembler.add(row, groups)
    srv.assembler.store_due(force=True)
    with store._write() as c:
        c.execute("UPDATE server_traces SET completed_at=?", (time.time() - 3 * 86400,))
    (tmp_path / "server.yaml").write_text("projects:\n  shop:\n    retention:\n      max_age: 2d\n")
    dry = subprocess.run([*costar_cmd(), "store", "prune", location, "--dry-run"], cwd=tmp_path, capture_output=True,
                         text=True, timeout=120, env=child_env())
    assert dry.returncode == 0, dry.stderr
    assert "shop: would delete 4 trace(s)" in dry.stdout
    assert len(store.trace_ids()) == 4
    done = subprocess.run([*costar_cmd(), "store", "prune", location, "--json"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120, env=child_env())
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["projects"][0]["traces"] == 4
    assert store.trace_ids() == []


def test_without_tokens_every_path_answers_only_loopback_host_names(tmp_path: Path) -> None:
    """DNS rebinding: a page elsewhere that points its own name at 127.0.0.1 sends that name as Host.
    Without tokens (loopback), the server answers such requests nowhere: not the pages, not the JSON
    API the pages call, not ingest."""
    with server_process(str(tmp_path / ".costar"), tmp_path) as srv, httpx.Client(base_url=srv.url) as client:
        port = srv.url.rsplit(":", 1)[1]
        foreign = {"host": f"rebound.example:{port}"}
        for method, path in (("GET", "/runs"), ("GET", "/api/v1/runs"), ("GET", "/api/v1/traces/x/tree"),
                             ("POST", "/v1/traces")):
            r = client.request(method, path, headers=foreign, content=encode(agent_spans(1)))
            assert r.status_code == 421, path
            assert r.text == "unexpected Host header; open this server via 127.0.0.1", path
        assert client.get("/api/v1/runs").status_code == 200
        assert client.get("/api/v1/runs", headers={"host": f"localhost:{port}"}).status_code == 200
        ok = client.post("/v1/traces", content=encode(agent_spans(1)),
                         headers={"content-type": "application/x-protobuf"})
        assert ok.status_code == 200


def test_bound_to_another_loopback_address_it_answers_that_name(tmp_path: Path) -> None:
    with server_process(str(tmp_path / ".costar"), tmp_path, args=["--host", "127.0.0.2"]) as srv, \
            httpx.Client(base_url=srv.url) as client:
        assert srv.url.startswith("http://127.0.0.2:")
        assert client.get("/runs").status_code == 200
        assert client.get("/api/v1/runs").status_code == 200
        assert client.get("/api/v1/runs", headers={"host": "rebound.example"}).status_code == 421
