"""Agreement statistics, checked against independent implementations and by hand.

scikit-learn, statsmodels and krippendorff serve only as references here; the library itself
depends on numpy alone. The real labels are PandaLM's 999 response pairs (three annotators and
gpt-3.5-turbo's verdicts; 0 = tie, 1 / 2 = that response is better).
"""

from __future__ import annotations

import json
import math

import krippendorff
import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    cohen_kappa_score,
    confusion_matrix,
    f1_score,
    precision_score,
    recall_score,
)
from statsmodels.stats.inter_rater import aggregate_raters, cohens_kappa
from statsmodels.stats.inter_rater import fleiss_kappa as sm_fleiss_kappa
from statsmodels.stats.proportion import proportion_confint

from costar.align.agreement_results import (
    AgreementError,
    LabelSetError,
    LengthMismatchError,
    NoOverlapError,
    format_agreement,
)
from costar.align.agreement_stats import (
    binary_agreement,
    categorical_agreement,
    fleiss_kappa,
    krippendorff_alpha,
    proportion,
)
from tests.support.paths import EXTERNAL

PANDALM = EXTERNAL / "pandalm"
needs_pandalm = pytest.mark.skipif(not (PANDALM / "testset-v1.json").exists(), reason="PandaLM data not present")
GPT_LABELS = {"1": 1, "2": 2, "Tie": 0}  # "garbage" (25 unparseable verdicts) stays unmapped


@pytest.fixture(scope="module")
def annotators() -> dict[str, list[int]]:
    records = json.loads((PANDALM / "testset-v1.json").read_text())
    records.sort(key=lambda r: r["idx"])
    return {f"a{i}": [r[f"annotator{i}"] for r in records] for i in (1, 2, 3)}


@pytest.fixture(scope="module")
def gpt() -> list[int | None]:
    records = json.loads((PANDALM / "gpt-3.5-turbo-testset-v1.json").read_text())
    records.sort(key=lambda r: r["idx"])
    return [GPT_LABELS.get(r["gpt_result"]) for r in records]


# ------------------------------------------------------------------- hand-computed examples


def test_kappa_and_se_by_hand_symmetric_table() -> None:
    # rows a, columns b:   pos neg
    #                 pos    4   1
    #                 neg    1   4        n = 10
    # p_o = 8/10 = 0.8; every marginal is 0.5, so p_e = 0.5·0.5 + 0.5·0.5 = 0.5
    # kappa = (0.8 − 0.5) / (1 − 0.5) = 0.6
    # FCE 1969 variance, with 1 − kappa = 0.4:
    #   A = Σ_i p_ii (1 − (p_i· + p_·i)(1 − κ))² = 2 · 0.4 · (1 − 1.0·0.4)² = 0.288
    #   B = (1 − κ)² Σ_{i≠j} p_ij (p_·i + p_j·)² = 0.16 · (0.1·1² + 0.1·1²) = 0.032
    #   C = (κ − p_e(1 − κ))² = (0.6 − 0.2)² = 0.16
    #   var = (A + B − C) / (n (1 − p_e)²) = 0.16 / (10 · 0.25) = 0.064;  SE = √0.064 = 0.252982
    a = [True] * 5 + [False] * 5
    b = [True] * 4 + [False] + [True] + [False] * 4
    result = binary_agreement(a, b)
    assert result.kappa.value == pytest.approx(0.6)
    assert result.kappa.se == pytest.approx(math.sqrt(0.064))
    half = 1.959964 * math.sqrt(0.064)
    assert result.kappa.ci is not None
    assert (result.kappa.ci.low, result.kappa.ci.high) == pytest.approx((0.6 - half, min(1.0, 0.6 + half)), abs=1e-6)
    assert (result.tp, result.fn, result.fp, result.tn) == (4, 1, 1, 4)


