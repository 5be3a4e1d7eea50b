"""costar store: the schema version of a store, upgrading it, copying one store into another."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from costar.cli.common import ConfigOpt, app, cells, console, load_project, say

store_app = typer.Typer(no_args_is_help=True, help="Stores: schema migrations, copies between SQLite and PostgreSQL.")
app.add_typer(store_app, name="store")

StoreArg = Annotated[str | None, typer.Argument(help="A store folder or a postgresql:// URL (default: COSTAR_STORE, else costar.yaml, else .costar).")]


@store_app.command("migrate")
def store_migrate(store: StoreArg = None, config: ConfigOpt = None) -> None:
    """Upgrade a store to this coSTAR's schema (an empty PostgreSQL database gets the whole schema)."""
    from costar.store.location import migrate_store

    cfg = load_project(config)
    where, start, end, notes = migrate_store(cfg.store_location(store), local_dir=cfg.local_path(store))
    if start == end:
        say(f"{where}: already at schema {end}")
    else:
        say(f"{where}: migrated schema {start} → {end}")
    for note in notes:
        say(f"note: {note}")


@store_app.command("info")
def store_info(store: StoreArg = None, config: ConfigOpt = None,
               as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Where a store is, its schema version and how many rows each table holds."""
    from costar import api

    cfg = load_project(config)
    st: Any = api.open_store(cfg.store_location(store), local_dir=cfg.local_path(store), create=False)
    try:
        info = {"location": st.location, "backend": st.backend, "local_dir": str(st.root),
                "schema_version": st.schema_version(), "counts": st.table_counts()}
    finally:
        st.close()
    if as_json:
        console.print_json(json.dumps(info))
        return
    say(f"{info['location']} ({info['backend']}, schema {info['schema_version']}); local folder "
        f"{info['local_dir']}")
    for table, n in info["counts"].items():
        say(f"  {table:<12} {n:>10,}")


@store_app.command("copy")
def store_copy(
    source: Annotated[str, typer.Argument(help="The store to copy from: a folder or a postgresql:// URL.")],
    destination: Annotated[str, typer.Argument(help="The store to copy into (created when missing).")],
    merge: Annotated[bool, typer.Option("--merge", help="Copy into a store holding different data under the same keys, keeping the destination's version of those.")] = False,
    config: ConfigOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the counts as JSON.")] = False,
) -> None:
    """Copy every run, trace, verdict, label, golden set, blob and judge version from SOURCE into
    DESTINATION. Copying again copies nothing twice; conflicting data stops the copy unless --merge."""
    from rich.table import Table

    from costar import api
    from costar.store.copy import copy_store

    cfg = load_project(config)
    src: Any = api.open_store(cfg.store_location(source), local_dir=cfg.local_path(source), create=False)
    try:
        dst: Any = api.open_store(cfg.store_location(destination), local_dir=cfg.local_path(destination))
        try:
            report = copy_store(src, dst, merge=merge)
        finally:
            dst.close()
    finally:
        src.close()
    if as_json:
        console.print_json(json.dumps({
            "source": report.source, "destination": report.destination, "merged": report.merged,
            "tables": {k: vars(v) for k, v in report.tables.items()}, "conflicts": report.conflicts}))
        return
    table = Table("table", "copied", "already there", "conflicts (kept)" if merge else "conflicts",
                  title=f"{report.source} → {report.destination}")
    for name, count in report.tables.items():
        table.add_row(*cells(name, f"{count.copied:,}", f"{count.present:,}", f"{count.conflicts:,}"))
    console.print(table)
    for line in report.conflicts:
        say(f"kept the destination's: {line}")
