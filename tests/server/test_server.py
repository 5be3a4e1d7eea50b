"""costar server, in process (uvicorn in a thread, real HTTP on loopback), on both stores: ingest,
assembly, amendments, routing, backpressure, bounds, tokens, redaction, retention and the API."""

from __future__ import annotations

import concurrent.futures
import contextlib
import gzip
import json
import time
from pathlib import Path

import httpx
import pytest
from google.protobuf import json_format
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

from costar.errors import ConfigError
from costar.server.app import CostarServer
from costar.server.auth import create_token, revoke_token
from costar.server.config import ServerConfig, load_server_config
from costar.server.retention import prune
from costar.verdict import Verdict
from tests.server.conftest import Running
from tests.server.test_retention_blobs import age_blob
from tests.support.paths import REPO
from tests.support.server import agent_spans, encode, span_ids, trace_ids, wait_for


def test_spans_are_acknowledged_assembled_and_readable_through_the_api(make_server) -> None:
    srv = make_server()
    spans = agent_spans(3)
    r = srv.post(encode(spans))
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/x-protobuf"
    ids = trace_ids(spans)
    for tid in ids:
        wait_for(lambda tid=tid: srv.stored(tid), what=f"trace {tid}")
    page = srv.api("/traces").json()
    assert {t["trace_id"] for t in page["items"]} == ids
    assert all(t["project"] == "default" and t["service"] == "shop-agent" and t["spans"] == 3 for t in page["items"])
    tid = sorted(ids)[0]
    head = srv.api(f"/traces/{tid}").json()
    assert head["spans_total"] == 3
    assert head["trace"]["input"] == "Where is my order?"
    assert head["trace"]["output"] == "It has shipped."
    assert head["trace"]["metadata"]["costar.project"] == "default"
    assert head["trace"]["totals"]["input_tokens"] == 120
    spans_page = srv.api(f"/traces/{tid}/spans", params={"limit": 2}).json()
    assert spans_page["total"] == 3
    assert len(spans_page["items"]) == 2
    assert spans_page["next"] == "2"
    rest = srv.api(f"/traces/{tid}/spans", params={"offset": 2}).json()
    assert rest["next"] is None
    assert {s["name"] for s in spans_page["items"] + rest["items"]} == {
        "invoke_agent shop", "chat gpt-4.1-mini", "execute_tool lookup_order"}
    llm = srv.api(f"/traces/{tid}/spans", params={"kind": "LLM"}).json()["items"]
    assert [s["attributes"]["gen_ai.input.messages"][0]["parts"][0]["content"] for s in llm] == ["Where is my order?"]
    assert srv.api("/traces/nope").status_code == 404


def test_json_and_gzip_bodies_are_accepted(make_server) -> None:
    srv = make_server()
    json_spans, gz_spans = agent_spans(1), agent_spans(1)
    doc = json_format.MessageToDict(encode_spans(json_spans))
    # OTLP/JSON ids are hex, not protobuf-JSON base64
    for rs in doc["resourceSpans"]:
        for ss in rs["scopeSpans"]:
            for sp in ss["spans"]:
                for key in ("traceId", "spanId", "parentSpanId"):
                    if key in sp:
                        import base64

                        sp[key] = base64.b64decode(sp[key]).hex()
    r = httpx.post(srv.url + "/v1/traces", content=json.dumps(doc), headers={"Content-Type": "application/json"})
    assert r.status_code == 200
    assert r.json() == {}
    r = srv.post(gzip.compress(encode(gz_spans)), {"Content-Encoding": "gzip"})
    assert r.status_code == 200
    for tid in trace_ids(json_spans) | trace_ids(gz_spans):
        wait_for(lambda tid=tid: srv.stored(tid), what=f"trace {tid}")


