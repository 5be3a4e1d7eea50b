"""What an agent under test does to itself must end its own trial, never the run: exiting, a leaked
cancellation, a model error of its own, removing its workspace, leaving a file nobody may read."""

from __future__ import annotations

import os
from pathlib import Path

from costar.scenario import Scenario
from costar.store.sqlite import SQLiteStore
from costar.trace.model import TraceStatus
from tests.run.test_harness import run_harness, write_module

AGENTS = """
    import asyncio, os, shutil, sys

    def exits(task):
        if task.trial == 0:
            sys.exit(3)
        return "ok"

    def interrupts(task):
        if task.trial == 0:
            raise KeyboardInterrupt
        return "ok"

    async def exits_async(task):
        if task.trial == 0:
            sys.exit(4)
        return "ok"

    async def cancels(task):
        if task.trial == 0:
            raise asyncio.CancelledError()  # leaked out of a library's inner task
        return "ok"

    def rate_limited(task):
        if task.trial == 0:
            from costar.models.errors import ModelRateLimitError
            raise ModelRateLimitError("429 from the provider after 3 retries")
        return "ok"

    def removes_its_workspace(task):
        if task.trial == 0:
            shutil.rmtree(task.workspace)
        return "ok"
"""


def _scenario(project: Path) -> Scenario:
    return Scenario.model_validate({"id": "s", "prompt": "go", "trials": 3}).with_source(project / "suite.yaml")


def test_an_agent_that_exits_interrupts_or_cancels_ends_only_its_own_trial(project: Path,
                                                                           store: SQLiteStore) -> None:
    write_module(project, "hostile_agents", AGENTS)
    for target, error in (("exits", "SystemExit: 3"), ("exits_async", "SystemExit: 4"),
                          ("interrupts", "KeyboardInterrupt"),
                          ("cancels", "CancelledError"), ("rate_limited", "ModelRateLimitError: 429"),
                          ("removes_its_workspace", None)):
        traces = run_harness(store, [_scenario(project)], {"type": "python", "target": f"hostile_agents:{target}"},
                             concurrency=2, timeout=30)
        assert [t.trial for t in traces] == [0, 1, 2], target  # every trial recorded: the run went on
        assert [t.status for t in traces[1:]] == [TraceStatus.OK, TraceStatus.OK], target
        first = traces[0]
        if error is None:
            assert first.status == TraceStatus.OK
            assert "no files stored" in first.metadata["artifact_notes"][0]
        else:
            assert first.status == TraceStatus.ERROR, target
            assert first.error is not None
            assert first.error.startswith(error), first.error


def test_a_file_the_agent_made_unreadable_is_noted_and_the_rest_is_stored(project: Path, store: SQLiteStore,
                                                                          monkeypatch) -> None:
    (project / "agent.py").write_text(
        "import os\n"
        "open('kept.txt', 'w').write('kept')\n"
        "open('locked.txt', 'w').write('x')\n"
        "os.chmod('locked.txt', 0)\n"
        "print('ok')\n")
    # Root reads any file whatever its mode: refuse the read as a file system would for anyone else.
    import costar.run.workspace as workspace

    real = workspace._store_file

    def store_file(path: Path, rel: str, *args: object, **kw: object) -> object:
        if os.stat(path).st_mode & 0o777 == 0:
            raise PermissionError(13, "Permission denied", str(path))
        return real(path, rel, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(workspace, "_store_file", store_file)
    sc = Scenario.model_validate({"id": "s", "prompt": "go", "trials": 2}).with_source(project / "suite.yaml")
    traces = run_harness(store, [sc], {"type": "command", "command": ["python", str(project / "agent.py")]},
                         timeout=60)
    assert [t.status for t in traces] == [TraceStatus.OK, TraceStatus.OK]
    for t in traces:
        assert [a.path for a in t.artifacts] == ["kept.txt"]
        assert any(n.startswith("locked.txt: could not be read (PermissionError") for n in t.metadata["artifact_notes"])
