"""Judge benchmarks against a scripted model server running in its own process.

    python benchmarks/bench_judges.py [--spans 100000] [--verdicts 3] [--llm-verdicts 500]
                                      [--concurrency 32] [--latency 0.2] [--repeats 3]

(a) An agentic judge explores a very large stored trace: peak RSS of the judge process (it pages the
    store; the trace is never loaded) and prompt tokens per verdict, next to what the whole trace
    would cost in one prompt (~4 characters per token of its JSON) and the RSS of loading it whole.
(b) LLM-judge throughput through the Assessor at a given concurrency against a server with fixed
    latency, next to the latency-bound ideal (ceil(verdicts / concurrency) x latency).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from costar.judges.agentic import AgenticJudge, Budget
from costar.judges.base import JudgeContext
from costar.judges.llm import LlmJudge
from costar.store.sqlite import SQLiteStore
from costar.testing import scripted_server_process
from costar.trace.model import Artifact, Span, SpanKind, StatusCode, Trace, make_span
from costar.trace.sanitize import Sanitizer


def _rss_mb() -> float:
    """Peak RSS of this process. VmHWM, not ru_maxrss: Linux carries ru_maxrss across exec, so a child
    started by a parent that built a big trace would report the parent's peak."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def scripted_server(rules: list[dict[str, Any]]) -> contextlib.AbstractContextManager[str]:
    """The scripted server in a child process, so its memory and CPU are not the judge's."""
    return scripted_server_process(rules)


class _AsIs(Sanitizer):
    """Generated benchmark data holds no secrets; redacting 100,000 spans would dominate the setup."""

    def trace(self, t: Trace) -> Trace:
        return t


# --------------------------------------------------------------------------- (a) agentic, huge trace


def build_big_trace(store: SQLiteStore, n: int) -> tuple[str, int]:
    """A trace of ``n`` spans (alternating tool and model calls) with one failing step deep inside;
    returns its id and its size as JSON in characters."""
    tid = "b" * 32
    csv_sha = store.put_blob(b"part,rows\n" + b"".join(f"p{i},{i % 97}\n".encode() for i in range(500)))
    spans: list[Span] = [make_span(tid, "root", None, "invoke_agent pipeline", SpanKind.AGENT, 0, 10**15,
                                   StatusCode.OK, None, {"gen_ai.agent.name": "pipeline"}, [])]
    needle = (n * 9) // 10 | 1
    for i in range(1, n):
        if i % 2:
            attrs: dict[str, Any] = {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "process_part",
                                     "gen_ai.tool.call.arguments": {"part": f"p{i}", "mode": "strict"},
                                     "gen_ai.tool.call.result": f"processed part p{i}: " + "ok " * 30}
            code, msg = StatusCode.OK, None
            if i == needle:
                attrs["gen_ai.tool.call.result"] = "NEEDLE checksum mismatch " + "x" * 20_000
                code, msg = StatusCode.ERROR, "checksum mismatch in part"
            spans.append(make_span(tid, f"s{i:07d}", "root", "execute_tool process_part", SpanKind.TOOL, i * 1000,
                                   i * 1000 + 400, code, msg, attrs, []))
        else:
            attrs = {"gen_ai.operation.name": "chat", "gen_ai.request.model": "agent-model",
                     "gen_ai.usage.input_tokens": 900, "gen_ai.usage.output_tokens": 40,
                     "gen_ai.output.messages": [{"role": "assistant", "parts": [
                         {"type": "tool_call", "id": f"c{i}", "name": "process_part",
                          "arguments": {"part": f"p{i}"}}]}]}
            spans.append(make_span(tid, f"s{i:07d}", "root", "chat agent-model", SpanKind.LLM, i * 1000,
                                   i * 1000 + 300, StatusCode.OK, None, attrs, []))
    whole_chars = sum(len(s.model_dump_json()) for s in spans)
    trace = Trace(trace_id=tid, input="Process every part", output="All parts processed.", spans=spans,
                  artifacts=[Artifact(path="parts.csv", sha256=csv_sha, size=0)])
    store.write_trace(trace, sanitizer=_AsIs())
    return tid, whole_chars


