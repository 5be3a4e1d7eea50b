"""costar server's assembler in a child process, on both stores: traces stored and listeners fed
from the child; kill -9 of the child loses nothing (the next child replays the write-ahead log;
ingest answers 503 while none is ready); the child never outlives the server (shutdown, SIGTERM,
kill -9 of the server alone); rows the child replayed are not assembled twice when the server also
sends them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from costar._util.process import pid_alive
from costar._util.server import BackgroundServer
from costar.server.app import CostarServer
from costar.server.assembler import CompletedTrace
from costar.server.assembly_process import AssemblerProcess
from costar.server.assembly_worker import SETTINGS_ROW, frame
from costar.server.config import ServerConfig
from costar.server.wal import SpanGroup, span_fields
from costar.server.wal import encode as wal_encode
from costar.store.server_tables import ServerTables
from costar.trace.model import SpanKind, StatusCode, make_span
from tests.support.server import (
    PROTOBUF,
    ServerProcess,
    agent_spans,
    encode,
    span_ids,
    store_location,
    stored_span_ids,
    trace_ids,
    wait_for,
)


def _children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except (FileNotFoundError, ProcessLookupError):
                continue
            if int(fields[1]) == pid and fields[0] != "Z":
                out.append(int(entry))
    return out


@pytest.fixture
def running(store):
    servers: list[BackgroundServer] = []

    def make(**settings: Any) -> tuple[CostarServer, str]:
        srv = CostarServer(ServerConfig.model_validate({"idle": 0.3, "assembly": "process", **settings}), store)
        bg = BackgroundServer(srv.app, "127.0.0.1", 0, lifespan="on").start()
        servers.append(bg)
        return srv, bg.url

    yield make
    for bg in servers:
        bg.stop()


def test_the_child_stores_traces_and_the_listeners_get_them(running) -> None:
    got: list[CompletedTrace] = []
    srv, url = running()
    srv.add_listener(got.extend)
    assert isinstance(srv.assembler, AssemblerProcess)
    pid = srv.assembler.pid
    assert pid is not None
    assert pid != os.getpid()
    assert pid_alive(pid)
    spans = agent_spans(3)
    assert httpx.post(url + "/v1/traces", content=encode(spans), headers=PROTOBUF, timeout=30).status_code == 200
    wait_for(lambda: len(got) == 3, what="three traces given to the listener")
    assert {c.trace.trace_id for c in got} == trace_ids(spans)
    assert all(c.project == "default" for c in got)
    assert not any(c.amended for c in got)
    assert not any(c.incomplete for c in got)
    assert all(len(c.trace.spans) == 3 for c in got)  # as stored: agent, model call, tool
    for c in got:  # the child sends what it stored, field for field
        assert c.trace.model_dump() == srv.store.get_trace(c.trace.trace_id).model_dump()
    assert stored_span_ids(srv.store) == span_ids(spans)
    wait_for(lambda: srv.metrics()["costar_spans_stored_total"] == 9, what="the child's counters")
    assert srv.metrics()["costar_assembler_open_spans"] == 0
    assert srv.tables.pending_counts() == (0, 0)


def test_kill_9_of_the_child_loses_nothing_and_a_new_child_replays_the_log(running) -> None:
    srv, url = running(idle=60)
    asm = srv.assembler
    assert isinstance(asm, AssemblerProcess)
    first = agent_spans(4)
    assert httpx.post(url + "/v1/traces", content=encode(first), headers=PROTOBUF, timeout=30).status_code == 200
    wait_for(lambda: asm.stats.open_spans == 12, what="the spans open in the child")
    old = asm.pid
    assert old is not None
    asm.restart_delay = 2.0  # long enough to see ingest refuse while no child is ready
    os.kill(old, signal.SIGKILL)
    wait_for(lambda: not asm.accepting, what="the dead child noticed")
    refused = httpx.post(url + "/v1/traces", content=encode(agent_spans(1)), headers=PROTOBUF, timeout=30)
    assert refused.status_code == 503
    assert refused.headers["Retry-After"] == "1"
    wait_for(lambda: asm.accepting, timeout=60, what="a new child ready")
    assert asm.pid not in (None, old)
    assert asm.restarts == 1
    assert asm.recovered_spans == 12  # the killed child's open spans, replayed from the log
    second = agent_spans(2)
    assert httpx.post(url + "/v1/traces", content=encode(second), headers=PROTOBUF, timeout=30).status_code == 200
    wait_for(lambda: asm.stats.open_spans == 18, what="old and new spans open in the new child")
    asm.stop(flush=True)  # stores what is complete, as a shutdown does
    assert not pid_alive(old)
    assert stored_span_ids(srv.store) == span_ids(first) | span_ids(second)
    assert srv.tables.pending_counts() == (0, 0)


def test_rows_the_child_replayed_are_not_assembled_again_when_the_server_sends_them(store) -> None:
    tables = ServerTables(store)

    def row(trace: str, span: str, parent: str | None) -> tuple[int, bytes]:
        s = make_span(trace, span, parent, "step", SpanKind.UNKNOWN, 1_000, 2_000, StatusCode.UNSET, None, {"k": span}, [])
        return 1, wal_encode([SpanGroup(project="default", pinned=False, resource={}, spans=[span_fields(s)])])

    ids = tables.append_batches([row("a" * 32, "1" * 16, None), row("b" * 32, "2" * 16, None)])
    settings = {"store": store_location(store), "local_dir": str(store.root),
                "assembler": {"idle": 0.2, "root_wait": 60, "max_open": 3600, "max_open_spans": 10_000,
                              "max_open_traces": 1000}}
    import orjson

    child = subprocess.Popen([sys.executable, "-m", "costar.server.assembly_worker"], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE)
    try:
        assert child.stdin is not None
        assert child.stdout is not None
        child.stdin.write(frame(SETTINGS_ROW, 0, orjson.dumps(settings)))
        child.stdin.flush()
        ready = orjson.loads(child.stdout.readline())
        assert ready["t"] == "ready"
        assert ready["recovered"] == 2
        # The server sends both rows again (committed before the replay read them), then a new one.
        new = tables.append_batches([row("c" * 32, "3" * 16, None)])
        for rid, (_, data) in zip([*ids, *new], tables.pending_batches(), strict=True):
            child.stdin.write(frame(rid, 1, data))
        child.stdin.close()
        assert child.wait(60) == 0
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        if child.stdout is not None:
            child.stdout.close()
    assert sorted(store.trace_ids()) == ["a" * 32, "b" * 32, "c" * 32]
    assert sorted(tables.server_traces(store.trace_ids())[t].amended for t in store.trace_ids()) == [0, 0, 0]
    assert tables.pending_counts() == (0, 0)


def test_an_unreadable_last_write_ahead_row_is_kept_and_the_replay_ends(store) -> None:
    import threading

    from costar.server.assembler import Assembler

    tables = ServerTables(store)
    s = make_span("d" * 32, "4" * 16, None, "step", SpanKind.UNKNOWN, 1_000, 2_000, StatusCode.UNSET, None, {}, [])
    good = wal_encode([SpanGroup(project="default", pinned=False, resource={}, spans=[span_fields(s)])])
    tables.append_batches([(1, good), (1, b"{not a write-ahead row")])
    asm = Assembler(tables, idle=0.0)
    replayed: list[int] = []
    replay = threading.Thread(target=lambda: replayed.append(asm.recover()), daemon=True)
    replay.start()
    replay.join(30)
    assert not replay.is_alive(), "the replay kept reading the unreadable row"
    assert replayed == [1]
    asm.store_due(force=True)
    assert store.trace_ids() == ["d" * 32]
    assert tables.pending_counts() == (1, 1)  # the unreadable row is kept for inspection


def test_a_child_without_settings_says_what_starts_it() -> None:
    res = subprocess.run([sys.executable, "-m", "costar.server.assembly_worker"], input=b"", capture_output=True,
                         timeout=60)
    assert res.returncode == 2
    assert b"the server starts this process" in res.stderr


@pytest.mark.slow
def test_the_child_never_outlives_the_server(store, tmp_path: Path) -> None:
    # kill -9 of the server process alone (not its group): the kernel kills the child.
    srv = ServerProcess(store_location(store), tmp_path).start()
    assert srv.proc is not None
    server_pid = srv.proc.pid
    child = wait_for(lambda: _children(server_pid), what="the assembler child")[0]
    os.kill(server_pid, signal.SIGKILL)
    srv.proc.wait(30)
    wait_for(lambda: not pid_alive(child), what="the child killed with the server")
    srv.kill()
    # SIGTERM to the server alone: it stops its child on the way out, and stores what is complete.
    srv = ServerProcess(store_location(store), tmp_path, args=[]).start()
    assert srv.proc is not None
    child = wait_for(lambda: _children(srv.proc.pid), what="the assembler child")[0]  # type: ignore[union-attr]
    spans = agent_spans(2)
    assert httpx.post(srv.url + "/v1/traces", content=encode(spans), headers=PROTOBUF, timeout=30).status_code == 200
    srv.proc.send_signal(signal.SIGTERM)
    # The exit status of a command stopped by a signal (the traces below show the shutdown was clean).
    assert srv.proc.wait(60) in (0, 130, 128 + signal.SIGTERM, -signal.SIGTERM)
    wait_for(lambda: not pid_alive(child), what="the child stopped with the server")
    srv.kill()
    assert span_ids(spans) <= stored_span_ids(store)
