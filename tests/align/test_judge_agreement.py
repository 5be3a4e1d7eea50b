"""Agreement from the store: judge vs human labels (golden split or all labels), human vs human,
judge vs judge; coverage of errors and missing verdicts; statistics checked against scikit-learn
and statsmodels."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score, cohen_kappa_score, recall_score
from statsmodels.stats.proportion import proportion_confint

from costar.align.agreement_results import BinaryAgreement, CategoricalAgreement, NoOverlapError
from costar.align.agreement_stats import binary_agreement
from costar.align.agreement_store import (
    FingerprintError,
    NoLabelsError,
    judge_agreement,
    judges_agreement,
    labeler_agreement,
)
from costar.align.golden import create_golden_set
from costar.align.labeling import new_label
from costar.labels import GoldenSetError
from costar.store.base import Run
from costar.store.sqlite import SQLiteStore
from costar.trace.model import Trace
from costar.verdict import Verdict, VerdictSource

JUDGE = "correct"
FP_OLD = "aaaa1111" * 2
FP_NEW = "bbbb2222" * 2


def add_traces(store: SQLiteStore, ids: list[str], run_id: str | None = None) -> None:
    if run_id is not None:
        store.create_run(Run(run_id=run_id))
    store.write_traces([Trace(trace_id=t, run_id=run_id, scenario_id=f"item-{i}", trial=0) for i, t in enumerate(ids)])


def verdict(tid: str, value: object, *, name: str = JUDGE, fp: str = FP_NEW, passed: bool | None = None,
            error: str | None = None) -> Verdict:
    if error is not None:
        return Verdict.failure(name, error, trace_id=tid, fingerprint=fp, source=VerdictSource.LLM)
    if passed is None and isinstance(value, bool):
        passed = value
    return Verdict(name=name, value=value, passed=passed, trace_id=tid, fingerprint=fp, source=VerdictSource.LLM)


def label(store: SQLiteStore, values: dict[str, object], labeler: str = "ana", name: str = JUDGE,
          vtype: object = None) -> None:
    store.write_labels([new_label(t, name, v, labeler=labeler, value_type=vtype) for t, v in values.items()])


def simulated(store: SQLiteStore, n: int = 80, seed: int = 3) -> tuple[dict[str, bool], dict[str, bool]]:
    """n traces, human labels, and a judge that flips about one in five of them."""
    rng = np.random.default_rng(seed)
    ids = [f"t{i:03d}" for i in range(n)]
    human = {t: bool(x) for t, x in zip(ids, rng.random(n) < 0.55, strict=True)}
    flips = rng.random(n) < 0.2
    judge = {t: human[t] != bool(f) for t, f in zip(ids, flips, strict=True)}
    add_traces(store, ids)
    label(store, human)
    store.write_verdicts([verdict(t, v) for t, v in judge.items()])
    return human, judge


def test_judge_vs_labels_matches_sklearn_and_statsmodels(store: SQLiteStore) -> None:
    human, judge = simulated(store)
    res = judge_agreement(store, JUDGE)
    assert isinstance(res.result, BinaryAgreement)
    ids = sorted(human)
    y, f = [human[t] for t in ids], [judge[t] for t in ids]
    assert res.result.kappa.value == pytest.approx(cohen_kappa_score(y, f))
    assert res.result.tpr.value == pytest.approx(recall_score(y, f, pos_label=True))
    assert res.result.tnr.value == pytest.approx(recall_score(y, f, pos_label=False))
    assert res.result.balanced_accuracy.value == pytest.approx(balanced_accuracy_score(y, f))
    agree = sum(a == b for a, b in zip(y, f, strict=True))
    low, high = proportion_confint(agree, len(ids), alpha=0.05, method="wilson")
    assert (res.result.accuracy.ci.low, res.result.accuracy.ci.high) == (pytest.approx(low), pytest.approx(high))
    assert res.coverage.reference == res.coverage.compared == 80
    assert res.on == "passed"
    assert res.reference == "labels by 'ana'"
    assert res.compared == f"judge {JUDGE!r} (fp {FP_NEW[:8]})"
    text = res.format()
    assert "80 of 80 compared" in text
    assert "Cohen's kappa" in text


def test_errors_missing_verdicts_and_metrics_are_excluded_and_counted(store: SQLiteStore) -> None:
    ids = [f"t{i}" for i in range(8)]
    add_traces(store, ids)
    label(store, {t: i % 2 == 0 for i, t in enumerate(ids)})
    store.write_verdicts([
        verdict("t0", True), verdict("t1", False), verdict("t2", True), verdict("t3", True),
        verdict("t4", None, error="timeout"), verdict("t5", None, error="bad json"),
        verdict("t6", 0.7),  # a metric: no pass/fail to compare with pass/fail labels
    ])  # t7 has no verdict
    res = judge_agreement(store, JUDGE)
    cov = res.coverage
    assert (cov.reference, cov.compared, cov.errors, cov.no_verdict, cov.no_value) == (8, 4, 2, 1, 1)
    assert cov.examples == {"judge errors": ["t4", "t5"], "no comparable value": ["t6"], "without a verdict": ["t7"]}
    r = res.result
    # Errors are neither pass nor fail: only the four real verdicts fill the confusion table.
    assert (r.tp, r.fn, r.fp, r.tn) == (2, 0, 1, 1)
    assert "2 judge errors excluded" in res.format()


def test_pass_fail_labels_compare_with_the_gating_decision(store: SQLiteStore) -> None:
    add_traces(store, ["a", "b", "c", "d"])
    label(store, {"a": True, "b": False, "c": True, "d": False})
    # A negated check keeps the raw check result as its value; passed is the decision that gates.
    store.write_verdicts([verdict("a", False, passed=True), verdict("b", True, passed=False),
                          verdict("c", 4, passed=True), verdict("d", 2, passed=False)])
    res = judge_agreement(store, JUDGE)
    assert res.result.accuracy.value == 1.0
    assert res.coverage.compared == 4
    raw = judge_agreement(store, JUDGE, compare="value")  # the raw values say the opposite, or a number
    assert raw.on == "value"
    assert raw.result.accuracy.value == 0.0


def test_golden_split_scope(store: SQLiteStore) -> None:
    human, judge = simulated(store, n=60)
    gs = create_golden_set(store, "gs", JUDGE, seed=1)
    res = judge_agreement(store, JUDGE, golden="gs")
    test_ids = gs.trace_ids("test")
    expected = binary_agreement({t: human[t] for t in test_ids}, {t: judge[t] for t in test_ids})
    assert res.coverage.compared == len(test_ids) == 12
    assert res.result.kappa.value == pytest.approx(expected.kappa.value)
    assert res.scope == "golden set gs v1, test split"
    assert res.reference == "golden set gs v1 labels"
    everything = judge_agreement(store, JUDGE, golden="gs", split="all")
    assert everything.coverage.compared == 60
    assert judge_agreement(store, JUDGE, golden="gs", split="train").coverage.compared == 36
    with pytest.raises(Exception, match="unknown split 'tests'; use one of train, validation, test or 'all'"):
        judge_agreement(store, JUDGE, golden="gs", split="tests")  # type: ignore[arg-type]


def test_golden_labels_are_the_reference_not_later_relabels(store: SQLiteStore) -> None:
    add_traces(store, ["a", "b", "c", "d", "e", "f"])
    label(store, {"a": True, "b": False, "c": True, "d": False, "e": True, "f": False})
    create_golden_set(store, "gs", JUDGE, fractions=(0, 0, 1))
    store.write_labels([new_label("a", JUDGE, False, labeler="ana")], replace=True)
    store.write_verdicts([verdict(t, v) for t, v in {"a": True, "b": False, "c": True, "d": False,
                                                     "e": True, "f": False}.items()])
    assert judge_agreement(store, JUDGE, golden="gs").result.accuracy.value == 1.0
    assert judge_agreement(store, JUDGE).result.accuracy.value == pytest.approx(5 / 6)


def test_clear_errors(store: SQLiteStore) -> None:
    add_traces(store, ["a", "b"])
    with pytest.raises(NoLabelsError, match=f"label some traces first: costar label {JUDGE}$"):
        judge_agreement(store, JUDGE)
    label(store, {"a": True, "b": False})
    with pytest.raises(NoOverlapError, match=r"none of the 2 labeled traces .* has a usable verdict"):
        judge_agreement(store, JUDGE)
    store.write_verdicts([verdict("a", None, error="boom")])
    with pytest.raises(NoOverlapError, match="1 judge errors"):
        judge_agreement(store, JUDGE)
    with pytest.raises(GoldenSetError, match="no golden set 'nope'"):
        judge_agreement(store, JUDGE, golden="nope")
    with pytest.raises(NoLabelsError, match="from 'bo'"):
        judge_agreement(store, JUDGE, labeler="bo")


def test_latest_non_retired_verdicts_and_fingerprints(store: SQLiteStore) -> None:
    ids = [f"t{i}" for i in range(6)]
    add_traces(store, ids)
    truth = {t: i < 3 for i, t in enumerate(ids)}
    label(store, truth)
    store.write_verdicts([verdict(t, not v, fp=FP_OLD) for t, v in truth.items()])  # the old version: all wrong
    store.write_verdicts([verdict(t, v, fp=FP_NEW) for t, v in truth.items()])  # the new one: all right
    assert judge_agreement(store, JUDGE).result.accuracy.value == 1.0
    old = judge_agreement(store, JUDGE, fingerprint="aaaa")  # a unique prefix is enough
    assert old.result.accuracy.value == 0.0
    assert old.compared == f"judge {JUDGE!r} (fp aaaa1111)"
    with pytest.raises(FingerprintError, match=r"no verdicts with fingerprint 'cccc'.*aaaa1111, bbbb2222"):
        judge_agreement(store, JUDGE, fingerprint="cccc")
    store.write_verdicts([verdict("t0", True, fp="aaaa9999")])
    with pytest.raises(FingerprintError, match="matches 2 versions"):
        judge_agreement(store, JUDGE, fingerprint="aaaa")
    # Retiring the judge (renamed or removed) takes its verdicts out of the current view...
    store.activate_verdicts(ids, ["other"])
    with pytest.raises(NoOverlapError):
        judge_agreement(store, JUDGE)
    # ...but a named version is still found in the history.
    assert judge_agreement(store, JUDGE, fingerprint=FP_NEW).result.accuracy.value == 1.0


def test_labelers_majority_ties_and_run_scope(store: SQLiteStore) -> None:
    add_traces(store, ["a", "b", "c"], run_id="r1")
    add_traces(store, ["x", "y"], run_id="r2")
    label(store, {"a": True, "b": True, "c": False, "x": True, "y": False}, labeler="ana")
    label(store, {"a": True, "b": False, "c": False}, labeler="bo")
    label(store, {"a": False, "c": False}, labeler="cy")
    store.write_verdicts([verdict(t, True) for t in ["a", "b", "c", "x", "y"]])
    res = judge_agreement(store, JUDGE)
    # a: 2-1 pass, b: 1-1 tie (no reference), c: 3-0 fail, x pass, y fail.
    assert res.reference == "majority of 3 labelers"
    assert (res.coverage.reference, res.coverage.compared, res.coverage.tied) == (4, 4, 1)
    run = judge_agreement(store, JUDGE, run_id="r2")
    assert run.coverage.compared == 2
    assert run.scope == "run r2"
    assert judge_agreement(store, JUDGE, labeler="bo").coverage.compared == 3


def test_human_vs_human_binary_and_categorical(store: SQLiteStore) -> None:
    rng = np.random.default_rng(11)
    ids = [f"t{i:02d}" for i in range(50)]
    add_traces(store, ids)
    classes = ["good", "ok", "bad"]
    a = {t: classes[int(i)] for t, i in zip(ids, rng.integers(0, 3, 50), strict=True)}
    b = {t: (v if rng.random() < 0.7 else classes[int(rng.integers(0, 3))]) for t, v in a.items()}
    label(store, a, labeler="ana", name="tone", vtype=classes)
    label(store, {t: v for t, v in b.items() if t != "t00"}, labeler="bo", name="tone", vtype=classes)
    res = labeler_agreement(store, "tone", "ana", "bo")
    assert isinstance(res.result, CategoricalAgreement)
    shared = [t for t in ids if t != "t00"]
    assert res.result.kappa.value == pytest.approx(cohen_kappa_score([a[t] for t in shared], [b[t] for t in shared]))
    assert (res.coverage.reference, res.coverage.compared, res.coverage.no_verdict) == (50, 49, 1)
    with pytest.raises(NoLabelsError, match="'cy' has no labels for judge 'tone'"):
        labeler_agreement(store, "tone", "ana", "cy")


def test_numeric_scores_get_weighted_kappas(store: SQLiteStore) -> None:
    rng = np.random.default_rng(5)
    ids = [f"t{i:02d}" for i in range(40)]
    add_traces(store, ids)
    human = {t: int(x) for t, x in zip(ids, rng.integers(1, 6, 40), strict=True)}
    judge = {t: int(min(5, max(1, v + rng.integers(-1, 2)))) for t, v in human.items()}
    label(store, human, name="score", vtype="number")
    store.write_verdicts([verdict(t, v, name="score") for t, v in judge.items()])
    res = judge_agreement(store, "score")
    assert res.on == "value"
    assert isinstance(res.result, CategoricalAgreement)
    y, f = [human[t] for t in ids], [judge[t] for t in ids]
    assert res.result.kappa_quadratic.value == pytest.approx(cohen_kappa_score(y, f, weights="quadratic"))
    assert res.result.kappa_linear.value == pytest.approx(cohen_kappa_score(y, f, weights="linear"))


def test_judge_vs_judge_names_and_versions(store: SQLiteStore) -> None:
    rng = np.random.default_rng(2)
    ids = [f"t{i:02d}" for i in range(30)]
    add_traces(store, ids)
    a = {t: bool(x) for t, x in zip(ids, rng.random(30) < 0.5, strict=True)}
    b = {t: v != bool(rng.random() < 0.25) for t, v in a.items()}
    store.write_verdicts([verdict(t, v, name="strict", fp=FP_OLD) for t, v in a.items()])
    store.write_verdicts([verdict(t, v, name="strict", fp=FP_NEW) for t, v in b.items()])
    store.write_verdicts([verdict(t, v, name="lenient") for t, v in b.items() if t != "t00"]
                         + [verdict("t00", None, name="lenient", error="rate limited")])
    res = judges_agreement(store, "strict", "lenient")
    assert res.coverage.errors == 1
    assert res.coverage.compared == 29  # the current "strict" is FP_NEW
    assert res.result.accuracy.value == 1.0
    versions = judges_agreement(store, "strict", fingerprint_a="aaaa", fingerprint_b="bbbb")
    assert versions.result.kappa.value == pytest.approx(cohen_kappa_score([a[t] for t in ids], [b[t] for t in ids]))
    assert versions.reference == "judge 'strict' (fp aaaa1111)"
    assert versions.compared == "judge 'strict' (fp bbbb2222)"
    with pytest.raises(Exception, match="give both fingerprints"):
        judges_agreement(store, "strict")
    with pytest.raises(Exception, match="same version"):
        judges_agreement(store, "strict", fingerprint_a=FP_NEW, fingerprint_b="bbbb")
    with pytest.raises(NoOverlapError, match="judge 'missing' has no verdicts"):
        judges_agreement(store, "strict", "missing")


def test_judge_vs_judge_compares_decisions_when_value_kinds_differ(store: SQLiteStore) -> None:
    add_traces(store, ["a", "b", "c"])
    store.write_verdicts([verdict("a", True, name="check"), verdict("b", False, name="check"),
                          verdict("c", True, name="check"),
                          verdict("a", 5, name="grade", passed=True), verdict("b", 1, name="grade", passed=False),
                          verdict("c", 2, name="grade", passed=False)])
    res = judges_agreement(store, "check", "grade")
    assert res.on == "passed"
    assert res.result.accuracy.count == 2
    assert res.to_dict()["result"]["kind"] == "binary"
