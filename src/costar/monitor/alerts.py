"""Alert rules over metric series: a threshold on a value or an interval bound, or a robust anomaly
against the recent past; with the state that makes an alert fire once and then recover.

A rule is checked on a window's newest value. The answer is one of three: the condition holds
(``firing``), it does not (``clear``), or the window holds too little to say (fewer than
``min_samples`` observations, or for an anomaly too short a history), which changes nothing. The
count series (``traces``, ``sampled``) are exact at any number of traces, so ``min_samples`` does
not apply to them. A
rule fires when its condition starts to hold, stays quiet while it keeps holding (one alert, however
many evaluations see it), and sends a recovery message when it clears.

Anomalies use the rule of ``costar metrics`` (Iglewicz and Hoaglin's robust z-score with a minimum
relative change, ``costar.metrics.detect_anomaly``), with the value of the same series in each of
the ``history`` windows before this one as the recent past.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from costar._util.units import format_usd
from costar.metrics import describe_change, median_abs_deviation, robust_z
from costar.monitor.model import AlertRule, format_duration
from costar.store.monitor_tables import SeriesPoint

LABELS = {
    "pass_rate": "pass rate", "rogan_gladen": "corrected pass rate (Rogan–Gladen)",
    "ppi": "corrected pass rate (PPI)", "judge_error_rate": "judge error rate", "traces": "traces",
    "sampled": "sampled traces", "error_rate": "share of traces in error", "total_tokens": "median tokens per trace",
    "cost_usd": "median cost per trace", "latency_s": "median latency", "latency_p90": "p90 latency",
    "judge_cost_usd": "judge cost",
}


def series_key(judge: str, window: float) -> str:
    """How an alert names the series it watches: ``helpful@1h``, or ``monitor@1d`` for operational ones."""
    return f"{judge or 'monitor'}@{format_duration(window)}"


def format_value(metric: str, value: float | None) -> str:
    if value is None:
        return "n/a"
    if metric in ("cost_usd", "judge_cost_usd"):
        return format_usd(value)
    if metric in ("latency_s", "latency_p90"):
        return f"{value * 1000:,.0f}ms" if value < 1 else f"{value:,.1f}s"
    if metric in ("traces", "sampled", "total_tokens"):
        return f"{value:,.0f}"
    return f"{value:.3f}"


@dataclass
class RuleCheck:
    """One rule on one series at one evaluation."""

    rule: AlertRule
    """The rule checked."""
    monitor: str
    """The monitor."""
    judge: str
    """The judge's verdict name; empty for an operational series."""
    window: float
    """The window's length in seconds."""
    state: Literal["firing", "clear", "insufficient"]
    """``firing`` (the condition holds), ``clear``, or ``insufficient`` (too little data: no change)."""
    value: float | None
    """The series' value."""
    compared: float | None
    """The number the condition was decided on (the value or a bound; the value for anomalies)."""
    n: int
    """What the value was computed from."""
    message: str
    """One line saying what holds."""
    data: dict[str, Any] = field(default_factory=dict)
    """The numbers behind the decision (the webhook payload's fields)."""

    @property
    def series(self) -> str:
        """The series' name, e.g. ``helpful@1h``."""
        return series_key(self.judge, self.window)

    def payload(self) -> dict[str, Any]:
        """What an alert records and sends about this check."""
        rule = self.rule
        out: dict[str, Any] = {
            "monitor": self.monitor, "rule": rule.name, "metric": rule.metric, "judge": self.judge or None,
            "window": format_duration(self.window), "window_s": self.window, "value": self.value,
            "compared": rule.compared, "compared_value": self.compared, "n": self.n,
        }
        if rule.below is not None:
            out["below"] = rule.below
        if rule.above is not None:
            out["above"] = rule.above
        if rule.anomaly is not None:
            out["anomaly"] = rule.anomaly.model_dump()
        out.update(self.data)
        return out


def _describe_point(monitor: str, judge: str, p: SeriesPoint) -> str:
    what = LABELS.get(p.metric, p.metric)
    of = f" of {judge}" if judge else ""
    interval = f" [{p.low:.3f}, {p.high:.3f}]" if p.low is not None and p.high is not None else ""
    shown = format_value(p.metric, p.value)
    return f"{monitor}: {what}{of} over {format_duration(p.window)} is {shown}{interval} (n={p.n})"


