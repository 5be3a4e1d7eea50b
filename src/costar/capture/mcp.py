"""Zero-code capture of MCP tool use through the official ``mcp`` Python SDK.

While a coSTAR recording is active (``instrument()`` installs this when ``mcp`` is imported):

* every tool listing (``ClientSession.list_tools``, ``Client.list_tools``, including listings the
  ``Client`` serves from its response cache) becomes a CHAIN span ``tools/list`` carrying the
  server's name and version (from the initialize / discover result), the negotiated protocol
  version and the listed tools as ``gen_ai.tool.definitions`` (name, description, input and output
  schema): the trace's ``tools`` and their fingerprints are read from these (``costar.trace.tools``);
* every tool call (``ClientSession.call_tool``, ``Client.call_tool``) becomes a TOOL span
  ``execute_tool {tool}``: the server, the tool name, the arguments, the result (the structured
  content when the tool returned one, else the text of its content blocks) and, when the result
  has ``isError`` or the call raised, status ERROR with ``error.type`` (``tool_error``, the JSON-RPC
  error code, or the exception's type). When the session listed the tool before, the span also
  carries its description and ``costar.tool.fingerprint``.

A ``Client`` call that goes through its ``ClientSession`` is recorded once (the outer call). The
spans follow the OpenTelemetry MCP conventions where they exist (``mcp.method.name``,
``mcp.protocol.version``, ``network.transport``, ``server.address``/``server.port``,
``error.type = tool_error``); the server's name and version have no semconv attribute and are
``costar.mcp.server.name`` / ``costar.mcp.server.version``. The model's own view of the same call
(its tool-call request and the result it was sent) is not recorded twice: the MCP span covers it
(``costar.trace.tool_inference``).

Nothing is imported from ``mcp`` until the agent imports it; no recording, no cost.
"""

from __future__ import annotations

import contextvars
import functools
import os
import weakref
from typing import Any
from urllib.parse import urlsplit

from costar.trace.genai import TOOL_DEFINITIONS
from costar.trace.model import SpanKind, StatusCode
from costar.trace.recorder import LiveSpan, current_span
from costar.trace.tool_definition import ToolDefinition
from costar.trace.tools import (
    CALL_TOOL,
    LIST_TOOLS,
    MCP_METHOD,
    MCP_PROTOCOL,
    SERVER_NAME,
    SERVER_VERSION,
    TOOL_FINGERPRINT,
)

SOURCE = "mcp"
_MAX_BINARY = 64  # characters of base64 image/audio data kept (the rest is summarised)

# Set while a captured MCP call runs, so the ClientSession call a Client makes is not recorded again.
_inside: contextvars.ContextVar[bool] = contextvars.ContextVar("costar_mcp_inside", default=False)
# The definitions each session last listed, to tag its calls with the description and fingerprint.
_listed: weakref.WeakKeyDictionary[Any, dict[str, ToolDefinition]] = weakref.WeakKeyDictionary()


def _recording_parent() -> LiveSpan | None:
    parent = current_span()
    if parent is None or parent.kind == SpanKind.LLM or _inside.get():
        return None
    return parent


def _session_of(obj: Any) -> Any:
    """The ClientSession behind a Client (or the session itself)."""
    if hasattr(obj, "_session") and not hasattr(obj, "_dispatcher"):
        return getattr(obj, "_session", None)
    return obj


def _server_attrs(obj: Any) -> dict[str, Any]:
    session = _session_of(obj)
    attrs: dict[str, Any] = {}
    try:
        info = getattr(session, "server_info", None)
        version = getattr(session, "protocol_version", None)
    except Exception:  # a session not entered yet: nothing to say about its server
        info, version = None, None
    if info is not None:
        if getattr(info, "name", None):
            attrs[SERVER_NAME] = str(info.name)
        if getattr(info, "version", None):
            attrs[SERVER_VERSION] = str(info.version)
    if version:
        attrs[MCP_PROTOCOL] = str(version)
    target = getattr(obj, "server", None) if obj is not session else None
    if isinstance(target, str):
        parts = urlsplit(target)
        attrs["network.transport"] = "tcp"
        if parts.hostname:
            attrs["server.address"] = parts.hostname
        if parts.port:
            attrs["server.port"] = parts.port
    elif target is not None and hasattr(target, "command") and hasattr(target, "args"):
        attrs["network.transport"] = "pipe"
        attrs["costar.mcp.server.command"] = os.path.basename(str(target.command))
    return attrs


def _definitions(obj: Any, result: Any, attrs: dict[str, Any]) -> list[ToolDefinition]:
    out = []
    for tool in getattr(result, "tools", None) or []:
        d = ToolDefinition.from_any(tool, server=attrs.get(SERVER_NAME), server_version=attrs.get(SERVER_VERSION))
        if d is not None:
            out.append(d)
    session = _session_of(obj)
    if session is not None:
        try:
            known = _listed.setdefault(session, {})
        except TypeError:  # not weak-referenceable: calls just go untagged
            return out
        known.update({d.name: d for d in out})
    return out


def _fail(span: LiveSpan, exc: BaseException) -> None:
    error = getattr(exc, "error", None)
    code = getattr(error, "code", None)
    span.set_attribute("error.type", str(code) if code is not None else type(exc).__name__)
    if code is not None:
        span.set_attribute("rpc.response.status_code", str(code))
    span.record_exception(exc)
    span.end()