def test_kappa_and_se_by_hand_unequal_margins() -> None:
    # rows a, columns b:   1   2
    #                 1   20   5        row marginals p_1· = 0.5, p_2· = 0.5
    #                 2   10  15        column marginals p_·1 = 0.6, p_·2 = 0.4; n = 50
    # p_o = 35/50 = 0.7; p_e = 0.5·0.6 + 0.5·0.4 = 0.5; kappa = 0.2 / 0.5 = 0.4; 1 − κ = 0.6
    #   A = 0.4·(1 − (0.5 + 0.6)·0.6)² + 0.3·(1 − (0.5 + 0.4)·0.6)² = 0.4·0.1156 + 0.3·0.2116 = 0.10972
    #   B = 0.36 · [p_12 (p_·1 + p_2·)² + p_21 (p_·2 + p_1·)²] = 0.36 · (0.1·1.21 + 0.2·0.81) = 0.10188
    #   C = (0.4 − 0.5·0.6)² = 0.01
    #   var = (0.10972 + 0.10188 − 0.01) / (50 · 0.25) = 0.2016 / 12.5 = 0.016128;  SE = 0.126996
    a = [1] * 25 + [2] * 25
    b = [1] * 20 + [2] * 5 + [1] * 10 + [2] * 15
    result = categorical_agreement(a, b)
    assert result.kappa.value == pytest.approx(0.4)
    assert result.kappa.se == pytest.approx(math.sqrt(0.016128))
    assert result.confusion.counts == [[20, 5], [10, 15]]
    assert result.accuracy.value == pytest.approx(0.7)


def test_linear_weighted_kappa_by_hand() -> None:
    # Three ordered labels 0 < 1 < 2, linear agreement weights w = 1 − |i − j| / 2:
    #   a = [0, 0, 1, 2], b = [0, 1, 1, 1]  → cells (0,0), (0,1), (1,1), (2,1), n = 4
    #   p_o(w) = (1 + 0.5 + 1 + 0.5) / 4 = 0.75
    #   a marginals (0.5, 0.25, 0.25), b marginals (0.25, 0.75, 0)
    #   p_e(w) = Σ_ij a_i b_j w_ij = 0.5·(0.25·1 + 0.75·0.5) + 0.25·(0.25·0.5 + 0.75·1) + 0.25·(0.25·0 + 0.75·0.5)
    #          = 0.3125 + 0.21875 + 0.09375 = 0.625
    #   kappa_w = (0.75 − 0.625) / (1 − 0.625) = 1/3
    result = categorical_agreement([0, 0, 1, 2], [0, 1, 1, 1])
    assert result.kappa_linear is not None
    assert result.kappa_linear.value == pytest.approx(1 / 3)


def test_krippendorff_published_example() -> None:
    # Krippendorff (2011), "Computing Krippendorff's alpha-reliability": 4 coders, 12 units,
    # published alphas: nominal 0.743, ordinal 0.815, interval 0.849.
    n = None
    data = [
        [1, 2, 3, 3, 2, 1, 4, 1, 2, n, n, n],
        [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, n, 3],
        [n, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, n],
        [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, n],
    ]
    expected = {"nominal": 0.743, "ordinal": 0.815, "interval": 0.849}
    for level, value in expected.items():
        result = krippendorff_alpha(data, level, resamples=0)  # type: ignore[arg-type]
        assert result.value == pytest.approx(value, abs=5e-4), level
        assert (result.n_items, result.n_items_used, result.n_ratings) == (12, 11, 40)


# ------------------------------------------------------------ references on PandaLM labels


@needs_pandalm
@pytest.mark.parametrize(("left", "right"), [("a1", "a2"), ("a1", "a3"), ("a2", "a3")])
def test_categorical_matches_sklearn_on_annotator_pairs(annotators, left: str, right: str) -> None:
    a, b = annotators[left], annotators[right]
    result = categorical_agreement(a, b, resamples=200)
    assert result.n == 999
    assert result.accuracy.value == pytest.approx(accuracy_score(a, b))
    assert result.kappa.value == pytest.approx(cohen_kappa_score(a, b))
    assert result.kappa_linear is not None
    assert result.kappa_quadratic is not None
    assert result.kappa_linear.value == pytest.approx(cohen_kappa_score(a, b, weights="linear"))
    assert result.kappa_quadratic.value == pytest.approx(cohen_kappa_score(a, b, weights="quadratic"))
    assert result.confusion.counts == confusion_matrix(a, b, labels=[0, 1, 2]).tolist()
    recalls = recall_score(a, b, labels=[0, 1, 2], average=None)
    assert [s.recall.value for s in result.per_label] == pytest.approx(recalls.tolist())


