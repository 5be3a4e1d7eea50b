"""costar server: run the server; its tokens; costar store prune (retention once)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer

from costar.cli.common import ConfigOpt, app, cells, console, load_project
from costar.cli.store_commands import store_app

server_app = typer.Typer(invoke_without_command=True, help="The coSTAR server: OTLP ingest of production traces, "
                         "the JSON API. With no subcommand it runs the server.")
app.add_typer(server_app, name="server")
token_app = typer.Typer(no_args_is_help=True, help="Server tokens: ingest tokens (one project each) and API tokens.")
server_app.add_typer(token_app, name="token")

ServerConfigOpt = Annotated[Path | None, typer.Option("--server-config", help="The server's settings file (default: server.yaml in the working directory, when it exists).")]
StoreOpt = Annotated[str | None, typer.Option("--store", help="Store: a folder or a postgresql:// URL (default: server.yaml's, else COSTAR_STORE, else costar.yaml, else .costar).")]


def _store_location(store: str | None, server_config: Path | None, config: Path | None) -> tuple[str, Path]:
    from costar.server.config import load_server_config

    cfg = load_project(config)
    where = store or load_server_config(server_config).store
    return cfg.store_location(where), cfg.local_path(where)


@server_app.callback()
def server(
    ctx: typer.Context,
    host: Annotated[str | None, typer.Option("--host", help="Address to listen on (default 127.0.0.1; anything else requires tokens).")] = None,
    port: Annotated[int | None, typer.Option("--port", help="Port (default 4319; 0 picks a free one, printed at start).")] = None,
    store: StoreOpt = None,
    server_config: ServerConfigOpt = None,
    config: ConfigOpt = None,
    log_level: Annotated[str, typer.Option("--log-level", help="debug, info, warning or error.")] = "info",
    monitors: Annotated[bool | None, typer.Option("--monitors/--no-monitors", help="Score stored traces with the project's monitors (default: server.yaml's monitors.enabled, on).")] = None,
) -> None:
    """Run the server until Ctrl-C: OTLP/HTTP at /v1/traces, the JSON API at /api/v1, and the
    project's monitors scoring what it stores (monitors/*.yaml; docs/MONITORING.md)."""
    if ctx.invoked_subcommand is not None:
        return
    from costar import api
    from costar.server.config import load_server_config

    cfg = load_server_config(server_config)
    location, local = _store_location(store, server_config, config)
    st = api.open_store(location, local_dir=local)
    try:
        api.serve(cfg, store=st, host=host, port=port, log_level=log_level, project=load_project(config),
                  monitors=monitors)
    finally:
        st.close()


