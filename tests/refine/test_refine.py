"""The agent loop on a small real git repository: red → green, the held-out guard, bad input."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from costar.errors import ConfigError
from costar.refine import BuiltinAssistant, CommandAssistant, RefineOptions, Refiner
from costar.refine.acceptance import decide
from costar.stats import boschloo_exact
from costar.testing import ScriptedModelServer
from tests.support.cli import child_env, costar_cmd

AGENT = """
import os, pathlib, re, sys
prompt = sys.stdin.read().lower()
skill = pathlib.Path(__file__).with_name("skill.md").read_text().lower()
always_median = "always" in skill and "median" in skill
skew_rule = "skewed" in skill and "median" in skill
# A partial fix ("... from trial K"): the trials before K still get it wrong.
late = re.search(r"from trial (\\d+)", skill)
if late and int(os.environ["COSTAR_TRIAL"]) < int(late.group(1)):
    skew_rule = False
if "skewed" in prompt:
    stat = "median" if (always_median or skew_rule) else "mean"
elif "symmetric" in prompt:
    stat = "median" if always_median else "mean"
else:
    stat = "nothing"
print(f"filled the missing values with the {stat}")
"""

SUITE = """
defaults:
  trials: 4
scenarios:
  - id: skewed-income
    prompt: Fill the missing values of the skewed income column.
    expectations:
      checks: [{output_contains: median}]
      criteria: [Skewed columns are filled with the median.]
  - id: plain
    prompt: Say what you filled.
    expectations:
      checks: [{output_contains: filled}]
  - id: symmetric-age
    split: holdout
    prompt: Fill the missing values of the symmetric age column.
    expectations:
      checks: [{output_contains: mean}]
"""

ASSISTANT = """
import pathlib, sys
counter = pathlib.Path(sys.argv[1])
n = int(counter.read_text()) if counter.exists() else 0
counter.write_text(str(n + 1))
brief, repo = pathlib.Path(sys.argv[2]), pathlib.Path(sys.argv[3])
assert "skewed-income" in brief.read_text()
assert "symmetric-age" not in brief.read_text()
skill = repo / "agent" / "skill.md"
mode = sys.argv[4] if len(sys.argv) > 4 else ("overfit" if n == 0 else "good")
if mode == "overfit":
    skill.write_text("Always fill missing values with the median.\\n")
elif mode == "good":
    skill.write_text("Fill skewed columns with the median; symmetric ones with the mean.\\n")
elif mode.startswith("partial:"):
    skill.write_text(f"Fill skewed columns with the median from trial {mode[8:]}; symmetric ones with the mean.\\n")
elif mode == "outside":
    (repo / "scenarios" / "suite.yaml").write_text("id: cheat\\nprompt: x\\n")
elif mode == "fail":
    sys.exit("assistant crashed")
elif mode == "hang":
    import time; time.sleep(60)
