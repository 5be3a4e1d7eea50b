"""run, assess, report, runs, schema, scenarios."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.text import Text

from costar import api
from costar.cli.common import (
    AllowUnsandboxedOpt,
    ConfigOpt,
    StoreOpt,
    allow_unsandboxed_code,
    app,
    cells,
    console,
    err_console,
    load_project,
    open_project_store,
    say,
    writable_file,
    write_text_output,
    writing,
)
from costar.errors import CostarError
from costar.safe_text import for_terminal


def _check_outputs(*paths: Path | None) -> None:
    """Refuse unwritable report paths before the (possibly long) work that would fill them."""
    for path in paths:
        if path is not None:
            writable_file(path)


def _write_reports(outcome: api.RunOutcome, html: Path | None, junit: Path | None) -> None:
    from costar.report.html import write_html
    from costar.report.junit import write_junit

    if junit is not None:
        with writing(junit):
            write_junit(junit, outcome.summary)
        say(f"JUnit XML: {junit}")
    if html is not None:
        st = outcome.store
        assert st is not None
        traces = list(st.iter_traces(outcome.run.run_id))
        with writing(html):
            write_html(html, outcome.summary, traces, st.verdicts(run_id=outcome.run.run_id),
                       title=f"coSTAR run {outcome.run.run_id}")
        say(f"HTML report: {html}")


def _render(outcome: api.RunOutcome) -> None:
    from costar.report.terminal import render_summary

    render_summary(outcome.summary, console)


@app.command()
def run(
    suite: Annotated[list[Path] | None, typer.Argument(help="Scenario files or folders (default: 'suite' in costar.yaml).")] = None,
    agent: Annotated[str | None, typer.Option("--agent", "-a", help="'cmd:python agent.py', 'py:module:fn' or an http URL.")] = None,
    config: ConfigOpt = None,
    store: StoreOpt = None,
    concurrency: Annotated[int | None, typer.Option("--concurrency", "-j", min=1, help="Trials run at once.")] = None,
    trials: Annotated[int | None, typer.Option("--trials", "-n", min=1, help="Override every scenario's trial count.")] = None,
    timeout: Annotated[float | None, typer.Option("--timeout", min=0.001, help="Override per-trial timeout (s).")] = None,
    ids: Annotated[list[str] | None, typer.Option("--id", help="Scenario id glob (repeatable).")] = None,
    tags: Annotated[list[str] | None, typer.Option("--tag", help="Only scenarios with this tag (repeatable).")] = None,
    exclude_tags: Annotated[list[str] | None, typer.Option("--exclude-tag", help="Skip scenarios with this tag.")] = None,
    split: Annotated[str | None, typer.Option("--split", help="train or holdout.")] = None,
    resume: Annotated[str | None, typer.Option("--resume", help="Finish an interrupted run (its id or 'latest').")] = None,
    junit: Annotated[Path | None, typer.Option("--junit", help="Write JUnit XML here.")] = None,
    html: Annotated[Path | None, typer.Option("--html", help="Write the HTML report here.")] = None,
    keep_workspaces: Annotated[bool, typer.Option("--keep-workspaces", help="Keep each trial's workspace.")] = False,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show a progress bar.")] = True,
    affected_by: Annotated[str | None, typer.Option("--affected-by", help="Run only the scenarios a change since this run can have affected (a changed tool they used; all when the agent changed).")] = None,
    run_tags: Annotated[list[str] | None, typer.Option("--run-tag", help="Tag the run (repeatable); 'tag:NAME' names its newest tagged run later.")] = None,
    id_file: Annotated[Path | None, typer.Option("--id-file", help="Write the run id to this file (for scripts and CI).")] = None,
    allow_unsandboxed: AllowUnsandboxedOpt = False,
) -> None:
    """Run the suite against the agent, record traces, apply the judges, report."""
    if allow_unsandboxed:
        allow_unsandboxed_code()
    if split is not None and split not in ("train", "holdout"):
        raise typer.BadParameter("--split must be 'train' or 'holdout'")
    if affected_by is not None and resume is not None:
        raise typer.BadParameter("--affected-by picks scenarios for a new run; it cannot be combined with --resume")
    _check_outputs(junit, html, id_file)
    cfg = load_project(config)
    paths: list[str | Path] | None = [str(p) for p in suite] if suite else [cfg.path(s) for s in cfg.suite] or None
    # A resumed run keeps the agent it was started with, unless --agent says otherwise.
    agent_spec = agent if agent is not None else (None if resume else cfg.agent_spec())
    options = api.HarnessOptions(concurrency=concurrency or cfg.concurrency, trials=trials or cfg.trials,
                                 timeout=timeout or cfg.timeout, keep_workspaces=keep_workspaces,
                                 drop_secret_binaries=cfg.secrets.drop_binary_artifacts)
    selection = api.Selection(ids=ids or (), tags=tags or (), exclude_tags=exclude_tags or (), split=split)
    chosen: Any = paths
    if affected_by is not None:
        chosen, affected = api.select_affected(affected_by, paths, agent_spec, store=open_project_store(cfg, store),
                                               mcp_servers=cfg.mcp_servers, root=cfg.root, selection=selection)
        _print_affected(affected)
        if not chosen:
            console.print(f"no scenario is affected by a change since {affected.base_run_id}: nothing to run")
            raise typer.Exit(0)
        selection = api.Selection()
    show = progress and console.is_terminal
    bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("{task.fields[status]}"), TimeElapsedColumn(), console=console,
                   disable=not show, transient=True)
    counts = {"pass": 0, "fail": 0}
    task_id = bar.add_task("trials", total=None, status="")

    def on_start(total: int, skipped: int) -> None:
        bar.update(task_id, total=total)
        if skipped:
            console.print(f"resuming: {skipped} trial(s) already finished, {total} to run")

    def on_trial(trace: Any, verdicts: list[Any]) -> None:
        ok = all(v.outcome == "pass" for v in verdicts if v.gating)
        counts["pass" if ok else "fail"] += 1
        bar.update(task_id, advance=1, status=f"[green]{counts['pass']} passed[/] [red]{counts['fail']} failed[/]")

    events = api.RunEvents(on_start=on_start, on_trial=on_trial)
    with bar:
        try:
            outcome = api.run_suite(chosen, agent_spec, store=open_project_store(cfg, store), selection=selection,
                                    options=options, resume=resume, events=events, registry=api.project_judges(cfg),
                                    run_tags=run_tags or ())
        except KeyboardInterrupt:
            err_console.print("interrupted: finished trials are stored; resume with 'costar run --resume latest'")
            raise typer.Exit(130) from None
    _render(outcome)
    _metric_alerts(outcome)
    _write_reports(outcome, html, junit)
    say(f"run id: {outcome.run.run_id}")
    if id_file is not None:
        with writing(id_file):
            id_file.parent.mkdir(parents=True, exist_ok=True)
            id_file.write_text(outcome.run.run_id + "\n", encoding="utf-8")
    if outcome.harness is not None and outcome.harness.abandoned:
        # Threads of timed-out in-process agents cannot be stopped, and Python waits for them at
        # exit: leave now, everything is stored and reported.
        err_console.print(f"warning: {outcome.harness.abandoned} in-process agent call(s) never returned; "
                          "exiting without waiting for them (run the agent as a command to have it killed)")
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(outcome.exit_code)
    raise typer.Exit(outcome.exit_code)


def _print_affected(affected: Any) -> None:
    """Why each scenario was picked (or that the rest were skipped): the selection must explain itself."""
    from rich.text import Text

    for w in affected.warnings:
        say(f"note: {w}", err=True)
    for p in affected.picked:
        line = Text("run  ", style="bold")
        line.append(p.scenario_id)
        line.append(f"  {p.reason}: {p.detail}", style="dim")
        console.print(line)
    if affected.skipped:
        console.print(Text(f"skip {len(affected.skipped)} scenario(s) nothing has changed for: "
                           + ", ".join(affected.skipped[:20]) + (" …" if len(affected.skipped) > 20 else ""),
                           style="dim"))


def _metric_alerts(outcome: api.RunOutcome) -> None:
    """Operational anomalies against this agent's earlier runs: they inform, they never gate."""
    if outcome.store is None:
        return
    report = api.check_metrics(outcome.store, outcome.run.run_id)
    for scenario_id, check in report.alerts:
        console.print(Text.assemble(("⚠ metric alert", "yellow"), " ", for_terminal(scenario_id, 200, one_line=True),
                                    ": ", for_terminal(check.message, 1000, one_line=True)), highlight=False)


