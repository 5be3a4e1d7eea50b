"""Library functions take the store as ``store=``: a Store, a folder or a URL (or the project's when
None), with what they are about first; the older order, a Store object first, still works."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import pytest

import costar
from costar import api
from costar.store.sqlite import SQLiteStore


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("api")
    (root / "agent.py").write_text("import sys; print('answer: ' + sys.stdin.read())")
    (root / "s.yaml").write_text("id: s\nprompt: hello\ntrials: 2\nexpectations:\n  checks: [{output_contains: hello}]\n")
    agent = {"type": "command", "command": [sys.executable, "agent.py"], "cwd": str(root)}
    for _ in range(2):
        costar.run_suite(root / "s.yaml", agent, store=root / ".costar")
    return root


def test_the_issue_example_and_the_old_order(stored: Path) -> None:
    summary = costar.summarize_run("latest", store=str(stored / ".costar"))
    assert summary.totals.trials == 2
    assert summary.all_gates_passed
    with SQLiteStore(stored / ".costar") as st:
        old = api.summarize_run(st, st.resolve_run_id("latest"))
    assert old == summary
    assert costar.summarize_run(store=stored / ".costar").run_id == summary.run_id  # run defaults to latest


def test_store_paths_everywhere(stored: Path, tmp_path: Path) -> None:
    where = stored / ".costar"
    base, head = [r.run_id for r in api.list_runs(store=where).runs][::-1]
    assert api.compare_runs(base, head, store=where).head_run_id == head
    assert api.check_metrics(head, store=where).run_id == head
    assert api.run_report(store=where).run_id == head
    out = tmp_path / "run.jsonl"
    assert api.export_run("latest", "jsonl", out, store=where) == 2
    # A re-exported judge-loop function: labels written and read back by path.
    trace_id = api.list_traces(store=where).traces[0].trace_id
    with open(tmp_path / "labels.csv", "w", newline="") as f:
        csv.writer(f).writerows([["trace_id", "name", "value", "labeler"], [trace_id, "helpful", "true", "ann"]])
    api.import_labels(tmp_path / "labels.csv", value_type="bool", store=where)
    with SQLiteStore(where) as st:
        assert [lab.trace_id for lab in st.labels(name="helpful")] == [trace_id]
        # The older order, a Store first, is unchanged.
        assert api.compare_runs(st, base, head).base_run_id == base
        assert api.check_metrics(st, head).run_id == head


def test_a_missing_store_is_a_one_line_error(tmp_path: Path) -> None:
    from costar.errors import CostarError

    with pytest.raises(CostarError) as err:
        api.list_runs(store=tmp_path / "nothing-here")
    assert "\n" not in str(err.value)


def _open_files_under(folder: Path) -> int:
    """How many of this process's file descriptors point into ``folder``."""
    fds = Path("/proc/self/fd")
    count = 0
    for fd in fds.iterdir():
        try:
            if Path(fd.readlink()).is_relative_to(folder):
                count += 1
        except OSError:
            continue
    return count


def test_a_store_opened_from_a_location_is_closed_when_the_call_returns(stored: Path) -> None:
    # A library user calling these in a loop must not pile up open databases.
    where = (stored / ".costar").resolve()
    before = _open_files_under(where)
    for _ in range(5):
        api.list_runs(store=where)
        costar.summarize_run("latest", store=where)
        api.show_trace(api.list_traces(store=where).traces[0].trace_id, store=where)
        api.check_metrics(store=where)
        api.label_queue("correct", store=where)  # a re-exported store-first function
    assert _open_files_under(where) == before
