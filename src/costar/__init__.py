"""coSTAR: test LLM agents the way engineers test software.

Scenarios are fixtures, the harness records traces, judges score them, reports summarise.
Everything the ``costar`` command does is available here.
"""

from costar.api import RunEvents, RunOutcome, Selection, arun_suite, assess_run, open_store, run_suite, summarize_run
from costar.run.agents import AgentResult, AgentTask, make_agent
from costar.run.harness import HarnessOptions
from costar.scenario import Scenario, load_suite, select
from costar.trace import Recording, Span, SpanKind, Trace, span, traced
from costar.verdict import Verdict

__version__ = "0.1.0"

__all__ = [
    "AgentResult", "AgentTask", "HarnessOptions", "Recording", "RunEvents", "RunOutcome", "Scenario", "Selection",
    "Span", "SpanKind", "Trace", "Verdict", "arun_suite", "assess_run", "load_suite", "make_agent", "open_store",
    "run_suite", "select", "span", "summarize_run", "traced",
]