@needs_pandalm
def test_kappa_standard_errors_match_statsmodels(annotators) -> None:
    result = categorical_agreement(annotators["a1"], annotators["a3"], resamples=0)
    table = np.array(result.confusion.counts)
    assert result.kappa.se == pytest.approx(math.sqrt(cohens_kappa(table).var_kappa))
    for weighting, kappa in (("linear", result.kappa_linear), ("quadratic", result.kappa_quadratic)):
        reference = cohens_kappa(table, wt=weighting)
        assert kappa is not None
        assert kappa.value == pytest.approx(reference.kappa)
        assert kappa.se == pytest.approx(math.sqrt(reference.var_kappa))


@needs_pandalm
def test_label_order_drives_weighted_kappa(annotators) -> None:
    # A tie sits between "response 1 better" and "response 2 better", so the ordinal scale is 1 < 0 < 2.
    a, b = annotators["a1"], annotators["a2"]
    result = categorical_agreement(a, b, labels=[1, 0, 2], resamples=0)
    assert result.labels == [1, 0, 2]
    assert result.kappa_quadratic is not None
    assert result.kappa_quadratic.value == pytest.approx(
        cohen_kappa_score(a, b, labels=[1, 0, 2], weights="quadratic"))
    assert result.kappa.value == pytest.approx(cohen_kappa_score(a, b))  # unweighted ignores order


@needs_pandalm
def test_model_judge_against_annotator_matches_sklearn(annotators, gpt) -> None:
    a = annotators["a1"]
    result = categorical_agreement(a, gpt, resamples=200)
    kept = [i for i, label in enumerate(gpt) if label is not None]
    a_kept, b_kept = [a[i] for i in kept], [gpt[i] for i in kept]
    assert result.n == len(kept) == 974
    assert result.coverage.unlabelled == 25
    assert result.kappa.value == pytest.approx(cohen_kappa_score(a_kept, b_kept))
    assert result.accuracy.value == pytest.approx(accuracy_score(a_kept, b_kept))
    assert result.confusion.counts == confusion_matrix(a_kept, b_kept, labels=[0, 1, 2]).tolist()


@needs_pandalm
def test_binary_matches_sklearn_on_model_judge(annotators, gpt) -> None:
    # Binary task: "is response 1 better?" for annotator 1 (reference) and the gpt-3.5 judge.
    kept = [i for i, label in enumerate(gpt) if label is not None]
    a = {str(i): annotators["a1"][i] == 1 for i in kept}
    b = {str(i): gpt[i] == 1 for i in kept}
    y_true, y_pred = list(a.values()), [b[k] for k in a]
    result = binary_agreement(a, b, resamples=500)
    assert result.kappa.value == pytest.approx(cohen_kappa_score(y_true, y_pred))
    assert result.accuracy.value == pytest.approx(accuracy_score(y_true, y_pred))
    assert result.tpr.value == pytest.approx(recall_score(y_true, y_pred))
    assert result.tnr.value == pytest.approx(recall_score(y_true, y_pred, pos_label=False))
    assert result.precision.value == pytest.approx(precision_score(y_true, y_pred))
    assert result.f1.value == pytest.approx(f1_score(y_true, y_pred))
    assert result.balanced_accuracy.value == pytest.approx(balanced_accuracy_score(y_true, y_pred))
    assert result.confusion.counts == confusion_matrix(y_true, y_pred, labels=[False, True]).tolist()
    assert [result.tn, result.fp, result.fn, result.tp] == confusion_matrix(y_true, y_pred).ravel().tolist()
    for stat in (result.balanced_accuracy, result.f1):
        assert stat.ci is not None
        assert stat.value is not None
        assert stat.ci.low < stat.value < stat.ci.high


