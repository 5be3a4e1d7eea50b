"""The errors the tools raise on purpose; their messages go back to the model."""

# How tool results that are not findings start, for the policies to recognise: a failed call, and a
# call deferred until its skill was read (SkillRequired).
FAILED = "error:"
NOT_RUN = "not run:"


class ToolError(Exception):
    """A tool call the agent got wrong; the message goes back to the model so it can correct itself."""


class SkillRequired(ToolError):
    """The tool follows a skill the agent has not loaded: the call is not run, and the skill's text
    is returned instead, so the next call is made with the instructions in view."""

    def __init__(self, tool: str, skill: str, instructions: str, arguments: dict[str, object]) -> None:
        # The call as made comes first, so the model can repeat what was right about it (file names);
        # the skill and the request to call again come last, where a small model attends most.
        call = ", ".join(f"{k}={v}" for k, v in arguments.items())
        super().__init__(f"{tool}({call}) needs the {skill} skill first:\n\n{instructions.strip()}\n\n"
                         f"Now call {tool} again as the skill says.")
        self.tool = tool
        self.skill = skill
