"""The CLI as a user runs it: real subprocesses, real files, real exit codes."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from costar.store.sqlite import SQLiteStore
from tests.support.cli import child_env, costar_cmd, one_line_error
from tests.support.paths import REPO
from tests.support.waiting import wait_for


def costar(*args: str, cwd: Path, timeout: float = 120, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*costar_cmd(), *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env=child_env(**env))


def make_project(root: Path, agent_code: str, scenarios: str, config_extra: str = "") -> Path:
    (root / "scenarios").mkdir(parents=True)
    (root / "agent.py").write_text(textwrap.dedent(agent_code))
    (root / "scenarios" / "suite.yaml").write_text(textwrap.dedent(scenarios))
    (root / "costar.yaml").write_text(textwrap.dedent(f"""
        suite: scenarios
        agent:
          type: command
          command: [{json.dumps(sys.executable)}, agent.py]
        {config_extra}
        """))
    return root


ECHO_AGENT = """
    import sys
    prompt = sys.stdin.read()
    open("answer.txt", "w").write(prompt.upper())
    print("answer: " + prompt)
"""


def test_run_exit_codes_and_reports(tmp_path: Path) -> None:
    proj = make_project(tmp_path, ECHO_AGENT, """
        scenarios:
          - id: green
            prompt: hello
            trials: 2
            expectations:
              checks:
                - output_contains: "answer: hello"
                - file_exists: answer.txt
          - id: red
            prompt: bye
            expectations:
              checks:
                - output_contains: "never"
                - max_tokens: {limit: 0}
                  gate: false
        """)
    res = costar("run", "--junit", "out.xml", "--html", "out.html", cwd=proj)
    assert res.returncode == 1, res.stdout + res.stderr
    assert "red" in res.stdout
    assert "output lacks 'never'" in res.stdout
    suite = ET.parse(proj / "out.xml").getroot()
    cases = suite.findall(".//testcase")
    assert len(cases) == 3
    assert sum(1 for c in cases if c.find("failure") is not None) == 1
    html = (proj / "out.html").read_text()
    assert "<html" in html
    assert "output lacks" in html
    assert 'src="http' not in html
    assert 'href="http' not in html  # opens offline
    green_only = costar("run", "--id", "green", cwd=proj)
    assert green_only.returncode == 0, green_only.stdout + green_only.stderr
    runs = costar("runs", cwd=proj)
    assert runs.returncode == 0
    assert runs.stdout.count("finished") == 2


def test_usage_and_configuration_errors_exit_2_with_one_line(tmp_path: Path) -> None:
    proj = make_project(tmp_path, ECHO_AGENT, """
        id: a
        prompt: x
        expectations:
          checks:
            - output_contains: x
              gte: false
        """)
    res = costar("run", cwd=proj)
    assert res.returncode == 2
    err = res.stderr.strip()
    assert err.startswith("error: ")
    assert "suite.yaml:6" in err
    assert "gte" in err
    assert len(err.splitlines()) == 1
    assert not (proj / ".costar").exists() or not list((proj / ".costar").rglob("*.db-wal"))  # nothing ran
    assert costar("run", "--concurrency", "0", cwd=proj).returncode == 2
    assert costar("run", "--split", "nope", cwd=proj).returncode == 2
    assert costar("report", "no-such-run", cwd=proj).returncode == 2
    (proj / "costar.yaml").write_text("suite: scenarios\nconcurency: 3\n")
    bad_cfg = costar("run", cwd=proj)
    assert bad_cfg.returncode == 2
    assert "costar.yaml:2" in bad_cfg.stderr
    assert "concurency" in bad_cfg.stderr


def test_schema_command(tmp_path: Path) -> None:
    res = costar("schema", cwd=tmp_path)
    assert res.returncode == 0
    schema = json.loads(res.stdout)
    assert "Scenario" in schema["$defs"]
    assert "Check" in schema["$defs"]


def test_committed_schema_file_is_current(tmp_path: Path) -> None:
    committed = REPO / "docs" / "scenario.schema.json"
    res = costar("schema", cwd=tmp_path)
    assert json.loads(committed.read_text()) == json.loads(res.stdout), "run: costar schema -o docs/scenario.schema.json"


def test_assess_rescoring_uses_the_cache_and_picks_up_changed_checks(tmp_path: Path) -> None:
    calls = tmp_path / "calls.log"
    proj = make_project(tmp_path / "p", f"""
        import sys
        open({str(calls)!r}, "a").write("x\\n")
        print(sys.stdin.read())
        """, """
        id: s
        prompt: hello
        trials: 3
        expectations:
          checks:
            - output_contains: hello
              name: greets
        """)
    assert costar("run", cwd=proj).returncode == 0
    again = costar("assess", cwd=proj)
    assert again.returncode == 0, again.stdout
    assert "0 verdicts computed, 6 cached" in again.stdout, again.stdout
    # Tighten the check without re-running the agent: re-scoring turns the run red.
    suite = proj / "scenarios" / "suite.yaml"
    suite.write_text(suite.read_text().replace("output_contains: hello", "output_contains: HELLO"))
    red = costar("assess", cwd=proj)
    assert red.returncode == 1, red.stdout
    assert "3 verdicts computed" in red.stdout, red.stdout
    suite.write_text(suite.read_text().replace("output_contains: HELLO", "output_contains: hello"))
    back = costar("assess", cwd=proj)
    assert back.returncode == 0, back.stdout
    assert "3 restored" in back.stdout, back.stdout
    # A scenario file broken mid-edit does not block re-scoring, and the user is told.
    suite.write_text(suite.read_text() + "  oops: [\n")
    broken = costar("assess", cwd=proj)
    assert broken.returncode == 0, broken.stderr
    assert "definition stored with the run" in broken.stderr, broken.stderr
    assert calls.read_text().count("x") == 3  # the agent ran once per trial, never for re-scoring


def test_resume_after_kill_9_reruns_nothing_finished(tmp_path: Path) -> None:
    log = tmp_path / "invocations.log"
    proj = make_project(tmp_path / "p", f"""
        import os, sys, time
        key = os.environ["COSTAR_SCENARIO_ID"] + "/" + os.environ["COSTAR_TRIAL"]
        with open({str(log)!r}, "a") as f:
            f.write(key + "\\n")
        time.sleep(0.4)  # slow on purpose: the kill lands while trials are running
        print("done " + sys.stdin.read())
        """, """
        defaults:
          trials: 4
          expectations:
            checks: [{output_contains: done}]
        scenarios:
          - {id: a, prompt: x}
          - {id: b, prompt: y}
          - {id: c, prompt: z}
        """, "concurrency: 2")
    proc = subprocess.Popen([*costar_cmd(), "run", "--no-progress"], cwd=proj, env=child_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    db = proj / ".costar" / "costar.db"

    def finished() -> int:
        if not db.exists():
            return 0
        try:
            with sqlite3.connect(db) as c:
                return int(c.execute("SELECT count(*) FROM traces").fetchone()[0])
        except sqlite3.OperationalError:  # the run has not created its tables yet
            return 0

    wait_for(lambda: finished() >= 4, timeout=60, what="four finished trials")
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    with sqlite3.connect(db) as c:
        done_before = {f"{s}/{t}" for s, t in c.execute("SELECT scenario_id, trial FROM traces")}
    assert 4 <= len(done_before) < 12
    res = costar("run", "--resume", "latest", "--no-progress", cwd=proj)
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"resuming: {len(done_before)} trial(s) already finished" in res.stdout
    with sqlite3.connect(db) as c:
        rows = c.execute("SELECT scenario_id, trial FROM traces").fetchall()
        statuses = c.execute("SELECT status FROM runs").fetchall()
    assert len(rows) == 12
    assert len(set(rows)) == 12
    assert statuses == [("finished",)]
    calls = log.read_text().split()
    for key in done_before:
        assert calls.count(key) == 1, key  # finished trials were not run again
    assert set(calls) == {f"{s}/{t}" for s in "abc" for t in range(4)}


def test_a_hung_in_process_agent_does_not_keep_the_cli_alive(tmp_path: Path) -> None:
    # The agent sleeps on purpose: it must outlive the scenario's 1 s timeout.
    (tmp_path / "slow.py").write_text("import time\ndef run(task):\n    time.sleep(60)\n")
    (tmp_path / "suite.yaml").write_text("id: hang\nprompt: x\ntimeout: 1\n")
    (tmp_path / "costar.yaml").write_text("suite: suite.yaml\nagent: {type: python, target: 'slow:run'}\n")
    started = time.monotonic()
    res = costar("run", cwd=tmp_path, timeout=50)
    assert time.monotonic() - started < 30
    assert res.returncode == 1, res.stdout + res.stderr
    assert "never returned" in res.stderr, res.stdout + res.stderr
    assert "timed out after 1s" in res.stdout


def test_module_commands_and_flag_values_are_not_rewritten(tmp_path: Path) -> None:
    pkg = tmp_path / "mypkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "__main__.py").write_text("import sys\nprint('module ran with', sys.argv[1:], sys.stdin.read())\n")
    (tmp_path / "suite.yaml").write_text("id: m\nprompt: hi\nexpectations:\n  checks: [{output_contains: \"['mypkg']\"}]\n")
    (tmp_path / "costar.yaml").write_text(
        "suite: suite.yaml\nagent:\n  type: command\n  command: [python, -m, mypkg, mypkg]\n")
    res = costar("run", cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr


# --------------------------------------------------------------------------- output paths


@pytest.fixture(scope="module")
def reported_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project with one finished run, and a folder named where a report file could go."""
    proj = tmp_path_factory.mktemp("proj")
    (proj / "agent.py").write_text("import sys\nprint('answer: ' + sys.stdin.read())\n")
    (proj / "suite.yaml").write_text("id: hello\nprompt: hi\nexpectations:\n  checks: [{output_contains: answer}]\n")
    (proj / "costar.yaml").write_text(f"suite: suite.yaml\nagent:\n  type: command\n"
                                      f"  command: [{json.dumps(sys.executable)}, agent.py]\n")
    res = costar("run", cwd=proj)
    assert res.returncode == 0, res.stdout + res.stderr
    (proj / "somedir").mkdir()
    return proj


