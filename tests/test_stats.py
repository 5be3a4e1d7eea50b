"""Statistics over trials, checked against hand-computed values, statsmodels/scipy and real tau-bench runs."""

from __future__ import annotations

import itertools
import json
import math
from collections import Counter
from fractions import Fraction

import pytest

from costar.stats import (
    EXACT_PAIRS_LIMIT,
    boschloo_exact,
    compare_rates,
    fisher_exact,
    fisher_one_sided,
    mean_pass_at_k,
    mean_pass_hat_k,
    min_trials_to_detect,
    pass_at_k,
    pass_hat_k,
    wilson_interval,
)
from tests.support.paths import EXTERNAL

TAU_BENCH = EXTERNAL / "tau-bench" / "gpt-4o-airline.json"

# ----------------------------------------------------------------------------- Wilson


def test_wilson_no_data_is_the_whole_range() -> None:
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_wilson_hand_computed() -> None:
    # 8/10 at 95%: z = 1.959964; center = (0.8 + z²/20) / (1 + z²/10), half-width from the formula.
    z = 1.959963984540054
    center = (0.8 + z * z / 20) / (1 + z * z / 10)
    half = z / (1 + z * z / 10) * math.sqrt(0.8 * 0.2 / 10 + z * z / 400)
    low, high = wilson_interval(8, 10)
    assert low == pytest.approx(center - half, abs=1e-12)
    assert high == pytest.approx(center + half, abs=1e-12)
    assert (round(low, 4), round(high, 4)) == (0.4902, 0.9433)


def test_wilson_extremes_are_pinned() -> None:
    low, high = wilson_interval(0, 5)
    assert low == 0.0
    assert high == pytest.approx(0.4345, abs=1e-4)
    low, high = wilson_interval(5, 5)
    assert high == 1.0
    assert low == pytest.approx(0.5655, abs=1e-4)


@pytest.mark.parametrize("confidence", [0.8, 0.9, 0.95, 0.99])
def test_wilson_matches_statsmodels(confidence: float) -> None:
    proportion = pytest.importorskip("statsmodels.stats.proportion")
    for n in (1, 2, 3, 5, 10, 37, 200):
        for c in range(n + 1):
            expected = proportion.proportion_confint(c, n, alpha=1 - confidence, method="wilson")
            assert wilson_interval(c, n, confidence) == pytest.approx(expected, abs=1e-12), (c, n)


@pytest.mark.parametrize("args", [(3, 2), (-1, 4), (1, -1)])
def test_wilson_rejects_impossible_counts(args: tuple[int, int]) -> None:
    with pytest.raises(ValueError):
        wilson_interval(*args)


def test_wilson_rejects_bad_confidence() -> None:
    with pytest.raises(ValueError):
        wilson_interval(1, 2, confidence=1.0)


# ----------------------------------------------------------------------------- pass@k / pass^k


def _by_subsets(n: int, c: int, k: int, need_all: bool) -> Fraction:
    """The definition the estimators are unbiased for: over every k-subset of the n trials."""
    outcomes = [True] * c + [False] * (n - c)
    subsets = list(itertools.combinations(outcomes, k))
    hits = sum(all(s) if need_all else any(s) for s in subsets)
    return Fraction(hits, len(subsets))


def test_pass_at_k_and_pass_hat_k_hand_computed() -> None:
    # n=5, c=2: pass@2 = 1 - C(3,2)/C(5,2) = 1 - 3/10; pass^2 = C(2,2)/C(5,2) = 1/10.
    assert pass_at_k(5, 2, 2) == pytest.approx(0.7)
    assert pass_hat_k(5, 2, 2) == pytest.approx(0.1)
    assert pass_at_k(5, 2, 1) == pass_hat_k(5, 2, 1) == pytest.approx(0.4)
    assert pass_at_k(5, 2, 4) == 1.0  # any 4 of 5 include a pass when only 3 fail
    assert pass_hat_k(5, 2, 3) == 0.0
    assert pass_hat_k(4, 4, 4) == 1.0
    assert pass_at_k(4, 0, 4) == 0.0


