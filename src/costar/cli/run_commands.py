"""run, assess, report, runs, schema, scenarios."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.text import Text
from typer.core import TyperGroup

from costar import api
from costar._util.signals import exit_code, interruption
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
    project_judges,
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


def _write_reports(outcome: api.RunOutcome, html: Path | None, junit: Path | None, *, quiet: bool = False) -> None:
    """Write the reports asked for; ``quiet``: say where on stderr (stdout holds JSON)."""
    from costar.report.html import write_html
    from costar.report.junit import write_junit

    if junit is not None:
        with writing(junit):
            write_junit(junit, outcome.summary)
        say(f"JUnit XML: {junit}", err=quiet)
    if html is not None:
        st = outcome.store
        assert st is not None
        traces = list(st.iter_traces(outcome.run.run_id))
        with writing(html):
            write_html(html, outcome.summary, traces, st.verdicts(run_id=outcome.run.run_id),
                       title=f"coSTAR run {outcome.run.run_id}", store=st)
        say(f"HTML report: {html}", err=quiet)


def _executor(given: str | None, configured: Any) -> Any:
    """--executor (its options from costar.yaml when it names the same executor), else costar.yaml's."""
    if given is None:
        return configured
    spec = api.executor_spec(given)
    if configured is not None:
        base = api.executor_spec(configured)
        if base["type"] == spec["type"]:
            return {**base, **spec}
    return spec


FullOpt = Annotated[bool, typer.Option("--full", help="Every failure, with judge names and rationales whole.")]


def _render(outcome: api.RunOutcome, full: bool = False) -> None:
    from costar.report.terminal import render_summary

    render_summary(outcome.summary, console, full=full)


def _origin() -> str:
    """``ci`` inside a CI job (GitHub Actions, GitLab CI and most others set ``CI``), else ``cli``."""
    return "ci" if os.environ.get("CI", "").lower() not in ("", "0", "false") else "cli"


