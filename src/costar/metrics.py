"""Operational metrics: what a trial cost (tokens, money, time, calls, errors, retries), per trace,
per scenario and across the history of runs, with alerts when a run leaves its usual range.

Metrics inform; they never gate unless a limit is set (a scenario's
``metadata: {metric_thresholds: {total_tokens: 5000}}`` or an argument). A limit turns a metric
into a pass/fail verdict that gates the trial like any other judge.

Anomalies are judged with robust statistics, because a history of agent runs has outliers (a
provider outage, a runaway loop) that would drag a mean and a standard deviation along with them.
For each scenario and metric the *current* value is the run's median over trials and the *history*
is that median in each of the last N runs of the same agent (and suite). An alert needs both:

* a robust z-score ``0.6745 * (current - median) / MAD`` beyond ``threshold`` (3.5, after
  Iglewicz and Hoaglin); when the history has no spread at all (MAD 0) any move is outside it, and
* a relative change of at least ``min_change`` (25%), so a very stable history does not raise an
  alarm over a change nobody would act on; this ratio also words the message ("doubled").

Fewer than ``min_history`` (3) earlier runs give no alert, only "insufficient history".
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from statistics import NormalDist
from typing import TYPE_CHECKING, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, computed_field

from costar._util.units import format_usd
from costar.errors import ConfigError
from costar.judges.base import fingerprint_of
from costar.store.base import Run, SpanQuery, Store
from costar.summary import NO_SCENARIO, ReportModel
from costar.trace.model import AgentInfo, Span, SpanKind, Trace
from costar.verdict import Verdict, VerdictSource

if TYPE_CHECKING:
    from costar.scenario import Scenario

MetricName = Literal["total_tokens", "input_tokens", "output_tokens", "cost_usd", "latency_s", "llm_calls",
                     "tool_calls", "error_spans", "retries"]
METRICS: tuple[MetricName, ...] = get_args(MetricName)
# Written as verdicts by default: the ones a reader of a run report looks for. Any metric with a
# limit is written too.
VERDICT_METRICS: tuple[MetricName, ...] = ("total_tokens", "cost_usd", "latency_s", "llm_calls", "tool_calls")
# Checked for anomalies by default; input and output tokens are left out because they would only
# repeat what total tokens already say.
ALERT_METRICS: tuple[MetricName, ...] = ("total_tokens", "cost_usd", "latency_s", "llm_calls", "tool_calls",
                                         "error_spans", "retries")
LABELS: dict[MetricName, str] = {
    "total_tokens": "token usage", "input_tokens": "input tokens", "output_tokens": "output tokens",
    "cost_usd": "cost", "latency_s": "latency", "llm_calls": "model calls", "tool_calls": "tool calls",
    "error_spans": "error spans", "retries": "retries",
}
VERDICT_PREFIX = "metric."
SOURCE_ID = "costar.metrics"
THRESHOLDS_KEY = "metric_thresholds"

DEFAULT_HISTORY = 10
DEFAULT_THRESHOLD = 3.5
DEFAULT_MIN_CHANGE = 0.25
MIN_HISTORY = 3
# Scales the MAD to a standard deviation for normal data, so the threshold reads like a z-score.
MAD_TO_SIGMA = NormalDist().inv_cdf(0.75)
# Runs are small records; reading this many is cheap and covers any realistic history window.
RUN_SCAN_LIMIT = 100_000
SPAN_PAGE = 500


# --------------------------------------------------------------------------- per trace


class TraceMetrics(BaseModel):
    model_config = ConfigDict(extra="forbid")

    trace_id: str
    scenario_id: str
    trial: int
    total_tokens: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    latency_s: float = 0.0
    llm_calls: int = 0
    tool_calls: int = 0
    error_spans: int = 0
    retries: int = 0

    def value(self, metric: MetricName) -> float:
        return float(getattr(self, metric))


def _as_int(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def llm_span_retries(spans: Iterable[Span]) -> int:
    """Retries recorded on LLM spans (``costar.retries``)."""
    return sum(_as_int(s.attributes.get("costar.retries")) for s in spans if s.kind == SpanKind.LLM)


def trace_metrics(trace: Trace, *, retries: int | None = None) -> TraceMetrics:
    """The trace's totals as metrics; retries come from its LLM spans when the totals lack them.

    ``retries`` overrides that count (used when the spans were counted in the store instead).
    """
    t = trace.totals
    if retries is None:
        retries = t.retries or llm_span_retries(trace.spans)
    return TraceMetrics(
        trace_id=trace.trace_id, scenario_id=trace.scenario_id or NO_SCENARIO, trial=trace.trial,
        total_tokens=t.total_tokens or t.input_tokens + t.output_tokens, input_tokens=t.input_tokens,
        output_tokens=t.output_tokens, cost_usd=t.cost_usd, latency_s=t.latency_s, llm_calls=t.llm_calls,
        tool_calls=t.tool_calls, error_spans=t.error_spans, retries=retries)


def _stored_span_retries(store: Store, trace_id: str) -> int:
    # Paged, so a trace with thousands of model calls is never loaded whole.
    total = 0
    offset = 0
    while True:
        page = store.query_spans(trace_id, SpanQuery(kind=SpanKind.LLM, offset=offset, limit=SPAN_PAGE))
        total += llm_span_retries(page)
        if len(page) < SPAN_PAGE:
            return total
        offset += SPAN_PAGE


def _metrics_of(store: Store, traces: Iterable[Trace], from_spans: bool) -> list[TraceMetrics]:
    out = []
    for trace in traces:
        retries = None
        if from_spans and not trace.totals.retries and trace.totals.llm_calls:
            retries = _stored_span_retries(store, trace.trace_id)
        out.append(trace_metrics(trace, retries=retries))
    return out


def run_metrics(store: Store, run_id: str, *, span_retries: bool = False) -> dict[str, list[TraceMetrics]]:
    """Every trace's metrics in a run, grouped by scenario (ordered by trial).

    Only trace heads are read. With ``span_retries`` the LLM spans of traces whose totals record
    no retries are paged through for ``costar.retries`` (traces captured by coSTAR already carry
    them in their totals; this is for traces whose totals came from elsewhere).
    """
    grouped: dict[str, list[TraceMetrics]] = defaultdict(list)
    for m in _metrics_of(store, store.iter_traces(run_id, spans=False), span_retries):
        grouped[m.scenario_id].append(m)
    return dict(grouped)


# --------------------------------------------------------------------------- robust statistics


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) with linear interpolation between order statistics (numpy's default)."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 1:
        raise ValueError(f"q must be between 0 and 1, got {q}")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    lo = math.floor(pos)
    hi = math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def median_abs_deviation(values: Sequence[float]) -> float:
    """The raw (unscaled) median absolute deviation from the median."""
    if not values:
        raise ValueError("MAD of no values")
    center = statistics.median(values)
    return statistics.median(abs(v - center) for v in values)


def robust_z(value: float, history: Sequence[float]) -> float | None:
    """``0.6745 * (value - median) / MAD`` of ``history``; None when the MAD is 0 (no spread)."""
    mad = median_abs_deviation(history)
    if mad == 0:
        return None
    return MAD_TO_SIGMA * (value - statistics.median(history)) / mad


class MetricStats(BaseModel):
    model_config = ConfigDict(extra="forbid")

    n: int
    median: float
    mean: float
    p90: float
    min: float
    max: float

    @classmethod
    def of(cls, values: Sequence[float]) -> MetricStats:
        if not values:
            raise ValueError("statistics of no values")
        return cls(n=len(values), median=statistics.median(values), mean=statistics.fmean(values),
                   p90=percentile(values, 0.9), min=min(values), max=max(values))


def aggregate(metrics: Sequence[TraceMetrics],
              names: Sequence[MetricName] = METRICS) -> dict[MetricName, MetricStats]:
    """Median, mean and p90 of each metric over a scenario's trials (empty when there are none)."""
    if not metrics:
        return {}
    return {name: MetricStats.of([m.value(name) for m in metrics]) for name in names}


