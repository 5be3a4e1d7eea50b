"""costar server ingest: sustained spans/s with the p99 acknowledgement latency, memory at steady
state, and nothing lost, for SQLite and PostgreSQL; anchored on an MLflow tracking server's OTLP
endpoint (SQLite store) driven by the same batches in the same run.

    python benchmarks/bench_server.py                    # 3 runs each, 20 s of load (MLflow 60 s), medians
    python benchmarks/bench_server.py -r 5 --seconds 30
    python benchmarks/bench_server.py --only sqlite      # sqlite, postgresql, mlflow

The load: real OTLP/protobuf batches made by the OpenTelemetry SDK (``encode_spans``, what its
exporter sends), 504 spans each (72 agent runs of 7 spans: an agent span, three model calls with
their messages, three tool calls), posted by several client processes over keep-alive connections
as fast as the server acknowledges them. Each batch gets fresh trace ids, so every trace is new.
A refused request (429/503) waits its Retry-After, as the exporters do, and is sent again.

Measured per run: acknowledged spans/s over the load window (after a warm-up), the p50/p99 latency
from sending a request to its acknowledgement, the server's resident memory (median and peak of
samples over the window), and, after the load stops, the time until every acknowledged span is
stored in an assembled trace; *stored spans/s* is acknowledged spans over load + drain time, the
rate the whole pipeline sustains. Then the store is counted: every acknowledged span must be there.

coSTAR's server runs as ``costar server`` (a subprocess, its default settings except ``idle: 1s``).
PostgreSQL is a throwaway local cluster with durability ON (fsync, synchronous commit), as a
production server would run it. MLflow (``mlflow==3.17.2``, or ``--mlflow-version``) is installed
into its own virtualenv (``benchmarks/.venv-mlflow``) on first use and runs ``mlflow server`` on a
SQLite backend; the batches go to its ``/v1/traces`` with ``x-mlflow-experiment-id: 0``; "stored"
is counted in its ``spans`` table.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import re
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
MLFLOW_VENV = ROOT / "benchmarks" / ".venv-mlflow"
TRACES_PER_BATCH = 72
WARMUP_S = 3.0


# --------------------------------------------------------------------------- the load


def template_batches(n: int = 8) -> list[tuple[bytes, list[bytes]]]:
    """``n`` OTLP/protobuf batches made by the OpenTelemetry SDK, with the trace ids in each."""
    import json

    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    out = []
    for b in range(n):
        exporter = InMemorySpanExporter()
        provider = TracerProvider(resource=Resource.create({"service.name": "shop-agent", "service.version": "1.4"}))
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        tracer = provider.get_tracer("bench")
        for i in range(TRACES_PER_BATCH):
            question = f"Where is order {b * 1000 + i}? It was due on Monday and the tracking page says nothing."
            with tracer.start_as_current_span("invoke_agent shop") as agent:
                agent.set_attribute("gen_ai.operation.name", "invoke_agent")
                agent.set_attribute("gen_ai.agent.name", "shop")
                agent.set_attribute("input.value", question)
                history = [{"role": "user", "parts": [{"type": "text", "content": question}]}]
                for turn in range(3):
                    with tracer.start_as_current_span("chat gpt-4.1-mini") as chat:
                        chat.set_attribute("gen_ai.operation.name", "chat")
                        chat.set_attribute("gen_ai.provider.name", "openai")
                        chat.set_attribute("gen_ai.request.model", "gpt-4.1-mini")
                        chat.set_attribute("gen_ai.response.model", "gpt-4.1-mini-2025-04-14")
                        chat.set_attribute("gen_ai.usage.input_tokens", 412 + 40 * turn)
                        chat.set_attribute("gen_ai.usage.output_tokens", 38)
                        chat.set_attribute("gen_ai.input.messages", json.dumps(history))
                        call = {"type": "tool_call", "id": f"call_{turn}", "name": "lookup_order",
                                "arguments": {"order": b * 1000 + i, "fields": ["status", "eta"]}}
                        chat.set_attribute("gen_ai.output.messages", json.dumps(
                            [{"role": "assistant", "parts": [call], "finish_reason": "tool_call"}]))
                    with tracer.start_as_current_span("execute_tool lookup_order") as tool:
                        tool.set_attribute("gen_ai.operation.name", "execute_tool")
                        tool.set_attribute("gen_ai.tool.name", "lookup_order")
                        tool.set_attribute("gen_ai.tool.call.id", f"call_{turn}")
                        tool.set_attribute("gen_ai.tool.call.arguments", json.dumps(call["arguments"]))
                        tool.set_attribute("gen_ai.tool.call.result", '{"status": "in transit", "eta": "Friday"}')
                    history += [{"role": "assistant", "parts": [call]},
                                {"role": "tool", "parts": [{"type": "tool_call_response", "id": f"call_{turn}",
                                                            "response": {"status": "in transit"}}]}]
                agent.set_attribute("output.value", "Your order is in transit and should arrive on Friday.")
        provider.shutdown()
        spans = list(exporter.get_finished_spans())
        ids = sorted({s.context.trace_id.to_bytes(16, "big") for s in spans})
        body = encode_spans(spans).SerializeToString()
        out.append((body, [_offsets(body, old) for old in ids]))
    return out


def _offsets(body: bytes, needle: bytes) -> list[int]:
    """Where ``needle`` occurs in ``body``."""
    found, at = [], body.find(needle)
    while at >= 0:
        found.append(at)
        at = body.find(needle, at + len(needle))
    return found


def fresh_ids(body: bytes, offsets: list[list[int]]) -> bytes:
    """``body`` with a new random trace id in place of each old one (``offsets``: where each occurs).
    Writing at known offsets keeps the load generator's CPU per batch small (a ``bytes.replace`` per
    trace scans the whole body 72 times), so it takes little of the cores the server runs on."""
    out = bytearray(body)
    for places in offsets:
        new = os.urandom(16)
        for at in places:
            out[at:at + 16] = new
    return bytes(out)


def _client(args: tuple[str, dict[str, str], list[Any], float, float, Any, Any]) -> dict[str, Any]:
    """One load process: posts batches (fresh trace ids each) until ``stop_at``; returns what it saw."""
    url, headers, templates, start_at, stop_at, barrier, _ = args
    import httpx

    barrier.wait()
    cpu_at_start = time.process_time()
    acked_total = 0
    acked_window = 0
    latencies: list[float] = []
    refused = 0
    errors = 0
    i = 0
    with httpx.Client(timeout=900, headers={"Content-Type": "application/x-protobuf", **headers}) as client:
        while time.time() < stop_at:
            template, offsets = templates[i % len(templates)]
            i += 1
            body = fresh_ids(template, offsets)  # fresh trace ids: every batch is new traffic
            while time.time() < stop_at:
                t0 = time.time()
                try:
                    r = client.post(url, content=body)
                except httpx.HTTPError:
                    errors += 1
                    time.sleep(0.1)
                    continue
                t1 = time.time()
                if r.status_code == 200:
                    spans = TRACES_PER_BATCH * 7
                    acked_total += spans
                    if start_at <= t1 <= stop_at:  # acknowledged inside the window
                        acked_window += spans
                        latencies.append(t1 - t0)
                    break
                if r.status_code in (429, 503):
                    refused += 1
                    time.sleep(float(r.headers.get("Retry-After", "1")))
                    continue
                errors += 1
                break
    return {"acked_total": acked_total, "acked_window": acked_window, "latencies": latencies,
            "refused": refused, "errors": errors, "cpu_s": time.process_time() - cpu_at_start}


def _tree(pid: int) -> list[int]:
    pids = [pid]
    try:
        out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
        for child in (int(p) for p in out.split()):
            pids += _tree(child)
    except OSError:
        pass
    return pids


def cpu_seconds(pid: int, *, tree: bool = True) -> float:
    """CPU time (user + system) of a process (and its descendants, with ``tree``) so far."""
    total = 0
    for p in _tree(pid) if tree else [pid]:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            continue
    return total / os.sysconf("SC_CLK_TCK")


def _rss(pid: int) -> int:
    """Resident memory of a process and its children (bytes)."""
    total = 0
    for p in _tree(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            continue
    return total


def drive(url: str, headers: dict[str, str], templates: list[Any], *, seconds: float, clients: int,
          server_pid: int) -> dict[str, Any]:
    ctx = mp.get_context("fork")
    barrier = ctx.Barrier(clients + 1)
    queue = ctx.Queue()
    start_at_holder = time.time() + 2.0
    start_at = start_at_holder + WARMUP_S
    stop_at = start_at + seconds

    def work(c: int) -> None:
        queue.put(_client((url, headers, templates, start_at, stop_at, barrier, c)))

    procs = [ctx.Process(target=work, args=(c,)) for c in range(clients)]
    for p in procs:
        p.start()
    barrier.wait()
    cpu_start = cpu_seconds(server_pid)
    cpu_start_own = cpu_seconds(server_pid, tree=False)
    rss: list[int] = []
    while time.time() < stop_at:
        if time.time() >= start_at:
            rss.append(_rss(server_pid))
        time.sleep(0.5)
    results = [queue.get(timeout=300) for _ in procs]
    for p in procs:
        p.join(60)
    latencies = sorted(x for r in results for x in r["latencies"])
    return {
        "acked_total": sum(r["acked_total"] for r in results),
        "acked_per_s": sum(r["acked_window"] for r in results) / seconds,
        "p50_ms": 1000 * latencies[len(latencies) // 2] if latencies else float("nan"),
        "p99_ms": 1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))] if latencies else float("nan"),
        "refused": sum(r["refused"] for r in results),
        "errors": sum(r["errors"] for r in results),
        "client_cpu_us_per_span": 1e6 * sum(r["cpu_s"] for r in results)
        / max(1, sum(r["acked_total"] for r in results)),
        "rss_median_mb": statistics.median(rss) / 1e6 if rss else float("nan"),
        "rss_peak_mb": max(rss) / 1e6 if rss else float("nan"),
        "load_end": stop_at, "load_start": start_at_holder, "cpu_start": cpu_start, "cpu_start_own": cpu_start_own,
    }


# --------------------------------------------------------------------------- the servers


def _wait_port(proc: subprocess.Popen[Any], pattern: str, timeout: float = 120) -> str:
    assert proc.stdout is not None
    deadline = time.time() + timeout
    while time.time() < deadline:
        line = proc.stdout.readline()
        if not line and proc.poll() is not None:
            raise RuntimeError(f"server exited: {proc.returncode}")
        m = re.search(pattern, line)
        if m:
            return m.group(1)
    raise RuntimeError("server did not start")


def _stop(proc: subprocess.Popen[Any]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)


def run_costar(location: str, workdir: Path, templates: list[Any], *, seconds: float, clients: int,
               count_spans: Any) -> dict[str, Any]:
    (workdir / "server.yaml").write_text("idle: 1s\n")
    proc = subprocess.Popen([sys.executable, "-m", "costar.cli", "server", "--port", "0", "--store", location,
                             "--log-level", "warning"], cwd=workdir, stdout=subprocess.PIPE,
                            stderr=open(workdir / "server.log", "w"), text=True, start_new_session=True)  # noqa: SIM115
    try:
        url = _wait_port(proc, r"listening on (http://\S+?) ")
        out = drive(url + "/v1/traces", {}, templates, seconds=seconds, clients=clients, server_pid=proc.pid)
        deadline = time.time() + 600
        while count_spans() < out["acked_total"] and time.time() < deadline:
            time.sleep(0.2)
        out["stored_at"] = time.time()
        out["stored"] = count_spans()
        out["cpu_us_per_span"] = 1e6 * (cpu_seconds(proc.pid) - out["cpu_start"]) / max(1, out["acked_total"])
        # The server process alone (ingest, HTTP); the rest is its assembler child.
        out["ingest_cpu_us_per_span"] = 1e6 * (cpu_seconds(proc.pid, tree=False) - out["cpu_start_own"]) \
            / max(1, out["acked_total"])
    finally:
        _stop(proc)
    out["stored_per_s"] = out["acked_total"] / (out["stored_at"] - out["load_start"])
    return out


def ensure_mlflow(version: str) -> Path:
    exe = MLFLOW_VENV / "bin" / "mlflow"
    if exe.exists():
        return exe
    subprocess.run([sys.executable, "-m", "venv", str(MLFLOW_VENV)], check=True)
    subprocess.run([str(MLFLOW_VENV / "bin" / "pip"), "install", "-q", f"mlflow=={version}"], check=True)
    return exe


def run_mlflow(workdir: Path, templates: list[Any], *, seconds: float, clients: int,
               version: str) -> dict[str, Any]:
    exe = ensure_mlflow(version)
    db = workdir / "mlflow.db"
    port = _free_port()
    proc = subprocess.Popen([str(exe), "server", "--backend-store-uri", f"sqlite:///{db}", "--host", "127.0.0.1",
                             "--port", str(port), "--artifacts-destination", str(workdir / "artifacts")],
                            cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        import httpx

        deadline = time.time() + 180
        while time.time() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        else:
            raise RuntimeError("mlflow server did not start")

        def count() -> int:
            try:
                with sqlite3.connect(db, timeout=30) as c:
                    return int(c.execute("SELECT count(*) FROM spans").fetchone()[0])
            except sqlite3.Error:
                return 0

        out = drive(f"http://127.0.0.1:{port}/v1/traces", {"x-mlflow-experiment-id": "0"}, templates,
                    seconds=seconds, clients=clients, server_pid=proc.pid)
        deadline = time.time() + 600
        while count() < out["acked_total"] and time.time() < deadline:
            time.sleep(0.5)
        out["stored_at"] = time.time()
        out["stored"] = count()
        out["cpu_us_per_span"] = 1e6 * (cpu_seconds(proc.pid) - out["cpu_start"]) / max(1, out["acked_total"])
    finally:
        _stop(proc)
    out["stored_per_s"] = out["acked_total"] / (out["stored_at"] - out["load_start"])
    return out


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --------------------------------------------------------------------------- main


def stage_costs(templates: list[Any], repeat: int = 5) -> dict[str, float]:
    """CPU per span (µs, ``time.process_time``, so independent of the machine's load) of each stage
    of the server's path, on the benchmark's batches, in this process on a SQLite store: the ingest
    process's decode + normalise, route + redact, write-ahead payload and commit; the assembler's
    payload decode and assembly (finalise, trace, the store's rows, one transaction per batch)."""
    from costar.server.assembler import Assembler, assembler_settings
    from costar.server.auth import Authenticator
    from costar.server.config import ServerConfig
    from costar.server.ingest import Ingestor
    from costar.server.wal import decode, encode
    from costar.store.server_tables import ServerTables
    from costar.store.sqlite import SQLiteStore
    from costar.trace.otlp import decode_request

    workdir = Path(tempfile.mkdtemp(prefix="bench-server-stages-"))
    store = SQLiteStore(workdir / "store")
    try:
        tables = ServerTables(store)
        config = ServerConfig.model_validate({"idle": 0})
        asm = Assembler(tables, **{**assembler_settings(config), "root_wait": 0})
        ingestor = Ingestor(config, tables, asm, Authenticator(tables, required=False))
        costs: dict[str, float] = {k: 0.0 for k in ("decode", "redact", "payload", "commit", "wal_decode",
                                                    "assemble")}
        spans = 0
        clock = time.process_time
        for _ in range(repeat):
            for template, offsets in templates:
                body = fresh_ids(template, offsets)  # fresh trace ids, as the load sends
                t0 = clock()
                routed = ingestor._routed(decode_request(body, "application/x-protobuf"))
                t1 = clock()
                groups = ingestor._redacted(routed, None)
                t2 = clock()
                payload = encode(groups)
                t3 = clock()
                n = sum(len(rows) for _, _, rows in routed)
                (row,) = tables.append_batches([(n, payload)])
                t4 = clock()
                again = decode(payload)
                t5 = clock()
                asm.add(row, again)
                asm.store_due()
                t6 = clock()
                for k, a, b in (("decode", t0, t1), ("redact", t1, t2), ("payload", t2, t3), ("commit", t3, t4),
                                ("wal_decode", t4, t5), ("assemble", t5, t6)):
                    costs[k] += b - a
                spans += n
        return {k: 1e6 * v / spans for k, v in costs.items()}
    finally:
        store.close()
        shutil.rmtree(workdir, ignore_errors=True)


def one_run(kind: str, templates: list[Any], args: argparse.Namespace, cluster: Any) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix=f"bench-server-{kind}-"))
    try:
        if kind == "mlflow":
            return run_mlflow(workdir, templates, seconds=args.mlflow_seconds, clients=args.clients,
                              version=args.mlflow_version)
        if kind == "sqlite":
            from costar.store.sqlite import SQLiteStore

            location = str(workdir / "store")
            SQLiteStore(location).close()

            def count() -> int:
                with sqlite3.connect(Path(location) / "costar.db", timeout=30) as c:
                    return int(c.execute("SELECT coalesce(sum(spans), 0) FROM server_traces").fetchone()[0])
        else:
            import psycopg

            name = f"bench_{os.getpid()}_{time.monotonic_ns()}"
            with psycopg.connect(cluster.url(), autocommit=True) as admin:
                admin.execute(f"CREATE DATABASE {name}")
            location = cluster.url(name)

            def count() -> int:
                with psycopg.connect(location) as c:
                    return int(c.execute("SELECT coalesce(sum(spans), 0) FROM server_traces").fetchone()[0])
        return run_costar(location, workdir, templates, seconds=args.seconds, clients=args.clients, count_spans=count)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-r", "--runs", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=20.0, help="load window per run (after a warm-up)")
    ap.add_argument("--clients", type=int, default=4, help="client processes posting batches")
    ap.add_argument("--only", action="append", choices=["sqlite", "postgresql", "mlflow"])
    ap.add_argument("--mlflow-version", default="3.17.2")
    ap.add_argument("--stages", action="store_true", help="only the CPU per span of each stage, in this process")
    ap.add_argument("--mlflow-seconds", type=float, default=60.0,
                    help="MLflow's load window (longer: one of its requests takes seconds)")
    args = ap.parse_args()
    kinds = args.only or ["sqlite", "postgresql", "mlflow"]
    templates = template_batches()
    stages = stage_costs(templates)
    print("CPU per span by stage (µs): " + ", ".join(f"{k} {v:.1f}" for k, v in stages.items())
          + f"; ingest process {sum(stages[k] for k in ('decode', 'redact', 'payload', 'commit')):.1f} + HTTP, "
          f"assembler process {stages['wal_decode'] + stages['assemble']:.1f}", flush=True)
    if args.stages:
        return
    cluster = None
    if "postgresql" in kinds:
        from costar.store.pg_cluster import ThrowawayCluster

        cluster = ThrowawayCluster(durable=True).start()
    results: dict[str, list[dict[str, Any]]] = {k: [] for k in kinds}
    try:
        for r in range(args.runs):
            for kind in kinds:
                out = one_run(kind, templates, args, cluster)
                results[kind].append(out)
                print(f"run {r + 1} {kind:<10} acked {out['acked_per_s']:>9,.0f} spans/s  stored "
                      f"{out['stored_per_s']:>9,.0f} spans/s  p50 {out['p50_ms']:7.1f} ms  p99 {out['p99_ms']:7.1f} ms"
                      f"  cpu {out['cpu_us_per_span']:5.0f} us/span (ingest process "
                      f"{out.get('ingest_cpu_us_per_span', float('nan')):.0f}; load generator "
                      f"{out['client_cpu_us_per_span']:.0f})  rss {out['rss_median_mb']:6.0f} MB "
                      f"(peak {out['rss_peak_mb']:.0f})  refused "
                      f"{out['refused']}  errors {out['errors']}  stored {out['stored']:,}/{out['acked_total']:,}",
                      flush=True)
    finally:
        if cluster is not None:
            cluster.stop()
    print(f"\nmachine: {platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}, load average "
          f"{os.getloadavg()[0]:.1f}; "
          f"{args.runs} runs of {args.seconds:g} s, {args.clients} client processes, {TRACES_PER_BATCH * 7} spans "
          "per request; medians")
    print("| server | acknowledged spans/s | stored spans/s | p50 ack | p99 ack | server CPU per span "
          "| RSS (median / peak) | lost |")
    print("|---|---|---|---|---|---|---|---|")
    med = {}
    for kind, runs in results.items():
        m = {k: statistics.median(x[k] for x in runs) for k in
             ("acked_per_s", "stored_per_s", "p50_ms", "p99_ms", "rss_median_mb", "rss_peak_mb", "cpu_us_per_span")}
        lost = sum(max(0, x["acked_total"] - x["stored"]) for x in runs)
        med[kind] = m
        print(f"| {kind} | {m['acked_per_s']:,.0f} | {m['stored_per_s']:,.0f} | {m['p50_ms']:.1f} ms | "
              f"{m['p99_ms']:.1f} ms | {m['cpu_us_per_span']:.0f} µs | {m['rss_median_mb']:.0f} / "
              f"{m['rss_peak_mb']:.0f} MB | {lost} |")
    if "mlflow" in med and med["mlflow"]["stored_per_s"] > 0:
        for kind in ("sqlite", "postgresql"):
            if kind in med:
                print(f"{kind}: {med[kind]['stored_per_s'] / med['mlflow']['stored_per_s']:.1f}x MLflow (stored "
                      f"spans/s), {med[kind]['acked_per_s'] / med['mlflow']['acked_per_s']:.1f}x (acknowledged)")


if __name__ == "__main__":
    main()
