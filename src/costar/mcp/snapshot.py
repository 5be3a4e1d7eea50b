"""Snapshot an MCP server: connect (stdio or streamable HTTP), list its tools, prompts and resources.

The connection uses the official ``mcp`` SDK's ``Client`` (it negotiates the protocol version and
pages through every listing). A server that cannot be started or reached, that does not speak MCP,
or that does not answer within the timeout is a one-line ``McpServerError`` naming the fix; a
stdio server's last line on stderr is part of the message.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
import shutil
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from costar.config import McpServerConfig, expand_vars
from costar.errors import CostarError
from costar.trace.sanitize import DEFAULT_SANITIZER
from costar.trace.tool_definition import ToolDefinition
from costar.trace.tools import McpSnapshot, PromptArgument, PromptDefinition, ResourceDefinition, ServerInfo

Transport = Literal["stdio", "streamable-http"]
"""How coSTAR reaches an MCP server."""

DEFAULT_TIMEOUT_S = 30.0
_MAX_PAGES = 100


class McpServerError(CostarError):
    """An MCP server could not be started, reached or listed."""


def _public_url(url: str) -> str:
    """The URL without credentials (user:password@), for storing and printing."""
    parts = urlsplit(url)
    if parts.username or parts.password:
        host = parts.hostname or ""
        netloc = f"{host}:{parts.port}" if parts.port else host
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    return url


def _dump(obj: Any) -> dict[str, Any]:
    return obj.model_dump(by_alias=True, mode="json", exclude_none=True) if hasattr(obj, "model_dump") else dict(obj)


def _flatten(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        out: list[BaseException] = []
        for sub in exc.exceptions:
            out.extend(_flatten(sub))
        return out
    return [exc]


def _last_line(errlog: Any) -> str:
    try:
        errlog.flush()
        errlog.seek(0)
        lines = [ln.strip() for ln in errlog.read()[-4000:].splitlines() if ln.strip()]
    except (OSError, ValueError):
        return ""
    return lines[-1][:300] if lines else ""


def _explain(exc: BaseException, where: str, stderr_tail: str, timeout: float) -> McpServerError:
    """One line for whatever went wrong while talking to the server."""
    causes = _flatten(exc)
    first = next((c for c in causes if not isinstance(c, (KeyboardInterrupt, SystemExit))), causes[0])
    said = f" (it said: {stderr_tail})" if stderr_tail else ""
    if isinstance(first, TimeoutError):
        return McpServerError(f"the MCP server {where} did not answer within {timeout:g}s; check that it is an MCP "
                              f"server and that it starts, or raise --timeout{said}")
    if isinstance(first, FileNotFoundError):
        return McpServerError(f"cannot start the MCP server {where}: command not found; give the full path or "
                              "install it")
    if isinstance(first, PermissionError):
        return McpServerError(f"cannot start the MCP server {where}: permission denied; make it executable")
    name = type(first).__name__
    text = " ".join(str(first).split())[:200]
    if name in ("ConnectError", "ConnectTimeout"):
        return McpServerError(f"cannot connect to the MCP server at {where} ({text}); check that it is running "
                              "and the URL is right")
    if name.startswith("HTTP") or name == "HTTPStatusError":
        return McpServerError(f"the MCP server at {where} answered with an HTTP error ({text}); check the URL "
                              "(streamable HTTP endpoints usually end in /mcp) and any --header it needs")
    if "Connection closed" in text:
        return McpServerError(f"the MCP server {where} closed the connection before answering{said}; run the "
                              "command by hand to see why it exits")
    return McpServerError(f"the MCP server {where} failed: {name}: {text}{said}")


@contextlib.contextmanager
def _quiet_sdk() -> Iterator[None]:
    """The SDK logs protocol noise (tracebacks for unparsable lines): we report one line instead."""
    logger = logging.getLogger("mcp")
    level, logger.level = logger.level, logging.CRITICAL
    try:
        yield
    finally:
        logger.setLevel(level)


async def _pages(fetch: Any, key: str) -> list[Any]:
    items: list[Any] = []
    cursor = None
    for _ in range(_MAX_PAGES):
        page = await fetch(cursor=cursor)
        items.extend(getattr(page, key, None) or [])
        cursor = getattr(page, "next_cursor", None)
        if not cursor:
            break
    return items


async def _optional(capability: Any, fetch: Any, key: str) -> list[Any]:
    """A listing the server declared a capability for; servers without it answer method-not-found."""
    if capability is None:
        return []
    return await _pages(fetch, key)


async def _collect(client: Any, name: str, target: str, transport: Transport) -> McpSnapshot:
    info = client.server_info
    caps = client.server_capabilities
    server = ServerInfo(name=getattr(info, "name", None), version=getattr(info, "version", None) or None,
                        title=getattr(info, "title", None), protocol_version=client.protocol_version,
                        instructions=client.instructions)
    tools = await _optional(getattr(caps, "tools", None), client.list_tools, "tools")
    prompts = await _optional(getattr(caps, "prompts", None), client.list_prompts, "prompts")
    resources = await _optional(getattr(caps, "resources", None), client.list_resources, "resources")
    templates = await _optional(getattr(caps, "resources", None), client.list_resource_templates,
                                "resource_templates")
    return McpSnapshot(
        name=name, server=server, target=target, transport=transport,
        tools=[d for d in (ToolDefinition.from_any(t, server=server.name, server_version=server.version)
                           for t in tools) if d is not None],
        prompts=[PromptDefinition(name=p.name, description=p.description or "",
                                  arguments=[PromptArgument(name=a.name, description=a.description or "",
                                                            required=bool(a.required))
                                             for a in (p.arguments or [])]) for p in prompts],
        resources=[*(ResourceDefinition(name=r.name, uri=str(r.uri), description=r.description or "",
                                        mime_type=r.mime_type) for r in resources),
                   *(ResourceDefinition(name=r.name, uri_template=str(r.uri_template),
                                        description=r.description or "", mime_type=r.mime_type)
                     for r in templates)])


async def _connect_and_list(*, command: list[str] | None, url: str | None, cwd: str | None,
                            env: Mapping[str, str] | None, headers: Mapping[str, str] | None, errlog: Any,
                            timeout: float, name: str, target: str, transport: Transport) -> McpSnapshot:
    import anyio
    from mcp import Client, StdioServerParameters

    async with contextlib.AsyncExitStack() as stack:
        if command is not None:
            from mcp.client.stdio import stdio_client

            # The server's stderr is kept, not shown: its last line explains a failed start.
            params = StdioServerParameters(command=command[0], args=command[1:], cwd=cwd,
                                           env={**os.environ, **(env or {})})
            client = Client(stdio_client(params, errlog=errlog))
        elif headers:
            import httpx2
            from mcp.client.streamable_http import streamable_http_client

            http = await stack.enter_async_context(httpx2.AsyncClient(headers=dict(headers),
                                                                      timeout=httpx2.Timeout(timeout)))
            client = Client(streamable_http_client(str(url), http_client=http))
        else:
            client = Client(str(url))
        with _quiet_sdk(), anyio.fail_after(timeout):
            async with client:
                return await _collect(client, name, target, transport)


async def snapshot_server(*, command: Sequence[str] | None = None, url: str | None = None, name: str | None = None,
                          env: Mapping[str, str] | None = None, cwd: str | None = None,
                          headers: Mapping[str, str] | None = None,
                          timeout: float = DEFAULT_TIMEOUT_S) -> McpSnapshot:
    """Connect to one server (``command`` over stdio, or ``url`` over streamable HTTP) and list what
    it offers. ``name`` defaults to the server's own name."""
    if (command is None) == (url is None):
        raise McpServerError("give either a server command (after --) or --url, not both or neither")
    if timeout <= 0:
        raise McpServerError(f"--timeout must be positive, got {timeout:g}")
    if command is not None:
        argv = list(command)
        if not argv or not argv[0]:
            raise McpServerError("the MCP server command is empty; give it after --, e.g. -- python server.py")
        if argv[0] in ("python", "python3"):
            argv[0] = sys.executable  # the interpreter coSTAR runs in, as for command agents
        elif os.sep not in argv[0] and shutil.which(argv[0]) is None:
            raise McpServerError(f"cannot start the MCP server: command {argv[0]!r} not found on PATH; give the "
                                 "full path or install it")
        target_text = DEFAULT_SANITIZER.text(shlex.join(command))
        transport: Transport = "stdio"
        where = f"`{target_text}`"
    else:
        assert url is not None
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise McpServerError(f"--url must be an http(s) URL of a streamable HTTP MCP endpoint, got {url!r}")
        where = target_text = DEFAULT_SANITIZER.text(_public_url(url))
        transport = "streamable-http"
    with tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace") as errlog:
        try:
            snap = await _connect_and_list(command=argv if command is not None else None, url=url, cwd=cwd,
                                           env=env, headers=headers, errlog=errlog, timeout=timeout,
                                           name=name or "", target=target_text, transport=transport)
        except CostarError:
            raise
        except Exception as exc:  # the SDK raises many kinds (OS, HTTP, protocol, groups of them)
            tail = _last_line(errlog) if command is not None else ""
            raise _explain(exc, where, tail, timeout) from None
    if not snap.name:
        snap.name = snap.server.name or "mcp"
    return snap