def test_bad_requests_are_refused_with_the_receivers_errors(make_server) -> None:
    srv = make_server(limits={"max_body": 2048})
    assert srv.post(b"\x0a\xff\xff garbage").status_code == 400
    r = httpx.post(srv.url + "/v1/traces", content=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 400
    assert "malformed OTLP payload" in r.json()["message"]
    assert httpx.post(srv.url + "/v1/traces", content=b"{}", headers={"Content-Type": "text/plain"}).status_code == 415
    big = encode(agent_spans(20))
    assert len(big) > 2048
    assert srv.post(big).status_code == 413
    bomb = gzip.compress(b"\0" * (1 << 20))
    assert len(bomb) < 2048
    assert srv.post(bomb, {"Content-Encoding": "gzip"}).status_code == 413
    m = srv.server.metrics()
    assert m["costar_ingest_requests_rejected_total"] == {"400": 2, "413": 2, "415": 1}
    assert srv.server.tables.pending_counts() == (0, 0)


def test_a_trace_waits_for_its_root_then_for_idle_time(make_server) -> None:
    srv = make_server(idle=0.5)
    spans = agent_spans(1)
    children = [s for s in spans if s.parent is not None]
    root = [s for s in spans if s.parent is None]
    tid = next(iter(trace_ids(spans)))
    assert srv.post(encode(children)).status_code == 200
    wait_for(lambda: srv.server.assembler.stats.open_spans == 2, what="children held open")
    # A whole trace posted after the children is stored once idle; the children were idle longer, so
    # when it is stored they are past the idle time too: still open, because the root has not arrived.
    later = agent_spans(1, text="a later question")
    later_id = next(iter(trace_ids(later)))
    assert srv.post(encode(later)).status_code == 200
    wait_for(lambda: srv.stored(later_id), what="the later, whole trace")
    assert srv.stored(tid) is None
    assert srv.server.tables.pending_counts() == (1, 2)
    assert srv.post(encode(root)).status_code == 200
    rec = wait_for(lambda: srv.stored(tid), what="the trace once its root arrived")
    assert rec.spans == 3
    assert rec.incomplete is False
    assert srv.server.tables.pending_counts() == (0, 0)  # the write-ahead rows went with it


def test_late_spans_amend_a_stored_trace_and_replays_change_nothing(make_server) -> None:
    srv = make_server()
    spans = agent_spans(1)
    tid = next(iter(trace_ids(spans)))
    first = [s for s in spans if s.name != "execute_tool lookup_order"]
    late = [s for s in spans if s.name == "execute_tool lookup_order"]
    assert srv.post(encode(first)).status_code == 200
    wait_for(lambda: srv.stored(tid), what="first version")
    assert srv.server.store.count_spans(tid) == 2
    assert srv.post(encode(late)).status_code == 200
    rec = wait_for(lambda: (r := srv.stored(tid)) and r.amended == 1 and r, what="amendment")
    assert rec.spans == 3
    trace = srv.server.store.get_trace(tid)
    assert trace.metadata["costar.server"]["amended"] == 1
    assert {s.span_id for s in trace.spans} == span_ids(spans)
    assert srv.server.assembler.stats.traces_amended == 1
    # The same span again (an exporter retrying a request that had succeeded): nothing changes.
    assert srv.post(encode(late)).status_code == 200
    wait_for(lambda: srv.server.assembler.stats.duplicates == 1, what="the duplicate noticed")
    assert srv.stored(tid).amended == 1
    assert srv.server.tables.pending_counts() == (0, 0)


def test_spans_are_routed_by_header_resource_attribute_service_and_default(make_server) -> None:
    srv = make_server(services={"billing-*": "billing"}, default_project="misc")
    by_header = agent_spans(1)
    by_attr = agent_spans(1, resource={"costar.project": "shop"})
    by_service = agent_spans(1, service="billing-api")
    fallback = agent_spans(1, service="other")
    assert srv.post(encode(by_header), {"X-Costar-Project": "support"}).status_code == 200
    for batch in (by_attr, by_service, fallback):
        assert srv.post(encode(batch)).status_code == 200
    expected = {next(iter(trace_ids(by_header))): "support", next(iter(trace_ids(by_attr))): "shop",
                next(iter(trace_ids(by_service))): "billing", next(iter(trace_ids(fallback))): "misc"}
    for tid, project in expected.items():
        assert wait_for(lambda tid=tid: srv.stored(tid), what=tid).project == project
    projects = {p["project"]: p["traces"] for p in srv.api("/projects").json()}
    assert projects == {"support": 1, "shop": 1, "billing": 1, "misc": 1}
    assert [t["trace_id"] for t in srv.api("/traces", params={"project": "shop"}).json()["items"]] == \
        [next(iter(trace_ids(by_attr)))]
    assert srv.post(encode(agent_spans(1)), {"X-Costar-Project": "bad name!"}).status_code == 400


def test_listing_pages_with_a_cursor(make_server) -> None:
    srv = make_server()
    spans = agent_spans(5)
    assert srv.post(encode(spans)).status_code == 200
    wait_for(lambda: srv.server.assembler.stats.traces_stored == 5, what="five traces")
    seen: list[str] = []
    cursor = None
    for _ in range(5):
        page = srv.api("/traces", params={"limit": 2, **({"cursor": cursor} if cursor else {})}).json()
        seen += [t["trace_id"] for t in page["items"]]
        cursor = page["next"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(trace_ids(spans))
    assert len(seen) == 5
    assert srv.api("/traces", params={"cursor": "!!"}).status_code == 400


def test_memory_stays_bounded_the_oldest_open_traces_are_stored_early(make_server) -> None:
    # Traces without their root stay open, so open spans pile up to the limit. The assembler runs in
    # this process (assembly: thread) so the test can see its open traces.
    srv = make_server(limits={"max_open_spans": 1000}, idle=60, assembly="thread")
    accepted: set[str] = set()
    peak = 0
    for _ in range(40):
        batch = agent_spans(30, root=False)
        assert srv.post(encode(batch)).status_code == 200
        accepted |= span_ids(batch)
        peak = max(peak, srv.server.assembler.stats.open_spans)
    assert len(accepted) == 2400
    wait_for(lambda: srv.server.assembler.stats.open_spans <= 1000, what="room made")
    assert peak <= 1000 + 60  # the limit plus the request that crossed it
    assert srv.server.assembler.stats.traces_incomplete > 0
    rec = srv.server.tables.list_traces(limit=1)[0]
    assert rec.incomplete is True
    assert "too many open spans" in srv.server.store.get_trace(rec.trace_id).metadata["costar.server"]["incomplete"]
    # Every acknowledged span is stored or still open (and in the write-ahead log): none dropped. The
    # open ones are read first: a trace stored in between is then found among the stored ones.
    open_now = {sid for o in list(srv.server.assembler._open.values()) for sid in o.spans}
    pending = srv.server.tables.pending_counts()[1]
    stored = set()
    for tid in srv.server.store.trace_ids():
        stored |= {s.span_id for s in srv.server.store.get_trace(tid).spans}
    assert accepted == stored | open_now
    assert pending >= len(open_now)


@contextlib.contextmanager
def store_locked(store):
    """Another connection holds the store's write lock: the server cannot commit anything."""
    if store.backend == "sqlite":
        import sqlite3

        conn = sqlite3.connect(store.db_path, isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            conn.execute("ROLLBACK")
            conn.close()
    else:
        import psycopg

        with psycopg.connect(store.url) as conn:
            conn.execute("LOCK TABLE ingest_batches IN ACCESS EXCLUSIVE MODE")
            try:
                yield
            finally:
                conn.rollback()


def test_when_it_cannot_keep_up_it_answers_503_with_retry_after_and_loses_nothing(make_server) -> None:
    srv = make_server(limits={"max_inflight_bytes": 20_000, "retry_after": 2})
    batches = [agent_spans(8) for _ in range(12)]
    bodies = [encode(b) for b in batches]
    assert all(len(b) > 5000 for b in bodies)
    results: dict[int, httpx.Response] = {}
    pool = concurrent.futures.ThreadPoolExecutor(12)
    try:
        with store_locked(srv.server.store):
            futures = {pool.submit(srv.post, body): i for i, body in enumerate(bodies)}
            # The first requests wait for the store; the rest find the server busy and are refused.
            # Wait for the answers, not the server's count: it counts a refusal before the client reads it.
            wait_for(lambda: sum(f.done() for f in futures) >= 6, what="refusals answered")
            for f in [f for f in futures if f.done()]:
                results[futures[f]] = f.result()
            assert len(results) >= 6
            assert all(r.status_code == 503 for r in results.values())
            assert all(r.headers["Retry-After"] == "2" for r in results.values())
            assert srv.server.ingestor.stats.accepted == 0  # nothing acknowledged while the store is locked
    finally:
        pool.shutdown(wait=True)
    for f, i in futures.items():
        results[i] = f.result()
    ok = [i for i, r in results.items() if r.status_code == 200]
    assert ok, "the waiting requests never completed"
    assert len(ok) + sum(r.status_code == 503 for r in results.values()) == 12
    for i in ok:
        for tid in trace_ids(batches[i]):
            wait_for(lambda tid=tid: srv.stored(tid), what=f"acknowledged trace {tid}")
    assert srv.server.metrics()["costar_ingest_requests_rejected_total"]["503"] == 12 - len(ok)


# --------------------------------------------------------------------------- tokens


def test_tokens_refuse_what_they_must(make_server) -> None:
    srv = make_server(require_tokens=True)
    tables = srv.server.tables
    ingest = create_token(tables, "ingest", project="shop", name="shop exporter").token
    other = create_token(tables, "ingest", project="billing").token
    api = create_token(tables, "api", name="dashboard").token
    body = encode(agent_spans(1))

    def bearer(t: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {t}"}

    assert srv.post(body).status_code == 401  # no token
    assert srv.post(body, bearer("cst_ingest_nope_nope")).status_code == 401  # wrong token
    assert srv.post(body, {"Authorization": "Basic abc"}).status_code == 401
    assert srv.post(body, bearer(api)).status_code == 403  # API token on ingest
    assert srv.api("/traces").status_code == 401  # no token on the API
    assert srv.api("/traces", headers=bearer(ingest)).status_code == 403  # ingest token on the API
    assert srv.api("/traces", headers=bearer("cst_api_x_y")).status_code == 401
    assert httpx.get(srv.url + "/metrics").status_code == 401
    assert httpx.get(srv.url + "/healthz").status_code == 200  # probes need no token
    r = srv.post(body, {**bearer(ingest), "X-Costar-Project": "billing"})  # a header cannot override the token
    assert r.status_code == 403
    assert srv.post(body, bearer(ingest)).status_code == 200
    assert srv.api("/traces", headers=bearer(api)).status_code == 200
    wait_for(lambda: srv.server.assembler.stats.traces_stored == 1, what="the trace")
    assert [p["project"] for p in srv.api("/projects", headers=bearer(api)).json()] == ["shop"]
    # Revoked: refused from the next request on.
    shop_id = next(t.token_id for t in tables.tokens() if t.project == "shop")
    revoke_token(tables, shop_id)
    assert srv.post(body, bearer(ingest)).status_code == 401
    assert "revoked" in srv.post(body, bearer(ingest)).text
    assert srv.post(encode(agent_spans(1)), bearer(other)).status_code == 200
    stored = {t.token_id: t for t in tables.tokens()}
    assert stored[shop_id].revoked_at is not None
    assert stored[shop_id].last_used_at is not None
    assert all(t.digest not in (ingest, other, api) for t in stored.values())
    assert all(len(t.digest) == 64 for t in stored.values())


def test_a_token_of_one_project_cannot_amend_another_projects_trace(make_server) -> None:
    srv = make_server(require_tokens=True)
    shop = create_token(srv.server.tables, "ingest", project="shop").token
    billing = create_token(srv.server.tables, "ingest", project="billing").token
    spans = agent_spans(1)
    tid = next(iter(trace_ids(spans)))
    first = [s for s in spans if s.name != "execute_tool lookup_order"]
    late = [s for s in spans if s.name == "execute_tool lookup_order"]
    assert srv.post(encode(first), {"Authorization": f"Bearer {shop}"}).status_code == 200
    wait_for(lambda: srv.stored(tid), what="the trace")
    assert srv.post(encode(late), {"Authorization": f"Bearer {billing}"}).status_code == 200
    wait_for(lambda: srv.server.assembler.stats.spans_refused == 1, what="the refusal")
    assert srv.stored(tid).amended == 0
    assert srv.server.store.count_spans(tid) == 2
    assert srv.server.metrics()["costar_spans_refused_total"] == 1


def test_listening_beyond_loopback_requires_tokens(store) -> None:
    with pytest.raises(ConfigError, match="requires tokens"):
        CostarServer(ServerConfig(host="0.0.0.0", require_tokens=False), store)
    srv = CostarServer(ServerConfig(host="0.0.0.0"), store)
    assert srv.auth.required is True


# --------------------------------------------------------------------------- redaction


def test_pii_is_redacted_before_anything_is_stored_even_the_write_ahead_log(make_server) -> None:
    srv = make_server(idle=60, assembly="thread", projects={  # the write-ahead rows are read before they are stored
        "*": {"redact": {"patterns": {"email": r"[\w.+-]+@[\w-]+\.[\w.]+"}}},
        "shop": {"redact": {"patterns": {"card": r"\b(?:\d[ -]?){13,16}\b"}, "attributes": ["enduser.*"]}}})
    text = "I am jane.doe@example.com, card 4111 1111 1111 1111, key sk-proj-abcdefghijklmnopqrstuvwx"
    spans = agent_spans(1, text=text, resource={"costar.project": "shop", "enduser.id": "jane-42"})
    other = agent_spans(1, text=text)
    assert srv.post(encode(spans)).status_code == 200
    assert srv.post(encode(other)).status_code == 200
    rows = srv.server.tables.pending_batches()
    assert len(rows) == 2
    shop_raw, misc_raw = (data for _, data in rows)
    for secret in (b"jane.doe@example.com", b"4111 1111", b"sk-proj-abc", b"jane-42"):
        assert secret not in shop_raw
    for secret in (b"jane.doe@example.com", b"sk-proj-abc"):
        assert secret not in misc_raw
    assert b"[REDACTED:email]" in shop_raw
    assert b"[REDACTED:card]" in shop_raw
    srv.server.assembler.store_due(force=True)
    shop = srv.server.store.get_trace(next(iter(trace_ids(spans))))
    assert shop.input == "I am [REDACTED:email], card [REDACTED:card], key [REDACTED]"
    llm = next(s for s in shop.spans if s.kind.value == "LLM")
    assert llm.attributes["gen_ai.input.messages"][0]["parts"][0]["content"] == shop.input
    assert shop.metadata["otel.resource"]["enduser.id"] == "[REDACTED]"
    misc = srv.server.store.get_trace(next(iter(trace_ids(other))))
    assert misc.input == "I am [REDACTED:email], card 4111 1111 1111 1111, key [REDACTED]"  # no card rule there


def test_redaction_rules_are_validated_with_file_and_line(tmp_path: Path) -> None:
    f = tmp_path / "server.yaml"
    f.write_text("projects:\n  shop:\n    redact:\n      patterns:\n        bad: '(unclosed'\n")
    with pytest.raises(ConfigError, match=r"server.yaml:4: .*not a valid regular expression"):
        load_server_config(f)
    f.write_text("projects:\n  shop:\n    redact:\n      patterns:\n        after_at: '(?<=@)\\w+'\n")
    with pytest.raises(ConfigError, match=r"server.yaml:4: .*'after_at' .*RE2 syntax.*no lookaround") as err:
        load_server_config(f)
    assert "\n" not in str(err.value)
    f.write_text("projects:\n  shop:\n    redact:\n      patterns:\n        empty: 'x*'\n")
    with pytest.raises(ConfigError, match="matches the empty string"):
        load_server_config(f)
    f.write_text("idle: soon\n")
    with pytest.raises(ConfigError, match=r"server.yaml:1: idle: 'soon' is not a duration"):
        load_server_config(f)
    f.write_text("projects:\n  shop:\n    retention:\n      max_size: lots\n")
    with pytest.raises(ConfigError, match=r"server.yaml:4: .*max_size: 'lots' is not a size"):
        load_server_config(f)
    f.write_text("porrt: 1\n")
    with pytest.raises(ConfigError, match="porrt: unknown setting"):
        load_server_config(f)
    with pytest.raises(ConfigError, match="no such server configuration file"):
        load_server_config(tmp_path / "missing.yaml")
    f.write_text("idle: 2s\nprojects:\n  shop:\n    retention: {max_age: 30d, max_size: 10GB}\n")
    cfg = load_server_config(f)
    assert cfg.idle == 2.0
    assert cfg.retention("shop").max_age == 30 * 86400
    assert cfg.retention("shop").max_size == 10 * 1000**3


# --------------------------------------------------------------------------- retention


def _ingest(srv: Running, n: int, project: str) -> list[str]:
    spans = agent_spans(n, resource={"costar.project": project})
    assert srv.post(encode(spans)).status_code == 200
    srv.server.assembler.store_due(force=True)
    ids = sorted(trace_ids(spans))
    wait_for(lambda: all(srv.stored(t) for t in ids), what="stored")
    return ids


def test_retention_by_age_and_size_keeps_labeled_traces_and_deletes_verdicts_and_blobs(make_server) -> None:
    srv = make_server(projects={"shop": {"retention": {"max_age": "1h"}},
                                "big": {"retention": {"max_size": 5000}}}, assembly="thread")  # stores on demand
    store = srv.server.store
    old = _ingest(srv, 3, "shop")
    new = _ingest(srv, 2, "shop")
    tables = srv.server.tables
    # Make the first three an hour and a half old.
    with store._write() as c:
        for tid in old:
            c.execute("UPDATE server_traces SET completed_at=? WHERE trace_id=?", (time.time() - 5400, tid))
    # One old trace carries a verdict and an artifact; another a human label.
    blob = store.put_blob(b"a file only this trace has")
    age_blob(store, blob, 2 * 86400)  # retention spares blobs stored within its grace period
    t0 = store.get_trace(old[0])
    from costar.trace.model import Artifact

    t0.artifacts = [Artifact(path="out.txt", sha256=blob, size=26)]
    store.write_trace(t0)
    store.write_verdicts([Verdict(trace_id=old[0], name="ok", value=True, passed=True, source="code")])
    store.write_labels([Verdict(trace_id=old[1], name="ok", value=True, passed=True, source="human",
                                source_id="ann")])
    dry = prune(tables, srv.server.config, dry_run=True)
    assert {p.project: p.traces for p in dry.projects} == {"shop": 2}
    assert set(store.trace_ids()) >= set(old)
    report = prune(tables, srv.server.config)
    shop = next(p for p in report.projects if p.project == "shop")
    assert (shop.traces, shop.verdicts, shop.blobs, shop.kept_labeled) == (2, 1, 1, 1)
    assert shop.spans == 6
    left = set(store.trace_ids())
    assert old[0] not in left
    assert old[2] not in left
    assert old[1] in left  # labeled
    assert set(new) <= left
    assert store.get_blob(blob) is None
    assert store.verdicts(trace_ids=[old[0]]) == []
    # By size: the oldest go until the project fits.
    big = _ingest(srv, 6, "big")
    sizes = tables.server_traces(big)
    total = sum(r.bytes for r in sizes.values())
    assert total > 5000
    report = prune(tables, srv.server.config, project="big")
    assert report.projects[0].traces > 0
    remaining = tables.server_traces(big)
    assert sum(r.bytes for r in remaining.values()) <= 5000
    oldest_kept = min(r.start_ns for r in remaining.values())
    assert all(r.start_ns < oldest_kept for t, r in sizes.items() if t not in remaining)


def test_the_readme_server_yaml_example_loads(tmp_path: Path) -> None:
    import re

    readme = (REPO / "README.md").read_text()
    block = re.search(r"```yaml\n(# server.yaml.*?)```", readme, re.S)
    assert block is not None
    (tmp_path / "server.yaml").write_text(block.group(1))
    cfg = load_server_config(tmp_path / "server.yaml")
    assert set(cfg.redaction("shop").patterns) == {"email", "card"}
    assert cfg.retention("shop").max_age == 30 * 86400
    assert cfg.project_for_service("shop-eu") == "shop"


def test_a_runs_trace_with_the_same_id_is_never_overwritten(make_server) -> None:
    from costar.store.base import Run
    from costar.trace.model import Trace

    srv = make_server()
    spans = agent_spans(1)
    tid = next(iter(trace_ids(spans)))
    run = Run()
    srv.server.store.create_run(run)
    srv.server.store.write_trace(Trace(trace_id=tid, run_id=run.run_id, scenario_id="s", output="the run's"))
    assert srv.post(encode(spans)).status_code == 200
    wait_for(lambda: srv.server.assembler.stats.spans_refused == 3, what="the refusal")
    kept = srv.server.store.get_trace(tid)
    assert kept.run_id == run.run_id
    assert kept.output == "the run's"
    assert srv.stored(tid) is None
    assert srv.server.tables.pending_counts() == (0, 0)
