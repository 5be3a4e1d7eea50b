"""costar ci init: write CI workflows that run the suite on every change and nightly."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from costar import api
from costar.ci import DEFAULT_INSTALL
from costar.cli.common import ConfigOpt, app, load_project, say

ci_app = typer.Typer(no_args_is_help=True, help="Continuous integration: write workflows for GitHub or GitLab.")
app.add_typer(ci_app, name="ci")


@ci_app.command("init")
def init(
    provider: Annotated[str, typer.Argument(help="github or gitlab.")],
    tag: Annotated[list[str] | None, typer.Option("--tag", help="Pull requests run only scenarios with this tag (repeatable; nightly runs all).")] = None,
    branch: Annotated[str, typer.Option("--branch", help="The branch whose runs are the pull requests' baseline.")] = "main",
    store: Annotated[str, typer.Option("--store", help="Where the baseline lives: 'artifact' (CI artifacts) or 'shared' (a store named by a CI secret).")] = "artifact",
    store_secret: Annotated[str, typer.Option("--store-secret", help="The CI secret / variable naming the shared store.")] = "COSTAR_STORE",
    schedule: Annotated[str, typer.Option("--schedule", help="Cron expression of the nightly run (UTC).")] = "17 3 * * *",
    python: Annotated[str, typer.Option("--python", help="Python version of the CI jobs.")] = "3.11",
    install: Annotated[list[str] | None, typer.Option("--install", help="A shell line that installs coSTAR and the agent (repeatable; replaces the default).")] = None,
    rejudge: Annotated[int | None, typer.Option("--rejudge", min=2, help="Re-judge regressions K times before reporting them (costs judge calls).")] = None,
    fail_on: Annotated[str, typer.Option("--fail-on", help="'regression' (against the baseline) or 'gates' (also any failing gate).")] = "regression",
    timeout: Annotated[int, typer.Option("--timeout", min=1, help="Job timeout in minutes.")] = 60,
    retention: Annotated[int, typer.Option("--retention", min=1, help="Days CI keeps artifacts (and so the baseline).")] = 30,
    force: Annotated[bool, typer.Option("--force", help="Overwrite existing workflow files.")] = False,
    directory: Annotated[Path | None, typer.Option("--dir", help="Project root to write under (default: where costar.yaml is).")] = None,
    config: ConfigOpt = None,
) -> None:
    """Write the workflows: every pull request runs the suite (or --tag), compares it with the target
    branch's baseline and comments the Markdown summary; nightly runs everything, snapshots the MCP
    servers of costar.yaml and diffs them with the last snapshot."""
    if provider not in ("github", "gitlab"):
        raise typer.BadParameter("the provider is 'github' or 'gitlab'")
    if store not in ("artifact", "shared"):
        raise typer.BadParameter("--store must be 'artifact' or 'shared'")
    if fail_on not in ("regression", "gates"):
        raise typer.BadParameter("--fail-on must be 'regression' or 'gates'")
    cfg = load_project(config)
    root = directory or cfg.root
    written = api.init_ci(provider, root, force=force, branch=branch, tags=list(tag or []), store=store,
                          store_secret=store_secret, cron=schedule, python=python,
                          install=list(install) if install else list(DEFAULT_INSTALL), rejudge=rejudge,
                          fail_on=fail_on, timeout_minutes=timeout, retention_days=retention)
    for path in written:
        say(f"wrote {path}")
    if not cfg.mcp_servers:
        say("note: no mcp_servers: in costar.yaml, so the nightly job has no MCP server to snapshot; "
            "declare the servers your agent uses there")
    if provider == "gitlab":
        say("note: for merge-request comments, add a project access token with the api scope as the "
            "CI/CD variable COSTAR_GITLAB_TOKEN; schedule the nightly job under CI/CD > Schedules")
