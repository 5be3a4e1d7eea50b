"""costar label, costar labels …, costar golden …: human labels and golden sets."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

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
from costar.errors import ConfigError

labels_app = typer.Typer(no_args_is_help=True, help="Import, export and delete human labels.")
golden_app = typer.Typer(no_args_is_help=True, help="Named, versioned golden sets with fixed splits.")
app.add_typer(labels_app, name="labels")
app.add_typer(golden_app, name="golden")

TypeOpt = Annotated[str, typer.Option("--type", help="bool, number, or labels as a,b,c (the judge's value type).")]


def value_type(spec: str | None) -> Any:
    if spec is None or spec in ("bool", "number", "any"):
        return spec
    return [s.strip() for s in spec.split(",") if s.strip()]


def _ids(path: Path | None) -> list[str] | None:
    if path is None:
        return None
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the file ({exc.strerror or exc}); check the path") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text; save it as UTF-8 with one trace id per line") from None
    return [line.strip() for line in text.splitlines() if line.strip()]


@app.command()
def label(
    name: Annotated[str, typer.Argument(help="The judge these labels calibrate (same name as its verdicts).")],
    labeler: Annotated[str | None, typer.Option("--labeler", help="Your id (required in the terminal).")] = None,
    run: Annotated[str | None, typer.Option("--run", help="Only traces of this run (default: all).")] = None,
    queue: Annotated[Path | None, typer.Option("--queue", help="A file of trace ids to label, in order.")] = None,
    vtype: TypeOpt = "bool",
    relabel: Annotated[bool, typer.Option("--relabel", help="Also show traces you labeled already.")] = False,
    web: Annotated[bool, typer.Option("--web", help="Label in the browser instead of the terminal.")] = False,
    port: Annotated[int, typer.Option("--port", min=0, max=65535)] = 8765,
    allow_remote: Annotated[bool, typer.Option("--allow-remote", help="Serve beyond loopback (trusted networks only).")] = False,
    host: Annotated[str, typer.Option("--host")] = "127.0.0.1",
    config: ConfigOpt = None,
    store: StoreOpt = None,
) -> None:
    """Label traces pass/fail (or the judge's value type) with a rationale, in the terminal or a web page."""
    cfg = load_project(config)
    st = open_project_store(cfg, store)
    run_id = st.resolve_run_id(run) if run else None
    if web:
        api.run_label_server(st, name, host=host, port=port, allow_remote=allow_remote, run_id=run_id,
                         queue=_ids(queue), labeler=labeler, value_type=value_type(vtype),
                         on_ready=lambda url: say(f"labeling {name}: open {url} (Ctrl-C to stop)"))
        return
    if not labeler:
        raise typer.BadParameter("--labeler is required in the terminal (who is labeling?)")
    api.label_in_terminal(st, name, run_id=run_id, queue=_ids(queue), labeler=labeler,  # it prints its summary
                      value_type=value_type(vtype), console=console, relabel=relabel)


@labels_app.command("export")
def labels_export(file: Annotated[Path, typer.Argument(help="A .csv or .jsonl file.")],
                  name: Annotated[str | None, typer.Option("--name")] = None,
                  labeler: Annotated[str | None, typer.Option("--labeler")] = None,
                  config: ConfigOpt = None, store: StoreOpt = None) -> None:
    """Write labels keyed by trace id (trace_id, name, value, labeler, rationale, created_at)."""
    writable_file(file)
    st = open_project_store(load_project(config), store, create=False)
    with writing(file):
        n = api.export_labels(st, file, name=name, labeler=labeler)
    say(f"exported {n} labels to {file}")


@labels_app.command("import")
def labels_import(file: Annotated[Path, typer.Argument(help="CSV, TSV, JSONL or a JSON array.")],
                  name: Annotated[str | None, typer.Option("--name", help="Judge name for rows without one.")] = None,
                  labeler: Annotated[str | None, typer.Option("--labeler", help="Labeler for rows without one.")] = None,
                  vtype: Annotated[str | None, typer.Option("--type")] = None,
                  replace: Annotated[bool, typer.Option("--replace", help="Overwrite conflicting labels.")] = False,
                  config: ConfigOpt = None, store: StoreOpt = None) -> None:
    """Import labels; every row is checked first and nothing is written on any error."""
    st = open_project_store(load_project(config), store)
    res = api.import_labels(st, file, name=name, labeler=labeler, value_type=value_type(vtype), replace=replace)
    say(res.format())


@labels_app.command("delete")
def labels_delete(name: Annotated[str, typer.Argument()],
                  trace: Annotated[list[str] | None, typer.Option("--trace")] = None,
                  labeler: Annotated[str | None, typer.Option("--labeler")] = None,
                  config: ConfigOpt = None, store: StoreOpt = None) -> None:
    """Delete labels of a judge (optionally only some traces or one labeler)."""
    st = open_project_store(load_project(config), store)
    n = st.delete_labels(name=name, trace_ids=trace, labeler=labeler)
    say(f"deleted {n} labels")


def _show_set(gs: Any) -> None:
    table = Table(title=cells(f"golden set {gs.name} v{gs.version} (judge {gs.judge_name}, seed {gs.seed})")[0],
                  title_justify="left")
    table.add_column("split")
    table.add_column("examples", justify="right")
    table.add_column("labels")
    for split, counts in gs.counts().items():
        table.add_row(*cells(split, sum(counts.values()), ", ".join(f"{k}: {v}" for k, v in sorted(counts.items()))))
    console.print(table)


@golden_app.command("create")
def golden_create(name: Annotated[str, typer.Argument()], judge: Annotated[str, typer.Argument()],
                  traces: Annotated[Path | None, typer.Option("--traces", help="A file of trace ids (default: every labeled trace).")] = None,
                  seed: Annotated[int | None, typer.Option("--seed")] = None,
                  fractions: Annotated[str | None, typer.Option("--fractions", help="train,validation,test e.g. .6,.2,.2")] = None,
                  labeler: Annotated[str | None, typer.Option("--labeler")] = None,
                  min_per_class: Annotated[int | None, typer.Option("--min-per-class", min=0)] = None,
                  note: Annotated[str, typer.Option("--note")] = "",
                  config: ConfigOpt = None, store: StoreOpt = None) -> None:
    """Create a golden set from labeled traces (or a new version with exactly these traces)."""
    st = open_project_store(load_project(config), store)
    fr = [float(x) for x in fractions.split(",")] if fractions else None
    _show_set(api.create_golden_set(st, name, judge, _ids(traces), seed=seed, fractions=fr, labeler=labeler,
                                min_per_class=min_per_class, note=note))


@golden_app.command("add")
def golden_add(name: Annotated[str, typer.Argument()], trace_ids: Annotated[list[str] | None, typer.Argument()] = None,
               note: Annotated[str, typer.Option("--note")] = "", config: ConfigOpt = None,
               store: StoreOpt = None) -> None:
    """A new version with these traces added (default: every trace labeled since)."""
    st = open_project_store(load_project(config), store)
    _show_set(api.extend_golden_set(st, name, trace_ids or None, note=note))


@golden_app.command("remove")
def golden_remove(name: Annotated[str, typer.Argument()], trace_ids: Annotated[list[str], typer.Argument()],
                  note: Annotated[str, typer.Option("--note")] = "", config: ConfigOpt = None,
                  store: StoreOpt = None) -> None:
    """A new version without these traces."""
    st = open_project_store(load_project(config), store)
    _show_set(api.remove_from_golden_set(st, name, trace_ids, note=note))


@golden_app.command("show")
def golden_show(name: Annotated[str, typer.Argument()], version: Annotated[int | None, typer.Option("--version")] = None,
                traces: Annotated[bool, typer.Option("--traces", help="List every trace by split, with its scenario.")] = False,
                config: ConfigOpt = None, store: StoreOpt = None) -> None:
    """A golden set's splits and label counts (with --traces, which trace is in which split)."""
    st = open_project_store(load_project(config), store, create=False)
    _show_set(api.get_golden_set(st, name, version))
    if traces:
        console.print(api.golden_set_splits(st, name, version).format(), markup=False, highlight=False)


@golden_app.command("list")
def golden_list(all_versions: Annotated[bool, typer.Option("--all-versions")] = False,
                config: ConfigOpt = None, store: StoreOpt = None) -> None:
    """Golden sets (latest versions, or all)."""
    table = Table("name", "version", "judge", "examples", "note")
    for info in api.list_golden_sets(open_project_store(load_project(config), store, create=False),
                                 all_versions=all_versions):
        table.add_row(*cells(info.name, info.version, info.judge_name, info.size, info.note))
    console.print(table)


@golden_app.command("diff")
def golden_diff(name: Annotated[str, typer.Argument()], old: Annotated[int, typer.Argument()],
                new: Annotated[int | None, typer.Argument()] = None, config: ConfigOpt = None,
                store: StoreOpt = None) -> None:
    """What changed between two versions of a golden set."""
    d = api.diff_golden_set(open_project_store(load_project(config), store, create=False), name, old, new)
    say(f"{d.name} v{d.old_version} → v{d.new_version}: {len(d.added)} added, {len(d.removed)} removed, "
        f"{len(d.relabeled)} relabeled")
    for e in d.added:
        say(f"  + {e.trace_id} ({e.split}) {e.label!r}")
    for e in d.removed:
        say(f"  - {e.trace_id} ({e.split}) {e.label!r}")
    for r in d.relabeled:
        say(f"  ~ {r}")
