"""costar plugins: every plugin group's names and where each comes from."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from typing import Annotated

import typer
from rich.table import Table

from costar import api
from costar.cli.common import app, cells, console


@app.command()
def plugins(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """The checks, judge types, judges, agent types, model providers and optimizers coSTAR can use,
    and where each comes from: built-in, an installed plugin, or registered in code."""
    groups = api.list_plugins()
    if as_json:
        sys.stdout.write(json.dumps({g: [asdict(i) for i in infos] for g, infos in groups.items()}, indent=2) + "\n")
        return
    table = Table("group", "name", "from", "object")
    for group, infos in groups.items():
        for info in infos:
            origin = f"plugin {info.distribution}" if info.origin == "plugin" else info.origin
            if info.error:
                origin = f"error: {info.error}"
            table.add_row(*cells(group, info.name, origin, info.reference))
    console.print(table)
