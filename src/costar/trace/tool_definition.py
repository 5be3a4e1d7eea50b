"""A tool definition and its fingerprint (the contract; ``costar.trace.tools`` reads them off spans).

A tool definition is what the model is told about a tool: its name, its description, the JSON
Schema of its arguments and (MCP tools may declare one) the JSON Schema of its structured result.
Two definitions with the same fingerprint tell the model the same thing. The fingerprint is the
first 16 hex digits of the SHA-256 of the definition's canonical JSON (``canonical_json``):

* the object ``{"name", "description", "input_schema", "output_schema"}``, nothing else (a tool's
  title, annotations, icons and ``_meta`` are display hints and do not change it);
* ``description`` with leading and trailing whitespace removed (a missing one is ``""``),
  ``input_schema`` ``{}`` when there is none, ``output_schema`` ``null`` when there is none;
* every ``required`` list inside the schemas sorted (it is a set: reordering it changes nothing);
* keys sorted at every level, no insignificant whitespace, UTF-8 without escaping.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


def _parse(value: Any) -> Any:
    if isinstance(value, str | bytes):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


ToolSource = Literal["mcp", "model"]


def _sorted_required(schema: Any) -> Any:
    if isinstance(schema, dict):
        out = {k: _sorted_required(v) for k, v in schema.items()}
        req = out.get("required")
        if isinstance(req, list) and all(isinstance(x, str) for x in req):
            out["required"] = sorted(req)
        return out
    if isinstance(schema, list):
        return [_sorted_required(v) for v in schema]
    return schema


def canonical_json(name: str, description: str | None, input_schema: Mapping[str, Any] | None,
                   output_schema: Mapping[str, Any] | None) -> str:
    """The text a tool's fingerprint hashes (see the module docstring for what goes in)."""
    doc = {"name": name, "description": (description or "").strip(),
           "input_schema": _sorted_required(dict(input_schema or {})),
           "output_schema": None if output_schema is None else _sorted_required(dict(output_schema))}
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def tool_fingerprint(name: str, description: str | None, input_schema: Mapping[str, Any] | None,
                     output_schema: Mapping[str, Any] | None = None) -> str:
    text = canonical_json(name, description, input_schema, output_schema)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


class ToolDefinition(BaseModel):
    """One tool as an agent saw it (or as a server listed it), with its fingerprint."""

    model_config = ConfigDict(extra="forbid")

    name: str
    description: str = ""
    input_schema: dict[str, Any] = Field(default_factory=dict)
    """JSON Schema of the arguments (MCP ``inputSchema``, OpenAI ``parameters``)."""
    output_schema: dict[str, Any] | None = None
    """JSON Schema of the structured result, when the tool declares one (MCP ``outputSchema``)."""
    title: str | None = None
    """Display name (MCP); not part of the fingerprint."""
    server: str | None = None
    """Name of the MCP server that listed it (its ``serverInfo.name``); None for a tool offered to
    the model directly."""
    server_version: str | None = None
    source: ToolSource = "mcp"
    """``mcp``: from an MCP ``tools/list``; ``model``: from the tool definitions of a model request."""
    fingerprint: str = ""
    """``tool_fingerprint`` of the definition; filled in when not given."""

    def model_post_init(self, __context: Any) -> None:
        if not self.fingerprint:
            self.fingerprint = tool_fingerprint(self.name, self.description, self.input_schema, self.output_schema)

    @property
    def key(self) -> tuple[str, str]:
        """(server, name): how the same tool is matched across runs and snapshots."""
        return (self.server or "", self.name)

    @property
    def label(self) -> str:
        return f"{self.server}/{self.name}" if self.server else self.name

    @classmethod
    def from_any(cls, raw: Any, *, server: str | None = None, server_version: str | None = None,
                 source: ToolSource = "mcp") -> ToolDefinition | None:
        """From an MCP ``Tool`` (model or dict), an OTel GenAI definition (``parameters``), an OpenAI
        ``{"type": "function", "function": {...}}`` or an Anthropic one (``input_schema``)."""
        tool = _parse(raw)
        if hasattr(tool, "model_dump"):
            tool = tool.model_dump(by_alias=True, mode="json", exclude_none=True)
        if not isinstance(tool, dict):
            return None
        if isinstance(tool.get("function"), dict):
            tool = {**tool["function"]}
        name = tool.get("name")
        if not isinstance(name, str) or not name:
            return None
        inp = _schema(tool, "input_schema", "inputSchema", "parameters")
        out = _schema(tool, "output_schema", "outputSchema")
        desc = tool.get("description")
        title = tool.get("title")
        return cls(name=name, description=desc.strip() if isinstance(desc, str) else "", input_schema=inp or {},
                   output_schema=out, title=title if isinstance(title, str) else None, server=server,
                   server_version=server_version, source=source)

    def as_otel(self) -> dict[str, Any]:
        """The OTel GenAI tool-definition shape (``gen_ai.tool.definitions`` items)."""
        out: dict[str, Any] = {"type": "function", "name": self.name, "description": self.description,
                               "parameters": self.input_schema}
        if self.output_schema is not None:
            out["output_schema"] = self.output_schema
        if self.title:
            out["title"] = self.title
        return out


def _schema(tool: Mapping[str, Any], *keys: str) -> dict[str, Any] | None:
    for key in keys:
        value = _parse(tool.get(key))
        if isinstance(value, dict):
            return value
    return None
