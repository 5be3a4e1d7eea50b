"""Agreement floors: judges gated like tests on a real store, with every way a floor can be missed."""

from __future__ import annotations

import krippendorff
import numpy as np
import pytest
from pydantic import ValidationError
from sklearn.metrics import balanced_accuracy_score, cohen_kappa_score

from costar.align.gates import GateReport, JudgeFloor, check_agreement_floors
from costar.align.golden import create_golden_set
from costar.align.labeling import new_label
from costar.store.sqlite import SQLiteStore
from costar.trace.model import Trace
from costar.verdict import Verdict, VerdictSource


def write_judge(store: SQLiteStore, name: str, human: dict[str, object], judge: dict[str, object],
                vtype: object = "bool") -> None:
    store.write_traces([Trace(trace_id=t, scenario_id=f"item-{i}", trial=0) for i, t in enumerate(human)])
    store.write_labels([new_label(t, name, v, labeler="ana", value_type=vtype) for t, v in human.items()])
    store.write_verdicts([Verdict(name=name, value=v, passed=v if isinstance(v, bool) else None, trace_id=t,
                                  fingerprint="fp", source=VerdictSource.LLM) for t, v in judge.items()])


def noisy(prefix: str, n: int, flip: float, seed: int) -> tuple[dict[str, object], dict[str, object]]:
    rng = np.random.default_rng(seed)
    human = {f"{prefix}{i:03d}": bool(x) for i, x in enumerate(rng.random(n) < 0.5)}
    return human, {t: v != bool(rng.random() < flip) for t, v in human.items()}


@pytest.fixture
def judged(store: SQLiteStore) -> tuple[SQLiteStore, dict[str, tuple[dict[str, object], dict[str, object]]]]:
    data = {"good": noisy("g", 120, 0.08, 1), "weak": noisy("w", 120, 0.35, 2)}
    for name, (human, judge) in data.items():
        write_judge(store, name, human, judge)
    return store, data


def test_floors_pass_and_fail_with_values_from_sklearn(judged) -> None:
    store, data = judged
    report = check_agreement_floors(store, [
        JudgeFloor(name="good", metric="kappa", min=0.6),
        JudgeFloor(name="weak", metric="kappa", min=0.6),
        JudgeFloor(name="weak", metric="balanced_accuracy", min=0.6),
    ])
    good, weak, weak_bacc = report.results
    y, f = zip(*[(data["good"][0][t], data["good"][1][t]) for t in data["good"][0]], strict=True)
    assert good.status == "pass"
    assert good.value == pytest.approx(cohen_kappa_score(y, f))
    assert good.compared == 120
    y, f = zip(*[(data["weak"][0][t], data["weak"][1][t]) for t in data["weak"][0]], strict=True)
    assert weak.status == "fail"
    assert weak.value == pytest.approx(cohen_kappa_score(y, f))
    assert weak_bacc.status == "pass"
    assert weak_bacc.value == pytest.approx(balanced_accuracy_score(y, f))
    linear = check_agreement_floors(store, [JudgeFloor(name="weak", metric="kappa_linear", min=0.1)]).results[0]
    assert linear.value == pytest.approx(weak.value)  # two classes: weighted kappa is kappa
    assert not report.passed
    assert report.exit_code == 1
    assert weak.reason.startswith(f"kappa {weak.value:.3f} < 0.6 (CI [")
    text = report.format()
    assert text.splitlines()[0].startswith("PASS  good")
    assert text.splitlines()[1].startswith("FAIL  weak")
    assert text.endswith("1 of 3 agreement floors missed")
    assert GateReport.model_validate(report.model_dump()).exit_code == 1


def test_lower_bound_is_stricter_than_the_value(judged) -> None:
    store, _ = judged
    point = check_agreement_floors(store, [JudgeFloor(name="good", metric="accuracy", min=0.9)])
    bound = check_agreement_floors(store, [JudgeFloor(name="good", metric="accuracy", min=0.9,
                                                      use_lower_bound=True)])
    assert point.passed
    assert point.exit_code == 0
    assert not bound.passed
    assert bound.results[0].ci.low < 0.9 <= bound.results[0].value
    assert "accuracy lower bound" in bound.results[0].reason


def test_missing_labels_and_other_problems_fail_with_a_reason(judged) -> None:
    store, _ = judged
    store.write_traces([Trace(trace_id="lonely", scenario_id="s")])
    store.write_verdicts([Verdict(name="unlabeled", value=True, passed=True, trace_id="lonely")])
    report = check_agreement_floors(store, [
        JudgeFloor(name="unlabeled", min=0.5),
        JudgeFloor(name="good", min=0.5, golden="missing-set"),
    ])
    no_labels, no_set = report.results
    assert no_labels.status == "no_labels"
    assert not no_labels.passed
    assert no_labels.reason.endswith("label some traces first: costar label unlabeled")
    assert no_set.status == "error"
    assert "no golden set 'missing-set'" in no_set.reason
    assert report.exit_code == 1
    assert report.format().endswith("2 of 2 agreement floors missed")


