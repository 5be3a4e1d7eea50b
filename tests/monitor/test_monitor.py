"""Monitors: sampling, definitions and their errors, filters, scoring with the verdict cache and budgets,
windows and intervals, corrected rates, alert rules (de-duplication, recovery, anomalies), webhooks."""

from __future__ import annotations

import asyncio
import hashlib
import math
from pathlib import Path
from typing import Any

import pytest

from costar.align.corrected import ppi_mean, rogan_gladen
from costar.judges.base import Judge, JudgeContext
from costar.judges.registry import JudgeRegistry
from costar.labels import GoldenExample, GoldenSet
from costar.monitor.alerts import check_anomaly, recent_history
from costar.monitor.files import Monitor, load_monitor_file, load_monitors
from costar.monitor.matching import matches
from costar.monitor.model import AlertRule, MonitorDefinition, MonitorError, MonitorFilter, Webhook, parse_duration
from costar.monitor.sampling import sample_point, sampled
from costar.monitor.service import MonitorService, ServiceOptions
from costar.monitor.webhooks import deliver, json_payload, slack_payload
from costar.stats import wilson_interval
from costar.store.monitor_tables import SeriesPoint
from costar.trace.model import SpanKind, TraceStatus
from costar.verdict import Verdict, VerdictCost, VerdictSource
from tests.support.monitor import NOW, Clock, WebhookReceiver, make_trace, span


def monitor(data: dict[str, Any], source: str = "test") -> Monitor:
    return Monitor(MonitorDefinition.model_validate(data), source)


def service(store: Any, *defs: dict[str, Any], clock: Clock | None = None, registry: JudgeRegistry | None = None,
            **options: Any) -> MonitorService:
    return MonitorService(store, [monitor(d) for d in defs], registry or JudgeRegistry(),
                          options=ServiceOptions(**options), clock=clock or Clock())


def run(coro: Any) -> Any:
    return asyncio.run(coro)


# ----------------------------------------------------------------------------- sampling


def test_sampling_is_the_documented_hash_and_consistent_across_monitors() -> None:
    tid = "4bf92f3577b34da6a3ce929d0e0e4736"
    expected = int.from_bytes(hashlib.sha256(tid.encode()).digest()[:8], "big") / 2**64
    assert sample_point(tid) == expected
    ids = [f"{i:032x}" for i in range(5000)]
    a = [sampled(t, 0.3) for t in ids]
    b = [sampled(t, 0.3) for t in ids]  # another monitor, the same rate: the same traces
    assert a == b
    assert abs(sum(a) / len(ids) - 0.3) < 0.03
    # Nested: every trace in at 10% is in at 30%.
    assert all(sampled(t, 0.3) for t in ids if sampled(t, 0.1))
    assert not any(sampled(t, 0.0) for t in ids[:100])
    assert all(sampled(t, 1.0) for t in ids[:100])


def test_sampling_does_not_follow_the_low_bits_an_otel_sampler_uses() -> None:
    # OpenTelemetry's TraceIdRatioBased keeps ids whose low 8 bytes are small; those must not all be in.
    kept = [f"{i:016x}{(i * 7) % 1000:016x}" for i in range(2000)]
    share = sum(sampled(t, 0.5) for t in kept) / len(kept)
    assert 0.4 < share < 0.6


def test_two_monitors_at_one_rate_score_the_same_traces(sqlite_store: Any) -> None:
    traces = [make_trace(f"t{i:03d}", at=NOW - 10 - i, output="total 1") for i in range(200)]
    sqlite_store.write_traces(traces)
    checks = [{"output_contains": "total"}]
    svc = service(sqlite_store, {"name": "a", "sample": 0.25, "checks": checks},
                  {"name": "b", "sample": 0.25, "checks": checks, "filter": {"service": "bot"}},
                  {"name": "c", "sample": 0.5, "checks": checks})
    run(svc.run_once())
    got = {n: {tid for tid, r in svc.tables.considered(n, [t.trace_id for t in traces]).items() if r.sampled}
           for n in ("a", "b", "c")}
    assert got["a"] == got["b"]
    assert got["a"] <= got["c"]
    assert got["a"] == {t.trace_id for t in traces if sampled(t.trace_id, 0.25)}


# ----------------------------------------------------------------------------- definitions


