"""Flaky agent or flaky judge? Re-judge the stored traces and split a change into the two.

A scenario's pass rate moved between BASE and HEAD. Before running the agent again, the traces both
runs recorded are judged again, ``k`` times each, by the scenario's model-based judges (LLM and
agentic judges; deterministic checks give the same verdict every time and are kept as stored), with
the model response cache bypassed so every sample is a fresh answer. Each of the k rounds decides
the trial again by the usual rule (``costar.summary.trial_status``), which gives, per trace
t, ``p_t``: the share of rounds in which the judges pass it.

Method (docs/MCP.md, "Flaky agent or flaky judge"), per scenario, with ``y_t`` the stored trial
outcome (1 pass, 0 fail; error and unscored trials are left out, as in pass rates):

* observed change ``Δ = mean(y | HEAD) − mean(y | BASE)``: what the comparison reported;
* agent's part ``Δ_agent = mean(p | HEAD) − mean(p | BASE)``: the change in what the traces
  themselves earn once the judge's sampling is averaged out;
* judge's part ``Δ_judge = Δ − Δ_agent``: how much the particular verdicts the judge happened to
  give moved the comparison (the mean of ``y_t − p_t``, HEAD minus BASE);
* judge's share ``Δ_judge / Δ`` (1: the whole change is judge noise; 0: none of it; outside
  [0, 1] when the two parts pull in opposite directions);
* within-trace disagreement: the probability that two samples of the judges disagree on the same
  trace, ``2·p_t·(1−p_t)·k/(k−1)`` averaged over traces (unbiased for each trace).

Intervals are 95% percentile intervals of a two-stage bootstrap (traces resampled within each run,
then each trace's k rounds resampled), so they carry both the agent's trial-to-trial variance and
the judge's. The call: **agent** when the agent's part's interval excludes 0 and the judge's does
not; **judge** when the judge's part's interval excludes 0 and the agent's does not; **both** when
both exclude 0; otherwise **inconclusive** (more trials, or a larger k, would tell).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from costar._util.aio import run_sync
from costar.assess import Assessor, current_scenarios
from costar.judges.base import Judge, JudgeContext
from costar.judges.registry import JudgeRegistry
from costar.models.cache import cache_bypassed
from costar.scenario import Scenario
from costar.store.base import Store
from costar.summary import latest_per_name, trial_status
from costar.trace.model import Trace
from costar.verdict import Verdict, VerdictSource

Call = Literal["agent", "judge", "both", "inconclusive"]
STOCHASTIC = (VerdictSource.LLM, VerdictSource.AGENT)
BOOTSTRAP = 2000


class Estimate(BaseModel):
    """A point estimate with its 95% bootstrap interval (None when it cannot be computed)."""

    model_config = ConfigDict(extra="forbid")

    value: float | None
    low: float | None = None
    high: float | None = None

    def excludes_zero(self) -> bool:
        return self.low is not None and self.high is not None and (self.low > 0 or self.high < 0)


class RunJudging(BaseModel):
    """One side of the comparison, re-judged."""

    model_config = ConfigDict(extra="forbid")

    run_id: str
    traces: int
    """Traces with a decided stored outcome and at least one decided re-judged round."""
    observed_rate: float | None
    rejudged_rate: float | None
    disagreement: Estimate


class JudgeNoise(BaseModel):
    """Flaky agent or flaky judge, for one scenario."""

    model_config = ConfigDict(extra="forbid")

    scenario_id: str
    k: int
    judges: list[str] = Field(default_factory=list)
    """The model-based judges re-asked (the rest of the verdicts are deterministic)."""
    base: RunJudging
    head: RunJudging
    observed_delta: float | None
    agent_delta: Estimate
    judge_delta: Estimate
    judge_share: Estimate
    call: Call
    explanation: str
    judge_calls: int = 0
    cost_usd: float = 0.0
    warnings: list[str] = Field(default_factory=list)


class RejudgeReport(BaseModel):
    model_config = ConfigDict(extra="forbid")

    base_run_id: str
    head_run_id: str
    k: int
    scenarios: list[JudgeNoise] = Field(default_factory=list)
    method: str = ("re-judged each stored trace k times (model cache bypassed); agent's part = change in the mean "
                   "re-judged pass probability, judge's part = the rest; 95% two-stage bootstrap intervals")

    def scenario(self, scenario_id: str) -> JudgeNoise | None:
        return next((s for s in self.scenarios if s.scenario_id == scenario_id), None)

    @property
    def judge_calls(self) -> int:
        return sum(s.judge_calls for s in self.scenarios)

    @property
    def cost_usd(self) -> float:
        return sum(s.cost_usd for s in self.scenarios)


# --------------------------------------------------------------------------- statistics


def _observed(y: Sequence[int]) -> float | None:
    return float(np.mean(y)) if len(y) else None


def _disagreement(rounds: Sequence[np.ndarray]) -> float | None:
    vals = [2 * r.mean() * (1 - r.mean()) * len(r) / (len(r) - 1) for r in rounds if len(r) >= 2]
    return float(np.mean(vals)) if vals else None


def _interval(samples: list[float]) -> tuple[float | None, float | None]:
    if not samples:
        return None, None
    lo, hi = np.percentile(samples, [2.5, 97.5])
    return float(lo), float(hi)


def _stats(base: list[tuple[int, np.ndarray]], head: list[tuple[int, np.ndarray]]) -> dict[str, float | None]:
    def side(rows: list[tuple[int, np.ndarray]]) -> tuple[float, float]:
        return float(np.mean([y for y, _ in rows])), float(np.mean([r.mean() for _, r in rows]))

    (ob, rb), (oh, rh) = side(base), side(head)
    delta, agent = oh - ob, rh - rb
    return {"delta": delta, "agent": agent, "judge": delta - agent,
            "share": (delta - agent) / delta if abs(delta) > 1e-12 else None,
            "dis_base": _disagreement([r for _, r in base]), "dis_head": _disagreement([r for _, r in head])}


def decompose(base: list[tuple[int, np.ndarray]], head: list[tuple[int, np.ndarray]], *, seed: int = 0,
              replicates: int = BOOTSTRAP) -> dict[str, Estimate]:
    """The estimates and intervals of the module docstring from (stored outcome, re-judged rounds) rows."""
    point = _stats(base, head)
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {k: [] for k in point}

    def resample(rows: list[tuple[int, np.ndarray]]) -> list[tuple[int, np.ndarray]]:
        picked = rng.integers(0, len(rows), len(rows))
        return [(rows[i][0], rows[i][1][rng.integers(0, len(rows[i][1]), len(rows[i][1]))]) for i in picked]

    for _ in range(replicates):
        stats = _stats(resample(base), resample(head))
        for key, value in stats.items():
            if value is not None:
                draws[key].append(value)
    return {key: Estimate(value=point[key], low=_interval(draws[key])[0], high=_interval(draws[key])[1])
            for key in point}


def _call(agent: Estimate, judge: Estimate) -> Call:
    a, j = agent.excludes_zero(), judge.excludes_zero()
    if a and j:
        return "both"
    if a:
        return "agent"
    if j:
        return "judge"
    return "inconclusive"


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{x * 100:+.0f} pts"


def _explain(call: Call, delta: float | None, agent: Estimate, judge: Estimate, share: Estimate, k: int) -> str:
    span = (f"agent {_pct(agent.value)} [{_pct(agent.low)}, {_pct(agent.high)}], "
            f"judge {_pct(judge.value)} [{_pct(judge.low)}, {_pct(judge.high)}]")
    share_text = "" if share.value is None else f"; judge's share {share.value:.0%}"
    head = {"agent": "the agent changed: re-judging the same traces reproduces the change",
            "judge": "judge noise: re-judging the same traces does not reproduce the change",
            "both": "both the agent and the judge's noise moved the result",
            "inconclusive": f"cannot tell them apart with these trials and k={k}: run more trials or a larger k"
            }[call]
    return f"{head} (observed {_pct(delta)}: {span}{share_text})"


# --------------------------------------------------------------------------- re-judging


def _stochastic(judges: Sequence[Judge]) -> list[Judge]:
    return [j for j in judges if j.source in STOCHASTIC]


async def _rejudge_trace(trace: Trace, scenario: Scenario, judges: Sequence[Judge], stored: list[Verdict],
                         k: int, store: Store) -> tuple[list[list[Verdict]], list[Verdict]]:
    """k rounds of the stochastic judges on one trace: per round, the trial's verdicts with the
    re-judged ones in place of the stored ones; and every re-judged verdict (for cost)."""
    ctx = JudgeContext(trace=trace, scenario=scenario, store=store)
    names = {j.name for j in judges}
    fixed = [v for v in stored if v.name not in names]
    fresh = await asyncio.gather(*(j.judge(ctx) for _ in range(k) for j in judges))
    rounds = [[*fixed, *fresh[r * len(judges):(r + 1) * len(judges)]] for r in range(k)]
    return rounds, list(fresh)


async def _rejudge_run(store: Store, run_id: str, scenario: Scenario, judges: Sequence[Judge], k: int,
                       concurrency: int) -> tuple[list[tuple[int, np.ndarray]], list[Verdict], int]:
    trace_ids = [tid for tid, sid, _ in store.trace_keys(run_id) if sid == scenario.id]
    stored = latest_per_name(store.verdicts(trace_ids=trace_ids))
    traces = await asyncio.to_thread(store.get_traces, trace_ids, spans=any(j.needs_spans for j in judges))
    sem = asyncio.Semaphore(max(1, concurrency))
    rows: list[tuple[int, np.ndarray]] = []
    spent: list[Verdict] = []
    undecided = 0

    async def one(trace: Trace) -> None:
        nonlocal undecided
        mine = stored.get(trace.trace_id, [])
        observed = trial_status(mine)
        async with sem:
            rounds, fresh = await _rejudge_trace(trace, scenario, judges, mine, k, store)
        spent.extend(fresh)
        outcomes = [trial_status(r) for r in rounds]
        decided = np.array([1 if o == "pass" else 0 for o in outcomes if o in ("pass", "fail")], dtype=float)
        if observed not in ("pass", "fail") or not len(decided):
            undecided += 1
            return
        rows.append((1 if observed == "pass" else 0, decided))

    await asyncio.gather(*(one(t) for t in traces))
    return rows, spent, undecided


def _fingerprint_warnings(judges: Sequence[Judge], stored: Sequence[Verdict], run_label: str) -> list[str]:
    out = []
    for j in judges:
        prints = {v.fingerprint for v in stored if v.name == j.name and v.fingerprint}
        if prints and j.fingerprint() not in prints:
            out.append(f"judge {j.name} changed since the {run_label} run was judged: re-judging measures the "
                       "current judge")
    return out


async def arejudge(store: Store, base_run_id: str, head_run_id: str, scenario_ids: Sequence[str], *, k: int = 5,
                   registry: JudgeRegistry | None = None, seed: int = 0, concurrency: int = 8) -> RejudgeReport:
    """Re-judge both runs' traces of each scenario ``k`` times and split each change into the
    agent's part and the judge's (see the module docstring)."""
    if k < 2:
        raise ValueError(f"re-judging needs k ≥ 2 samples per trace to see any disagreement, got {k}")
    base, head = store.get_run(base_run_id), store.get_run(head_run_id)
    scenarios = {**current_scenarios(store, base.run_id), **current_scenarios(store, head.run_id)}
    assessor = Assessor(store, registry)
    report = RejudgeReport(base_run_id=base.run_id, head_run_id=head.run_id, k=k)
    for sid in scenario_ids:
        scenario = scenarios.get(sid)
        if scenario is None:
            continue
        judges = _stochastic(assessor.judges_for(scenario))
        warnings: list[str] = []
        sides = []
        spent: list[Verdict] = []
        with cache_bypassed():
            for run in (base, head):  # one run after the other: each sees the judge as it is now
                rows, used, undecided = await _rejudge_run(store, run.run_id, scenario, judges, k, concurrency)
                spent += used
                sides.append(rows)
                if undecided:
                    warnings.append(f"{undecided} trace(s) of run {run.run_id} had no decided outcome (judge errors "
                                    "or no verdict) and are left out")
        ids = [tid for run in (base, head) for tid, s, _ in store.trace_keys(run.run_id) if s == sid]
        warnings += _fingerprint_warnings(judges, store.verdicts(trace_ids=ids), "earlier")
        report.scenarios.append(_noise(sid, k, judges, base.run_id, head.run_id, sides[0], sides[1], spent,
                                       warnings, seed))
    return report


def _noise(sid: str, k: int, judges: Sequence[Judge], base_id: str, head_id: str,
           base: list[tuple[int, np.ndarray]], head: list[tuple[int, np.ndarray]], spent: list[Verdict],
           warnings: list[str], seed: int) -> JudgeNoise:
    def side(run_id: str, rows: list[tuple[int, np.ndarray]], est: Estimate | None) -> RunJudging:
        return RunJudging(run_id=run_id, traces=len(rows), observed_rate=_observed([y for y, _ in rows]),
                          rejudged_rate=float(np.mean([r.mean() for _, r in rows])) if rows else None,
                          disagreement=est or Estimate(value=None))

    cost = sum(v.cost.cost_usd for v in spent)
    if not base or not head:
        warnings.append("a run has no decided trace of this scenario: nothing to compare")
        none = Estimate(value=None)
        return JudgeNoise(scenario_id=sid, k=k, judges=[j.name for j in judges], base=side(base_id, base, None),
                          head=side(head_id, head, None), observed_delta=None, agent_delta=none, judge_delta=none,
                          judge_share=none, call="inconclusive", explanation="no decided trials to compare",
                          judge_calls=len(spent), cost_usd=cost, warnings=warnings)
    est = decompose(base, head, seed=seed)
    if not judges:
        # Only deterministic checks decide this scenario: re-judging would change nothing.
        zero = Estimate(value=0.0, low=0.0, high=0.0)
        est["judge"], est["share"] = zero, zero
        est["agent"] = est["delta"]
    delta = est["delta"].value
    call: Call = "agent" if not judges and delta else _call(est["agent"], est["judge"])
    explanation = (_explain(call, delta, est["agent"], est["judge"], est["share"], k) if judges else
                   "only deterministic checks decide this scenario: the change is the agent's")
    return JudgeNoise(scenario_id=sid, k=k, judges=[j.name for j in judges],
                      base=side(base_id, base, est["dis_base"]), head=side(head_id, head, est["dis_head"]),
                      observed_delta=delta, agent_delta=est["agent"], judge_delta=est["judge"],
                      judge_share=est["share"], call=call, explanation=explanation, judge_calls=len(spent),
                      cost_usd=cost, warnings=warnings)


def rejudge(store: Store, base_run_id: str, head_run_id: str, scenario_ids: Sequence[str], *, k: int = 5,
            registry: JudgeRegistry | None = None, seed: int = 0, concurrency: int = 8) -> RejudgeReport:
    """``arejudge`` for callers without an event loop."""
    return run_sync(lambda: arejudge(store, base_run_id, head_run_id, scenario_ids, k=k, registry=registry,
                                     seed=seed, concurrency=concurrency))
