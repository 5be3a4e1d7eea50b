"""Monitor scoring throughput: traces/s a monitor scores with check judges, and with an LLM judge
against the scripted model server, on SQLite and PostgreSQL; anchored on the same judges called
directly on the same traces in the same run.

    python benchmarks/bench_monitor.py                 # 3 runs each, medians
    python benchmarks/bench_monitor.py -r 5 --checks-traces 4000 --llm-traces 1000
    python benchmarks/bench_monitor.py --only sqlite   # sqlite, postgresql

Each run starts from a new store holding N production-like traces (an agent span, a model call with
its messages, a tool call; ``costar.project`` and a ``service.name`` as ``costar server`` stores
them). Measured, per judge kind and store:

* **offered**: the server's path. Every trace is offered to :class:`MonitorService` as the server's
  listener does, then the queue is processed: the monitor records each trace it considered, loads
  the sampled ones, judges them (``concurrency`` 8), stores the verdicts tagged with the monitor and
  its per-judge results. traces/s = N / elapsed.
* **backfill**: ``costar monitor backfill`` over the same stored traces (a new store each run): reads
  the stored traces page by page, filters, samples, scores, then fills the series.
* **anchor (direct)**: the floor under both — the same judges called on the same traces with the same
  concurrency, traces read in batches of 64 and the verdicts written with ``write_verdicts``; no
  monitor bookkeeping. The ratio offered / anchor is what the monitor's bookkeeping costs.

The check monitor has three checks (``output_contains``, ``max_tool_calls``, ``no_error_spans``); the LLM
monitor has one LLM judge (``bool`` verdict) whose model is the scripted OpenAI-compatible server on
loopback, answering at once: the figure is coSTAR's own cost per judged trace (prompt rendering,
the HTTP round trip, parsing, storing), not a model's latency.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from costar.judges.base import Judge, JudgeContext  # noqa: E402
from costar.judges.registry import JudgeRegistry  # noqa: E402
from costar.monitor.files import Monitor  # noqa: E402
from costar.monitor.model import MonitorDefinition  # noqa: E402
from costar.monitor.scoring import MonitorJudges  # noqa: E402
from costar.monitor.service import MonitorService, ServiceOptions  # noqa: E402
from costar.store.postgres import PostgresStore  # noqa: E402
from costar.store.sqlite import SQLiteStore  # noqa: E402
from costar.testing import Rule, ScriptedModelServer  # noqa: E402
from costar.trace.model import Span, SpanKind, Trace  # noqa: E402

CONCURRENCY = 8
BATCH = 64


def production_traces(n: int, *, now: float) -> list[Trace]:
    """``n`` traces like those ``costar server`` stores from an instrumented agent."""
    out = []
    for i in range(n):
        tid = f"{i + 1:032x}"
        end = int((now - 60 + i * 0.001) * 1e9)
        start = end - 1_500_000_000
        city = f"City{i}"
        spans = [
            Span(trace_id=tid, span_id=f"{i:08x}00000001", name="invoke_agent weather", kind=SpanKind.AGENT,
                 start_ns=start, end_ns=end, attributes={"gen_ai.agent.name": "weather"}),
            Span(trace_id=tid, span_id=f"{i:08x}00000002", parent_id=f"{i:08x}00000001", name="chat gpt-4.1-mini",
                 kind=SpanKind.LLM, start_ns=start + 1000, end_ns=start + 800_000_000,
                 attributes={"gen_ai.request.model": "gpt-4.1-mini", "gen_ai.usage.input_tokens": 50,
                             "gen_ai.usage.output_tokens": 12,
                             "gen_ai.input.messages": [{"role": "user", "content": f"Weather in {city}?"}]}),
            Span(trace_id=tid, span_id=f"{i:08x}00000003", parent_id=f"{i:08x}00000001",
                 name="execute_tool get_weather", kind=SpanKind.TOOL, start_ns=start + 900_000_000,
                 end_ns=start + 1_000_000_000,
                 attributes={"gen_ai.tool.name": "get_weather", "gen_ai.tool.call.arguments": {"city": city},
                             "gen_ai.tool.call.result": "rainy"}),
        ]
        good = i % 10 != 0
        t = Trace(trace_id=tid, start_ns=start, end_ns=end, input=f"Weather in {city}?",
                  output=f"It is rainy in {city}." if good else "Sorry, I could not get the weather.",
                  metadata={"costar.project": "weather",
                            "otel.resource": {"service.name": "weather-agent"}}, spans=spans)
        t.agent.name = "weather"
        t.totals.total_tokens = 62
        t.totals.latency_s = 1.5
        out.append(t)
    return out


def check_monitor() -> dict[str, Any]:
    return {"name": "checks", "filter": {"project": "weather", "service": "weather-*"}, "windows": ["1h", "1d"],
            "checks": [{"name": "answers", "output_contains": "It is"}, {"name": "few-tools", "max_tool_calls": 3},
                       {"name": "clean", "no_error_spans": True}]}


def llm_monitor() -> dict[str, Any]:
    return {"name": "llm", "filter": {"project": "weather", "service": "weather-*"}, "windows": ["1h", "1d"],
            "judges": ["helpful"]}


def llm_registry(model_uri: str) -> JudgeRegistry:
    from costar.judges.llm import LlmJudge

    registry = JudgeRegistry()
    registry.register("helpful", LlmJudge("helpful", "Does the answer give the weather? {{outputs}}", model=model_uri))
    return registry


# --------------------------------------------------------------------------- one measurement


def _service(store: Any, definition: dict[str, Any], registry: JudgeRegistry) -> MonitorService:
    monitor = Monitor(MonitorDefinition.model_validate(definition), "bench")
    return MonitorService(store, [monitor], registry, options=ServiceOptions(concurrency=CONCURRENCY,
                                                                             batch_size=BATCH))


def offered(store: Any, traces: Sequence[Trace], definition: dict[str, Any], registry: JudgeRegistry) -> float:
    service = _service(store, definition, registry)
    heads = [t.model_copy(update={"spans": []}) for t in traces]  # what a listener gets: stored traces

    async def go() -> None:
        for t in heads:
            service.offer(t, project="weather")
        stats = await service.process_queue()
        assert stats.traces == len(traces), stats

    t0 = time.perf_counter()
    asyncio.run(go())
    return time.perf_counter() - t0


def backfill(store: Any, traces: Sequence[Trace], definition: dict[str, Any], registry: JudgeRegistry) -> float:
    service = _service(store, definition, registry)
    t0 = time.perf_counter()
    report = asyncio.run(service.backfill(definition["name"], since=time.time() - 3600))
    elapsed = time.perf_counter() - t0
    assert report.score.traces == len(traces), report
    return elapsed


def direct(store: Any, traces: Sequence[Trace], definition: dict[str, Any], registry: JudgeRegistry) -> float:
    monitor = Monitor(MonitorDefinition.model_validate(definition), "bench")
    judges: list[Judge] = MonitorJudges(monitor, registry).judges
    ids = [t.trace_id for t in traces]
    sem = asyncio.Semaphore(CONCURRENCY)

    async def go() -> None:
        async def one(trace: Trace, judge: Judge) -> Any:
            async with sem:
                return await judge.judge(JudgeContext(trace=trace, store=store))

        for i in range(0, len(ids), BATCH):
            batch = await asyncio.to_thread(store.get_traces, ids[i:i + BATCH])
            verdicts = await asyncio.gather(*(one(t, j) for t in batch for j in judges))
            await asyncio.to_thread(store.write_verdicts, list(verdicts), None)

    t0 = time.perf_counter()
    asyncio.run(go())
    return time.perf_counter() - t0


# --------------------------------------------------------------------------- runs


def measure(kind: str, opener: Callable[[], Any], n: int, definition: dict[str, Any], registry: JudgeRegistry,
            reps: int) -> dict[str, float]:
    traces = production_traces(n, now=time.time())
    out: dict[str, list[float]] = {"anchor": [], "offered": [], "backfill": []}
    for _ in range(reps):
        for name, fn in (("anchor", direct), ("offered", offered), ("backfill", backfill)):
            store = opener()
            store.write_traces(traces)
            out[name].append(n / fn(store, traces, definition, registry))
            store.close()
    return {k: statistics.median(v) for k, v in out.items()}


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-r", "--reps", type=int, default=3)
    ap.add_argument("--checks-traces", type=int, default=2000)
    ap.add_argument("--llm-traces", type=int, default=500)
    ap.add_argument("--only", choices=["sqlite", "postgresql"])
    args = ap.parse_args(argv)

    print(f"# bench_monitor: {platform.platform()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"{time.strftime('%Y-%m-%d')}; {args.reps} runs each, medians; concurrency {CONCURRENCY}")
    model = ScriptedModelServer([Rule(any_message="Sorry", json={"rationale": "no weather", "value": False}),
                                 Rule(json={"rationale": "gives the weather", "value": True})]).start()
    rows: list[tuple[str, str, int, dict[str, float]]] = []
    with tempfile.TemporaryDirectory() as tmp:
        counter = iter(range(100_000))
        stores: list[tuple[str, Callable[[], Any]]] = []
        cluster = None
        if args.only in (None, "sqlite"):
            stores.append(("SQLite", lambda: SQLiteStore(Path(tmp) / f"s{next(counter)}")))
        if args.only in (None, "postgresql"):
            from costar.store.pg_cluster import ThrowawayCluster

            cluster = ThrowawayCluster(durable=True).start()

            def open_pg() -> Any:
                name = f"bench{next(counter)}"
                with cluster.admin() as admin:  # type: ignore[union-attr]
                    admin.execute(f"CREATE DATABASE {name}")
                return PostgresStore(cluster.url(name), local_dir=Path(tmp) / f"local{name}")  # type: ignore[union-attr]

            stores.append(("PostgreSQL", open_pg))
        try:
            for store_name, opener in stores:
                llm = llm_registry(model.model_uri())
                for judge_kind, n, definition, registry in (
                        ("3 checks", args.checks_traces, check_monitor(), JudgeRegistry()),
                        ("LLM judge (scripted server)", args.llm_traces, llm_monitor(), llm)):
                    figures = measure(store_name, opener, n, definition, registry, args.reps)
                    rows.append((store_name, judge_kind, n, figures))
                    print(f"{store_name:10} {judge_kind:28} n={n:5}  anchor {figures['anchor']:8.1f}/s  "
                          f"offered {figures['offered']:8.1f}/s ({figures['offered'] / figures['anchor']:.2f}x)  "
                          f"backfill {figures['backfill']:8.1f}/s ({figures['backfill'] / figures['anchor']:.2f}x)",
                          flush=True)
        finally:
            model.stop()
            if cluster is not None:
                cluster.stop()
    print()
    print("| store | judges | traces | anchor (direct) traces/s | offered (server path) traces/s | ratio | "
          "backfill traces/s | ratio |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for store_name, judge_kind, n, f in rows:
        print(f"| {store_name} | {judge_kind} | {n} | {f['anchor']:.0f} | {f['offered']:.0f} | "
              f"{f['offered'] / f['anchor']:.2f} | {f['backfill']:.0f} | {f['backfill'] / f['anchor']:.2f} |")


if __name__ == "__main__":
    main()
