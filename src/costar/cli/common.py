"""Shared pieces of the CLI: the Typer apps, consoles and option types."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.text import Text

from costar import api
from costar.config import ProjectConfig, load_config
from costar.errors import ConfigError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="coSTAR: test LLM agents the way engineers test software.")

console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="Project file (default: nearest costar.yaml).")]
StoreOpt = Annotated[str | None, typer.Option("--store", help="Store: a folder or a postgresql:// URL (default: COSTAR_STORE, else costar.yaml, else .costar).")]


def load_project(config: Path | None) -> ProjectConfig:
    return load_config(config)


def open_project_store(cfg: ProjectConfig, store: str | Path | None, *, create: bool = True) -> Any:
    """The project's store (``--store``, else COSTAR_STORE, else costar.yaml). Read-only commands
    pass ``create=False``: a missing store is then a one-line error instead of a new, empty
    ``.costar`` folder wherever the command ran, and an old store is not silently upgraded."""
    return api.open_store(cfg.store_location(store), local_dir=cfg.local_path(store), create=create)


def cells(*values: Any) -> list[Text]:
    """Table cells shown literally: data (agent names, scenario ids, tags) is never Rich markup,
    so ``[/b]`` in an imported trace prints as text instead of crashing the table."""
    return [v if isinstance(v, Text) else Text("" if v is None else str(v)) for v in values]


def _cannot_write(path: Path, exc: OSError) -> str:
    if isinstance(exc, IsADirectoryError) or path.is_dir():
        return (f"cannot write {path}: it is a folder; give a file path instead "
                f"(e.g. {path / 'report'}.ext)")
    reason = exc.strerror or str(exc)
    return f"cannot write {path}: {reason}; choose another path or fix its permissions"


def writable_file(path: Path) -> Path:
    """Check, before any work, that ``path`` can be written as a file; return it.

    A path that is a folder, lies under a file, or sits in a folder we may not write is a
    ConfigError naming the path and the fix. Missing parent folders are fine (writers create them).
    """
    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"{p} is a folder; give a file path for the output instead (e.g. {p / 'out'}.ext)")
    if p.exists() and not os.access(p, os.W_OK):
        raise ConfigError(f"cannot write {p}: permission denied; choose another path or fix its permissions")
    ancestor = p.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise ConfigError(f"cannot write {p}: {ancestor} is a file, not a folder; choose another path")
    if not p.exists() and not os.access(ancestor, os.W_OK | os.X_OK):
        raise ConfigError(f"cannot write {p}: the folder {ancestor} is not writable; choose another path "
                          "or fix its permissions")
    return p


@contextlib.contextmanager
def writing(path: Path) -> Iterator[None]:
    """Turn an OSError while writing ``path`` into a one-line ConfigError naming it and the fix."""
    try:
        yield
    except OSError as exc:
        raise ConfigError(_cannot_write(Path(path), exc)) from None


def write_text_output(path: Path, text: str) -> None:
    """Write a generated document to ``path``, or to standard output when it is ``-``."""
    import sys

    if str(path) == "-":
        sys.stdout.write(text)
        return
    with writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    err_console.print(f"Markdown: {path}", markup=False, highlight=False)
