"""Operational metrics: robust statistics by hand, anomaly alerts against a real store's history,
limits that gate, and the terminal rendering."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from costar.errors import ConfigError
from costar.metrics import (
    MAD_TO_SIGMA,
    METRICS,
    MetricsReport,
    MetricStats,
    TraceMetrics,
    aggregate,
    check_metrics,
    describe_change,
    detect_anomaly,
    median_abs_deviation,
    metric_history,
    metrics_verdicts,
    percentile,
    resolve_thresholds,
    robust_z,
    run_metrics,
    series_runs,
    trace_metrics,
)
from costar.report.terminal_comparison import render_metrics
from costar.scenario import Scenario
from costar.store.base import Run
from costar.store.sqlite import SQLiteStore
from costar.summary import summarize
from costar.trace.model import AgentInfo, Span, SpanKind, Totals, Trace, compute_totals

# Ten runs' median token usage for one scenario: ±3% of 1,200.
HISTORY = [1180, 1210, 1195, 1230, 1200, 1170, 1220, 1205, 1190, 1200]


def _trace(run_id: str, scenario: str, trial: int, tokens: int = 1000, **totals: float) -> Trace:
    return Trace(trace_id=f"{run_id}-{scenario}-{trial}", run_id=run_id, scenario_id=scenario, trial=trial,
                 totals=Totals(input_tokens=tokens // 2, output_tokens=tokens - tokens // 2, total_tokens=tokens,
                               **totals))


def _run(store: SQLiteStore, run_id: str, created_at: float, traces: list[Trace], agent: str = "bot",
         scenarios: list[Scenario] | None = None) -> Run:
    run = Run(run_id=run_id, created_at=created_at, status="finished", agent=AgentInfo(name=agent))
    store.create_run(run)
    store.write_traces(traces)
    if scenarios:
        store.save_scenarios(run_id, scenarios)
    return run


def _history_store(store: SQLiteStore, head_tokens: dict[str, list[int]]) -> None:
    """Ten runs of scenarios 'a' and 'b' around HISTORY, then run 'head' with the given tokens."""
    for i, median in enumerate(HISTORY):
        # Three trials whose median is the history value.
        traces = [_trace(f"r{i:02d}", sid, t, median + d, latency_s=2.0 + d / 100, llm_calls=4)
                  for sid in ("a", "b") for t, d in enumerate((-15, 0, 20))]
        _run(store, f"r{i:02d}", 1000.0 + i, traces)
    head = [_trace("head", sid, t, tokens, latency_s=2.0, llm_calls=4)
            for sid, values in head_tokens.items() for t, tokens in enumerate(values)]
    _run(store, "head", 2000.0, head)


# ----------------------------------------------------------------------------- robust statistics


def test_robust_statistics_by_hand() -> None:
    values = [10, 12, 11, 13, 50]
    # median 12; |deviations| 2, 0, 1, 1, 38 -> sorted 0, 1, 1, 2, 38 -> MAD 1.
    assert median_abs_deviation(values) == 1
    assert robust_z(15, values) == pytest.approx(0.6744897501960817 * 3 / 1)
    assert round(MAD_TO_SIGMA, 6) == 0.67449
    assert robust_z(12, [12, 12, 12]) is None  # no spread


def test_percentile_interpolates_like_numpy() -> None:
    np = pytest.importorskip("numpy")
    values = [1, 2, 3, 4, 10]
    # position (5 - 1) * 0.9 = 3.6 -> 4 + 0.6 * (10 - 4) = 7.6
    assert percentile(values, 0.9) == pytest.approx(7.6)
    for data in ([5.0], [3, 1], [0.5, 9, 2, 2, 7, 1.25, 30]):
        for q in (0, 0.1, 0.5, 0.9, 1):
            assert percentile(data, q) == pytest.approx(float(np.percentile(data, q * 100)))
    with pytest.raises(ValueError):
        percentile([], 0.5)


def test_metric_stats_and_aggregate() -> None:
    stats = MetricStats.of([100, 300, 200, 1000])
    assert (stats.n, stats.median, stats.mean, stats.min, stats.max) == (4, 250, 400, 100, 1000)
    assert stats.p90 == pytest.approx(300 + 0.7 * 700)  # position 2.7
    ms = [trace_metrics(_trace("r", "a", i, tokens)) for i, tokens in enumerate((100, 300, 200))]
    agg = aggregate(ms)
    assert agg["total_tokens"].median == 200
    assert agg["input_tokens"].median == 100
    assert aggregate([]) == {}


def test_describe_change_wording() -> None:
    assert describe_change(1200, 2480) == "doubled"
    assert describe_change(100, 300) == "tripled"
    assert describe_change(100, 420) == "rose 4.2×"
    assert describe_change(100, 135) == "rose 35%"
    assert describe_change(100, 50) == "halved"
    assert describe_change(100, 20) == "fell 80%"
    assert describe_change(100, 0) == "fell to zero"
    assert describe_change(0, 3) == "rose from zero"


# ----------------------------------------------------------------------------- anomaly detection


def test_doubled_tokens_against_ten_runs_alerts() -> None:
    check = detect_anomaly("total_tokens", 2480, HISTORY)
    assert check.status == "alert"
    assert check.direction == "up"
    assert check.history_median == 1200
    # |deviations| from 1200: 20 10 5 30 0 30 20 5 10 0 -> MAD 10
    assert check.mad == 10
    assert check.robust_z == pytest.approx(MAD_TO_SIGMA * 1280 / 10)
    assert check.ratio == pytest.approx(2480 / 1200)
    assert check.message == "token usage doubled against the last 10 runs (median 1,200 → 2,480)"


@pytest.mark.parametrize("current", [1160, 1200, 1240])
def test_noise_does_not_alert(current: int) -> None:
    check = detect_anomaly("total_tokens", current, HISTORY)
    assert check.status == "ok", check.message
    assert abs(check.robust_z or 0) < 3.5


def test_unusual_but_small_change_does_not_alert() -> None:
    # A very stable history makes +8% a huge z-score, but the ratio rule keeps it quiet.
    history = [1000, 1001, 999, 1000, 1002, 1000]
    check = detect_anomaly("total_tokens", 1080, history)
    assert abs(check.robust_z or 0) > 3.5
    assert check.status == "ok"
    assert detect_anomaly("total_tokens", 1080, history, min_change=0.05).status == "alert"


def test_zero_mad_falls_back_to_relative_change() -> None:
    flat = [5, 5, 5, 5]
    assert detect_anomaly("llm_calls", 5, flat).status == "ok"
    assert detect_anomaly("llm_calls", 6, flat).status == "ok"  # +20% < 25%
    check = detect_anomaly("llm_calls", 10, flat)
    assert check.status == "alert"
    assert check.robust_z is None
    assert check.mad == 0
    assert check.message == "model calls doubled against the last 4 runs (median 5 → 10)"
    zero = detect_anomaly("error_spans", 2, [0, 0, 0])
    assert zero.status == "alert"
    assert zero.ratio is None
    assert zero.message.startswith("error spans rose from zero")
    down = detect_anomaly("latency_s", 1.0, [2.0, 2.0, 2.0])
    assert down.status == "alert"
    assert down.direction == "down"
    assert "halved" in down.message


def test_short_history_is_insufficient() -> None:
    for history in ([], [1200], [1200, 1210]):
        check = detect_anomaly("total_tokens", 50_000, history)
        assert check.status == "insufficient_history"
        assert "insufficient history" in check.message
    assert detect_anomaly("total_tokens", 50_000, [1200, 1210, 1190]).status == "alert"
    with pytest.raises(ValueError):
        detect_anomaly("total_tokens", 1, [1, 2, 3], threshold=0)


# ----------------------------------------------------------------------------- history in a store


def test_check_metrics_alerts_on_doubled_tokens_not_on_noise(store: SQLiteStore) -> None:
    _history_store(store, {"a": [2400, 2480, 2600], "b": [1190, 1230, 1210]})
    report = check_metrics(store, "head")
    assert report.history_run_ids == [f"r{i:02d}" for i in range(10)]
    a, b = report.scenario("a"), report.scenario("b")
    assert a is not None
    assert b is not None
    assert [c.metric for c in a.alerts] == ["total_tokens"]
    tokens = a.check("total_tokens")
    assert tokens is not None
    assert tokens.history == HISTORY
    assert tokens.message == "token usage doubled against the last 10 runs (median 1,200 → 2,480)"
    assert a.current["total_tokens"].median == 2480
    assert a.current["total_tokens"].p90 == pytest.approx(2576)
    assert b.alerts == []
    assert report.exit_code == 0  # alerts inform, they do not gate
    assert all(c.status == "ok" for c in b.checks)
    every = check_metrics(store, "head", metrics=METRICS).scenario("a")
    assert every is not None
    assert [c.metric for c in every.alerts] == ["total_tokens", "input_tokens", "output_tokens"]


def test_history_is_the_agents_earlier_runs(store: SQLiteStore) -> None:
    _history_store(store, {"a": [1200]})
    # Another agent's run and a later run of the same agent are not this run's history.
    _run(store, "other", 1500.0, [_trace("other", "a", 0, 99_999)], agent="someone-else")
    _run(store, "later", 3000.0, [_trace("later", "a", 0, 99_999)])
    ids = [r.run_id for r in series_runs(store, before="head", runs=3)]
    assert ids == ["r09", "r08", "r07"]
    points = metric_history(store, "a", "total_tokens", runs=10, before="head")
    assert [p.run_id for p in points] == [f"r{i:02d}" for i in range(10)]
    assert [p.value for p in points] == HISTORY
    assert all(p.trials == 3 for p in points)
    assert [p.run_id for p in metric_history(store, "a", "total_tokens", runs=2, agent="someone-else")] == ["other"]
    # Without a reference every run counts, newest last.
    assert metric_history(store, "a", "total_tokens", runs=1)[0].run_id == "later"
    with pytest.raises(ConfigError, match="unknown metric"):
        metric_history(store, "a", "tokens")


def test_check_metrics_with_short_history(store: SQLiteStore) -> None:
    _run(store, "r0", 1.0, [_trace("r0", "a", 0, 1000)])
    _run(store, "r1", 2.0, [_trace("r1", "a", 0, 1000)])
    _run(store, "head", 3.0, [_trace("head", "a", 0, 9000)])
    report = check_metrics(store, "head")
    a = report.scenario("a")
    assert a is not None
    assert a.alerts == []
    assert report.insufficient_history
    assert {c.status for c in a.checks} == {"insufficient_history"}
    out = _render(report)
    assert "insufficient history" in out
    assert "no metric alerts" in out


# ----------------------------------------------------------------------------- retries


def _llm_span(trace_id: str, i: int, retries: int) -> Span:
    return Span(trace_id=trace_id, span_id=f"s{i}", name="chat m", kind=SpanKind.LLM, start_ns=i, end_ns=i + 1,
                attributes={"gen_ai.usage.input_tokens": 10, "gen_ai.usage.output_tokens": 5,
                            "costar.retries": retries})


def test_retries_come_from_llm_spans_when_totals_lack_them(store: SQLiteStore) -> None:
    spans = [_llm_span("t1", i, r) for i, r in enumerate((0, 2, 1))]
    assert compute_totals(spans, 1.0).retries == 3
    # Totals supplied from elsewhere, without the retries the spans recorded.
    trace = Trace(trace_id="t1", run_id="r", scenario_id="a", totals=Totals(total_tokens=45, llm_calls=3),
                  spans=spans)
    assert trace_metrics(trace).retries == 3
    with_totals = trace.model_copy(update={"totals": Totals(total_tokens=45, llm_calls=3, retries=7)})
    assert trace_metrics(with_totals).retries == 7  # totals win, no double count
    _run(store, "r", 1.0, [trace])
    assert run_metrics(store, "r")["a"][0].retries == 0  # heads only: spans not read
    assert run_metrics(store, "r", span_retries=True)["a"][0].retries == 3


# ----------------------------------------------------------------------------- limits and verdicts


def _scenario(sid: str, **metadata: object) -> Scenario:
    return Scenario(id=sid, prompt="do it", metadata=metadata)


def test_thresholds_resolve_most_specific_first() -> None:
    sc = _scenario("a", metric_thresholds={"total_tokens": 5000, "tool_calls": 9})
    limits = resolve_thresholds("a", scenario=sc, thresholds={"total_tokens": 1, "cost_usd": 0.5},
                                scenario_thresholds={"a": {"tool_calls": 3}})
    assert limits == {"total_tokens": 5000, "cost_usd": 0.5, "tool_calls": 3}
    with pytest.raises(ConfigError, match="unknown metric 'tokens'"):
        resolve_thresholds("a", scenario=_scenario("a", metric_thresholds={"tokens": 5}))
    with pytest.raises(ConfigError, match="non-negative number"):
        resolve_thresholds("a", thresholds={"total_tokens": "lots"})
    with pytest.raises(ConfigError, match="mapping"):
        resolve_thresholds("a", scenario=_scenario("a", metric_thresholds=[5000]))


def test_metric_verdicts_inform_unless_a_limit_gates(store: SQLiteStore) -> None:
    scenarios = [_scenario("a", metric_thresholds={"total_tokens": 5000}), _scenario("b")]
    traces = [_trace("r", "a", 0, 4000), _trace("r", "a", 1, 6200), _trace("r", "b", 0, 90_000)]
    _run(store, "r", 1.0, traces, scenarios=scenarios)

    verdicts = metrics_verdicts(traces, scenarios=scenarios)
    by = {(v.trace_id, v.name): v for v in verdicts}
    ok, over, free = by[("r-a-0", "metric.total_tokens")], by[("r-a-1", "metric.total_tokens")], \
        by[("r-b-0", "metric.total_tokens")]
    assert (ok.passed, ok.gating, ok.outcome) == (True, True, "pass")
    assert (over.passed, over.outcome) == (False, "fail")
    assert over.rationale == "token usage 6,200 is over the limit 5,000"
    assert (free.passed, free.gating, free.outcome, free.value) == (None, False, "metric", 90_000)
    assert by[("r-a-0", "metric.cost_usd")].outcome == "metric"
    assert ok.fingerprint != free.fingerprint  # a limit is part of the judge

    # Stored and summarised like any other verdict: only the breached limit fails a trial.
    store.write_verdicts(verdicts, run_id="r")
    summary = summarize(store.get_run("r"), store.iter_traces("r", spans=False), store.verdicts(run_id="r"))
    assert [(t.label, t.status) for t in summary.trials()] == [("a[0]", "pass"), ("a[1]", "fail"),
                                                               ("b[0]", "unscored")]
    judge = next(j for j in summary.judges if j.name == "metric.cost_usd")
    assert judge.role == "metric"

    report = check_metrics(store, "r")
    assert [(b.scenario_id, b.trial, b.metric, b.value, b.limit) for b in report.breaches] == \
        [("a", 1, "total_tokens", 6200, 5000)]
    assert report.exit_code == 1
    assert "Limits exceeded" in _render(report)
    # An argument limit applies to every scenario; the scenario's own wins where it has one.
    report = check_metrics(store, "r", thresholds={"total_tokens": 10_000})
    assert [(b.scenario_id, b.trial) for b in report.breaches] == [("a", 1), ("b", 0)]


def test_metric_verdicts_accept_trace_metrics_and_check_names() -> None:
    m = TraceMetrics(trace_id="t", scenario_id="a", trial=0, retries=2)
    verdicts = metrics_verdicts([m], metrics=["retries"], thresholds={"latency_s": 30})
    assert [(v.name, v.value, v.outcome) for v in verdicts] == [("metric.retries", 2, "metric"),
                                                                ("metric.latency_s", 0.0, "pass")]
    with pytest.raises(ConfigError):
        metrics_verdicts([m], metrics=["bogus"])  # type: ignore[list-item]


# ----------------------------------------------------------------------------- report


def _render(report: MetricsReport) -> str:
    console = Console(file=io.StringIO(), width=220, color_system=None)
    render_metrics(report, console)
    return console.file.getvalue()  # type: ignore[attr-defined]


def test_report_json_round_trip_and_rendering(store: SQLiteStore) -> None:
    _history_store(store, {"a": [2400, 2480, 2600], "b": [1200]})
    report = check_metrics(store, "head")
    data = report.model_dump(mode="json")
    assert data["exit_code"] == 0
    assert MetricsReport.model_validate(data) == report
    out = _render(report)
    # Alerts come before the table.
    assert out.index("token usage doubled against the last 10 runs (median 1,200 → 2,480)") < \
        out.index("Metrics per scenario")
    assert "2,480 (1,200)" in out
