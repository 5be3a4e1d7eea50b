"""Comparing two runs in a real store: exact tests over trials, multiplicity, judge changes, metric
deltas, the CI exit code, and the real tau-bench runs split into two pseudo-runs."""

from __future__ import annotations

import io
import json
import math
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from rich.console import Console

from costar.compare import Comparison, compare_runs, compare_summaries, holm_adjust, stored_summary
from costar.report.terminal_comparison import render_comparison
from costar.scenario import Scenario
from costar.stats import boschloo_exact
from costar.store.base import Run
from costar.store.sqlite import SQLiteStore
from costar.summary import summarize
from costar.trace.formats.taubench import import_taubench
from costar.trace.model import AgentInfo, Totals, Trace
from costar.verdict import Verdict
from tests.support.paths import EXTERNAL

TAU_BENCH = EXTERNAL / "tau-bench" / "gpt-4o-airline.json"


def _store_run(store: SQLiteStore, run_id: str, results: dict[str, tuple[int, int]], *, created_at: float = 1.0,
               judge: str = "check", fingerprint: str = "fp1", tokens: int = 1000, latency_s: float = 2.0) -> None:
    """A run whose scenario ``sid`` has ``passes`` passing trials out of ``n``, each judged by ``judge``."""
    store.create_run(Run(run_id=run_id, created_at=created_at, status="finished", agent=AgentInfo(name="bot")))
    traces, verdicts = [], []
    for sid, (passes, n) in results.items():
        for trial in range(n):
            tid = f"{run_id}-{sid}-{trial}"
            traces.append(Trace(trace_id=tid, run_id=run_id, scenario_id=sid, trial=trial,
                                totals=Totals(total_tokens=tokens + trial, cost_usd=tokens / 1e6, latency_s=latency_s)))
            verdicts.append(Verdict(name=judge, passed=trial < passes, value=trial < passes, trace_id=tid,
                                    fingerprint=fingerprint))
    store.write_traces(traces)
    store.write_verdicts(verdicts, run_id=run_id)


def _render(comparison: Comparison) -> str:
    console = Console(file=io.StringIO(), width=240, color_system=None)
    render_comparison(comparison, console)
    return console.file.getvalue()  # type: ignore[attr-defined]


# ----------------------------------------------------------------------------- decisions


def test_clear_regression_gates(store: SQLiteStore) -> None:
    _store_run(store, "base", {"a": (10, 10)})
    _store_run(store, "head", {"a": (2, 10)}, created_at=2.0)
    c = compare_runs(store, "base", "head")
    a = c.scenario("a")
    assert a is not None
    assert a.change == "regressed"
    assert a.rates is not None
    assert a.rates.p_value == pytest.approx(boschloo_exact(10, 10, 2, 10))
    assert a.rates.p_value < 0.05
    assert (a.rates.base.successes, a.rates.base.n, a.rates.head.successes, a.rates.head.n) == (10, 10, 2, 10)
    assert a.rates.head.low < a.rates.head.value < a.rates.head.high  # type: ignore[operator]
    assert c.overall.change == "regressed"
    judge = c.judge("check")
    assert judge is not None
    assert judge.change == "regressed"
    assert judge.gating
    assert c.has_significant_regression
    assert c.exit_code == 1
    out = _render(c)
    assert "REGRESSION" in out
    assert "10/10" in out
    assert "2/10" in out
    assert "<0.001" in out


def test_small_difference_is_inconclusive(store: SQLiteStore) -> None:
    _store_run(store, "base", {"a": (3, 4)})
    _store_run(store, "head", {"a": (2, 4)}, created_at=2.0)
    c = compare_runs(store, "base", "head")
    assert c.scenario("a").change == "inconclusive"  # type: ignore[union-attr]
    assert c.overall.change == "inconclusive"
    assert c.exit_code == 0
    assert "no significant regression" in _render(c)


def test_identical_runs_are_unchanged(store: SQLiteStore) -> None:
    _store_run(store, "base", {"a": (7, 10), "b": (10, 10)})
    _store_run(store, "head", {"a": (7, 10), "b": (10, 10)}, created_at=2.0)
    c = compare_runs(store, "base", "head")
    assert [s.change for s in c.scenarios] == ["unchanged", "unchanged"]
    assert c.overall.change == "unchanged"
    assert c.overall.p_value == 1.0
    assert c.judge("check").change == "unchanged"  # type: ignore[union-attr]
    assert not c.has_significant_regression
    assert c.warnings == []