# --------------------------------------------------------------------------- wording


def format_metric(metric: MetricName, value: float) -> str:
    if metric == "cost_usd":
        return format_usd(value)
    if metric == "latency_s":
        return f"{value * 1000:,.0f}ms" if value < 1 else f"{value:,.1f}s"
    if metric.endswith("tokens"):
        return f"{value:,.0f}"
    return f"{round(value, 1):,g}"


def describe_change(before: float, after: float) -> str:
    """``doubled``, ``rose 35%``, ``halved``, ``fell 80%``... for a move from ``before`` to ``after``."""
    if before == 0:
        return "unchanged at zero" if after == 0 else "rose from zero"
    ratio = after / before
    if ratio >= 1:
        if 1.9 <= ratio < 2.2:
            return "doubled"
        if 2.8 <= ratio < 3.3:
            return "tripled"
        if ratio >= 1.5:
            return f"rose {ratio:.1f}×"
        return f"rose {round((ratio - 1) * 100)}%"
    if ratio == 0:
        return "fell to zero"
    if 0.45 <= ratio <= 0.55:
        return "halved"
    return f"fell {round((1 - ratio) * 100)}%"


def _runs_phrase(n: int) -> str:
    return "the last run" if n == 1 else f"the last {n} runs"


# --------------------------------------------------------------------------- anomaly detection

