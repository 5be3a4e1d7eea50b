"""Monitors: the same judges on sampled production traces, with metric series and alerts.

A monitor (``monitors/*.yaml``, or created through the API) filters stored traces, samples them
consistently by trace id, scores the sample with any judge coSTAR has, keeps per-judge and operational
series over windows, and raises alerts (the log, webhooks) when a rule's condition starts or stops
holding. :class:`MonitorService` runs them over a store, with or without ``costar server``.
docs/MONITORING.md describes the format and the rules.

Public: :class:`MonitorDefinition` and its parts, :class:`Monitor` (a definition and where it came
from), :func:`load_monitors`, :func:`load_monitor_file`, :func:`parse_monitor`, :func:`sampled`,
:class:`MonitorService` and :class:`ServiceOptions`, :func:`scenario_draft` (a scenario from a trace);
what the faces show (:mod:`costar.monitor.overview`): :class:`MonitorRow`, :class:`MonitorStatus`,
:class:`WindowTraces` and their builders :func:`monitor_rows`, :func:`monitor_status`, :func:`window_traces`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from costar._util.lazy import lazy_exports

if TYPE_CHECKING:
    from costar.monitor.drafts import scenario_draft as scenario_draft
    from costar.monitor.files import Monitor as Monitor
    from costar.monitor.files import load_monitor_file as load_monitor_file
    from costar.monitor.files import load_monitors as load_monitors
    from costar.monitor.files import parse_monitor as parse_monitor
    from costar.monitor.model import AlertRule as AlertRule
    from costar.monitor.model import MonitorDefinition as MonitorDefinition
    from costar.monitor.model import MonitorError as MonitorError
    from costar.monitor.model import MonitorFilter as MonitorFilter
    from costar.monitor.model import Webhook as Webhook
    from costar.monitor.overview import MonitorRow as MonitorRow
    from costar.monitor.overview import MonitorStatus as MonitorStatus
    from costar.monitor.overview import WindowTraces as WindowTraces
    from costar.monitor.overview import monitor_rows as monitor_rows
    from costar.monitor.overview import monitor_status as monitor_status
    from costar.monitor.overview import window_traces as window_traces
    from costar.monitor.sampling import sampled as sampled
    from costar.monitor.service import MonitorService as MonitorService
    from costar.monitor.service import ServiceOptions as ServiceOptions

_LAZY = {
    "scenario_draft": "costar.monitor.drafts",
    "Monitor": "costar.monitor.files", "load_monitor_file": "costar.monitor.files",
    "load_monitors": "costar.monitor.files", "parse_monitor": "costar.monitor.files",
    "AlertRule": "costar.monitor.model", "MonitorDefinition": "costar.monitor.model",
    "MonitorError": "costar.monitor.model", "MonitorFilter": "costar.monitor.model", "Webhook": "costar.monitor.model",
    "MonitorRow": "costar.monitor.overview", "MonitorStatus": "costar.monitor.overview",
    "WindowTraces": "costar.monitor.overview", "monitor_rows": "costar.monitor.overview",
    "monitor_status": "costar.monitor.overview", "window_traces": "costar.monitor.overview",
    "sampled": "costar.monitor.sampling",
    "MonitorService": "costar.monitor.service", "ServiceOptions": "costar.monitor.service",
}

__all__ = ["AlertRule", "Monitor", "MonitorDefinition", "MonitorError", "MonitorFilter", "MonitorRow",
           "MonitorService", "MonitorStatus", "ServiceOptions", "Webhook", "WindowTraces", "load_monitor_file",
           "load_monitors", "monitor_rows", "monitor_status", "parse_monitor", "sampled", "scenario_draft",
           "window_traces"]

__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