def exploration_rules(n: int, verdicts: int) -> list[dict[str, Any]]:
    needle = f"s{((n * 9) // 10 | 1):07d}"
    script: list[tuple[str, dict[str, Any]]] = [
        ("trace_info", {}),
        ("list_spans", {"status": "ERROR", "limit": 20}),
        ("list_spans", {"kind": "TOOL", "offset": n // 4, "limit": 50}),
        ("search_trace", {"pattern": "NEEDLE", "kind": "TOOL", "start": (n * 8) // 20, "limit": 3}),
        ("tool_call_timeline", {"offset": n // 3, "limit": 30}),
        ("get_span", {"span_id": needle}),
        ("get_span", {"span_id": needle, "attribute": "gen_ai.tool.call.result", "offset": 4000}),
        ("run_python", {"code": "import csv\nrows = list(csv.DictReader(open('parts.csv')))\n"
                                "print(len(rows), sum(int(r['rows']) for r in rows))"}),
        ("submit_verdict", {"value": False, "rationale": "one part failed its checksum", "evidence": [needle]}),
    ]
    rules = []
    for _ in range(verdicts):
        rules.extend({"times": 1, "tool_calls": [{"name": name, "arguments": args}]} for name, args in script)
    return rules


def child_agentic(store_dir: str, trace_id: str, base_url: str, verdicts: int) -> dict[str, Any]:
    store = SQLiteStore(store_dir)
    judge = AgenticJudge("pipeline-outcome", "Did every part process cleanly? {{criteria}}",
                         model=f"openai-compatible:/judge?base_url={base_url}", budget=Budget(max_iterations=12))
    head = store.get_trace(trace_id, spans=False)
    baseline = _rss_mb()
    started = time.perf_counter()
    results = []
    for _ in range(verdicts):
        v = asyncio.run(judge.judge(JudgeContext(trace=head, store=store)))
        results.append(v)
    seconds = time.perf_counter() - started
    return {"peak_rss_mb": _rss_mb(), "baseline_rss_mb": baseline, "seconds": seconds / verdicts,
            "prompt_tokens": [v.cost.input_tokens for v in results],
            "turns": [v.metadata.get("turns") for v in results],
            "outcomes": [v.outcome for v in results], "errors": [v.error for v in results if v.error],
            "evidence": results[-1].evidence}


def child_whole(store_dir: str, trace_id: str) -> dict[str, Any]:
    store = SQLiteStore(store_dir)
    base = _rss_mb()
    t = store.get_trace(trace_id)
    return {"peak_rss_mb": _rss_mb(), "baseline_rss_mb": base, "spans": len(t.spans)}


def _child(*args: str) -> dict[str, Any]:
    out = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"child {args[0]} failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def bench_agentic(spans: int, verdicts: int) -> list[tuple[str, str]]:
    with tempfile.TemporaryDirectory() as tmp:
        store = SQLiteStore(Path(tmp) / "store")
        t0 = time.perf_counter()
        tid, whole_chars = build_big_trace(store, spans)
        build_s = time.perf_counter() - t0
        store.close()
        whole = _child("--child-whole", str(Path(tmp) / "store"), tid)
        with scripted_server(exploration_rules(spans, verdicts)) as base:
            res = _child("--child-agentic", str(Path(tmp) / "store"), tid, base, str(verdicts))
    whole_tokens = whole_chars // 4
    per_verdict = max(res["prompt_tokens"])
    return [
        ("trace", f"{spans:,} spans, {whole_chars / 1e6:.1f} M chars of JSON (built + stored in {build_s:.1f} s)"),
        ("whole trace in one prompt", f"~{whole_tokens:,} tokens"),
        ("agentic judge prompt tokens / verdict", f"{per_verdict:,} (sum over {res['turns'][0]} turns; "
                                                  f"{whole_tokens / max(per_verdict, 1):,.0f}x fewer)"),
        ("verdicts", f"{verdicts}: {', '.join(res['outcomes'])}; evidence {res['evidence']}"
                     + (f"; errors {res['errors']}" if res["errors"] else "")),
        ("seconds / verdict", f"{res['seconds']:.2f}"),
        ("judge process peak RSS", f"{res['peak_rss_mb']:.0f} MB (after imports, before judging: "
                                   f"{res['baseline_rss_mb']:.0f} MB; target <= 300 MB)"),
        ("loading the trace whole instead", f"{whole['peak_rss_mb']:.0f} MB peak RSS for {whole['spans']:,} spans"),
    ]


# --------------------------------------------------------------------------- (b) LLM throughput


def bench_llm(verdicts: int, concurrency: int, latency: float, repeats: int) -> list[tuple[str, str]]:
    from costar.assess import Assessor
    from costar.judges.registry import JudgeRegistry
    from costar.models import ModelClient
    from costar.scenario import Scenario
    from costar.store.base import Run

    rules = [{"latency": latency, "json": {"rationale": "The reply is polite and complete.", "value": True}}]
    with tempfile.TemporaryDirectory() as tmp, scripted_server(rules) as base:
        store = SQLiteStore(Path(tmp) / "store")
        sc = Scenario.model_validate({"id": "reply", "prompt": "Answer politely.", "judges": ["polite"],
                                      "expectations": {"criteria": ["The reply is polite."]}})
        run = Run()
        store.create_run(run)
        store.save_scenarios(run.run_id, [sc])
        store.write_traces([Trace(trace_id=f"{i:032x}", run_id=run.run_id, scenario_id="reply", trial=i,
                                  input="Answer politely.", output=f"Thank you for asking! Answer {i}.")
                            for i in range(verdicts)])
        client = ModelClient(f"openai-compatible:/judge?base_url={base}", max_concurrency=concurrency)
        client.chat("warm up")  # connection pool and first-use costs are not throughput
        judge = LlmJudge("polite", "Is the reply polite?\n{{outputs}}\nCriteria:\n{{criteria}}", model=client)
        reg = JudgeRegistry(templates=False)
        reg.register("polite", judge)
        ideal = math.ceil(verdicts / concurrency) * latency
        times: list[float] = []
        cpu: list[float] = []
        # Client and server share the machine's cores, so single runs are noisy: report every run.
        for _ in range(repeats):
            assessor = Assessor(store, reg, concurrency=concurrency)
            t0, c0 = time.perf_counter(), time.process_time()
            stats = asyncio.run(assessor.assess_run(run.run_id, scenarios={"reply": sc}, force=True))
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
        polite = [v for v in store.verdicts(run_id=run.run_id) if v.name == "polite"]
        ok = sum(v.outcome == "pass" for v in polite)
        store.close()
    med = statistics.median(times)
    return [(f"{verdicts} LLM verdicts", f"concurrency {concurrency}, {latency * 1000:.0f} ms server latency, "
                                         f"{ok} pass, {stats.errors} errors"),
            ("latency-bound ideal", f"{ideal:.2f} s (target <= 1.3x)"),
            (f"Assessor, {repeats} runs", ", ".join(f"{t:.2f} s" for t in times)),
            ("median", f"{med:.2f} s = {med / ideal:.2f}x ideal, {verdicts / med:.0f} verdicts/s"),
            ("judge-process CPU / verdict", f"{1000 * statistics.median(cpu) / verdicts:.1f} ms")]


def _table(title: str, rows: list[tuple[str, str]]) -> None:
    width = max(len(k) for k, _ in rows)
    print(f"\n{title}\n" + "-" * len(title))
    for k, v in rows:
        print(f"  {k:<{width}}  {v}")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child-agentic":
        print(json.dumps(child_agentic(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]))))
        return
    if len(sys.argv) > 1 and sys.argv[1] == "--child-whole":
        print(json.dumps(child_whole(sys.argv[2], sys.argv[3])))
        return
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--spans", type=int, default=100_000)
    p.add_argument("--verdicts", type=int, default=3, help="agentic verdicts over the big trace")
    p.add_argument("--llm-verdicts", type=int, default=500)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--latency", type=float, default=0.2)
    p.add_argument("--repeats", type=int, default=3, help="throughput runs (the median is reported)")
    p.add_argument("--skip-agentic", action="store_true")
    p.add_argument("--skip-llm", action="store_true")
    a = p.parse_args()
    print(f"coSTAR judge benchmarks (python {sys.version.split()[0]}, {os.cpu_count()} cores)")
    if not a.skip_agentic:
        _table(f"(a) agentic judge over a {a.spans:,}-span stored trace", bench_agentic(a.spans, a.verdicts))
    if not a.skip_llm:
        _table("(b) LLM-judge throughput via the Assessor",
               bench_llm(a.llm_verdicts, a.concurrency, a.latency, a.repeats))


if __name__ == "__main__":
    main()
