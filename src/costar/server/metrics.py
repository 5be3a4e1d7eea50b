"""The server's own metrics: queue depth, spans per second, refused requests, stored traces, the
acknowledgement latency. ``GET /metrics`` serves them in Prometheus' text format, ``GET
/api/v1/server`` as JSON."""

from __future__ import annotations

import time
from typing import Any

_HELP = {
    "costar_server_uptime_seconds": ("gauge", "Seconds since the server started."),
    "costar_ingest_requests_total": ("counter", "OTLP export requests received."),
    "costar_ingest_requests_accepted_total": ("counter", "OTLP export requests acknowledged (committed)."),
    "costar_ingest_requests_rejected_total": ("counter", "OTLP export requests refused, by HTTP status."),
    "costar_ingest_spans_accepted_total": ("counter", "Spans acknowledged (committed to the write-ahead log)."),
    "costar_ingest_spans_per_second": ("gauge", "Spans acknowledged per second over the last minute."),
    "costar_ingest_inflight_bytes": ("gauge", "Request bodies being read, decoded or committed."),
    "costar_ingest_commits_total": ("counter", "Write-ahead transactions (one holds many requests)."),
    "costar_ingest_commit_errors_total": ("counter", "Write-ahead transactions that failed (their requests got 503)."),
    "costar_ingest_ack_latency_seconds": ("gauge", "Acknowledgement latency quantiles over recent requests."),
    "costar_assembler_open_traces": ("gauge", "Traces not yet complete, held in memory."),
    "costar_assembler_open_spans": ("gauge", "Spans of open traces (the queue depth)."),
    "costar_assembler_restarts_total": ("counter", "Assembler processes restarted after they exited."),
    "costar_traces_stored_total": ("counter", "Traces stored for the first time."),
    "costar_traces_amended_total": ("counter", "Stored traces rewritten with late spans."),
    "costar_traces_incomplete_total": ("counter", "Traces stored before they were complete."),
    "costar_spans_stored_total": ("counter", "Spans stored in assembled traces."),
    "costar_spans_refused_total": ("counter", "Spans refused after acknowledgement: a token of one project "
                                              "sent spans of another project's trace."),
    "costar_store_commit_errors_total": ("counter", "Failed attempts to store assembled traces (retried)."),
    "costar_traces_build_errors_total": ("counter", "Traces whose finalisation failed on their content, "
                                                    "stored as received and flagged."),
    "costar_wal_recovered_spans": ("gauge", "Spans replayed from the write-ahead log at start."),
    "costar_monitor_traces_offered_total": ("counter", "Stored traces offered to the monitors."),
    "costar_monitor_traces_sampled_total": ("counter", "Offered traces a monitor matched and sampled."),
    "costar_monitor_traces_left_to_sweep_total": ("counter", "Traces offered while the scoring queue was full "
                                                            "(a sweep of the store scores them later)."),
    "costar_monitor_queue": ("gauge", "Monitor offers waiting for the scoring workers."),
    "costar_monitor_traces_scored_total": ("counter", "Sampled traces scored by the monitors."),
    "costar_monitor_judgements_total": ("counter", "Judge verdicts the monitors computed (not from the cache)."),
    "costar_monitor_cached_total": ("counter", "Judge verdicts the monitors reused from the verdict cache."),
    "costar_monitor_judge_errors_total": ("counter", "Judge calls that ended in an error verdict."),
    "costar_monitor_judge_cost_usd_total": ("counter", "What the monitors' judges cost, in US dollars."),
    "costar_monitor_alerts_total": ("counter", "Alert changes recorded, by status (firing, resolved)."),
    "costar_monitor_deliveries_failed_total": ("counter", "Webhook deliveries that failed after their retries."),
    "costar_monitor_worker_errors_total": ("counter", "Errors of the scoring and evaluation workers (retried)."),
}