@app.command()
def assess(
    run_id: Annotated[str, typer.Argument(help="Run id (a unique prefix, or 'latest').")] = "latest",
    config: ConfigOpt = None,
    store: StoreOpt = None,
    force: Annotated[bool, typer.Option("--force", help="Re-run every judge, ignoring cached verdicts.")] = False,
    suite: Annotated[list[Path] | None, typer.Option("--suite", help="Scenario files for these traces (e.g. imported ones).")] = None,
    junit: Annotated[Path | None, typer.Option("--junit", help="Write JUnit XML here.")] = None,
    html: Annotated[Path | None, typer.Option("--html", help="Write the HTML report here.")] = None,
    allow_unsandboxed: AllowUnsandboxedOpt = False,
) -> None:
    """Re-score stored traces with the current judges, without running the agent."""
    if allow_unsandboxed:
        allow_unsandboxed_code()
    _check_outputs(junit, html)
    cfg = load_project(config)
    outcome = api.assess_run(run_id, store=open_project_store(cfg, store), force=force,
                             suite=[str(p) for p in suite] if suite else None, registry=api.project_judges(cfg))
    s = outcome.assess
    assert s is not None
    console.print(f"assessed {s.traces} traces: {s.judged} verdicts computed, {s.cached} cached, "
                  f"{s.restored} restored, {s.errors} judge errors")
    if s.missing_scenarios:
        say(f"warning: no definition for scenarios {sorted(s.missing_scenarios)}; their traces were not re-scored",
            err=True)
    for warning in s.warnings:
        say(f"warning: {warning}", err=True)
    _render(outcome)
    _write_reports(outcome, html, junit)
    raise typer.Exit(outcome.exit_code)