MONITOR_YAML = """\
name: support
description: Support answers in production
filter:
  project: shop
  service: [bot, bot-*]
sample: 0.5
checks:
  - output_contains: total
criteria: The reply answers the question
windows: [1h, 1d]
alerts:
  - name: low
    below: 0.8
  - name: costly
    metric: cost_usd
    window: 1d
    anomaly: {direction: up}
    notify: [ops]
webhooks:
  ops: {url: "https://hooks.example.test/x", format: slack}
budget: {usd: 5, per: 1d}
"""


def test_a_monitor_file_loads_with_every_field(tmp_path: Path) -> None:
    (tmp_path / "m.yaml").write_text(MONITOR_YAML)
    [m] = load_monitor_file(tmp_path / "m.yaml")
    d = m.definition
    assert d.windows == [3600.0, 86400.0]
    assert d.filter.service == ["bot", "bot-*"]
    assert d.criteria == ["The reply answers the question"]
    assert d.alerts[0].compared == "upper"
    assert d.rule_window(d.alerts[0]) == 3600.0
    assert d.alerts[1].compared == "value"
    assert d.budget is not None
    assert d.budget.per == 86400.0
    assert d.model_dump(mode="json")["windows"] == ["1h", "1d"]
    assert m.where(("alerts", 1, "anomaly")) == f"{tmp_path / 'm.yaml'}:17"


@pytest.mark.parametrize(("text", "line", "message"), [
    ("name: x\nchecks: [{output_contains: a}]\nsample: 2\n", 3, "field 'sample'"),
    ("name: x\nchecks: [{output_contains: a}]\nwindows: [soon]\n", 3, "'soon' is not a duration"),
    ("name: x\nchecks: [{output_contains: a}]\nfilterz: {}\n", 3, "unknown field"),
    ("name: x\n", 1, "needs at least one check or judge"),
    ("name: x\nchecks:\n  - output_containz: a\n", 3, "field 'checks[0]'"),
    ("name: x\nchecks: [{output_contains: a}]\nalerts:\n  - name: r\n    below: 0.5\n    above: 0.9\n", 4,
     "exactly one of 'below', 'above'"),
    ("name: x\nchecks: [{output_contains: a}]\nalerts:\n  - name: r\n    metric: cost_usd\n    bound: upper\n"
     "    below: 1\n", 4, "has no interval"),
    ("name: x\nchecks: [{output_contains: a}]\nalerts:\n  - {name: r, below: 0.5, window: 2h}\n", 1,
     "window 2h is not one of the monitor's windows"),
    ("name: x\nchecks: [{output_contains: a}]\nalerts:\n  - {name: r, below: 0.5, notify: [pager]}\n", 1,
     "notify names 'pager'"),
    ("name: x\nchecks: [{output_contains: a}]\nwebhooks:\n  a: {url: 'ftp://x'}\n", 4, "is not an http(s) URL"),
    ("name: bad name\nchecks: [{output_contains: a}]\n", 1, "field 'name'"),
    ("name: x\nchecks: [{output_contains: a}\n", None, "invalid YAML"),
])
def test_bad_monitor_files_are_one_line_errors_with_file_and_line(tmp_path: Path, text: str, line: int | None,
                                                                  message: str) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(text)
    with pytest.raises(MonitorError) as err:
        load_monitor_file(path)
    msg = str(err.value)
    assert "\n" not in msg
    assert message in msg
    if line is not None:
        assert msg.startswith(f"{path}:{line}: ")


def test_a_name_in_two_files_names_both(tmp_path: Path) -> None:
    (tmp_path / "monitors").mkdir()
    for f in ("a.yaml", "b.yaml"):
        (tmp_path / "monitors" / f).write_text("name: same\nchecks: [{output_contains: a}]\n")
    with pytest.raises(MonitorError, match=r"b\.yaml:1: field 'name': monitor 'same' is also defined at .*a\.yaml"):
        load_monitors(tmp_path / "monitors")


