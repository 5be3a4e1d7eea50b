"""Shared pieces of the CLI: the Typer apps, consoles and option types."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from costar import api
from costar.config import ProjectConfig, load_config

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="coSTAR: test LLM agents the way engineers test software.")

console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="Project file (default: nearest costar.yaml).")]
StoreOpt = Annotated[Path | None, typer.Option("--store", help="Store folder (default: from costar.yaml or .costar).")]


def load_project(config: Path | None) -> ProjectConfig:
    return load_config(config)


def open_project_store(cfg: ProjectConfig, store: Path | None) -> Any:
    return api.open_store(store or cfg.store_path)
