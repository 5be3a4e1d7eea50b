"""costar traces: list, show, export, import."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from costar import api
from costar.cli.common import (
    ConfigOpt,
    StoreOpt,
    app,
    console,
    load_project,
    open_project_store,
    say,
    writable_file,
    writing,
)
from costar.trace.formats import FORMAT_HELP

traces_app = typer.Typer(no_args_is_help=True, help="List, show, import and export recorded traces.")
app.add_typer(traces_app, name="traces")



@traces_app.command("list")
def traces_list(run_id: Annotated[str, typer.Argument(help="Run id (a unique prefix, or 'latest').")] = "latest",
                config: ConfigOpt = None, store: StoreOpt = None,
                as_json: Annotated[bool, typer.Option("--json", help="Print JSON (docs/JSON.md: 'traces').")] = False) -> None:
    """List a run's traces with whole ids (any unique prefix works in 'traces show')."""
    cfg = load_project(config)
    listing = api.list_traces(run_id, store=open_project_store(cfg, store, create=False))
    if as_json:
        sys.stdout.write(listing.model_dump_json(indent=2) + "\n")
        return
    from costar.report.terminal_store import render_trace_list

    render_trace_list(listing, console)


@traces_app.command("show")
def traces_show(
    trace_id: Annotated[str, typer.Argument(help="Trace id, or any unique prefix of one.")],
    config: ConfigOpt = None,
    store: StoreOpt = None,
    max_spans: Annotated[int, typer.Option("--max-spans", min=1, help="Spans to show.")] = 500,
    attributes: Annotated[bool, typer.Option("--attributes", "-a", help="Every attribute of every span.")] = False,
    artifact_chars: Annotated[int, typer.Option("--artifact-chars", min=0, help="Characters of each text artifact to read (0: none).")] = 2000,  # views.SHOWN_ARTIFACT_CHARS; --help imports no views
    artifact_lines: Annotated[int, typer.Option("--artifact-lines", min=0, help="Lines of each text artifact to print.")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (docs/JSON.md: 'trace'); attributes included.")] = False,
) -> None:
    """A trace: its span tree (model, tokens, cost per span), output, verdicts and artifacts."""
    cfg = load_project(config)
    detail = api.show_trace(trace_id, store=open_project_store(cfg, store, create=False), max_spans=max_spans,
                            attributes=attributes or as_json, artifact_chars=artifact_chars)
    if as_json:
        sys.stdout.write(detail.model_dump_json(indent=2) + "\n")
        return
    from costar.report.terminal_store import render_trace

    render_trace(detail, console, attributes=attributes, artifact_lines=artifact_lines)


@traces_app.command("export")
def traces_export(
    run_id: Annotated[str, typer.Argument(help="Run id, or 'latest'.")],
    fmt: Annotated[str, typer.Option("--format", "-f", help="otlp-json or jsonl.")] = "jsonl",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="File (default: stdout).")] = None,
    config: ConfigOpt = None,
    store: StoreOpt = None,
) -> None:
    """Export a run's traces (with verdicts and artifacts) without loss."""
    if output is not None:
        writable_file(output)
    cfg = load_project(config)
    st = open_project_store(cfg, store, create=False)
    if output is None:
        n = api.export_run(st, run_id, fmt, None)
    else:
        with writing(output):
            n = api.export_run(st, run_id, fmt, output)
    say(f"exported {n} traces" + (f" to {output}" if output else ""), err=True)


_FORMATS_HELP = "; ".join(f"{k}: {v}" for k, v in FORMAT_HELP.items())


@traces_app.command("import")
def traces_import(
    file: Annotated[Path, typer.Argument(help="A trace file; its format is recognised by the keys it has.")],
    config: ConfigOpt = None,
    store: StoreOpt = None,
    run_id: Annotated[str | None, typer.Option("--run-id", help="Import into this new run id.")] = None,
    fmt: Annotated[str | None, typer.Option("--format", "-f", help=f"Force a format. {_FORMATS_HELP}.")] = None,
) -> None:
    """Import traces recorded elsewhere into a new run, ready for 'costar assess'.

    A file must have every key its format needs; one that fits no format, or several, is refused (force one with --format). What was read, kept and skipped is printed."""
    cfg = load_project(config)
    st = open_project_store(cfg, store)
    res = api.import_into_store(st, file, run_id=run_id, fmt=fmt)
    say(f"imported {res.traces} traces ({res.format}) into run {', '.join(res.run_ids)}"
        + (f" with {res.verdicts} verdicts" if res.verdicts else "")
        + (f"; {res.skipped} already in the store were skipped" if res.skipped else "")
        + (f"; {res.renumbered} got the next free trial number (their scenario's trial was taken)"
           if res.renumbered else "")
        + (f"; {res.read}" if res.read else ""))