COUNT_METRICS = frozenset({"traces", "sampled"})
"""Series whose value is a count of the window's traces: exact at any n (0 included), so
``min_samples`` does not apply to them. Otherwise a rule like ``traces below 1`` could never fire when
traffic stops, nor recover once it had fired."""


def _too_few(rule: AlertRule, point: SeriesPoint) -> bool:
    return point.metric not in COUNT_METRICS and point.n < rule.min_samples


def check_threshold(rule: AlertRule, monitor: str, point: SeriesPoint) -> RuleCheck:
    base: dict[str, Any] = {"rule": rule, "monitor": monitor, "judge": point.judge, "window": point.window,
                            "value": point.value, "n": point.n}
    which = rule.compared
    x = {"value": point.value, "lower": point.low, "upper": point.high}[which]
    head = _describe_point(monitor, point.judge, point)
    if _too_few(rule, point) or x is None:
        return RuleCheck(**base, state="insufficient", compared=x,
                         message=f"{head}: fewer than {rule.min_samples} observations, not judged")
    limit = rule.below if rule.below is not None else rule.above
    assert limit is not None
    firing = x < limit if rule.below is not None else x > limit
    name = "value" if which == "value" else f"{which} bound"
    relation = "below" if rule.below is not None else "above"
    shown = format_value(rule.metric, x)
    if firing:
        message = f"{head}; its {name} {shown} is {relation} {format_value(rule.metric, limit)}"
    else:
        message = f"{head}; its {name} {shown} is no longer {relation} {format_value(rule.metric, limit)}"
    return RuleCheck(**base, state="firing" if firing else "clear", compared=x, message=message)


def check_anomaly(rule: AlertRule, monitor: str, point: SeriesPoint, history: Sequence[float]) -> RuleCheck:
    spec = rule.anomaly
    assert spec is not None
    base: dict[str, Any] = {"rule": rule, "monitor": monitor, "judge": point.judge, "window": point.window,
                            "value": point.value, "compared": point.value, "n": point.n}
    head = _describe_point(monitor, point.judge, point)
    if _too_few(rule, point) or point.value is None:
        return RuleCheck(**base, state="insufficient",
                         message=f"{head}: fewer than {rule.min_samples} observations, not judged")
    if len(history) < spec.min_history:
        return RuleCheck(**base, state="insufficient", data={"history": list(history)},
                         message=f"{head}: {len(history)} earlier window(s), {spec.min_history} needed")
    current = point.value
    center = statistics.median(history)
    mad = median_abs_deviation(history)
    z = robust_z(current, history)
    change = current - center
    relative = abs(change) / abs(center) if center else (math.inf if change else 0.0)
    outside = change != 0 if z is None else abs(z) > spec.threshold
    direction = "up" if change > 0 else "down"
    wanted = spec.direction == "both" or spec.direction == direction
    firing = outside and relative >= spec.min_change and wanted
    past = f"the last {len(history)} windows (median {format_value(rule.metric, center)})"
    data = {"history": list(history), "history_median": center, "mad": mad, "robust_z": z}
    if firing:
        message = f"{head}: {describe_change(center, current)} against {past}"
    else:
        message = f"{head}: within its usual range over {past}"
    return RuleCheck(**base, state="firing" if firing else "clear", message=message, data=data)


def recent_history(points: Sequence[SeriesPoint], at: float, window: float, count: int) -> list[float]:
    """The series' value in each of the ``count`` windows before the one ending at ``at``: for the k-th,
    the newest stored point in ``(at − (k+1)·w, at − k·w]``, oldest first; windows without one are left out."""
    out: list[float] = []
    ordered = sorted((p for p in points if p.value is not None), key=lambda p: p.at)
    for k in range(count, 0, -1):
        hi = at - k * window
        lo = hi - window
        inside = [p for p in ordered if lo < p.at <= hi]
        if inside:
            value = inside[-1].value
            assert value is not None
            out.append(value)
    return out
