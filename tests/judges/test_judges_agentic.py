"""Agentic judges: a scripted model explores stored traces with the trace tools, within budgets."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import pytest

from costar.errors import ConfigError
from costar.judges.agentic import AgenticJudge, Budget, bound_history
from costar.judges.base import JudgeContext
from costar.judges.sandbox import Sandbox, SandboxLimits
from costar.judges.trace_tools import ToolError, ToolLimits
from costar.models import ModelClient
from costar.models.errors import ContextWindowError
from costar.store.sqlite import SQLiteStore
from costar.testing import Rule, ScriptedModelServer
from costar.trace.model import Artifact, Span, SpanKind, SpanStatus, StatusCode, Trace, new_trace_id
from costar.trace.sanitize import Sanitizer
from costar.verdict import Verdict
from tests.support.waiting import running_with, wait_for


def _call(tool: str, **arguments: Any) -> Rule:
    """One scripted turn: the model calls ``tool`` once, then the next rule answers."""
    return Rule(times=1, tool_calls=[{"name": tool, "arguments": arguments}])


def _submit(value: Any = True, rationale: str = "checked", evidence: list[str] | None = None) -> Rule:
    args: dict[str, Any] = {"value": value, "rationale": rationale}
    if evidence is not None:
        args["evidence"] = evidence
    return _call("submit_verdict", **args)


def _tool_span(tid: str, i: int, tool: str, args: dict[str, Any], result: Any = "ok", **kw: Any) -> Span:
    return Span(trace_id=tid, span_id=f"s{i:06d}", parent_id="root", name=f"execute_tool {tool}", kind=SpanKind.TOOL,
                start_ns=1_000 + i * 10, end_ns=1_005 + i * 10,
                attributes={"gen_ai.tool.name": tool, "gen_ai.tool.call.arguments": args,
                            "gen_ai.tool.call.result": result}, **kw)


def _small_trace(store: SQLiteStore) -> Trace:
    tid = new_trace_id()
    csv_sha = store.put_blob(b"region,revenue\nnorth,100\nsouth,250\neast,50\n")
    report_sha = store.put_blob(b"region,total\nall,400\n")
    spans = [Span(trace_id=tid, span_id="root", name="invoke_agent analyst", kind=SpanKind.AGENT, start_ns=0,
                  end_ns=10_000),
             _tool_span(tid, 1, "load_skill", {"name": "csv-profiling"}),
             _tool_span(tid, 2, "read_file", {"path": "sales.csv"}, "region,revenue\n..."),
             _tool_span(tid, 3, "run_python", {"code": "df.groupby(...)"}, "Traceback: KeyError 'revenu'",
                        status=SpanStatus(code=StatusCode.ERROR, message="KeyError: 'revenu'")),
             _tool_span(tid, 4, "write_file", {"path": "report.csv"}, "wrote 2 lines")]
    trace = Trace(trace_id=tid, input="Total revenue by region into report.csv", output="Total revenue is 400.",
                  spans=spans, artifacts=[Artifact(path="sales.csv", sha256=csv_sha, size=41, origin="setup"),
                                          Artifact(path="report.csv", sha256=report_sha, size=21)])
    store.write_trace(trace)
    return store.get_trace(tid, spans=False)


def _run(judge: AgenticJudge, trace: Trace, store: SQLiteStore | None) -> Verdict:
    return asyncio.run(judge.judge(JudgeContext(trace=trace, store=store)))


def _tool_results(server: ScriptedModelServer) -> list[str]:
    """The tool results the judge sent back, in order (the last request holds the whole conversation)."""
    return [m["content"] for m in server.requests[-1].body["messages"] if m["role"] == "tool"]


@pytest.fixture
def server(scripted_model_server: Any) -> ScriptedModelServer:
    return scripted_model_server()


def test_tool_loop_explores_then_submits_with_ordered_evidence(server: ScriptedModelServer, store: SQLiteStore) -> None:
    head = _small_trace(store)
    server.set_rules([
        _call("trace_info"),
        _call("list_spans", kind="tool", status="ERROR"),
        _call("tool_call_timeline", limit=10),
        _call("search_trace", pattern="csv-profiling"),
        _call("get_span", span_id="s000003", attributes=["gen_ai.tool.*"]),
        _call("list_artifacts", pattern="*.csv"),
        _call("read_artifact", path="report.csv"),
        _submit(False, "run_python failed on a typo", evidence=["s000004", "s000003", "no-such-span"]),
    ])
    judge = AgenticJudge("outcome", "Is the report right? Criteria: {{criteria}}", model=server.model_uri())
    v = _run(judge, head, store)

    assert (v.value, v.passed, v.source.value) == (False, False, "agent")
    assert v.rationale == "run_python failed on a typo"
    assert v.evidence == ["s000003", "s000004"]  # known spans only, earliest first
    assert v.metadata["unknown_evidence"] == ["no-such-span"]
    assert v.metadata["turns"] == 8
    assert v.metadata["tool_calls"] == {"trace_info": 1, "list_spans": 1, "tool_call_timeline": 1, "search_trace": 1,
                                        "get_span": 1, "list_artifacts": 1, "read_artifact": 1}
    info, errors, timeline, search, span, files, report = (json.loads(r) for r in _tool_results(server))
    assert info["spans"] == {"total": 5, "by_kind": {"AGENT": 1, "TOOL": 4}}
    assert info["output"] == "Total revenue is 400."
    assert [r["id"] for r in errors["rows"]] == ["s000003"]
    assert errors["total"] == 1
    assert [c["tool"] for c in timeline["calls"]] == ["load_skill", "read_file", "run_python", "write_file"]
    assert search["matches"][0]["span_id"] == "s000001"
    assert search["complete"] is True
    assert set(span["attributes"]) == {"gen_ai.tool.name", "gen_ai.tool.call.arguments", "gen_ai.tool.call.result"}
    assert span["status"] == "ERROR"
    assert "revenu" in span["message"]
    assert [f["path"] for f in files["files"]] == ["sales.csv", "report.csv"]
    assert report["text"] == "region,total\nall,400\n"
    assert report["next_offset"] is None
    tools = {t["function"]["name"] for t in server.requests[0].body["tools"]}
    assert {"trace_info", "run_python", "submit_verdict"} <= tools
    assert "read_doc" not in tools
    assert server.requests[0].body["tool_choice"] == "required"


def test_iteration_budget_is_an_error_naming_it(server: ScriptedModelServer, store: SQLiteStore) -> None:
    head = _small_trace(store)
    server.set_rules([Rule(tool_calls=[{"name": "trace_info", "arguments": {}}])])
    judge = AgenticJudge("outcome", "Judge it.", model=server.model_uri(), budget=Budget(max_iterations=3))
    v = _run(judge, head, store)
    assert v.outcome == "error"
    assert v.passed is None
    assert "no verdict after 3 turn(s)" in (v.error or "")
    assert "max_iterations=3" in (v.error or "")
    assert "submit_verdict was the only tool and required" in (v.error or "")
    # Two exploring turns, then the last turn asked three times (the client re-asks a reply that calls a
    # tool it was not offered, twice).
    assert server.request_count == 5
    assert v.cost.input_tokens > 0
    last = server.requests[-1].body
    assert [t["function"]["name"] for t in last["tools"]] == ["submit_verdict"]
    assert last["tool_choice"] not in (None, "auto")
    assert "last turn" in last["messages"][-1]["content"]


def test_token_budget(server: ScriptedModelServer, store: SQLiteStore) -> None:
    head = _small_trace(store)
    server.set_rules([Rule(tool_calls=[{"name": "trace_info", "arguments": {}}], input_tokens=3000, output_tokens=10)])
    judge = AgenticJudge("outcome", "Judge it.", model=server.model_uri(),
                         budget=Budget(max_iterations=10, max_tokens=5000))
    v = _run(judge, head, store)
    assert v.outcome == "error"
    assert "token budget exceeded: 6020 tokens after 2 turn(s)" in (v.error or "")
    assert "max_tokens=5000" in (v.error or "")
    assert server.request_count == 2
    assert v.cost.input_tokens == 6000


def test_money_budget(server: ScriptedModelServer, store: SQLiteStore) -> None:
    head = _small_trace(store)
    server.set_rules([Rule(tool_calls=[{"name": "trace_info", "arguments": {}}], input_tokens=1000, output_tokens=0)])
    client = ModelClient(server.model_uri("pricey"), prices={"pricey": {"input": 10.0, "output": 10.0}})
    judge = AgenticJudge("outcome", "Judge it.", model=client,
                         budget=Budget(max_iterations=10, max_tokens=None, max_cost_usd=0.025))
    v = _run(judge, head, store)  # $0.01 per turn
    assert v.outcome == "error"
    assert "money budget exceeded" in (v.error or "")
    assert "max_cost_usd=0.025" in (v.error or "")
    assert server.request_count == 3
    assert v.cost.cost_usd == pytest.approx(0.03)

    unpriced = AgenticJudge("outcome", "Judge it.", model=server.model_uri("no-price-known"),
                            budget=Budget(max_cost_usd=1.0))
    v = _run(unpriced, head, store)  # a budget that cannot be enforced is an error, not silently ignored
    assert v.outcome == "error"
    assert "money budget cannot be enforced" in (v.error or "")


def test_bad_arguments_come_back_as_errors_and_the_loop_recovers(server: ScriptedModelServer, store: SQLiteStore) -> None:
    head = _small_trace(store)
    server.set_rules([
        _call("list_spans", limit=500),
        _call("list_spans", kind="NOT_A_KIND"),
        _call("get_span", span_id="nope"),
        _call("search_trace", pattern="(unclosed"),
        _call("read_artifact", path="missing.csv"),
        _call("list_spans", bogus=1),
        _submit("maybe"),
        _call("list_spans", limit=5),
        _submit(True, "fine", evidence=["s000002"]),
    ])
    judge = AgenticJudge("outcome", "Judge it.", model=server.model_uri())
    v = _run(judge, head, store)
    assert v.passed is True
    assert v.evidence == ["s000002"]
    results = _tool_results(server)
    assert results[0].startswith("error: invalid arguments for list_spans: limit: Input should be less than or equal to 50")
    assert results[1].startswith("error: invalid arguments for list_spans: kind")
    assert results[2].startswith("error: no span 'nope'")
    assert results[3].startswith("error: invalid regular expression")
    assert results[4].startswith("error: no workspace file 'missing.csv' (files: sales.csv, report.csv)")
    assert "bogus: unknown argument" in results[5]
    assert results[6].startswith("error: value must be true or false")
    assert json.loads(results[7])["total"] == 5


def test_text_replies_are_nudged_toward_a_verdict(server: ScriptedModelServer, store: SQLiteStore) -> None:
    head = _small_trace(store)
    server.set_rules([Rule(times=1, text="I think it is fine."), _submit(True, "ok")])
    v = _run(AgenticJudge("outcome", "Judge it.", model=server.model_uri()), head, store)
    assert v.passed is True
    assert server.request_count == 2
    assert "submit_verdict" in server.requests[1].body["messages"][-1]["content"]


def test_model_failure_mid_loop_is_an_error_verdict(server: ScriptedModelServer, store: SQLiteStore) -> None:
    head = _small_trace(store)
    server.set_rules([_call("trace_info"), Rule(status=403)])
    v = _run(AgenticJudge("outcome", "Judge it.", model=server.model_uri()), head, store)
    assert v.outcome == "error"
    assert "model call failed on turn 2" in (v.error or "")


def _big_trace(store: SQLiteStore, n: int) -> tuple[str, int]:
    tid = new_trace_id()
    spans = [Span(trace_id=tid, span_id="root", name="invoke_agent big", kind=SpanKind.AGENT, start_ns=0,
                  end_ns=10**12)]
    for i in range(1, n):
        kind = SpanKind.TOOL if i % 2 else SpanKind.LLM
        attrs: dict[str, Any] = ({"gen_ai.tool.name": "read_file", "gen_ai.tool.call.arguments": {"path": f"part{i}.csv"},
                                  "gen_ai.tool.call.result": "row," * 40} if kind == SpanKind.TOOL else
                                 {"gen_ai.request.model": "m", "gen_ai.input.messages": [
                                     {"role": "user", "parts": [{"type": "text", "content": "step " * 60}]}]})
        if i == 9_001:
            attrs["gen_ai.tool.call.result"] = "NEEDLE: checksum mismatch in part9001.csv " + "z" * 50_000
        spans.append(Span(trace_id=tid, span_id=f"s{i:06d}", parent_id="root", name=f"span {i}", kind=kind,
                          start_ns=i * 1000, end_ns=i * 1000 + 500, attributes=attrs))
    whole = sum(len(s.model_dump_json()) for s in spans)
    # Generated, trusted data: skip redaction, which would dominate this test's time.
    store.write_trace(Trace(trace_id=tid, input="process all parts", output="done", spans=spans), sanitizer=_AsIs())
    return tid, whole


class _AsIs(Sanitizer):
    def trace(self, t: Trace) -> Trace:
        return t


def test_a_10000_span_trace_is_explored_with_bounded_prompts(server: ScriptedModelServer, store: SQLiteStore) -> None:
    tid, whole_chars = _big_trace(store, 10_000)
    head = store.get_trace(tid, spans=False)
    assert head.spans == []  # the judge pages the store; the trace is never loaded whole
    server.set_rules([
        _call("trace_info"),
        _call("list_spans", kind="TOOL", limit=50),
        _call("list_spans", kind="TOOL", offset=4000, limit=50),
        _call("search_trace", pattern="NEEDLE", limit=3),
        _call("get_span", span_id="s009001"),
        _call("get_span", span_id="s009001", attribute="gen_ai.tool.call.result", offset=20_000),
        _call("tool_call_timeline", offset=4990, limit=50),
        _call("search_trace", pattern="never-present"),
        _submit(False, "checksum mismatch", evidence=["s009001"]),
    ])
    judge = AgenticJudge("outcome", "Did every part process cleanly?", model=server.model_uri(),
                         tool_limits=ToolLimits(max_result_chars=4000), max_context_chars=20_000)
    v = _run(judge, head, store)
    assert v.passed is False
    assert v.evidence == ["s009001"]
    sizes = [len(json.dumps(r.body["messages"])) for r in server.requests]
    assert whole_chars > 5_000_000, (whole_chars, sizes)
    assert max(sizes) < 30_000, (whole_chars, sizes)
    results = [json.loads(r) if r.startswith("{") else r for r in _tool_results(server)]
    assert results[0]["spans"]["total"] == 10_000
    listed = results[1]
    assert listed["total"] == 5000
    assert 10 < len(listed["rows"]) <= 50
    assert all(r["kind"] == "TOOL" for r in listed["rows"])
    if len(listed["rows"]) < 50:  # whole rows that fit the result budget, and where to continue
        assert listed["next_offset"] == len(listed["rows"])
        assert "next_offset" in listed["note"]
    assert results[2]["rows"][0]["i"] == 4000
    needle = results[3]["matches"]
    assert needle[0]["span_id"] == "s009001"
    assert "NEEDLE" in needle[0]["snippet"]
    assert "more characters" in json.dumps(results[4]["attributes"]["gen_ai.tool.call.result"])
    assert results[5]["offset"] == 20_000
    assert results[5]["total_chars"] > 50_000
    assert results[5]["next_offset"]
    assert results[6]["calls"][0]["n"] == 4991
    assert results[6]["next_offset"] in (None, 4990 + len(results[6]["calls"]))
    assert results[7]["complete"] is True
    assert results[7]["matches"] == []


def test_search_stops_at_its_scan_budget_and_says_where_to_resume(store: SQLiteStore) -> None:
    """The budget counts spans, not seconds: the same calls give the same pages on any machine."""
    from costar.judges.trace_tools import SearchTraceArgs, TraceToolbox, TraceView

    tid, _ = _big_trace(store, 3000)
    view = TraceView.of(JudgeContext(trace=store.get_trace(tid, spans=False), store=store))
    box = TraceToolbox(view, limits=ToolLimits(scan_spans=500, scan_page=200))
    out = box.search_trace(SearchTraceArgs(pattern="NEEDLE"))
    assert out["complete"] is False
    assert out["next_start"] == 500
    assert "after 500 spans" in out["note"]
    assert "start=500" in out["note"]
    # Resuming from next_start scans every span once: the matches at both edges of each page are found.
    pattern = r"^span (499|500|1999|2000|2999)$"
    found: list[str] = []
    calls = 0
    start: int | None = 0
    while start is not None:
        out = box.search_trace(SearchTraceArgs(pattern=pattern, start=start, limit=30))
        found.extend(m["span_id"] for m in out["matches"])
        start = out["next_start"]
        calls += 1
    assert calls == 6
    assert found == ["s000499", "s000500", "s001999", "s002000", "s002999"]
    assert "note" not in out


def test_search_results_that_do_not_fit_resume_after_the_last_match_shown(store: SQLiteStore) -> None:
    from costar.judges.trace_tools import SearchTraceArgs, TraceToolbox, TraceView

    tid, _ = _big_trace(store, 400)
    view = TraceView.of(JudgeContext(trace=store.get_trace(tid, spans=False), store=store))
    box = TraceToolbox(view, limits=ToolLimits(max_result_chars=1500))
    seen: list[str] = []
    start = 0
    for _ in range(3):
        out = box.search_trace(SearchTraceArgs(pattern="row,row", kind=SpanKind.TOOL, start=start, limit=30))
        assert len(box.render(out)) <= 1500
        assert out["note"].startswith("more matches did not fit")
        seen.extend(m["span_id"] for m in out["matches"])
        start = out["next_start"]
    assert len(seen) == len(set(seen)) > 6
    assert seen == [f"s{i:06d}" for i in range(1, 2 * len(seen), 2)]  # every tool span, none skipped


def test_a_model_written_pattern_that_backtracks_cannot_stall_the_search(store: SQLiteStore) -> None:
    """The model writes the pattern and the trace holds the text: Python's re would take forever on
    this one (nested repeats over 50,000 x's); RE2 runs in linear time, and what it lacks is an error."""
    from costar.judges.trace_tools import SearchTraceArgs, TraceToolbox, TraceView

    tid = new_trace_id()
    store.write_trace(Trace(trace_id=tid, input="i", output="o", spans=[
        Span(trace_id=tid, span_id="root", name="agent", kind=SpanKind.AGENT, start_ns=0, end_ns=9),
        _tool_span(tid, 1, "read_file", {"path": "big.txt"}, "x" * 50_000),
        _tool_span(tid, 2, "read_file", {"path": "end.txt"}, "x" * 50 + "y")]))
    box = TraceToolbox(TraceView.of(JudgeContext(trace=store.get_trace(tid, spans=False), store=store)))
    out = box.search_trace(SearchTraceArgs(pattern="(x+x+)+y"))
    assert [m["span_id"] for m in out["matches"]] == ["s000002"]
    assert out["complete"] is True
    with pytest.raises(ToolError, match=r"invalid regular expression '\(\?<=a\)b'.*no lookaround"):
        box.search_trace(SearchTraceArgs(pattern="(?<=a)b"))
    assert [m["span_id"] for m in box.search_trace(SearchTraceArgs(pattern="READ_FILE", ignore_case=True))["matches"]]
    assert box.search_trace(SearchTraceArgs(pattern="READ_FILE", ignore_case=False))["matches"] == []


def test_history_is_elided_oldest_first_to_fit() -> None:
    msgs: list[dict[str, Any]] = [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]
    for i in range(5):
        msgs.append({"role": "assistant", "content": None,
                     "tool_calls": [{"id": f"c{i}", "type": "function", "function": {"name": "t", "arguments": "{}"}}]})
        msgs.append({"role": "tool", "tool_call_id": f"c{i}", "content": "x" * 1000})
    elided: set[int] = set()
    bound_history(msgs, 2500, elided)
    tool_texts = [m["content"] for m in msgs if m["role"] == "tool"]
    assert tool_texts[-2:] == ["x" * 1000] * 2
    assert all(t.startswith("[elided") for t in tool_texts[:3])


def test_run_python_checks_a_generated_csv_against_its_source(server: ScriptedModelServer, store: SQLiteStore) -> None:
    head = _small_trace(store)
    check = ("import csv\n"
             "src = sum(float(r['revenue']) for r in csv.DictReader(open('sales.csv')))\n"
             "rep = {r['region']: float(r['total']) for r in csv.DictReader(open('report.csv'))}\n"
             "print('source total', src, 'report total', rep['all'], 'match', src == rep['all'])\n"
             "open('report.csv', 'w').write('tampered')\n")
    server.set_rules([_call("run_python", code=check), _call("run_python", code="print(open('report.csv').read())"),
                      _submit(True, "totals match", evidence=["s000004"])])
    v = _run(AgenticJudge("outcome", "Check the report.", model=server.model_uri()), head, store)
    assert v.passed is True
    first, second = (json.loads(r) for r in _tool_results(server))
    assert first["exit_code"] == 0
    assert "source total 400.0 report total 400.0 match True" in first["stdout"]
    assert second["stdout"].strip() == "tampered"  # later snippets share the scratch copy ...
    art = head.artifact("report.csv")
    assert art is not None
    assert store.get_blob(art.sha256) == b"region,total\nall,400\n"  # ... never the store


def test_sandbox_timeout_kills_the_process_group() -> None:
    token = f"grandchild-{uuid.uuid4().hex}"
    # The grandchild outlives the snippet's timeout on purpose, then writes into the scratch folder.
    grandchild = f"import time; time.sleep(2); open('child-alive', 'w')  # {token}"
    code = ("import subprocess, sys, time\n"
            f"subprocess.Popen([sys.executable, '-c', {grandchild!r}])\n"
            "print('started', flush=True)\n"
            "while True: time.sleep(0.05)\n")

    async def go(sb: Sandbox) -> Any:
        return await sb.run(code)

    sb = Sandbox([], None, SandboxLimits(timeout_s=0.5))
    try:
        started = time.perf_counter()
        r = asyncio.run(go(sb))
        assert r.timed_out
        assert r.as_dict()["note"].startswith("timed out")
        assert time.perf_counter() - started < 3
        assert r.stdout.strip() == "started", r.stderr
        assert sb.workdir is not None
        # Killed with the group, the grandchild is gone at once; had it escaped, it writes its file first.
        wait_for(lambda: not running_with(token), timeout=10, what="the grandchild to be gone")
        assert not (sb.workdir / "child-alive").exists()  # the grandchild died with the group
    finally:
        sb.close()


def test_sandbox_memory_limit_and_output_truncation() -> None:
    async def go() -> tuple[Any, Any, Any]:
        sb = Sandbox([], None, SandboxLimits(memory_mb=200, max_output_chars=2000))
        try:
            return (await sb.run("x = bytearray(800 * 1024 * 1024)\nprint(len(x))"),
                    await sb.run("print('y' * 100_000)"),
                    await sb.run("import os\nprint(sorted(k for k in os.environ if 'KEY' in k or 'TOKEN' in k))"))
        finally:
            sb.close()

    import os

    os.environ["COSTAR_TEST_API_KEY"] = "sk-should-not-leak"
    try:
        mem, big, env = asyncio.run(go())
    finally:
        del os.environ["COSTAR_TEST_API_KEY"]
    assert mem.memory_exceeded
    assert mem.exit_code == 1
    assert "MemoryError" in mem.stderr
    assert mem.as_dict()["note"] == "hit the memory limit"
    assert len(big.stdout) < 2200
    assert "bytes of output dropped" in big.stdout
    assert env.stdout.strip() == "[]"


def test_in_memory_traces_work_without_a_store(server: ScriptedModelServer) -> None:
    tid = new_trace_id()
    trace = Trace(trace_id=tid, output="hi", spans=[_tool_span(tid, i, "read_file", {"path": f"{i}.txt"}) for i in range(30)])
    server.set_rules([_call("list_spans", name="execute_tool *", offset=25), _call("read_artifact", path="x"),
                      _submit(True, "ok", evidence=["s000027", "s000026"])])
    v = _run(AgenticJudge("outcome", "Judge it.", model=server.model_uri(), tools=["list_spans", "read_artifact"]),
             trace, None)
    assert v.passed is True
    assert v.evidence == ["s000026", "s000027"]
    rows, art = _tool_results(server)
    assert json.loads(rows)["total"] == 30
    assert len(json.loads(rows)["rows"]) == 5
    assert art.startswith("error: no workspace file")
    assert {t["function"]["name"] for t in server.requests[0].body["tools"]} == {"list_spans", "read_artifact",
                                                                                  "submit_verdict"}


def test_agentic_self_consistency_and_config_errors(server: ScriptedModelServer, store: SQLiteStore) -> None:
    head = _small_trace(store)
    server.set_rules([Rule(times=2, tool_calls=[{"name": "submit_verdict", "arguments": {
                          "value": True, "rationale": "ok", "evidence": ["s000002"]}}]),
                      _submit(False, "no", evidence=["s000003"])])
    judge = AgenticJudge("outcome", "Judge it.", model=server.model_uri(), samples=3)
    v = _run(judge, head, store)
    assert v.value is True
    assert v.confidence == pytest.approx(2 / 3)
    assert v.evidence == ["s000002"]
    with pytest.raises(ConfigError, match="unknown tool"):
        AgenticJudge("x", "Judge it.", model=server.model_uri(), tools=["rm_rf"])
    with pytest.raises(ConfigError, match=r"\{\{trace\}\}"):
        AgenticJudge("x", "Judge {{trace}}.", model=server.model_uri())
    base = AgenticJudge("x", "Judge it.", model=server.model_uri())
    assert base.fingerprint() != AgenticJudge("x", "Judge it.", model=server.model_uri(),
                                              budget=Budget(max_iterations=5)).fingerprint()


# ----------------------------------------------------------------------------- context windows (issue 9, item 8)


def _exploring_rules(turns: int) -> list[Rule]:
    """A model that keeps asking for big pages, ``turns`` times, then submits."""
    pages = [_call("list_spans", kind="TOOL", limit=50), _call("tool_call_timeline", limit=50),
             _call("get_span", span_id="s009001"), _call("list_spans", limit=50, offset=200)]
    return [*(pages[i % len(pages)] for i in range(turns)), _submit(False, "checksum mismatch", evidence=["s009001"])]


def test_exploration_fits_a_4096_token_context(store: SQLiteStore) -> None:
    """The same exploration overflowed a 4,096-token model on its third turn (6,385 tokens asked)."""
    tid, _ = _big_trace(store, 10_000)
    head = store.get_trace(tid, spans=False)
    with ScriptedModelServer(_exploring_rules(8), context_window=4096) as srv:
        judge = AgenticJudge("outcome", "Did every part process cleanly? {{criteria}}",
                             model=srv.model_uri() + "&context_window=4096", budget=Budget(max_iterations=12))
        v = _run(judge, head, store)
        requests = srv.requests
        sizes = [srv.prompt_tokens(r.body) + r.body["max_tokens"] for r in requests]
    assert v.outcome == "fail", v.error
    assert v.error is None, v.error
    assert len(requests) == 9, sizes
    assert max(sizes) <= 4096, sizes
    assert {r.body["max_tokens"] for r in requests} == {512}  # an eighth of the window, not 1,024
    fitted = v.metadata["context_window"]
    assert fitted["tokens"] == 4096
    assert fitted["max_result_chars"] < 4000
    assert "run_python" not in fitted["tools"]
    assert "trace_info" in fitted["tools"]  # the core tools, to leave room
    offered = {t["function"]["name"] for t in requests[0].body["tools"]}
    assert offered == {*fitted["tools"], "submit_verdict"}


def test_a_window_smaller_than_the_uri_says_is_met_by_refitting_to_the_window_the_server_names(
        store: SQLiteStore) -> None:
    tid, _ = _big_trace(store, 10_000)
    head = store.get_trace(tid, spans=False)
    with ScriptedModelServer(_exploring_rules(6), context_window=4096) as srv:
        judge = AgenticJudge("outcome", "Did every part process cleanly?",
                             model=srv.model_uri() + "&context_window=8192", max_output_tokens=512)
        v = _run(judge, head, store)
        requests = srv.requests
        statuses = [srv.prompt_tokens(r.body) + r.body["max_tokens"] <= 4096 for r in requests]
    assert v.outcome == "fail", v.error
    assert v.error is None, v.error
    # Rejected as too long, then fitted to the 4,096 tokens the server named (and its history cut when
    # the estimate still fell short).
    assert not all(statuses)
    assert statuses[-1]
    assert v.metadata["context_window"]["tokens"] == 4096
    after = requests[statuses.index(False) + 1:]
    assert max(len(r.body["tools"]) for r in after) < len(requests[0].body["tools"])  # the core tools, to leave room


def test_a_context_error_names_the_window_the_server_said() -> None:
    from costar.models.providers.base import failure_error, failure_from_status
    from costar.models.uri import parse_model_uri

    spec = parse_model_uri("openai-compatible:/m?base_url=http://127.0.0.1:9/v1")
    for detail, window in [("This model's maximum context length is 4096 tokens. However, you requested 4128", 4096),
                           ("the request exceeds the available context size, try increasing it", None)]:
        failure = failure_from_status(400, None, {"error": {"message": detail}}, detail)
        err = failure_error(failure, spec=spec, endpoint="http://127.0.0.1:9/v1", attempts=1, timeout=1.0)
        assert isinstance(err, ContextWindowError)
        assert err.window == window


def test_instructions_that_leave_no_room_are_an_error_naming_the_window(store: SQLiteStore) -> None:
    head = _small_trace(store)
    with ScriptedModelServer([_submit(True)]) as srv:
        judge = AgenticJudge("outcome", "Judge it. " + "Read carefully. " * 200,
                             model=srv.model_uri() + "&context_window=1024")
        v = _run(judge, head, store)
        assert srv.request_count == 0
    assert v.outcome == "error"
    assert "of the 1024 tokens of" in (v.error or "")
    assert "context window" in (v.error or "")
    assert "longer context" in (v.error or "")


def test_a_context_error_that_cannot_be_shrunk_names_the_cause(store: SQLiteStore) -> None:
    head = _small_trace(store)
    with ScriptedModelServer([_submit(True)], context_window=600) as srv:
        v = _run(AgenticJudge("outcome", "Judge it.", model=srv.model_uri()), head, store)
    assert v.outcome == "error"
    # The server named its window (600 tokens): the judge fits that, and says it leaves no room.
    assert "of the 600 tokens of" in (v.error or "")
    assert "context window" in (v.error or "")


@pytest.mark.local_model
@pytest.mark.slow
def test_the_builtin_outcome_judge_on_the_embedded_model_gives_a_verdict_or_a_named_error(sqlite_store) -> None:
    """local:/smollm2 has a 4,096-token context (llama.cpp's n_ctx): the built-in ``outcome`` judge
    overflowed it on its third turn. Now every request fits and the last turn makes it submit; a model
    this small may still give no usable verdict, which must then be an error saying why."""
    from costar.judges.registry import project_registry
    from costar.models import ModelClient
    from costar.scenario import JudgeRef, Scenario

    store = sqlite_store
    tid = new_trace_id()
    spans = [Span(trace_id=tid, span_id="root", name="invoke_agent analyst", kind=SpanKind.AGENT, start_ns=0,
                  end_ns=10_000)]
    for i in range(1, 30):  # 29 file reads of a 50-row CSV: far more than 4,096 tokens in all
        spans.append(_tool_span(tid, i, "read_file", {"path": f"part{i}.csv"}, "region,revenue\n" + "north,100\n" * 50))
    store.write_trace(Trace(trace_id=tid, input="Total revenue in sales.csv?", output="The total revenue is 400 USD.",
                            spans=spans))
    scenario = Scenario(id="revenue", prompt="Total revenue in sales.csv?",
                        expectations={"criteria": ["The answer states the total with its currency."]})
    assert ModelClient("local:/smollm2").context_window == 4096
    # The built-in judge as a project gets it, with a smaller turn budget to keep the test short.
    judge = project_registry(store.root.parent).resolve(JudgeRef(name="outcome", options={"max_iterations": 3}))
    ctx = JudgeContext(trace=store.get_trace(tid, spans=False), scenario=scenario, store=store)
    v = asyncio.run(judge.judge(ctx))
    assert v.metadata["context_window"]["tokens"] == 4096, v.metadata
    assert v.cost.input_tokens > 0
    if v.error is not None:
        assert "exceed context window" not in v.error, v.error
        assert "Requested tokens" not in v.error, v.error
        assert v.error.startswith(("no verdict", "no usable verdict", "the conversation does not fit")), v.error
    else:
        assert isinstance(v.value, bool)
        assert v.passed is v.value
        assert v.rationale
