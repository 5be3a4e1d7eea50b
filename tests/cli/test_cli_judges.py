"""costar judges …: list, agreement with humans, gates, the labeling queue, corrected pass rates."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from costar.store.sqlite import SQLiteStore
from tests.support.cli import costar
from tests.support.paths import EXTERNAL


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
    infos = {i["name"]: i for i in json.loads(res.stdout)["judges"]}
    assert infos["tau-bench.reward"]["type"] == "llm"
    assert infos["tau-bench.reward"]["agreement_floor"]["min"] == 0.95
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
    assert nolabels.returncode == 1
    assert "label" in nolabels.stdout.lower()
    bad = costar("judges", "check", "--floor", "nonsense", cwd=labeled)
    assert bad.returncode == 2
    assert "NAME:METRIC>=MIN" in bad.stderr


def test_corrected_pass_rate(labeled: Path) -> None:
    res = costar("judges", "corrected", "tau-bench.reward", "--golden", "air", "--split", "all", "--json", cwd=labeled)
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    assert data["raw"]["count"] == 84
    assert data["raw"]["total"] == 200


def test_uncertain_queue_when_nothing_is_uncertain(labeled: Path) -> None:
    (labeled / "q.txt").write_text("an-old-trace-id\n")
    res = costar("judges", "uncertain", "tau-bench.reward", "--queue-out", "q.txt", cwd=labeled)
    assert res.returncode == 0
    assert "no unlabeled trace" in res.stdout
    # The queue file is written (empty) even when nothing is uncertain: no stale queue survives.
    assert (labeled / "q.txt").read_text() == ""
    assert "q.txt is empty" in res.stdout


def test_uncertain_lists_scenario_names(tmp_path: Path) -> None:
    from costar.store.base import Run
    from costar.trace.model import Trace
    from costar.verdict import Verdict

    st = SQLiteStore(tmp_path / ".costar")
    st.create_run(Run(run_id="20990101-000000-abcdef"))
    st.write_traces([Trace(trace_id=f"{i:032x}", run_id="20990101-000000-abcdef", scenario_id="refund-policy",
                           trial=i) for i in range(2)])
    st.write_verdicts([Verdict(name="polite", passed=True, value=True, trace_id=f"{i:032x}", confidence=0.5,
                               metadata={"samples": [True, False]}) for i in range(2)])
    st.close()
    res = costar("judges", "uncertain", "polite", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "refund-policy[0]" in res.stdout, res.stdout
    assert "refund-policy[1]" in res.stdout, res.stdout


def test_labelers_take_a_comma_list_or_the_flag_twice(labeled: Path) -> None:
    st = SQLiteStore(labeled / ".costar")
    ann = [v for v in st.labels(name="tau-bench.reward", labeler="ann")][:40]
    st.close()
    with open(labeled / "bob.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["trace_id", "name", "value", "labeler"])
        for i, v in enumerate(ann):
            w.writerow([v.trace_id, "tau-bench.reward", str(v.value if i % 4 else not v.value).lower(), "bob"])
    assert costar("labels", "import", "bob.csv", "--type", "bool", cwd=labeled).returncode == 0
    comma = costar("judges", "agreement", "tau-bench.reward", "--labelers", "ann,bob", cwd=labeled)
    assert comma.returncode == 0, comma.stderr
    twice = costar("judges", "agreement", "tau-bench.reward", "--labelers", "ann", "--labelers", "bob", cwd=labeled)
    assert twice.returncode == 0
    assert twice.stdout == comma.stdout
    # The confusion matrix says which side is which.
    assert "confusion (rows: human, labeler 'ann'; columns: human, labeler 'bob')" in comma.stdout, comma.stdout
    one = costar("judges", "agreement", "tau-bench.reward", "--labelers", "ann", cwd=labeled)
    assert one.returncode == 2
    assert "--labelers takes two different labelers (e.g. --labelers ann,bob)" in one.stderr
    helped = costar("judges", "agreement", "--help", cwd=labeled)
    assert "<str,str>" not in helped.stdout
    assert "ann,bob" in helped.stdout


def test_judge_agreement_names_the_human_and_the_judge_axes(labeled: Path) -> None:
    res = costar("judges", "agreement", "tau-bench.reward", "--split", "all", cwd=labeled)
    assert res.returncode == 0, res.stderr
    line = next(x for x in res.stdout.splitlines() if "confusion" in x)
    assert line.strip().startswith("confusion (rows: human, "), line
    assert "; columns: judge, " in line, line


def test_judges_check_split_all_measures_every_split(tmp_path: Path) -> None:
    """Issue 9, item 7: --split all did not reach a floor declared with its own golden set."""
    from costar.align.golden import create_golden_set
    from costar.align.labeling import new_label
    from costar.trace.model import Trace
    from costar.verdict import Verdict, VerdictSource

    store = SQLiteStore(tmp_path / ".costar")
    human = {f"t{i:02d}": i % 2 == 0 for i in range(20)}
    store.write_traces([Trace(trace_id=t, scenario_id=f"item-{t}") for t in human])
    store.write_labels([new_label(t, "polite", v, labeler="ana") for t, v in human.items()])
    store.write_verdicts([Verdict(name="polite", value=v, passed=v, trace_id=t, fingerprint="fp",
                                  source=VerdictSource.LLM) for t, v in human.items()])
    create_golden_set(store, "gs", "polite", seed=1)
    store.close()
    (tmp_path / "judges").mkdir()
    (tmp_path / "judges" / "polite.yaml").write_text(
        "name: polite\ntype: llm\ninstructions: Is it polite?\n"
        "agreement_floor: {metric: kappa, min: 0.6, golden: gs}\n")
    default = costar("judges", "check", "--json", cwd=tmp_path)
    [on_test] = json.loads(default.stdout)["results"]
    assert (on_test["floor"]["split"], on_test["compared"]) == ("test", 4)
    assert on_test["warnings"]
    assert "16 needed" in on_test["warnings"][0]
    every = costar("judges", "check", "--split", "all", "--json", cwd=tmp_path)
    [on_all] = json.loads(every.stdout)["results"]
    assert (on_all["floor"]["split"], on_all["compared"]) == ("all", 20), every.stdout
    assert on_all["warnings"] == []


def test_a_floor_with_an_unknown_metric_is_one_line_naming_the_metrics(tmp_path: Path) -> None:
    res = costar("judges", "check", "--floor", "outcome:foo>=0.5", cwd=tmp_path)
    assert res.returncode == 2
    assert res.stderr.startswith("error: --floor 'outcome:foo>=0.5': metric: Input should be 'kappa'")
    assert "Traceback" not in res.stderr
