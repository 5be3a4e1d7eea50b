"""Monitors for the web app's tests and screenshots, on a store seeded by ``webapp_seed``: production
traces over the last 12 hours scored by the real monitor service, a golden set for one check (so its
corrected rates show), an alert that fired and recovered, one firing now, and a hostile monitor whose
description, filter, judge name, traces and alert message carry markup."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from costar.judges.registry import JudgeRegistry
from costar.labels import GoldenExample, GoldenSet
from costar.monitor.files import load_monitors
from costar.monitor.service import MonitorService
from costar.store.sqlite import SQLiteStore
from costar.trace.model import Trace, TraceStatus
from tests.support.webapp_seed import HOSTILE, HOSTILE_IMG, HOSTILE_SCRIPT

MONITOR = "support"
"""The monitor with a golden set, a recovered alert and a firing one."""
GOLDEN_JUDGE = "answers"
"""Its check with a golden set."""
OTHER_JUDGE = "polite"
HOSTILE_MONITOR = "lab-watch"
HOSTILE_JUDGE = HOSTILE_SCRIPT
"""A check named with markup: its series, links and alert message carry it."""
HOURS = 12
PER_HOUR = 6
BAD_HOURS = (5, 6)
"""Hours ago (exclusive ends) whose answers fail: the quality alert fires there and recovers later."""

SUPPORT = {
    "name": MONITOR, "description": "Support answers in production",
    "filter": {"project": "shop", "service": "support-*", "attributes": {"deployment.environment": "prod"}},
    "sample": 1.0,
    "checks": [{"name": GOLDEN_JUDGE, "output_contains": "It is"}, {"name": OTHER_JUDGE, "not_output_contains": "stupid"}],
    "windows": ["1h", "1d"],
    "alerts": [{"name": "quality-drop", "judge": GOLDEN_JUDGE, "window": "1h", "below": 0.6, "min_samples": 5},
               {"name": "error-spike", "metric": "error_rate", "window": "1h", "above": 0.1, "min_samples": 5}],
    "metadata": {"owner": "support-team"},
}
LAB = {
    "name": HOSTILE_MONITOR, "description": HOSTILE,
    "filter": {"project": "lab", "attributes": {"user.note": HOSTILE_IMG}},
    "sample": 1.0,
    "checks": [{"name": HOSTILE_JUDGE, "output_contains": "It is"}],
    "criteria": [HOSTILE], "windows": ["1h"],
    "alerts": [{"name": "lab-drop", "below": 0.99, "min_samples": 1}],
    "metadata": {"note": HOSTILE},
}


@dataclass
class MonitorSeed:
    now: float
    """When the seed ran: the traces' times are before it."""
    traces: dict[str, list[str]] = field(default_factory=dict)
    """monitor -> the trace ids it matches."""


def _trace(tid: str, at: float, *, output: str, project: str, service: str, error: bool = False,
           note: str | None = None, agent: str = "support-bot", tokens: int = 900, cost: float = 0.002,
           latency: float = 2.0) -> Trace:
    resource = {"service.name": service, "deployment.environment": "prod"}
    if note is not None:
        resource["user.note"] = note
    end = int(at * 1e9)
    trace = Trace(trace_id=tid, start_ns=end - int(latency * 1e9), end_ns=end, output=output, input="What is the weather?",
                  status=TraceStatus.ERROR if error else TraceStatus.OK, error="upstream timeout" if error else None,
                  metadata={"costar.project": project, "otel.resource": resource})
    trace.agent.name = agent
    trace.agent.version = "2.1"
    trace.totals.total_tokens = tokens
    trace.totals.cost_usd = cost
    trace.totals.latency_s = latency
    return trace


def add_monitors(store: SQLiteStore, project: Path, *, hostile: bool = True) -> MonitorSeed:
    """Write the monitors under ``project/monitors/`` (the hostile one too unless ``hostile`` is False),
    their traces into ``store``, score them with the monitor service (a backfill over the last 13
    hours), and evaluate the alert rules at three times."""
    now = time.time()
    seed = MonitorSeed(now=now)
    folder = project / "monitors"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "support.yaml").write_text(yaml.safe_dump(SUPPORT, sort_keys=False))
    if hostile:
        (folder / "lab.yaml").write_text(yaml.safe_dump(LAB, sort_keys=False, allow_unicode=True))
    traces: list[Trace] = []
    for hour in range(HOURS):
        for k in range(PER_HOUR):
            # Within each hour, minutes 5..55 before its end: no trace sits near an hour's edge.
            at = now - hour * 3600 - 300 - k * 600
            tid = f"prod-{hour:02d}-{k}"
            bad = BAD_HOURS[0] <= hour < BAD_HOURS[1]
            output = "Sorry, I cannot tell." if bad else ("It is sunny, 21 °C." if k != 3 else "It is raining, you stupid.")
            traces.append(_trace(tid, at, output=output, project="shop", service="support-api",
                                 error=hour == 0 and k % 2 == 0, tokens=800 + 40 * k + 10 * hour,
                                 cost=0.0015 + 0.0001 * k, latency=1.5 + 0.2 * k + (1.5 if bad else 0.0)))
            seed.traces.setdefault(MONITOR, []).append(tid)
    for k in range(3 if hostile else 0):
        tid = f"lab/{HOSTILE_SCRIPT}-{k}"
        traces.append(_trace(tid, now - 600 - 300 * k, output=HOSTILE, project="lab", service="lab",
                             note=HOSTILE_IMG, agent=HOSTILE_SCRIPT))
        seed.traces.setdefault(HOSTILE_MONITOR, []).append(tid)
    store.write_traces(traces)
    # Humans labeled 20 production traces for the answers check: they agree with it but twice.
    labeled = [t for t in traces if t.trace_id.startswith("prod-")][::3][:20]
    examples = []
    for i, t in enumerate(labeled):
        judged = "It is" in str(t.output)
        examples.append(GoldenExample(trace_id=t.trace_id, label=(not judged) if i in (4, 11) else judged, split="test"))
    store.write_golden_set(GoldenSet(name="answers-gold", judge_name=GOLDEN_JUDGE, examples=examples))

    clock = {"t": now}
    service = MonitorService(store, load_monitors(folder), JudgeRegistry(), clock=lambda: clock["t"])

    async def work() -> None:
        for name in (MONITOR, HOSTILE_MONITOR) if hostile else (MONITOR,):
            await service.backfill(name, since=now - (HOURS + 1) * 3600, until=now)
        # The answers fail 5-6 hours ago: the quality rule fires there, and recovers two hours later.
        for hours_ago in (BAD_HOURS[0] + 1 / 30, BAD_HOURS[0] - 2, 0.0):
            clock["t"] = now - hours_ago * 3600
            await service.evaluate(now=clock["t"], names=[MONITOR] if hours_ago else None)

    asyncio.run(work())
    return seed
