"""costar mcp: snapshot MCP servers, list the snapshots, diff them (or the tools runs recorded)."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table
from rich.text import Text

from costar import api
from costar.cli.common import (
    ConfigOpt,
    StoreOpt,
    app,
    cells,
    console,
    load_project,
    open_project_store,
    say,
    writable_file,
    write_text_output,
)
from costar.errors import ConfigError

if TYPE_CHECKING:
    from costar.mcp.diff import CatalogDiff

mcp_app = typer.Typer(no_args_is_help=True, help="MCP servers: snapshot their tools, prompts and resources; diff them.")
app.add_typer(mcp_app, name="mcp")


def _headers(values: list[str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for value in values or []:
        name, sep, text = value.partition(":")
        if not sep or not name.strip():
            raise ConfigError(f"--header takes 'Name: value', got {value!r}")
        out[name.strip()] = text.strip()
    return out


@mcp_app.command("snapshot")
def snapshot(
    command: Annotated[list[str] | None, typer.Argument(help="A server command to start over stdio (after --).")] = None,
    server: Annotated[list[str] | None, typer.Option("--server", "-s", help="A server declared under mcp_servers: in costar.yaml (repeatable; default: all of them).")] = None,
    url: Annotated[str | None, typer.Option("--url", help="A streamable HTTP MCP endpoint instead of a command.")] = None,
    name: Annotated[str | None, typer.Option("--name", help="Store the snapshot under this name (default: the server's own name).")] = None,
    header: Annotated[list[str] | None, typer.Option("--header", help="HTTP header for --url, 'Name: value' (repeatable).")] = None,
    timeout: Annotated[float, typer.Option("--timeout", min=0.1, help="Seconds to connect and list everything.")] = 30.0,
    config: ConfigOpt = None,
    store: StoreOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the snapshot(s) as JSON.")] = False,
) -> None:
    """Store a snapshot of MCP servers' tools, prompts and resources.

    costar mcp snapshot                      # every server under mcp_servers: in costar.yaml
    costar mcp snapshot --server shop        # one of them
    costar mcp snapshot -- python server.py  # any server, over stdio
    costar mcp snapshot --url http://127.0.0.1:8000/mcp"""
    cfg = load_project(config)
    target = open_project_store(cfg, store)
    if command or url:
        if command and url:
            raise ConfigError("give either a server command (after --) or --url, not both")
        if server:
            raise ConfigError("--server names a server of costar.yaml; it cannot be combined with a command or --url")
        snaps = [api.snapshot_mcp_server(command=command or None, url=url, name=name, headers=_headers(header),
                                         timeout=timeout, store=target)]
    else:
        if name or header:
            raise ConfigError("--name and --header apply to a server given after -- or with --url")
        if not cfg.mcp_servers:
            raise ConfigError("no MCP server to snapshot: declare them under mcp_servers: in costar.yaml, or give "
                              "one after -- (costar mcp snapshot -- python server.py) or with --url")
        snaps = api.snapshot_mcp_servers(cfg.mcp_servers, root=cfg.root, store=target, names=server or None)
    if as_json:
        sys.stdout.write("[" + ",\n".join(s.model_dump_json(indent=2) for s in snaps) + "]\n")
        return
    for s in snaps:
        line = Text("snapshot ", style="bold")
        line.append(s.snapshot_id)
        line.append(f"  {s.name}", style="bold")
        line.append(f"  {s.server.name or '?'} {s.server.version or ''}  {len(s.tools)} tools, {len(s.prompts)} "
                    f"prompts, {len(s.resources)} resources", style="dim")
        console.print(line)