@needs_pandalm
def test_bootstrap_interval_agrees_with_standard_error_at_n_999(annotators) -> None:
    result = categorical_agreement(annotators["a1"], annotators["a2"])
    normal, boot = result.kappa.ci, result.kappa.ci_bootstrap
    assert normal is not None
    assert boot is not None
    assert boot.method == "bootstrap-percentile"
    assert result.settings.resamples == 2000
    assert boot.low == pytest.approx(normal.low, abs=0.01)
    assert boot.high == pytest.approx(normal.high, abs=0.01)


@needs_pandalm
def test_fleiss_matches_statsmodels_on_three_annotators(annotators) -> None:
    per_item = [list(r) for r in zip(annotators["a1"], annotators["a2"], annotators["a3"], strict=True)]
    table, _ = aggregate_raters(np.array(per_item))
    reference = sm_fleiss_kappa(table, method="fleiss")
    from_labels = fleiss_kappa(per_item)
    from_counts = fleiss_kappa(table, counts=True, resamples=0)
    assert from_labels.value == pytest.approx(reference)
    assert from_counts.value == pytest.approx(reference)
    assert (from_labels.n_items, from_labels.n_raters) == (999, 3)
    ci = from_labels.ci_bootstrap
    assert ci is not None
    assert ci.low < reference < ci.high


@needs_pandalm
@pytest.mark.parametrize("level", ["nominal", "ordinal", "interval"])
def test_krippendorff_matches_package_with_missing_values(annotators, level: str) -> None:
    rows = np.array([annotators["a1"], annotators["a2"], annotators["a3"]], dtype=float)
    rng = np.random.default_rng(7)
    rows[rng.random(rows.shape) < 0.2] = np.nan  # about a fifth of the ratings go missing
    reference = krippendorff.alpha(reliability_data=rows, level_of_measurement=level)
    result = krippendorff_alpha(rows, level, resamples=300)  # type: ignore[arg-type]
    assert result.value == pytest.approx(reference)
    assert result.n_items_used < 999  # some units were left with a single rating
    as_labels = [[None if math.isnan(x) else int(x) for x in row] for row in rows]
    assert krippendorff_alpha(as_labels, level, resamples=0).value == pytest.approx(reference)  # type: ignore[arg-type]


@needs_pandalm
def test_ordinal_alpha_uses_the_given_label_order(annotators) -> None:
    rank = {1: 0, 0: 1, 2: 2}  # ties between the two preferences
    rows = [annotators["a1"], annotators["a2"], annotators["a3"]]
    ranked = np.array([[rank[x] for x in row] for row in rows], dtype=float)
    ranked[0, ::7] = np.nan
    labelled = [[None if i % 7 == 0 and c == 0 else x for i, x in enumerate(row)] for c, row in enumerate(rows)]
    reference = krippendorff.alpha(reliability_data=ranked, level_of_measurement="ordinal")
    result = krippendorff_alpha(labelled, "ordinal", labels=[1, 0, 2], resamples=0)
    assert result.value == pytest.approx(reference)


def test_interval_alpha_on_continuous_scores_matches_package() -> None:
    # Judge-style scores in [0, 1] to two decimals: about a hundred distinct values, the case the
    # moment form is for (the reference builds a values x values table, so it is kept that small).
    rng = np.random.default_rng(11)
    truth = rng.random(200)
    rows = np.round(np.clip(truth + rng.normal(0, 0.15, size=(4, 200)), 0, 1), 2)
    rows[rng.random(rows.shape) < 0.3] = np.nan
    reference = krippendorff.alpha(reliability_data=rows, level_of_measurement="interval")
    assert krippendorff_alpha(rows, "interval", resamples=100).value == pytest.approx(reference)


def test_many_rater_inputs_as_dicts() -> None:
    coders = {"ann": {"t1": "a", "t2": "b", "t3": "a"}, "bob": {"t1": "a", "t3": "b", "t4": "b"},
              "cy": {"t2": "b", "t3": "a", "t4": "b"}}
    as_rows = [["a", "b", "a", None], ["a", None, "b", "b"], [None, "b", "a", "b"]]
    by_dict, by_rows = krippendorff_alpha(coders, resamples=0), krippendorff_alpha(as_rows, resamples=0)
    assert by_dict.value == pytest.approx(by_rows.value)
    items = {"t1": ["a", "a"], "t2": ["b", "a"], "t3": ["b", "b"]}
    assert fleiss_kappa(items, resamples=0).value == pytest.approx(fleiss_kappa(list(items.values())).value)


