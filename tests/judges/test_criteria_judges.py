"""Natural-language criteria need a model judge (issue 9, item 9): a warning at load when none applies
them, ``judges:`` in costar.yaml for every scenario, and ``apply_to: all`` in a judge file."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

from costar.store.sqlite import SQLiteStore
from costar.testing import Rule, ScriptedModelServer
from tests.cli.test_cli import costar

SUITE = """
scenarios:
  - id: greets
    prompt: Say hello to Ada.
    expectations:
      criteria: [The reply greets Ada by name.]
  - id: counts
    prompt: Count to three.
    expectations:
      checks: [{output_contains: "three"}]
"""
AGENT = "import sys\nprint('hello Ada, one two three: ' + sys.stdin.read())\n"


def _project(root: Path, config_extra: str = "", judges: dict[str, str] | None = None) -> Path:
    (root / "scenarios").mkdir(parents=True)
    (root / "scenarios" / "suite.yaml").write_text(textwrap.dedent(SUITE))
    (root / "agent.py").write_text(AGENT)
    (root / "costar.yaml").write_text(f"suite: scenarios\nagent:\n  type: command\n"
                                      f"  command: [{json.dumps(sys.executable)}, agent.py]\n{config_extra}")
    if judges:
        (root / "judges").mkdir()
        for name, text in judges.items():
            (root / "judges" / f"{name}.yaml").write_text(textwrap.dedent(text))
    return root


def _criteria_judge(model: str, extra: str = "") -> str:
    return f"""
        name: criteria-met
        type: llm
        model: '{model}'
        instructions: "Does the reply meet these criteria? {{{{criteria}}}}"
        {extra}
        """


def test_criteria_without_a_model_judge_are_warned_about_at_load(tmp_path: Path) -> None:
    proj = _project(tmp_path / "p", judges={"tone": """
        name: tone
        type: llm
        instructions: Is the reply friendly?
        apply_to: all
        """})
    listed = costar("scenarios", cwd=proj)
    assert listed.returncode == 0, listed.stderr
    # 'tone' applies to every scenario but never reads {{criteria}}: the criteria would be ignored.
    assert "scenario 'greets'" in listed.stderr, listed.stderr
    assert ("1 natural-language criterion but no model judge applies it" \
        in listed.stderr), listed.stderr
    assert "'counts'" not in listed.stderr  # no criteria, nothing to warn about
    assert "judges: [outcome] in costar.yaml" in listed.stderr
    assert "apply_to: all" in listed.stderr
    run = costar("run", "--no-progress", "--id", "greets", cwd=proj,
                 COSTAR_JUDGE_MODEL="openai-compatible:/m?base_url=http://127.0.0.1:9/v1")
    assert "warning: scenario 'greets'" in run.stderr, run.stderr


def test_costar_yaml_judges_apply_to_every_scenario(tmp_path: Path) -> None:
    with ScriptedModelServer([Rule(system="careful judge", json={"rationale": "greets Ada", "value": True})]) as srv:
        proj = _project(tmp_path / "p", "judges: [criteria-met]\n", {"criteria-met": _criteria_judge(srv.model_uri())})
        listed = costar("scenarios", cwd=proj)
        assert listed.returncode == 0, listed.stderr
        assert "warning" not in listed.stderr, listed.stderr
        run = costar("run", "--no-progress", cwd=proj)
        assert run.returncode == 0, run.stdout + run.stderr
        assert "warning" not in run.stderr
    store = SQLiteStore(proj / ".costar")
    verdicts = store.verdicts(run_id=store.resolve_run_id("latest"))
    judged = sorted(store.get_trace(v.trace_id, spans=False).scenario_id for v in verdicts if v.name == "criteria-met")
    assert judged == ["counts", "greets"]
    assert all(v.passed for v in verdicts if v.name == "criteria-met")


def test_apply_to_all_in_a_judge_file_counts(tmp_path: Path) -> None:
    proj = _project(tmp_path / "p", judges={
        "criteria-met": _criteria_judge("openai-compatible:/m?base_url=http://127.0.0.1:9/v1", "apply_to: all")})
    listed = costar("scenarios", cwd=proj)
    assert listed.returncode == 0, listed.stderr
    assert "warning" not in listed.stderr, listed.stderr


def test_bad_judges_in_costar_yaml_are_one_line_errors(tmp_path: Path) -> None:
    unknown = _project(tmp_path / "a", "judges: [no-such-judge]\n")
    res = costar("scenarios", cwd=unknown)
    assert res.returncode == 2, res.stderr
    assert len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert "costar.yaml: judges[0]: unknown judge 'no-such-judge'" in res.stderr
    typo = _project(tmp_path / "b", "judges: [{nam: outcome}]\n")
    res = costar("run", "--no-progress", cwd=typo)
    assert res.returncode == 2, res.stderr
    assert len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert "judges[0]" in res.stderr
    assert "(a judge name, or {name, options, gate})" in res.stderr
