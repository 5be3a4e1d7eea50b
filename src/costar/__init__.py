"""coSTAR: test LLM agents the way engineers test software.

Scenarios are fixtures, the harness records traces, judges score them, reports summarise.
Everything the ``costar`` command does is available here. Names load on first use, so that
``import costar`` stays cheap in agents the harness starts (they import it to be captured).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    # What the names below load on first use are, for type checkers and editors (``X as X``: re-exported).
    from costar.api import RunEvents as RunEvents
    from costar.api import RunOutcome as RunOutcome
    from costar.api import Selection as Selection
    from costar.api import arun_suite as arun_suite
    from costar.api import assert_passes as assert_passes
    from costar.api import assess_run as assess_run
    from costar.api import diff_mcp as diff_mcp
    from costar.api import init_ci as init_ci
    from costar.api import judge_trace as judge_trace
    from costar.api import open_store as open_store
    from costar.api import run_suite as run_suite
    from costar.api import select_affected as select_affected
    from costar.api import snapshot_mcp_server as snapshot_mcp_server
    from costar.api import snapshot_mcp_servers as snapshot_mcp_servers
    from costar.api import summarize_run as summarize_run
    from costar.run.agents import AgentResult as AgentResult
    from costar.run.agents import AgentTask as AgentTask
    from costar.run.agents import make_agent as make_agent
    from costar.run.harness import HarnessOptions as HarnessOptions
    from costar.scenario import Scenario as Scenario
    from costar.scenario import load_suite as load_suite
    from costar.scenario import select as select
    from costar.trace import Recording as Recording
    from costar.trace import Span as Span
    from costar.trace import SpanKind as SpanKind
    from costar.trace import Trace as Trace
    from costar.trace import span as span
    from costar.trace import traced as traced
    from costar.verdict import Verdict as Verdict

from costar._version import __version__ as __version__

_EXPORTS = {
    "RunEvents": "costar.api", "RunOutcome": "costar.api", "Selection": "costar.api", "arun_suite": "costar.api",
    "assess_run": "costar.api", "open_store": "costar.api", "run_suite": "costar.api", "summarize_run": "costar.api",
    # Not compare and rejudge: costar.compare and costar.rejudge are modules, and importing one would
    # replace the function here (use costar.api.compare, costar.api.rejudge).
    "select_affected": "costar.api", "init_ci": "costar.api",
    "snapshot_mcp_server": "costar.api", "snapshot_mcp_servers": "costar.api", "diff_mcp": "costar.api",
    "assert_passes": "costar.api", "judge_trace": "costar.api",
    "AgentResult": "costar.run.agents", "AgentTask": "costar.run.agents", "make_agent": "costar.run.agents",
    "HarnessOptions": "costar.run.harness",
    "Scenario": "costar.scenario", "load_suite": "costar.scenario", "select": "costar.scenario",
    "Recording": "costar.trace", "Span": "costar.trace", "SpanKind": "costar.trace", "Trace": "costar.trace",
    "span": "costar.trace", "traced": "costar.trace",
    "Verdict": "costar.verdict",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'costar' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
