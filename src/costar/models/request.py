"""Turn what callers pass to ``chat`` (OpenAI-style dicts, SDK objects, pydantic classes) into a
``ChatRequest``. Everything here is normalised to plain JSON so requests hash stably."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel

from costar.errors import ConfigError
from costar.models.types import ChatRequest, Message, OutputFormat, ToolSpec

_ROLES = {"system", "developer", "user", "assistant", "tool"}
_PARAMS = ("temperature", "max_tokens", "top_p", "seed", "stop")


def build_request(
    messages: str | Iterable[Any],
    *,
    tools: Iterable[Any] | None = None,
    tool_choice: str | Mapping[str, Any] | None = None,
    json_schema: Mapping[str, Any] | type[BaseModel] | None = None,
    response_format: Mapping[str, Any] | None = None,
    params: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> ChatRequest:
    if json_schema is not None and response_format is not None:
        raise ConfigError("pass either json_schema= or response_format=, not both")
    output = _schema_output(json_schema) if json_schema is not None else _response_format(response_format)
    return ChatRequest(
        messages=normalize_messages(messages),
        tools=tuple(normalize_tool(t) for t in tools or ()),
        tool_choice=_plain(tool_choice) if tool_choice is not None else None,
        output=output,
        params={k: _plain(v) for k, v in (params or {}).items() if k in _PARAMS and v is not None},
        extra=_plain(dict(extra or {})),
    )


def normalize_messages(messages: str | Iterable[Any]) -> list[Message]:
    if isinstance(messages, str):
        return [{"role": "user", "content": messages}]
    out: list[Message] = []
    for i, m in enumerate(messages):
        msg = _plain(m)
        if not isinstance(msg, dict) or msg.get("role") not in _ROLES:
            raise ConfigError(f"message {i} is not an OpenAI-style message: give a dict with 'role' "
                              f"({', '.join(sorted(_ROLES))}) and 'content'")
        if msg["role"] == "developer":  # OpenAI's newer name for system; other providers only know system
            msg["role"] = "system"
        out.append({k: v for k, v in msg.items() if v is not None or k == "content"})
    if not out:
        raise ConfigError("chat() needs at least one message")
    return out


def normalize_tool(tool: Any) -> ToolSpec:
    if isinstance(tool, ToolSpec):
        return tool
    t = _plain(tool)
    if not isinstance(t, dict):
        raise ConfigError(f"tool {t!r} is not a dict: give {{'type': 'function', 'function': {{'name': ...}}}}")
    inner = t.get("function")
    fn: dict[str, Any] = inner if isinstance(inner, dict) else t
    name = fn.get("name")
    if not name:
        raise ConfigError("a tool has no name: give {'type': 'function', 'function': {'name': ..., "
                          "'parameters': {...}}}")
    params = fn.get("parameters") or fn.get("input_schema") or {"type": "object", "properties": {}}
    return ToolSpec(name=str(name), description=str(fn.get("description") or ""), parameters=params)


def _schema_output(schema: Mapping[str, Any] | type[BaseModel]) -> OutputFormat:
    if isinstance(schema, type) and issubclass(schema, BaseModel):
        return OutputFormat(kind="json_schema", schema=schema.model_json_schema(), name=schema.__name__)
    s = _plain(dict(schema))
    return OutputFormat(kind="json_schema", schema=s, name=_schema_name(s.get("title")))


def _response_format(fmt: Mapping[str, Any] | None) -> OutputFormat | None:
    if fmt is None:
        return None
    kind = fmt.get("type")
    if kind in (None, "text"):
        return None
    if kind == "json_object":
        schema = fmt.get("schema")  # llama.cpp's extension: a schema inside json_object
        if schema is not None:
            return OutputFormat(kind="json_schema", schema=_plain(schema), name="response")
        return OutputFormat(kind="json_object")
    if kind == "json_schema":
        spec = fmt.get("json_schema") or {}
        return OutputFormat(kind="json_schema", schema=_plain(spec.get("schema") or {}),
                            name=_schema_name(spec.get("name")), strict=bool(spec.get("strict", False)))
    raise ConfigError(f"response_format type '{kind}' is not supported: use 'text', 'json_object' or 'json_schema'")


def _schema_name(name: Any) -> str:
    # OpenAI restricts schema names to [a-zA-Z0-9_-]{1,64}.
    cleaned = "".join(c if c.isalnum() or c in "_-" else "_" for c in str(name or "response"))[:64]
    return cleaned or "response"


def _plain(value: Any) -> Any:
    """JSON-compatible copy; SDK objects (e.g. an OpenAI ChatCompletionMessage) become dicts."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", exclude_none=True)
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return json.loads(json.dumps(value, default=str))
