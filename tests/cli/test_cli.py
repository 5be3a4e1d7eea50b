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

from tests.support.cli import child_env, costar_cmd
from tests.support.paths import REPO


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
        time.sleep(0.4)
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
    deadline = time.monotonic() + 60
    finished = 0
    while time.monotonic() < deadline:
        if db.exists():
            try:
                with sqlite3.connect(db) as c:
                    finished = c.execute("SELECT count(*) FROM traces").fetchone()[0]
            except sqlite3.OperationalError:
                finished = 0
        if finished >= 4:
            break
        time.sleep(0.05)
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
