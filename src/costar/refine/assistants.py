"""Coding assistants behind one protocol: given a failure brief and a worktree, change the agent.

* ``CommandAssistant``: any command-line assistant (Claude Code, Codex, Aider, a script of your
  own), run from a command template with ``{brief}``, ``{brief_json}``, ``{repo}`` and
  ``{agent_dir}`` placeholders, in the worktree, with a timeout that kills its process group.
* ``BuiltinAssistant``: edits the agent's declared text components (system prompt, skills, tool
  descriptions) with a model: it reflects on the failures and rewrites one component.
"""

from __future__ import annotations

import os
import shlex
import shutil
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from costar._util.process import run_command
from costar._util.text import head_and_tail_lines
from costar.errors import ConfigError
from costar.refine.brief import FailureBrief


@dataclass
class AssistantTask:
    brief: FailureBrief
    worktree: Path  # the attempt's checkout (the assistant's working directory)
    agent_dir: Path  # inside the worktree
    brief_md: Path
    brief_json: Path


@dataclass
class AssistantOutcome:
    ok: bool
    message: str = ""
    cost_usd: float = 0.0
    seconds: float = 0.0
    log: str = ""
    details: dict[str, Any] = field(default_factory=dict)


class CodingAssistant(ABC):
    name: str = "assistant"

    @abstractmethod
    async def propose(self, task: AssistantTask) -> AssistantOutcome: ...

    async def check(self) -> None:  # noqa: B027 (a no-op unless an assistant has something to check)
        """Raise a ConfigError when the assistant cannot work (a missing command, a model that does
        not answer). Refinement calls it before the baseline run, so a typo costs seconds, not a run."""


class CommandAssistant(CodingAssistant):
    def __init__(self, command: str | Sequence[str], *, timeout: float = 1800.0,
                 env: dict[str, str] | None = None) -> None:
        self.command = command
        self.timeout = timeout
        self.env = env or {}
        first = shlex.split(command)[0] if isinstance(command, str) and command.strip() else (
            command[0] if command else "")
        if not first:
            raise ConfigError("the refine assistant command is empty; set refine.assistant.command")
        self.name = Path(first).name

    async def check(self) -> None:
        parts = shlex.split(self.command) if isinstance(self.command, str) else list(self.command)
        program = parts[0]
        if "{" in program:  # the program itself comes from a placeholder: known only per attempt
            return
        found = shutil.which(program) if os.sep not in program else (program if os.access(program, os.X_OK) else None)
        if found is None:
            raise ConfigError(f"assistant command not found: {program}; install it or fix the assistant "
                              "(--assistant 'cmd:...' or refine.assistant.command in costar.yaml)")

    def _argv(self, task: AssistantTask) -> list[str]:
        values = {"brief": str(task.brief_md), "brief_json": str(task.brief_json), "repo": str(task.worktree),
                  "agent_dir": str(task.agent_dir)}
        parts = shlex.split(self.command) if isinstance(self.command, str) else list(self.command)
        try:
            return [p.format(**values) for p in parts]
        except (KeyError, IndexError) as exc:
            raise ConfigError(f"unknown placeholder {exc} in the assistant command; use {{brief}}, {{brief_json}}, "
                              "{repo} or {agent_dir}") from None

    async def propose(self, task: AssistantTask) -> AssistantOutcome:
        argv = self._argv(task)
        env = {**os.environ, **self.env, "COSTAR_BRIEF": str(task.brief_md), "COSTAR_BRIEF_JSON": str(task.brief_json),
               "COSTAR_AGENT_DIR": str(task.agent_dir)}
        started = time.monotonic()
        try:
            res = await run_command(argv, cwd=task.worktree, env=env, timeout=self.timeout, max_output=256 * 1024)
        except FileNotFoundError:
            return AssistantOutcome(False, f"assistant command not found: {argv[0]}; install it or fix "
                                    "refine.assistant.command")
        seconds = time.monotonic() - started
        log = (res.stdout + ("\n[stderr]\n" + res.stderr if res.stderr else ""))[-20_000:]
        if res.timed_out:
            return AssistantOutcome(False, f"the assistant timed out after {self.timeout:g}s and was stopped",
                                    seconds=seconds, log=log)
        if res.returncode != 0:
            excerpt = head_and_tail_lines(res.stderr or res.stdout) or "(no output)"
            return AssistantOutcome(False, f"the assistant exited with code {res.returncode}: {excerpt}",
                                    seconds=seconds, log=log)
        return AssistantOutcome(True, "the assistant finished", seconds=seconds, log=log)


REFLECTION_PROMPT = """You improve an AI agent by editing one of its text components (prompts, skills,
tool descriptions). Below are the test failures of the current version and the components.
Diagnose the root cause from the failures and rewrite ONE component so the failing tests pass
without breaking the passing ones. Keep what works; be specific and general at once (the agent
is also tested on cases you do not see). Answer with the component's path, its complete new
text, and one sentence of rationale.

# Failures
{brief}

# Components
{components}
"""


