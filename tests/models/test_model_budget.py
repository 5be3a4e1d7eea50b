"""Model-call limits for a whole scoring job: the money budget (--budget-usd), a default pace (--rpm), and
the cluster limiter's pacing logic (the state a Ray actor holds; here driven directly)."""

from __future__ import annotations

import asyncio
import subprocess
import time
from pathlib import Path

import pytest

from costar.models.client import ModelClient
from costar.models.errors import ModelBudgetExceededError
from costar.models.limits import set_budget
from costar.run.ray_limits import ClusterLimiter
from costar.store.sqlite import SQLiteStore
from costar.testing import Rule, ScriptedModelServer
from tests.support.cli import child_env, costar_cmd
from tests.support.waiting import wait_for_async


def test_a_spent_budget_refuses_the_next_call_before_it_is_sent() -> None:
    server = ScriptedModelServer([], default=Rule(name="r", text="hi")).start()
    try:
        budget = set_budget(0.000001)
        client = ModelClient(f"openai-compatible:/gpt-4o?base_url={server.base_url}")
        first = client.chat("hello")
        assert first.cost_usd > 0
        assert budget is not None
        assert budget.spent_usd == pytest.approx(first.cost_usd)
        with pytest.raises(ModelBudgetExceededError, match=r"the model budget of \$0.000001 is spent \(\$0.000013\); no "
                                                          r"further model calls are made: raise the budget"):
            client.chat("again")
        assert len(server.requests) == 1
        set_budget(None)
        assert client.chat("now free").text == "hi"
    finally:
        set_budget(None)
        server.stop()


def test_assess_budget_and_pace_in_one_process(tmp_path: Path) -> None:
    server = ScriptedModelServer([], default=Rule(name="j", json={"value": True, "rationale": "42"})).start()
    try:
        (tmp_path / "costar.yaml").write_text("suite: s.yaml\nstore: .costar\nagent: 'cmd:echo 42'\n")
        body = "".join(f"- {{id: s{i}, prompt: 'total?'}}\n" for i in range(4))
        (tmp_path / "s.yaml").write_text(body)
        res = subprocess.run([*costar_cmd(), "run", "--no-progress"], cwd=tmp_path, env=child_env(),
                             capture_output=True, text=True, timeout=120)
        assert res.returncode == 0, res.stdout + res.stderr
        (tmp_path / "judges").mkdir()
        (tmp_path / "judges" / "q.yaml").write_text(
            f"name: q\ntype: llm\nmodel: openai-compatible:/gpt-4o?base_url={server.base_url}\ninstructions: 42?\n")
        (tmp_path / "s.yaml").write_text(body.replace("prompt: 'total?'", "prompt: 'total?', judges: [q]"))
        paced = subprocess.run([*costar_cmd(), "assess", "--rpm", "60"], cwd=tmp_path, env=child_env(),
                               capture_output=True, text=True, timeout=120)
        assert paced.returncode == 0, paced.stdout + paced.stderr
        times = sorted(r.received_at for r in server.requests)
        assert len(times) == 4
        # 60 a minute: a call a second, so the last leaves three seconds after the first was let go; the
        # first's own start-up (imports, a connection) can delay it after its turn by a second or more on a
        # loaded machine, so less is asserted. Unpaced, all four arrive within a few milliseconds.
        assert times[-1] - times[0] >= 1.0
        # Paced, so the first call's cost is charged before the next is let go (calls already in flight
        # when the budget runs out still finish).
        capped = subprocess.run([*costar_cmd(), "assess", "--force", "--budget-usd", "0.000001", "--rpm", "60"],
                                cwd=tmp_path,
                                env=child_env(), capture_output=True, text=True, timeout=120)
        assert capped.returncode == 1, capped.stdout + capped.stderr
        assert len(server.requests) == 5  # one more call, then the budget was spent
        store = SQLiteStore(tmp_path / ".costar")
        latest = {}
        for v in sorted(store.verdicts(), key=lambda v: v.created_at):
            if v.name == "q":
                latest[v.trace_id] = v
        assert sum(1 for v in latest.values() if v.error and "budget" in v.error) == 3
        store.close()
    finally:
        server.stop()


def test_cluster_limiter_paces_calls_in_order_and_keeps_one_budget() -> None:
    async def scenario() -> tuple[list[float], list[bool]]:
        limiter = ClusterLimiter(requests_per_minute=1200, budget_usd=1.0)  # 50 ms apart
        sent: list[float] = []

        async def call(i: int) -> bool:
            ok = await limiter.acquire("m", None, None, None)
            if ok:
                sent.append(time.monotonic())
                limiter.charge(0.3)
                await limiter.release("m")
            return ok

        results = [await call(i) for i in range(6)]
        return sent, results

    sent, results = asyncio.run(scenario())
    assert results == [True, True, True, True, False, False]  # 4 × $0.30 passes $1.00: the 5th is refused
    # Each call leaves at least one interval after the one before it was let go (a late wake-up of one
    # does not let the next leave early: measured from the first, which did not wait).
    assert all(t - sent[0] >= k * 0.05 - 0.002 for k, t in enumerate(sent))


def test_calls_waiting_for_their_turn_are_refused_as_soon_as_the_budget_is_spent() -> None:
    async def scenario() -> tuple[list[bool], float]:
        limiter = ClusterLimiter(requests_per_minute=6, budget_usd=0.5)  # 10 s apart
        first = await limiter.acquire("m", None, None, None)
        waiting = [asyncio.ensure_future(limiter.acquire("m", None, None, None)) for _ in range(3)]
        # Each waiting call holds a slot while it waits for its turn: all three are parked.
        await wait_for_async(lambda: limiter._in_use.get("m") == 4, timeout=5, what="three calls waiting their turn")
        t0 = time.monotonic()
        limiter.charge(1.0)  # the first call's cost spends the budget
        refused = await asyncio.gather(*waiting)
        return [first, *refused], time.monotonic() - t0

    results, waited = asyncio.run(scenario())
    assert results == [True, False, False, False]
    assert waited < 2.0  # not the 10, 20 and 30 s their turns were due at


def test_cluster_limiter_holds_concurrency_per_model() -> None:
    async def scenario() -> int:
        limiter = ClusterLimiter(max_concurrency=2)
        busy = 0
        peak = 0

        async def call() -> None:
            nonlocal busy, peak
            assert await limiter.acquire("m", None, None, None)
            busy += 1
            peak = max(peak, busy)
            await asyncio.sleep(0.02)  # the call's work: long enough for calls to overlap
            busy -= 1
            await limiter.release("m")

        await asyncio.gather(*(call() for _ in range(8)))
        return peak

    assert asyncio.run(scenario()) == 2