def test_improvement_does_not_gate(store: SQLiteStore) -> None:
    _store_run(store, "base", {"a": (1, 10)})
    _store_run(store, "head", {"a": (9, 10)}, created_at=2.0)
    c = compare_runs(store, "base", "head")
    assert c.scenario("a").change == "improved"
    assert c.exit_code == 0  # type: ignore[union-attr]


def test_added_and_removed_scenarios(store: SQLiteStore) -> None:
    _store_run(store, "base", {"a": (5, 5), "gone": (0, 5)})
    _store_run(store, "head", {"a": (5, 5), "new": (0, 5)}, created_at=2.0)
    c = compare_runs(store, "base", "head")
    changes = {s.scenario_id: s.change for s in c.scenarios}
    assert changes == {"a": "unchanged", "new": "added", "gone": "removed"}
    new = c.scenario("new")
    assert new is not None
    assert new.base_rate is None
    assert new.head_rate is not None
    assert new.rates is None
    # The overall rate covers the shared scenario only: the hard new one is not a regression.
    assert (c.overall.base.successes, c.overall.base.n, c.overall.head.n) == (5, 5, 5)
    assert c.overall.change == "unchanged"
    assert c.exit_code == 0
    assert any("1 added, 1 removed" in w for w in c.warnings)
    out = _render(c)
    assert "ADDED" in out
    assert "REMOVED" in out


def test_judge_fingerprint_change_is_flagged(store: SQLiteStore) -> None:
    _store_run(store, "base", {"a": (5, 10)}, fingerprint="fp-old")
    _store_run(store, "head", {"a": (5, 10)}, fingerprint="fp-new", created_at=2.0)
    c = compare_runs(store, "base", "head")
    judge = c.judge("check")
    assert judge is not None
    assert judge.fingerprint_changed
    assert judge.base_fingerprints == ["fp-old"]
    assert judge.head_fingerprints == ["fp-new"]
    assert "judge check changed between runs: comparison measures the judge too" in c.warnings
    assert "(changed)" in _render(c)


def test_judges_added_removed_and_metrics(store: SQLiteStore) -> None:
    _store_run(store, "base", {"a": (5, 5)}, judge="old-check")
    _store_run(store, "head", {"a": (5, 5)}, judge="new-check", created_at=2.0)
    extra = [Verdict(name="score", value=v, passed=None, gating=False, trace_id=f"{run}-a-{i}")
             for run, v in (("base", 0.5), ("head", 0.75)) for i in range(5)]
    store.write_verdicts(extra)
    c = compare_runs(store, "base", "head")
    changes = {j.name: j.change for j in c.judges}
    assert changes == {"old-check": "removed", "new-check": "added", "score": "metric"}
    score = c.judge("score")
    assert score is not None
    assert (score.base_mean, score.head_mean) == (0.5, 0.75)
    assert not score.gating


# ----------------------------------------------------------------------------- multiplicity