def test_unknown_judges_and_alert_judges_point_at_their_line(tmp_path: Path, sqlite_store: Any) -> None:
    path = tmp_path / "m.yaml"
    path.write_text("name: x\nchecks: [{output_contains: a}]\njudges:\n  - nosuchjudge\n")
    with pytest.raises(MonitorError, match=rf"{path}:4: field 'judges\[0\]': unknown judge 'nosuchjudge'"):
        MonitorService(sqlite_store, load_monitor_file(path), JudgeRegistry())
    path.write_text("name: x\nchecks: [{output_contains: a}]\nalerts:\n  - name: r\n    judge: helpful\n"
                    "    below: 0.5\n")
    with pytest.raises(MonitorError, match=rf"{path}:5: field 'alerts\[0\].judge': .*'helpful'"):
        MonitorService(sqlite_store, load_monitor_file(path), JudgeRegistry())


def test_durations() -> None:
    assert parse_duration("90s") == 90
    assert parse_duration("15m") == 900
    assert parse_duration("7d") == 7 * 86400
    assert parse_duration(30) == 30
    for bad in ("0s", "-1h", "1y", True):
        with pytest.raises(ValueError):
            parse_duration(bad)


# ----------------------------------------------------------------------------- filters


def test_filters_match_project_service_agent_attributes_and_span_names() -> None:
    t = make_trace("t1", at=NOW, spans=[
        span("t1", "s1", "invoke_agent support", at=NOW - 1, attributes={"user.tier": "gold", "retries": 2}),
        span("t1", "s2", "execute_tool refund_order", SpanKind.TOOL, parent="s1", at=NOW - 1)])
    assert matches(MonitorFilter(), t)
    assert matches(MonitorFilter(project=["sh*"], service=["bot"], agent=["support"], agent_version=["2.*"]), t)
    assert not matches(MonitorFilter(project=["other"]), t)
    assert matches(MonitorFilter(project=["other"]), t, project="other")  # the server's routing wins
    assert matches(MonitorFilter(attributes={"deployment.environment": "prod"}), t)  # a resource attribute
    assert matches(MonitorFilter(attributes={"user.tier": ["silver", "gold"], "retries": 2}), t)
    assert not matches(MonitorFilter(attributes={"retries": 3}), t)
    assert matches(MonitorFilter(span_names=["execute_tool refund*"]), t)
    assert not matches(MonitorFilter(span_names=["execute_tool refund*", "execute_tool cancel*"]), t)
    assert not matches(MonitorFilter(scenario=["*"]), t)  # production traces have no scenario


def test_a_span_filter_reads_spans_the_sweep_loads(sqlite_store: Any) -> None:
    with_tool = make_trace("t1", at=NOW - 5, spans=[span("t1", "a", "execute_tool refund", SpanKind.TOOL, at=NOW - 6)])
    without = make_trace("t2", at=NOW - 5, spans=[span("t2", "a", "execute_tool search", SpanKind.TOOL, at=NOW - 6)])
    sqlite_store.write_traces([with_tool, without])
    svc = service(sqlite_store, {"name": "m", "checks": [{"output_contains": "ok"}],
                                 "filter": {"span_names": ["execute_tool refund"]}})
    report = run(svc.run_once())
    assert report.considered == 1
    assert set(svc.tables.considered("m", ["t1", "t2"])) == {"t1"}


# ----------------------------------------------------------------------------- scoring


class PricedJudge(Judge):
    """Stands for a model judge: it costs money (its verdict's cost) and counts its calls."""

    source = VerdictSource.LLM
    needs_spans = False

    def __init__(self, name: str = "priced", cost: float = 0.01) -> None:
        self.name = name
        self.cost = cost
        self.calls = 0

    def config(self) -> dict[str, Any]:
        return {"cost": self.cost}

    def evaluate(self, ctx: JudgeContext) -> Verdict:
        self.calls += 1
        ok = "good" in (ctx.trace.output or "")
        return Verdict(name=self.name, value=ok, passed=ok, rationale="scripted", source=VerdictSource.LLM,
                       cost=VerdictCost(cost_usd=self.cost))