def test_estimators_equal_the_subset_definition() -> None:
    for n in range(1, 8):
        for c in range(n + 1):
            for k in range(1, n + 1):
                assert pass_at_k(n, c, k) == pytest.approx(float(_by_subsets(n, c, k, need_all=False)))
                assert pass_hat_k(n, c, k) == pytest.approx(float(_by_subsets(n, c, k, need_all=True)))


def test_estimators_stay_exact_for_large_n() -> None:
    # Ratios of huge binomials: exact integers, no overflow; pass^1 is just c/n.
    assert pass_hat_k(5000, 4000, 1) == pytest.approx(0.8)
    assert pass_at_k(5000, 1, 1) == pytest.approx(1 / 5000)
    assert 0.0 < pass_hat_k(5000, 4999, 2000) < 1.0


@pytest.mark.parametrize("k", [0, 6])
def test_k_outside_one_to_n_is_rejected(k: int) -> None:
    with pytest.raises(ValueError):
        pass_at_k(5, 2, k)
    with pytest.raises(ValueError):
        pass_hat_k(5, 2, k)


def test_suite_means_skip_scenarios_with_too_few_trials() -> None:
    counts = [(4, 4), (4, 2), (2, 1)]
    assert mean_pass_hat_k(counts, 1) == pytest.approx((1 + 0.5 + 0.5) / 3)
    assert mean_pass_hat_k(counts, 2) == pytest.approx((1 + 1 / 6 + 0) / 3)
    assert mean_pass_hat_k(counts, 3) == pytest.approx((1 + 0) / 2)
    assert mean_pass_at_k(counts, 3) == pytest.approx((1 + 1) / 2)
    assert mean_pass_hat_k(counts, 5) is None
    assert mean_pass_at_k([], 1) is None


def test_pass_hat_k_on_real_tau_bench_trials() -> None:
    if not TAU_BENCH.exists():
        pytest.skip("tau-bench data not available")
    runs = json.loads(TAU_BENCH.read_text())
    trials = Counter(r["task_id"] for r in runs)
    passes = Counter(r["task_id"] for r in runs if r["reward"] == 1.0)
    counts = [(trials[t], passes[t]) for t in sorted(trials)]
    assert len(counts) == 50
    assert all(n == 4 for n, _ in counts)
    # pass^1 is the plain success rate over all 200 runs.
    assert mean_pass_hat_k(counts, 1) == pytest.approx(sum(passes.values()) / 200)
    curve = [mean_pass_hat_k(counts, k) for k in range(1, 5)]
    for k, value in enumerate(curve, start=1):
        by_definition = sum(_by_subsets(n, c, k, need_all=True) for n, c in counts) / len(counts)
        assert value == pytest.approx(float(by_definition))
    # Reliability only drops as k grows; pass@k only rises.
    assert curve == sorted(curve, reverse=True)
    assert curve[-1] < curve[0]
    at = [mean_pass_at_k(counts, k) for k in range(1, 5)]
    assert at == sorted(at)


# ----------------------------------------------------------------------------- Fisher


def _fisher_by_enumeration(a: int, an: int, b: int, bn: int) -> Fraction:
    """Two-sided Fisher from its definition, with exact fractions (independent of the module's recurrence)."""
    total, col = an + bn, a + b
    denom = math.comb(total, an)
    probs = {x: Fraction(math.comb(col, x) * math.comb(total - col, an - x), denom)
             for x in range(max(0, an - (total - col)), min(an, col) + 1)}
    observed = probs[a]
    return sum((p for p in probs.values() if p <= observed), Fraction(0))


