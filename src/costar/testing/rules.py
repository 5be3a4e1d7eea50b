"""Rules for the scripted model server: which requests they match, what they answer, which faults they inject."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from costar._util.yamlfile import read_config_file
from costar.errors import ConfigError


class ScriptedToolCall(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    arguments: dict[str, Any] | str = Field(default_factory=dict)
    id: str | None = None


class Rule(BaseModel):
    """One scripted behaviour. Every match condition given must hold; the first matching rule answers.

    Reply: ``text``, ``tool_calls``, ``json`` (any combination). Faults, applied in this order:
    ``latency`` (seconds, then answer normally), ``hang`` (seconds of silence), ``status`` (an HTTP
    error, with ``retry_after``), ``malformed_body`` (invalid JSON with status 200),
    ``malformed_tool_args`` (tool-call arguments that are not JSON). ``times`` consumes the rule.

    ``tool_results`` matches the number of tool results in the conversation, which scripts a tool
    loop step by step however many conversations run at once (0: ask for the first tool, 1: the
    next, ...).
    """

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str | None = None
    # -- match (regexes use re.search; prefix with (?i) for case-insensitive) --
    last_user: str | None = None
    any_message: str | None = None
    system: str | None = None
    model: str | None = None  # regex, full match
    has_tools: bool | None = None
    call_index: int | list[int] | None = None  # 0-based index of the request at this server
    api: Literal["openai", "anthropic", "responses"] | None = None
    tool_results: int | None = Field(None, ge=0)  # tool results in the conversation so far
    # -- reply --
    text: str | None = None
    tool_calls: list[ScriptedToolCall] | None = None
    json_value: Any = Field(default=None, alias="json")
    finish_reason: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    # -- faults --
    latency: float = 0.0
    hang: float | None = None
    status: int | None = None
    retry_after: float | str | None = None
    error_message: str | None = None
    malformed_body: bool = False
    malformed_tool_args: bool = False
    # -- consumption --
    times: int | None = None

    def matches(self, req: IncomingRequest) -> bool:
        if self.api is not None and self.api != req.api:
            return False
        if self.call_index is not None:
            wanted = [self.call_index] if isinstance(self.call_index, int) else self.call_index
            if req.index not in wanted:
                return False
        if self.model is not None and not re.fullmatch(self.model, req.model or ""):
            return False
        if self.has_tools is not None and self.has_tools != bool(req.tool_names):
            return False
        if self.tool_results is not None and self.tool_results != req.tool_results:
            return False
        if self.last_user is not None and not re.search(self.last_user, req.last_user):
            return False
        if self.system is not None and not re.search(self.system, req.system):
            return False
        return self.any_message is None or any(re.search(self.any_message, t) for t in req.texts)


@dataclass
class IncomingRequest:
    """A request reduced to what rules look at, the same for every route (chat completions,
    Anthropic messages, OpenAI responses)."""

    index: int
    api: Literal["openai", "anthropic", "responses"]
    model: str
    last_user: str
    system: str
    texts: list[str]
    tool_names: list[str]
    forced_tool: str | None
    body: dict[str, Any] = field(repr=False)
    tool_results: int = 0
    """Tool results sent back so far: ``tool`` messages, ``tool_result`` blocks, ``function_call_output`` items."""


def load_rules(path: str | Path) -> tuple[list[Rule], Rule | None]:
    """Read ``{rules: [...], default: {...}}`` (or a bare list of rules) from YAML or JSON."""
    p = Path(path)
    data = read_config_file(p, "rules file")
    return parse_rules(data, source=str(p))


def parse_rules(data: Any, *, source: str = "<rules>") -> tuple[list[Rule], Rule | None]:
    if data is None:
        return [], None
    raw_rules = data.get("rules", []) if isinstance(data, dict) else data
    raw_default = data.get("default") if isinstance(data, dict) else None
    if not isinstance(raw_rules, list):
        raise ConfigError(f"{source}: 'rules' must be a list of rules")
    rules = [_rule(r, f"{source}: rule {i}") for i, r in enumerate(raw_rules)]
    default = _rule(raw_default, f"{source}: default") if raw_default is not None else None
    return rules, default


def _rule(raw: Any, where: str) -> Rule:
    try:
        return Rule.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        field_path = ".".join(str(x) for x in first["loc"]) or "<rule>"
        raise ConfigError(f"{where}: {field_path}: {first['msg']}") from exc
