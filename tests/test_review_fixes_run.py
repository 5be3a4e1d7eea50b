"""Regression tests for review findings: secrets in verdicts and stored specs, hung in-process
agents, module commands, refining in-process agents."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from costar.errors import ConfigError
from tests.support.cli import child_env, costar_cmd


def costar(*args: str, cwd: Path, timeout: float = 120, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*costar_cmd(), *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env=child_env(**env))


def test_secrets_never_reach_verdicts_reports_or_stored_specs(tmp_path: Path) -> None:
    secret = "sk-abcdefghijklmnopqrstuvwxyz123456"
    (tmp_path / "agent.py").write_text("import os, sys\nsys.stdin.read()\nprint('key: ' + os.environ['OPENAI_API_KEY'])\n")
    (tmp_path / "suite.yaml").write_text(textwrap.dedent("""
        id: leak
        prompt: x
        setup:
          env: {SERVICE_TOKEN: tok-0123456789abcdef}
        expectations:
          checks: [{output_contains: never-there}, {output_equals: nope}]
        """))
    (tmp_path / "costar.yaml").write_text(
        f"suite: suite.yaml\nagent:\n  type: command\n  command: [{json.dumps(sys.executable)}, agent.py]\n"
        "  env: {MY_API_KEY: plain-secret-value-42}\n")
    res = costar("run", "--html", "r.html", "--junit", "r.xml", cwd=tmp_path, OPENAI_API_KEY=secret)
    assert res.returncode == 1, res.stdout + res.stderr
    dump = "\n".join(sqlite3.connect(tmp_path / ".costar" / "costar.db").iterdump())
    for text in (dump, res.stdout, (tmp_path / "r.html").read_text(), (tmp_path / "r.xml").read_text()):
        assert secret[:20] not in text
        assert "plain-secret-value-42" not in text
        assert "tok-0123456789abcdef" not in text
    assert "[REDACTED]" in dump
    # resuming takes the redacted values back from the environment, or says what to export
    resumed = costar("run", "--resume", "latest", cwd=tmp_path, OPENAI_API_KEY=secret)
    assert resumed.returncode == 2, resumed.stderr
    assert "MY_API_KEY" in resumed.stderr, resumed.stderr
    resumed = costar("run", "--resume", "latest", cwd=tmp_path, OPENAI_API_KEY=secret, MY_API_KEY="x" * 20)
    assert resumed.returncode == 1, resumed.stderr
    assert "resuming: 1 trial(s) already finished" in resumed.stdout, resumed.stderr


def test_a_hung_in_process_agent_does_not_keep_the_cli_alive(tmp_path: Path) -> None:
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


def test_refine_refuses_in_process_agents(tmp_path: Path) -> None:
    from costar.refine import CommandAssistant, Refiner

    (tmp_path / "costar.yaml").write_text("suite: s\nagent: {type: python, target: 'a:run'}\n")
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty", "-m", "x"],
                   cwd=tmp_path, check=True)
    with pytest.raises(ConfigError, match="refine needs a command agent"):
        Refiner(tmp_path / "costar.yaml", CommandAssistant(["true"])).run()