"""


def sh(*args: str, cwd: Path) -> str:
    return subprocess.run(list(args), cwd=cwd, check=True, capture_output=True, text=True).stdout


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    (root / "agent").mkdir(parents=True)
    (root / "scenarios").mkdir()
    (root / "agent" / "agent.py").write_text(textwrap.dedent(AGENT))
    (root / "agent" / "skill.md").write_text("Fill missing values with the mean.\n")
    (root / "scenarios" / "suite.yaml").write_text(textwrap.dedent(SUITE))
    (root / "costar.yaml").write_text(textwrap.dedent(f"""
        suite: scenarios
        concurrency: 4
        agent:
          type: command
          command: [{json.dumps(sys.executable)}, agent/agent.py]
        refine:
          agent_dir: agent
          components: [skill.md]
        """))
    (root / ".gitignore").write_text(".costar/\n")
    sh("git", "init", "-q", cwd=root)
    sh("git", "-c", "user.name=t", "-c", "user.email=t@t", "add", "-A", cwd=root)
    sh("git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "agent", cwd=root)
    return root


def assistant(tmp_path: Path, mode: str | None = None, timeout: float = 60) -> CommandAssistant:
    script = tmp_path / "assistant.py"
    script.write_text(textwrap.dedent(ASSISTANT))
    cmd = [sys.executable, str(script), str(tmp_path / "calls"), "{brief}", "{repo}"] + ([mode] if mode else [])
    return CommandAssistant(cmd, timeout=timeout)


def test_red_to_green_with_the_held_out_guard(repo: Path, tmp_path: Path) -> None:
    skill_before = (repo / "agent" / "skill.md").read_text()
    report = Refiner(repo / "costar.yaml", assistant(tmp_path), RefineOptions(iterations=2)).run()
    assert report.baseline["skewed-income"] == (0, 4)
    assert report.baseline["symmetric-age"] == (4, 4)
    first, second = report.attempts
    assert first.status == "rejected", first.reason
    assert first.reason.startswith("held-out guard"), first.reason
    assert first.after["skewed-income"] == (4, 4)
    assert first.after["symmetric-age"] == (0, 4)
    assert second.status == "accepted", second.reason
    assert second.after == {"skewed-income": (4, 4), "plain": (4, 4), "symmetric-age": (4, 4)}
    assert report.best == second.branch
    # both attempts are kept as branches; the user's working tree is untouched, nothing merged
    branches = sh("git", "branch", "--list", "costar/refine/*", cwd=repo).split()
    assert second.branch in branches
    assert first.branch in branches
    assert (repo / "agent" / "skill.md").read_text() == skill_before
    assert sh("git", "status", "--porcelain", cwd=repo) == ""
    assert "median" in sh("git", "show", f"{second.branch}:agent/skill.md", cwd=repo)
    assert "skill.md" in second.diff_stat
    md = (Path(report.session_dir) / "report.md").read_text()
    # The report carries the patch itself, not only the diffstat.
    assert "+Fill skewed columns with the median" in second.diff
    assert "```diff" in md
    assert "+Fill skewed columns with the median" in md
    assert "Recommended for review" in md
    assert second.branch in md
    assert "[" in md  # rates with intervals
    brief = (Path(report.session_dir) / "attempt-1.brief.md").read_text()
    assert "output lacks 'median'" in brief
    assert "symmetric-age" not in brief


def test_bad_attempts_are_rejected_and_the_loop_goes_on(repo: Path, tmp_path: Path) -> None:
    # An edit outside the agent names the files edited and what may be edited.
    for mode, fragment in (("outside", "edited files outside the agent: scenarios/suite.yaml; only files under "
                                       "agent/ may change (refine.agent_dir), never costar.yaml, judges/, scenarios/"),
                           ("fail", "exited with code 1: assistant crashed"), ("nothing", "changed nothing")):
        report = Refiner(repo / "costar.yaml", assistant(tmp_path, mode), RefineOptions(iterations=1)).run()
        [attempt] = report.attempts
        assert attempt.status == "rejected", attempt.reason
        assert fragment in attempt.reason, attempt.reason
    hang = Refiner(repo / "costar.yaml", assistant(tmp_path, "hang", timeout=1), RefineOptions(iterations=1)).run()
    assert "timed out" in hang.attempts[0].reason
    assert sh("git", "status", "--porcelain", cwd=repo) == ""


def test_preconditions(repo: Path, tmp_path: Path) -> None:
    (repo / "agent" / "skill.md").write_text("uncommitted edit\n")
    with pytest.raises(ConfigError, match="uncommitted changes"):
        Refiner(repo / "costar.yaml", assistant(tmp_path)).run()
    sh("git", "checkout", "--", "agent/skill.md", cwd=repo)
    # A missing assistant command or a model that does not answer stops refinement before the
    # baseline run: no run is recorded.
    with pytest.raises(ConfigError, match="assistant command not found: no-such-assistant-xyz"):
        Refiner(repo / "costar.yaml", CommandAssistant(["no-such-assistant-xyz", "{brief}"]),
                RefineOptions(iterations=1)).run()
    with ScriptedModelServer([{"status": 401, "error_message": "invalid api key"}]) as srv:
        silent = BuiltinAssistant(srv.model_uri("reflector"), ["skill.md"], client_options={"cache": "off"})
        with pytest.raises(ConfigError, match=r"the built-in assistant's model .* does not answer"):
            Refiner(repo / "costar.yaml", silent, RefineOptions(iterations=1)).run()
    assert not (repo / ".costar" / "costar.db").exists() or "costar run" in _no_runs(repo)
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "costar.yaml").write_text("suite: s\n")
    with pytest.raises(ConfigError, match="not inside a git repository"):
        Refiner(plain / "costar.yaml", assistant(tmp_path))


def _no_runs(repo: Path) -> str:
    from costar.store.sqlite import SQLiteStore

    with SQLiteStore(repo / ".costar") as st:
        try:
            st.resolve_run_id("latest")
        except ConfigError as exc:
            return str(exc)
        except Exception as exc:  # StoreError
            return str(exc)
    return "a run was recorded"


def test_refine_runs_are_never_latest_and_clean_removes_worktrees_and_branches(repo: Path, tmp_path: Path) -> None:
    from costar.refine.cleanup import clean_sessions

    ours = subprocess.run([*costar_cmd(), "run", "--no-progress"], cwd=repo, capture_output=True, text=True,
                          timeout=300, env=child_env(CI=""))
    assert ours.returncode == 1, ours.stdout + ours.stderr
    mine = ours.stdout.strip().splitlines()[-1].removeprefix("run id: ")
    first = Refiner(repo / "costar.yaml", assistant(tmp_path, "good"), RefineOptions(iterations=1)).run()
    second = Refiner(repo / "costar.yaml", assistant(tmp_path, "good"), RefineOptions(iterations=1)).run()
    # Refinement's own runs do not become 'latest': the user's run still is.
    latest = subprocess.run([*costar_cmd(), "report", "--json"], cwd=repo, capture_output=True, text=True,
                            env=child_env())
    assert json.loads(latest.stdout)["run_id"] == mine
    listed = json.loads(subprocess.run([*costar_cmd(), "runs", "--all", "--json"], cwd=repo, capture_output=True,
                                       text=True, env=child_env()).stdout)["runs"]
    assert {r["origin"] for r in listed} == {"cli", "refine"}
    hidden = json.loads(subprocess.run([*costar_cmd(), "runs", "--json"], cwd=repo, capture_output=True,
                                       text=True, env=child_env()).stdout)
    assert [r["run_id"] for r in hidden["runs"]] == [mine]
    assert hidden["hidden"] >= 2

    branches = sh("git", "branch", "--list", "costar/refine/*", cwd=repo).split()
    assert first.attempts[0].branch in branches
    assert second.attempts[0].branch in branches
    dry = clean_sessions(repo / "costar.yaml", keep=1, dry_run=True)
    assert dry.sessions == [first.session]
    assert dry.kept == [second.session]
    assert Path(first.attempts[0].worktree).exists()  # a dry run removes nothing
    res = subprocess.run([*costar_cmd(), "refine", "clean", "--keep", "1"], cwd=repo, capture_output=True,
                         text=True, env=child_env())
    assert res.returncode == 0, res.stdout + res.stderr
    assert first.session in res.stdout, res.stdout + res.stderr
    branches = sh("git", "branch", "--list", "costar/refine/*", cwd=repo).split()
    assert first.attempts[0].branch not in branches
    assert second.attempts[0].branch in branches
    assert not Path(first.attempts[0].worktree).exists()
    assert Path(second.attempts[0].worktree).exists()
    assert (Path(first.session_dir) / "report.md").exists()  # the report stays
    everything = subprocess.run([*costar_cmd(), "refine", "clean"], cwd=repo, capture_output=True, text=True,
                                env=child_env())
    assert everything.returncode == 0
    assert sh("git", "branch", "--list", "costar/refine/*", cwd=repo).split() == []
    assert "costar/refine" not in sh("git", "worktree", "list", cwd=repo)
    again = subprocess.run([*costar_cmd(), "refine", "clean"], cwd=repo, capture_output=True, text=True,
                           env=child_env())
    assert again.returncode == 0
    assert "nothing to clean" in again.stdout


def test_nothing_to_refine(repo: Path, tmp_path: Path) -> None:
    (repo / "agent" / "skill.md").write_text("Fill skewed columns with the median; symmetric ones with the mean.\n")
    sh("git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", "fixed", cwd=repo)
    report = Refiner(repo / "costar.yaml", assistant(tmp_path), RefineOptions(iterations=2)).run()
    assert report.stopped_because.startswith("nothing to refine")
    assert report.attempts == []


def test_builtin_assistant_rewrites_a_component_with_a_model(repo: Path) -> None:
    good = "For skewed columns fill with the median; for symmetric columns the mean is fine."
    with ScriptedModelServer([{"any_message": "skewed-income", "json": {
            "component": "skill.md", "new_text": good, "rationale": "skew needs the median"}}]) as srv:
        helper = BuiltinAssistant(srv.model_uri("reflector"), ["skill.md"], client_options={"cache": "off"})
        report = Refiner(repo / "costar.yaml", helper, RefineOptions(iterations=1)).run()
        prompts = [r.body["messages"][0]["content"] for r in srv.requests]
    assert prompts[0] == "Reply with the word OK."  # the model was checked before the baseline run
    prompt = prompts[-1]
    [attempt] = report.attempts
    assert attempt.status == "accepted", attempt.reason
    assert "Fill missing values with the mean." in prompt  # the component was shown to the model
    assert good in sh("git", "show", f"{attempt.branch}:agent/skill.md", cwd=repo)


def test_cli_refine(repo: Path, tmp_path: Path) -> None:
    script = tmp_path / "assistant.py"
    script.write_text(textwrap.dedent(ASSISTANT))
    spec = f"cmd:{sys.executable} {script} {tmp_path / 'calls'} {{brief}} {{repo}} good"
    res = subprocess.run([*costar_cmd(), "refine", "--assistant", spec, "--iterations", "1"], cwd=repo,
                         capture_output=True, text=True, timeout=300, env=child_env())
    assert res.returncode == 0, res.stdout + res.stderr
    assert "ACCEPTED" in res.stdout
    assert "git merge costar/refine/" in res.stdout
    none = subprocess.run([*costar_cmd(), "refine"], cwd=repo, capture_output=True, text=True, env=child_env())
    assert none.returncode == 2
    assert "no coding assistant" in none.stderr


def test_acceptance_rules_and_one_sided_boschloo() -> None:
    scipy = pytest.importorskip("scipy.stats")
    for a, an, b, bn in [(0, 6, 6, 6), (3, 6, 4, 6), (2, 10, 8, 10)]:
        assert boschloo_exact(a, an, b, bn, alternative="better") == pytest.approx(
            scipy.boschloo_exact([[a, b], [an - a, bn - b]], alternative="less").pvalue)
    base = {"t": (0, 3), "h": (3, 3)}
    assert not decide(base, {"t": (1, 3)}, targets=["t"], train_rest=[], holdout=[]).accepted  # lucky run
    assert not decide(base, {"t": (2, 3)}, targets=["t"], train_rest=[], holdout=[]).accepted  # p = 0.11
    ok = decide(base, {"t": (3, 3), "h": (3, 3)}, targets=["t"], train_rest=[], holdout=["h"])
    assert ok.accepted, ok.reason  # 0/3 → 3/3: p = 1/64 (Fisher's test said 0.05 and rejected it)
    big = {"t": (0, 6), "h": (6, 6)}
    assert decide(big, {"t": (6, 6), "h": (6, 6)}, targets=["t"], train_rest=[], holdout=["h"]).accepted
    guard = decide(big, {"t": (6, 6), "h": (2, 6)}, targets=["t"], train_rest=[], holdout=["h"])
    assert not guard.accepted
    assert "held-out guard" in guard.reason


# ----------------------------------------------------------------------------- power at few trials (issue 9, item 4)


@pytest.mark.parametrize(("trials", "first_fixed_trial", "after"), [
    (3, 0, (3, 3)),  # 0/3 → 3/3: p = 1/64 (one-sided Fisher: 0.050, rejected by "p < 0.05")
    (4, 1, (3, 4)),  # 0/4 → 3/4: p = 0.035 (Fisher: 0.071)
    (5, 2, (3, 5)),  # 0/5 → 3/5: p = 0.031 (Fisher: 0.083)
])
def test_a_real_fix_is_accepted_at_the_trial_counts_the_readme_shows(
        repo: Path, tmp_path: Path, trials: int, first_fixed_trial: int, after: tuple[int, int]) -> None:
    said: list[str] = []
    report = Refiner(repo / "costar.yaml", assistant(tmp_path, f"partial:{first_fixed_trial}"),
                     RefineOptions(iterations=1, trials=trials), say=said.append).run()
    assert report.baseline["skewed-income"] == (0, trials)
    [attempt] = report.attempts
    assert attempt.after["skewed-income"] == after
    assert attempt.status == "accepted", attempt.reason
    assert report.warnings == []
    assert not any(m.startswith("warning") for m in said)


@pytest.mark.parametrize(("i", "k", "n", "accepted"), [
    (0, 3, 3, True), (0, 2, 3, False),
    (0, 3, 4, True), (0, 2, 4, False),
    (0, 3, 5, True), (0, 2, 5, False), (1, 5, 5, True),
])
def test_acceptance_at_three_four_and_five_trials(i: int, k: int, n: int, accepted: bool) -> None:
    decision = decide({"t": (i, n)}, {"t": (k, n)}, targets=["t"], train_rest=[], holdout=[])
    assert decision.accepted is accepted, decision.reason


def test_too_few_trials_are_said_before_the_baseline_runs(repo: Path, tmp_path: Path) -> None:
    said: list[str] = []
    report = Refiner(repo / "costar.yaml", assistant(tmp_path, "good"), RefineOptions(iterations=1, trials=2),
                     say=said.append).run()
    warning = next(i for i, m in enumerate(said) if m.startswith("warning:"))
    baseline = next(i for i, m in enumerate(said) if m.startswith("baseline:"))
    assert warning < baseline
    assert "0/2 → 2/2 gives p = 0.0625" in said[warning], said[warning]
    assert "at least 3 trials" in said[warning], said[warning]
    assert report.warnings
    assert "at least 3 trials" in report.warnings[0]
    [attempt] = report.attempts
    assert attempt.status == "rejected"
    assert attempt.after["skewed-income"] == (2, 2)  # fixed, and unprovable
    assert "Warning:" in (Path(report.session_dir) / "report.md").read_text()


def test_alpha_comes_from_costar_yaml_and_the_flag(repo: Path, tmp_path: Path) -> None:
    config = repo / "costar.yaml"
    config.write_text(config.read_text() + "  alpha: 0.01\n")
    sh("git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", "alpha", cwd=repo)
    said: list[str] = []
    strict = Refiner(config, assistant(tmp_path, "good"), RefineOptions(iterations=1, trials=3),
                     say=said.append).run()
    assert strict.alpha == 0.01
    assert any("at least 4 trials" in m for m in said), said  # 0/3 → 3/3 is p = 0.0156
    assert strict.attempts[0].status == "rejected"
    assert "needs < 0.01" in strict.attempts[0].reason
    loose = Refiner(config, assistant(tmp_path, "good"), RefineOptions(iterations=1, trials=3, alpha=0.05)).run()
    assert loose.alpha == 0.05, loose.attempts[0].reason
    assert loose.attempts[0].status == "accepted", loose.attempts[0].reason
    with pytest.raises(ConfigError, match="alpha must be between 0 and 1"):
        Refiner(config, assistant(tmp_path), RefineOptions(alpha=1.5))


def test_identical_attempts_are_not_run_again(repo: Path, tmp_path: Path) -> None:
    report = Refiner(repo / "costar.yaml", assistant(tmp_path, "overfit"), RefineOptions(iterations=2)).run()
    first, second = report.attempts
    assert first.status == "rejected", first.reason
    assert first.reason.startswith("held-out guard"), first.reason
    assert first.run_ids
    assert second.status == "rejected", second.reason
    assert "the same code as attempt-1" in second.reason, second.reason
    assert "not run again" in second.reason
    assert second.run_ids == []
    assert second.after == {}
    assert "symmetric-age" not in second.feedback  # held-out names stay out of what the assistant reads


def test_refine_refuses_in_process_agents(tmp_path: Path) -> None:
    (tmp_path / "costar.yaml").write_text("suite: s\nagent: {type: python, target: 'a:run'}\n")
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty", "-m", "x"],
                   cwd=tmp_path, check=True)
    with pytest.raises(ConfigError, match="refine needs a command agent"):
        Refiner(tmp_path / "costar.yaml", CommandAssistant(["true"])).run()
