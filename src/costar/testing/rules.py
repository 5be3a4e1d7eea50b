"""Rules for the scripted model server: which requests they match, what they answer, which faults they inject."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from costar._util.yamlfile import read_config_file
from costar.errors import ConfigError


class ScriptedToolCall(BaseModel):
    """A tool call a rule makes the model ask for."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    name: str
    """The tool's name."""
    arguments: dict[str, Any] | str = Field(default_factory=dict)
    """Its arguments (a mapping, sent as JSON; or a string, sent as is)."""
    id: str | None = None
    """The call id (default: ``call_<request>_<n>``)."""


_REGEX_FIELDS = ("last_user", "any_message", "system", "model")


class Rule(BaseModel):
    """One scripted behaviour. Every match condition given must hold; the first matching rule answers.

    Reply: ``text``, ``tool_calls``, ``json`` (any combination). Faults, applied in this order:
    ``latency`` (seconds, then answer normally), ``hang`` (seconds of silence), ``status`` (an HTTP
    error, with ``retry_after``), ``malformed_body`` (invalid JSON with status 200),
    ``malformed_tool_args`` (tool-call arguments that are not JSON). ``times`` consumes the rule.

    ``tool_results`` matches the number of tool results in the conversation, which scripts a tool
    loop step by step however many conversations run at once (0: ask for the first tool, 1: the
    next, ...). docs/TESTING.md documents the rules file.
    """

    model_config = ConfigDict(extra="forbid", populate_by_name=True, use_attribute_docstrings=True)

    name: str | None = None
    """A name for the rule, shown in the requests the server records (default ``rule N``)."""
    # -- match (regexes use re.search; prefix with (?i) for case-insensitive) --
    last_user: str | None = None
    """Match: a regex searched in the last user message."""
    any_message: str | None = None
    """Match: a regex searched in every message's text (system, user, assistant, tool results)."""
    system: str | None = None
    """Match: a regex searched in the system prompt."""
    model: str | None = None
    """Match: a regex the requested model name must match whole."""
    has_tools: bool | None = None
    """Match: whether the request offers tools."""
    call_index: int | list[int] | None = None
    """Match: the request's number at this server (0 for the first), or a list of them."""
    api: Literal["openai", "anthropic", "responses"] | None = None
    """Match: which API the request came through."""
    tool_results: int | None = Field(None, ge=0)
    """Match: how many tool results the conversation holds (scripts a tool loop step by step)."""
    # -- reply --
    text: str | None = None
    """Reply: the assistant's text."""
    tool_calls: list[ScriptedToolCall] | None = None
    """Reply: tool calls (each ``{name, arguments, id}``)."""
    json_value: Any = Field(default=None, alias="json")
    """Reply: a value sent as the text, JSON-encoded (what a JSON-schema request expects)."""
    finish_reason: str | None = None
    """Reply: the finish reason (default ``stop``, or ``tool_calls`` with tool calls)."""
    input_tokens: int | None = Field(None, ge=0)
    """Reply: the prompt tokens to report, cached ones included (default: counted from the request,
    plus the cached ones)."""
    output_tokens: int | None = Field(None, ge=0)
    """Reply: the completion tokens to report (default: counted from the reply)."""
    cache_read_tokens: int = Field(0, ge=0)
    """Reply: the prompt tokens to report as read from the prompt cache (OpenAI: `cached_tokens`;
    Anthropic: `cache_read_input_tokens`, left out of its `input_tokens`)."""
    cache_write_tokens: int = Field(0, ge=0)
    """Reply: the prompt tokens to report as written to the prompt cache (OpenAI: `cache_write_tokens`;
    Anthropic: `cache_creation_input_tokens`, left out of its `input_tokens`)."""
    # -- faults --
    latency: float = 0.0
    """Fault: seconds to wait before answering normally."""
    hang: float | None = None
    """Fault: seconds of silence (no answer at all), to test timeouts."""
    status: int | None = None
    """Fault: answer with this HTTP error status (429, 500...)."""
    retry_after: float | str | None = None
    """Fault: the ``Retry-After`` header sent with ``status``."""
    error_message: str | None = None
    """Fault: the error message in the body sent with ``status``."""
    malformed_body: bool = False
    """Fault: answer 200 with a body that is not JSON."""
    malformed_tool_args: bool = False
    """Fault: send tool-call arguments that are not JSON."""
    # -- consumption --
    times: int | None = None
    """How many requests the rule answers before it stops matching (default: all)."""

    @model_validator(mode="after")
    def _cache_within_prompt(self) -> Rule:
        cached = self.cache_read_tokens + self.cache_write_tokens
        if self.input_tokens is not None and cached > self.input_tokens:
            raise ValueError(f"cache_read_tokens + cache_write_tokens ({cached}) exceed input_tokens "
                             f"({self.input_tokens}), which counts the whole prompt, cached tokens included")
        return self

    @field_validator(*_REGEX_FIELDS)
    @classmethod
    def _compiles(cls, pattern: str | None) -> str | None:
        if pattern is not None:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"invalid regular expression {pattern!r}: {exc}") from None
        return pattern

    def matches(self, req: IncomingRequest) -> bool:
        """Whether this rule answers ``req``: every condition it sets (api, call, model, tools, messages) holds."""
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


