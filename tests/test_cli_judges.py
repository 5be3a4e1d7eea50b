"""costar judges …: list, agreement with humans, gates, the labeling queue, corrected pass rates."""

from __future__ import annotations

import csv
import json
import subprocess
from pathlib import Path

import pytest

from conftest import EXTERNAL, child_env, costar_cmd
from costar.store.sqlite import SQLiteStore


def costar(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*costar_cmd(), *args], cwd=cwd, capture_output=True, text=True, timeout=120,
                          env=child_env())


@pytest.fixture(scope="module")
def labeled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tau-bench runs imported (their rewards are the judge) and labeled by a human who disagrees 10 times."""
    root = tmp_path_factory.mktemp("judges")
    (root / "judges").mkdir()
    (root / "judges" / "reward.yaml").write_text(
        "name: tau-bench.reward\ntype: llm\nmodel: openai-compatible:/m?base_url=http://127.0.0.1:9/v1\n"
        "instructions: Did the agent complete the booking task? {{outputs}}\n"
        "agreement_floor: {metric: kappa, min: 0.95}\n")
    assert costar("traces", "import", str(EXTERNAL / "tau-bench" / "gpt-4o-airline.json"), cwd=root).returncode == 0
    st = SQLiteStore(root / ".costar")
    verdicts = st.verdicts(run_id=st.resolve_run_id("latest"))
    with open(root / "labels.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["trace_id", "name", "value", "labeler"])
        for i, v in enumerate(verdicts):
            w.writerow([v.trace_id, "tau-bench.reward", str(v.passed if i >= 10 else not v.passed).lower(), "ann"])
    assert costar("labels", "import", "labels.csv", "--type", "bool", cwd=root).returncode == 0
    res = costar("golden", "create", "air", "tau-bench.reward", "--seed", "3", cwd=root)
    assert res.returncode == 0, res.stderr
    return root


def test_list_shows_project_judges_and_templates(labeled: Path) -> None:
    res = costar("judges", "list", "--json", cwd=labeled)
    assert res.returncode == 0, res.stderr
    infos = {i["name"]: i for i in json.loads(res.stdout)}
    assert infos["tau-bench.reward"]["type"] == "llm" and infos["tau-bench.reward"]["agreement_floor"]["min"] == 0.95
    assert {"outcome", "skill_invocation", "best_practices"} <= set(infos)


def test_agreement_from_the_store(labeled: Path) -> None:
    res = costar("judges", "agreement", "tau-bench.reward", "--split", "all", "--json", cwd=labeled)
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    text = json.dumps(data)
    assert '"n": 200' in text
    acc = data["result"]["accuracy"]
    assert abs(acc["value"] - 190 / 200) < 1e-9


def test_gates_use_declared_and_command_line_floors(labeled: Path) -> None:
    declared = costar("judges", "check", "--golden", "air", "--split", "all", cwd=labeled)
    assert declared.returncode == 1, declared.stdout + declared.stderr  # kappa ≈ 0.90 < 0.95
    loose = costar("judges", "check", "--floor", "tau-bench.reward:accuracy>=0.9", cwd=labeled)
    assert "tau-bench.reward" in loose.stdout
    nolabels = costar("judges", "check", "--floor", "outcome:kappa>=0.5", cwd=labeled)
    assert nolabels.returncode == 1 and "label" in nolabels.stdout.lower()
    bad = costar("judges", "check", "--floor", "nonsense", cwd=labeled)
    assert bad.returncode == 2 and "NAME:METRIC>=MIN" in bad.stderr


def test_corrected_pass_rate(labeled: Path) -> None:
    res = costar("judges", "corrected", "tau-bench.reward", "--golden", "air", "--split", "all", "--json", cwd=labeled)
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    assert data["raw"]["count"] == 84 and data["raw"]["total"] == 200


def test_uncertain_queue_when_nothing_is_uncertain(labeled: Path) -> None:
    res = costar("judges", "uncertain", "tau-bench.reward", "--queue-out", "q.txt", cwd=labeled)
    assert res.returncode == 0 and "no unlabeled trace" in res.stdout


def test_a_floor_with_an_unknown_metric_is_one_line_naming_the_metrics(tmp_path: Path) -> None:
    res = costar("judges", "check", "--floor", "outcome:foo>=0.5", cwd=tmp_path)
    assert res.returncode == 2
    assert res.stderr.startswith("error: --floor 'outcome:foo>=0.5': metric: Input should be 'kappa'")
    assert "Traceback" not in res.stderr
