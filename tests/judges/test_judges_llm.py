"""LLM judges against the scripted model server over loopback: values, retries, errors, self-consistency."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from costar.assess import Assessor
from costar.errors import ConfigError
from costar.judges.base import JudgeContext
from costar.judges.llm import LlmJudge, ValueSpec
from costar.judges.registry import JudgeRegistry
from costar.models import ModelClient, RetryPolicy
from costar.scenario import Scenario
from costar.store.base import Run
from costar.testing import Rule, ScriptedModelServer
from costar.trace.model import Span, SpanKind, SpanStatus, StatusCode, Trace, new_trace_id
from costar.verdict import Verdict


def _trace(output: str = "Thank you! The total is 42.", *, spans: list[Span] | None = None, **kw: Any) -> Trace:
    tid = kw.pop("trace_id", None) or new_trace_id()
    return Trace(trace_id=tid, input="Please add up the numbers.", output=output,
                 spans=[s.model_copy(update={"trace_id": tid}) for s in spans or []], **kw)


def _scenario(**kw: Any) -> Scenario:
    return Scenario.model_validate({"id": "sum", "prompt": "Please add up the numbers.",
                                    "expectations": {"checks": [{"output_contains": "42"}],
                                                     "criteria": ["The answer states the total politely."]},
                                    **kw})


def _judge(ctx: JudgeContext, judge: LlmJudge) -> Verdict:
    return asyncio.run(judge.judge(ctx))


def _user_prompt(req: Any) -> str:
    return next(m["content"] for m in req.body["messages"] if m["role"] == "user")


@pytest.fixture
def server(scripted_model_server: Any) -> ScriptedModelServer:
    return scripted_model_server()


def test_bool_verdict_with_rationale_cost_and_a_bounded_schema(server: ScriptedModelServer) -> None:
    server.set_rules([Rule(json={"rationale": "It thanks the user and gives 42.", "value": True})])
    judge = LlmJudge("polite", "Is the answer polite?\n{{outputs}}\nCriteria:\n{{criteria}}\nChecks:\n{{expectations}}",
                     model=server.model_uri())
    v = _judge(JudgeContext(trace=_trace(), scenario=_scenario()), judge)

    assert (v.value, v.passed, v.outcome, v.source.value) == (True, True, "pass", "llm")
    assert v.rationale == "It thanks the user and gives 42."
    assert v.confidence is None
    assert v.fingerprint == judge.fingerprint()
    assert v.trace_id
    assert v.cost.input_tokens > 0
    assert v.cost.output_tokens > 0
    assert v.cost.seconds > 0
    (req,) = server.requests
    prompt = _user_prompt(req)
    assert "The total is 42" in prompt
    assert "states the total politely" in prompt
    assert '"output_contains"' in prompt
    schema = req.body["response_format"]["json_schema"]["schema"]
    assert schema["properties"]["value"] == {"type": "boolean"}
    assert schema["properties"]["rationale"]["maxLength"] <= 1000


def test_number_with_threshold_and_range(server: ScriptedModelServer) -> None:
    spec = {"type": "number", "min": 1, "max": 5, "threshold": 4}
    server.set_rules([Rule(any_message="answer A", json={"rationale": "good", "value": 4.5}),
                      Rule(any_message="answer B", json={"rationale": "weak", "value": 2})])
    judge = LlmJudge("quality", "Rate the answer 1-5: {{outputs}}", model=server.model_uri(), value=spec)
    good = _judge(JudgeContext(trace=_trace("answer A")), judge)
    weak = _judge(JudgeContext(trace=_trace("answer B")), judge)
    assert (good.value, good.passed) == (4.5, True)
    assert (weak.value, weak.passed) == (2, False)
    sent = server.requests[0].body["response_format"]["json_schema"]["schema"]["properties"]["value"]
    assert sent == {"type": "number", "minimum": 1, "maximum": 5}


def test_label_values_pass_labels_and_metric(server: ScriptedModelServer) -> None:
    server.set_rules([Rule(json={"rationale": "curt", "value": "bad"})])
    gated = LlmJudge("tone", "Tone of {{outputs}}", model=server.model_uri(),
                     value={"type": "label", "labels": ["good", "ok", "bad"], "pass_labels": ["good", "ok"]})
    metric = LlmJudge("tone-metric", "Tone of {{outputs}}", model=server.model_uri(),
                      value={"type": "label", "labels": ["good", "ok", "bad"]})
    v = _judge(JudgeContext(trace=_trace()), gated)
    assert (v.value, v.passed, v.outcome) == ("bad", False, "fail")
    m = _judge(JudgeContext(trace=_trace()), metric)
    assert (m.value, m.passed, m.outcome) == ("bad", None, "metric")
    assert server.requests[0].body["response_format"]["json_schema"]["schema"]["properties"]["value"]["enum"] == \
        ["good", "ok", "bad"]


def test_a_model_that_never_answers_in_format_gives_an_error_after_retries(server: ScriptedModelServer) -> None:
    server.set_rules([Rule(text="Looks fine to me!")])
    judge = LlmJudge("polite", "Polite? {{outputs}}", model=server.model_uri(), retries=2)
    v = _judge(JudgeContext(trace=_trace()), judge)
    assert v.outcome == "error"
    assert v.passed is None
    assert v.value is None
    assert "no usable answer after 3 attempt(s)" in (v.error or "")
    assert "not valid JSON" in (v.error or "")
    assert server.request_count == 3
    # Retries say what was wrong with the previous reply.
    assert "could not be used" in server.requests[1].body["messages"][-1]["content"]


def test_value_out_of_range_or_set_is_a_parse_failure(server: ScriptedModelServer) -> None:
    server.set_rules([Rule(json={"rationale": "great", "value": 7})])
    judge = LlmJudge("score", "Score {{outputs}}", model=server.model_uri(), retries=1,
                     value={"type": "number", "min": 0, "max": 5, "threshold": 3})
    v = _judge(JudgeContext(trace=_trace()), judge)
    assert v.outcome == "error"
    assert "maximum" in (v.error or "")
    assert server.request_count == 2

    server.set_rules([Rule(json={"rationale": "meh", "value": "excellent"})])
    server.reset()
    label = LlmJudge("grade", "Grade {{outputs}}", model=server.model_uri(), retries=0,
                     value={"type": "label", "labels": ["pass", "fail"], "pass_labels": ["pass"]})
    v = _judge(JudgeContext(trace=_trace()), label)
    assert v.outcome == "error"
    assert server.request_count == 1


def test_a_retry_can_recover(server: ScriptedModelServer) -> None:
    server.set_rules([Rule(times=1, json={"rationale": "x", "value": "yes"}),
                      Rule(json={"rationale": "polite enough", "value": True})])
    v = _judge(JudgeContext(trace=_trace()), LlmJudge("polite", "{{outputs}}", model=server.model_uri()))
    assert v.passed is True
    assert v.metadata["attempts"] == 2
    note = server.requests[1].body["messages"][-1]["content"]
    assert "could not be used" in note
    assert "is not of type 'boolean'" in note


def test_self_consistency_majority_and_confidence(server: ScriptedModelServer) -> None:
    server.set_rules([Rule(times=2, json={"rationale": "polite", "value": True}),
                      Rule(times=1, json={"rationale": "rude", "value": False})])
    judge = LlmJudge("polite", "{{outputs}}", model=server.model_uri(), samples=3)
    v = _judge(JudgeContext(trace=_trace()), judge)
    assert v.value is True
    assert v.passed is True
    assert v.confidence == pytest.approx(2 / 3)
    assert sorted(v.metadata["samples"]) == [False, True, True]
    assert "2/3 samples agree" in v.rationale
    seeds = {r.body.get("seed") for r in server.requests}
    temps = {r.body.get("temperature") for r in server.requests}
    assert len(seeds) == 3
    assert temps == {0.7}


def test_self_consistency_ties_do_not_pass(server: ScriptedModelServer) -> None:
    server.set_rules([Rule(times=1, json={"rationale": "yes", "value": True}),
                      Rule(times=1, json={"rationale": "no", "value": False})])
    v = _judge(JudgeContext(trace=_trace()), LlmJudge("polite", "{{outputs}}", model=server.model_uri(), samples=2))
    assert v.value is False
    assert v.passed is False
    assert v.confidence == 0.5


def test_self_consistency_numbers_use_the_median_and_a_tolerance(server: ScriptedModelServer) -> None:
    server.set_rules([Rule(times=1, json={"rationale": "a", "value": 3}),
                      Rule(times=1, json={"rationale": "b", "value": 4}),
                      Rule(times=1, json={"rationale": "c", "value": 9})])
    judge = LlmJudge("score", "{{outputs}}", model=server.model_uri(), samples=3,
                     value={"type": "number", "min": 0, "max": 10, "threshold": 5})
    v = _judge(JudgeContext(trace=_trace()), judge)
    assert v.value == 4
    assert v.passed is False
    assert v.confidence == pytest.approx(2 / 3)


def test_failed_samples_are_counted_and_all_failing_is_an_error(server: ScriptedModelServer) -> None:
    server.set_rules([Rule(times=2, json={"rationale": "ok", "value": True}), Rule(text="no idea")])
    judge = LlmJudge("polite", "{{outputs}}", model=server.model_uri(), samples=3, retries=0)
    v = _judge(JudgeContext(trace=_trace()), judge)
    assert v.value is True
    assert v.confidence == pytest.approx(2 / 3)
    assert v.metadata["sample_errors"] == 1

    server.set_rules([Rule(text="no idea")])
    v = _judge(JudgeContext(trace=_trace()), judge)
    assert v.outcome == "error"
    assert "all 3 samples failed" in (v.error or "")


def test_transport_errors_are_error_verdicts_and_money_is_recorded(server: ScriptedModelServer) -> None:
    server.set_rules([Rule(status=401)])
    client = ModelClient(server.model_uri("judge-model"), retry=RetryPolicy(max_retries=0))
    v = _judge(JudgeContext(trace=_trace()), LlmJudge("polite", "{{outputs}}", model=client))
    assert v.outcome == "error"
    assert "model call failed" in (v.error or "")

    server.set_rules([Rule(json={"rationale": "ok", "value": True})])
    priced = ModelClient(server.model_uri("judge-model"), prices={"judge-model": {"input": 1000, "output": 2000}})
    v = _judge(JudgeContext(trace=_trace()), LlmJudge("polite", "{{outputs}}", model=priced))
    assert v.passed is True
    assert v.cost.cost_usd > 0
    assert "cost_unknown" not in v.metadata


def test_unknown_template_variable_is_a_config_error_naming_it() -> None:
    with pytest.raises(ConfigError, match=r"unknown template variable \{\{output\}\}"):
        LlmJudge("polite", "Is {{output}} polite?", model="openai-compatible:/m?base_url=http://127.0.0.1:9/v1")
    with pytest.raises(ConfigError, match="nosuchprovider"):
        LlmJudge("polite", "{{outputs}}", model="nosuchprovider:/x")


def test_instructions_without_trace_variables_still_show_input_and_output(server: ScriptedModelServer) -> None:
    server.set_rules([Rule(json={"rationale": "ok", "value": True})])
    _judge(JudgeContext(trace=_trace("The total is 42.")), LlmJudge("polite", "Is it polite?", model=server.model_uri()))
    prompt = _user_prompt(server.requests[0])
    assert "Is it polite?" in prompt
    assert "The total is 42." in prompt
    assert "add up the numbers" in prompt


def test_trace_summary_is_bounded_for_a_long_trace(server: ScriptedModelServer, store: Any) -> None:
    spans = [Span(trace_id="x", span_id=f"s{i:05d}", name="execute_tool read_file", kind=SpanKind.TOOL,
                  start_ns=i, end_ns=i + 1, attributes={"gen_ai.tool.name": "read_file",
                                                        "gen_ai.tool.call.arguments": {"path": f"f{i}.txt" + "x" * 300}})
             for i in range(3000)]
    spans[1500].status = SpanStatus(code=StatusCode.ERROR, message="disk on fire")
    trace = _trace(spans=spans)
    store.write_trace(trace)
    server.set_rules([Rule(json={"rationale": "ok", "value": True})])
    judge = LlmJudge("efficient", "Was the agent efficient?\n{{trace_summary}}", model=server.model_uri(),
                     max_chars=3000)
    head = store.get_trace(trace.trace_id, spans=False)  # paged from the store, never loaded whole
    v = _judge(JudgeContext(trace=head, store=store), judge)
    assert v.passed is True
    prompt = _user_prompt(server.requests[0])
    assert len(prompt) < 4000 < len(json.dumps([s.model_dump() for s in spans]))
    assert "spans: 3000 (TOOL 3000)" in prompt
    assert "more calls" in prompt
    assert "disk on fire" in prompt


def test_fingerprint_follows_the_config() -> None:
    uri = "openai-compatible:/m?base_url=http://127.0.0.1:9/v1"
    a = LlmJudge("polite", "Polite? {{outputs}}", model=uri)
    assert a.fingerprint() == LlmJudge("polite", "Polite? {{outputs}}", model=uri).fingerprint()
    variants = [LlmJudge("polite", "Courteous? {{outputs}}", model=uri),
                LlmJudge("polite", "Polite? {{outputs}}", model=uri + "&x=1"),
                LlmJudge("polite", "Polite? {{outputs}}", model=uri, samples=3),
                LlmJudge("polite", "Polite? {{outputs}}", model=uri, temperature=0.3),
                LlmJudge("polite", "Polite? {{outputs}}", model=uri, version="2"),
                LlmJudge("polite", "Polite? {{outputs}}", model=uri, value={"type": "number", "threshold": 1}),
                LlmJudge("polite", "Polite? {{outputs}}", model=uri,
                         value={"type": "label", "labels": ["a", "b"], "pass_labels": ["a"]})]
    fps = {v.fingerprint() for v in variants} | {a.fingerprint()}
    assert len(fps) == len(variants) + 1


def test_value_spec_validation() -> None:
    with pytest.raises(ValueError, match="needs 'labels'"):
        ValueSpec(type="label")
    with pytest.raises(ValueError, match="not among labels"):
        ValueSpec(type="label", labels=["a"], pass_labels=["b"])
    with pytest.raises(ValueError, match="outside"):
        ValueSpec(type="number", min=0, max=1, threshold=2)
    with pytest.raises(ValueError, match="apply to number"):
        ValueSpec(type="bool", threshold=1)
    assert ValueSpec.model_validate("number").type == "number"


def test_a_failing_judge_does_not_stop_the_run(server: ScriptedModelServer, store: Any) -> None:
    server.set_rules([Rule(any_message="Broken judge", text="not json at all"),
                      Rule(json={"rationale": "fine", "value": True})])
    reg = JudgeRegistry(templates=False)
    reg.register("broken", LlmJudge("broken", "Broken judge: {{outputs}}", model=server.model_uri(), retries=1))
    reg.register("good", LlmJudge("good", "Good judge: {{outputs}}", model=server.model_uri()))
    sc = _scenario(judges=["broken", "good"])
    run = Run()
    store.create_run(run)
    store.save_scenarios(run.run_id, [sc])
    store.write_traces([_trace(run_id=run.run_id, scenario_id="sum", trial=i) for i in range(3)])
    stats = asyncio.run(Assessor(store, reg, concurrency=4).assess_run(run.run_id, scenarios={"sum": sc}))
    assert stats.errors == 3
    assert stats.judged == 3 * 4  # agent_completed, output_contains, broken, good
    by_name: dict[str, set[str]] = {}
    for v in store.verdicts(run_id=run.run_id):
        by_name.setdefault(v.name, set()).add(v.outcome)
    assert by_name["broken"] == {"error"}
    assert by_name["good"] == {"pass"}


@pytest.mark.local_model
def test_local_model_gives_a_well_formed_or_clean_error_verdict() -> None:
    judge = LlmJudge("polite", "Is this reply polite? Reply: {{outputs}}", model="local:/smollm2",
                     max_output_tokens=96, retries=1)
    v = _judge(JudgeContext(trace=_trace("Thank you for asking! The total is 42.")), judge)
    assert v.source.value == "llm"
    assert v.fingerprint == judge.fingerprint()
    if v.error is None:
        assert isinstance(v.value, bool)
        assert v.passed is v.value
        assert isinstance(v.rationale, str)
        assert v.cost.input_tokens > 0
    else:
        assert v.passed is None
        assert v.outcome == "error"