def test_verdicts_are_cached_by_fingerprint_tagged_with_the_monitor_and_shared(sqlite_store: Any) -> None:
    sqlite_store.write_traces([make_trace(f"t{i}", at=NOW - 10 - i, output="good" if i % 2 else "bad")
                               for i in range(10)])
    judge = PricedJudge()
    reg = JudgeRegistry()
    reg.register("priced", judge)
    svc = service(sqlite_store, {"name": "a", "judges": ["priced"]}, {"name": "b", "judges": ["priced"]},
                  registry=reg)
    first = run(svc.run_once(["a"]))
    assert first.score.judged == 10
    assert judge.calls == 10
    second = run(svc.run_once(["b"]))  # another monitor, the same judge: the verdicts are reused
    assert second.score.judged == 0
    assert second.score.cached == 10
    assert judge.calls == 10
    verdicts = sqlite_store.verdicts(trace_ids=[f"t{i}" for i in range(10)])
    assert {v.metadata.get("monitor") for v in verdicts} == {"a"}
    counts = svc.tables.outcome_counts("b", NOW - 3600, NOW)
    assert counts == {"priced": {"pass": 5, "fail": 5}}


def test_a_budget_skips_model_judges_once_spent_and_checks_keep_running(sqlite_store: Any) -> None:
    sqlite_store.write_traces([make_trace(f"t{i:02d}", at=NOW - 100 + i, output="good") for i in range(20)])
    judge = PricedJudge(cost=0.01)
    reg = JudgeRegistry()
    reg.register("priced", judge)
    svc = service(sqlite_store, {"name": "m", "judges": ["priced"], "checks": [{"output_contains": "good"}],
                                 "budget": {"usd": 0.05, "per": "1d"}}, registry=reg, concurrency=1, batch_size=4)
    report = run(svc.run_once())
    assert judge.calls == 5
    assert report.score.skipped == 15
    counts = svc.tables.outcome_counts("m", NOW - 3600, NOW)
    assert counts['output_contains("good")'] == {"pass": 20}
    assert counts["priced"] == {"pass": 5, "skipped": 15}
    assert svc.tables.spend_since("m", NOW - 86400) == pytest.approx(0.05)


def test_an_amended_trace_is_judged_again(sqlite_store: Any) -> None:
    clock = Clock()
    svc = service(sqlite_store, {"name": "m", "checks": [{"output_contains": "total"}]}, clock=clock)
    t = make_trace("t1", at=NOW - 5, output="no answer yet")
    sqlite_store.write_traces([t])
    assert svc.offer(t) == 1
    run(svc.process_queue())
    assert svc.tables.outcome_counts("m", NOW - 60, NOW) == {'output_contains("total")': {"fail": 1}}
    t2 = make_trace("t1", at=NOW - 4, output="total 3")
    sqlite_store.write_traces([t2])
    svc.offer(t2, amended=True)
    run(svc.process_queue())
    assert svc.tables.outcome_counts("m", NOW - 60, NOW) == {'output_contains("total")': {"pass": 1}}


def test_offers_past_the_queue_are_left_to_the_sweep(sqlite_store: Any) -> None:
    traces = [make_trace(f"t{i}", at=NOW - 10 + i * 0.1) for i in range(5)]
    sqlite_store.write_traces(traces)
    svc = service(sqlite_store, {"name": "m", "checks": [{"output_contains": "ok"}]}, queue_size=2)
    taken = [svc.offer(t) for t in traces]
    assert taken == [1, 1, 0, 0, 0]
    assert svc.stats.dropped == 3
    run(svc.process_queue())
    assert run(svc.sweep()) == 3  # nothing lost
    assert svc.tables.counts("m")["considered"] == 5


# ----------------------------------------------------------------------------- windows, intervals, corrected rates


def test_windows_cover_traces_that_ended_within_them_with_wilson_intervals(sqlite_store: Any) -> None:
    # 8 traces in the last hour (6 pass), 10 more between 1h and 1d ago (all fail), 3 older than a day.
    traces = [make_trace(f"h{i}", at=NOW - 60 * (i + 1), output="total" if i < 6 else "x") for i in range(8)]
    traces += [make_trace(f"d{i}", at=NOW - 3600 * (i + 2), output="x") for i in range(10)]
    traces += [make_trace(f"o{i}", at=NOW - 86400 - 3600 * (i + 1), output="total") for i in range(3)]
    sqlite_store.write_traces(traces)
    svc = service(sqlite_store, {"name": "m", "checks": [{"output_contains": "total", "name": "answered"}],
                                 "windows": ["1h", "1d"]})
    ev = run(svc.run_once(since=0))
    by = {(p.window, p.metric, p.judge): p for p in ev.evaluation.points}
    hour = by[(3600.0, "pass_rate", "answered")]
    assert (hour.n, hour.value) == (8, 6 / 8)
    assert (hour.low, hour.high) == pytest.approx(wilson_interval(6, 8))
    day = by[(86400.0, "pass_rate", "answered")]
    assert (day.n, day.value) == (18, 6 / 18)
    assert by[(86400.0, "traces", "")].value == 18
    # Windows are half-open, (t - w, t]: a trace that ended exactly at the start is out.
    assert svc.tables.outcome_counts("m", NOW - 60, NOW) == {}
    assert svc.tables.outcome_counts("m", NOW - 61, NOW - 60) == {"answered": {"pass": 1}}


