"""A monitor's metrics over a window: per judge, the pass rate with a Wilson interval, the rates
corrected with the judge's golden set (Rogan–Gladen and PPI, ``costar.align.corrected``) and the share
of judge errors; per monitor, the operational numbers (traces, sampled traces, the share that ended
in error, tokens, cost, latency, what the judges cost).

A window of length ``w`` evaluated at time ``t`` covers the traces that happened in ``(t − w, t]``
(a trace happens when it ends). Values come from the rows of ``monitor_traces`` and
``monitor_results``, never from the traces, so they can be computed after retention deleted the traces.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from costar.metrics import percentile
from costar.stats import wilson_interval
from costar.store.base import Store
from costar.store.monitor_tables import MonitorTables, SeriesPoint

OPS = ""
"""The ``judge`` of operational series (they belong to the monitor, not to a judge)."""
DECIDED = ("pass", "fail")


@dataclass
class GoldenFit:
    """How a judge's current version errs against a golden set's human labels: the labeled traces it
    has a pass/fail verdict on, with both decisions."""

    golden: str
    """The golden set's name."""
    version: int
    """Its version."""
    split: str
    """The split used: ``test`` when it has one, else ``all``."""
    human: dict[str, bool]
    """Trace id -> the human's pass/fail."""
    judge: dict[str, bool]
    """Trace id -> the judge's pass/fail (current version)."""

    @property
    def cells(self) -> tuple[int, int, int, int]:
        """(tp, fn, fp, tn) with a human pass as the positive class."""
        tp = fn = fp = tn = 0
        for tid, y in self.human.items():
            f = self.judge[tid]
            if y and f:
                tp += 1
            elif y:
                fn += 1
            elif f:
                fp += 1
            else:
                tn += 1
        return tp, fn, fp, tn

    def describe(self) -> dict[str, Any]:
        """The fit as JSON-ready data (stored with the corrected rates' points)."""
        tp, fn, fp, tn = self.cells
        return {"golden": self.golden, "version": self.version, "split": self.split, "labeled": len(self.human),
                "tp": tp, "fn": fn, "fp": fp, "tn": tn}


def golden_fit(store: Store, judge: str, fingerprint: str | None) -> GoldenFit | str | None:
    """The newest golden set made for ``judge`` with the judge's verdicts (of this ``fingerprint``) on
    its labeled traces; None when the judge has no golden set; a reason (text) when it cannot be used."""
    infos = [g for g in store.golden_sets() if g.judge_name == judge]
    if not infos:
        return None
    # Imported only for judges with a golden set: it brings numpy, a third of a second to import.
    from costar.align.agreement_store import judge_decision

    info = max(infos, key=lambda g: (g.created_at, g.version))
    gs = store.golden_set(info.name, info.version)
    split = "test" if gs.trace_ids("test") else "all"
    labels = gs.labels(None if split == "all" else "test")
    if not all(isinstance(v, bool) for v in labels.values()):
        return f"golden set {gs.name} v{gs.version} holds {gs.value_type.describe()} labels, not pass/fail"
    calls: dict[str, bool] = {}
    for v in store.verdicts(trace_ids=list(labels), latest=False):  # oldest first: the newest wins
        if v.name == judge and (fingerprint is None or v.fingerprint == fingerprint):
            d = judge_decision(v, "passed")
            if isinstance(d, bool):
                calls[str(v.trace_id)] = d
    human = {t: bool(y) for t, y in labels.items() if t in calls}
    if not human:
        return (f"the judge's current version has no verdicts on the {len(labels)} traces of golden set "
                f"{gs.name} v{gs.version} ({split} split); score them (costar judges agreement {judge} --golden "
                f"{gs.name})")
    return GoldenFit(gs.name, gs.version, split, human, {t: calls[t] for t in human})


def _wilson(k: int, n: int) -> tuple[float | None, float | None, float | None]:
    if n == 0:
        return None, None, None
    low, high = wilson_interval(k, n)
    return k / n, low, high


def judge_points(tables: MonitorTables, monitor: str, judges: Sequence[str], window: float, at: float, *,
                 fits: Mapping[str, GoldenFit | str | None] | None = None) -> list[SeriesPoint]:
    """The per-judge points of one window ending at ``at``."""
    counts = tables.outcome_counts(monitor, at - window, at)
    out: list[SeriesPoint] = []
    for judge in judges:
        c = counts.get(judge, {})
        passed, failed, errors = c.get("pass", 0), c.get("fail", 0), c.get("error", 0)
        decided = passed + failed
        data = {"pass": passed, "fail": failed, "error": errors, "metric": c.get("metric", 0),
                "skipped": c.get("skipped", 0)}
        value, low, high = _wilson(passed, decided)
        out.append(SeriesPoint(monitor, judge, window, "pass_rate", at, decided, value, low, high, data))
        value, low, high = _wilson(errors, decided + errors)
        out.append(SeriesPoint(monitor, judge, window, "judge_error_rate", at, decided + errors, value, low, high,
                               {"error": errors}))
        fit = (fits or {}).get(judge)
        if fit is not None:
            out.extend(_corrected(tables, monitor, judge, window, at, passed, decided, fit))
    return out