def snapshot_server_sync(**kwargs: Any) -> McpSnapshot:
    """``snapshot_server`` for callers without an event loop."""
    from costar._util.aio import run_sync

    return run_sync(lambda: snapshot_server(**kwargs))


async def snapshot_configured(name: str, server: McpServerConfig, root: Path) -> McpSnapshot:
    """Snapshot a server declared under ``mcp_servers:`` (``root``: the project folder), named ``name``."""
    where = f"mcp_servers.{name}"
    env = {k: expand_vars(v, f"{where}.env.{k}") for k, v in server.env.items()}
    cwd = str((root / server.cwd) if server.cwd else root)
    if server.url is not None:
        headers = {k: expand_vars(v, f"{where}.headers.{k}") for k, v in server.headers.items()}
        return await snapshot_server(url=expand_vars(server.url, f"{where}.url"), name=name, headers=headers,
                                     timeout=server.timeout)
    argv = [expand_vars(a, f"{where}.command") for a in server.argv()]
    # Project files named in the command are made absolute, as for command agents.
    argv = [str(root / a) if (_looks_like_path(a) and (root / a).exists()) else a for a in argv]
    return await snapshot_server(command=argv, name=name, env=env, cwd=cwd, timeout=server.timeout)


def _looks_like_path(arg: str) -> bool:
    return not arg.startswith("-") and ("/" in arg or arg.endswith((".py", ".js", ".mjs", ".ts", ".sh")))
