"""pytest --costar: scenarios as pytest test items, run by pytest in a subprocess over a small project
whose agent asks a real model API (the scripted model server); and the inline trace assertion."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from costar import api
from costar.testing import Rule, ScriptedModelServer
from costar.trace import Recording, span
from tests.support.cli import child_env

AGENT = """
import os, sys
from openai import OpenAI

question = sys.stdin.read()
client = OpenAI(base_url=os.environ["MODEL_URL"], api_key="test")
reply = client.chat.completions.create(model="scripted", messages=[{"role": "user", "content": question}])
print(reply.choices[0].message.content)
"""

SCENARIOS = """
scenarios:
  - id: adds
    prompt: What is 2 + 2?
    trials: 2
    tags: [smoke]
    expectations:
      checks: [{output_contains: "4"}]
  - id: capital
    prompt: What is the capital of France?
    expectations:
      checks:
        - output_contains: Paris
"""

UNIT_TEST = """
def test_plain():
    assert 1 + 1 == 2
"""


@pytest.fixture
def project(tmp_path: Path):
    with ScriptedModelServer([Rule(last_user=r"2 \+ 2", text="The answer is 4."),
                              Rule(last_user="capital", text="It is Lyon.")]) as srv:
        (tmp_path / "scenarios").mkdir()
        (tmp_path / "scenarios" / "basics.yaml").write_text(SCENARIOS)
        (tmp_path / "agent.py").write_text(textwrap.dedent(AGENT))
        (tmp_path / "test_unit.py").write_text(textwrap.dedent(UNIT_TEST))
        (tmp_path / "costar.yaml").write_text(textwrap.dedent(f"""
            suite: scenarios
            agent:
              type: command
              command: [{json.dumps(sys.executable)}, agent.py]
              env: {{MODEL_URL: "{srv.base_url}"}}
            """))
        yield tmp_path


def pytest_in(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rfE", *args],
                          cwd=project, capture_output=True, text=True, timeout=300, env=child_env(COLUMNS="80"))


@pytest.mark.slow
def test_scenarios_are_test_items_with_their_verdicts_as_the_failure(project: Path) -> None:
    res = pytest_in(project, "--costar")
    out = res.stdout
    assert res.returncode == 1, out + res.stderr
    assert "1 failed, 2 passed" in out, out  # the unit test and 'adds' pass; 'capital' fails
    assert "scenarios/basics.yaml::capital" in out
    # The failure message is the verdicts: the check, its rationale, the trace to open.
    assert "✗ output_contains(\"Paris\"): output lacks 'Paris'" in out, out
    assert "It is Lyon." in out
    assert "costar traces show" in out
    runs = api.list_runs(store=project / ".costar", origins=["pytest"])
    assert len(runs.runs) == 2
    assert {r.origin for r in runs.runs} == {"pytest"}
    failed = next(r for r in runs.runs if r.failed)
    assert failed.run_id in out
    # The model was really asked: the agent's call is an LLM span of the stored trace.
    [trace] = api.list_traces(failed.run_id, store=project / ".costar").traces
    assert trace.totals.llm_calls == 1


@pytest.mark.slow
def test_selection_markers_and_a_given_suite(project: Path) -> None:
    only = pytest_in(project, "--costar", "-k", "adds")
    assert only.returncode == 0, only.stdout + only.stderr
    assert "1 passed" in only.stdout, only.stdout + only.stderr
    marked = pytest_in(project, "--costar", "-m", "smoke")
    assert marked.returncode == 0, marked.stdout
    assert "1 passed" in marked.stdout, marked.stdout
    given = pytest_in(project, "--costar=scenarios/basics.yaml", "-m", "costar", "--costar-trials", "1")
    assert "1 failed, 1 passed" in given.stdout, given.stdout
    without = pytest_in(project)
    assert without.returncode == 0
    assert "1 passed" in without.stdout  # no --costar: scenarios are not tests
    bad = pytest_in(project, "--costar=nowhere/")
    assert bad.returncode == 4
    assert "--costar: " in bad.stderr
    assert "nowhere" in bad.stderr


def test_assert_passes_on_a_fresh_recording() -> None:
    with Recording("my-agent") as rec, span("execute_tool lookup", kind="TOOL",
                                            attributes={"gen_ai.tool.name": "lookup"}):
        pass
    verdicts = api.assert_passes(rec, [{"output_contains": "42"}, {"tool_called": "lookup"}, "no_error_spans"],
                                 output="the answer is 42")
    assert [v.outcome for v in verdicts] == ["pass", "pass", "pass"]
    with pytest.raises(api.TraceFailed) as failed:
        api.assert_passes(rec, [{"output_contains": "43"}, {"tool_called": "lookup"}], output="the answer is 42")
    message = str(failed.value)
    assert message.splitlines()[0] == f"trace {rec.trace_id}: 1 of 2 judges did not pass"
    assert "✗ output_contains(\"43\"): output lacks '43'" in message
    assert isinstance(failed.value, AssertionError)
    assert len(failed.value.verdicts) == 2


def test_assert_passes_on_a_stored_trace_reads_its_files(tmp_path: Path) -> None:
    (tmp_path / "agent.py").write_text("import pathlib; pathlib.Path('out.csv').write_text('a,b\\n1,2\\n'); print('done')")
    (tmp_path / "s.yaml").write_text("id: s\nprompt: go\n")
    outcome = api.run_suite(tmp_path / "s.yaml", {"type": "command", "command": [sys.executable, "agent.py"],
                                                  "cwd": str(tmp_path)}, store=tmp_path / ".costar")
    [trace] = api.list_traces(outcome.run.run_id, store=tmp_path / ".costar").traces
    verdicts = api.assert_passes(trace.trace_id[:10], [{"csv": {"file": "out.csv", "columns": ["a", "b"]}}],
                                 store=tmp_path / ".costar")
    assert verdicts[0].passed is True
    with pytest.raises(api.TraceFailed, match="csv"):
        api.assert_passes(trace.trace_id, [{"csv": {"file": "out.csv", "min_rows": 5}}], store=tmp_path / ".costar")
    with pytest.raises(Exception, match="unknown check 'output_contain'"):
        api.assert_passes(trace.trace_id, [{"output_contain": "x"}], store=tmp_path / ".costar")


def test_failure_message_shows_trace_content_inert() -> None:
    from costar.pytest_plugin import failure_message
    from costar.summary import summarize
    from tests.support.report import make_run, make_trace, verdict

    t = make_trace("s", 0)
    summary = summarize(make_run(), [t], [verdict(t, "ok", False, rationale="output starts '\x1b]0;pwned\x07\x1b[2J'")])
    text = failure_message(summary.scenario("s"), "run-1")
    assert "\x1b" not in text
    assert "\x07" not in text
    assert "\\x1b]0;pwned\\x07" in text
    assert f"trace {t.trace_id}" in text