@mcp_app.command("snapshots")
def snapshots(
    name: Annotated[str | None, typer.Argument(help="Only snapshots of this name.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1)] = 30,
    config: ConfigOpt = None,
    store: StoreOpt = None,
) -> None:
    """List stored snapshots, newest first (refer to them by id, NAME, NAME~1, latest)."""
    cfg = load_project(config)
    st = open_project_store(cfg, store, create=False)
    table = Table("snapshot id", "name", "server", "version", "tools", "prompts", "resources", "taken")
    for s in st.mcp_snapshots(name, limit):
        taken = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(s.created_at))
        table.add_row(*cells(s.snapshot_id, s.name, s.server.name, s.server.version, len(s.tools), len(s.prompts),
                             len(s.resources), taken))
    console.print(table)


def _render(d: CatalogDiff) -> None:
    head = Text("MCP diff ", style="bold")
    head.append(f"{d.base.kind} {d.base.ref} → {d.head.kind} {d.head.ref}")
    for server, b, h in d.server_versions:
        head.append(f" · {server} {b or '—'} → {h or '—'}", style="dim")
    console.print(head)
    if not d.changed:
        console.print(Text(f"no change ({d.unchanged_tools} tools unchanged)", style="green"))
    for t in d.tools:
        style = "bold red" if t.breaking else "yellow" if t.change == "changed" else "cyan"
        line = Text(f"{'BREAKING' if t.breaking else 'ok':8} ", style=style)
        line.append(f"{t.change:8} ", style="bold")
        line.append(t.label, style="bold")
        console.print(line)
        for c in t.changes:
            console.print(Text(f"    {'✗' if c.breaking else '·'} {c.detail}", style="red" if c.breaking else "dim"))
    for i in [*d.prompts, *d.resources]:
        console.print(Text(f"{'BREAKING' if i.breaking else 'ok':8} {i.change:8} {i.kind} {i.key}",
                           style="bold red" if i.breaking else "yellow"))
    for w in d.warnings:
        console.print(Text("⚠ " + w, style="yellow"))


@mcp_app.command("diff")
def diff(
    base: Annotated[str | None, typer.Argument(help="A snapshot (id, NAME, NAME~1, latest), a run or a trace; prefix snapshot:, run: or trace: to be explicit.")] = None,
    head: Annotated[str | None, typer.Argument(help="The same kinds (default: the newest snapshot of BASE's name, or latest).")] = None,
    config: ConfigOpt = None,
    store: StoreOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    markdown: Annotated[Path | None, typer.Option("--markdown", help="Write a Markdown summary here ('-': print it).")] = None,
) -> None:
    """Added, removed and changed tools (with a schema diff), prompts and resources, each classified as
    breaking or not. Exits 1 when a change is breaking.

    Without arguments: each server under mcp_servers: in costar.yaml, its newest snapshot against the one before."""
    if markdown is not None and str(markdown) != "-":
        writable_file(markdown)
    cfg = load_project(config)
    if base is None and not cfg.mcp_servers:
        raise ConfigError("give two snapshots, runs or traces to diff, or declare mcp_servers: in costar.yaml "
                          "to diff each server with its previous snapshot")
    st = open_project_store(cfg, store, create=False)
    notes: list[str] = []
    if base is None:
        diffs = []
        for name in cfg.mcp_servers:
            kept = st.mcp_snapshots(name, 2)
            if len(kept) < 2:
                notes.append(f"{name}: {'one snapshot' if kept else 'no snapshot'} so far, nothing to compare yet")
                continue
            diffs.append(api.diff_mcp(f"snapshot:{kept[1].snapshot_id}", f"snapshot:{kept[0].snapshot_id}", store=st))
    else:
        if head is None:
            head = base.split("~")[0] if "~" in base else "latest"
        diffs = [api.diff_mcp(base, head, store=st)]
    if markdown is not None:
        from costar.report.markdown import diff_markdown

        write_text_output(markdown, diff_markdown(diffs, notes))
    if as_json:
        sys.stdout.write("[" + ",\n".join(d.model_dump_json(indent=2) for d in diffs) + "]\n")
    elif markdown is None or str(markdown) != "-":
        for n in notes:
            say(f"note: {n}", err=True)
        for d in diffs:
            _render(d)
    raise typer.Exit(1 if any(d.breaking for d in diffs) else 0)
