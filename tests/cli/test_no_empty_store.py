"""Looking leaves nothing behind: every read-only command, and every command that fails, run in an
empty folder creates no ``.costar`` (nor any other file). The store is created by its first write."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

import costar.cli  # noqa: F401  (registers every command)
from costar.cli.common import app
from costar.errors import CostarError, StoreError
from costar.store.sqlite import SQLiteStore
from tests.support.cli import child_env, costar_cmd, one_line_error

# Each command of the CLI, with arguments that make sense in an empty folder. A new command must be
# added here (the test below checks the table covers the CLI).
COMMANDS: dict[str, list[str]] = {
    "run": [], "assess": [], "report": [], "runs": [], "schema": [], "scenarios check": [],
    "scenarios from-trace": ["t1"], "compare": ["a", "b"],
    "metrics": [], "label": ["correct"], "refine": [], "refine clean": [], "agreement": ["a.csv", "b.csv"],
    "plugins": [], "checks": [],
    "traces list": [], "traces show": ["t1"], "traces export": ["latest"], "traces import": ["missing.json"],
    "judges list": [], "judges check": [], "judges agreement": ["correct"], "judges uncertain": ["correct"],
    "judges corrected": ["correct"], "judges align": ["correct"], "judges versions": ["correct"],
    "judges promote": ["correct", "1"], "judges rollback": ["correct"], "judges deactivate": ["correct"],
    "judges diff": ["correct", "1", "2"],
    "labels export": ["out.csv"], "labels import": ["missing.csv"], "labels delete": ["correct"],
    "golden create": ["gs", "correct"], "golden add": ["gs", "t1"], "golden remove": ["gs", "t1"],
    "golden show": ["gs"], "golden list": [], "golden diff": ["gs", "1", "2"],
    "model chat": ["nosuch:/model", "hi"], "model serve": ["nosuch:/model"], "model cache-clear": [],
    "model prices": [],
    "testing serve": ["missing-rules.yaml"],
    "store migrate": [], "store info": [], "store copy": ["missing-store", "copy"], "store prune": [],
    "server traces": [], "server token list": [], "server token revoke": ["tok"],
    "server token create": [],  # an ingest token without --project: refused before the store is opened
    "mcp snapshot": [], "mcp snapshots": [], "mcp diff": [],
    "monitor list": [], "monitor show": ["m"], "monitor run": [], "monitor backfill": ["m"], "monitor alerts": [],
    "monitor series": ["m"], "monitor create": ["missing.yaml"], "monitor delete": ["m"],
    "ui": ["--no-browser", "--port", "0"],  # reads the store: a missing one is a one-line error, never created
    "ci init": ["no-such-ci"],  # writes workflow files when it succeeds; a failure writes nothing
}


# Groups that do something of their own without a subcommand; `server` serves (and writes) until stopped.
NOT_READ_ONLY = {"server"}


def _commands() -> list[str]:
    def walk(cmd, prefix: tuple[str, ...] = ()):
        if hasattr(cmd, "commands"):
            if prefix and cmd.invoke_without_command and " ".join(prefix) not in NOT_READ_ONLY:
                yield " ".join(prefix)
            for name, sub in cmd.commands.items():
                yield from walk(sub, (*prefix, name))
        else:
            yield " ".join(prefix)

    return sorted(walk(typer.main.get_command(app)))


def test_the_table_covers_every_command() -> None:
    assert sorted(COMMANDS) == _commands()


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_command_in_an_empty_folder_leaves_nothing_behind(command: str, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("COSTAR_STORE", raising=False)
    result = CliRunner().invoke(app, [*command.split(), *COMMANDS[command]], input="")
    # A one-line error (a CostarError, exit 2 from the real CLI), a usage error or a plain success;
    # never a crash.
    assert result.exception is None or isinstance(result.exception, CostarError | SystemExit), (
        command, repr(result.exception), result.output)
    assert sorted(p.name for p in tmp_path.iterdir()) == [], (command, result.output)


@pytest.mark.parametrize("command", [["run"], ["assess"], ["runs"]])
def test_the_real_cli_says_why_in_one_line_and_creates_nothing(command: list[str], tmp_path: Path) -> None:
    res = subprocess.run([*costar_cmd(), *command], cwd=tmp_path, env=child_env(), capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 2
    assert res.stderr.startswith("error: ")
    assert len(res.stderr.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_a_store_is_created_by_its_first_write_and_reads_as_empty_before(tmp_path: Path) -> None:
    from costar.store.base import Run

    st = SQLiteStore(tmp_path / ".costar")
    try:
        assert st.list_runs() == []
        assert st.trace_ids() == []
        assert st.get_blob("a" * 64) is None
        assert st.delete_labels(name="correct") == 0
        assert not (tmp_path / ".costar").exists()
        st.create_run(Run(run_id="r1"))
        assert (tmp_path / ".costar" / "costar.db").is_file()
        assert [r.run_id for r in st.list_runs()] == ["r1"]
    finally:
        st.close()
    again = SQLiteStore(tmp_path / ".costar", create=False)
    try:
        assert [r.run_id for r in again.list_runs()] == ["r1"]
    finally:
        again.close()


def test_a_blob_written_first_creates_the_store(tmp_path: Path) -> None:
    st = SQLiteStore(tmp_path / "s")
    try:
        sha = st.put_blob(b"hello")
        assert st.get_blob(sha) == b"hello"
        assert (tmp_path / "s" / "costar.db").is_file()
    finally:
        st.close()


def test_a_store_opened_before_it_existed_reads_what_another_process_then_wrote(tmp_path: Path) -> None:
    """A reader (a server, a long-running command) opened before the store existed sees it once
    another process creates it, instead of its empty stand-in for good."""
    from costar.store.base import Run

    early = SQLiteStore(tmp_path / ".costar")
    try:
        assert early.list_runs() == []
        code = ("import sys\nfrom costar.store.sqlite import SQLiteStore\nfrom costar.store.base import Run\n"
                "with SQLiteStore(sys.argv[1]) as st:\n    st.create_run(Run(run_id='elsewhere'))\n")
        subprocess.run([sys.executable, "-c", code, str(tmp_path / ".costar")], check=True, timeout=60)
        assert [r.run_id for r in early.list_runs()] == ["elsewhere"]
        early.create_run(Run(run_id="here"))  # and writes go to the same database
    finally:
        early.close()
    with SQLiteStore(tmp_path / ".costar", create=False) as again:
        assert sorted(r.run_id for r in again.list_runs()) == ["elsewhere", "here"]


def test_create_if_missing_creates_the_store_at_once(tmp_path: Path) -> None:
    with SQLiteStore(tmp_path / "s") as st:
        st.create_if_missing()
        assert (tmp_path / "s" / "costar.db").is_file()
        st.create_if_missing()  # and is a no-op after
    with SQLiteStore(tmp_path / "s", create=False) as again:
        assert again.list_runs() == []


@pytest.mark.parametrize("args", [
    ("runs",), ("report",), ("traces", "list"), ("traces", "show", "abc"), ("traces", "export", "latest"),
    ("compare", "a", "b"), ("metrics",), ("judges", "agreement", "j"), ("judges", "check", "--floor", "j:kappa>=0.5"),
    ("labels", "export", "out.csv"), ("golden", "list"),
])
def test_read_only_commands_do_not_create_a_store(tmp_path: Path, args: tuple[str, ...]) -> None:
    res = subprocess.run([*costar_cmd(), *args], cwd=tmp_path, env=child_env(), capture_output=True, text=True,
                         timeout=120)
    err = one_line_error(res)
    assert "no coSTAR store at" in err, err
    assert "run 'costar run' first or pass --store" in err, err
    assert list(tmp_path.iterdir()) == []


def test_store_create_false(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no coSTAR store at"):
        SQLiteStore(tmp_path / "nope", create=False)
    assert not (tmp_path / "nope").exists()
    with SQLiteStore(tmp_path / "yes") as st:
        st.migrate()  # a store is created by its first write
    with SQLiteStore(tmp_path / "yes", create=False) as st:
        assert st.list_runs() == []
