"""Flaky agent or flaky judge: re-judging stored traces splits a change into the agent's part and the judge's.

Real runs (an in-process agent), a real LLM judge against the scripted model server, whose answers
are scripted by request index so the judge's behaviour is known exactly."""

from __future__ import annotations

import numpy as np
import pytest

from costar.api import run_suite
from costar.judges.llm import LlmJudge
from costar.judges.registry import JudgeRegistry
from costar.models.cache import cache_bypassed
from costar.models.client import ModelClient
from costar.rejudge import decompose, rejudge
from costar.scenario import Scenario
from costar.store.sqlite import SQLiteStore
from costar.testing import Rule, ScriptedModelServer

TRIALS, K = 6, 4
PASS = {"rationale": "It answers.", "value": True}
FAIL = {"rationale": "It does not answer.", "value": False}


def answer_42(prompt: str) -> str:
    return "The answer is 42."


def answer_41(prompt: str) -> str:
    return "The answer is 41."


def _scenario(judges: list[str]) -> Scenario:
    return Scenario.model_validate({"id": "sum", "prompt": "What is 6 x 7?", "trials": TRIALS, "judges": judges})


def _registry(server: ScriptedModelServer) -> JudgeRegistry:
    registry = JudgeRegistry(templates=False)
    registry.register("correct", LlmJudge("correct", "Does this answer 6 x 7 correctly? {{outputs}}",
                                          model=server.model_uri()))
    return registry


def test_a_change_that_re_judging_does_not_reproduce_is_the_judges(tmp_path) -> None:
    # The judge passes every trace of the first run and fails every trace of the second, on the very
    # same answers; asked again, it passes every other time: a coin, not a regression.
    passes = [*range(TRIALS), *range(2 * TRIALS, 2 * TRIALS + 4 * TRIALS * K, 2)]
    with ScriptedModelServer([Rule(call_index=passes, json=PASS), Rule(json=FAIL)]) as srv:
        registry = _registry(srv)
        store = tmp_path / ".costar"
        base = run_suite([_scenario(["correct"])], {"type": "python", "target": f"{__name__}:answer_42"},
                         store=store, registry=registry)
        head = run_suite([_scenario(["correct"])], {"type": "python", "target": f"{__name__}:answer_42"},
                         store=store, registry=registry)
        with SQLiteStore(store) as st:
            report = rejudge(st, base.run.run_id, head.run.run_id, ["sum"], k=K, registry=registry)
        requests = len(srv.requests)
    noise = report.scenario("sum")
    assert noise is not None
    assert requests == 2 * TRIALS + 2 * TRIALS * K  # every re-judgment reached the model
    assert noise.judge_calls == 2 * TRIALS * K
    assert noise.observed_delta == -1.0
    assert noise.base.rejudged_rate == 0.5
    assert noise.head.rejudged_rate == 0.5
    assert noise.agent_delta.value == 0.0
    assert noise.judge_delta.value == -1.0
    assert noise.judge_share.value == 1.0
    assert noise.judge_delta.excludes_zero()
    assert not noise.agent_delta.excludes_zero()
    assert noise.call == "judge"
    assert noise.judges == ["correct"]
    assert noise.base.disagreement.value is not None
    assert noise.base.disagreement.value > 0.4  # two samples of the same trace disagree about half the time


def test_a_change_that_re_judging_reproduces_is_the_agents(tmp_path) -> None:
    rules = [Rule(any_message="answer is 42", json=PASS), Rule(json=FAIL)]
    with ScriptedModelServer(rules) as srv:
        registry = _registry(srv)
        store = tmp_path / ".costar"
        base = run_suite([_scenario(["correct"])], {"type": "python", "target": f"{__name__}:answer_42"},
                         store=store, registry=registry)
        head = run_suite([_scenario(["correct"])], {"type": "python", "target": f"{__name__}:answer_41"},
                         store=store, registry=registry)
        with SQLiteStore(store) as st:
            report = rejudge(st, base.run.run_id, head.run.run_id, ["sum"], k=K, registry=registry)
    noise = report.scenario("sum")
    assert noise is not None
    assert noise.observed_delta == -1.0
    assert noise.agent_delta.value == -1.0
    assert noise.judge_delta.value == 0.0
    assert noise.judge_share.value == 0.0
    assert noise.call == "agent"
    assert noise.base.disagreement.value == 0.0


