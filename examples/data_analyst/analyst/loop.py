"""The tool loop: ask the policy for the next step, run its tool calls, repeat until it answers."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from analyst.errors import FAILED, NOT_RUN, SkillRequired
from analyst.tools import Toolbox, ToolError, parse_arguments

from costar.trace import SpanKind, StatusCode, span

# Short on purpose: the embedded model has a 4k-token context and follows short numbered steps best.
SYSTEM_PROMPT = """You are a data analyst working in a folder of files.
1. Call load_skill with the skill that fits the task.
2. Do what the skill says. Use the file and column names from the task.
3. Answer in one or two sentences with the numbers the tools reported.
If the file is empty or the task is impossible, say so."""


@dataclass
class ToolCall:
    id: str
    name: str
    arguments: dict[str, Any]


@dataclass
class Step:
    text: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)


class Policy(Protocol):
    def next_step(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> Step: ...


def system_prompt(toolbox: Toolbox) -> str:
    skills = "\n".join(f"- {name}: {desc}" for name, desc in toolbox.available_skills().items())
    return f"{SYSTEM_PROMPT}\n\nSkills you can load with load_skill:\n{skills}"


def run_tool(toolbox: Toolbox, call: ToolCall) -> str:
    attrs: dict[str, Any] = {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": call.name,
                             "gen_ai.tool.call.id": call.id, "gen_ai.tool.call.arguments": call.arguments,
                             "gen_ai.tool.type": "function"}
    if call.name == "load_skill":
        attrs["costar.skill.name"] = str(call.arguments.get("name", ""))
    with span(f"execute_tool {call.name}", SpanKind.TOOL, attrs) as s:
        try:
            result = toolbox.call(call.name, call.arguments)
        except SkillRequired as exc:
            # Not a failure: the protocol for a tool used before its skill. The skill's text went
            # into the model's context, so it counts as invoked.
            s.set_attributes({"costar.skill.name": exc.skill, "analyst.tool.deferred": True})
            result = f"{NOT_RUN} {exc}"
        except ToolError as exc:
            s.set_status(StatusCode.ERROR, str(exc).splitlines()[0][:300])
            result = f"{FAILED} {exc}"
        s.set_attribute("gen_ai.tool.call.result", result)
    return result


def run_agent(prompt: str, toolbox: Toolbox, policy: Policy, max_steps: int = 12) -> str:
    messages: list[dict[str, Any]] = [{"role": "system", "content": system_prompt(toolbox)},
                                      {"role": "user", "content": prompt}]
    for step_no in range(max_steps):
        # The last step offers no tools, so the run ends with an answer rather than a cut-off tool call.
        tools = toolbox.definitions() if step_no < max_steps - 1 else []
        step = policy.next_step(messages, tools)
        if not step.tool_calls:
            return step.text
        messages.append({"role": "assistant", "content": step.text or None, "tool_calls": [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": json.dumps(c.arguments)}}
            for c in step.tool_calls]})
        for call in step.tool_calls:
            try:
                call.arguments = parse_arguments(call.arguments)
                result = run_tool(toolbox, call)
            except ToolError as exc:
                result = f"{FAILED} {exc}"
            messages.append({"role": "tool", "tool_call_id": call.id, "content": result})
    return "I ran out of steps before finishing the task."


def default_skills_dir() -> Path:
    return Path(__file__).resolve().parents[1] / "skills"