def test_operational_series(sqlite_store: Any) -> None:
    sqlite_store.write_traces([make_trace(f"t{i}", at=NOW - 10 - i, tokens=100 * (i + 1), cost=0.01 * (i + 1),
                                          latency=float(i + 1), status=TraceStatus.ERROR if i == 0 else TraceStatus.OK)
                               for i in range(5)])
    svc = service(sqlite_store, {"name": "m", "checks": [{"output_contains": "ok"}], "windows": ["1h"]})
    ev = run(svc.run_once())
    ops = {p.metric: p for p in ev.evaluation.points if p.judge == ""}
    assert ops["traces"].value == 5
    assert ops["total_tokens"].value == 300
    assert ops["total_tokens"].data["sum"] == 1500
    assert ops["cost_usd"].value == pytest.approx(0.03)
    assert ops["latency_s"].value == 3
    assert ops["latency_p90"].value == pytest.approx(4.6)
    assert ops["error_rate"].value == 0.2
    assert (ops["error_rate"].low, ops["error_rate"].high) == pytest.approx(wilson_interval(1, 5))


def test_the_corrected_rate_uses_the_judges_golden_set(sqlite_store: Any) -> None:
    judge = PricedJudge("helpful", cost=0.0)
    reg = JudgeRegistry()
    reg.register("helpful", judge)
    # Golden traces (older than the windows): the judge passes 9 of 10 human passes and 3 of 10 human fails.
    golden = [make_trace(f"g{i}", at=NOW - 10 * 86400 - i, output="good" if (i < 9 or 10 <= i < 13) else "bad")
              for i in range(20)]
    live = [make_trace(f"l{i}", at=NOW - 60 - i, output="good" if i < 30 else "bad") for i in range(40)]
    sqlite_store.write_traces(golden + live)
    svc = service(sqlite_store, {"name": "m", "judges": ["helpful"], "windows": ["1h"]}, registry=reg, fit_ttl=0)
    run(svc.backfill("m", since=0))  # scores the golden traces too (they match the monitor)
    sqlite_store.write_golden_set(GoldenSet(name="gs", judge_name="helpful", examples=[
        GoldenExample(trace_id=f"g{i}", label=i < 10, split="test") for i in range(20)]))
    ev = run(svc.evaluate())
    by = {p.metric: p for p in ev.points if p.judge == "helpful"}
    expected = rogan_gladen(30, 40, 9, 1, 3, 7)
    assert by["rogan_gladen"].value == pytest.approx(expected.value)
    assert by["rogan_gladen"].data["golden"] == "gs"
    assert (by["rogan_gladen"].data["tp"], by["rogan_gladen"].data["fp"]) == (9, 3)
    human = [1.0] * 10 + [0.0] * 10
    calls = [1.0] * 9 + [0.0] + [1.0] * 3 + [0.0] * 7
    ppi = ppi_mean([1.0] * 30 + [0.0] * 10, calls, human)
    assert by["ppi"].value == pytest.approx(ppi.value)
    assert (by["ppi"].low, by["ppi"].high) == pytest.approx((ppi.ci.low, ppi.ci.high))


