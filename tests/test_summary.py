"""summarize(): trial, scenario, judge and run rules, over real traces, verdicts and a real SQLite store."""

from __future__ import annotations

from pathlib import Path

import pytest

from costar.scenario import Scenario
from costar.stats import pass_hat_k, wilson_interval
from costar.store.sqlite import SQLiteStore
from costar.summary import MAX_SUMMARY_TEXT, RunSummary, summarize, trial_status
from costar.trace.model import TraceStatus
from costar.verdict import Verdict
from tests.support.report import make_run, make_trace, sample_run, verdict


def _v(name: str, passed: bool | None, *, gating: bool = True, error: str | None = None) -> Verdict:
    if error is not None:
        return Verdict.failure(name, error, gating=gating)
    return Verdict(name=name, passed=passed, gating=gating)


@pytest.mark.parametrize(("verdicts", "expected"), [
    ([_v("a", True), _v("b", True)], "pass"),
    ([_v("a", True), _v("b", False)], "fail"),
    ([_v("a", True), _v("b", None, error="503")], "error"),  # a judge error is never a pass
    ([_v("a", False), _v("b", None, error="503")], "fail"),  # a real failure outweighs an error
    ([_v("a", True), _v("d", False, gating=False)], "pass"),  # diagnostics never gate
    ([_v("a", True), _v("d", None, gating=False, error="x")], "pass"),  # nor do their errors
    ([_v("a", True), _v("m", None)], "pass"),  # metrics never gate, even when marked gating
    ([_v("m", None)], "unscored"),
    ([_v("d", True, gating=False)], "unscored"),
    ([], "unscored"),
])
def test_trial_status_rules(verdicts: list[Verdict], expected: str) -> None:
    assert trial_status(verdicts) == expected


def test_sample_run_per_scenario() -> None:
    run, traces, verdicts = sample_run()
    s = summarize(run, traces, verdicts)
    assert [sc.scenario_id for sc in s.scenarios] == ["booking", "slow", "weather"]
    weather, booking, slow = s.scenario("weather"), s.scenario("booking"), s.scenario("slow")
    assert weather
    assert booking
    assert slow

    assert (weather.status, weather.trials, weather.passed, weather.failed) == ("pass", 3, 3, 0)
    assert weather.pass_hat_k == [1.0, 1.0, 1.0]
    assert weather.rate.low == pytest.approx(wilson_interval(3, 3)[0])
    # The failed diagnostic is a warning on its trial, not a failure.
    assert [d.name for d in weather.trial_results[1].diagnostics] == ["polite"]
    assert weather.trial_results[1].failures == []

    # booking: one pass, one fail, one judge error left out of the rate.
    assert (booking.status, booking.passed, booking.failed, booking.errored) == ("fail", 1, 1, 1)
    assert booking.decided == 2
    assert booking.rate.value == 0.5
    assert booking.rate.n == 2
    assert booking.pass_at_k == [0.5, 1.0]
    assert booking.pass_hat_k == [0.5, pass_hat_k(2, 1, 2)]
    assert booking.pass_hat_n == 0.0
    assert booking.pass_at_n == 1.0
    failing = booking.trial_results[1]
    assert failing.status == "fail"
    assert [(f.name, f.rationale) for f in failing.failures] == [("booked", "no reservation was created")]
    errored = booking.trial_results[2]
    assert errored.status == "error"
    assert errored.failures == []
    assert errored.judge_errors[0].name == "booked"
    assert errored.judge_errors[0].error == "judge model returned 503"

    assert slow.status == "fail"
    assert slow.trial_results[0].agent_status == TraceStatus.TIMEOUT
    assert slow.trial_results[0].agent_error == "timed out after 30s"


def test_sample_run_usage_from_trace_totals() -> None:
    run, traces, verdicts = sample_run()
    weather = summarize(run, traces, verdicts).scenario("weather")
    assert weather is not None
    assert weather.usage.traces == 3
    assert weather.usage.total_tokens == 3 * 120
    assert weather.usage.cost_usd == pytest.approx(0.003)
    assert weather.usage.mean_tokens == 120
    assert weather.usage.mean_latency_s == pytest.approx(1.5)


def test_sample_run_totals_and_curves() -> None:
    run, traces, verdicts = sample_run()
    s = summarize(run, traces, verdicts)
    t = s.totals
    assert (t.scenarios, t.scenarios_passed, t.trials) == (3, 1, 7)
    assert (t.passed, t.failed, t.errored, t.unscored, t.missing) == (4, 2, 1, 0, 0)
    assert (t.judge_errors, t.diagnostics_failed, t.agent_errors) == (1, 1, 1)
    assert t.judge_cost_usd == pytest.approx(0.004)
    assert s.trial_rate.successes == 4
    assert s.trial_rate.n == 6
    assert not s.all_gates_passed
    # pass^k averages the scenarios with at least k decided trials: weather (3), booking (2), slow (1).
    assert [(p.k, p.scenarios) for p in s.pass_hat_k] == [(1, 3), (2, 2), (3, 1)]
    assert s.pass_hat_k[0].value == pytest.approx((1 + 0.5 + 0) / 3)
    assert s.pass_hat_k[1].value == pytest.approx((1 + 0) / 2)
    assert s.pass_at_k[1].value == pytest.approx((1 + 1) / 2)
    assert (s.run_id, s.agent.name, s.description) == ("run-1", "weather-bot", "nightly")


