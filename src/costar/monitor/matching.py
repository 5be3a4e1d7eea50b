"""Does a trace match a monitor's filter? (Which traces a monitor watches, before sampling.)"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping
from typing import Any

from costar.monitor.model import MonitorFilter
from costar.trace.model import PROJECT_KEY, Trace

"""The trace metadata key ``costar server`` records the trace's project under."""
RESOURCE_KEY = "otel.resource"


def trace_project(trace: Trace) -> str | None:
    value = trace.metadata.get(PROJECT_KEY)
    return value if isinstance(value, str) else None


def trace_resource(trace: Trace) -> Mapping[str, Any]:
    value = trace.metadata.get(RESOURCE_KEY)
    return value if isinstance(value, Mapping) else {}


def _any_glob(value: Any, patterns: Iterable[str]) -> bool:
    if value is None:
        return False
    text = str(value)
    return any(fnmatch.fnmatchcase(text, p) for p in patterns)


def _value_matches(actual: Any, wanted: Any) -> bool:
    if isinstance(wanted, list):
        return any(_value_matches(actual, w) for w in wanted)
    if isinstance(wanted, str):
        return actual is not None and not isinstance(actual, dict | list) and fnmatch.fnmatchcase(str(actual), wanted)
    if isinstance(wanted, bool) or isinstance(actual, bool):
        return actual is wanted
    return bool(actual == wanted)


def matches(flt: MonitorFilter, trace: Trace, *, project: str | None = None) -> bool:
    """Whether ``trace`` passes every field of ``flt``. ``project`` overrides the trace's own
    (the server knows it before it is written into the metadata). Span fields look at the spans the
    trace carries: load it with its spans when ``flt.needs_spans``."""
    if flt.project and not _any_glob(project if project is not None else trace_project(trace), flt.project):
        return False
    resource = trace_resource(trace)
    if flt.service and not _any_glob(resource.get("service.name"), flt.service):
        return False
    if flt.agent and not _any_glob(trace.agent.name, flt.agent):
        return False
    if flt.agent_version and not _any_glob(trace.agent.version or resource.get("service.version"),
                                           flt.agent_version):
        return False
    if flt.scenario and not _any_glob(trace.scenario_id, flt.scenario):
        return False
    for name in flt.span_names:
        if not any(fnmatch.fnmatchcase(s.name, name) for s in trace.spans):
            return False
    for key, wanted in flt.attributes.items():
        if key in resource and _value_matches(resource[key], wanted):
            continue
        if not any(key in s.attributes and _value_matches(s.attributes[key], wanted) for s in trace.spans):
            return False
    return True
