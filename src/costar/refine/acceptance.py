"""When is a refinement attempt an improvement? Over trials, with exact tests, never one lucky run.

An attempt is accepted when, against the version it started from:

1. the scenarios that were failing improve: pooled over their trials a higher pass rate with a
   one-sided Boschloo exact test p < ``alpha`` (default 0.05), or one of them on its own with
   p < ``alpha`` / (number of failing scenarios) (Bonferroni), so a fix for one failure is not
   drowned by failures it was never meant to address. Boschloo's test, not Fisher's: at 3 trials
   0/3 → 3/3 is p = 0.016 (Fisher: 0.050, which "p < 0.05" rejects); docs/STATISTICS.md;
2. no scenario regresses (``stats.compare_rates`` says "regressed");
3. the rest of the train split does not get worse, pooled: a lower pass rate with one-sided
   (Boschloo) p < ``guard_alpha`` (default 0.2, deliberately loose: a guard should err towards rejecting);
4. the held-out split does not get worse, by the same rule. The assistant never sees held-out
   scenarios, so this is what catches an attempt that only fits the scenarios it was shown.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from costar.stats import Comparison, boschloo_exact, compare_rates, min_trials_to_detect
from costar.summary import RunSummary

ScenarioScores = dict[str, tuple[int, int]]  # scenario id -> (passed, decided trials)


@dataclass
class Decision:
    accepted: bool
    reason: str  # for the human reviewer
    per_scenario: dict[str, Comparison] = field(default_factory=dict)
    # For the assistant's next brief: never names held-out scenarios, which it must not see.
    feedback: str = ""

    def __post_init__(self) -> None:
        self.feedback = self.feedback or self.reason


def scores_of(summary: RunSummary) -> ScenarioScores:
    return {s.scenario_id: (s.passed, s.decided) for s in summary.scenarios}


def _pool(scores: ScenarioScores, ids: Iterable[str]) -> tuple[int, int]:
    c = n = 0
    for s in ids:
        pc, pn = scores.get(s, (0, 0))
        c, n = c + pc, n + pn
    return c, n


def _fmt(c: int, n: int) -> str:
    return f"{c}/{n}"


def decide(before: ScenarioScores, after: ScenarioScores, *, targets: list[str], train_rest: list[str],
           holdout: list[str], alpha: float = 0.05, guard_alpha: float = 0.2) -> Decision:
    per = {s: compare_rates(*before.get(s, (0, 0)), *after[s], alpha=alpha) for s in after}
    bc, bn = _pool(before, targets)
    ac, an = _pool(after, targets)
    p_better = boschloo_exact(bc, bn, ac, an, alternative="better")
    single = [boschloo_exact(*before.get(t, (0, 0)), *after[t], alternative="better") * len(targets)
              for t in targets if t in after and after[t][1]]
    p_better = min([p_better, *single])
    if an == 0 or not (ac / an > (bc / bn if bn else 0.0)) or p_better >= alpha:
        return Decision(False, f"the failing scenarios did not improve enough ({_fmt(bc, bn)} → {_fmt(ac, an)}, "
                               f"one-sided p={p_better:.3f}, needs < {alpha})", per)
    regressed = sorted(s for s, d in per.items() if d == "regressed")
    held = [s for s in regressed if s in holdout]
    if held:
        hb, ha = _pool(before, held), _pool(after, held)
        return Decision(False, f"held-out guard: regressed on {', '.join(held)} ({_fmt(*hb)} → {_fmt(*ha)})", per,
                        feedback=f"the change made scenarios held out from you worse ({_fmt(*hb)} → {_fmt(*ha)}): "
                                 "it fits the failing cases too narrowly; make a more general fix")
    if regressed:
        return Decision(False, f"regressed on {', '.join(regressed)}", per)
    for label, ids in (("the rest of the train split", train_rest), ("the held-out split", holdout)):
        ids = [s for s in ids if s in after]
        if not ids:
            continue
        rc, rn = _pool(before, ids)
        hc, hn = _pool(after, ids)
        if rn and hn and hc / hn < rc / rn:
            p_worse = boschloo_exact(rc, rn, hc, hn, alternative="worse")
            if p_worse < guard_alpha:
                held_out = label == "the held-out split"
                reason = (f"{'held-out guard: ' if held_out else ''}worse on {label} ({_fmt(rc, rn)} → "
                          f"{_fmt(hc, hn)}, one-sided p={p_worse:.3f} < {guard_alpha})")
                return Decision(False, reason, per, feedback=(
                    f"the change made scenarios held out from you worse ({_fmt(rc, rn)} → {_fmt(hc, hn)}): "
                    "make a more general fix" if held_out else reason))
    return Decision(True, f"failing scenarios {_fmt(bc, bn)} → {_fmt(ac, an)} (p={p_better:.3f}); no regression "
                          "on the rest of the train split or the held-out split", per)


def detectability_warning(trials: int, alpha: float) -> str | None:
    """Said before the baseline runs: the trial count at which no attempt could ever be accepted for
    fixing a scenario on its own, because even 0/n → n/n does not reach p < ``alpha``."""
    needed = min_trials_to_detect(alpha, alternative="better")
    if trials >= needed:
        return None
    p = boschloo_exact(0, trials, trials, trials, alternative="better")
    return (f"{trials} trial(s) per scenario cannot show that one failing scenario improved: even "
            f"0/{trials} → {trials}/{trials} gives p = {p:.4f}, not < alpha {alpha:g}; an attempt is accepted "
            f"only when several failing scenarios improve together. Use at least {needed} trials "
            f"(--trials {needed}, or refine.trials in costar.yaml)")
