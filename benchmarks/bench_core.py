"""Core benchmarks: recording overhead, harness overhead, trace finalisation, store throughput, re-assessment.

    python benchmarks/bench_core.py            # all, 5 repetitions each, medians reported
    python benchmarks/bench_core.py store -r 3 # one benchmark

Each figure is the median of the repetitions; ratios are against the anchor measured in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from costar.run.agents import make_agent
from costar.run.harness import Harness, HarnessOptions
from costar.scenario import Scenario
from costar.store.base import Run
from costar.store.sqlite import SQLiteStore
from costar.trace import Recording, span
from costar.trace.model import Span, SpanKind, Totals, Trace, new_span_id, new_trace_id

RESULTS: list[tuple[str, str, str]] = []


def median_of(reps: int, fn: Callable[[], float]) -> float:
    return statistics.median(fn() for _ in range(reps))


def report(name: str, value: str, target: str) -> None:
    RESULTS.append((name, value, target))
    print(f"{name:58s} {value:>22s}   target: {target}", flush=True)


# --------------------------------------------------------------------------- recording overhead


def bench_recording(reps: int) -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    n = 20_000
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("bench")

    def otel() -> float:
        exporter.clear()
        t0 = time.perf_counter()
        with tracer.start_as_current_span("root"):
            for i in range(n):
                with tracer.start_as_current_span("step") as s:
                    s.set_attribute("i", i)
        return (time.perf_counter() - t0) / n

    def ours() -> float:
        t0 = time.perf_counter()
        with Recording("root") as rec:
            for i in range(n):
                with span("step") as s:
                    s.set_attribute("i", i)
        spans = rec.spans()  # materialising the spans is part of the cost
        assert len(spans) == n + 1
        return (time.perf_counter() - t0) / n

    o = median_of(reps, otel)
    c = median_of(reps, ours)
    report("recording: OpenTelemetry SDK per span (anchor)", f"{o * 1e6:.2f} µs", "")
    report("recording: coSTAR recorder per span", f"{c * 1e6:.2f} µs ({c / o:.2f}×)", "≤ 1× the OTel SDK")


# --------------------------------------------------------------------------- harness overhead

AGENT_MODULE = '''
import time
from costar.trace import span

def run(task):
    for i in range(20):
        with span(f"step {i}") as s:
            s.set_attribute("i", i)
    time.sleep(0.05)
    return "ok"
'''


def bench_harness(reps: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "bench_agent.py").write_text(AGENT_MODULE)
        sys.path.insert(0, str(root))
        agent = make_agent({"type": "python", "target": "bench_agent:run"})
        scenarios = [Scenario(id=f"s{i}", prompt="go", trials=10) for i in range(100)]

        def once() -> float:
            store = SQLiteStore(root / f"store-{time.perf_counter_ns()}")
            run = Run(agent=agent.info)
            store.create_run(run)
            t0 = time.perf_counter()
            res = asyncio.run(Harness(agent, store, HarnessOptions(concurrency=100)).run(scenarios, run))
            elapsed = time.perf_counter() - t0
            assert len(res.trace_ids) == 1000
            assert store.count_spans(res.trace_ids[0]) == 21
            store.close()
            return elapsed

        wall = median_of(reps, once)
    report("harness: 1,000 trials × 20 spans, 50 ms sleep, concurrency 100", f"{wall:.2f} s (ideal 0.50 s)",
           "≤ 2.0 s (ideal + 1.5 s)")


# --------------------------------------------------------------------------- store


def synthetic_trace(run_id: str, scenario: str, trial: int, n_spans: int) -> Trace:
    tid = new_trace_id()
    root = new_span_id()
    spans = [Span(trace_id=tid, span_id=root, name="agent", kind=SpanKind.AGENT, start_ns=0, end_ns=n_spans + 1)]
    for i in range(n_spans - 1):
        kind = SpanKind.LLM if i % 3 == 0 else SpanKind.TOOL
        attrs = ({"gen_ai.operation.name": "chat", "gen_ai.request.model": "m", "gen_ai.usage.input_tokens": 100,
                  "gen_ai.usage.output_tokens": 20,
                  "gen_ai.output.messages": [{"role": "assistant", "parts": [{"type": "text", "content": f"s{i}"}]}]}
                 if kind == SpanKind.LLM else
                 {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": f"tool_{i % 5}",
                  "gen_ai.tool.call.arguments": {"path": f"f{i}.csv"}, "gen_ai.tool.call.result": "ok"})
        spans.append(Span.model_construct(trace_id=tid, span_id=new_span_id(), parent_id=root, name=f"step {i}",
                                          kind=kind, start_ns=i + 1, end_ns=i + 2,
                                          status=Span.model_fields["status"].default_factory(),
                                          attributes=attrs, events=[]))
    return Trace(trace_id=tid, run_id=run_id, scenario_id=scenario, trial=trial, output=f"answer {trial}",
                 spans=spans, totals=Totals(total_tokens=1200, tool_calls=3))


def bench_store(reps: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        def write_100k() -> float:
            store = SQLiteStore(Path(tmp) / f"w{time.perf_counter_ns()}")
            run = Run()
            store.create_run(run)
            traces = [synthetic_trace(run.run_id, f"s{i}", 0, 100) for i in range(1000)]
            t0 = time.perf_counter()
            for i in range(0, 1000, 50):
                store.write_traces(traces[i:i + 50])
            elapsed = time.perf_counter() - t0
            store.close()
            return elapsed

        w = median_of(reps, write_100k)
        report("store: write 100,000 spans (1,000 traces)", f"{w:.2f} s", "≤ 5 s")

        store = SQLiteStore(Path(tmp) / "big")
        run = Run()
        store.create_run(run)
        big = synthetic_trace(run.run_id, "big", 0, 10_000)
        store.write_trace(big)

        def load() -> float:
            t0 = time.perf_counter()
            t = store.get_trace(big.trace_id)
            elapsed = time.perf_counter() - t0
            assert len(t.spans) == 10_000
            return elapsed

        r = median_of(max(reps, 5), load)
        report("store: load one 10,000-span trace", f"{r * 1000:.0f} ms", "≤ 200 ms")


# --------------------------------------------------------------------------- re-assessment


def bench_assess(reps: int) -> None:
    from costar.assess import Assessor

    checks = [{"output_contains": "answer"}, {"tool_called": {"name": "tool_1", "min": 1}},
              {"no_error_spans": True}, {"max_tokens": 5000}, {"tool_order": ["tool_0", "tool_2"]}]
    scenarios = {f"s{i}": Scenario.model_validate({"id": f"s{i}", "prompt": "x",
                                                   "expectations": {"checks": checks, "require_completion": False}})
                 for i in range(100)}
    with tempfile.TemporaryDirectory() as tmp:
        store = SQLiteStore(Path(tmp) / "a")
        run = Run()
        store.create_run(run)
        batch: list[Trace] = []
        for i in range(10_000):
            batch.append(synthetic_trace(run.run_id, f"s{i % 100}", i // 100, 10))
            if len(batch) == 500:
                store.write_traces(batch)
                batch = []

        def full() -> float:
            t0 = time.perf_counter()
            stats = asyncio.run(Assessor(store).assess_run(run.run_id, force=True, scenarios=scenarios))
            elapsed = time.perf_counter() - t0
            assert stats.judged == 50_000
            assert stats.errors == 0
            return elapsed

        def cached() -> float:
            t0 = time.perf_counter()
            stats = asyncio.run(Assessor(store).assess_run(run.run_id, scenarios=scenarios))
            elapsed = time.perf_counter() - t0
            assert stats.judged == 0
            assert stats.cached == 50_000
            return elapsed

        f = median_of(reps, full)
        report("assess: 10,000 traces × 5 checks, all judged", f"{f:.2f} s", "≤ 10 s")
        c = median_of(reps, cached)
        report("assess: 10,000 traces × 5 checks, unchanged (cached)", f"{c:.2f} s ({c / f:.2f}× full)", "≤ 2 s")


# --------------------------------------------------------------------------- trace finalisation


def tool_loop_trace(n_calls: int) -> list[Span]:
    """A tool loop as SDK capture records it: every LLM span carries the whole history so far."""
    tid, root = new_trace_id(), new_span_id()
    history: list[dict] = [{"role": "system", "parts": [{"type": "text", "content": "You are a support agent."}]},
                           {"role": "user", "parts": [{"type": "text", "content": "Look up C-42."}]}]
    spans = [Span(trace_id=tid, span_id=root, name="agent", kind=SpanKind.AGENT, start_ns=0, end_ns=n_calls * 10)]
    for i in range(n_calls):
        last = i == n_calls - 1
        out = ({"role": "assistant", "parts": [{"type": "text", "content": "done"}]} if last else
               {"role": "assistant", "parts": [{"type": "tool_call", "id": f"call_{i}", "name": "lookup_customer",
                                                "arguments": {"customer_id": f"C-{i}"}}]})
        spans.append(Span(trace_id=tid, span_id=new_span_id(), parent_id=root, name="chat gpt-4.1-mini",
                          kind=SpanKind.LLM, start_ns=i * 10, end_ns=i * 10 + 5,
                          attributes={"gen_ai.input.messages": list(history), "gen_ai.output.messages": [out],
                                      "gen_ai.usage.input_tokens": 100, "gen_ai.usage.output_tokens": 10,
                                      "costar.capture": "sdk", "costar.usage.cost_usd": 0.0001}))
        history += [out, {"role": "tool", "parts": [{"type": "tool_call_response", "id": f"call_{i}",
                                                     "response": '{"name": "Ada Lovelace", "tier": "gold"}'}]}]
    return spans


def bench_finalize(reps: int) -> None:
    from costar.models.pricing import PriceTable
    from costar.trace.finalize import finalize_spans

    prices = PriceTable()
    plain = synthetic_trace("r", "s", 0, 21).spans  # 7 LLM spans (no tool calls), 13 TOOL spans

    def noop() -> float:
        t0 = time.perf_counter()
        for _ in range(1000):
            finalize_spans(plain, price=prices.cost)
        return (time.perf_counter() - t0) / 1000

    per = median_of(max(reps, 3), noop)
    report("finalise a 21-span trace (7 LLM, 13 TOOL spans, nothing to infer)", f"{per * 1e6:.1f} µs", "recorded")
    for n in (4, 200):
        def once(n: int = n) -> float:
            spans = tool_loop_trace(n)
            t0 = time.perf_counter()
            out = finalize_spans(spans, price=prices.cost)
            elapsed = time.perf_counter() - t0
            assert sum(1 for s in out if s.kind == SpanKind.TOOL) == n - 1
            return elapsed

        wall = median_of(max(reps, 3), once)
        report(f"finalise a {n}-call tool-loop trace (infer {n - 1} TOOL spans)",
               f"{wall * 1e3:.2f} ms ({wall / n * 1e6:.0f} µs/call)", "recorded")


# --------------------------------------------------------------------------- commands


def bench_commands(reps: int) -> None:
    """What process control costs per command: run_command (own session, PR_SET_PDEATHSIG in the
    child, the watchdog told, the /proc scan for escaped children, pipes closed) against plain
    asyncio.create_subprocess_exec + communicate of the same /bin/true (the anchor)."""
    import os

    from costar._util.process import run_command
    from costar._util.reaper import processes_with_markers

    n = 100
    cwd = Path.cwd()
    env = dict(os.environ)

    async def plain() -> None:
        for _ in range(n):
            proc = await asyncio.create_subprocess_exec("true", stdout=asyncio.subprocess.PIPE,
                                                        stderr=asyncio.subprocess.PIPE)
            await proc.communicate()

    async def controlled() -> None:
        for _ in range(n):
            await run_command(["true"], cwd=cwd, env=env)

    def timed(fn: Callable[[], object]) -> float:
        t0 = time.perf_counter()
        asyncio.run(fn())  # type: ignore[arg-type]
        return (time.perf_counter() - t0) / n

    anchor = median_of(reps, lambda: timed(plain))
    ours = median_of(reps, lambda: timed(controlled))
    report(f"command: asyncio subprocess of /bin/true, sequential (anchor, {n} per rep)", f"{anchor * 1e3:.2f} ms",
           "—")
    report("command: run_command of /bin/true (session, pdeathsig, watchdog, marker scan)",
           f"{ours * 1e3:.2f} ms = {ours / anchor:.2f}× the anchor", "recorded")

    def scan() -> float:
        t0 = time.perf_counter()
        for _ in range(20):
            processes_with_markers({"0" * 32})
        return (time.perf_counter() - t0) / 20

    procs = sum(1 for name in os.listdir("/proc") if name.isdigit()) if os.path.isdir("/proc") else 0
    report(f"command: /proc scan for escaped children ({procs} processes)", f"{median_of(reps, scan) * 1e3:.2f} ms",
           "recorded")


BENCHES = {"recording": bench_recording, "harness": bench_harness, "store": bench_store, "assess": bench_assess,
           "finalize": bench_finalize, "commands": bench_commands}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("which", nargs="*", help=f"any of {', '.join(BENCHES)} (default: all)")
    parser.add_argument("-r", "--reps", type=int, default=5)
    args = parser.parse_args()
    print(f"# {platform.node()} · {platform.processor() or platform.machine()} · Python {platform.python_version()} · "
          f"{time.strftime('%Y-%m-%d')}")
    unknown = [w for w in args.which if w not in BENCHES]
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; choose from {', '.join(BENCHES)}")
    for name in args.which or BENCHES:
        BENCHES[name](args.reps)


if __name__ == "__main__":
    main()
