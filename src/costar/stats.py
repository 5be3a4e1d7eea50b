"""Statistics over trials: rates with intervals, pass@k / pass^k, and run-to-run comparisons.

Rates, intervals and Fisher's test are exact or closed-form in pure Python (``math.comb``,
``statistics.NormalDist``). Whether two pass rates differ is decided by one test everywhere
(:func:`boschloo_exact`: ``costar compare``, refinement's acceptance and its guards); it uses scipy's
special functions and is imported only when a comparison is made. docs/STATISTICS.md says why.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable
from statistics import NormalDist
from typing import Any, Literal

Comparison = Literal["improved", "regressed", "unchanged", "inconclusive"]
Alternative = Literal["two-sided", "better", "worse"]

# Above this many (a_n * b_n) trial pairs, Boschloo's p-value is bounded by Fisher's conditional
# one (it is never larger): at 1,000 trials a side the exact computation takes about 0.3 s, and the
# two differ by a few percent of the p-value (docs/STATISTICS.md).
EXACT_PAIRS_LIMIT = 1_000_000

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
    low, high = wilson_bounds(successes / n, n, NormalDist().inv_cdf(0.5 + confidence / 2))
    # At 0/n and n/n the bound is exactly 0 (or 1); pin it so rounding cannot leak past it.
    return (0.0 if successes == 0 else low), (1.0 if successes == n else high)


def wilson_bounds(share: float, n: int, z: float) -> tuple[float, float]:
    """Wilson's score interval, at normal quantile ``z``, for an observed ``share`` of ``n`` items
    (``n`` > 0). ``share`` need not be a count over ``n``: a weighted agreement is a share too."""
    z2n = z * z / n
    denom = 1 + z2n
    center = (share + z2n / 2) / denom
    half = z / denom * math.sqrt(max(share * (1 - share), 0.0) / n + z2n / (4 * n))
    return max(0.0, center - half), min(1.0, center + half)


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


def boschloo_exact(a_successes: int, a_n: int, b_successes: int, b_n: int, *,
                   alternative: Alternative = "two-sided") -> float:
    """P-value of Boschloo's exact unconditional test that B's pass rate is ``"better"`` (higher),
    ``"worse"`` (lower) or, ``"two-sided"``, different from A's.

    The statistic is Fisher's one-sided conditional p-value; the p-value is the largest chance,
    over every common pass rate the two could share, of a table at least as extreme. Unlike
    Fisher's test it does not condition on the total number of passes, which at a handful of
    trials costs Fisher most of its power: 0/3 → 3/3 is p = 0.050 one-sided for Fisher and
    p = 1/64 = 0.0156 here; 0/n → n/n is 4^-n. It is never larger than Fisher's p-value, and keeps
    its level exactly (no approximation). Two-sided is twice the smaller one-sided p (as scipy's
    ``boschloo_exact``, which the tests check this against). Above ``EXACT_PAIRS_LIMIT`` trial pairs
    Fisher's one-sided p-value stands in: an upper bound, so the answer errs towards "no change".
    """
    _check_counts(a_successes, a_n)
    _check_counts(b_successes, b_n)
    if alternative == "two-sided":
        one = min(boschloo_exact(a_successes, a_n, b_successes, b_n, alternative="better"),
                  boschloo_exact(a_successes, a_n, b_successes, b_n, alternative="worse"))
        return min(1.0, 2.0 * one)
    if alternative == "worse":  # B worse than A is A better than B
        return boschloo_exact(b_successes, b_n, a_successes, a_n, alternative="better")
    if alternative != "better":
        raise ValueError(f"alternative must be 'two-sided', 'better' or 'worse', got {alternative!r}")
    passes = a_successes + b_successes
    if 0 in (a_n, b_n) or passes in (0, a_n + b_n):
        return 1.0  # one side has no trials, or every trial agrees: nothing to tell apart
    if a_n * b_n > EXACT_PAIRS_LIMIT:
        return fisher_one_sided(a_successes, a_n, b_successes, b_n, alternative="better")
    return _boschloo_better(a_successes, a_n, b_successes, b_n)


@functools.lru_cache(maxsize=4096)
def _boschloo_better(a_c: int, a_n: int, b_c: int, b_n: int) -> float:
    """Boschloo's one-sided p-value (B better than A) for a table with uncertainty in it.

    Fisher's statistic for a table (y1 passes of A, y2 of B) is ``P(X <= y1)`` with X
    hypergeometric given y1 + y2 passes; it never grows with y2, so the tables at least as extreme
    as the observed one are, for each y1, those with y2 >= c(y1), found by bisection. The chance of
    that region when both pass at rate π is then a sum over y1 alone, maximised over π on a grid
    and refined around its best points. Cached: a comparison asks about the same small tables often.
    """
    import numpy as np
    from scipy import optimize, special
    from scipy.stats import hypergeom

    total = a_n + b_n
    # scipy's tolerance for "as extreme" (equal statistics must not be lost to rounding).
    threshold = float(hypergeom.cdf(a_c, total, a_c + b_c, a_n)) * (1 + 1e-13)
    y1 = np.arange(a_n + 1)
    lo = np.zeros(a_n + 1, dtype=np.int64)
    hi = np.full(a_n + 1, b_n + 1, dtype=np.int64)  # b_n + 1: no y2 is extreme enough
    while bool((lo < hi).any()):
        active = lo < hi
        mid = (lo + hi) // 2
        extreme = (mid <= b_n) & (hypergeom.cdf(y1, total, y1 + np.minimum(mid, b_n), a_n) <= threshold)
        hi = np.where(active & extreme, mid, hi)
        lo = np.where(active & ~extreme, mid + 1, lo)
    inside = lo <= b_n
    ys, cs = y1[inside].astype(float), lo[inside].astype(float)
    log_comb = special.gammaln(a_n + 1) - special.gammaln(ys + 1) - special.gammaln(a_n - ys + 1)

    def size(pi: Any) -> Any:
        """The region's probability at each common pass rate in ``pi`` (an array inside (0, 1))."""
        pi = np.asarray(pi, dtype=float).reshape(-1, 1)
        pmf = np.exp(log_comb + ys * np.log(pi) + (a_n - ys) * np.log1p(-pi))
        # P(Y2 >= c) for Y2 ~ Binomial(b_n, pi) is the regularised incomplete beta I_pi(c, b_n - c + 1).
        tail = np.where(cs <= 0, 1.0, special.betainc(np.maximum(cs, 1.0), b_n - cs + 1.0, pi))
        return (pmf * tail).sum(axis=1)

    grid = np.linspace(0.0, 1.0, 201)[1:-1]
    values = size(grid)
    # At pi = 0 (1) every trial fails (passes): the region holds that table or it does not.
    ends = [float(bool(np.any((ys == 0) & (cs <= 0)))), float(bool(np.any((ys == a_n) & (cs <= b_n))))]
    best = max(float(values.max()), *ends)
    peaks = [int(i) for i in np.argsort(values)[::-1][:2]]
    for i in peaks:
        left, right = (grid[i - 1] if i > 0 else 0.0), (grid[i + 1] if i + 1 < len(grid) else 1.0)
        found = optimize.minimize_scalar(lambda p: -float(size(p)[0]), bounds=(left, right), method="bounded",
                                         options={"xatol": 1e-9})
        best = max(best, -float(found.fun))
    return min(1.0, best)


