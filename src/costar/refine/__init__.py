"""The agent loop: a coding assistant patches the agent until the judges pass, in isolated
worktrees, accepted only when the statistics say it helped and hurt nothing held out."""

from costar.refine.assistants import BuiltinAssistant, CodingAssistant, CommandAssistant, make_assistant
from costar.refine.brief import FailureBrief, build_brief
from costar.refine.cleanup import CleanReport
from costar.refine.cleanup import clean_sessions as refine_clean
from costar.refine.loop import RefineOptions, Refiner, RefineReport, refine

__all__ = ["BuiltinAssistant", "CleanReport", "CodingAssistant", "CommandAssistant", "FailureBrief",
           "RefineOptions", "RefineReport", "Refiner", "build_brief", "make_assistant", "refine", "refine_clean"]
