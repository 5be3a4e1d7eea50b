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
    err_console,
    load_project,
    open_project_store,
    writable_file,
    writing,
)

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
    # Everything from the trace is data, never markup: Text pieces keep it literal.
    root = Tree(Text.assemble((t.trace_id, "bold"), f" {t.scenario_id or ''}[{t.trial}] {t.status.value}"))
    nodes: dict[str | None, Any] = {}
    ids = {s.span_id for s in t.spans}
    for s in t.spans[:max_spans]:
        parent = nodes.get(s.parent_id) if s.parent_id in ids else root
        label = Text.assemble((s.kind.value, "cyan"), f" {s.name} ({s.duration_s * 1000:.1f} ms)")
        if s.is_error:
            label.append(f" ERROR {s.status.message or ''}", style="red")
        nodes[s.span_id] = (parent or root).add(label)
    console.print(root)
    if len(t.spans) > max_spans:
        console.print(f"… {len(t.spans) - max_spans} more spans (use --max-spans)")
    console.print(Text(f"output: {(t.output or '')[:2000]}"))


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
    err_console.print(f"exported {n} traces" + (f" to {output}" if output else ""), markup=False, highlight=False)


@traces_app.command("import")
def traces_import(
    file: Annotated[Path, typer.Argument(help="OTLP JSON, coSTAR JSONL, tau-bench JSON, SWE-agent .traj, "
                                              "or OpenInference span attributes.")],
    config: ConfigOpt = None,
    store: StoreOpt = None,
    run_id: Annotated[str | None, typer.Option("--run-id", help="Import into this new run id.")] = None,
) -> None:
    """Import traces recorded elsewhere into a new run, ready for 'costar assess'."""
    cfg = load_project(config)
    st = open_project_store(cfg, store)
    res = api.import_into_store(st, file, run_id=run_id)
    console.print(f"imported {res.traces} traces ({res.format}) into run {', '.join(res.run_ids)}"
                  + (f" with {res.verdicts} verdicts" if res.verdicts else "")
                  + (f"; {res.skipped} already in the store were skipped" if res.skipped else ""),
                  markup=False, highlight=False)


