"""MCP snapshots, run selectors and id prefixes in the store, on both backends (the ``store`` fixture)."""

from __future__ import annotations

from typing import Any

import pytest

from costar.errors import BadReferenceError, NotInStoreError, StoreError
from costar.store.base import Run, UnknownSnapshotError
from costar.trace.model import Trace
from costar.trace.tool_definition import ToolDefinition
from costar.trace.tools import McpSnapshot, ServerInfo


def _snap(name: str, at: float, version: str) -> McpSnapshot:
    return McpSnapshot(name=name, created_at=at, server=ServerInfo(name=name, version=version),
                       tools=[ToolDefinition(name="t", description=f"v{version}")])


def test_snapshots_by_id_name_latest_and_versions_back(store: Any) -> None:
    a, b, c = _snap("shop", 100.0, "1"), _snap("shop", 200.0, "2"), _snap("weather", 300.0, "7")
    for s in (a, b, c):
        store.write_mcp_snapshot(s)
    assert store.mcp_snapshot("shop") == b
    assert store.mcp_snapshot("shop~1") == a
    assert store.mcp_snapshot("shop~") == a
    assert store.mcp_snapshot("latest") == c
    assert store.mcp_snapshot("latest~2") == a
    assert store.mcp_snapshot(a.snapshot_id) == a
    assert [s.snapshot_id for s in store.mcp_snapshots()] == [c.snapshot_id, b.snapshot_id, a.snapshot_id]
    assert [s.server.version for s in store.mcp_snapshots("shop")] == ["2", "1"]
    assert store.mcp_snapshots("shop", limit=1) == [b]


@pytest.mark.parametrize(("ref", "message"), [
    ("nope", "no MCP snapshot 'nope'"),
    ("shop~5", "only 1 snapshot"),
    ("shop~x", "a number of versions back"),
    ("~1", "empty snapshot reference"),
])
def test_unknown_snapshot_references(store: Any, ref: str, message: str) -> None:
    store.write_mcp_snapshot(_snap("shop", 100.0, "1"))
    with pytest.raises(UnknownSnapshotError, match=message):
        store.mcp_snapshot(ref)


def _run(at: float, branch: str | None, tags: list[str], status: str = "finished") -> Run:
    meta: dict[str, Any] = {"tags": tags}
    if branch:
        meta["vcs"] = {"branch": branch, "commit": "c" * 40}
    return Run(created_at=at, status=status, metadata=meta)  # type: ignore[arg-type]


def test_runs_by_branch_and_tag(store: Any) -> None:
    old_main = _run(1.0, "main", ["nightly"])
    feature = _run(2.0, "feature", [])
    new_main = _run(3.0, "main", [])
    unfinished = _run(4.0, "main", ["nightly"], status="interrupted")
    last_night = _run(5.0, "main", ["nightly"])
    for r in (old_main, feature, new_main, unfinished, last_night):
        store.create_run(r)
    assert store.resolve_run_id("branch:main") == last_night.run_id
    assert store.resolve_run_id("branch:main~1") == new_main.run_id
    assert store.resolve_run_id("branch:feature") == feature.run_id
    assert store.resolve_run_id("tag:nightly") == last_night.run_id
    assert store.resolve_run_id("tag:nightly~1") == old_main.run_id  # the interrupted run does not count
    assert store.get_run("tag:nightly~1").run_id == old_main.run_id


@pytest.mark.parametrize(("ref", "message"), [
    ("branch:release", "no finished run on branch 'release'"),
    ("tag:nightly~3", "only 1 finished run"),
    ("tag:nightly~x", "bad run reference"),
    ("branch:", "bad run reference"),
])
def test_run_selectors_that_match_nothing(store: Any, ref: str, message: str) -> None:
    store.create_run(_run(1.0, "main", ["nightly"]))
    with pytest.raises(StoreError, match=message):
        store.resolve_run_id(ref)


def test_an_ambiguous_or_malformed_run_reference_is_a_bad_reference_not_a_missing_run(store: Any) -> None:
    store.create_run(Run(run_id="20261201-090000-ab1234"))
    store.create_run(Run(run_id="20261202-090000-cd1234"))
    with pytest.raises(BadReferenceError, match=r"run id '2026120' is ambiguous \(20261201-090000-ab1234, "
                                                r"20261202-090000-cd1234\); give more of it"):
        store.resolve_run_id("2026120")
    with pytest.raises(BadReferenceError, match="write tag:NAME or tag:NAME~N"):
        store.get_run("tag:")


@pytest.mark.parametrize("ref", ["2026120_-090000-cd1234", "2026120%", "20261202_", "%", "_"])
def test_a_run_id_prefix_is_literal_not_a_like_pattern(store: Any, ref: str) -> None:
    store.create_run(Run(run_id="20261201-090000-ab1234"))
    store.create_run(Run(run_id="20261202-090000-cd1234"))
    with pytest.raises(NotInStoreError, match=f"no run {ref!r}"):
        store.resolve_run_id(ref)


def test_run_ids_holding_like_wildcards_and_escapes_are_found_by_their_prefix(store: Any) -> None:
    odd = ["a_b%c!d\\e-1", "axbycxd\\e-2", "a_b%c!!d-3"]
    for run_id in odd:
        store.create_run(Run(run_id=run_id))
    assert store.resolve_run_id("a_b%c!d") == "a_b%c!d\\e-1"
    assert store.resolve_run_id("a_b%c!d\\") == "a_b%c!d\\e-1"
    assert store.resolve_run_id("axb") == "axbycxd\\e-2"
    assert store.resolve_run_id("a_b%c!!") == "a_b%c!!d-3"
    with pytest.raises(BadReferenceError, match="ambiguous"):
        store.resolve_run_id("a_b%c!")


def test_a_trace_id_prefix_is_literal_and_an_ambiguous_one_is_a_bad_reference(store: Any) -> None:
    store.create_run(Run(run_id="r1"))
    store.write_traces([Trace(trace_id=tid, run_id="r1", scenario_id=tid, trial=0)
                        for tid in ("t_1/a", "tx1/b", "t%2/c")])
    assert store.get_trace("t_").trace_id == "t_1/a"  # '_' matched any character: 't_1/a' and 'tx1/b'
    assert store.get_trace("t%").trace_id == "t%2/c"
    with pytest.raises(NotInStoreError):
        store.get_trace("t_x")
    with pytest.raises(BadReferenceError, match="trace id 't' is the start of several trace ids; give more of it"):
        store.get_trace("t")


def test_an_id_prefix_keeps_its_case_and_counts_characters_on_every_backend(store: Any) -> None:
    store.create_run(Run(run_id="run-abc"))
    store.write_traces([Trace(trace_id=tid, run_id="run-abc", scenario_id=tid, trial=0) for tid in ("abc123", "éa/1")])
    assert store.get_trace("abc").trace_id == "abc123"
    assert store.get_trace("éa").trace_id == "éa/1"
    with pytest.raises(NotInStoreError):
        store.get_trace("ABC")  # SQLite's LIKE found it: the same reference named a trace on one backend only
    assert store.resolve_run_id("run-a") == "run-abc"
    with pytest.raises(NotInStoreError):
        store.resolve_run_id("RUN-A")
