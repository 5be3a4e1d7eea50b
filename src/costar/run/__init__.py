"""Running agents: the harness, the agents it runs and the workspaces they run in.

* :mod:`~costar.run.harness` — :class:`Harness` runs scenarios × trials and records each as a trace;
* :mod:`~costar.run.agents` — the agent contract (:class:`Agent`, :class:`AgentTask`,
  :class:`AgentResult`) and the built-in agents: a Python callable, a command, an HTTP endpoint;
* :mod:`~costar.run.workspace` — each trial's fresh folder and the files it leaves.

Most code runs a suite with :func:`costar.api.run_suite`. The names below load on first use, so
importing this package costs nothing until one is read.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from costar._util.lazy import lazy_exports

if TYPE_CHECKING:
    from costar.run.agents import Agent as Agent
    from costar.run.agents import AgentResult as AgentResult
    from costar.run.agents import AgentTask as AgentTask
    from costar.run.agents import RunContext as RunContext
    from costar.run.agents import make_agent as make_agent
    from costar.run.harness import Harness as Harness
    from costar.run.harness import HarnessOptions as HarnessOptions
    from costar.run.harness import HarnessResult as HarnessResult
    from costar.run.workspace import Workspace as Workspace

_LAZY = {
    "Agent": "costar.run.agents", "AgentResult": "costar.run.agents", "AgentTask": "costar.run.agents",
    "RunContext": "costar.run.agents", "make_agent": "costar.run.agents",
    "Harness": "costar.run.harness", "HarnessOptions": "costar.run.harness", "HarnessResult": "costar.run.harness",
    "Workspace": "costar.run.workspace",
}

__all__ = sorted(_LAZY)
__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