def _block(block: Any) -> Any:
    data = block.model_dump(by_alias=True, mode="json", exclude_none=True) if hasattr(block, "model_dump") else block
    if isinstance(data, dict) and isinstance(data.get("data"), str) and len(data["data"]) > _MAX_BINARY:
        data = {**data, "data": f"{data['data'][:_MAX_BINARY]}… [{len(data['data']):,} base64 characters]"}
    return data


def _result_value(result: Any) -> tuple[Any, str]:
    """What the tool returned (structured content, else its text, else its blocks) and its text."""
    blocks = list(getattr(result, "content", None) or [])
    texts = [b.text for b in blocks if getattr(b, "type", None) == "text" and isinstance(getattr(b, "text", None), str)]
    text = "\n".join(texts)
    structured = getattr(result, "structured_content", None)
    if structured is not None:
        return structured, text
    if blocks and len(texts) == len(blocks):
        return text, text
    return [_block(b) for b in blocks], text


def _finish_call(span: LiveSpan, result: Any) -> None:
    if hasattr(result, "is_error") and hasattr(result, "content"):
        value, text = _result_value(result)
        span.set_attribute("gen_ai.tool.call.result", value)
        if result.is_error:
            span.set_attribute("error.type", "tool_error")
            span.set_status(StatusCode.ERROR, " ".join(text.split())[:500] or "the tool reported an error")
        else:
            span.set_status(StatusCode.OK)
    else:  # an input-required or extension-claimed result: the call did not finish with a tool result
        dumped = result.model_dump(by_alias=True, mode="json", exclude_none=True) if hasattr(result, "model_dump") \
            else result
        span.set_attribute("gen_ai.tool.call.result", dumped)
        span.set_attribute("costar.mcp.result_type", type(result).__name__)
        span.set_status(StatusCode.OK)
    span.end()


def _call_args(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, Any]:
    name = args[0] if args else kwargs.get("name")
    arguments = args[1] if len(args) > 1 else kwargs.get("arguments")
    return name, arguments


def _wrap_list_tools(cls: Any) -> None:
    original = getattr(cls, "list_tools", None)
    if original is None or getattr(original, "__costar_wrapped__", False):
        return

    @functools.wraps(original)
    async def list_tools(self: Any, *args: Any, **kwargs: Any) -> Any:
        parent = _recording_parent()
        if parent is None:
            return await original(self, *args, **kwargs)
        span = parent.recording.start_span(LIST_TOOLS, SpanKind.CHAIN,
                                           {MCP_METHOD: LIST_TOOLS, "costar.capture": SOURCE}, parent=parent)
        token = _inside.set(True)
        try:
            result = await original(self, *args, **kwargs)
        except BaseException as exc:
            _fail(span, exc)
            raise
        finally:
            _inside.reset(token)
        attrs = _server_attrs(self)
        defs = _definitions(self, result, attrs)
        span.set_attributes({**attrs, TOOL_DEFINITIONS: [d.as_otel() for d in defs]})
        span.set_status(StatusCode.OK)
        span.end()
        return result

    list_tools.__costar_wrapped__ = True  # type: ignore[attr-defined]  # a marker on our wrapper: patched once
    cls.list_tools = list_tools


def _wrap_call_tool(cls: Any) -> None:
    original = getattr(cls, "call_tool", None)
    if original is None or getattr(original, "__costar_wrapped__", False):
        return

    @functools.wraps(original)
    async def call_tool(self: Any, *args: Any, **kwargs: Any) -> Any:
        parent = _recording_parent()
        if parent is None:
            return await original(self, *args, **kwargs)
        name, arguments = _call_args(args, kwargs)
        attrs: dict[str, Any] = {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": str(name),
                                 "gen_ai.tool.call.arguments": dict(arguments) if isinstance(arguments, dict)
                                 else (arguments if arguments is not None else {}),
                                 MCP_METHOD: CALL_TOOL, "costar.capture": SOURCE, **_server_attrs(self)}
        session = _session_of(self)
        known = _listed.get(session, {}).get(str(name)) if session is not None else None
        if known is not None:
            attrs["gen_ai.tool.description"] = known.description
            attrs[TOOL_FINGERPRINT] = known.fingerprint
        span = parent.recording.start_span(f"execute_tool {name}", SpanKind.TOOL, attrs, parent=parent)
        token = _inside.set(True)
        try:
            result = await original(self, *args, **kwargs)
        except BaseException as exc:
            _fail(span, exc)
            raise
        finally:
            _inside.reset(token)
        _finish_call(span, result)
        return result

    call_tool.__costar_wrapped__ = True  # type: ignore[attr-defined]  # a marker on our wrapper: patched once
    cls.call_tool = call_tool


def install(module: Any) -> bool:
    """Wrap the SDK's client classes (``module`` is ``mcp``); False when it is another package."""
    try:
        from mcp.client.client import Client
        from mcp.client.session import ClientSession
    except ImportError:
        return False
    for cls in (ClientSession, Client):
        _wrap_list_tools(cls)
        _wrap_call_tool(cls)
    return True