class ScenarioLines:
    """Progress without a terminal (a pipe, a CI log): one line per finished scenario, as it finishes."""

    def __init__(self, out: Any) -> None:
        self.out = out
        self.started = time.monotonic()
        self.left: dict[str, int] = {}
        self.passed: dict[str, int] = {}
        self.ran: dict[str, int] = {}
        self.total = 0
        self.done = 0

    def plan(self, trials: dict[str, int]) -> None:
        self.left = {sid: n for sid, n in trials.items() if n}

    def trial(self, scenario_id: str, ok: bool) -> None:
        self.done += 1
        self.ran[scenario_id] = self.ran.get(scenario_id, 0) + 1
        self.passed[scenario_id] = self.passed.get(scenario_id, 0) + ok
        if scenario_id not in self.left:
            return
        self.left[scenario_id] -= 1
        if self.left[scenario_id] > 0:
            return
        del self.left[scenario_id]
        passed, ran = self.passed[scenario_id], self.ran[scenario_id]
        mark = "✓" if passed == ran else "✗"
        elapsed = time.monotonic() - self.started
        self.out.print(f"{mark} {for_terminal(scenario_id, None, one_line=True)}  {passed}/{ran} trials passed  "
                       f"[{self.done}/{self.total or '?'} trials done, {elapsed:.0f}s]",
                       markup=False, highlight=False, soft_wrap=True)


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
    executor: Annotated[str | None, typer.Option("--executor", help="Where trials run: 'local' (default) or 'ray[:ADDRESS]' (a Ray cluster; pip install 'costar[ray]'). Default: 'executor' in costar.yaml.")] = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show progress: a live bar on a terminal, one line per finished scenario otherwise.")] = True,
    affected_by: Annotated[str | None, typer.Option("--affected-by", help="Run only the scenarios a change since this run can have affected (a changed tool they used; all when the agent changed).")] = None,
    run_tags: Annotated[list[str] | None, typer.Option("--run-tag", help="Tag the run (repeatable); 'tag:NAME' names its newest tagged run later.")] = None,
    id_file: Annotated[Path | None, typer.Option("--id-file", help="Write the run id to this file (for scripts and CI).")] = None,
    allow_unsandboxed: AllowUnsandboxedOpt = False,
    full: FullOpt = False,
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
                                 drop_secret_binaries=cfg.secrets.drop_binary_artifacts,
                                 executor=_executor(executor, cfg.executor), prices=cfg.price_table())
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
    live = progress and console.is_terminal
    bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("{task.fields[status]}"), TimeElapsedColumn(), console=console,
                   disable=not live, transient=True)
    task_id = bar.add_task("trials", total=None, status="")
    lines = ScenarioLines(err_console) if progress and not live else None

    def on_start(total: int, skipped: int) -> None:
        bar.update(task_id, total=total)
        if lines is not None:
            lines.total = total
        if skipped:
            console.print(f"resuming: {skipped} trial(s) already finished, {total} to run")

    def on_trial(trace: Any, verdicts: list[Any]) -> None:
        ok = all(v.outcome == "pass" for v in verdicts if v.gating)
        counts["pass" if ok else "fail"] += 1
        bar.update(task_id, advance=1, status=f"[green]{counts['pass']} passed[/] [red]{counts['fail']} failed[/]")
        if lines is not None:
            lines.trial(trace.scenario_id or "", ok)

    counts = {"pass": 0, "fail": 0}

    def on_warning(text: str) -> None:
        err_console.print(f"warning: {text}", markup=False, highlight=False)

    events = api.RunEvents(on_start=on_start, on_trial=on_trial, on_warning=on_warning,
                           on_plan=lines.plan if lines is not None else None)
    with bar:
        try:
            outcome = api.run_suite(chosen, agent_spec, store=open_project_store(cfg, store), selection=selection,
                                    options=options, resume=resume, events=events, registry=project_judges(cfg),
                                    run_tags=run_tags or (), origin=_origin())
        except KeyboardInterrupt as exc:
            err_console.print(f"{interruption(exc)}: finished trials are stored; resume with "
                              "'costar run --resume latest'")
            raise typer.Exit(exit_code(exc)) from None
    _render(outcome, full)
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
    report = api.check_metrics(outcome.run.run_id, store=outcome.store)
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
    executor: Annotated[str | None, typer.Option("--executor", help="Where the judges run: 'local' (default) or 'ray[:ADDRESS]' (a Ray cluster; its workers read the traces from the store). Default: 'executor' in costar.yaml.")] = None,
    rpm: Annotated[float | None, typer.Option("--rpm", min=0.001, help="Model calls per minute, per model the judges call (unless its judge sets its own): for the whole cluster with --executor ray.")] = None,
    budget_usd: Annotated[float | None, typer.Option("--budget-usd", min=0.000001, help="The most the judges' model calls may cost together (US dollars); later calls give error verdicts.")] = None,
    allow_unsandboxed: AllowUnsandboxedOpt = False,
    full: FullOpt = False,
) -> None:
    """Re-score stored traces with the current judges, without running the agent."""
    if allow_unsandboxed:
        allow_unsandboxed_code()
    _check_outputs(junit, html)
    cfg = load_project(config)
    outcome = api.assess_run(run_id, store=open_project_store(cfg, store), force=force,
                             suite=[str(p) for p in suite] if suite else None, registry=project_judges(cfg),
                             executor=_executor(executor, cfg.executor), requests_per_minute=rpm,
                             budget_usd=budget_usd)
    s = outcome.assess
    assert s is not None
    # The run's judge errors, as the table counts them (errors are never cached: each was computed now,
    # except on traces whose scenario has no definition to re-score them with, warned about below).
    console.print(f"assessed {s.traces} traces: {s.judged} verdicts computed, {s.cached} cached, "
                  f"{s.restored} restored, {outcome.summary.totals.judge_errors} judge errors")
    if s.missing_scenarios:
        say(f"warning: no definition for scenarios {sorted(s.missing_scenarios)}; their traces were not re-scored",
            err=True)
    for warning in s.warnings:
        say(f"warning: {warning}", err=True)
    _render(outcome, full)
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
    full: FullOpt = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (docs/JSON.md: 'report').")] = False,
) -> None:
    """Show a stored run's results (and write HTML / JUnit / Markdown reports). Exits 1 when a gate failed."""
    _check_outputs(junit, html, None if markdown is None or str(markdown) == "-" else markdown)
    cfg = load_project(config)
    st = open_project_store(cfg, store, create=False)
    view = api.run_report(run_id, store=st)
    outcome = api.RunOutcome(run=st.get_run(view.run_id or run_id), summary=view, store=st)
    if markdown is not None:
        from costar.report.markdown import run_markdown

        write_text_output(markdown, run_markdown(outcome.summary))
        if str(markdown) == "-":
            raise typer.Exit(outcome.exit_code)
    if as_json:
        sys.stdout.write(view.model_dump_json(indent=2) + "\n")
    else:
        _render(outcome, full)
    _write_reports(outcome, html, junit, quiet=as_json)
    raise typer.Exit(outcome.exit_code)


