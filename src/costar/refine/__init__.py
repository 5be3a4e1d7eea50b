"""The agent loop: a coding assistant patches the agent until the judges pass, in isolated
worktrees, accepted only when the statistics say it helped and hurt nothing held out."""

from costar.refine.assistants import BuiltinAssistant, CodingAssistant, CommandAssistant, make_assistant
from costar.refine.brief import FailureBrief, build_brief
from costar.refine.loop import RefineOptions, Refiner, RefineReport, refine

__all__ = ["BuiltinAssistant", "CodingAssistant", "CommandAssistant", "FailureBrief", "RefineOptions",
           "RefineReport", "Refiner", "build_brief", "make_assistant", "refine"]
