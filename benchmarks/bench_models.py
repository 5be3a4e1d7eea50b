"""Model-layer benchmarks: throughput against the scripted server, cache-hit latency, local tokens/s.

    python benchmarks/bench_models.py [--calls 1000] [--concurrency 64] [--latency 0.2] [--skip-local]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import tempfile
import time
from typing import Any

from costar.errors import ConfigError
from costar.models import ModelClient, RetryPolicy
from costar.testing import Rule, ScriptedModelServer, scripted_server_process


async def _burst(client: ModelClient, calls: int) -> float:
    await client.achat("warm up")  # first-use costs (HTTP pool, imports) are not throughput
    t0 = time.perf_counter()
    await asyncio.gather(*[client.achat(f"request {i}") for i in range(calls)])
    return time.perf_counter() - t0


def _server_process(latency: float) -> contextlib.AbstractContextManager[str]:
    """The scripted server in its own process, so the client is measured without sharing its GIL,
    as it would be against a remote provider."""
    return scripted_server_process([{"latency": latency, "text": "ok"}])


def bench_throughput(calls: int, concurrency: int, latency: float) -> list[tuple[str, str]]:
    ideal = calls / concurrency * latency
    rows = [(f"{calls} calls, {latency * 1000:.0f} ms latency, concurrency {concurrency}", ""),
            ("  ideal (calls / concurrency x latency)", f"{ideal:.2f} s")]
    with ScriptedModelServer([Rule(latency=latency, text="ok")]) as srv:
        client = ModelClient(srv.model_uri("bench-throughput"), max_concurrency=concurrency,
                             retry=RetryPolicy(max_retries=0), timeout=30)
        wall = asyncio.run(_burst(client, calls))
        rows += [("  server in a thread of this process", f"{wall:.2f} s = {wall / ideal:.2f}x ideal, "
                                                          f"{calls / wall:.0f} calls/s"),
                 ("    peak requests in flight at the server", str(srv.max_in_flight))]
    with _server_process(latency) as base:
        client = ModelClient(f"openai-compatible:/bench-throughput?base_url={base}", max_concurrency=concurrency,
                             retry=RetryPolicy(max_retries=0), timeout=30)
        wall = asyncio.run(_burst(client, calls))
        rows.append(("  server in its own process", f"{wall:.2f} s = {wall / ideal:.2f}x ideal, "
                                                    f"{calls / wall:.0f} calls/s"))
    return rows


def bench_cache(hits: int) -> list[tuple[str, str]]:
    with tempfile.TemporaryDirectory() as folder, ScriptedModelServer(default="cached answer") as srv:
        client = ModelClient(srv.model_uri("bench-cache"), cache="read_write", cache_dir=folder)
        messages = [{"role": "system", "content": "You are a benchmark."}, {"role": "user", "content": "hit me"}]
        client.chat(messages, temperature=0)
        inner: list[float] = []
        outer: list[float] = []
        for _ in range(hits):
            t0 = time.perf_counter()
            r = client.chat(messages, temperature=0)
            outer.append(time.perf_counter() - t0)
            inner.append(r.latency_s)
            assert r.cache_hit
        sent = srv.request_count
    inner.sort()
    outer.sort()
    return [
        (f"cache hit, median of {hits} (ChatResult.latency_s)", f"{statistics.median(inner) * 1e6:.0f} µs"),
        ("  p99", f"{inner[int(len(inner) * 0.99) - 1] * 1e6:.0f} µs"),
        ("  median wall time of chat() incl. request building", f"{statistics.median(outer) * 1e6:.0f} µs"),
        ("  requests that reached the server", str(sent)),
    ]


def bench_local(max_tokens: int) -> list[tuple[str, str]]:
    try:
        client = ModelClient("local:/smollm2")
        client.chat("Hi", max_tokens=4)  # loads the model once
    except ConfigError as exc:
        return [("local:/smollm2", f"unavailable: {exc}")]
    poem_schema: dict[str, Any] = {
        "type": "object", "required": ["title", "lines"],
        "properties": {"title": {"type": "string"}, "lines": {"type": "array", "items": {"type": "string"}}}}
    rows = []
    for label, schema in [("free text", None), ("JSON schema (grammar-constrained)", poem_schema)]:
        t0 = time.perf_counter()
        r = client.chat("Write a short poem about the sea.", max_tokens=max_tokens, temperature=0,
                        json_schema=schema)
        wall = time.perf_counter() - t0
        rows.append((f"local:/smollm2 {label}, {r.usage.output_tokens} tokens",
                     f"{r.usage.output_tokens / wall:.0f} tokens/s ({wall:.2f} s)"))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=1000)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--latency", type=float, default=0.2)
    ap.add_argument("--cache-hits", type=int, default=2000)
    ap.add_argument("--local-tokens", type=int, default=128)
    ap.add_argument("--skip-local", action="store_true")
    args = ap.parse_args()

    rows = bench_throughput(args.calls, args.concurrency, args.latency)
    rows += bench_cache(args.cache_hits)
    if not args.skip_local:
        rows += bench_local(args.local_tokens)
    width = max(len(k) for k, _ in rows)
    print(f"{'benchmark'.ljust(width)}  result")
    print(f"{'-' * width}  {'-' * 24}")
    for k, v in rows:
        print(f"{k.ljust(width)}  {v}")


if __name__ == "__main__":
    main()