CheckStatus = Literal["ok", "alert", "insufficient_history"]


class MetricCheck(BaseModel):
    """One metric of one scenario: the current run's median against its history."""

    model_config = ConfigDict(extra="forbid")

    metric: MetricName
    current: float
    history: list[float] = Field(default_factory=list)
    history_runs: list[str] = Field(default_factory=list)
    history_median: float | None = None
    mad: float | None = None
    robust_z: float | None = None
    # current / history median; None when the median is 0.
    ratio: float | None = None
    status: CheckStatus
    direction: Literal["up", "down"] | None = None
    message: str


def _check_detection(threshold: float, min_change: float) -> None:
    if threshold <= 0 or min_change < 0:
        raise ValueError(f"need threshold > 0 and min_change >= 0, got {threshold} and {min_change}")


def detect_anomaly(metric: MetricName, current: float, history: Sequence[float], *,
                   history_runs: Sequence[str] = (), threshold: float = DEFAULT_THRESHOLD,
                   min_change: float = DEFAULT_MIN_CHANGE, min_history: int = MIN_HISTORY) -> MetricCheck:
    """Decide whether ``current`` is an anomaly against ``history`` (see the module docstring)."""
    _check_detection(threshold, min_change)
    label = LABELS[metric]
    if len(history) < max(1, min_history):
        return MetricCheck(metric=metric, current=current, history=list(history), history_runs=list(history_runs),
                           status="insufficient_history",
                           message=f"{label}: insufficient history ({len(history)} earlier "
                                   f"{'run' if len(history) == 1 else 'runs'}, {min_history} needed)")
    center = statistics.median(history)
    mad = median_abs_deviation(history)
    z = robust_z(current, history)
    change = current - center
    relative = abs(change) / abs(center) if center else (math.inf if change else 0.0)
    # With no spread in the history any move leaves its range; the relative change decides alone.
    outside = change != 0 if z is None else abs(z) > threshold
    alert = outside and relative >= min_change
    direction: Literal["up", "down"] | None = None if change == 0 else ("up" if change > 0 else "down")
    span = _runs_phrase(len(history))
    values = f"median {format_metric(metric, center)} → {format_metric(metric, current)}"
    if alert:
        message = f"{label} {describe_change(center, current)} against {span} ({values})"
    else:
        message = f"{label} within its usual range over {span} ({values})"
    return MetricCheck(metric=metric, current=current, history=list(history), history_runs=list(history_runs),
                       history_median=center, mad=mad, robust_z=z,
                       ratio=current / center if center else None, status="alert" if alert else "ok",
                       direction=direction, message=message)


# --------------------------------------------------------------------------- history


def _same_series(run: Run, other: Run) -> bool:
    """Runs of the same agent; when both record their suite, of the same suite too."""
    if run.agent.name != other.agent.name:
        return False
    return not (run.suite and other.suite) or sorted(run.suite) == sorted(other.suite)


