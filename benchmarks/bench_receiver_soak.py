"""Soak benchmark of the OTLP receiver: minutes of sustained posts from other processes.

    python benchmarks/bench_receiver_soak.py                 # 180 s, 3 posting processes, 10 posts/s each
    python benchmarks/bench_receiver_soak.py --seconds 600 --posters 4
    python benchmarks/bench_receiver_soak.py --rate 0        # as fast as the receiver answers (overload)

The benchmark process plays the harness: it runs the receiver, hands out one endpoint per "trial",
and every half second takes each trial's spans and stores them in a SQLite store, as the harness does
at the end of a turn. Poster processes play agents: each sends OTLP/protobuf export requests (spans
with a few KB of attributes) to its trial's endpoint at a steady rate (or, with ``--rate 0``, as fast
as the receiver answers: then the buffer bounds are what keeps memory flat), and one of
them misbehave on the side (posts to unknown keys, to the plain /v1/traces without a key, oversized
and malformed bodies), all of which must be refused without being kept.

It reports the receiver process's resident memory over time (it should be flat once warm), the
receiver's buffer, the throughput, and checks that every span a poster got a 200 for is in the store
(by span id), none missing and none extra.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

SPANS_PER_POST = 40
ATTRIBUTE_BYTES = 2_000


def trim() -> None:
    """Give freed memory back to the OS (glibc keeps it otherwise), so RSS shows what is still held."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass


def rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


class Tally:
    """A count and an order-free checksum of span ids: equal tallies on both sides mean the same set of
    ids (up to a 2^-64 chance), without holding hundreds of thousands of ids in memory."""

    def __init__(self) -> None:
        self.count = 0
        self.checksum = 0

    def add(self, span_ids: list[str]) -> None:
        self.count += len(span_ids)
        for sid in span_ids:  # a mixing hash, summed: the order of arrival does not matter
            self.checksum = (self.checksum + (int(sid, 16) * 0x9E3779B97F4A7C15 + 0xBF58476D1CE4E5B9) ** 3) % 2**64


