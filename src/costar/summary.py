"""A run's verdicts folded into rates: per trial, per scenario, per judge and for the whole run.

The rules that decide a trial (every report uses them, so they live here only):

* only *gating* verdicts that reached a decision or failed to (outcome pass, fail or error) decide
  a trial; metrics (``passed`` None) and diagnostics (``gating`` False) never do;
* ``fail`` when any deciding verdict failed;
* ``error`` when none failed but a deciding verdict is a judge error: the judge could not say, so
  the trial is neither a pass nor a fail and is left out of pass rates;
* ``pass`` when every deciding verdict passed;
* ``unscored`` when there is no deciding verdict at all (the trace was never judged): it is not a
  pass, and it is left out of pass rates.

Rates (pass rate, pass@k, pass^k) are computed over *decided* trials (pass + fail). A scenario
passes only when every trial it was meant to run was recorded and passed.

A :class:`RunSummary` is self-contained (it round-trips through JSON), so the JUnit writer and a
later comparison of two runs need nothing but summaries. The summary sits below the reports and
the comparisons (which render and compare summaries) and beside nothing that renders.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from costar.safe_text import for_terminal
from costar.stats import mean_pass_at_k, mean_pass_hat_k, pass_at_k, pass_hat_k, wilson_interval
from costar.trace.model import AgentInfo, Trace, TraceStatus
from costar.verdict import Outcome, Verdict

if TYPE_CHECKING:
    # Only read, never constructed here: keeps the scenario and store machinery out of summary imports.
    from costar.scenario import Scenario
    from costar.store.base import Run, Store

TrialStatus = Literal["pass", "fail", "error", "unscored"]
"""How a trial came out (the rules are in this module's docstring)."""
ScenarioStatus = Literal["pass", "fail", "error", "incomplete"]
"""How a scenario came out: ``pass`` only when every trial meant to run was recorded and passed."""

NO_SCENARIO = "(no scenario)"
# Summaries are meant to be printed, written to JUnit and compared; a judge's essay is not needed
# in full there (the HTML report shows the verdicts themselves).
MAX_SUMMARY_TEXT = 4000


def clip(text: str, limit: int) -> str:
    """Shorten ``text`` to about ``limit`` characters, saying how much was cut."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… [{len(text) - limit:,} more characters]"


class ReportModel(BaseModel):
    """A report whose computed fields (``exit_code``...) are written to JSON for scripts to read and
    are dropped when the JSON is read back, so a dumped report validates again."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _drop_computed(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if k not in cls.model_computed_fields}
        return data


class Rate(BaseModel):
    """``successes`` out of ``n`` with a Wilson interval; ``value`` is None when n is 0."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    successes: int
    """How many passed."""
    n: int
    """Out of how many (decided trials: passes and fails)."""
    value: float | None
    """successes / n; None when n is 0."""
    low: float
    """Lower end of the Wilson interval."""
    high: float
    """Upper end of the Wilson interval."""
    confidence: float = 0.95
    """The interval's confidence level."""

    @classmethod
    def of(cls, successes: int, n: int, confidence: float = 0.95) -> Rate:
        """The rate of ``successes`` in ``n`` with its Wilson interval at ``confidence``."""
        low, high = wilson_interval(successes, n, confidence)
        return cls(successes=successes, n=n, value=successes / n if n else None, low=low, high=high,
                   confidence=confidence)


class CurvePoint(BaseModel):
    """A suite-level estimate at one k, averaged over the ``scenarios`` that ran at least k trials."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    k: int
    """The number of trials."""
    value: float
    """The mean estimate (pass@k or pass^k) over the scenarios that ran at least k trials."""
    scenarios: int
    """How many scenarios that is."""


class VerdictBrief(BaseModel):
    """The part of a verdict a summary needs (rationale clipped to ``MAX_SUMMARY_TEXT``)."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    name: str
    """The verdict's name."""
    outcome: Outcome
    """pass, fail, error or metric."""
    gating: bool
    """Whether it decides its trial."""
    rationale: str = ""
    """The judge's rationale, clipped (untrusted text)."""
    error: str | None = None
    """Why the judge could not decide, clipped; None when it did."""
    confidence: float | None = None
    """The judge's confidence, when it gave one."""
    fingerprint: str | None = None
    """The judge configuration's fingerprint."""

    @classmethod
    def of(cls, v: Verdict) -> VerdictBrief:
        """The brief of a verdict."""
        return cls(name=v.name, outcome=v.outcome, gating=v.gating,
                   rationale=clip(v.rationale, MAX_SUMMARY_TEXT),
                   error=None if v.error is None else clip(v.error, MAX_SUMMARY_TEXT),
                   confidence=v.confidence, fingerprint=v.fingerprint)


class Usage(BaseModel):
    """Tokens, money and wall time over a set of traces."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    traces: int = 0
    """How many traces."""
    total_tokens: int = 0
    """Tokens over them (input and output)."""
    cost_usd: float = 0.0
    """The agent's model cost over them, in US dollars."""
    latency_s: float = 0.0
    """Their wall time added up, in seconds."""

    @property
    def mean_tokens(self) -> float | None:
        """Tokens per trace; None without traces."""
        return self.total_tokens / self.traces if self.traces else None

    @property
    def mean_cost_usd(self) -> float | None:
        """Cost per trace; None without traces."""
        return self.cost_usd / self.traces if self.traces else None

    @property
    def mean_latency_s(self) -> float | None:
        """Seconds per trace; None without traces."""
        return self.latency_s / self.traces if self.traces else None

    def add(self, other: Usage) -> None:
        """Add ``other``'s counts to these."""
        self.traces += other.traces
        self.total_tokens += other.total_tokens
        self.cost_usd += other.cost_usd
        self.latency_s += other.latency_s


class TrialSummary(BaseModel):
    """One trial: how it came out and which verdicts made it so."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    scenario_id: str
    """The scenario (``(no scenario)`` for a trace without one)."""
    trial: int
    """Which trial, from 0."""
    trace_id: str
    """The trial's trace."""
    status: TrialStatus
    """pass, fail, error (a deciding judge could not decide) or unscored (no deciding verdict)."""
    agent_status: TraceStatus
    """How the agent's run ended: ok, error or timeout."""
    agent_error: str | None = None
    """Why the agent failed, clipped."""
    failures: list[VerdictBrief] = Field(default_factory=list)
    """Gating verdicts that failed."""
    judge_errors: list[VerdictBrief] = Field(default_factory=list)
    """Verdicts of judges that could not decide (gating or not)."""
    diagnostics: list[VerdictBrief] = Field(default_factory=list)
    """Non-gating verdicts that failed: reported, never failing the trial."""
    verdicts: int = 0
    """How many verdicts the trial has."""
    usage: Usage = Field(default_factory=Usage)
    """The trial's tokens, cost and wall time."""

    @property
    def label(self) -> str:
        """``scenario[trial]``, as reports name a trial."""
        return f"{self.scenario_id}[{self.trial}]"


class ScenarioSummary(BaseModel):
    """One scenario over its trials."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    scenario_id: str
    """The scenario."""
    description: str = ""
    """The scenario's description."""
    tags: list[str] = Field(default_factory=list)
    """The scenario's tags."""
    split: str | None = None
    """train or holdout; None when the scenario's definition was not at hand."""
    status: ScenarioStatus
    """pass (every trial meant to run was recorded and passed), fail, error or incomplete."""
    expected_trials: int | None = None
    """How many trials were meant to run; None when unknown."""
    missing_trials: list[int] = Field(default_factory=list)
    """Trials meant to run that have no trace (an interrupted run)."""
    trials: int
    """Trials recorded."""
    passed: int
    """Trials that passed."""
    failed: int
    """Trials that failed."""
    errored: int
    """Trials a deciding judge could not decide."""
    unscored: int
    """Trials without any deciding verdict."""
    rate: Rate
    """Pass rate over decided trials (passed + failed)."""
    pass_at_k: list[float] = Field(default_factory=list)
    """pass@k for k = 1..decided trials (index k-1): the chance at least one of k trials passes."""
    pass_hat_k: list[float] = Field(default_factory=list)
    """pass^k for k = 1..decided trials (index k-1): the chance all of k trials pass."""
    usage: Usage = Field(default_factory=Usage)
    """Tokens, cost and wall time over the scenario's trials."""
    trial_results: list[TrialSummary] = Field(default_factory=list)
    """Each trial, in trial order."""

    @property
    def decided(self) -> int:
        """Trials that passed or failed (errors and unscored ones are left out of rates)."""
        return self.passed + self.failed

    @property
    def pass_at_n(self) -> float | None:
        """pass@k at k = every decided trial; None when nothing was decided."""
        return self.pass_at_k[-1] if self.pass_at_k else None

    @property
    def pass_hat_n(self) -> float | None:
        """pass^k at k = every decided trial; None when nothing was decided."""
        return self.pass_hat_k[-1] if self.pass_hat_k else None


class JudgeSummary(BaseModel):
    """One verdict name across the run; ``gating`` is True if any of its verdicts took part in
    deciding a trial (a gating pass, fail or judge error)."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    name: str
    """The verdict name."""
    gating: bool
    """Whether any of its verdicts took part in deciding a trial."""
    passed: int = 0
    """Verdicts that passed."""
    failed: int = 0
    """Verdicts that failed."""
    errors: int = 0
    """Verdicts where the judge could not decide."""
    metrics: int = 0
    """Verdicts that only measure (no pass or fail)."""
    rate: Rate
    """Pass rate over its passes and fails."""
    mean_value: float | None = None
    """The mean of its numeric values (scores, metrics); None when it gave none."""
    fingerprints: list[str] = Field(default_factory=list)
    """The judge configurations that produced these verdicts (more than one: the judge changed mid-run)."""
    sources: list[str] = Field(default_factory=list)
    """What kinds of judge produced them (code, llm, agent, human)."""
    cost_usd: float = 0.0
    """What the judge's model calls cost over the run, in US dollars."""
    seconds: float = 0.0
    """Time the judge spent over the run."""
    pass_at_k: list[CurvePoint] = Field(default_factory=list)
    """pass@k over the scenarios this judge decided, averaged per k like the run's curves."""
    pass_hat_k: list[CurvePoint] = Field(default_factory=list)
    """pass^k over the scenarios this judge decided, averaged per k."""

    @property
    def role(self) -> Literal["gate", "diagnostic", "metric"]:
        """``gate`` when it decides trials, ``metric`` when it only measures, else ``diagnostic``."""
        if self.gating:
            return "gate"
        return "metric" if self.metrics and not (self.passed or self.failed or self.errors) else "diagnostic"


class RunTotals(BaseModel):
    """Counts over the whole run."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    scenarios: int = 0
    """Scenarios in the run."""
    scenarios_passed: int = 0
    """Scenarios that passed."""
    trials: int = 0
    """Trials recorded."""
    passed: int = 0
    """Trials that passed."""
    failed: int = 0
    """Trials that failed."""
    errored: int = 0
    """Trials a deciding judge could not decide."""
    unscored: int = 0
    """Trials without any deciding verdict."""
    missing: int = 0
    """Trials meant to run that have no trace."""
    judge_errors: int = 0
    """Verdicts where a judge could not decide."""
    diagnostics_failed: int = 0
    """Non-gating verdicts that failed."""
    agent_errors: int = 0
    """Trials where the agent failed or timed out."""
    usage: Usage = Field(default_factory=Usage)
    """The agent's tokens, cost and wall time over every trial."""
    judge_cost_usd: float = 0.0
    """What the judges' model calls cost, in US dollars."""


class RunSummary(BaseModel):
    """A run's verdicts folded into rates: per trial, per scenario, per judge and for the run.

    Self-contained (it round-trips through JSON): the reports, the JUnit writer and comparisons of
    runs need nothing else. ``all_gates_passed`` is what ``costar run`` exits on.
    """

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    run_id: str | None = None
    """The run; None for a summary of loose traces."""
    description: str = ""
    """The run's description."""
    created_at: float | None = None
    """When the run started (Unix seconds)."""
    finished_at: float | None = None
    """When it finished; None while running or when interrupted."""
    run_status: str | None = None
    """The run's status: running, finished, interrupted, failed or imported."""
    run_error: str | None = None
    """Why a failed run stopped; None unless it failed."""
    agent: AgentInfo = Field(default_factory=AgentInfo)
    """The agent that ran."""
    scenarios: list[ScenarioSummary] = Field(default_factory=list)
    """Each scenario, in suite order (scenarios not in the suite after them, by natural id order)."""
    judges: list[JudgeSummary] = Field(default_factory=list)
    """Each verdict name, by name."""
    totals: RunTotals = Field(default_factory=RunTotals)
    """Counts over the run."""
    trial_rate: Rate
    """Pass rate over every decided trial."""
    pass_at_k: list[CurvePoint] = Field(default_factory=list)
    """pass@k averaged over scenarios, per k."""
    pass_hat_k: list[CurvePoint] = Field(default_factory=list)
    """pass^k averaged over scenarios, per k."""
    all_gates_passed: bool
    """True when there is at least one scenario and every scenario passed."""

    def scenario(self, scenario_id: str) -> ScenarioSummary | None:
        """The summary of one scenario, or None."""
        return next((s for s in self.scenarios if s.scenario_id == scenario_id), None)

    def trials(self) -> list[TrialSummary]:
        """Every trial of every scenario."""
        return [t for s in self.scenarios for t in s.trial_results]


# --------------------------------------------------------------------------- folding


def summarize_run(store: Store, run_id: str,
                  scenarios: Sequence[Scenario] | Mapping[str, Scenario] | None = None) -> RunSummary:
    """The summary of a stored run (``run_id`` as the store resolves it: an id, a prefix or ``latest``);
    ``scenarios`` as for :func:`summarize`."""
    run = store.get_run(run_id)
    return summarize(run, store.iter_traces(run.run_id, spans=False), store.verdicts(run_id=run.run_id),
                     scenarios=scenarios)


def natural_key(text: str) -> list[tuple[int, int | str]]:
    """Sort key that puts task-2 before task-10."""
    return [(0, int(part)) if part.isdigit() else (1, part) for part in re.split(r"(\d+)", text) if part]


def latest_per_name(verdicts: Iterable[Verdict]) -> dict[str, list[Verdict]]:
    """Verdicts grouped by trace id, keeping the last one given per (trace, name).

    That matches the store's ``latest`` reading, so passing a full verdict history is harmless.
    """
    by_trace: dict[str, dict[str, Verdict]] = defaultdict(dict)
    for v in verdicts:
        if v.trace_id is not None:
            by_trace[v.trace_id][v.name] = v
    return {tid: list(named.values()) for tid, named in by_trace.items()}


def decides(v: Verdict) -> bool:
    """True when the verdict takes part in deciding its trial (see the module docstring)."""
    return v.gating and v.outcome != "metric"


def trial_status(verdicts: Sequence[Verdict]) -> TrialStatus:
    outcomes = {v.outcome for v in verdicts if decides(v)}
    if not outcomes:
        return "unscored"
    if "fail" in outcomes:
        return "fail"
    if "error" in outcomes:
        return "error"
    return "pass"


def _usage_of(trace: Trace) -> Usage:
    t = trace.totals
    return Usage(traces=1, total_tokens=t.total_tokens, cost_usd=t.cost_usd, latency_s=t.latency_s)


def summarize_trial(trace: Trace, verdicts: Sequence[Verdict]) -> TrialSummary:
    return TrialSummary(
        scenario_id=trace.scenario_id or NO_SCENARIO,
        trial=trace.trial,
        trace_id=trace.trace_id,
        status=trial_status(verdicts),
        agent_status=trace.status,
        agent_error=None if trace.error is None else clip(trace.error, MAX_SUMMARY_TEXT),
        failures=[VerdictBrief.of(v) for v in verdicts if decides(v) and v.outcome == "fail"],
        judge_errors=[VerdictBrief.of(v) for v in verdicts if v.outcome == "error"],
        diagnostics=[VerdictBrief.of(v) for v in verdicts if not v.gating and v.outcome == "fail"],
        verdicts=len(verdicts),
        usage=_usage_of(trace),
    )


def _scenario_status(trials: Sequence[TrialSummary], missing: int) -> ScenarioStatus:
    statuses = {t.status for t in trials}
    if "fail" in statuses:
        return "fail"
    if "error" in statuses:
        return "error"
    if "unscored" in statuses or missing or not trials:
        return "incomplete"
    return "pass"


def summarize_scenario(scenario_id: str, trials: Sequence[TrialSummary], scenario: Scenario | None = None,
                       expected_trials: int | None = None) -> ScenarioSummary:
    trials = sorted(trials, key=lambda t: t.trial)
    counts = {s: sum(1 for t in trials if t.status == s) for s in ("pass", "fail", "error", "unscored")}
    passed, failed = counts["pass"], counts["fail"]
    decided = passed + failed
    recorded = {t.trial for t in trials}
    missing = [i for i in range(expected_trials or 0) if i not in recorded]
    usage = Usage()
    for t in trials:
        usage.add(t.usage)
    return ScenarioSummary(
        scenario_id=scenario_id,
        description=scenario.description if scenario else "",
        tags=list(scenario.tags) if scenario else [],
        split=scenario.split if scenario else None,
        status=_scenario_status(trials, len(missing)),
        expected_trials=expected_trials,
        missing_trials=missing,
        trials=len(trials),
        passed=passed,
        failed=failed,
        errored=counts["error"],
        unscored=counts["unscored"],
        rate=Rate.of(passed, decided),
        pass_at_k=[pass_at_k(decided, passed, k) for k in range(1, decided + 1)],
        pass_hat_k=[pass_hat_k(decided, passed, k) for k in range(1, decided + 1)],
        usage=usage,
        trial_results=list(trials),
    )


class _JudgeTally:
    def __init__(self, name: str) -> None:
        self.name = name
        self.gating = False
        self.counts = {"pass": 0, "fail": 0, "error": 0, "metric": 0}
        self.values: list[float] = []
        self.fingerprints: set[str] = set()
        self.sources: set[str] = set()
        self.cost_usd = 0.0
        self.seconds = 0.0
        self.per_scenario: dict[str, list[int]] = defaultdict(lambda: [0, 0])  # passed, decided

    def add(self, v: Verdict, scenario_id: str = NO_SCENARIO) -> None:
        self.gating = self.gating or decides(v)
        self.counts[v.outcome] += 1
        if v.outcome in ("pass", "fail"):
            tally = self.per_scenario[scenario_id]
            tally[0] += v.outcome == "pass"
            tally[1] += 1
        # bool is an int subclass; a pass/fail value is not a measurement to average.
        if isinstance(v.value, int | float) and not isinstance(v.value, bool) and v.error is None:
            self.values.append(float(v.value))
        if v.fingerprint:
            self.fingerprints.add(v.fingerprint)
        self.sources.add(v.source.value)
        self.cost_usd += v.cost.cost_usd
        self.seconds += v.cost.seconds

    def summary(self) -> JudgeSummary:
        c = self.counts
        return JudgeSummary(
            name=self.name, gating=self.gating, passed=c["pass"], failed=c["fail"], errors=c["error"],
            metrics=c["metric"], rate=Rate.of(c["pass"], c["pass"] + c["fail"]),
            mean_value=sum(self.values) / len(self.values) if self.values else None,
            fingerprints=sorted(self.fingerprints), sources=sorted(self.sources),
            cost_usd=self.cost_usd, seconds=self.seconds,
            pass_at_k=_curve([(n, c) for c, n in self.per_scenario.values()], hat=False),
            pass_hat_k=_curve([(n, c) for c, n in self.per_scenario.values()], hat=True))


def _expected_trials(run: Run | None, scenario: Scenario | None) -> int | None:
    # A run may override every scenario's trial count (``--trials``); that is what was meant to run.
    override = run.options.get("trials") if run is not None else None
    if isinstance(override, int) and not isinstance(override, bool) and override > 0:
        return override
    return scenario.trials if scenario is not None else None


def _suite_curve(scenarios: Sequence[ScenarioSummary], hat: bool) -> list[CurvePoint]:
    return _curve([(s.decided, s.passed) for s in scenarios], hat)


def _curve(counts: Sequence[tuple[int, int]], hat: bool) -> list[CurvePoint]:
    """Mean pass@k (or pass^k) over (trials, passes) pairs, for every k some pair reaches."""
    top = max((n for n, _ in counts), default=0)
    points = []
    for k in range(1, top + 1):
        value = mean_pass_hat_k(counts, k) if hat else mean_pass_at_k(counts, k)
        if value is not None:
            points.append(CurvePoint(k=k, value=value, scenarios=sum(1 for n, _ in counts if n >= k)))
    return points


def _run_totals(scenarios: Sequence[ScenarioSummary], judges: Sequence[JudgeSummary]) -> RunTotals:
    totals = RunTotals(scenarios=len(scenarios))
    for s in scenarios:
        totals.scenarios_passed += s.status == "pass"
        totals.trials += s.trials
        totals.passed += s.passed
        totals.failed += s.failed
        totals.errored += s.errored
        totals.unscored += s.unscored
        totals.missing += len(s.missing_trials)
        totals.usage.add(s.usage)
        for t in s.trial_results:
            totals.judge_errors += len(t.judge_errors)
            totals.diagnostics_failed += len(t.diagnostics)
            totals.agent_errors += t.agent_status != TraceStatus.OK
    totals.judge_cost_usd = sum(j.cost_usd for j in judges)
    return totals


def summarize(run: Run | None, traces: Iterable[Trace], verdicts: Iterable[Verdict],
              scenarios: Sequence[Scenario] | Mapping[str, Scenario] | None = None) -> RunSummary:
    """Fold a run's traces and verdicts into a :class:`RunSummary`.

    ``traces`` may be a stream (e.g. ``store.iter_traces(run_id, spans=False)``): only each trace's
    head is kept. Verdicts are matched to traces by ``trace_id``; the last verdict per (trace,
    name) wins. With ``scenarios`` (a list, or a mapping of id to scenario), they set the order,
    the trial counts that were meant to run (missing trials make a scenario ``incomplete``; the
    run's ``options["trials"]`` overrides every count) and include scenarios with no trace at all.
    """
    by_trace = latest_per_name(verdicts)
    by_scenario: dict[str, list[TrialSummary]] = defaultdict(list)
    judges: dict[str, _JudgeTally] = {}
    for trace in traces:
        trace_verdicts = by_trace.get(trace.trace_id, [])
        trial = summarize_trial(trace, trace_verdicts)
        by_scenario[trial.scenario_id].append(trial)
        for v in trace_verdicts:
            judges.setdefault(v.name, _JudgeTally(v.name)).add(v, trial.scenario_id)

    listed = scenarios.values() if isinstance(scenarios, Mapping) else scenarios or []
    known = {sc.id: sc for sc in listed}
    order = list(known) + sorted((sid for sid in by_scenario if sid not in known), key=natural_key)
    summaries = [summarize_scenario(sid, by_scenario.get(sid, []), known.get(sid),
                                    _expected_trials(run, known.get(sid)))
                 for sid in order]
    judge_summaries = [judges[name].summary() for name in sorted(judges)]
    totals = _run_totals(summaries, judge_summaries)
    return RunSummary(
        run_id=run.run_id if run else None,
        description=run.description if run else "",
        created_at=run.created_at if run else None,
        finished_at=run.finished_at if run else None,
        run_status=run.status if run else None,
        run_error=run.error if run else None,
        agent=run.agent if run else AgentInfo(),
        scenarios=summaries,
        judges=judge_summaries,
        totals=totals,
        trial_rate=Rate.of(totals.passed, totals.passed + totals.failed),
        pass_at_k=_suite_curve(summaries, hat=False),
        pass_hat_k=_suite_curve(summaries, hat=True),
        # A run that stopped early cannot pass, whatever the trials it did store say.
        all_gates_passed=bool(summaries) and all(s.status == "pass" for s in summaries)
        and (run is None or run.status not in ("failed", "interrupted")),
    )


# --------------------------------------------------------------------------- display helpers

def one_line(text: str, limit: int) -> str:
    """Untrusted text as one clipped line that cannot drive a terminal (see ``costar.safe_text``)."""
    return for_terminal(text, limit, one_line=True)


def run_state_note(summary: RunSummary) -> str | None:
    """A run that did not finish, in words (None for finished and imported runs)."""
    if summary.run_status == "failed":
        return f"run FAILED: {summary.run_error or 'no cause recorded'}"
    if summary.run_status == "interrupted":
        return f"run interrupted: finish it with 'costar run --resume {summary.run_id}'"
    return None


def fmt_pct(value: float | None, decimals: int = 0) -> str:
    return "—" if value is None else f"{value * 100:.{decimals}f}%"


def fmt_rate(rate: Rate) -> str:
    if rate.value is None:
        return "—"
    return f"{fmt_pct(rate.value)} [{rate.low * 100:.0f}–{rate.high * 100:.0f}%]"


def fmt_tokens(tokens: float | None) -> str:
    if tokens is None:
        return "—"
    if tokens >= 1_000_000:
        return f"{tokens / 1_000_000:.1f}M"
    if tokens >= 1_000:
        return f"{tokens / 1_000:.1f}k"
    return f"{tokens:.0f}"


def fmt_cost(usd: float | None) -> str:
    if usd is None:
        return "—"
    return f"${usd:.4f}" if usd < 1 else f"${usd:,.2f}"


def fmt_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 120:
        return f"{seconds:.1f}s"
    return f"{seconds / 60:.1f}min"


def fmt_curves(j: JudgeSummary, decimals: int = 0) -> str:
    """pass@k and pass^k at the largest k every judged scenario reached (k=1 is the pass rate)."""
    if not j.pass_hat_k:
        return "—"
    full = [p for p in j.pass_hat_k if p.scenarios == j.pass_hat_k[0].scenarios]
    k = full[-1].k if full else 1
    at = next(p.value for p in j.pass_at_k if p.k == k)
    hat = next(p.value for p in j.pass_hat_k if p.k == k)
    return f"{fmt_pct(at, decimals)} / {fmt_pct(hat, decimals)} (k={k})"


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def headline(summary: RunSummary) -> str:
    """The one-line verdict on a run, e.g. ``3/5 scenarios passed · 12/20 trials · 1 judge error``."""
    t = summary.totals
    parts = [f"{t.scenarios_passed}/{t.scenarios} scenarios passed", f"{t.passed}/{t.trials} trials passed"]
    if t.judge_errors:
        parts.append(plural(t.judge_errors, "judge error"))
    if t.agent_errors:
        parts.append(plural(t.agent_errors, "agent error"))
    if t.unscored:
        parts.append(f"{t.unscored} unscored")
    if t.missing:
        parts.append(f"{t.missing} missing")
    if t.diagnostics_failed:
        parts.append(plural(t.diagnostics_failed, "diagnostic warning"))
    return " · ".join(parts)