_TOP_KEYS = ("rules", "default")


def parse_rules(data: Any, *, source: str = "<rules>") -> tuple[list[Rule], Rule | None]:
    """Rules from ``{rules: [...], default: {...}}`` or a bare list of rules. Anything else (an unknown
    key, a rule that is not a mapping, an unknown field, a regex that does not compile) is a
    ConfigError naming where it is and what would be right."""
    if data is None:
        return [], None
    if isinstance(data, dict):
        unknown = [str(k) for k in data if k not in _TOP_KEYS]
        if unknown:
            raise ConfigError(f"{source}: unknown key{'s' if len(unknown) > 1 else ''} "
                              f"{', '.join(repr(k) for k in unknown)}; a rules file has 'rules' (a list of rules) "
                              "and optionally 'default' (the reply when no rule matches), or is a bare list of rules")
        raw_rules, raw_default = data.get("rules", []), data.get("default")
    elif isinstance(data, list):
        raw_rules, raw_default = data, None
    else:
        raise ConfigError(f"{source}: a rules file is a mapping {{rules: [...], default: {{...}}}} or a list of rules, "
                          f"not {type(data).__name__}")
    if not isinstance(raw_rules, list):
        raise ConfigError(f"{source}: 'rules' must be a list of rules")
    rules = [_rule(r, f"{source}: rule {i}") for i, r in enumerate(raw_rules)]
    default = _rule(raw_default, f"{source}: default") if raw_default is not None else None
    return rules, default


def _rule(raw: Any, where: str) -> Rule:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: a rule is a mapping like {{last_user: hello, text: hi}}, got {raw!r}")
    try:
        return Rule.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{where}: {_problems(exc)}") from None


def _problems(exc: ValidationError) -> str:
    """Every problem of a rule, with the closest field name for an unknown one."""
    fields = [info.alias or name for name, info in Rule.model_fields.items()]
    unknown, wrong = [], []
    for err in exc.errors():
        where = ".".join(str(x) for x in err["loc"]) or "<rule>"
        if err["type"] == "extra_forbidden":
            close = difflib.get_close_matches(where, fields, n=1, cutoff=0.5)
            unknown.append(f"unknown field {where!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        else:
            wrong.append(f"{where}: {str(err['msg']).removeprefix('Value error, ')}")
    return "; ".join(unknown + wrong) + (" (fields: docs/TESTING.md)" if unknown else "")


def rules_reference() -> str:
    """The fields of a rule as a markdown table (docs/TESTING.md shows it; a test keeps it current)."""
    rows = ["| field | kind | what it does |", "|---|---|---|"]
    for name, info in Rule.model_fields.items():
        text = " ".join((info.description or "").split())
        kind, _, what = text.partition(": ") if text.split(":")[0] in ("Match", "Reply", "Fault") else ("", "", text)
        rows.append(f"| `{info.alias or name}` | {kind.lower() or '—'} | {(what or text).replace('|', '/')} |")
    return "\n".join(rows) + "\n"