class BuiltinAssistant(CodingAssistant):
    """Reflect on the failures with a model, then rewrite one declared component (GEPA-style:
    the refinement loop keeps a Pareto set of candidates and picks which one to start from)."""

    name = "builtin"

    def __init__(self, model: str, components: Sequence[str], *, max_chars: int = 6000,
                 client_options: dict[str, Any] | None = None) -> None:
        if not components:
            raise ConfigError("the built-in assistant needs refine.components: globs of the agent's text files "
                              "it may edit (e.g. skills/*/SKILL.md)")
        self.model = model
        self.components = list(components)
        self.max_chars = max_chars
        self.client_options = client_options or {}

    async def check(self) -> None:
        """Ask the model for one word: a wrong URI, a missing key or a server that is down shows now."""
        from costar.models import ModelClient
        from costar.models.errors import ModelError

        try:
            with ModelClient(self.model, **self.client_options) as client:
                await client.achat([{"role": "user", "content": "Reply with the word OK."}], max_tokens=8)
        except ModelError as exc:
            raise ConfigError(f"the built-in assistant's model {self.model} does not answer: {exc}; check the "
                              "model URI and its credentials (--assistant builtin:MODEL)") from None

    def files(self, agent_dir: Path) -> list[Path]:
        found: list[Path] = []
        for pattern in self.components:
            found += sorted(p for p in agent_dir.glob(pattern) if p.is_file())
        return list(dict.fromkeys(found))

    async def propose(self, task: AssistantTask) -> AssistantOutcome:
        from costar.models import ModelClient
        from costar.models.errors import ModelError

        files = self.files(task.agent_dir)
        if not files:
            return AssistantOutcome(False, f"no component matches {self.components} in {task.agent_dir}")
        names = [p.relative_to(task.agent_dir).as_posix() for p in files]
        shown = "\n\n".join(f"## {n}\n```\n{p.read_text(encoding='utf-8')[: self.max_chars]}\n```"
                            for n, p in zip(names, files, strict=True))
        prompt = REFLECTION_PROMPT.format(brief=task.brief.to_markdown()[: self.max_chars * 2], components=shown)
        schema = {"type": "object", "additionalProperties": False,
                  "required": ["component", "new_text", "rationale"],
                  "properties": {"component": {"type": "string", "enum": names},
                                 "new_text": {"type": "string", "maxLength": self.max_chars},
                                 "rationale": {"type": "string", "maxLength": 600}}}
        started = time.monotonic()
        try:
            with ModelClient(self.model, **self.client_options) as client:
                result = await client.achat([{"role": "user", "content": prompt}], json_schema=schema,
                                            temperature=0.7)
        except ModelError as exc:
            return AssistantOutcome(False, f"the built-in assistant's model failed: {exc}",
                                    seconds=time.monotonic() - started)
        answer = result.parsed if isinstance(result.parsed, dict) else {}
        component, text = answer.get("component"), answer.get("new_text")
        if component not in names or not isinstance(text, str) or not text.strip():
            return AssistantOutcome(False, "the built-in assistant proposed no usable edit", cost_usd=result.cost_usd,
                                    seconds=time.monotonic() - started)
        (task.agent_dir / component).write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")
        return AssistantOutcome(True, f"rewrote {component}: {answer.get('rationale', '')}", cost_usd=result.cost_usd,
                                seconds=time.monotonic() - started, details={"component": component})


def make_assistant(spec: dict[str, Any] | str, *, components: Sequence[str] = ()) -> CodingAssistant:
    """``{type: command, command: ..., timeout: ...}`` / ``{type: builtin, model: URI}``, or the
    shorthands ``cmd:<template>`` and ``builtin:<model uri>``."""
    if isinstance(spec, str):
        if spec.startswith("builtin:"):
            spec = {"type": "builtin", "model": spec.removeprefix("builtin:")}
        else:
            spec = {"type": "command", "command": spec.removeprefix("cmd:")}
    kind = spec.get("type")
    if kind == "command":
        if not spec.get("command"):
            raise ConfigError("refine.assistant.command is missing (e.g. 'claude -p \"Fix the failures in {brief}\"')")
        return CommandAssistant(spec["command"], timeout=float(spec.get("timeout", 1800)), env=spec.get("env"))
    if kind == "builtin":
        if not spec.get("model"):
            raise ConfigError("the built-in assistant needs a model URI (refine.assistant.model)")
        return BuiltinAssistant(spec["model"], spec.get("components") or components,
                                client_options=spec.get("client_options"))
    raise ConfigError(f"unknown refine assistant type {kind!r}; use 'command' or 'builtin'")