@token_app.command("create")
def token_create(
    kind: Annotated[str, typer.Option("--kind", help="ingest (sends spans to one project) or api (reads the API).")] = "ingest",
    project: Annotated[str | None, typer.Option("--project", help="The project an ingest token sends to.")] = None,
    name: Annotated[str, typer.Option("--name", help="What the token is for (shown by 'token list').")] = "",
    store: StoreOpt = None, server_config: ServerConfigOpt = None, config: ConfigOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Create a token and print it (the only time it is shown; only its digest is stored)."""
    from costar import api

    location, local = _store_location(store, server_config, config)
    st = api.open_store(location, local_dir=local)
    try:
        new = api.create_server_token(kind, project=project, name=name, store=st)  # type: ignore[arg-type]
    finally:
        st.close()
    if as_json:
        console.print_json(json.dumps({**new.record.model_dump(exclude={"digest"}), "token": new.token}))
        return
    console.print(new.token, markup=False, highlight=False)
    where = f" for project {new.record.project}" if new.record.project else ""
    console.print(f"# {new.record.kind} token {new.record.token_id}{where}; it is not shown again",
                  markup=False, highlight=False)


@token_app.command("list")
def token_list(store: StoreOpt = None, server_config: ServerConfigOpt = None, config: ConfigOpt = None,
               as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Every token: id, kind, project, name, when it was created, last used and revoked."""
    from rich.table import Table

    from costar import api

    location, local = _store_location(store, server_config, config)
    st = api.open_store(location, local_dir=local, create=False)
    try:
        tokens = api.server_tokens(store=st)
    finally:
        st.close()
    if as_json:
        console.print_json(json.dumps([t.model_dump(exclude={"digest"}) for t in tokens]))
        return
    if not tokens:
        console.print("no tokens; create one with 'costar server token create'", markup=False, highlight=False)
        return
    table = Table(box=None)
    for col in ("id", "kind", "project", "name", "created", "last used", "revoked"):
        table.add_column(col)
    for t in tokens:
        table.add_row(*cells(t.token_id, t.kind, t.project or "-", t.name, _when(t.created_at), _when(t.last_used_at),
                             _when(t.revoked_at)))
    console.print(table)


@token_app.command("revoke")
def token_revoke(token_id: Annotated[str, typer.Argument(help="The token's id (from 'token list'), or the token.")],
                 store: StoreOpt = None, server_config: ServerConfigOpt = None, config: ConfigOpt = None) -> None:
    """Revoke a token: the server refuses it from its next request on."""
    from costar import api

    location, local = _store_location(store, server_config, config)
    st = api.open_store(location, local_dir=local, create=False)
    try:
        record = api.revoke_server_token(token_id, store=st)
    finally:
        st.close()
    console.print(f"revoked {record.kind} token {record.token_id}", markup=False, highlight=False)


@server_app.command("traces")
def server_traces(
    project: Annotated[str | None, typer.Option("--project", help="Only this project's traces.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000, help="How many, newest first.")] = 20,
    store: StoreOpt = None, server_config: ServerConfigOpt = None, config: ConfigOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (the API's GET /api/v1/traces items).")] = False,
) -> None:
    """The production traces the server stored, newest first ('costar traces show ID' shows one)."""
    from rich.table import Table

    from costar import api

    location, local = _store_location(store, server_config, config)
    st = api.open_store(location, local_dir=local, create=False)
    try:
        rows = api.server_traces(project=project, limit=limit, store=st)
    finally:
        st.close()
    if as_json:
        console.print_json(json.dumps({"items": [r.model_dump() for r in rows]}))
        return
    if not rows:
        console.print("no production traces yet" + (f" in project {project}" if project else ""), markup=False,
                      highlight=False)
        return
    table = Table(box=None)
    for col in ("trace", "project", "service", "spans", "stored", "amended", "complete"):
        table.add_column(col)
    for r in rows:
        table.add_row(*cells(r.trace_id, r.project, r.service or "-", r.spans, _when(r.completed_at), r.amended,
                             "no" if r.incomplete else "yes"))
    console.print(table)


@store_app.command("prune")
def store_prune(
    store: Annotated[str | None, typer.Argument(help="A store folder or a postgresql:// URL (default: server.yaml's, else COSTAR_STORE, else costar.yaml, else .costar).")] = None,
    project: Annotated[str | None, typer.Option("--project", help="Only this project.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Say what would be deleted; delete nothing.")] = False,
    server_config: ServerConfigOpt = None, config: ConfigOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Apply the retention rules of server.yaml once: delete each project's traces older than its
    max_age and the oldest beyond its max_size (labeled traces and metric series are kept)."""
    from costar import api
    from costar.server.config import load_server_config

    cfg = load_server_config(server_config)
    location, local = _store_location(store, server_config, config)
    st = api.open_store(location, local_dir=local, create=False)
    try:
        report = api.prune_store(cfg, store=st, project=project, dry_run=dry_run)
    finally:
        st.close()
    if as_json:
        console.print_json(report.model_dump_json())
        return
    if not report.projects:
        console.print("no project has retention rules (projects: NAME: retention: in server.yaml)", markup=False,
                      highlight=False)
        return
    verb = "would delete" if dry_run else "deleted"
    for p in report.projects:
        console.print(f"{p.project}: {verb} {p.traces} trace(s) (~{p.bytes:,} bytes)"
                      + ("" if dry_run else f", {p.spans} span(s), {p.verdicts} verdict(s), {p.blobs} blob(s)")
                      + (f"; kept {p.kept_labeled} labeled" if p.kept_labeled else ""), markup=False, highlight=False)


def _when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts)) if ts else "-"
