"""Two runs side by side: did the agent get better, worse, or can the trials not tell?

Every pass-rate difference is decided by Boschloo's exact test over the trials
(:func:`costar.stats.compare_rates`, the same test refinement accepts attempts with), never by
comparing two numbers. With many scenarios some
test comes out "significant" by luck (at alpha 0.05, about one in twenty when nothing changed), so
by default the per-scenario and per-judge p-values are Holm-adjusted within their family before a
difference is called improved or regressed; a difference that is significant on its own but not
after the adjustment is reported as inconclusive.

The run as a whole is compared on the trials of the scenarios both runs ran (pooled), so adding or
removing scenarios does not read as a change in the agent. When both runs ran each scenario the
same number of times, pooling is conservative: the spread between scenarios inflates the pooled
variance but cancels out of the difference.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, computed_field

from costar.attribution import Attribution, attribute
from costar.judges.registry import JudgeRegistry
from costar.rejudge import RejudgeReport
from costar.stats import boschloo_exact, compare_rates
from costar.store.base import Store
from costar.summary import (
    JudgeSummary,
    Rate,
    ReportModel,
    RunSummary,
    ScenarioSummary,
    VerdictBrief,
    plural,
    summarize_run,
)
from costar.trace.model import AgentInfo

Change = Literal["improved", "regressed", "unchanged", "inconclusive"]
ScenarioChange = Literal["improved", "regressed", "unchanged", "inconclusive", "added", "removed"]
JudgeChange = Literal["improved", "regressed", "unchanged", "inconclusive", "added", "removed", "metric"]
Correction = Literal["holm", "none"]
UsageMetric = Literal["total_tokens", "cost_usd", "latency_s"]
USAGE_METRICS: tuple[UsageMetric, ...] = ("total_tokens", "cost_usd", "latency_s")


# --------------------------------------------------------------------------- models


class MetricDelta(BaseModel):
    """Median per trial in each run and the change; ``relative`` is None when the base is 0."""

    model_config = ConfigDict(extra="forbid")

    metric: UsageMetric
    base: float
    head: float
    delta: float
    relative: float | None

    @classmethod
    def of(cls, metric: UsageMetric, base: float, head: float) -> MetricDelta:
        return cls(metric=metric, base=base, head=head, delta=head - base,
                   relative=(head - base) / base if base else None)


class RateChange(BaseModel):
    """One pass rate in both runs, with Boschloo's exact p-value (two-sided) and the decision."""

    model_config = ConfigDict(extra="forbid")

    base: Rate
    head: Rate
    p_value: float
    # Holm-adjusted within its family (scenarios, or judges); equals p_value when uncorrected.
    p_adjusted: float
    change: Change


class PassHatK(BaseModel):
    """pass^k at the largest k both runs can estimate (their smaller count of decided trials)."""

    model_config = ConfigDict(extra="forbid")

    k: int
    base: float
    head: float


class ScenarioComparison(BaseModel):
    model_config = ConfigDict(extra="forbid")

    scenario_id: str
    change: ScenarioChange
    # The test, when the scenario ran in both runs; base_rate / head_rate are set whenever it ran.
    rates: RateChange | None = None
    base_rate: Rate | None = None
    head_rate: Rate | None = None
    pass_hat_k: PassHatK | None = None
    metrics: list[MetricDelta] = Field(default_factory=list)
    head_failures: list[VerdictBrief] = Field(default_factory=list)
    """HEAD's failing gating verdicts, one per judge (the first trial's rationale), to say what broke."""