def test_no_corrected_rate_without_golden_verdicts_of_the_current_judge(sqlite_store: Any) -> None:
    reg = JudgeRegistry()
    reg.register("helpful", PricedJudge("helpful"))
    sqlite_store.write_traces([make_trace("l1", at=NOW - 5, output="good"), make_trace("g1", at=0.0)])
    sqlite_store.write_golden_set(GoldenSet(name="gs", judge_name="helpful", examples=[
        GoldenExample(trace_id="g1", label=True, split="test")]))
    svc = service(sqlite_store, {"name": "m", "judges": ["helpful"], "windows": ["1h"]}, registry=reg)
    ev = run(svc.run_once())
    rg = next(p for p in ev.evaluation.points if p.metric == "rogan_gladen")
    assert rg.value is None
    assert "no verdicts on the 1 traces of golden set gs" in rg.data["error"]


# ----------------------------------------------------------------------------- alerts


def _rate_monitor(hooks: dict[str, Any] | None = None, **rule: Any) -> dict[str, Any]:
    return {"name": "m", "checks": [{"output_contains": "good", "name": "good"}], "windows": ["1h"],
            "alerts": [{"name": "low", "below": 0.8, "min_samples": 5, **rule}], "webhooks": hooks or {}}


def test_an_alert_fires_once_recovers_once_and_may_fire_again(store: Any) -> None:
    clock = Clock()
    svc = service(store, _rate_monitor(), clock=clock, min_step=1)
    store.write_traces([make_trace(f"a{i}", at=NOW - 100 + i, output="good") for i in range(10)])
    ev = run(svc.run_once())
    assert [c.state for c in ev.evaluation.checks] == ["clear"]
    assert ev.evaluation.events == []
    store.write_traces([make_trace(f"b{i}", at=NOW - 50 + i, output="bad") for i in range(10)])
    ev = run(svc.run_once())
    assert [e.status for e in ev.evaluation.events] == ["firing"]
    assert "upper bound 0.701 is below 0.800" in ev.evaluation.events[0].check.message
    for _ in range(3):  # still firing: no new alert
        clock.t += 5
        assert run(svc.run_once()).evaluation.events == []
    store.write_traces([make_trace(f"c{i}", at=clock.t - 40 + i * 0.5, output="good") for i in range(60)])
    ev = run(svc.run_once())
    assert [e.status for e in ev.evaluation.events] == ["resolved"]
    assert "no longer below" in ev.evaluation.events[0].check.message
    store.write_traces([make_trace(f"d{i}", at=clock.t - 1 + i * 0.01, output="bad") for i in range(80)])
    ev = run(svc.run_once())
    assert [e.status for e in ev.evaluation.events] == ["firing"]
    history = svc.tables.alerts(monitor="m")
    assert [a.status for a in history] == ["firing", "resolved", "firing"]
    assert {a.series for a in history} == {"good@1h"}


def test_too_few_samples_leave_a_rule_as_it_is(sqlite_store: Any) -> None:
    svc = service(sqlite_store, _rate_monitor(min_samples=10))
    sqlite_store.write_traces([make_trace(f"b{i}", at=NOW - 50 + i, output="bad") for i in range(9)])
    ev = run(svc.run_once())
    assert [c.state for c in ev.evaluation.checks] == ["insufficient"]
    assert ev.evaluation.events == []


def test_a_second_process_does_not_record_the_same_change_twice(sqlite_store: Any) -> None:
    sqlite_store.write_traces([make_trace(f"b{i}", at=NOW - 50 + i, output="bad") for i in range(10)])
    one, two = service(sqlite_store, _rate_monitor()), service(sqlite_store, _rate_monitor())
    assert [e.status for e in run(one.run_once()).evaluation.events] == ["firing"]
    assert run(two.run_once()).evaluation.events == []
    assert len(one.tables.alerts()) == 1


def test_anomaly_against_the_recent_past(sqlite_store: Any) -> None:
    clock = Clock()
    rule = {"name": "cost", "metric": "cost_usd", "anomaly": {"history": 6, "direction": "up"}, "min_samples": 3}
    svc = service(sqlite_store, {"name": "m", "checks": [{"output_contains": "ok"}], "windows": ["1h"],
                                 "alerts": [rule]}, clock=clock)
    n = 0
    for hour in range(8, 0, -1):  # eight past hours at ~$0.010 a trace
        for i in range(5):
            sqlite_store.write_traces([make_trace(f"p{n}", at=NOW - hour * 3600 + 60 + i, cost=0.010 + 0.0005 * (i % 3))])
            n += 1
    run(svc.backfill("m", since=NOW - 9 * 3600))
    sqlite_store.write_traces([make_trace(f"n{i}", at=NOW - 30 + i, cost=0.05) for i in range(5)])
    ev = run(svc.run_once())
    [check] = ev.evaluation.checks
    assert check.state == "firing"
    assert "tripled against the last 6 windows" in check.message
    assert len(check.data["history"]) == 6
    assert [e.status for e in ev.evaluation.events] == ["firing"]


