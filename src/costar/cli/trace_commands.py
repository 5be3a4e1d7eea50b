"""costar traces: list, show, export, import."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

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
    writing,
)
from costar.safe_text import for_terminal
from costar.trace.formats import FORMAT_HELP

traces_app = typer.Typer(no_args_is_help=True, help="List, show, import and export recorded traces.")
app.add_typer(traces_app, name="traces")



@traces_app.command("list")
def traces_list(run_id: Annotated[str, typer.Argument()] = "latest", config: ConfigOpt = None,
                store: StoreOpt = None) -> None:
    """List a run's traces."""
    from rich.table import Table

    cfg = load_project(config)
    st = open_project_store(cfg, store, create=False)
    rid = st.resolve_run_id(run_id)
    table = Table("trace id", "scenario", "trial", "status", "spans", "tokens", "latency s")
    for t in st.iter_traces(rid, spans=False):
        table.add_row(*cells(t.trace_id, t.scenario_id or "", t.trial, t.status.value, st.count_spans(t.trace_id),
                             t.totals.total_tokens, f"{t.totals.latency_s:.2f}"))
    console.print(table)


@traces_app.command("show")
def traces_show(trace_id: str, config: ConfigOpt = None, store: StoreOpt = None,
                max_spans: Annotated[int, typer.Option("--max-spans", min=1)] = 500) -> None:
    """Print a trace's span tree."""
    from rich.text import Text
    from rich.tree import Tree

    cfg = load_project(config)
    st = open_project_store(cfg, store, create=False)
    t = st.get_trace(trace_id)
    # Everything from the trace is data: Text pieces keep it literal (never markup), and
    # for_terminal keeps it from driving the terminal (escape sequences, bidi overrides).
    root = Tree(Text.assemble((for_terminal(t.trace_id, 200, one_line=True), "bold"),
                              " " + for_terminal(f"{t.scenario_id or ''}[{t.trial}] {t.status.value}", 300,
                                                 one_line=True)))
    nodes: dict[str | None, Any] = {}
    ids = {s.span_id for s in t.spans}
    for s in t.spans[:max_spans]:
        parent = nodes.get(s.parent_id) if s.parent_id in ids else root
        label = Text.assemble((s.kind.value, "cyan"),
                              f" {for_terminal(s.name, 300, one_line=True)} ({s.duration_s * 1000:.1f} ms)")
        if s.is_error:
            label.append(" ERROR " + for_terminal(s.status.message or "", 500, one_line=True), style="red")
        nodes[s.span_id] = (parent or root).add(label)
    console.print(root)
    if len(t.spans) > max_spans:
        console.print(f"… {len(t.spans) - max_spans} more spans (use --max-spans)")
    say(f"output: {for_terminal(t.output or '', 2000)}")


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
        + (f"; {res.read}" if res.read else ""))