def series_runs(store: Store, *, before: str | None = None, agent: str | None = None,
                 runs: int = DEFAULT_HISTORY) -> list[Run]:
    """The last ``runs`` runs (newest first) older than ``before`` and of its series.

    With ``before`` the series is that run's agent name and suite; ``agent`` names the agent
    instead (or without ``before``); with neither, every run counts.
    """
    if runs < 1:
        raise ValueError(f"runs must be at least 1, got {runs}")
    listed = store.list_runs(limit=RUN_SCAN_LIMIT)  # newest first
    reference: Run | None = None
    if before is not None:
        reference = store.get_run(before)
        ids = [r.run_id for r in listed]
        listed = listed[ids.index(reference.run_id) + 1:] if reference.run_id in ids else []
        if agent is not None:
            reference = reference.model_copy(update={"agent": AgentInfo(name=agent)})
    elif agent is not None:
        reference = Run(agent=AgentInfo(name=agent))
    chosen = [r for r in listed if reference is None or _same_series(reference, r)]
    return chosen[:runs]


class HistoryPoint(BaseModel):
    model_config = ConfigDict(extra="forbid")

    run_id: str
    created_at: float
    value: float
    trials: int


def metric_history(store: Store, scenario_id: str, metric: MetricName, runs: int = DEFAULT_HISTORY, *,
                   before: str | None = None, agent: str | None = None) -> list[HistoryPoint]:
    """The scenario's median ``metric`` in each of the last ``runs`` runs of a series, oldest first.

    The series is chosen as in :func:`series_runs`; runs in which the scenario did not run give no
    point, so a history may hold fewer than ``runs`` points.
    """
    if metric not in METRICS:
        raise ConfigError(f"unknown metric {metric!r}; use one of {', '.join(METRICS)}")
    points = []
    for run in series_runs(store, before=before, agent=agent, runs=runs):
        ids = [tid for tid, sid, _ in store.trace_keys(run.run_id) if (sid or NO_SCENARIO) == scenario_id]
        if not ids:
            continue
        values = [trace_metrics(t).value(metric) for t in store.get_traces(ids, spans=False)]
        points.append(HistoryPoint(run_id=run.run_id, created_at=run.created_at,
                                   value=statistics.median(values), trials=len(values)))
    return points[::-1]


# --------------------------------------------------------------------------- thresholds


def parse_thresholds(raw: Any, where: str) -> dict[MetricName, float]:
    """``{metric: upper limit}`` from configuration, validated; ``where`` names it in errors."""
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: metric thresholds must be a mapping of metric to limit, "
                          f"e.g. {{total_tokens: 5000}}")
    out: dict[MetricName, float] = {}
    for name, limit in raw.items():
        if name not in METRICS:
            raise ConfigError(f"{where}: unknown metric {name!r}; use one of {', '.join(METRICS)}")
        if isinstance(limit, bool) or not isinstance(limit, int | float) or not math.isfinite(limit) or limit < 0:
            raise ConfigError(f"{where}: the limit for {name} must be a non-negative number, got {limit!r}")
        out[name] = float(limit)
    return out


def resolve_thresholds(scenario_id: str, *, scenario: Scenario | None = None,
                       thresholds: Mapping[str, float] | None = None,
                       scenario_thresholds: Mapping[str, Mapping[str, float]] | None = None
                       ) -> dict[MetricName, float]:
    """Limits for one scenario: run-wide ``thresholds``, then the scenario's
    ``metadata.metric_thresholds``, then ``scenario_thresholds[scenario_id]`` (most specific wins)."""
    limits = parse_thresholds(thresholds, "metric thresholds")
    if scenario is not None:
        limits.update(parse_thresholds(scenario.metadata.get(THRESHOLDS_KEY),
                                       f"scenario {scenario_id!r} metadata.{THRESHOLDS_KEY}"))
    if scenario_thresholds and scenario_id in scenario_thresholds:
        limits.update(parse_thresholds(scenario_thresholds[scenario_id],
                                       f"metric thresholds for scenario {scenario_id!r}"))
    return limits


class ThresholdBreach(BaseModel):
    model_config = ConfigDict(extra="forbid")

    scenario_id: str
    trial: int
    trace_id: str
    metric: MetricName
    value: float
    limit: float

    @property
    def message(self) -> str:
        return (f"{LABELS[self.metric]} {format_metric(self.metric, self.value)} is over the limit "
                f"{format_metric(self.metric, self.limit)}")


def _breaches(metrics: Iterable[TraceMetrics], limits: Mapping[MetricName, float]) -> list[ThresholdBreach]:
    return [ThresholdBreach(scenario_id=m.scenario_id, trial=m.trial, trace_id=m.trace_id, metric=name,
                            value=m.value(name), limit=limit)
            for m in metrics for name, limit in limits.items() if m.value(name) > limit]