def poster(index: int, base_url: str, key: str, seconds: float, rate: float, hostile: bool, out: mp.Queue) -> None:
    """One agent: posts until the deadline; reports the tally of the span ids the receiver acknowledged (200)."""
    import httpx

    from costar.trace.model import Span, SpanKind
    from costar.trace.otlp import spans_to_export_request

    url = f"{base_url}/costar/{key}/v1/traces"
    acked = Tally()
    stats = {"posts": 0, "refused": 0, "hostile": 0, "hostile_kept": 0, "errors": 0}
    seq = 0
    deadline = time.monotonic() + seconds
    next_post = time.monotonic()
    with httpx.Client(timeout=30) as client:
        while time.monotonic() < deadline:
            if rate > 0:
                next_post += 1 / rate
                time.sleep(max(0.0, next_post - time.monotonic()))
            ids = [f"{index:02x}{seq + i:014x}" for i in range(SPANS_PER_POST)]
            seq += SPANS_PER_POST
            spans = [Span(trace_id=f"{index:032x}", span_id=sid, name="chat soak", kind=SpanKind.LLM,
                          start_ns=time.time_ns(), end_ns=time.time_ns() + 1000,
                          attributes={"gen_ai.operation.name": "chat", "payload": "x" * ATTRIBUTE_BYTES,
                                      "gen_ai.usage.input_tokens": 12})
                     for sid in ids]
            body = spans_to_export_request(spans).SerializeToString()
            try:
                r = client.post(url, content=body, headers={"Content-Type": "application/x-protobuf"})
            except httpx.HTTPError:
                stats["errors"] += 1
                continue
            stats["posts"] += 1
            if r.status_code == 200:
                acked.add(ids)
            else:
                stats["refused"] += 1
            if hostile and stats["posts"] % 5 == 0:
                # Unknown key, no key, garbage: answered, never kept.
                for path, payload in ((f"/costar/forged-{seq}/v1/traces", body), ("/v1/traces", body),
                                      (f"/costar/{key}/v1/traces", b"\x0a\xff garbage")):
                    try:
                        h = client.post(base_url + path, content=payload,
                                        headers={"Content-Type": "application/x-protobuf"})
                    except httpx.HTTPError:
                        continue
                    stats["hostile"] += 1
                    stats["hostile_kept"] += h.status_code == 200
    out.put((index, (acked.count, acked.checksum), stats))


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seconds", type=float, default=180.0)
    parser.add_argument("--posters", type=int, default=3)
    parser.add_argument("--rate", type=float, default=10.0, help="posts per second per poster (0: unpaced)")
    parser.add_argument("--sample-every", type=float, default=10.0, help="seconds between memory samples")
    parser.add_argument("--no-store", dest="store", action="store_false",
                        help="take the spans and keep only their ids (the receiver alone, without SQLite)")
    args = parser.parse_args()

    from costar.store.sqlite import SQLiteStore
    from costar.trace.model import Trace, new_trace_id
    from costar.trace.receiver import OtlpReceiver

    root = Path(tempfile.mkdtemp(prefix="costar-soak-"))
    store = SQLiteStore(root / ".costar")
    ctx = mp.get_context("spawn")
    queue: mp.Queue = ctx.Queue()
    import gc

    objects_at_start = len(gc.get_objects())
    with OtlpReceiver() as rx:
        keys = [f"trial-{i}" for i in range(args.posters)]
        for k in keys:
            rx.endpoint_for(k)
        procs = [ctx.Process(target=poster, args=(i, rx.base_url, keys[i], args.seconds, args.rate, i == 0, queue))
                 for i in range(args.posters)]
        started = time.monotonic()
        for p in procs:
            p.start()
        samples: list[tuple[float, float, float]] = []  # (seconds, rss MB, buffered MB)
        taken = Tally()
        next_sample = 0.0
        max_buffered = 0
        results = []
        while len(results) < len(procs):
            time.sleep(0.5)
            max_buffered = max(max_buffered, rx.buffered_bytes)
            for k in keys:  # the harness's part: take each trial's spans and store them
                got = rx.take(k)
                rx.errors(k)
                if got:
                    spans = [r.span for r in got]
                    if args.store:
                        store.write_traces([Trace(trace_id=new_trace_id(), scenario_id=k, spans=spans)])
                    taken.add([s.span_id for s in spans])
            elapsed = time.monotonic() - started
            if elapsed >= next_sample:
                samples.append((elapsed, rss_mb(), rx.buffered_bytes / 2**20))
                next_sample += args.sample_every
            while not queue.empty():
                results.append(queue.get())
        for p in procs:
            p.join(30)
        for k in keys:  # whatever arrived after the last take
            got = rx.take(k)
            if got:
                if args.store:
                    store.write_traces([Trace(trace_id=new_trace_id(), scenario_id=k, spans=[r.span for r in got])])
                taken.add([r.span.span_id for r in got])
        samples.append((time.monotonic() - started, rss_mb(), rx.buffered_bytes / 2**20))
        got = spans = []  # the last batch is stored: let it go before measuring what is still held
        trim()
        drained = rss_mb()
        objects_after = len(gc.get_objects())
        rx_stats = rx.stats
    elapsed = time.monotonic() - started

    acked = Tally()
    for _, (count, checksum), _ in results:
        acked.count += count
        acked.checksum = (acked.checksum + checksum) % 2**64
    stored = taken
    if args.store:  # what the store holds, read back one trace at a time
        stored = Tally()
        for tid in store.trace_ids():
            stored.add([s.span_id for s in store.get_trace(tid).spans])
    totals = {k: sum(s[k] for _, _, s in results) for k in ("posts", "refused", "hostile", "hostile_kept", "errors")}

    warm = [s for s in samples if s[0] >= min(30.0, elapsed / 3)]
    first, last = warm[0], warm[-1]
    slope = (last[1] - first[1]) / max(1e-9, (last[0] - first[0]) / 60)
    print(f"machine: {platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"{time.strftime('%Y-%m-%d')}")
    pace = f"{args.rate:g} posts/s each" if args.rate > 0 else "unpaced"
    print(f"{args.posters} posting processes for {args.seconds:.0f} s ({pace}); {SPANS_PER_POST} spans of ~"
          f"{ATTRIBUTE_BYTES // 1000} KB per post")
    print("\n  t (s)   RSS (MB)   buffered (MB)")
    for t, rss, buf in samples:
        print(f"  {t:6.0f}   {rss:8.1f}   {buf:8.2f}")
    print(f"\nposts: {totals['posts']:,} ({totals['posts'] / elapsed:,.0f}/s), acknowledged spans: {acked.count:,} "
          f"({acked.count / elapsed:,.0f}/s), refused posts: {totals['refused']}, client errors: {totals['errors']}")
    print(f"hostile posts: {totals['hostile']:,}, of them kept: {totals['hostile_kept']}; "
          f"receiver: {rx_stats.rejected:,} rejected, {rx_stats.dropped_spans:,} spans dropped")
    where = "stored" if args.store else "taken from the receiver"
    same = (stored.count, stored.checksum) == (acked.count, acked.checksum)
    print(f"spans {where}: {stored.count:,} (taken {taken.count:,}); the same ids as acknowledged: {same}")
    print(f"RSS after warm-up: {first[1]:.1f} -> {last[1]:.1f} MB ({slope:+.2f} MB/min); median "
          f"{statistics.median(s[1] for s in warm):.1f} MB; receiver buffer peak {max_buffered / 2**20:.1f} MB")
    print(f"RSS once everything is stored and freed memory is returned (malloc_trim): {drained:.1f} MB "
          f"(at start {samples[0][1]:.1f} MB); Python objects alive: {objects_after:,} (at start "
          f"{objects_at_start:,})")
    ok = same and totals["hostile_kept"] == 0
    print("RESULT:", f"every acknowledged span {where}, nothing else" if ok else "MISMATCH")
    store.close()


if __name__ == "__main__":
    main()