def test_holm_adjustment_by_hand() -> None:
    # sorted: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 -> kept monotone at 0.06
    assert holm_adjust([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm_adjust([]) == []
    assert holm_adjust([0.6, 0.9]) == pytest.approx([1.0, 1.0])
    multitest = pytest.importorskip("statsmodels.stats.multitest")
    ps = [0.001, 0.2, 0.013, 0.04, 0.5, 0.0004, 0.049]
    assert holm_adjust(ps) == pytest.approx(list(multitest.multipletests(ps, method="holm")[1]))


def test_one_lucky_scenario_among_many_is_not_a_regression(store: SQLiteStore) -> None:
    steady = {f"s{i:02d}": (10, 10) for i in range(20)}
    _store_run(store, "base", {**steady, "wobbly": (10, 10)})
    _store_run(store, "head", {**steady, "wobbly": (5, 10)}, created_at=2.0)
    c = compare_runs(store, "base", "head")
    wobbly = c.scenario("wobbly")
    assert wobbly is not None
    assert wobbly.rates is not None
    assert wobbly.rates.p_value == pytest.approx(0.0128, abs=1e-4)  # significant alone (Boschloo)...
    assert wobbly.rates.p_adjusted == pytest.approx(min(1.0, 21 * wobbly.rates.p_value))
    assert wobbly.change == "inconclusive"  # ...not among 21 tests
    assert not c.has_significant_regression
    uncorrected = compare_runs(store, "base", "head", correction="none")
    assert uncorrected.scenario("wobbly").change == "regressed"  # type: ignore[union-attr]
    assert uncorrected.exit_code == 1
    with pytest.raises(ValueError):
        compare_runs(store, "base", "head", alpha=1.5)


# ----------------------------------------------------------------------------- metrics, JSON


def test_metric_deltas_are_medians_per_trial(store: SQLiteStore) -> None:
    _store_run(store, "base", {"a": (3, 3)}, tokens=1000, latency_s=2.0)
    _store_run(store, "head", {"a": (3, 3)}, tokens=2000, latency_s=1.0, created_at=2.0)
    c = compare_runs(store, "base", "head")
    deltas = {d.metric: d for d in c.scenario("a").metrics}  # type: ignore[union-attr]
    tokens = deltas["total_tokens"]
    # trials use tokens + trial: medians 1001 and 2001
    assert (tokens.base, tokens.head, tokens.delta) == (1001, 2001, 1000)
    assert tokens.relative == pytest.approx(1000 / 1001)
    assert deltas["latency_s"].relative == pytest.approx(-0.5)
    assert deltas["cost_usd"].head == pytest.approx(0.002)
    assert {d.metric for d in c.metrics} == {"total_tokens", "cost_usd", "latency_s"}
    assert "+100%" in _render(c)


def test_comparison_json_round_trip(store: SQLiteStore) -> None:
    _store_run(store, "base", {"a": (10, 10), "b": (3, 4)})
    _store_run(store, "head", {"a": (2, 10), "c": (1, 1)}, created_at=2.0, fingerprint="fp2")
    c = compare_runs(store, "base", "head")
    data = json.loads(c.model_dump_json())
    assert data["has_significant_regression"] is True
    assert data["exit_code"] == 1
    assert Comparison.model_validate(data) == c
    # The library path over summaries gives the same answer as the store path (which adds the
    # tool attribution, read from the traces).
    again = compare_summaries(stored_summary(store, "base"), stored_summary(store, "head"))
    assert c.attribution is not None
    assert again == c.model_copy(update={"attribution": None})


def test_summaries_without_a_store() -> None:
    def summary(run_id: str, passes: int) -> object:
        traces = [Trace(trace_id=f"{run_id}{i}", scenario_id="a", trial=i) for i in range(10)]
        verdicts = [Verdict(name="check", passed=i < passes, trace_id=f"{run_id}{i}") for i in range(10)]
        return summarize(Run(run_id=run_id), traces, verdicts)

    c = compare_summaries(summary("b", 9), summary("h", 1))  # type: ignore[arg-type]
    assert c.scenario("a").change == "regressed"
    assert c.exit_code == 1  # type: ignore[union-attr]


def test_judge_errors_are_left_out_and_said(store: SQLiteStore) -> None:
    _store_run(store, "base", {"a": (4, 4)})
    _store_run(store, "head", {"a": (4, 4)}, created_at=2.0)
    store.write_verdicts([Verdict.failure("check", "model timed out", trace_id="head-a-0")])
    c = compare_runs(store, "base", "head")
    a = c.scenario("a")
    assert a is not None
    assert a.head_rate is not None
    assert a.head_rate.n == 3
    assert any("head run: 1 of 4 trials had judge errors" in w for w in c.warnings)


def test_missing_trials_are_said(store: SQLiteStore) -> None:
    _store_run(store, "base", {"a": (4, 4)})
    _store_run(store, "head", {"a": (4, 4)}, created_at=2.0)
    store.save_scenarios("head", [Scenario(id="a", prompt="go", trials=6)])
    c = compare_runs(store, "base", "head")
    assert "head run: 2 planned trials never recorded (interrupted run?)" in c.warnings
    assert c.scenario("a").change == "unchanged"  # type: ignore[union-attr]


# ----------------------------------------------------------------------------- real tau-bench runs


@dataclass
class TauRuns:
    store: SQLiteStore
    zeroed_tasks: set[int]


@pytest.fixture(scope="module")
def tau(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TauRuns]:
    """The 200 tau-bench runs as BASE (trials 0-1), HEAD (trials 2-3) and a HEAD whose rewards
    are zeroed for the first 10 tasks (by id) that HEAD ever passed."""
    if not TAU_BENCH.exists():
        pytest.skip("tau-bench data not available")
    traces, verdicts = import_taubench(TAU_BENCH)
    verdict_of = {v.trace_id: v for v in verdicts}
    st = SQLiteStore(tmp_path_factory.mktemp("tau") / ".costar")
    agent = traces[0].agent
    head = [t for t in traces if t.trial >= 2]
    passed_in_head = sorted({int(t.metadata["task_id"]) for t in head if verdict_of[t.trace_id].passed})
    zeroed_tasks = set(passed_in_head[:10])
    zeroed = []
    zeroed_verdicts = []
    for t in head:
        copy = t.model_copy(update={"trace_id": t.trace_id + "-z", "spans": []})
        zeroed.append(copy)
        v = verdict_of[t.trace_id]
        if int(t.metadata["task_id"]) in zeroed_tasks:
            v = v.model_copy(update={"value": 0.0, "passed": False})
        zeroed_verdicts.append(v.model_copy(update={"trace_id": copy.trace_id}))
    for i, (run_id, run_traces, run_verdicts) in enumerate((
            ("base", [t for t in traces if t.trial < 2], verdicts),
            ("head", head, verdicts),
            ("zeroed", zeroed, zeroed_verdicts))):
        st.create_run(Run(run_id=run_id, created_at=float(i), status="imported", agent=agent))
        ids = {t.trace_id for t in run_traces}
        st.write_traces([t.model_copy(update={"run_id": run_id}) for t in run_traces])
        st.write_verdicts([v for v in run_verdicts if v.trace_id in ids], run_id=run_id)
    yield TauRuns(st, zeroed_tasks)
    st.close()


def _raw_rewards() -> dict[str, dict[int, float]]:
    rewards: dict[str, dict[int, float]] = defaultdict(dict)
    for run in json.loads(TAU_BENCH.read_text()):
        rewards[f"tau-bench/airline/task-{run['task_id']}"][run["trial"]] = float(run["reward"])
    return rewards


def test_tau_bench_split_in_two_shows_no_spurious_regression(tau: TauRuns) -> None:
    c = compare_runs(tau.store, "base", "head")
    assert len(c.scenarios) == 50
    assert {s.change for s in c.scenarios} <= {"unchanged", "inconclusive"}
    counts = c.counts()
    assert counts.get("unchanged", 0) > counts.get("inconclusive", 0)
    assert c.overall.change in ("unchanged", "inconclusive")
    assert c.overall.p_value > 0.5
    assert (c.overall.base.n, c.overall.head.n) == (100, 100)
    assert not c.has_significant_regression
    assert c.exit_code == 0
    assert c.judge("tau-bench.reward").change in ("unchanged", "inconclusive")  # type: ignore[union-attr]


def test_tau_bench_pass_hat_k_matches_the_raw_rewards(tau: TauRuns) -> None:
    c = compare_runs(tau.store, "base", "head")
    rewards = _raw_rewards()
    for s in c.scenarios:
        assert s.pass_hat_k is not None
        assert s.pass_hat_k.k == 2
        for side, trials in (("base", (0, 1)), ("head", (2, 3))):
            passes = sum(rewards[s.scenario_id][t] == 1.0 for t in trials)
            # pass^2 over 2 trials: C(c, 2) / C(2, 2) -- 1 only when both trials passed.
            assert getattr(s.pass_hat_k, side) == math.comb(passes, 2) / math.comb(2, 2), (s.scenario_id, side)
            rate = s.base_rate if side == "base" else s.head_rate
            assert rate is not None
            assert (rate.successes, rate.n) == (passes, 2)


def test_tau_bench_zeroed_head_is_a_regression(tau: TauRuns) -> None:
    c = compare_runs(tau.store, "base", "zeroed")
    rewards = _raw_rewards()
    zeroed = {f"tau-bench/airline/task-{t}" for t in tau.zeroed_tasks}
    head_passes = sum(r[t] == 1.0 for sid, r in rewards.items() if sid not in zeroed for t in (2, 3))
    base_passes = sum(r[t] == 1.0 for r in rewards.values() for t in (0, 1))
    assert (c.overall.base.successes, c.overall.head.successes) == (base_passes, head_passes)
    assert c.overall.p_value == pytest.approx(boschloo_exact(base_passes, 100, head_passes, 100))
    assert c.overall.change == "regressed"
    assert c.overall.p_value < 0.05
    # Two trials per task cannot show a regression in any one task: the run as a whole does.
    assert all(s.change in ("unchanged", "inconclusive") for s in c.scenarios)
    assert c.has_significant_regression
    assert c.exit_code == 1
    out = _render(c)
    assert "REGRESSION" in out
    assert "overall" in out