class JudgeComparison(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    change: JudgeChange
    gating: bool
    rates: RateChange | None = None
    base_mean: float | None = None
    head_mean: float | None = None
    base_fingerprints: list[str] = Field(default_factory=list)
    head_fingerprints: list[str] = Field(default_factory=list)

    @property
    def fingerprint_changed(self) -> bool:
        return bool(self.base_fingerprints and self.head_fingerprints
                    and set(self.base_fingerprints) != set(self.head_fingerprints))


class Comparison(ReportModel):
    """BASE against HEAD. ``exit_code`` is 1 when something significantly regressed, so CI can gate."""

    base_run_id: str | None
    head_run_id: str | None
    base_agent: AgentInfo = Field(default_factory=AgentInfo)
    head_agent: AgentInfo = Field(default_factory=AgentInfo)
    alpha: float
    correction: Correction
    # The trials of the scenarios both runs ran, pooled.
    overall: RateChange
    scenarios: list[ScenarioComparison] = Field(default_factory=list)
    judges: list[JudgeComparison] = Field(default_factory=list)
    metrics: list[MetricDelta] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    attribution: Attribution | None = None
    """Tool and agent changes between the runs and, per scenario, which changed tools it used."""
    rejudge: RejudgeReport | None = None
    """Flaky agent or flaky judge, for the regressed scenarios (``compare_runs(..., rejudge=k)``)."""

    def scenario(self, scenario_id: str) -> ScenarioComparison | None:
        return next((s for s in self.scenarios if s.scenario_id == scenario_id), None)

    def judge(self, name: str) -> JudgeComparison | None:
        return next((j for j in self.judges if j.name == name), None)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for s in self.scenarios:
            out[s.change] = out.get(s.change, 0) + 1
        return out

    @computed_field  # type: ignore[prop-decorator]  # mypy rejects decorators above @property; pydantic documents this
    @property
    def has_significant_regression(self) -> bool:
        """The run as a whole, a scenario, or a gating judge regressed significantly."""
        return (self.overall.change == "regressed"
                or any(s.change == "regressed" for s in self.scenarios)
                or any(j.change == "regressed" and j.gating for j in self.judges))

    @computed_field  # type: ignore[prop-decorator]  # mypy rejects decorators above @property; pydantic documents this
    @property
    def exit_code(self) -> int:
        return 1 if self.has_significant_regression else 0


# --------------------------------------------------------------------------- statistics


def holm_adjust(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment: p-values that control the family-wise error rate, in input order.

    The i-th smallest of m p-values is multiplied by ``m - i`` (i from 0), then made non-decreasing
    in that order and capped at 1.
    """
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def _decide(base: Rate, head: Rate, p_adjusted: float, alpha: float) -> Change:
    change = compare_rates(base.successes, base.n, head.successes, head.n, alpha)
    if change in ("improved", "regressed") and p_adjusted >= alpha:
        # Significant on its own, not once every other test in the family is accounted for.
        return "inconclusive"
    return change


def _rate_changes(pairs: Sequence[tuple[Rate, Rate]], alpha: float, correction: Correction) -> list[RateChange]:
    p_values = [boschloo_exact(b.successes, b.n, h.successes, h.n) for b, h in pairs]
    adjusted = list(p_values)
    if correction == "holm":
        # A side with no decided trial is no test at all; counting it would only penalise the others.
        tested = [i for i, (b, h) in enumerate(pairs) if b.n and h.n]
        for i, pa in zip(tested, holm_adjust([p_values[i] for i in tested]), strict=True):
            adjusted[i] = pa
    return [RateChange(base=b, head=h, p_value=p, p_adjusted=pa, change=_decide(b, h, pa, alpha))
            for (b, h), p, pa in zip(pairs, p_values, adjusted, strict=True)]


def _check_options(alpha: float, correction: str) -> None:
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be between 0 and 1, got {alpha}")
    if correction not in ("holm", "none"):
        raise ValueError(f"correction must be 'holm' or 'none', got {correction!r}")


# --------------------------------------------------------------------------- metric deltas


def _trial_values(scenarios: Sequence[ScenarioSummary], metric: UsageMetric) -> list[float]:
    return [float(getattr(t.usage, metric)) for s in scenarios for t in s.trial_results]


def _metric_deltas(base: Sequence[ScenarioSummary], head: Sequence[ScenarioSummary]) -> list[MetricDelta]:
    out = []
    for metric in USAGE_METRICS:
        b, h = _trial_values(base, metric), _trial_values(head, metric)
        if b and h:
            out.append(MetricDelta.of(metric, statistics.median(b), statistics.median(h)))
    return out


# --------------------------------------------------------------------------- scenarios and judges


def _pass_hat_k(base: ScenarioSummary, head: ScenarioSummary) -> PassHatK | None:
    k = min(len(base.pass_hat_k), len(head.pass_hat_k))
    if k < 1:
        return None
    return PassHatK(k=k, base=base.pass_hat_k[k - 1], head=head.pass_hat_k[k - 1])


def _compare_scenarios(base: RunSummary, head: RunSummary, alpha: float,
                       correction: Correction) -> list[ScenarioComparison]:
    base_by = {s.scenario_id: s for s in base.scenarios}
    head_by = {s.scenario_id: s for s in head.scenarios}
    common = [sid for sid in head_by if sid in base_by]
    changes = dict(zip(common, _rate_changes([(base_by[sid].rate, head_by[sid].rate) for sid in common],
                                             alpha, correction), strict=True))
    out = []
    for sid in [*head_by, *(sid for sid in base_by if sid not in head_by)]:
        b, h = base_by.get(sid), head_by.get(sid)
        if b is None or h is None:
            out.append(ScenarioComparison(scenario_id=sid, change="added" if b is None else "removed",
                                          base_rate=b.rate if b else None, head_rate=h.rate if h else None))
            continue
        rc = changes[sid]
        out.append(ScenarioComparison(scenario_id=sid, change=rc.change, rates=rc, base_rate=b.rate,
                                      head_rate=h.rate, pass_hat_k=_pass_hat_k(b, h),
                                      metrics=_metric_deltas([b], [h]), head_failures=_failures(h)))
    return out


def _failures(s: ScenarioSummary, limit: int = 3) -> list[VerdictBrief]:
    seen: dict[str, VerdictBrief] = {}
    for t in s.trial_results:
        for f in t.failures:
            seen.setdefault(f.name, f)
    return list(seen.values())[:limit]


def _decided(j: JudgeSummary) -> bool:
    return j.passed + j.failed > 0


def _compare_judges(base: RunSummary, head: RunSummary, alpha: float,
                    correction: Correction) -> list[JudgeComparison]:
    base_by = {j.name: j for j in base.judges}
    head_by = {j.name: j for j in head.judges}
    tested = [n for n in head_by if n in base_by and _decided(base_by[n]) and _decided(head_by[n])]
    changes = dict(zip(tested, _rate_changes([(base_by[n].rate, head_by[n].rate) for n in tested],
                                             alpha, correction), strict=True))
    out = []
    for name in sorted({*base_by, *head_by}):
        b, h = base_by.get(name), head_by.get(name)
        change: JudgeChange
        if b is None:
            change = "added"
        elif h is None:
            change = "removed"
        elif name in changes:
            change = changes[name].change
        elif _decided(b) or _decided(h):
            # Decided in one run only (e.g. a metric that gained a limit): no common rate to test.
            change = "inconclusive"
        else:
            change = "metric"
        out.append(JudgeComparison(
            name=name, change=change, gating=bool((b and b.gating) or (h and h.gating)), rates=changes.get(name),
            base_mean=b.mean_value if b else None, head_mean=h.mean_value if h else None,
            base_fingerprints=b.fingerprints if b else [], head_fingerprints=h.fingerprints if h else []))
    return out


# --------------------------------------------------------------------------- warnings


def _warnings(base: RunSummary, head: RunSummary, scenarios: Sequence[ScenarioComparison],
              judges: Sequence[JudgeComparison]) -> list[str]:
    out = [f"judge {j.name} changed between runs: comparison measures the judge too"
           for j in judges if j.fingerprint_changed]
    added = sum(s.change == "added" for s in scenarios)
    removed = sum(s.change == "removed" for s in scenarios)
    if added or removed:
        out.append(f"the runs ran different scenarios ({added} added, {removed} removed): the overall rate "
                   "covers the shared ones only, judge rates cover each run's own")
    base_by = {s.scenario_id: s for s in base.scenarios}
    uneven = [s.scenario_id for s in head.scenarios
              if s.scenario_id in base_by and s.decided != base_by[s.scenario_id].decided]
    if uneven:
        out.append(f"{len(uneven)} shared scenarios have different numbers of decided trials in the two runs: "
                   "the pooled overall rate weighs them differently (run the same trials to compare cleanly)")
    for label, summary in (("base", base), ("head", head)):
        t = summary.totals
        left_out = t.errored + t.unscored
        if left_out:
            out.append(f"{label} run: {left_out} of {t.trials} trials had judge errors or no verdict and are "
                       "left out of the rates")
        if t.missing:
            out.append(f"{label} run: {plural(t.missing, 'planned trial')} never recorded (interrupted run?)")
    return out


# --------------------------------------------------------------------------- entry points


def _pooled(scenarios: Sequence[ScenarioComparison], side: Literal["base", "head"]) -> Rate:
    rates = [s.rates.base if side == "base" else s.rates.head for s in scenarios if s.rates is not None]
    return Rate.of(sum(r.successes for r in rates), sum(r.n for r in rates))


def compare_summaries(base: RunSummary, head: RunSummary, *, alpha: float = 0.05,
                      correction: Correction = "holm") -> Comparison:
    """Compare two run summaries (see the module docstring for the rules)."""
    _check_options(alpha, correction)
    scenarios = _compare_scenarios(base, head, alpha, correction)
    judges = _compare_judges(base, head, alpha, correction)
    overall = _rate_changes([(_pooled(scenarios, "base"), _pooled(scenarios, "head"))], alpha, "none")[0]
    shared = {s.scenario_id for s in scenarios if s.rates is not None}
    return Comparison(
        base_run_id=base.run_id, head_run_id=head.run_id, base_agent=base.agent, head_agent=head.agent,
        alpha=alpha, correction=correction, overall=overall, scenarios=scenarios, judges=judges,
        metrics=_metric_deltas([s for s in base.scenarios if s.scenario_id in shared],
                               [s for s in head.scenarios if s.scenario_id in shared]),
        warnings=_warnings(base, head, scenarios, judges))


def stored_summary(store: Store, run_id: str) -> RunSummary:
    """A stored run's summary, with the scenarios saved for it (so missing trials count)."""
    run_id = store.resolve_run_id(run_id)
    return summarize_run(store, run_id, store.load_scenarios(run_id))


def compare_runs(store: Store, base_run_id: str, head_run_id: str, *, alpha: float = 0.05,
                 correction: Correction = "holm", attribute_tools: bool = True, rejudge: int | None = None,
                 registry: JudgeRegistry | None = None) -> Comparison:
    """Compare two stored runs (ids, prefixes, ``latest``, ``branch:NAME``, ``tag:NAME`` as the store
    resolves them). ``attribute_tools``: say for each scenario which changed tools it used
    (``costar.attribution``); ``rejudge``: re-judge the regressed scenarios' traces that many times
    each to split each regression into the agent's part and the judge's (``costar.rejudge``)."""
    _check_options(alpha, correction)
    base, head = store.resolve_run_id(base_run_id), store.resolve_run_id(head_run_id)
    comparison = compare_summaries(stored_summary(store, base), stored_summary(store, head),
                                   alpha=alpha, correction=correction)
    if attribute_tools:
        comparison.attribution = attribute(store, base, head, [s.scenario_id for s in comparison.scenarios])
    if rejudge is not None:
        from costar.rejudge import rejudge as run_rejudge

        regressed = [s.scenario_id for s in comparison.scenarios if s.change == "regressed"]
        comparison.rejudge = run_rejudge(store, base, head, regressed, k=rejudge, registry=registry)
    return comparison