def _corrected(tables: MonitorTables, monitor: str, judge: str, window: float, at: float, passed: int, decided: int,
               fit: GoldenFit | str) -> list[SeriesPoint]:
    from costar.align.agreement_results import AgreementError
    from costar.align.corrected import ChanceJudgeError, ppi_mean, rogan_gladen

    def point(metric: str, value: float | None, low: float | None, high: float | None, n: int,
              data: dict[str, Any]) -> SeriesPoint:
        return SeriesPoint(monitor, judge, window, metric, at, n, value, low, high, data)

    if isinstance(fit, str):
        return [point(m, None, None, None, decided, {"error": fit}) for m in ("rogan_gladen", "ppi")]
    base = fit.describe()
    if decided == 0:
        return [point(m, None, None, None, 0, {**base, "error": "no decided verdicts in the window"})
                for m in ("rogan_gladen", "ppi")]
    out = []
    tp, fn, fp, tn = fit.cells
    try:
        rg = rogan_gladen(passed, decided, tp, fn, fp, tn)
        out.append(point("rogan_gladen", rg.value, rg.ci.low if rg.ci else None, rg.ci.high if rg.ci else None,
                         decided, {**base, "unclipped": rg.unclipped, "notes": rg.notes}))
    except (ChanceJudgeError, AgreementError) as exc:
        out.append(point("rogan_gladen", None, None, None, decided, {**base, "error": str(exc)}))
    # PPI's unlabeled sample leaves out the window's traces that are in the golden set (each trace once).
    on_golden = tables.outcomes_on(monitor, judge, list(fit.human), at - window, at)
    lab_pass = sum(1 for o in on_golden.values() if o == "pass")
    lab_dec = sum(1 for o in on_golden.values() if o in DECIDED)
    u_pass, u_n = passed - lab_pass, decided - lab_dec
    try:
        est = ppi_mean([1.0] * u_pass + [0.0] * (u_n - u_pass), [float(fit.judge[t]) for t in fit.human],
                       [float(fit.human[t]) for t in fit.human])
        out.append(point("ppi", est.value, est.ci.low if est.ci else None, est.ci.high if est.ci else None, u_n,
                         {**base, "unclipped": est.unclipped, "se": est.se, "notes": est.notes}))
    except AgreementError as exc:
        out.append(point("ppi", None, None, None, u_n, {**base, "error": str(exc)}))
    return out


def ops_points(tables: MonitorTables, monitor: str, window: float, at: float) -> list[SeriesPoint]:
    """The operational points of one window ending at ``at``."""
    rows = tables.operational(monitor, at - window, at)
    n = len(rows)
    sampled = sum(r[0] for r in rows)
    errors = sum(1 for r in rows if r[4])
    out = [SeriesPoint(monitor, OPS, window, "traces", at, n, float(n), None, None, {}),
           SeriesPoint(monitor, OPS, window, "sampled", at, n, float(sampled), None, None, {})]
    value, low, high = _wilson(errors, n)
    out.append(SeriesPoint(monitor, OPS, window, "error_rate", at, n, value, low, high, {"errors": errors}))
    for metric, idx in (("total_tokens", 1), ("cost_usd", 2), ("latency_s", 3)):
        values = [float(r[idx]) for r in rows]
        data = {"sum": sum(values), "p90": percentile(values, 0.9)} if values else {}
        out.append(SeriesPoint(monitor, OPS, window, metric, at, n, statistics.median(values) if values else None,
                               None, None, data))
    lat = [r[3] for r in rows]
    out.append(SeriesPoint(monitor, OPS, window, "latency_p90", at, n, percentile(lat, 0.9) if lat else None, None,
                           None, {}))
    cost = tables.judge_cost(monitor, at - window, at)
    out.append(SeriesPoint(monitor, OPS, window, "judge_cost_usd", at, sampled, cost, None, None, {}))
    return out


def step_of(window: float, minimum: float) -> float:
    """How often a window's points are stored: twelve points per window length, at least ``minimum``."""
    return max(minimum, window / 12.0)