@app.command()
def report(
    run_id: Annotated[str, typer.Argument(help="Run id (a unique prefix, 'latest', 'branch:NAME', 'tag:NAME').")] = "latest",
    config: ConfigOpt = None,
    store: StoreOpt = None,
    junit: Annotated[Path | None, typer.Option("--junit", help="Write JUnit XML here.")] = None,
    html: Annotated[Path | None, typer.Option("--html", help="Write the HTML report here.")] = None,
    markdown: Annotated[Path | None, typer.Option("--markdown", help="Write a Markdown summary here ('-': print it), e.g. for a pull-request comment.")] = None,
) -> None:
    """Show a stored run's results (and write HTML / JUnit / Markdown reports)."""
    _check_outputs(junit, html, None if markdown is None or str(markdown) == "-" else markdown)
    cfg = load_project(config)
    st = open_project_store(cfg, store, create=False)
    run_obj = st.get_run(run_id)
    outcome = api.RunOutcome(run=run_obj, summary=api.summarize_run(st, run_obj.run_id), store=st)
    if markdown is not None:
        from costar.report.markdown import run_markdown

        write_text_output(markdown, run_markdown(outcome.summary))
        if str(markdown) == "-":
            raise typer.Exit(outcome.exit_code)
    _render(outcome)
    _write_reports(outcome, html, junit)
    raise typer.Exit(outcome.exit_code)


@app.command()
def runs(config: ConfigOpt = None, store: StoreOpt = None,
         limit: Annotated[int, typer.Option("--limit", min=1)] = 20) -> None:
    """List recorded runs, newest first (with the branch and tags 'branch:NAME' and 'tag:NAME' select by)."""
    from rich.table import Table

    cfg = load_project(config)
    st = open_project_store(cfg, store, create=False)
    table = Table("run id", "status", "agent", "branch", "tags", "suite", "created", "note")
    import datetime as dt

    for r in st.list_runs(limit):
        created = dt.datetime.fromtimestamp(r.created_at).strftime("%Y-%m-%d %H:%M:%S")
        vcs = r.metadata.get("vcs") if isinstance(r.metadata.get("vcs"), dict) else {}
        tags = r.metadata.get("tags") if isinstance(r.metadata.get("tags"), list) else []
        note = for_terminal(r.error or "", 240, one_line=True)
        table.add_row(*cells(r.run_id, r.status, r.agent.name, vcs.get("branch", ""), ", ".join(map(str, tags)),
                             ", ".join(r.suite)[:50], created), Text(note, style="red"))
    console.print(table)


@app.command()
def schema(output: Annotated[Path | None, typer.Option("--output", "-o", help="Write to a file.")] = None) -> None:
    """Print the JSON Schema of scenario files (point your editor's YAML plugin at it)."""
    if output:
        writable_file(output)
    text = json.dumps(api.scenario_json_schema(), indent=2)
    if output:
        with writing(output):
            output.parent.mkdir(parents=True, exist_ok=True)
            output.write_text(text + "\n", encoding="utf-8")
    else:
        sys.stdout.write(text + "\n")


@app.command()
def scenarios(
    suite: Annotated[list[Path] | None, typer.Argument(help="Scenario files or folders.")] = None,
    config: ConfigOpt = None,
    ids: Annotated[list[str] | None, typer.Option("--id")] = None,
    tags: Annotated[list[str] | None, typer.Option("--tag")] = None,
    split: Annotated[str | None, typer.Option("--split")] = None,
) -> None:
    """Validate and list scenarios (nothing runs)."""
    from rich.table import Table

    cfg = load_project(config)
    paths = [str(p) for p in suite] if suite else [str(cfg.path(s)) for s in cfg.suite]
    if not paths:
        raise CostarError("no scenarios given: pass a path or set 'suite' in costar.yaml")
    found = api.Selection(ids=ids or (), tags=tags or (), split=split).apply(api.load_suite(paths))
    table = Table("id", "split", "tags", "trials", "checks", "criteria", "judges")
    for sc in found:
        table.add_row(*cells(sc.id, sc.split, ",".join(sc.tags), sc.trials, len(sc.expectations.checks),
                             len(sc.expectations.criteria), ",".join(j.name for j in sc.judges)))
    console.print(table)
    console.print(f"{len(found)} scenario(s) valid")