def test_judge_summaries() -> None:
    run, traces, verdicts = sample_run()
    judges = {j.name: j for j in summarize(run, traces, verdicts).judges}
    booked = judges["booked"]
    assert (booked.passed, booked.failed, booked.errors, booked.role) == (1, 1, 1, "gate")
    assert booked.rate.value == 0.5
    assert booked.cost_usd == pytest.approx(0.004)
    assert booked.fingerprints == ["fp-booked"]
    assert booked.sources == ["code", "llm"]
    polite = judges["polite"]
    assert (polite.passed, polite.failed, polite.gating, polite.role) == (2, 1, False, "diagnostic")
    tokens = judges["tokens"]
    # Marked gating by default, but a metric never gates.
    assert (tokens.metrics, tokens.gating, tokens.role, tokens.mean_value) == (3, False, "metric", 120.0)
    assert tokens.rate.value is None
    assert (tokens.rate.low, tokens.rate.high) == (0.0, 1.0)


def test_all_gates_passed_only_when_every_scenario_passes() -> None:
    traces = [make_trace("a", i) for i in range(2)]
    verdicts = [verdict(t, "ok", True) for t in traces]
    assert summarize(make_run(), traces, verdicts).all_gates_passed
    verdicts[1] = verdict(traces[1], "ok", None, error="boom")
    s = summarize(make_run(), traces, verdicts)
    assert not s.all_gates_passed
    assert s.scenarios[0].status == "error"
    assert not summarize(make_run(), [], []).all_gates_passed


def test_unjudged_traces_are_unscored_not_passed() -> None:
    traces = [make_trace("a", 0), make_trace("a", 1)]
    s = summarize(make_run(), traces, [verdict(traces[0], "ok", True)])
    a = s.scenarios[0]
    assert [t.status for t in a.trial_results] == ["pass", "unscored"]
    assert (a.status, a.unscored, a.rate.n) == ("incomplete", 1, 1)
    assert not s.all_gates_passed


def test_latest_verdict_per_name_wins() -> None:
    t = make_trace("a", 0)
    history = [verdict(t, "ok", False), verdict(t, "ok", True)]  # re-scored after a judge fix
    assert summarize(make_run(), [t], history).scenarios[0].status == "pass"
    assert summarize(make_run(), [t], history[::-1]).scenarios[0].status == "fail"


def test_scenarios_set_order_expected_trials_and_include_unrun() -> None:
    scenarios = [Scenario(id="z-first", prompt="p", trials=3, tags=["smoke"], description="Zed"),
                 Scenario(id="never-ran", prompt="p", trials=2)]
    traces = [make_trace("z-first", 0), make_trace("z-first", 2), make_trace("extra", 0)]
    verdicts = [verdict(t, "ok", True) for t in traces]
    s = summarize(make_run(), traces, verdicts, scenarios)
    assert [x.scenario_id for x in s.scenarios] == ["z-first", "never-ran", "extra"]
    first, never, extra = s.scenarios
    assert (first.status, first.expected_trials, first.missing_trials) == ("incomplete", 3, [1])
    assert (first.tags, first.description, first.split) == (["smoke"], "Zed", "train")
    assert (never.status, never.trials, never.missing_trials) == ("incomplete", 0, [0, 1])
    assert (extra.status, extra.expected_trials) == ("pass", None)
    assert s.totals.missing == 3
    assert not s.all_gates_passed


def test_scenarios_may_be_given_as_a_mapping() -> None:
    scenarios = {"b": Scenario(id="b", prompt="p", trials=2), "a": Scenario(id="a", prompt="p")}
    s = summarize(make_run(), [], [], scenarios)
    assert [(x.scenario_id, x.missing_trials) for x in s.scenarios] == [("b", [0, 1]), ("a", [0])]


def test_run_trial_override_sets_expected_trials() -> None:
    scenarios = [Scenario(id="a", prompt="p", trials=5)]
    traces = [make_trace("a", 0)]
    s = summarize(make_run(trials=1), traces, [verdict(traces[0], "ok", True)], scenarios)
    assert s.scenarios[0].expected_trials == 1
    assert s.scenarios[0].status == "pass"


def test_long_rationales_are_clipped_in_the_summary() -> None:
    t = make_trace("a", 0)
    s = summarize(make_run(), [t], [verdict(t, "ok", False, rationale="x" * 50_000)])
    text = s.scenarios[0].trial_results[0].failures[0].rationale
    assert len(text) < MAX_SUMMARY_TEXT + 100
    assert "46,000 more characters" in text


def test_summary_round_trips_through_json() -> None:
    run, traces, verdicts = sample_run()
    s = summarize(run, traces, verdicts)
    again = RunSummary.model_validate_json(s.model_dump_json())
    assert again == s
    assert again.scenario("booking") is not None


def test_summary_from_a_real_store_matches_in_memory(tmp_path: Path) -> None:
    run, traces, verdicts = sample_run()
    with SQLiteStore(tmp_path / ".costar") as store:
        store.create_run(run)
        store.write_traces(traces)
        # An older verdict the store must shadow with the newer one.
        store.write_verdicts([verdict(traces[0], "mentions_rain", False)], run_id=run.run_id)
        store.write_verdicts(verdicts, run_id=run.run_id)
        from_store = summarize(store.get_run(run.run_id), store.iter_traces(run.run_id, spans=False),
                               store.verdicts(run_id=run.run_id))
    in_memory = summarize(run, traces, verdicts)
    assert from_store.model_dump(exclude={"created_at"}) == in_memory.model_dump(exclude={"created_at"})