def test_fisher_hand_computed_tables() -> None:
    # 3/3 vs 0/3: only the two extreme tables (probability 1/20 each) are as unlikely.
    assert fisher_exact(3, 3, 0, 3) == pytest.approx(0.1)
    # 2/3 vs 0/3: tables x=2 and x=0 have probability 4/20 each.
    assert fisher_exact(2, 3, 0, 3) == pytest.approx(0.4)
    # Tea tasting: 3/4 vs 1/4 -> (16 + 1 + 1 + 16) / 70.
    assert fisher_exact(3, 4, 1, 4) == pytest.approx(34 / 70)
    # 5/10 vs 0/10: 2 * C(15,5) / C(20,10).
    assert fisher_exact(5, 10, 0, 10) == pytest.approx(2 * 3003 / 184756)
    assert fisher_exact(4, 8, 4, 8) == 1.0


def test_fisher_degenerate_tables() -> None:
    assert fisher_exact(0, 0, 3, 5) == 1.0
    assert fisher_exact(0, 4, 0, 6) == 1.0  # nobody passed
    assert fisher_exact(4, 4, 6, 6) == 1.0  # everybody passed


def test_fisher_matches_enumeration() -> None:
    for an, bn in [(1, 1), (2, 5), (4, 4), (6, 3), (7, 9)]:
        for a in range(an + 1):
            for b in range(bn + 1):
                assert fisher_exact(a, an, b, bn) == pytest.approx(float(_fisher_by_enumeration(a, an, b, bn)),
                                                                   rel=1e-12)


