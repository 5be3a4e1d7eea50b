"""costar compare, costar metrics: runs against runs, and operational health over time."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, cast

import typer

from costar import api
from costar.cli.common import (
    ConfigOpt,
    StoreOpt,
    app,
    console,
    load_project,
    open_project_store,
    writable_file,
    write_text_output,
)

if TYPE_CHECKING:
    from costar.api import Correction


@app.command()
def compare(
    base: Annotated[str, typer.Argument(help="The baseline run (id, prefix, 'branch:NAME', 'tag:NAME', each with ~N).")],
    head: Annotated[str, typer.Argument(help="The run to judge against it (default: latest).")] = "latest",
    config: ConfigOpt = None,
    store: StoreOpt = None,
    alpha: Annotated[float, typer.Option("--alpha", min=0.0001, max=0.5, help="Significance level.")] = 0.05,
    correction: Annotated[str, typer.Option("--correction", help="holm or none (multiple comparisons).")] = "holm",
    changed_only: Annotated[bool, typer.Option("--changed-only", help="Hide unchanged scenarios.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (docs/JSON.md: 'comparison').")] = False,
    markdown: Annotated[Path | None, typer.Option("--markdown", help="Write a Markdown summary here ('-': print it), e.g. for a pull-request comment.")] = None,
    rejudge: Annotated[int | None, typer.Option("--rejudge", min=2, help="Re-judge each regressed scenario's stored traces K times (model cache bypassed): flaky judge or flaky agent?")] = None,
    attribution: Annotated[bool, typer.Option("--attribution/--no-attribution", help="Name the changed tools each scenario used (reads every trace's spans).")] = True,
    full: Annotated[bool, typer.Option("--full", help="Judge names whole.")] = False,
) -> None:
    """Per scenario and judge: improved / regressed / unchanged / inconclusive (exact test over trials),
    and for each regression the changed tools it used and whether the agent changed.

    Exits 1 on a significant regression, so CI can gate on it."""
    from costar.report.terminal_comparison import render_comparison

    if correction not in ("holm", "none"):
        raise typer.BadParameter("--correction must be 'holm' or 'none'")
    if markdown is not None and str(markdown) != "-":
        writable_file(markdown)
    cfg = load_project(config)
    st = open_project_store(cfg, store, create=False)
    comparison = api.compare(base, head, store=st, alpha=alpha,
                             correction=cast("Correction", correction),  # checked above
                             attribution=attribution, rejudge=rejudge,
                             registry=api.project_judges(cfg) if rejudge else None)
    if markdown is not None:
        from costar.report.markdown import comparison_markdown

        write_text_output(markdown, comparison_markdown(comparison))
        if str(markdown) == "-":
            raise typer.Exit(comparison.exit_code)
    if as_json:
        sys.stdout.write(comparison.model_dump_json(indent=2) + "\n")
    else:
        render_comparison(comparison, console, hide_unchanged=changed_only, full=full)
    raise typer.Exit(comparison.exit_code)


@app.command()
def metrics(
    run_id: Annotated[str, typer.Argument(help="Run id (default: latest).")] = "latest",
    config: ConfigOpt = None,
    store: StoreOpt = None,
    history: Annotated[int, typer.Option("--history", min=1, help="Earlier runs to compare against.")] = 10,
    threshold: Annotated[float, typer.Option("--threshold", min=0.1, help="Robust z-score for an alert.")] = 3.5,
    min_change: Annotated[float, typer.Option("--min-change", min=0.0, help="Relative change an alert needs.")] = 0.25,
    limits: Annotated[list[str] | None, typer.Option("--max", help="METRIC=LIMIT upper bound (gates; repeatable).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (docs/JSON.md: 'metrics').")] = False,
) -> None:
    """Tokens, cost, latency, calls, errors and retries per scenario, with alerts against history.

    Alerts inform; only a limit set with --max (or a scenario's metadata.metric_thresholds) fails."""
    from costar.metrics import parse_limits
    from costar.report.terminal_comparison import render_metrics

    cfg = load_project(config)
    st = open_project_store(cfg, store, create=False)
    report = api.check_metrics(run_id, store=st, history=history, threshold=threshold,
                               min_change=min_change, thresholds=parse_limits(limits or []))
    if as_json:
        sys.stdout.write(report.model_dump_json(indent=2) + "\n")
    else:
        render_metrics(report, console)
    raise typer.Exit(report.exit_code)