def _scenario_map(scenarios: Sequence[Scenario] | Mapping[str, Scenario] | None) -> dict[str, Scenario]:
    if scenarios is None:
        return {}
    if isinstance(scenarios, Mapping):
        return dict(scenarios)
    return {sc.id: sc for sc in scenarios}


# --------------------------------------------------------------------------- verdicts


def metric_fingerprint(metric: MetricName, limit: float | None) -> str:
    # A new limit is a new judge: verdicts under the old one must not be reused as if current.
    return fingerprint_of({"judge": SOURCE_ID, "version": 1, "metric": metric, "limit": limit})


def _metric_verdict(m: TraceMetrics, metric: MetricName, limit: float | None) -> Verdict:
    raw = getattr(m, metric)
    common = {"name": VERDICT_PREFIX + metric, "value": raw, "source": VerdictSource.CODE,
              "source_id": SOURCE_ID, "fingerprint": metric_fingerprint(metric, limit), "trace_id": m.trace_id}
    shown = format_metric(metric, raw)
    if limit is None:
        return Verdict(**common, passed=None, gating=False, rationale=f"{LABELS[metric]} {shown}")
    passed = raw <= limit
    relation = "within" if passed else "over"
    return Verdict(**common, passed=passed, gating=True, metadata={"limit": limit},
                   rationale=f"{LABELS[metric]} {shown} is {relation} the limit {format_metric(metric, limit)}")


def metrics_verdicts(traces: Iterable[Trace | TraceMetrics], *,
                     scenarios: Sequence[Scenario] | Mapping[str, Scenario] | None = None,
                     thresholds: Mapping[str, float] | None = None,
                     scenario_thresholds: Mapping[str, Mapping[str, float]] | None = None,
                     metrics: Sequence[MetricName] = VERDICT_METRICS) -> list[Verdict]:
    """One verdict per trace and metric, named ``metric.<name>``.

    Without a limit a verdict is a metric (``passed`` None, not gating); with one (see
    :func:`resolve_thresholds`) it passes when the value is at most the limit and gates the trial.
    Metrics with a limit are included even when not in ``metrics``.
    """
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise ConfigError(f"unknown metric {unknown[0]!r}; use one of {', '.join(METRICS)}")
    known = _scenario_map(scenarios)
    limits_of: dict[str, dict[MetricName, float]] = {}
    out: list[Verdict] = []
    for item in traces:
        m = item if isinstance(item, TraceMetrics) else trace_metrics(item)
        if m.scenario_id not in limits_of:
            limits_of[m.scenario_id] = resolve_thresholds(m.scenario_id, scenario=known.get(m.scenario_id),
                                                          thresholds=thresholds,
                                                          scenario_thresholds=scenario_thresholds)
        limits = limits_of[m.scenario_id]
        names = list(dict.fromkeys([*metrics, *limits]))
        out.extend(_metric_verdict(m, name, limits.get(name)) for name in names)
    return out


# --------------------------------------------------------------------------- the report


class ScenarioMetrics(BaseModel):
    model_config = ConfigDict(extra="forbid")

    scenario_id: str
    trials: int
    current: dict[MetricName, MetricStats] = Field(default_factory=dict)
    checks: list[MetricCheck] = Field(default_factory=list)
    limits: dict[MetricName, float] = Field(default_factory=dict)
    breaches: list[ThresholdBreach] = Field(default_factory=list)

    @property
    def alerts(self) -> list[MetricCheck]:
        return [c for c in self.checks if c.status == "alert"]

    def check(self, metric: MetricName) -> MetricCheck | None:
        return next((c for c in self.checks if c.metric == metric), None)