def test_a_scenario_decided_by_checks_only_needs_no_judge_calls(tmp_path) -> None:
    sc = Scenario.model_validate({"id": "sum", "prompt": "6 x 7?", "trials": 3,
                                  "expectations": {"checks": [{"output_contains": "42"}]}})
    store = tmp_path / ".costar"
    base = run_suite([sc], {"type": "python", "target": f"{__name__}:answer_42"}, store=store)
    head = run_suite([sc], {"type": "python", "target": f"{__name__}:answer_41"}, store=store)
    with SQLiteStore(store) as st:
        report = rejudge(st, base.run.run_id, head.run.run_id, ["sum"], k=K)
    noise = report.scenario("sum")
    assert noise is not None
    assert noise.judge_calls == 0
    assert noise.call == "agent"
    assert noise.judge_share.value == 0.0
    assert "only deterministic checks" in noise.explanation


def test_k_below_two_is_refused(tmp_path) -> None:
    with SQLiteStore(tmp_path / ".costar") as st, pytest.raises(ValueError, match="k ≥ 2"):
        rejudge(st, "a", "b", ["sum"], k=1)


def test_the_decomposition_on_known_numbers() -> None:
    # Base: 4 traces the judge passed, each re-judged pass 3 of 4 times; head: 4 failed, re-judged 1 of 4.
    base = [(1, np.array([1.0, 1, 1, 0]))] * 4
    head = [(0, np.array([1.0, 0, 0, 0]))] * 4
    est = decompose(base, head, replicates=500)
    assert est["delta"].value == -1.0
    assert est["agent"].value == pytest.approx(-0.5)
    assert est["judge"].value == pytest.approx(-0.5)
    assert est["share"].value == pytest.approx(0.5)
    assert est["dis_base"].value == pytest.approx(2 * 0.75 * 0.25 * 4 / 3)
    assert est["agent"].low is not None
    assert est["agent"].low <= -0.5 <= est["agent"].high  # type: ignore[operator]


def test_the_cache_is_bypassed_only_inside_the_block(tmp_path) -> None:
    with ScriptedModelServer([Rule(text="hi")]) as srv:
        client = ModelClient(srv.model_uri(), cache="read_write", cache_dir=tmp_path / "cache")
        client.chat("hello")
        client.chat("hello")
        assert len(srv.requests) == 1  # the second answer came from the cache
        with cache_bypassed():
            client.chat("hello")
            client.chat("hello")
        assert len(srv.requests) == 3
        client.chat("hello")
        assert len(srv.requests) == 3


def test_compare_rejudge_on_the_command_line(tmp_path) -> None:
    import json
    import subprocess

    import yaml

    from tests.support.cli import child_env, costar_cmd

    passes = [*range(TRIALS), *range(2 * TRIALS, 2 * TRIALS + 4 * TRIALS * K, 2)]
    with ScriptedModelServer([Rule(call_index=passes, json=PASS), Rule(json=FAIL)]) as srv:
        (tmp_path / "judges").mkdir()
        (tmp_path / "judges" / "correct.yaml").write_text(yaml.safe_dump({
            "name": "correct", "type": "llm", "model": srv.model_uri(),
            "instructions": "Does this answer 6 x 7 correctly? {{outputs}}"}))
        (tmp_path / "scenarios").mkdir()
        (tmp_path / "scenarios" / "sum.yaml").write_text(yaml.safe_dump(
            {"id": "sum", "prompt": "What is 6 x 7?", "trials": TRIALS, "judges": ["correct"]}))
        (tmp_path / "agent42.py").write_text("def run(prompt):\n    return 'The answer is 42.'\n")
        (tmp_path / "costar.yaml").write_text(yaml.safe_dump({"suite": "scenarios",
                                                              "agent": {"type": "python", "target": "agent42:run"}}))

        def costar(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run([*costar_cmd(), *args], cwd=tmp_path, env=child_env(), capture_output=True,
                                  text=True, timeout=300)

        assert costar("run", "--id-file", "base.txt").returncode == 0
        assert costar("run", "--id-file", "head.txt").returncode == 1
        base, head = ((tmp_path / f).read_text().strip() for f in ("base.txt", "head.txt"))
        out = costar("compare", base, head, "--rejudge", str(K), "--json")
        md = costar("compare", base, head, "--no-attribution", "--markdown", "-")
        bad = costar("compare", base, head, "--rejudge", "1")
    assert out.returncode == 1, out.stderr
    report = json.loads(out.stdout)["rejudge"]
    noise = report["scenarios"][0]
    assert (noise["scenario_id"], noise["call"], noise["judge_calls"]) == ("sum", "judge", 2 * TRIALS * K)
    assert noise["judge_share"]["value"] == 1.0
    assert md.stdout.startswith("<!-- costar -->")
    assert "Flaky judge or agent" not in md.stdout  # only with --rejudge
    assert bad.returncode == 2
    assert "--rejudge" in bad.stderr