def test_many_rater_statistics_undefined_on_one_label() -> None:
    fleiss = fleiss_kappa([["x", "x"], ["x", "x"]])
    assert fleiss.value is None
    assert fleiss.ci_bootstrap is None
    assert "undefined" in fleiss.notes[0]
    alpha = krippendorff_alpha([[1, 1, None], [1, 1, 1]])
    assert alpha.value is None
    assert "undefined" in alpha.notes[0]


# ----------------------------------------------------------------------------- intervals


@pytest.mark.parametrize(("count", "total"), [(0, 10), (1, 10), (5, 10), (10, 10), (912, 999), (3, 7)])
@pytest.mark.parametrize("confidence", [0.9, 0.95, 0.99])
def test_wilson_matches_statsmodels(count: int, total: int, confidence: float) -> None:
    low, high = proportion_confint(count, total, alpha=1 - confidence, method="wilson")
    result = proportion(count, total, confidence)
    assert result.ci is not None
    assert result.ci.method == "wilson"
    assert (result.ci.low, result.ci.high) == pytest.approx((low, high), abs=1e-12)


def test_proportion_without_data_has_no_value() -> None:
    assert proportion(0, 0).value is None
    assert proportion(0, 0).ci is None


def test_bootstrap_is_seeded() -> None:
    a = [1, 0, 1, 1, 0, 1, 0, 0, 1, 1, 0, 1] * 3
    b = [1, 0, 0, 1, 0, 1, 1, 0, 1, 1, 0, 0] * 3
    first = binary_agreement(a, b, positive=1, seed=3).kappa.ci_bootstrap
    again = binary_agreement(a, b, positive=1, seed=3).kappa.ci_bootstrap
    other = binary_agreement(a, b, positive=1, seed=4).kappa.ci_bootstrap
    assert first == again
    assert first != other
    assert binary_agreement(a, b, positive=1, resamples=0).kappa.ci_bootstrap is None


# --------------------------------------------------------------- coverage and edge cases


def test_dicts_exclude_and_count_unmatched_and_unlabelled_items() -> None:
    a = {"t1": True, "t2": False, "t3": True, "t4": None, "t5": True}
    b = {"t1": True, "t2": True, "t3": True, "t4": False, "t6": False}
    result = binary_agreement(a, b)
    cov = result.coverage
    assert (cov.n_a, cov.n_b, cov.used, cov.only_a, cov.only_b, cov.unlabelled) == (5, 5, 3, 1, 1, 1)
    assert result.n == 3
    assert (result.tp, result.fp) == (2, 1)


def test_single_class_gives_undefined_kappa_with_a_note() -> None:
    result = binary_agreement([True] * 6, [True] * 6)
    assert result.kappa.value is None
    assert result.kappa.ci is None
    assert result.accuracy.value == 1.0
    assert result.tnr.value is None
    assert result.negative is False
    assert any("kappa is undefined" in note for note in result.notes)
    assert "n/a (undefined)" in result.format()


def test_perfect_agreement_has_zero_se() -> None:
    result = binary_agreement([True, False, True, False], [True, False, True, False])
    assert result.kappa.value == 1.0
    assert result.kappa.se == 0.0


def test_binary_labels_keep_the_data_spelling_and_infer_negative() -> None:
    result = binary_agreement(["pass", "fail", "pass"], ["pass", "pass", "fail"], positive="pass")
    assert (result.positive, result.negative) == ("pass", "fail")
    assert result.confusion.labels == ["fail", "pass"]
    numeric = binary_agreement([1, 0, 1], [1, 1, 0])  # positive=True matches the label 1
    assert numeric.positive == 1
    assert type(numeric.positive) is int