def test_undefined_and_inapplicable_metrics_fail(store: SQLiteStore) -> None:
    write_judge(store, "always", {f"a{i}": True for i in range(10)}, {f"a{i}": True for i in range(10)})
    classes = ["low", "mid", "high"]
    rng = np.random.default_rng(4)
    human = {f"c{i:02d}": classes[int(x)] for i, x in enumerate(rng.integers(0, 3, 40))}
    write_judge(store, "tone", human, dict(human), vtype=classes)
    report = check_agreement_floors(store, [
        JudgeFloor(name="always", metric="kappa", min=0.2),  # one class on both sides: kappa undefined
        JudgeFloor(name="always", metric="accuracy", min=0.9),
        JudgeFloor(name="tone", metric="tpr", min=0.5),
        JudgeFloor(name="tone", metric="kappa_quadratic", min=0.5),
        JudgeFloor(name="tone", metric="kappa", min=0.9),
    ])
    kappa, accuracy, tpr, weighted, tone = report.results
    assert kappa.status == "fail"
    assert "kappa is undefined on 10 traces" in kappa.reason
    assert accuracy.passed
    assert tpr.status == "fail"
    assert "TPR needs pass/fail labels" in tpr.reason
    assert weighted.status == "fail"
    assert "weighted kappas need ordered labels" in weighted.reason
    assert tone.passed
    assert tone.value == 1.0


def test_golden_split_and_alpha(store: SQLiteStore) -> None:
    rng = np.random.default_rng(8)
    human = {f"s{i:03d}": int(x) for i, x in enumerate(rng.integers(1, 6, 90))}
    judge = {t: int(min(5, max(1, v + rng.integers(-1, 2)))) for t, v in human.items()}
    write_judge(store, "score", human, judge, vtype="number")
    gs = create_golden_set(store, "scores", "score", seed=2)
    report = check_agreement_floors(store, [
        JudgeFloor(name="score", metric="alpha", min=0.5, golden="scores"),
        JudgeFloor(name="score", metric="kappa_quadratic", min=0.5, golden="scores", split="all"),
    ])
    alpha, quadratic = report.results
    test_ids = gs.trace_ids("test")
    expected = krippendorff.alpha(np.array([[human[t] for t in test_ids], [judge[t] for t in test_ids]], dtype=float),
                                  level_of_measurement="interval")
    assert alpha.compared == len(test_ids)
    assert alpha.value == pytest.approx(expected)
    assert "golden set scores v1, test split" in alpha.reason
    ys, fs = [human[t] for t in human], [judge[t] for t in human]
    assert quadratic.compared == 90
    assert quadratic.value == pytest.approx(cohen_kappa_score(ys, fs, weights="quadratic"))


def test_floor_validation() -> None:
    with pytest.raises(ValidationError, match="between 0 and 1"):
        JudgeFloor(name="j", metric="accuracy", min=-0.2)
    with pytest.raises(ValidationError, match="between -1 and 1"):
        JudgeFloor(name="j", metric="kappa", min=1.5)
    with pytest.raises(ValidationError):
        JudgeFloor(name="j", metric="auc", min=0.5)
    assert JudgeFloor(name="j", min=0.6).describe() == "j: kappa >= 0.6 on all labeled traces"
    empty = GateReport()
    assert empty.format() == "no agreement floors to check"
    assert empty.exit_code == 0


# ----------------------------------------------------------------------------- small n (issue 9, item 7)


def test_items_needed_for_a_floor() -> None:
    from costar.align.gates import items_needed

    # Perfect agreement on n items has a Wilson lower bound n / (n + 3.84): kappa >= 0.6 needs agreement 0.8.
    assert items_needed("kappa", 0.6) == 16
    assert items_needed("accuracy", 0.8) == 16
    assert items_needed("kappa", 0.0) == 10  # kappa has no interval below 10 items at all
    assert items_needed("accuracy", 1.0) is None


def test_a_floor_on_too_few_traces_warns_and_split_all_uses_every_split(store: SQLiteStore) -> None:
    human = {f"t{i:02d}": i % 2 == 0 for i in range(20)}
    write_judge(store, "tiny", human, dict(human))  # the judge agrees on every trace
    gs = create_golden_set(store, "gs", "tiny", seed=1)
    test_n = len(gs.trace_ids("test"))
    assert test_n == 4
    on_test, on_all = check_agreement_floors(store, [
        JudgeFloor(name="tiny", metric="kappa", min=0.6, golden="gs"),
        JudgeFloor(name="tiny", metric="kappa", min=0.6, golden="gs", split="all")]).results
    assert on_test.status == "pass"
    assert on_test.compared == 4
    assert on_test.ci is None  # n = 4: no interval (it printed [1.000, 1.000])
    assert on_test.warnings == ["n = 4: too few to show kappa >= 0.6 even if the judge agreed with the humans on "
                                "every trace (16 needed at 95%); label more traces"]
    assert on_all.compared == 20
    assert on_all.warnings == []
    assert on_all.ci is not None
    assert on_all.ci.method == "wilson"
    assert on_all.ci.low < 1.0 < on_all.ci.high + 1e-9
    text = check_agreement_floors(store, [JudgeFloor(name="tiny", metric="kappa", min=0.6, golden="gs")]).format()
    assert "warning: n = 4: too few to show kappa >= 0.6" in text