def test_fisher_matches_scipy_when_available() -> None:
    scipy_stats = pytest.importorskip("scipy.stats")
    for an, bn in [(3, 3), (5, 12), (20, 20), (50, 30)]:
        for a in range(0, an + 1, max(1, an // 5)):
            for b in range(0, bn + 1, max(1, bn // 5)):
                expected = scipy_stats.fisher_exact([[a, an - a], [b, bn - b]]).pvalue
                assert fisher_exact(a, an, b, bn) == pytest.approx(expected, rel=1e-9), (a, an, b, bn)


def test_fisher_is_fast_for_thousands_of_trials() -> None:
    p = fisher_exact(5000, 10_000, 5200, 10_000)
    assert 0.0 < p < 0.01


# ----------------------------------------------------------------------------- Boschloo


def test_boschloo_hand_computed_tables() -> None:
    # 0/n -> n/n: the only table as extreme is the observed one, P = (pi (1 - pi))^n, largest at pi = 1/2.
    for n in (1, 2, 3, 4, 5):
        assert boschloo_exact(0, n, n, n, alternative="better") == pytest.approx(4.0 ** -n)
        assert boschloo_exact(0, n, n, n) == pytest.approx(min(1.0, 2 * 4.0 ** -n))
    assert boschloo_exact(0, 3, 3, 3, alternative="better") == pytest.approx(0.015625)  # Fisher: 0.05
    assert fisher_one_sided(0, 3, 3, 3, alternative="better") == pytest.approx(0.05)
    assert boschloo_exact(0, 2, 2, 2, alternative="better") == pytest.approx(0.0625)
    assert boschloo_exact(0, 3, 3, 3, alternative="worse") == 1.0
    assert boschloo_exact(3, 3, 0, 3, alternative="worse") == pytest.approx(0.015625)


def test_boschloo_degenerate_tables() -> None:
    assert boschloo_exact(0, 0, 3, 5) == 1.0
    assert boschloo_exact(0, 4, 0, 6, alternative="better") == 1.0  # nobody passed
    assert boschloo_exact(4, 4, 6, 6, alternative="worse") == 1.0  # everybody passed
    with pytest.raises(ValueError):
        boschloo_exact(1, 2, 1, 2, alternative="sideways")  # type: ignore[arg-type]


def test_boschloo_matches_scipy_on_every_small_table() -> None:
    """scipy's implementation (an optimiser over the nuisance parameter) is the reference."""
    scipy_stats = pytest.importorskip("scipy.stats")
    for an, bn in itertools.product(range(1, 5), repeat=2):
        for a, b in itertools.product(range(an + 1), range(bn + 1)):
            table = [[a, b], [an - a, bn - b]]
            for ours, theirs in (("better", "less"), ("worse", "greater")):
                expected = scipy_stats.boschloo_exact(table, alternative=theirs).pvalue
                expected = 1.0 if math.isnan(expected) else expected
                assert boschloo_exact(a, an, b, bn, alternative=ours) == pytest.approx(expected, abs=1e-9), \
                    (a, an, b, bn, ours)


def test_boschloo_matches_scipy_on_larger_tables_and_never_exceeds_fisher() -> None:
    scipy_stats = pytest.importorskip("scipy.stats")
    for a, an, b, bn in [(7, 20, 14, 20), (30, 45, 20, 38), (2, 12, 9, 30), (55, 60, 48, 60), (0, 25, 4, 25)]:
        expected = scipy_stats.boschloo_exact([[a, b], [an - a, bn - b]], alternative="less").pvalue
        ours = boschloo_exact(a, an, b, bn, alternative="better")
        assert ours == pytest.approx(expected, rel=1e-6, abs=1e-12), (a, an, b, bn)
        assert ours <= fisher_one_sided(a, an, b, bn, alternative="better") + 1e-12


def test_boschloo_above_the_exact_limit_is_bounded_by_fisher() -> None:
    n = 2 * math.isqrt(EXACT_PAIRS_LIMIT)
    p = boschloo_exact(n // 2, n, n // 2 + n // 20, n, alternative="better")
    assert p == fisher_one_sided(n // 2, n, n // 2 + n // 20, n, alternative="better")
    assert 0.0 < p < 0.01


def test_min_trials_to_detect() -> None:
    assert min_trials_to_detect(0.05) == 3  # 0/2 -> 2/2 is p = 0.0625
    assert min_trials_to_detect(0.05, alternative="two-sided") == 3  # 2 * 4^-3 = 0.031
    assert min_trials_to_detect(0.01) == 4  # 4^-3 = 0.0156, 4^-4 = 0.0039
    assert min_trials_to_detect(0.2) == 2


# ----------------------------------------------------------------------------- compare_rates


@pytest.mark.parametrize(("counts", "expected"), [
    ((10, 10, 2, 10), "regressed"),
    ((2, 10, 10, 10), "improved"),
    ((5, 10, 6, 10), "unchanged"),  # not significant, and 0/10 would have been (p = 0.013)
    ((2, 3, 1, 3), "inconclusive"),  # even 2/3 vs 0/3 is p = 0.22
    ((3, 3, 0, 3), "regressed"),  # the largest possible change: p = 0.031 (Fisher's test: 0.1)
    ((2, 2, 0, 2), "inconclusive"),  # p = 0.125: two trials cannot tell
    ((1, 1, 1, 1), "unchanged"),  # equal observed rates
    ((4, 8, 2, 4), "unchanged"),  # equal rates at different trial counts
    ((0, 0, 3, 3), "inconclusive"),
    ((3, 3, 0, 0), "inconclusive"),
])
def test_compare_rates(counts: tuple[int, int, int, int], expected: str) -> None:
    assert compare_rates(*counts) == expected


def test_compare_rates_alpha_moves_the_line() -> None:
    # 3/3 vs 0/3 has p = 0.031: significant at alpha 0.05, not at 0.01.
    assert compare_rates(3, 3, 0, 3, alpha=0.05) == "regressed"
    assert compare_rates(3, 3, 0, 3, alpha=0.01) == "inconclusive"


def test_compare_rates_large_runs_call_small_differences_unchanged() -> None:
    assert compare_rates(80, 100, 78, 100) == "unchanged"
    assert compare_rates(80, 100, 60, 100) == "regressed"


def test_compare_rates_validates_input() -> None:
    with pytest.raises(ValueError):
        compare_rates(5, 4, 1, 1)
    with pytest.raises(ValueError):
        compare_rates(1, 2, 1, 2, alpha=0)
