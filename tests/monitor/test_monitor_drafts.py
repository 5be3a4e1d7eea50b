"""Scenario drafts from stored traces (costar.monitor.drafts), case by case: which prompt, which
files, which expectations are carried over, and what is left to the reviewer in a note."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from costar.monitor.drafts import BYTES_MAX, INLINE_MAX, scenario_draft
from costar.scenario import Scenario
from costar.store.base import Run
from costar.store.sqlite import SQLiteStore
from costar.trace.model import Artifact, Span, SpanKind, Trace
from costar.verdict import Verdict, VerdictSource

TID = "ab" * 16


@pytest.fixture
def store(tmp_path: Path) -> Any:
    with SQLiteStore(tmp_path / "store") as st:
        yield st


def llm(i: int, *users: str) -> Span:
    messages = [{"role": "system", "content": "be brief"}] + [{"role": "user", "content": u} for u in users]
    return Span(trace_id=TID, span_id=f"{i:016x}", name="chat", kind=SpanKind.LLM, start_ns=i, end_ns=i + 1,
                attributes={"gen_ai.input.messages": messages})


def tool(i: int, name: str, args: dict[str, Any], result: str | None = None) -> Span:
    attrs: dict[str, Any] = {"gen_ai.tool.name": name, "gen_ai.tool.call.arguments": args}
    if result is not None:
        attrs["gen_ai.tool.call.result"] = result
    return Span(trace_id=TID, span_id=f"{i:016x}", name=f"execute_tool {name}", kind=SpanKind.TOOL, start_ns=i,
                end_ns=i + 1, attributes=attrs)


def save(store: Any, spans: list[Span], **fields: Any) -> Trace:
    trace = Trace(trace_id=TID, start_ns=1, end_ns=99, spans=spans, **fields)
    store.write_traces([trace])
    return trace


def test_the_call_with_the_most_user_turns_is_the_prompt(store: Any) -> None:
    save(store, [llm(1, "first"), llm(2, "first", "and then?"), llm(3, "only one")])
    draft = scenario_draft(store, TID)
    assert draft.scenario["prompt"] == ["first", "and then?"]


@pytest.mark.parametrize(("value", "prompt"), [
    ("what is 6*7?", "what is 6*7?"),
    ({"question": "why?", "user": 3}, "why?"),
    (["one", "two"], ["one", "two"]),
    ({"a": 1}, '{"a": 1}'),
])
def test_without_model_calls_the_trace_input_is_the_prompt(store: Any, value: Any, prompt: Any) -> None:
    save(store, [], input=value)
    assert scenario_draft(store, TID).scenario["prompt"] == prompt


def test_a_trace_without_input_gets_a_placeholder_and_a_note(store: Any) -> None:
    save(store, [])
    draft = scenario_draft(store, TID)
    assert draft.scenario["prompt"].startswith("TODO")
    assert any("write the prompt by hand" in n for n in draft.notes)


def test_files_read_or_passed_by_tools_are_recovered_and_written_ones_are_not(store: Any) -> None:
    save(store, [llm(1, "clean it"),
                 tool(2, "read_file", {"path": "/data/in.csv"}, "a,b\n1,2\n"),
                 tool(3, "analyse", {"file_path": "notes.txt", "content": "keep me"}),
                 tool(4, "write_file", {"path": "out.csv", "content": "x"}),
                 tool(5, "read_file", {"path": "../../etc/passwd"}, "root:x:0:0")])
    draft = scenario_draft(store, TID)
    files = {f["dest"]: f["content"] for f in draft.scenario["setup"]["files"]}
    assert files == {"data/in.csv": "a,b\n1,2\n", "notes.txt": "keep me"}
    assert any("leaves the workspace" in n for n in draft.notes)


def test_large_or_binary_files_go_beside_the_draft_or_into_a_note(store: Any, tmp_path: Path) -> None:
    big = b"x" * (INLINE_MAX + 1)
    binary = b"\x89PNG\x00\x01"
    arts = [Artifact(path=p, sha256=store.put_blob(d), size=len(d), origin="setup")
            for p, d in (("big.txt", big), ("img.png", binary))]
    arts.append(Artifact(path="made.txt", sha256=store.put_blob(b"agent output"), size=12))  # not an input
    save(store, [llm(1, "go")], artifacts=arts)
    kept = scenario_draft(store, TID, files_dir="draft_files")
    assert kept.files == {"draft_files/big.txt": big, "draft_files/img.png": binary}
    assert {f["dest"]: f["src"] for f in kept.scenario["setup"]["files"]} == {
        "big.txt": "draft_files/big.txt", "img.png": "draft_files/img.png"}
    written = kept.write(tmp_path / "out" / "draft.yaml")
    assert (tmp_path / "out" / "draft_files" / "img.png").read_bytes() == binary
    assert len(written) == 3
    left = scenario_draft(store, TID)
    assert "setup" not in left.scenario
    assert sum("too large or binary" in n for n in left.notes) == 2


def test_the_draft_stops_at_its_size_bound_and_says_so(store: Any) -> None:
    chunk = b"y" * (BYTES_MAX // 2 + 1)
    arts = [Artifact(path=f"f{i}.bin", sha256=store.put_blob(chunk + bytes([i])), size=len(chunk) + 1,
                     origin="setup") for i in range(2)]
    save(store, [llm(1, "go")], artifacts=arts)
    draft = scenario_draft(store, TID, files_dir="d")
    assert list(draft.files) == ["d/f0.bin"]
    assert any("at most" in n and "f1.bin" in n for n in draft.notes)


def test_failing_verdicts_become_expectations_and_passing_or_human_ones_do_not(store: Any) -> None:
    run = Run()
    store.create_run(run)
    store.save_scenarios(run.run_id, [Scenario.model_validate(
        {"id": "s1", "prompt": "p", "expectations": {"checks": [
            {"output_contains": "42", "name": "says 42", "gate": False}]}})])
    save(store, [llm(1, "what is 6*7?")], run_id=run.run_id, scenario_id="s1", output="41")
    store.write_verdicts([
        Verdict(name="says 42", passed=False, rationale="'42' not in the output", source=VerdictSource.CODE,
                trace_id=TID),
        Verdict(name="tone", passed=False, rationale="curt\n- injected: yes", source=VerdictSource.LLM, trace_id=TID),
        Verdict(name="helpful", passed=True, source=VerdictSource.LLM, trace_id=TID),
        Verdict(name="lost check", passed=False, source=VerdictSource.CODE, trace_id=TID),
        Verdict(name="human", passed=False, source=VerdictSource.HUMAN, trace_id=TID),
    ], run.run_id)
    draft = scenario_draft(store, TID)
    checks = draft.scenario["expectations"]["checks"]
    assert len(checks) == 1
    assert checks[0]["name"] == "says 42"
    assert checks[0].get("gate", True) is True  # what failed in production gates the scenario (the default)
    assert draft.scenario["judges"] == ["tone"]
    [criterion] = draft.scenario["expectations"]["criteria"]
    assert "'tone' judge" in criterion
    assert "\n" not in criterion
    assert any("'lost check'" in n for n in draft.notes)
    text = draft.render()
    assert all(line.startswith("#") for line in text.split("id: ", 1)[0].splitlines())
    loaded = yaml.safe_load(text)
    assert "injected" not in loaded
    assert Scenario.model_validate(loaded).id == draft.scenario["id"]
    assert loaded["metadata"]["from_trace"] == {"trace_id": TID, "agent": "agent", "run_id": run.run_id,
                                                "scenario_id": "s1"}


def test_a_trace_without_failures_says_expectations_are_to_be_written(store: Any) -> None:
    save(store, [llm(1, "hi")])
    store.write_verdicts([Verdict(name="tone", passed=None, error="model down", source=VerdictSource.LLM,
                                  trace_id=TID)], None)
    draft = scenario_draft(store, TID, scenario_id="my-case")
    assert draft.scenario["id"] == "my-case"
    assert "expectations" not in draft.scenario
    assert any("add the expectations by hand" in n for n in draft.notes)
    assert any("judge errors" in n and "tone" in n for n in draft.notes)