@app.command()
def runs(config: ConfigOpt = None, store: StoreOpt = None,
         limit: Annotated[int, typer.Option("--limit", min=1, help="How many runs, newest first.")] = 20,
         origin: Annotated[list[str] | None, typer.Option("--origin", help="Only runs from here: cli, api, pytest, refine, import, ci, monitor (repeatable).")] = None,
         show_all: Annotated[bool, typer.Option("--all", help="Include refine's own runs (hidden by default).")] = False,
         as_json: Annotated[bool, typer.Option("--json", help="Print JSON (docs/JSON.md: 'runs').")] = False) -> None:
    """List recorded runs, newest first: pass rate, trials, tokens, cost, agent commit, origin."""
    from costar.errors import ConfigError
    from costar.views import listed_origins

    try:
        origins = listed_origins(origin or (), include_hidden=show_all)
    except ConfigError as exc:
        raise typer.BadParameter(str(exc), param_hint="--origin") from None
    cfg = load_project(config)
    st = open_project_store(cfg, store, create=False)
    listing = api.list_runs(store=st, limit=limit, origins=origins)
    if as_json:
        sys.stdout.write(listing.model_dump_json(indent=2) + "\n")
        return
    from costar.report.terminal_store import render_runs

    render_runs(listing, console)
    if listing.hidden and not origin:
        console.print(f"({listing.hidden} refine run(s) hidden; --all lists them)", style="dim", highlight=False)


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


class _ScenariosGroup(TyperGroup):
    """``costar scenarios [PATHS]`` validates and lists (the ``check`` subcommand, the default);
    ``costar scenarios from-trace ID`` drafts one from a trace."""

    # ctx is the Context of the click typer vendors (typer._click, a private module): typed as Any.
    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if not args or (args[0] not in self.commands and args[0] not in ("--help", "-h")):
            args = ["check", *args]
        return super().parse_args(ctx, args)


scenarios_app = typer.Typer(cls=_ScenariosGroup, help="Validate and list scenarios (the default: costar scenarios "
                            "[PATHS]); draft one from a trace (costar scenarios from-trace ID).")
app.add_typer(scenarios_app, name="scenarios")


@scenarios_app.command("check")
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
    for warning in project_judges(cfg).unapplied_criteria(found):
        err_console.print(f"warning: {warning}", markup=False, highlight=False)
    table = Table("id", "split", "tags", "trials", "checks", "criteria", "judges")
    for sc in found:
        table.add_row(*cells(sc.id, sc.split, ",".join(sc.tags), sc.trials, len(sc.expectations.checks),
                             len(sc.expectations.criteria), ",".join(j.name for j in sc.judges)))
    console.print(table)
    console.print(f"{len(found)} scenario(s) valid")




@app.command()
def checks(markdown: Annotated[bool, typer.Option("--markdown", help="Print docs/CHECKS.md: every check with its options and an example.")] = False) -> None:
    """The checks scenarios can use (built-in and from plugins), with their options."""
    from costar.scenario.checks_reference import checks_markdown, checks_summary

    if markdown:
        sys.stdout.write(checks_markdown())
        return
    from costar.report.fit import Column, fitted_table

    table, _ = fitted_table(console, [Column("check"), Column("what it checks", flexible=True, min_width=30),
                                      Column("options", priority=1, flexible=True, min_width=20)],
                            [list(row) for row in checks_summary()])
    console.print(table, soft_wrap=False)
    console.print("docs/CHECKS.md (or costar checks --markdown) has each check's options and an example",
                  style="dim", highlight=False)
