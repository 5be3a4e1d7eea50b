"""Statistics over trials: rates with intervals, pass@k / pass^k, and run-to-run comparisons.

Everything here is exact or closed-form and pure Python (``math.comb``, ``statistics.NormalDist``),
so the package does not depend on scipy.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from statistics import NormalDist
from typing import Literal

Comparison = Literal["improved", "regressed", "unchanged", "inconclusive"]

# The swing ``compare_rates`` must have been able to detect before it calls a non-significant
# difference "unchanged": half of the whole 0..1 range.
LARGE_CHANGE = 0.5


def _check_counts(successes: int, n: int) -> None:
    if n < 0 or successes < 0 or successes > n:
        raise ValueError(f"need 0 <= successes <= n, got successes={successes}, n={n}")


def _check_k(n: int, k: int) -> None:
    if k < 1 or k > n:
        raise ValueError(f"need 1 <= k <= n, got k={k}, n={n}")


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion; ``(0, 1)`` when there is no data.

    Unlike the normal approximation it stays inside [0, 1] and is not degenerate at 0/n or n/n,
    which is the common case for a handful of agent trials.
    """
    _check_counts(successes, n)
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1, got {confidence}")
    if n == 0:
        return 0.0, 1.0
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    p = successes / n
    z2n = z * z / n
    denom = 1 + z2n
    center = (p + z2n / 2) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z2n / (4 * n))
    # At 0/n and n/n the bound is exactly 0 (or 1); pin it so rounding cannot leak past it.
    low = 0.0 if successes == 0 else max(0.0, center - half)
    high = 1.0 if successes == n else min(1.0, center + half)
    return low, high


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased estimate of P(at least one of k trials passes) from c passes in n trials.

    ``1 - C(n-c, k) / C(n, k)`` (Chen et al., 2021), computed on exact integers.
    """
    _check_counts(c, n)
    _check_k(n, k)
    total = math.comb(n, k)
    return (total - math.comb(n - c, k)) / total


def pass_hat_k(n: int, c: int, k: int) -> float:
    """Unbiased estimate of pass^k, P(all of k trials pass), from c passes in n trials.

    ``C(c, k) / C(n, k)``, the estimator tau-bench uses for reliability over repeated trials.
    """
    _check_counts(c, n)
    _check_k(n, k)
    return math.comb(c, k) / math.comb(n, k)


def _mean_over(counts: Iterable[tuple[int, int]], k: int,
               estimator: Callable[[int, int, int], float]) -> float | None:
    values = [estimator(n, c, k) for n, c in counts if n >= k]
    return sum(values) / len(values) if values else None


def mean_pass_at_k(counts: Iterable[tuple[int, int]], k: int) -> float | None:
    """Suite pass@k: the mean over scenarios, given as ``(n, c)`` pairs, that ran at least k trials.

    A scenario with fewer than k trials has no unbiased pass@k and is left out rather than
    extrapolated; None when no scenario qualifies.
    """
    return _mean_over(counts, k, pass_at_k)


def mean_pass_hat_k(counts: Iterable[tuple[int, int]], k: int) -> float | None:
    """Suite pass^k: the mean over scenarios (``(n, c)`` pairs) that ran at least k trials, else None."""
    return _mean_over(counts, k, pass_hat_k)


def _hypergeometric_terms(row1: int, col1: int, total: int) -> tuple[int, list[int]]:
    """Numerators C(col1, x) * C(total-col1, row1-x) for every feasible x, and the lowest x.

    All tables with these margins share the denominator C(total, row1), so comparing and summing
    numerators is exact. Successive terms come from the ratio of neighbours, which keeps the cost
    linear in the table size instead of one big ``comb`` per term.
    """
    col2 = total - col1
    lo = max(0, row1 - col2)
    hi = min(row1, col1)
    term = math.comb(col1, lo) * math.comb(col2, row1 - lo)
    terms = [term]
    for x in range(lo, hi):
        term = term * (col1 - x) * (row1 - x) // ((x + 1) * (col2 - row1 + x + 1))
        terms.append(term)
    return lo, terms


def _margins_terms(a_successes: int, a_n: int, b_successes: int, b_n: int) -> tuple[int, list[int]] | None:
    """The hypergeometric terms of the 2x2 table, or None when the margins leave no uncertainty."""
    _check_counts(a_successes, a_n)
    _check_counts(b_successes, b_n)
    total = a_n + b_n
    col1 = a_successes + b_successes
    if total == 0 or col1 in (0, total) or 0 in (a_n, b_n):
        return None
    return _hypergeometric_terms(a_n, col1, total)


def fisher_exact(a_successes: int, a_n: int, b_successes: int, b_n: int) -> float:
    """Two-sided p-value of Fisher's exact test on the 2x2 table of successes and failures.

    The p-value sums the probabilities of every table with the observed margins that is no more
    likely than the observed one (the same convention as ``scipy.stats.fisher_exact``). The
    comparison is on exact integers, so there is no floating-point tolerance to tune.
    """
    table = _margins_terms(a_successes, a_n, b_successes, b_n)
    if table is None:
        return 1.0
    lo, terms = table
    observed = terms[a_successes - lo]
    extreme = sum(t for t in terms if t <= observed)
    return min(1.0, extreme / sum(terms))


def fisher_one_sided(a_successes: int, a_n: int, b_successes: int, b_n: int, *, alternative: str) -> float:
    """One-sided Fisher p-value: the chance, with the margins fixed, of B doing at least this much
    ``"better"`` (or ``"worse"``) than A. Used where only one direction matters: an acceptance
    test asks "did the failing scenarios improve?" and a guard asks "did anything get worse?"."""
    if alternative not in ("better", "worse"):
        raise ValueError("alternative must be 'better' or 'worse'")
    table = _margins_terms(a_successes, a_n, b_successes, b_n)
    if table is None:
        return 1.0
    lo, terms = table
    # terms[i] is the probability that A has lo + i successes; B better means A has fewer.
    idx = a_successes - lo
    tail = terms[: idx + 1] if alternative == "better" else terms[idx:]
    return min(1.0, sum(tail) / sum(terms))


def _round_half_up(x: float) -> int:
    return math.floor(x + 0.5)


def _could_detect_large_change(base_c: int, base_n: int, head_n: int, alpha: float) -> bool:
    base_rate = base_c / base_n
    shifted = base_rate - LARGE_CHANGE if base_rate >= 0.5 else base_rate + LARGE_CHANGE
    head_c = min(head_n, max(0, _round_half_up(shifted * head_n)))
    return fisher_exact(base_c, base_n, head_c, head_n) < alpha


def compare_rates(base_c: int, base_n: int, head_c: int, head_n: int, alpha: float = 0.05) -> Comparison:
    """Say whether the head run's pass rate differs from the base run's, without overclaiming.

    The rule, in order:

    1. ``inconclusive`` when either run has no trials.
    2. ``improved`` / ``regressed`` when Fisher's exact test (two-sided, :func:`fisher_exact`) gives
       p < ``alpha``; the direction is the sign of ``head_c/head_n - base_c/base_n``.
    3. ``unchanged`` when the observed rates are exactly equal.
    4. ``unchanged`` when the test was not significant but the data could have detected a large
       change: keeping both trial counts and the base's pass count, a head whose pass count is
       ``round(head_n * (base rate ∓ 0.5))`` (half up; minus when the base rate is at least 0.5,
       else plus, i.e. a 50-point swing in the direction that has room) would have reached
       p < ``alpha``.
    5. ``inconclusive`` otherwise: too few trials to tell a real change from noise.

    For example 5/10 vs 6/10 is ``unchanged`` (a swing to 0/10 gives p = 0.033), while 2/3 vs 1/3 is
    ``inconclusive`` (even 2/3 vs 0/3 is p = 0.4).
    """
    _check_counts(base_c, base_n)
    _check_counts(head_c, head_n)
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be between 0 and 1, got {alpha}")
    if base_n == 0 or head_n == 0:
        return "inconclusive"
    if fisher_exact(base_c, base_n, head_c, head_n) < alpha:
        # Cross-multiplied so the direction is decided on integers, not rounded floats.
        return "improved" if head_c * base_n > base_c * head_n else "regressed"
    if head_c * base_n == base_c * head_n:
        return "unchanged"
    if _could_detect_large_change(base_c, base_n, head_n, alpha):
        return "unchanged"
    return "inconclusive"