def test_string_labels_have_no_weighted_kappa_without_an_order() -> None:
    a, b = ["low", "mid", "high", "mid"], ["low", "high", "high", "mid"]
    plain = categorical_agreement(a, b, resamples=0)
    assert plain.kappa_linear is None
    assert any("labels=[...]" in n for n in plain.notes)
    ordered = categorical_agreement(a, b, labels=["low", "mid", "high"], resamples=0)
    assert ordered.kappa_linear is not None
    assert ordered.kappa_linear.value == pytest.approx(
        cohen_kappa_score(a, b, labels=["low", "mid", "high"], weights="linear"))


def test_type_clash_is_noted() -> None:
    result = categorical_agreement([1, 2, 1], ["1", 2, 1], resamples=0)
    assert any("differ only in type" in note for note in result.notes)


def test_results_round_trip_through_json() -> None:
    result = categorical_agreement([0, 1, 2, 2, 1], [0, 1, 1, 2, 1], resamples=50)
    data = json.loads(json.dumps(result.to_dict()))
    assert data["kind"] == "categorical"
    assert data["labels"] == [0, 1, 2]
    assert format_agreement(data) == result.format()
    multi = fleiss_kappa([[1, 1, 2], [2, 2, 2], [1, 2, 1]], resamples=50)
    assert format_agreement(json.loads(json.dumps(multi.to_dict()))) == multi.format()


# ---------------------------------------------------------------------------- bad inputs


def test_no_overlapping_items() -> None:
    with pytest.raises(NoOverlapError, match=r"no item id is in both sources .*e.g. 1.*e.g. '1'"):
        binary_agreement({1: True}, {"1": True})
    with pytest.raises(NoOverlapError, match="unlabelled on at least one side"):
        binary_agreement([None, True], [True, None])


def test_mismatched_lengths() -> None:
    with pytest.raises(LengthMismatchError, match="a has 3 labels and b has 2"):
        categorical_agreement([1, 2, 3], [1, 2])
    with pytest.raises(LengthMismatchError, match="use krippendorff_alpha"):
        fleiss_kappa([[1, 1, 1], [1, 2]])
    with pytest.raises(LengthMismatchError, match="different lengths"):
        krippendorff_alpha([[1, 2, 3], [1, 2]])


def test_label_sets_that_do_not_fit() -> None:
    with pytest.raises(LabelSetError, match=r"needs two labels, found 3.*categorical_agreement"):
        binary_agreement([0, 1, 2], [0, 1, 1])
    with pytest.raises(LabelSetError, match=r"positive label True is not among.*pass positive="):
        binary_agreement(["yes", "no"], ["no", "yes"])
    with pytest.raises(LabelSetError, match=r"not in labels=.*add them"):
        categorical_agreement([0, 1, 2], [0, 1, 1], labels=[0, 1])
    with pytest.raises(LabelSetError, match=r"pass labels=.*lowest first"):
        krippendorff_alpha([["a", "b"], ["a", "a"]], "ordinal")
    with pytest.raises(LabelSetError, match="interval alpha needs numeric labels"):
        krippendorff_alpha([["a", "b"], ["a", "a"]], "interval")


def test_malformed_inputs() -> None:
    with pytest.raises(AgreementError, match="as dicts keyed by item id, or both as sequences"):
        binary_agreement({"x": True}, [True])
    with pytest.raises(AgreementError, match="confidence must be between 0 and 1"):
        binary_agreement([True, False], [True, False], confidence=95)
    with pytest.raises(LabelSetError, match="labels must be bools, numbers or strings"):
        categorical_agreement([[1]], [[1]])
    with pytest.raises(NoOverlapError, match="at least two raters"):
        fleiss_kappa([[1], [2]])
    with pytest.raises(AgreementError, match="non-negative whole numbers"):
        fleiss_kappa([[1.5, 1.5], [3, 0]], counts=True)
    with pytest.raises(NoOverlapError, match="no unit has values from two or more coders"):
        krippendorff_alpha([[1, None], [None, 2]])
    # All are ValueErrors, so callers that only know the standard library still catch them.
    assert issubclass(AgreementError, ValueError)