@pytest.mark.parametrize("args", [
    ("report", "latest", "--junit", "somedir"),
    ("report", "latest", "--html", "somedir"),
    ("traces", "export", "latest", "-o", "somedir"),
    ("traces", "export", "latest", "--format", "otlp-json", "-o", "somedir"),
    ("schema", "-o", "somedir"),
    ("labels", "export", "somedir"),
    ("assess", "latest", "--junit", "somedir"),
    ("report", "latest", "--html", "suite.yaml/report.html"),
])
def test_output_paths_that_cannot_be_files_give_one_line_errors(reported_project: Path, args: tuple[str, ...]) -> None:
    err = one_line_error(costar(*args, cwd=reported_project))
    assert "somedir" in err or "suite.yaml" in err, err
    assert (reported_project / "somedir").is_dir()
    assert not any((reported_project / "somedir").iterdir())


def test_run_checks_its_report_paths_before_running(reported_project: Path) -> None:
    with SQLiteStore(reported_project / ".costar") as st:
        before = len(st.list_runs())
    err = one_line_error(costar("run", "--html", "somedir", cwd=reported_project))
    assert "somedir" in err, err
    assert "folder" in err, err
    with SQLiteStore(reported_project / ".costar") as st:
        assert len(st.list_runs()) == before  # the suite never ran


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="needs POSIX permissions (not root)")
def test_unwritable_output_folder_gives_one_line_error(reported_project: Path, tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        err = one_line_error(costar("report", "latest", "--junit", str(locked / "out.xml"), cwd=reported_project))
        assert str(locked) in err, err
        assert "not writable" in err, err
    finally:
        locked.chmod(0o700)


def test_output_into_missing_folders_still_works(reported_project: Path, tmp_path: Path) -> None:
    out = tmp_path / "new" / "deeper" / "export.json"
    res = costar("traces", "export", "latest", "--format", "otlp-json", "-o", str(out), cwd=reported_project)
    assert res.returncode == 0, res.stderr
    assert json.loads(out.read_text())["resourceSpans"]
    schema = tmp_path / "s" / "schema.json"
    res = costar("schema", "-o", str(schema), cwd=reported_project)
    assert res.returncode == 0, res.stderr
    assert json.loads(schema.read_text())
