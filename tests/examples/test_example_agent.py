"""The bundled Data Analyst agent under the real harness, with a scripted model (deterministic) and
with its rule policy. The agent runs as a command agent, as `costar run` runs it."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from costar.api import RunOutcome, Selection, run_suite
from costar.run.harness import HarnessOptions
from costar.testing import Rule, ScriptedModelServer
from costar.trace.model import SpanKind, StatusCode, TraceStatus
from tests.support.paths import REPO

EXAMPLE = REPO / "examples" / "data_analyst"
SCENARIOS = EXAMPLE / "scenarios"

sys.path.insert(0, str(EXAMPLE))

from analyst.context import fit_messages, message_tokens, tools_tokens  # noqa: E402
from analyst.loop import default_skills_dir, run_agent  # noqa: E402
from analyst.model_policy import ModelPolicy  # noqa: E402
from analyst.tools import SkillRequired, Toolbox, ToolError  # noqa: E402

# The answer step is a separate call with its own system prompt (analyst/answer.py).
ANSWER_SYSTEM = "outcome of a data task"


def agent_spec(model: str) -> dict[str, Any]:
    return {"type": "command", "name": "data-analyst", "cwd": str(EXAMPLE),
            "command": [sys.executable, "agent.py", "--model", model, "--max-steps", "6"]}


def run(tmp_path: Path, model: str, ids: tuple[str, ...] = ()) -> RunOutcome:
    return run_suite(SCENARIOS, agent_spec(model), store=tmp_path / ".costar", selection=Selection(ids=ids),
                     options=HarnessOptions(concurrency=2, workspace_root=tmp_path / "ws"))


def failed_checks(outcome: RunOutcome, scenario_id: str) -> list[str]:
    summary = outcome.summary.scenario(scenario_id)
    assert summary is not None
    return [f.name for t in summary.trial_results for f in t.failures]


def call(tool: str, **arguments: Any) -> dict[str, Any]:
    return {"name": tool, "arguments": arguments}


# --------------------------------------------------------------------------- scripted model


def test_scripted_conversation_drives_the_agent_through_the_harness(tmp_path: Path) -> None:
    rules = [
        Rule(name="answer", system=ANSWER_SYSTEM,
             text="I removed 6 duplicate rows from orders.csv and saved the 40 remaining rows to orders_clean.csv."),
        Rule(name="done", any_message="removed 6 duplicate rows", text="Finished."),
        Rule(name="tool", any_message="# Removing duplicate rows",
             tool_calls=[call("drop_duplicates", path="orders.csv", output="orders_clean.csv")]),
        Rule(name="skill", has_tools=True, tool_calls=[call("load_skill", name="deduplication")]),
    ]
    with ScriptedModelServer(rules, default="unexpected request") as srv:
        outcome = run(tmp_path, srv.model_uri("analyst"), ids=("dedupe-orders",))
        used = [r.rule for r in srv.requests]
    assert used == ["skill", "tool", "done", "answer"]
    assert outcome.summary.all_gates_passed, failed_checks(outcome, "dedupe-orders")

    assert outcome.store is not None
    (trace,) = list(outcome.store.iter_traces(outcome.run.run_id))
    assert trace.status == TraceStatus.OK
    assert trace.output is not None
    assert "removed 6 duplicate rows" in trace.output
    llm = [s for s in trace.spans if s.kind == SpanKind.LLM]
    tools = [s.attributes["gen_ai.tool.name"] for s in sorted(trace.spans, key=lambda s: s.start_ns)
             if s.kind == SpanKind.TOOL]
    assert len(llm) == 4
    assert all(s.attributes["gen_ai.usage.input_tokens"] > 0 for s in llm)
    assert tools == ["load_skill", "drop_duplicates"]
    assert (tmp_path / ".costar").is_dir()


def test_a_tool_used_before_its_skill_returns_the_skill_and_the_second_call_follows_it(tmp_path: Path) -> None:
    # The scripted "model" picks the strategy only once it has read the skill, as the real one must.
    fill = {"path": "survey.csv", "column": "income", "output": "survey_filled.csv"}
    rules = [
        Rule(name="answer", system=ANSWER_SYSTEM,
             text="I filled 8 missing income values with the median (32998.5): income is skewed."),
        Rule(name="done", any_message=r"filled \d+ missing income values", text="Finished."),
        Rule(name="follow skill", any_message="strategy=median", tool_calls=[call("fill_missing", **fill,
                                                                                 strategy="median")]),
        Rule(name="first try", has_tools=True, tool_calls=[call("fill_missing", **fill, strategy="mean")]),
    ]
    with ScriptedModelServer(rules, default="unexpected request") as srv:
        outcome = run(tmp_path, srv.model_uri("analyst"), ids=("impute-skewed-income",))
        used = [r.rule for r in srv.requests]
    assert used == ["first try", "follow skill", "done", "answer"]
    assert outcome.summary.all_gates_passed, failed_checks(outcome, "impute-skewed-income")
    assert outcome.store is not None
    (trace,) = list(outcome.store.iter_traces(outcome.run.run_id))
    first = min((s for s in trace.spans if s.kind == SpanKind.TOOL), key=lambda s: s.start_ns)
    assert first.attributes["costar.skill.name"] == "missing-values"
    assert first.attributes["analyst.tool.deferred"] is True


def test_malformed_tool_calls_fail_the_trial_and_the_run_goes_on(tmp_path: Path) -> None:
    broken = Rule(name="broken", has_tools=True, malformed_tool_args=True,
                  tool_calls=[call("drop_duplicates", path="orders.csv", output="orders_clean.csv")])
    with ScriptedModelServer([broken], default="unexpected request") as srv:
        outcome = run(tmp_path, srv.model_uri("analyst"), ids=("dedupe-orders", "empty-file"))
        requests = srv.request_count
    # The model layer retries malformed arguments twice per call; then the agent gives up, in words.
    assert requests == 2 * 3
    assert not outcome.summary.all_gates_passed
    assert outcome.store is not None
    traces = {t.scenario_id: t for t in outcome.store.iter_traces(outcome.run.run_id)}
    assert set(traces) == {"dedupe-orders", "empty-file"}
    for trace in traces.values():
        assert trace.status == TraceStatus.OK
        assert "malformed tool calls" in (trace.output or "")
        assert any(s.kind == SpanKind.LLM and s.status.code == StatusCode.ERROR for s in trace.spans)
    for sid in traces:
        summary = outcome.summary.scenario(sid)
        assert summary is not None
        assert summary.status == "fail"
        assert "agent_completed" not in failed_checks(outcome, sid)


def test_an_unreachable_model_is_a_clean_agent_error(tmp_path: Path) -> None:
    with ScriptedModelServer() as srv:
        uri = srv.model_uri("analyst")
    outcome = run(tmp_path, uri, ids=("empty-file",))
    (trial,) = outcome.summary.trials()
    assert trial.agent_status == TraceStatus.ERROR
    assert "cannot connect" in (trial.agent_error or "")
    assert "Traceback" not in (trial.agent_error or "")


# --------------------------------------------------------------------------- rule policy


def test_rule_policy_passes_every_scenario_but_the_known_failure(tmp_path: Path) -> None:
    outcome = run(tmp_path, "rule")
    status = {s.scenario_id: s.status for s in outcome.summary.scenarios}
    assert status.pop("forecast-revenue") == "fail"
    assert len(status) >= 6
    assert set(status.values()) == {"pass"}, {sid: failed_checks(outcome, sid) for sid in status}


# --------------------------------------------------------------------------- the policy in-process


def test_policy_keeps_a_long_conversation_inside_the_context_window(tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    (workspace / "wide.csv").write_text("id,value\n" + "".join(f"{i},{i * 7}\n" for i in range(5000)))
    rules = [Rule(name="answer", system=ANSWER_SYSTEM, text="The file has 5000 rows."),
             Rule(name="skill", has_tools=True, call_index=0, tool_calls=[call("load_skill", name="csv-profiling")]),
             Rule(name="read", has_tools=True, tool_calls=[call("read_file", path="wide.csv")])]
    with ScriptedModelServer(rules, default="unexpected request") as srv:
        policy = ModelPolicy(srv.model_uri("analyst"), context_tokens=4096)
        answer = run_agent("How many rows has wide.csv?", Toolbox(workspace, default_skills_dir()), policy,
                           max_steps=5)
        bodies = [r.body for r in srv.requests]
    assert answer == "The file has 5000 rows."
    budget = 4096 - policy.max_tokens
    for body in bodies:
        assert sum(message_tokens(m) for m in body["messages"]) + tools_tokens(body.get("tools", [])) \
            <= budget
    # The skill stays whole while the file's contents are cut down.
    last = bodies[-2]["messages"]
    assert any("# Profiling a CSV file" in str(m.get("content")) and "shortened" not in str(m.get("content"))
               for m in last)
    assert any("shortened" in str(m.get("content")) for m in last if m["role"] == "tool")


def test_fit_messages_drops_old_exchanges_but_never_the_task_or_a_skill() -> None:
    def exchange(i: int, name: str, result: str) -> list[dict[str, Any]]:
        return [{"role": "assistant", "content": None, "tool_calls": [
                    {"id": f"c{i}", "type": "function", "function": {"name": name, "arguments": "{}"}}]},
                {"role": "tool", "tool_call_id": f"c{i}", "content": result}]

    messages = [{"role": "system", "content": "system"}, {"role": "user", "content": "the task"},
                *exchange(0, "load_skill", "# Skill\nuse the median"),
                *[m for i in range(1, 8) for m in exchange(i, "read_file", "9" * 2000)]]
    fitted, cut = fit_messages(messages, budget=1200)
    assert sum(message_tokens(m) for m in fitted) <= 1200
    assert cut > 0
    assert fitted[:2] == messages[:2]
    assert any(m.get("content") == "# Skill\nuse the median" for m in fitted)
    assert fitted[-1]["tool_call_id"] == "c7"  # the newest result survives, shortened
    assert messages[-1]["content"] == "9" * 2000  # the agent's own record is untouched


def test_a_tool_call_written_as_text_is_still_a_call(tmp_path: Path) -> None:
    (tmp_path / "orders.csv").write_text("a,b\n1,2\n1,2\n")
    text_call = 'functions.load_skill:\n{"name": "deduplication"}'
    rules = [Rule(name="answer", system=ANSWER_SYSTEM, text="Loaded the skill."),
             Rule(name="as text", has_tools=True, call_index=0, text=text_call),
             Rule(name="stop", has_tools=True, text="Nothing else to do.")]
    with ScriptedModelServer(rules, default="unexpected request") as srv:
        toolbox = Toolbox(tmp_path, default_skills_dir())
        run_agent("Remove duplicates from orders.csv", toolbox, ModelPolicy(srv.model_uri("analyst")))
    assert toolbox.loaded_skills == {"deduplication"}


# --------------------------------------------------------------------------- the one-call CSV tools


def test_csv_tools_on_the_suites_messy_files(tmp_path: Path) -> None:
    import shutil

    for name in ("sales.csv", "prices.csv", "empty.csv", "orders.csv"):
        shutil.copy(EXAMPLE / "data" / name, tmp_path)
    box = Toolbox(tmp_path, default_skills_dir(), loaded_skills={"csv-profiling", "data-cleaning", "counting"})

    summary = box.call("profile_csv", {"path": "sales.csv", "output": "profile.json"})
    profile = json.loads((tmp_path / "profile.json").read_text())
    assert profile["rows"] == 120
    assert profile["missing"]["region"] == 4
    assert profile["missing"]["units"] == 7
    assert "120 rows" in summary
    assert '"' not in summary

    assert "is empty" in box.call("profile_csv", {"path": "empty.csv"})

    box.call("convert_numeric", {"path": "prices.csv", "column": "price", "output": "prices_clean.csv"})
    prices = dict(line.split(",") for line in (tmp_path / "prices_clean.csv").read_text().split()[1:])
    assert prices["SKU-001"] == "1200.5"
    assert prices["SKU-003"] == ""
    assert prices["SKU-009"] == ""

    counted = box.call("count_by", {"path": "orders.csv", "column": "customer", "output": "per_customer.csv"})
    assert "total 46" in counted

    with pytest.raises(ToolError, match="input file"):
        box.call("count_by", {"path": "orders.csv", "column": "customer", "output": "orders.csv"})
    with pytest.raises(SkillRequired, match="deduplication skill"):
        box.call("drop_duplicates", {"path": "orders.csv", "output": "orders_clean.csv"})
    assert "deduplication" in box.loaded_skills  # the deferred call delivered the skill
    assert "removed 6 duplicate rows" in box.call("drop_duplicates", {"path": "orders.csv",
                                                                      "output": "orders_clean.csv"})
