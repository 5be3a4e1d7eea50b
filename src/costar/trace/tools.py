"""The tools an agent saw, read off its spans; and snapshots of what an MCP server offers.

Every trace stores the definitions its agent saw in ``Trace.tools`` (``tool_definitions``):
definitions an MCP client listed (a span with ``mcp.method.name`` = ``tools/list`` carrying
``gen_ai.tool.definitions``: coSTAR's MCP capture records one, and an OpenTelemetry-instrumented
agent in any language can emit one, see docs/MCP.md) carry their server's name and version;
definitions sent to a model in a request (``gen_ai.tool.definitions`` on an LLM span) are kept
for the tools no MCP listing describes. What a fingerprint covers: ``costar.trace.tool_definition``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from costar.trace.genai import TOOL_DEFINITIONS, parse_json
from costar.trace.model import Span, SpanKind
from costar.trace.tool_definition import ToolDefinition

MCP_METHOD = "mcp.method.name"
MCP_PROTOCOL = "mcp.protocol.version"
SERVER_NAME = "costar.mcp.server.name"
SERVER_VERSION = "costar.mcp.server.version"
TOOL_FINGERPRINT = "costar.tool.fingerprint"
LIST_TOOLS = "tools/list"
CALL_TOOL = "tools/call"


def _definitions(value: Any) -> list[Any]:
    value = parse_json(value)
    return value if isinstance(value, list) else []


def server_of(attrs: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """The MCP server a span talked to: coSTAR's attributes, else the semconv ``server.address``."""
    name = attrs.get(SERVER_NAME)
    if not isinstance(name, str) or not name:
        address = attrs.get("server.address")
        port = attrs.get("server.port")
        name = f"{address}:{port}" if isinstance(address, str) and address and port else (
            address if isinstance(address, str) and address else None)
    version = attrs.get(SERVER_VERSION)
    return name, str(version) if version not in (None, "") else None


def tool_definitions(spans: Iterable[Span]) -> list[ToolDefinition]:
    """Every distinct definition the trace's spans show, MCP listings first (see the module docstring)."""
    listed: dict[tuple[str, str, str], ToolDefinition] = {}
    offered: dict[tuple[str, str], ToolDefinition] = {}
    for s in sorted(spans, key=lambda s: s.start_ns):
        a = s.attributes
        if TOOL_DEFINITIONS not in a:
            continue
        if a.get(MCP_METHOD) == LIST_TOOLS:
            server, version = server_of(a)
            for raw in _definitions(a[TOOL_DEFINITIONS]):
                d = ToolDefinition.from_any(raw, server=server, server_version=version, source="mcp")
                if d is not None:
                    listed.setdefault((d.server or "", d.name, d.fingerprint), d)
        elif s.kind == SpanKind.LLM:
            for raw in _definitions(a[TOOL_DEFINITIONS]):
                d = ToolDefinition.from_any(raw, source="model")
                if d is not None:
                    offered.setdefault((d.name, d.fingerprint), d)
    names = {d.name for d in listed.values()}
    return [*listed.values(), *(d for d in offered.values() if d.name not in names)]


# --------------------------------------------------------------------------- server snapshots


class ServerInfo(BaseModel):
    """Who answered: the MCP server's ``serverInfo`` and the negotiated protocol version."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = None
    version: str | None = None
    title: str | None = None
    protocol_version: str | None = None
    instructions: str | None = None


class PromptArgument(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    description: str = ""
    required: bool = False


class PromptDefinition(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    description: str = ""
    arguments: list[PromptArgument] = Field(default_factory=list)


class ResourceDefinition(BaseModel):
    """A resource (``uri``) or a resource template (``uri_template``)."""

    model_config = ConfigDict(extra="forbid")

    name: str
    uri: str | None = None
    uri_template: str | None = None
    description: str = ""
    mime_type: str | None = None

    @property
    def key(self) -> str:
        return self.uri or self.uri_template or self.name


class McpSnapshot(BaseModel):
    """What one MCP server offered at one moment: its tools, prompts and resources.

    Snapshots are stored under a name (the server's entry in ``mcp_servers:``, or what
    ``--name`` says) and ordered by time, so ``NAME`` is the newest one of that name and
    ``NAME~1`` the one before it."""

    model_config = ConfigDict(extra="forbid")

    snapshot_id: str = ""
    name: str
    created_at: float = Field(default_factory=time.time)
    server: ServerInfo = Field(default_factory=ServerInfo)
    target: str = ""
    """How the server was reached: the command (stdio) or the URL (streamable HTTP), secrets redacted."""
    transport: Literal["stdio", "streamable-http"] = "stdio"
    tools: list[ToolDefinition] = Field(default_factory=list)
    prompts: list[PromptDefinition] = Field(default_factory=list)
    resources: list[ResourceDefinition] = Field(default_factory=list)

    def model_post_init(self, __context: Any) -> None:
        if not self.snapshot_id:
            stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(self.created_at))
            self.snapshot_id = f"{stamp}-{os.urandom(3).hex()}"


_NAME_SEPARATORS = ("__", "_", ".", "-", "/", ":")


def tool_name_matches(exposed: str, tool: str) -> bool:
    """Whether ``exposed`` (the name a model or framework used) names the MCP tool ``tool``: the same
    name, or the name behind a server prefix (``shop__list_orders``, ``mcp__shop__list_orders``,
    ``shop.list_orders``, ``shop/list_orders``) as MCP hosts and agent frameworks expose them."""
    if exposed == tool:
        return True
    return bool(tool) and any(exposed.endswith(sep + tool) for sep in _NAME_SEPARATORS)


def is_mcp_call(span: Span) -> bool:
    return span.kind == SpanKind.TOOL and span.attributes.get(MCP_METHOD) == CALL_TOOL
