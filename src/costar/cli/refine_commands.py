"""costar refine: the agent loop, and cleaning up after it."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from costar import api
from costar._util.signals import exit_code, interruption
from costar.cli.common import ConfigOpt, app, console, err_console, load_project, say
from costar.errors import ConfigError

refine_app = typer.Typer(
    help="Run the suite, brief a coding assistant on the failures, try its patches in git worktrees, "
         "keep only attempts that improve without regressions (train and held-out). Nothing is merged. "
         "'costar refine clean' removes the worktrees and branches of old sessions.")
app.add_typer(refine_app, name="refine")


@refine_app.callback(invoke_without_command=True)
def refine(
    ctx: typer.Context,
    config: ConfigOpt = None,
    assistant: Annotated[str | None, typer.Option("--assistant", help="'cmd:<template with {brief} {repo}>' or 'builtin:<model uri>' (default: refine.assistant in costar.yaml).")] = None,
    iterations: Annotated[int | None, typer.Option("--iterations", min=1)] = None,
    trials: Annotated[int | None, typer.Option("--trials", min=1, help="Trials per scenario for every run.")] = None,
    alpha: Annotated[float | None, typer.Option("--alpha", help="Significance level an attempt must reach (default: refine.alpha in costar.yaml, else 0.05).")] = None,
    budget_usd: Annotated[float | None, typer.Option("--budget-usd", min=0.0)] = None,
    budget_seconds: Annotated[float | None, typer.Option("--budget-seconds", min=1.0)] = None,
    exclude_tag: Annotated[list[str] | None, typer.Option("--exclude-tag", help="Leave scenarios with this tag out (repeatable).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Run the suite, brief a coding assistant on the failures, try its patches in git worktrees,
    keep only attempts that improve without regressions (train and held-out). Nothing is merged."""
    if ctx.invoked_subcommand is not None:
        return
    from costar.refine.report import render_markdown

    cfg = load_project(config)
    spec = assistant or cfg.refine.assistant
    if spec is None:
        raise ConfigError("no coding assistant: pass --assistant or set refine.assistant in costar.yaml")
    helper = api.make_assistant(spec, components=cfg.refine.components)
    options = api.RefineOptions(iterations=iterations or cfg.refine.iterations, trials=trials, alpha=alpha,
                                budget_usd=budget_usd, budget_seconds=budget_seconds,
                                exclude_tags=tuple(exclude_tag or ()))
    path = config or (cfg.root / "costar.yaml" if (cfg.root / "costar.yaml").exists() else None)
    try:
        report = api.refine(path, helper, options, say=lambda m: say(m))
    except KeyboardInterrupt as exc:  # Ctrl-C, SIGTERM, SIGHUP: the assistant and agents are already stopped
        err_console.print(f"{interruption(exc)}: no report was written; the attempts' branches are kept "
                          "(git branch --list 'costar/refine/*')", markup=False, highlight=False)
        raise typer.Exit(exit_code(exc)) from None
    if as_json:
        sys.stdout.write(report.model_dump_json(indent=2) + "\n")
    else:
        say(render_markdown(report))
        console.print(f"report: {Path(report.session_dir) / 'report.md'}")
        console.print("when done reviewing: costar refine clean (--keep N keeps the newest sessions)",
                      style="dim", highlight=False)
    nothing_to_do = report.stopped_because.startswith("nothing to refine")
    raise typer.Exit(0 if report.accepted or nothing_to_do else 1)


@refine_app.command("clean")
def refine_clean(
    config: ConfigOpt = None,
    keep: Annotated[int, typer.Option("--keep", min=0, help="Keep the newest N sessions as they are.")] = 0,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Say what would be removed; remove nothing.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print what was removed as JSON.")] = False,
) -> None:
    """Remove the worktrees and branches refine sessions left (reports and briefs stay)."""
    from costar.refine.cleanup import describe

    report = api.refine_clean(load_project(config), keep=keep, dry_run=dry_run)
    if as_json:
        sys.stdout.write(report.model_dump_json(indent=2) + "\n")
    else:
        console.print(describe(report), markup=False, highlight=False)
