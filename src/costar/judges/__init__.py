"""Judges: what turns a stored trace into verdicts.

* :mod:`~costar.judges.base` — the :class:`Judge` protocol and the :class:`JudgeContext` it sees;
* :mod:`~costar.judges.checks` — deterministic checks (:class:`Check`, :func:`register_check`) and
  :class:`CheckJudge`, which runs a scenario's checks;
* :mod:`~costar.judges.llm` and :mod:`~costar.judges.agentic` — judges that ask a model, the
  agentic ones with tools over the trace (:mod:`~costar.judges.trace_tools`) in a sandbox;
* :mod:`~costar.judges.definitions` — judge files (YAML), judge types and built-in templates;
* :mod:`~costar.judges.registry` — judges by name for a project.

The names below load on first use, so importing this package costs nothing until one is read.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from costar._util.lazy import lazy_exports

if TYPE_CHECKING:
    from costar.judges.agentic import AgenticJudge as AgenticJudge
    from costar.judges.base import Judge as Judge
    from costar.judges.base import JudgeContext as JudgeContext
    from costar.judges.checks import Check as Check
    from costar.judges.checks import CheckJudge as CheckJudge
    from costar.judges.checks import CheckResult as CheckResult
    from costar.judges.checks import register_check as register_check
    from costar.judges.definitions import BuildContext as BuildContext
    from costar.judges.definitions import JudgeDefinition as JudgeDefinition
    from costar.judges.definitions import JudgeType as JudgeType
    from costar.judges.llm import LlmJudge as LlmJudge
    from costar.judges.registry import JudgeInfo as JudgeInfo
    from costar.judges.registry import JudgeRegistry as JudgeRegistry
    from costar.judges.registry import project_registry as project_registry

_LAZY = {
    "AgenticJudge": "costar.judges.agentic",
    "Judge": "costar.judges.base", "JudgeContext": "costar.judges.base",
    "Check": "costar.judges.checks", "CheckJudge": "costar.judges.checks", "CheckResult": "costar.judges.checks",
    "register_check": "costar.judges.checks",
    "BuildContext": "costar.judges.definitions", "JudgeDefinition": "costar.judges.definitions",
    "JudgeType": "costar.judges.definitions",
    "LlmJudge": "costar.judges.llm",
    "JudgeInfo": "costar.judges.registry", "JudgeRegistry": "costar.judges.registry",
    "project_registry": "costar.judges.registry",
}

__all__ = sorted(_LAZY)
__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