class MetricsReport(ReportModel):
    """Operational metrics of one run against its history; ``exit_code`` is 1 only on a breached limit."""

    model_config = ConfigDict(extra="forbid")

    run_id: str
    agent: AgentInfo = Field(default_factory=AgentInfo)
    history_run_ids: list[str] = Field(default_factory=list)
    threshold: float = DEFAULT_THRESHOLD
    min_change: float = DEFAULT_MIN_CHANGE
    min_history: int = MIN_HISTORY
    scenarios: list[ScenarioMetrics] = Field(default_factory=list)

    @property
    def alerts(self) -> list[tuple[str, MetricCheck]]:
        return [(s.scenario_id, c) for s in self.scenarios for c in s.alerts]

    @property
    def breaches(self) -> list[ThresholdBreach]:
        return [b for s in self.scenarios for b in s.breaches]

    @property
    def insufficient_history(self) -> bool:
        return any(c.status == "insufficient_history" for s in self.scenarios for c in s.checks)

    @computed_field  # type: ignore[prop-decorator]  # mypy rejects decorators above @property; pydantic documents this
    @property
    def exit_code(self) -> int:
        return 1 if self.breaches else 0

    def scenario(self, scenario_id: str) -> ScenarioMetrics | None:
        return next((s for s in self.scenarios if s.scenario_id == scenario_id), None)


def _scenario_checks(current: Mapping[MetricName, MetricStats],
                     past: Sequence[tuple[str, Mapping[MetricName, MetricStats]]],
                     metrics: Sequence[MetricName], threshold: float, min_change: float,
                     min_history: int) -> list[MetricCheck]:
    checks = []
    for name in metrics:
        if name not in current:
            continue
        points = [(run_id, stats[name].median) for run_id, stats in past if name in stats]
        checks.append(detect_anomaly(name, current[name].median, [v for _, v in points],
                                     history_runs=[r for r, _ in points], threshold=threshold,
                                     min_change=min_change, min_history=min_history))
    return checks


def parse_limits(pairs: Sequence[str], *, option: str = "--max") -> dict[str, float] | None:
    """``METRIC=LIMIT`` pairs as given on the command line (``option`` names them in the error);
    None for none."""
    if not pairs:
        return None
    limits: dict[str, float] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        try:
            limits[name] = float(value)
        except ValueError:
            sep = ""
        if not sep or not name:
            raise ConfigError(f"{option} takes METRIC=LIMIT (e.g. {option} total_tokens=5000), got {pair!r}")
    return limits


def check_metrics(store: Store, run_id: str, *, history: int = DEFAULT_HISTORY,
                  threshold: float = DEFAULT_THRESHOLD, min_change: float = DEFAULT_MIN_CHANGE,
                  min_history: int = MIN_HISTORY, metrics: Sequence[MetricName] = ALERT_METRICS,
                  thresholds: Mapping[str, float] | None = None,
                  scenario_thresholds: Mapping[str, Mapping[str, float]] | None = None,
                  span_retries: bool = False) -> MetricsReport:
    """A run's metrics per scenario, against the last ``history`` runs of its series, with alerts
    and breached limits (limits come from the stored scenarios and the arguments, see
    :func:`resolve_thresholds`). Every metric is aggregated; ``metrics`` are checked for anomalies."""
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise ConfigError(f"unknown metric {unknown[0]!r}; use one of {', '.join(METRICS)}")
    _check_detection(threshold, min_change)
    run = store.get_run(run_id)
    current = run_metrics(store, run.run_id, span_retries=span_retries)
    past_runs = series_runs(store, before=run.run_id, runs=history)
    # Oldest first, so a check's history reads in time order.
    past = [(r.run_id, {sid: aggregate(ms)
                        for sid, ms in run_metrics(store, r.run_id, span_retries=span_retries).items()})
            for r in reversed(past_runs)]
    known = _scenario_map(store.load_scenarios(run.run_id))
    order = [sid for sid in known if sid in current] + sorted(sid for sid in current if sid not in known)
    scenarios = []
    for sid in order:
        stats = aggregate(current[sid])
        limits = resolve_thresholds(sid, scenario=known.get(sid), thresholds=thresholds,
                                    scenario_thresholds=scenario_thresholds)
        scenario_past = [(rid, by_sid[sid]) for rid, by_sid in past if sid in by_sid]
        scenarios.append(ScenarioMetrics(
            scenario_id=sid, trials=len(current[sid]), current=stats,
            checks=_scenario_checks(stats, scenario_past, metrics, threshold, min_change, min_history),
            limits=limits, breaches=_breaches(current[sid], limits)))
    return MetricsReport(run_id=run.run_id, agent=run.agent,
                         history_run_ids=[r.run_id for r in reversed(past_runs)], threshold=threshold,
                         min_change=min_change, min_history=min_history, scenarios=scenarios)
