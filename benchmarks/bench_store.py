"""Store benchmarks: trace write throughput and span page reads, SQLite (the anchor) vs PostgreSQL.

    python benchmarks/bench_store.py          # 5 repetitions each, medians reported
    python benchmarks/bench_store.py -r 3

PostgreSQL is a throwaway local cluster started by the benchmark (Debian's postgresql; as root it
runs as the ``postgres`` user) with durability off (``fsync=off``), like the tests' cluster: the
figures measure coSTAR's work and the protocol, not the disk. SQLite runs as coSTAR ships it (WAL,
``synchronous=NORMAL``). Ratios are PostgreSQL over SQLite, measured in the same run.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import Manager
from pathlib import Path
from typing import Any

from costar.store.base import Run, SpanQuery
from costar.store.pg_cluster import ThrowawayCluster
from costar.store.postgres import PostgresStore
from costar.store.sqlite import SQLiteStore
from costar.trace.model import Span, SpanKind, Totals, Trace, new_span_id, new_trace_id
from costar.trace.sanitize import DEFAULT_SANITIZER, Sanitizer

TRACES, SPANS_PER_TRACE, BATCH = 1000, 100, 50
BIG = 10_000
PAGE = 100


def synthetic_trace(run_id: str, scenario: str, n_spans: int) -> Trace:
    tid = new_trace_id()
    root = new_span_id()
    spans = [Span(trace_id=tid, span_id=root, name="agent", kind=SpanKind.AGENT, start_ns=0, end_ns=n_spans + 1)]
    for i in range(n_spans - 1):
        kind = SpanKind.LLM if i % 2 else SpanKind.TOOL
        attrs: dict[str, Any] = {"gen_ai.operation.name": "chat" if kind == SpanKind.LLM else "execute_tool",
                                 "gen_ai.usage.input_tokens": 100 + i, "gen_ai.usage.output_tokens": 20,
                                 "gen_ai.output.messages": [{"role": "assistant",
                                                             "parts": [{"type": "text", "content": "x" * 200}]}]}
        spans.append(Span(trace_id=tid, span_id=new_span_id(), parent_id=root, name=f"{kind.value.lower()}_{i % 7}",
                          kind=kind, start_ns=i + 1, end_ns=i + 2, attributes=attrs))
    return Trace(trace_id=tid, run_id=run_id, scenario_id=scenario, trial=0, start_ns=0, end_ns=n_spans + 1,
                 output="the answer", totals=Totals(latency_s=1.0), spans=spans)


class AlreadySanitized(Sanitizer):
    """The traces were sanitised before the clock started: redaction costs the same on both
    backends (it is measured once, separately), so the write figures measure the store."""

    def trace(self, t: Trace) -> Trace:
        return t


PREPARED = AlreadySanitized()


def prepared_traces(run_id: str, n: int, n_spans: int = SPANS_PER_TRACE) -> list[Trace]:
    return [DEFAULT_SANITIZER.trace(synthetic_trace(run_id, f"s{i}", n_spans)) for i in range(n)]


def write_throughput(store: Any, traces: list[Trace]) -> float:
    t0 = time.perf_counter()
    for i in range(0, len(traces), BATCH):
        store.write_traces(traces[i:i + BATCH], sanitizer=PREPARED)
    return time.perf_counter() - t0


def _writer(args: tuple[str, str, int, Any]) -> tuple[float, float]:
    """One of several processes writing into the same store (its own traces). Each builds its
    traces first, then all start writing together (a barrier); returns (start, end) times."""
    kind, where, n, barrier = args
    store: Any = SQLiteStore(where) if kind == "sqlite" else PostgresStore(where, local_dir=tempfile.mkdtemp())
    traces = prepared_traces(f"r-{os.getpid()}", n)  # its own run: a (run, scenario, trial) is stored once
    barrier.wait()
    start = time.time()
    write_throughput(store, traces)
    store.close()
    return start, time.time()


def median_of(reps: int, fn: Callable[[], float]) -> float:
    return statistics.median(fn() for _ in range(reps))


def run(reps: int) -> list[tuple[str, dict[str, float]]]:
    out: list[tuple[str, dict[str, float]]] = []
    with tempfile.TemporaryDirectory() as tmp, ThrowawayCluster() as cluster:
        counter = iter(range(10_000))

        def new_pg_db() -> str:
            name = f"bench{next(counter)}"
            with cluster.admin() as admin:  # type: ignore[attr-defined]
                admin.execute(f"CREATE DATABASE {name}")
            return cluster.url(name)

        def open_sqlite(tag: str) -> Any:
            return SQLiteStore(Path(tmp) / f"{tag}{next(counter)}")

        def open_pg(tag: str) -> Any:
            return PostgresStore(new_pg_db(), local_dir=Path(tmp) / f"local{next(counter)}")

        for name, opener in (("SQLite", open_sqlite), ("PostgreSQL", open_pg)):
            figures: dict[str, float] = {}

            def one_writer(opener: Callable[[str], Any] = opener) -> float:
                store = opener("w")
                run_ = Run()
                store.create_run(run_)
                traces = prepared_traces(run_.run_id, TRACES)
                elapsed = write_throughput(store, traces)
                store.close()
                return elapsed

            figures["write_s"] = median_of(reps, one_writer)

            def two_writers(name: str = name) -> float:
                where = str(Path(tmp) / f"c{next(counter)}") if name == "SQLite" else new_pg_db()
                kind = "sqlite" if name == "SQLite" else "postgresql"
                first: Any = SQLiteStore(where) if kind == "sqlite" else PostgresStore(where, local_dir=tmp)
                first.close()
                with Manager() as manager, ProcessPoolExecutor(2) as pool:
                    barrier = manager.Barrier(2)
                    times = list(pool.map(_writer, [(kind, where, TRACES // 2, barrier)] * 2))
                return max(end for _, end in times) - min(start for start, _ in times)

            figures["two_writers_s"] = median_of(reps, two_writers)

            store = opener("r")
            big = synthetic_trace("r", "big", BIG)
            store.write_trace(big)

            def page_through(store: Any = store, tid: str = big.trace_id) -> float:
                t0 = time.perf_counter()
                n = 0
                for offset in range(0, BIG, PAGE):
                    n += len(store.query_spans(tid, SpanQuery(offset=offset, limit=PAGE)))
                assert n == BIG
                return (time.perf_counter() - t0) / (BIG // PAGE)

            def filtered_page(store: Any = store, tid: str = big.trace_id) -> float:
                t0 = time.perf_counter()
                page = store.query_spans(tid, SpanQuery(kind=SpanKind.TOOL, name="tool_*", offset=2500, limit=PAGE))
                assert len(page) == PAGE
                return time.perf_counter() - t0

            def load(store: Any = store, tid: str = big.trace_id) -> float:
                t0 = time.perf_counter()
                assert len(store.get_trace(tid).spans) == BIG
                return time.perf_counter() - t0

            figures["page_ms"] = median_of(reps, page_through) * 1000
            figures["filtered_page_ms"] = median_of(max(reps, 5) * 4, filtered_page) * 1000
            figures["load_ms"] = median_of(reps, load) * 1000
            store.close()
            out.append((name, figures))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-r", "--reps", type=int, default=5)
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]} on {platform.platform()}; {args.reps} repetitions, medians", flush=True)
    sample = [synthetic_trace("r", f"s{i}", SPANS_PER_TRACE) for i in range(100)]
    t0 = time.perf_counter()
    for t in sample:
        DEFAULT_SANITIZER.trace(t)
    per_span = (time.perf_counter() - t0) / (len(sample) * SPANS_PER_TRACE)
    print(f"sanitising (redaction + bounds, before any store write): {per_span * 1e6:.1f} µs per span", flush=True)
    results = dict(run(args.reps))
    spans = TRACES * SPANS_PER_TRACE
    anchor = results["SQLite"]
    rows = [
        ("write 100,000 spans (1,000 traces × 100, batches of 50), one process", "write_s",
         lambda f: f"{f['write_s']:.2f} s ({spans / f['write_s']:,.0f} spans/s)"),
        ("same, two processes writing 500 traces each into one store", "two_writers_s",
         lambda f: f"{f['two_writers_s']:.2f} s ({spans / f['two_writers_s']:,.0f} spans/s)"),
        (f"read a {BIG:,}-span trace page by page ({PAGE} spans a page), per page", "page_ms",
         lambda f: f"{f['page_ms']:.2f} ms"),
        ("one filtered page (kind + name glob, offset 2,500)", "filtered_page_ms",
         lambda f: f"{f['filtered_page_ms']:.2f} ms"),
        (f"load the whole {BIG:,}-span trace", "load_ms", lambda f: f"{f['load_ms']:.0f} ms"),
    ]
    print("\n| what | SQLite (anchor) | PostgreSQL | PostgreSQL / SQLite |\n|---|---|---|---|")
    for label, key, fmt in rows:
        ratio = results["PostgreSQL"][key] / anchor[key]
        print(f"| {label} | {fmt(anchor)} | {fmt(results['PostgreSQL'])} | {ratio:.2f}× |")


if __name__ == "__main__":
    main()