class RateMeter:
    """Spans per second over a sliding window, from (time, total) samples."""

    def __init__(self, window: float = 60.0) -> None:
        self.window = window
        self._samples: list[tuple[float, int]] = []

    def rate(self, total: int, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        self._samples.append((now, total))
        while len(self._samples) > 2 and self._samples[1][0] < now - self.window:
            self._samples.pop(0)
        t0, n0 = self._samples[0]
        return (total - n0) / (now - t0) if now > t0 else 0.0


def _quantile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def server_metrics(server: Any) -> dict[str, Any]:
    """Every metric as a JSON-ready dict (labels folded into nested dicts)."""
    ing = server.ingestor.stats
    asm = server.assembler.stats
    meter: RateMeter = server.__dict__.setdefault("_rate_meter", RateMeter())
    latencies = list(ing.ack_latencies)
    return {
        "costar_server_uptime_seconds": round(time.time() - server.started_at, 3),
        "costar_ingest_requests_total": ing.requests,
        "costar_ingest_requests_accepted_total": ing.accepted,
        "costar_ingest_requests_rejected_total": {str(k): v for k, v in sorted(ing.rejected.items())},
        "costar_ingest_spans_accepted_total": ing.spans_accepted,
        "costar_ingest_spans_per_second": round(meter.rate(ing.spans_accepted), 3),
        "costar_ingest_inflight_bytes": ing.inflight_bytes,
        "costar_ingest_commits_total": ing.commits,
        "costar_ingest_commit_errors_total": ing.commit_errors,
        "costar_ingest_ack_latency_seconds": {q: round(_quantile(latencies, float(q)), 6)
                                              for q in ("0.5", "0.9", "0.99")},
        "costar_assembler_open_traces": asm.open_traces,
        "costar_assembler_open_spans": asm.open_spans,
        "costar_assembler_restarts_total": getattr(server.assembler, "restarts", 0),
        "costar_traces_stored_total": asm.traces_stored,
        "costar_traces_amended_total": asm.traces_amended,
        "costar_traces_incomplete_total": asm.traces_incomplete,
        "costar_spans_stored_total": asm.spans_stored,
        "costar_spans_refused_total": asm.spans_refused,
        "costar_store_commit_errors_total": asm.commit_errors,
        "costar_traces_build_errors_total": asm.build_errors,
        "costar_wal_recovered_spans": server.recovered_spans,
        **_monitor_metrics(server),
    }


def _monitor_metrics(server: Any) -> dict[str, Any]:
    service = getattr(server, "monitors", None)
    if service is None:
        return {}
    st = service.stats
    return {
        "costar_monitor_traces_offered_total": st.offered,
        "costar_monitor_traces_sampled_total": st.sampled,
        "costar_monitor_traces_left_to_sweep_total": st.dropped,
        "costar_monitor_queue": service.queued,
        "costar_monitor_traces_scored_total": st.score.traces,
        "costar_monitor_judgements_total": st.score.judged,
        "costar_monitor_cached_total": st.score.cached,
        "costar_monitor_judge_errors_total": st.score.errors,
        "costar_monitor_judge_cost_usd_total": round(st.score.cost_usd, 6),
        "costar_monitor_alerts_total": {"firing": st.alerts_fired, "resolved": st.alerts_resolved},
        "costar_monitor_deliveries_failed_total": st.deliveries_failed,
        "costar_monitor_worker_errors_total": st.worker_errors,
    }


def prometheus_text(metrics: dict[str, Any]) -> str:
    """The metrics in Prometheus' text exposition format."""
    lines: list[str] = []
    for name, value in metrics.items():
        kind, text = _HELP.get(name, ("gauge", name))
        lines.append(f"# HELP {name} {text}")
        lines.append(f"# TYPE {name} {kind}")
        if isinstance(value, dict):
            label = ("quantile" if name.endswith("latency_seconds")
                     else "status" if name == "costar_monitor_alerts_total" else "code")
            lines += [f'{name}{{{label}="{k}"}} {v}' for k, v in value.items()]
        else:
            lines.append(f"{name} {value}")
    return "\n".join(lines) + "\n"