def test_anomaly_rules() -> None:
    rule = AlertRule(name="r", metric="pass_rate", anomaly={"history": 5, "direction": "down"}, min_samples=1)
    p = SeriesPoint("m", "j", 3600.0, "pass_rate", NOW, 50, 0.5)
    assert check_anomaly(rule, "m", p, [0.9, 0.92, 0.88, 0.91, 0.9]).state == "firing"
    assert check_anomaly(rule, "m", p.__class__("m", "j", 3600.0, "pass_rate", NOW, 50, 0.95),
                         [0.9, 0.92, 0.88, 0.91, 0.9]).state == "clear"  # up, but only down alerts
    assert check_anomaly(rule, "m", p, [0.9, 0.9]).state == "insufficient"
    points = [SeriesPoint("m", "j", 3600.0, "pass_rate", NOW - k * 3600 - 30, 5, float(k)) for k in range(1, 5)]
    assert recent_history(points, NOW, 3600.0, 3) == [3.0, 2.0, 1.0]


# ----------------------------------------------------------------------------- webhooks


def test_webhook_payloads() -> None:
    data = {"monitor": "m", "rule": "low", "metric": "pass_rate", "value": 0.5}
    doc = json_payload(3, "firing", NOW, "pass rate <dropped> & more", data, "good@1h")
    assert doc["type"] == "costar.alert"
    assert (doc["status"], doc["alert_id"], doc["series"], doc["value"]) == ("firing", 3, "good@1h", 0.5)
    assert doc["at"].endswith("Z")
    slack = slack_payload(3, "resolved", NOW, "pass rate <dropped> & more", data, "good@1h")
    assert "RESOLVED" in slack["text"]
    assert "&lt;dropped&gt; &amp; more" in slack["text"]
    assert slack["blocks"][0]["type"] == "section"


def test_delivery_retries_with_backoff_and_reports_failures() -> None:
    waits: list[float] = []

    async def sleep(s: float) -> None:
        waits.append(s)

    async def go(receiver: WebhookReceiver, hook: Webhook) -> tuple[bool, int, str | None]:
        import httpx

        async with httpx.AsyncClient() as client:
            return await deliver(client, hook, {"x": 1}, sleep=sleep)

    with WebhookReceiver() as receiver:
        receiver.statuses = [500, 503]
        assert run(go(receiver, Webhook(url=receiver.url, attempts=4))) == (True, 3, None)
        assert waits == [0.5, 1.0]
        receiver.statuses = [400]
        ok, attempts, error = run(go(receiver, Webhook(url=receiver.url, attempts=4)))
        assert (ok, attempts) == (False, 1)  # a client error is final
        assert error is not None
        assert error.startswith("HTTP 400")
    waits.clear()
    ok, attempts, error = run(go(receiver, Webhook(url="http://127.0.0.1:9/hook", attempts=3, timeout=2)))
    assert (ok, attempts) == (False, 3)
    assert "ConnectError" in (error or "")
    assert waits == [0.5, 1.0]


def test_a_missing_environment_variable_is_a_recorded_failure() -> None:
    async def go() -> tuple[bool, int, str | None]:
        import httpx

        async with httpx.AsyncClient() as client:
            return await deliver(client, Webhook(url="${COSTAR_TEST_UNSET_HOOK}"), {"x": 1})

    ok, attempts, error = run(go())
    assert (ok, attempts) == (False, 0)
    assert "COSTAR_TEST_UNSET_HOOK" in (error or "")