def min_trials_to_detect(alpha: float, *, alternative: Alternative = "better", limit: int = 1000) -> int:
    """The fewest trials per side at which even the largest possible change, 0/n → n/n, reaches
    p < ``alpha`` with :func:`boschloo_exact` (3 at alpha 0.05 one-sided: 0/2 → 2/2 is p = 0.0625)."""
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be between 0 and 1, got {alpha}")
    for n in range(1, limit + 1):
        if boschloo_exact(0, n, n, n, alternative=alternative) < alpha:
            return n
    raise ValueError(f"no trial count up to {limit} can reach p < {alpha}")


def _round_half_up(x: float) -> int:
    return math.floor(x + 0.5)


def _could_detect_large_change(base_c: int, base_n: int, head_n: int, alpha: float) -> bool:
    base_rate = base_c / base_n
    shifted = base_rate - LARGE_CHANGE if base_rate >= 0.5 else base_rate + LARGE_CHANGE
    head_c = min(head_n, max(0, _round_half_up(shifted * head_n)))
    return boschloo_exact(base_c, base_n, head_c, head_n) < alpha


def compare_rates(base_c: int, base_n: int, head_c: int, head_n: int, alpha: float = 0.05) -> Comparison:
    """Say whether the head run's pass rate differs from the base run's, without overclaiming.

    The rule, in order:

    1. ``inconclusive`` when either run has no trials.
    2. ``improved`` / ``regressed`` when Boschloo's exact test (two-sided, :func:`boschloo_exact`)
       gives p < ``alpha``; the direction is the sign of ``head_c/head_n - base_c/base_n``.
    3. ``unchanged`` when the observed rates are exactly equal.
    4. ``unchanged`` when the test was not significant but the data could have detected a large
       change: keeping both trial counts and the base's pass count, a head whose pass count is
       ``round(head_n * (base rate ∓ 0.5))`` (half up; minus when the base rate is at least 0.5,
       else plus, i.e. a 50-point swing in the direction that has room) would have reached
       p < ``alpha``.
    5. ``inconclusive`` otherwise: too few trials to tell a real change from noise.

    For example 5/10 vs 6/10 is ``unchanged`` (a swing to 0/10 gives p = 0.013), while 2/3 vs 1/3 is
    ``inconclusive`` (even 2/3 vs 0/3 is p = 0.22); 3/3 vs 0/3 is ``regressed`` (p = 0.031, where
    Fisher's test gives 0.1 and could call no change at 3 trials a regression).
    """
    _check_counts(base_c, base_n)
    _check_counts(head_c, head_n)
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be between 0 and 1, got {alpha}")
    if base_n == 0 or head_n == 0:
        return "inconclusive"
    if boschloo_exact(base_c, base_n, head_c, head_n) < alpha:
        # Cross-multiplied so the direction is decided on integers, not rounded floats.
        return "improved" if head_c * base_n > base_c * head_n else "regressed"
    if head_c * base_n == base_c * head_n:
        return "unchanged"
    if _could_detect_large_change(base_c, base_n, head_n, alpha):
        return "unchanged"
    return "inconclusive"
