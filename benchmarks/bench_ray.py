"""The Ray executor: its per-trial overhead against the local executor, and scaling from one node to two.

    python benchmarks/bench_ray.py             # both, 3 repetitions each, medians reported
    python benchmarks/bench_ray.py overhead -r 5
    python benchmarks/bench_ray.py scaling

* **overhead** — the harness benchmark's workload (bench_core.py: 100 scenarios × 10 trials, an in-process
  agent recording 20 spans and sleeping 50 ms) with two trials in flight on each executor: the local one
  (``--concurrency 2``) and Ray on a local cluster of two nodes with one CPU each (each trial holds one
  CPU). The ideal is 1,000 × 50 ms / 2 = 25 s; what each takes beyond that, per trial, is its overhead.
* **scaling** — 40 trials of a CPU-bound agent (about 0.25 s of pure-Python arithmetic each) on a cluster
  of one node with one CPU, then of two nodes with one CPU each (this is a 2-core machine).

Clusters are started by the benchmark (``costar.testing.ray_cluster``) and stopped at the end. The driver
connects once, before the clock starts, so connecting is not counted as trial time.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench_core import AGENT_MODULE as SLEEPY_AGENT  # the harness benchmark's agent: the same workload
from bench_core import median_of

from costar.run.agents import make_agent
from costar.run.harness import HarnessOptions
from costar.scenario import Scenario
from costar.suites import run_suite
from costar.testing.ray_cluster import LocalRayCluster, RayNode

RESULTS: list[tuple[str, str]] = []


def report(name: str, value: str) -> None:
    RESULTS.append((name, value))
    print(f"{name:66s} {value}", flush=True)


BUSY_AGENT = '''
def run(task):
    total = 0
    for i in range(BUSY_LOOPS):
        total += i * i % 7
    return str(total)
'''


def _connect(address: str) -> None:
    import ray

    ray.init(address=address, logging_level="ERROR", log_to_driver=False)


def _disconnect() -> None:
    import ray

    ray.shutdown()


DRIVER_CPU: dict[str, list[float]] = {}


def _timed_run(root: Path, scenarios: list[Scenario], agent: dict[str, str], executor: str, concurrency: int) -> float:
    store = root / f"store-{time.perf_counter_ns()}"
    t0 = time.perf_counter()
    c0 = time.process_time()
    out = run_suite(scenarios, agent, store=store, options=HarnessOptions(concurrency=concurrency, executor=executor))
    wall = time.perf_counter() - t0
    trials = sum(sc.trials for sc in scenarios)
    DRIVER_CPU.setdefault(executor, []).append((time.process_time() - c0) / trials)
    assert out.summary.totals.trials == trials, out.summary.totals
    assert out.summary.totals.agent_errors == 0
    return wall


def bench_overhead(reps: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "bench_ray_sleepy.py").write_text(SLEEPY_AGENT)
        sys.path.insert(0, str(root))
        agent = {"type": "python", "target": "bench_ray_sleepy:run", "cwd": str(root)}
        make_agent(agent)  # imports it here too
        scenarios = [Scenario(id=f"s{i}", prompt="go", trials=10) for i in range(100)]
        ideal = 1000 * 0.05 / 2
        local = median_of(reps, lambda: _timed_run(root, scenarios, agent, "local", 2))
        DRIVER_CPU.pop("ray", None)
        with LocalRayCluster([RayNode(1), RayNode(1)]) as cluster:
            _connect(cluster.address)
            try:
                _timed_run(root, scenarios[:10], agent, "ray", 2)  # warm the workers up (not timed)
                DRIVER_CPU.pop("ray", None)
                ray_wall = median_of(reps, lambda: _timed_run(root, scenarios, agent, "ray", 2))
            finally:
                _disconnect()
    driver = statistics.median(DRIVER_CPU["ray"])
    report("overhead: 1,000 trials × (20 spans, 50 ms), 2 in flight, ideal", f"{ideal:.1f} s")
    report("overhead: local executor (--concurrency 2), anchor", f"{local:.1f} s · "
           f"{(local - ideal) * 2 / 1000 * 1000:.1f} ms per trial over ideal")
    report("overhead: ray executor (2 nodes × 1 CPU, 1 CPU per trial)", f"{ray_wall:.1f} s · "
           f"{(ray_wall - ideal) * 2 / 1000 * 1000:.1f} ms per trial over ideal ({ray_wall / local:.2f}× local)")
    report("overhead: ray executor, the driver's CPU per trial (submit, receive, store, check)",
           f"{driver * 1000:.1f} ms")


def bench_scaling(reps: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        loops = int(os.environ.get("BUSY_LOOPS", "2500000"))
        (root / "bench_ray_busy.py").write_text(BUSY_AGENT.replace("BUSY_LOOPS", str(loops)))
        agent = {"type": "python", "target": "bench_ray_busy:run", "cwd": str(root)}
        scenarios = [Scenario(id=f"s{i}", prompt="go", trials=4) for i in range(10)]
        sys.path.insert(0, str(root))
        t0 = time.perf_counter()
        __import__("bench_ray_busy").run(None)
        one_trial = time.perf_counter() - t0
        walls = {}
        for nodes in (1, 2):
            with LocalRayCluster([RayNode(1) for _ in range(nodes)]) as cluster:
                _connect(cluster.address)
                try:
                    _timed_run(root, scenarios[:2], agent, "ray", 2)  # warm the workers up (not timed)
                    walls[nodes] = median_of(reps, lambda: _timed_run(root, scenarios, agent, "ray", 2))
                finally:
                    _disconnect()
    report("scaling: one CPU-bound trial, in this process", f"{one_trial:.2f} s")
    report("scaling: 40 CPU-bound trials, 1 node × 1 CPU", f"{walls[1]:.1f} s ({walls[1] / 40:.2f} s per trial)")
    report("scaling: 40 CPU-bound trials, 2 nodes × 1 CPU", f"{walls[2]:.1f} s ({walls[1] / walls[2]:.2f}× faster)")


BENCHES = {"overhead": bench_overhead, "scaling": bench_scaling}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("which", nargs="*", help=f"any of {', '.join(BENCHES)} (default: all)")
    parser.add_argument("-r", "--reps", type=int, default=3)
    args = parser.parse_args()
    print(f"# {platform.node()} · {platform.processor() or platform.machine()} · Python {platform.python_version()} · "
          f"{os.cpu_count()} CPUs · {time.strftime('%Y-%m-%d')}", flush=True)
    unknown = [w for w in args.which if w not in BENCHES]
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; choose from {', '.join(BENCHES)}")
    for name in args.which or BENCHES:
        BENCHES[name](args.reps)


if __name__ == "__main__":
    main()
