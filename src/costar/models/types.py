"""Provider-neutral request and result types.

Messages stay OpenAI-style dicts end to end: it is the shape agents already hold, and every
provider translates from it at its own edge.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Message = dict[str, Any]


@dataclass(frozen=True)
class ToolSpec:
    name: str
    description: str = ""
    parameters: dict[str, Any] = field(default_factory=lambda: {"type": "object", "properties": {}})

    def openai(self) -> dict[str, Any]:
        return {"type": "function", "function": {"name": self.name, "description": self.description,
                                                 "parameters": self.parameters}}


@dataclass(frozen=True)
class OutputFormat:
    """Structured output: any JSON object, or JSON matching ``schema``."""

    kind: Literal["json_object", "json_schema"]
    schema: dict[str, Any] | None = None
    name: str = "response"
    strict: bool = False


@dataclass(frozen=True)
class ChatRequest:
    messages: list[Message]
    tools: tuple[ToolSpec, ...] = ()
    tool_choice: str | dict[str, Any] | None = None
    output: OutputFormat | None = None
    # Only the sampling parameters the caller set: unset ones must not change the cache key.
    params: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def canonical(self) -> dict[str, Any]:
        return {
            "messages": self.messages,
            "tools": [t.openai() for t in self.tools],
            "tool_choice": self.tool_choice,
            "output": None if self.output is None else {
                "kind": self.output.kind, "schema": self.output.schema, "name": self.output.name,
                "strict": self.output.strict},
            "params": self.params,
            "extra": self.extra,
        }

    def fingerprint(self, *, provider: str, model: str, base_url: str | None) -> str:
        """sha256 of the whole request. Credentials are never part of it, so keys can rotate freely."""
        doc = {"provider": provider, "model": model, "base_url": base_url, **self.canonical()}
        blob = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()

    def last_user_text(self) -> str:
        for m in reversed(self.messages):
            if m.get("role") == "user":
                return message_text(m)
        return ""


def message_text(message: Message) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


class RawToolCall(BaseModel):
    """A tool call as the provider sent it; ``arguments`` may still be an unparsed (or broken) string."""

    model_config = ConfigDict(extra="forbid")

    id: str
    name: str
    arguments: Any = None


class ProviderReply(BaseModel):
    """What one provider round trip produced. This is what caches and cassettes store."""

    model_config = ConfigDict(extra="forbid")

    text: str | None = None
    tool_calls: list[RawToolCall] = Field(default_factory=list)
    finish_reason: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    """The part of ``input_tokens`` read from the provider's prompt cache."""
    cache_write_tokens: int = 0
    """The part of ``input_tokens`` written to the provider's prompt cache."""
    cache_write_1h_tokens: int = 0
    """The part of ``cache_write_tokens`` kept for an hour (Anthropic bills it apart)."""
    model: str | None = None
    response_id: str | None = None
    raw: dict[str, Any] = Field(default_factory=dict)


class ToolCall(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    name: str
    arguments: dict[str, Any]


class Usage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    input_tokens: int = 0
    """The whole prompt, the cached parts included (the OpenTelemetry GenAI convention)."""
    output_tokens: int = 0
    """The completion's tokens."""
    cache_read_tokens: int = 0
    """The part of ``input_tokens`` read from the provider's prompt cache."""
    cache_write_tokens: int = 0
    """The part of ``input_tokens`` written to the provider's prompt cache."""

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


class ChatResult(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = ""
    tool_calls: list[ToolCall] = Field(default_factory=list)
    # The decoded JSON value when structured output was requested (validated against the schema).
    parsed: Any = None
    finish_reason: str | None = None
    usage: Usage = Field(default_factory=Usage)
    cost_usd: float = 0.0
    cost_known: bool = True
    latency_s: float = 0.0
    provider: str = ""
    model: str = ""
    response_id: str | None = None
    retries: int = 0
    cache_hit: bool = False
    replayed: bool = False
    raw: dict[str, Any] = Field(default_factory=dict)

    def message(self) -> Message:
        """The reply as an OpenAI-style assistant message, ready to append to the conversation."""
        msg: Message = {"role": "assistant", "content": self.text or None}
        if self.tool_calls:
            msg["tool_calls"] = [
                {"id": c.id, "type": "function",
                 "function": {"name": c.name, "arguments": json.dumps(c.arguments, ensure_ascii=False)}}
                for c in self.tool_calls
            ]
        return msg