def test_alerts_reach_webhooks_and_failed_deliveries_are_recorded(sqlite_store: Any) -> None:
    with WebhookReceiver() as receiver:
        hooks = {"generic": {"url": receiver.url}, "chat": {"url": receiver.url, "format": "slack"},
                 "down": {"url": "http://127.0.0.1:9/nothing", "attempts": 1, "timeout": 2}}
        svc = service(sqlite_store, _rate_monitor(hooks))
        sqlite_store.write_traces([make_trace(f"b{i}", at=NOW - 50 + i, output="bad") for i in range(10)])
        ev = run(svc.run_once())
        [event] = ev.evaluation.events
        assert event.delivered == {"generic": True, "chat": True, "down": False}
        got = receiver.wait_for(lambda r: len(r) == 2)
    generic = next(b for b in got if "type" in b)
    assert (generic["status"], generic["rule"], generic["judge"], generic["value"]) == ("firing", "low", "good", 0.0)
    assert any("text" in b and "ALERT" in b["text"] for b in got)
    [record] = svc.tables.alerts(monitor="m")
    by_target = {d.target: d for d in record.deliveries}
    assert by_target["generic"].status == "delivered"
    assert by_target["down"].status == "failed"
    assert by_target["down"].attempts == 1
    assert "ConnectError" in (by_target["down"].last_error or "")
    assert svc.stats.deliveries_failed == 1


def test_pending_deliveries_of_a_stopped_process_are_sent_later(sqlite_store: Any) -> None:
    with WebhookReceiver() as receiver:
        svc = service(sqlite_store, _rate_monitor({"generic": {"url": receiver.url}}))
        recorded = svc.tables.record_alert("m", "low", "good@1h", "firing", NOW, "pass rate fell", {"rule": "low"},
                                           ["generic"])
        assert recorded is not None
        run(svc.evaluate())
        got = receiver.wait_for(lambda r: len(r) == 1)
    assert got[0]["message"] == "pass rate fell"
    [record] = svc.tables.alerts()
    assert record.deliveries[0].status == "delivered"


# ----------------------------------------------------------------------------- backfill and series


def test_backfill_scores_the_period_and_fills_its_series(store: Any) -> None:
    clock = Clock()
    traces = [make_trace(f"t{i:03d}", at=NOW - 6 * 86400 + i * 3600, output="good" if i % 3 else "bad")
              for i in range(6 * 24)]
    store.write_traces(traces)
    svc = service(store, {"name": "m", "checks": [{"output_contains": "good", "name": "good"}], "windows": ["1d"],
                          "sample": 0.5}, clock=clock)
    report = run(svc.backfill("m", since=NOW - 7 * 86400))
    assert report.matched == len(traces)
    assert report.sampled == sum(sampled(t.trace_id, 0.5) for t in traces)
    assert report.score.traces == report.sampled
    points = svc.tables.points("m", judge="good", window=86400.0, metric="pass_rate")
    # A day's window every two hours, from a day after the first trace to now.
    assert len(points) == 5 * 12 + 1
    assert all(abs(p.value - 2 / 3) < 0.2 for p in points if p.value is not None and p.n >= 8)
    again = run(svc.backfill("m", since=NOW - 7 * 86400))
    assert again.score.judged == 0  # scored traces are kept


def test_retention_of_traces_keeps_series_and_results(sqlite_store: Any) -> None:
    sqlite_store.write_traces([make_trace(f"t{i}", at=NOW - 10 - i, output="good") for i in range(6)])
    svc = service(sqlite_store, _rate_monitor())
    run(svc.run_once())
    with sqlite_store._write() as c:  # what retention does to traces
        for table in ("spans", "verdicts", "traces"):
            c.execute(f"DELETE FROM {table}")
    assert svc.tables.points("m")
    ev = run(svc.evaluate())
    rate = next(p for p in ev.points if p.metric == "pass_rate")
    assert (rate.n, rate.value) == (6, 1.0)


def test_sqlite_and_postgres_keep_the_same_series(store: Any) -> None:
    store.write_traces([make_trace(f"t{i}", at=NOW - 10 - i, output="good" if i < 3 else "bad") for i in range(4)])
    svc = service(store, _rate_monitor(min_samples=1, bound="value"))
    run(svc.run_once())
    [p] = svc.tables.points("m", judge="good", metric="pass_rate")
    assert (p.n, p.value, p.data) == (4, 0.75, {"pass": 3, "fail": 1, "error": 0, "metric": 0, "skipped": 0})
    assert math.isclose(p.low, wilson_interval(3, 4)[0])
    assert svc.tables.alerts()[0].status == "firing"
