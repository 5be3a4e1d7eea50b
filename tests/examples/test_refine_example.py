"""The agent loop on the bundled Data Analyst example: red → green with a sharpened skill, and an
overfitting edit rejected by the held-out guard. The agent runs its deterministic rule policy (it
follows whatever its skills say); the built-in assistant's model is the scripted server."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from costar.refine import BuiltinAssistant, RefineOptions, Refiner
from costar.testing import ScriptedModelServer
from tests.support.paths import REPO

EXAMPLE = REPO / "examples" / "data_analyst"
SKILL = "skills/missing-values/SKILL.md"
GOOD_RULE = "- For a skewed column, fill with the median: the mean is pulled by the tail."
WEAK_RULE = "- Fill missing values with the mean of the column."
OVERFIT_RULE = "- Always fill missing values with the median, whatever the column."


def sh(*args: str, cwd: Path) -> str:
    return subprocess.run(list(args), cwd=cwd, check=True, capture_output=True, text=True).stdout


def test_red_to_green_on_the_data_analyst_example(tmp_path: Path) -> None:
    repo = tmp_path / "analyst"
    shutil.copytree(EXAMPLE, repo, ignore=shutil.ignore_patterns(".costar", "report.*", "__pycache__"))
    skill = (repo / SKILL).read_text()
    assert GOOD_RULE in skill
    (repo / SKILL).write_text(skill.replace(GOOD_RULE, WEAK_RULE).replace("  So call fill_missing with strategy=median.\n", ""))
    (repo / ".gitignore").write_text(".costar/\n")
    sh("git", "init", "-q", cwd=repo)
    sh("git", "-c", "user.name=t", "-c", "user.email=t@t", "add", "-A", cwd=repo)
    sh("git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "analyst with a vague skill", cwd=repo)

    overfit = skill.replace(GOOD_RULE, OVERFIT_RULE)
    rules = [{"name": "overfit", "times": 1, "any_message": "impute-skewed-income",
              "json": {"component": SKILL, "new_text": overfit, "rationale": "income needs the median"}},
             {"name": "sharpen", "any_message": "impute-skewed-income",
              "json": {"component": SKILL, "new_text": skill, "rationale": "skewed columns need the median"}}]
    with ScriptedModelServer(rules) as srv:
        helper = BuiltinAssistant(srv.model_uri("reflector"), ["skills/*/SKILL.md"], client_options={"cache": "off"})
        report = Refiner(repo / "costar.rule.yaml", helper, RefineOptions(iterations=2, trials=4)).run()
        prompts = [r.body["messages"][0]["content"] for r in srv.requests]
    assert prompts[0] == "Reply with the word OK."  # the model was checked before the baseline run
    reflections = prompts[1:]

    assert report.baseline["impute-skewed-income"] == (0, 4)
    assert report.baseline["impute-symmetric-height"] == (4, 4)
    assert "forecast-revenue" not in report.baseline  # excluded by refine.exclude_tags
    first, second = report.attempts
    assert first.status == "rejected", first.reason
    assert first.reason.startswith("held-out guard"), first.reason
    assert first.after["impute-skewed-income"] == (4, 4)
    assert first.after["impute-symmetric-height"] == (0, 4)
    assert second.status == "accepted", second.reason
    assert second.after["impute-skewed-income"] == (4, 4)
    assert all(c == n for c, n in second.after.values()), second.after  # no regressions anywhere
    assert report.best == second.branch
    assert GOOD_RULE in sh("git", "show", f"{second.branch}:{SKILL}", cwd=repo)
    # The assistant saw the train failure, never the held-out scenario, and learnt why attempt 1 failed.
    assert "impute-skewed-income" in reflections[0]
    assert "impute-symmetric-height" not in "".join(reflections)
    assert "held out from you worse" in reflections[1]
    brief = (Path(report.session_dir) / "attempt-1.brief.md").read_text()
    assert "Root cause hint" in brief
    assert "filled with the median" in brief
    assert sh("git", "status", "--porcelain", cwd=repo) == ""
    assert WEAK_RULE in (repo / SKILL).read_text()  # the user's working tree is untouched
