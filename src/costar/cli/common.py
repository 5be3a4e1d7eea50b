"""Shared pieces of the CLI: the Typer apps, consoles and option types."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.text import Text

from costar import api
from costar.config import ProjectConfig, load_config
from costar.errors import ConfigError
from costar.safe_text import DEFAULT_LIMIT, for_terminal

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="coSTAR: test LLM agents the way engineers test software.")

console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="Project file (default: nearest costar.yaml).")]
StoreOpt = Annotated[str | None, typer.Option("--store", help="Store: a folder or a postgresql:// URL (default: COSTAR_STORE, else costar.yaml, else .costar).")]


AllowUnsandboxedOpt = Annotated[bool, typer.Option(
    "--allow-unsandboxed-code", help="Where no sandbox (bubblewrap) is available, run judge-written code anyway, "
    "with resource limits only (verdicts say so). Default: refuse it.")]


def load_project(config: Path | None) -> ProjectConfig:
    cfg = load_config(config)
    if cfg.allow_unsandboxed_code:
        allow_unsandboxed_code()
    return cfg


def allow_unsandboxed_code() -> None:
    """The user opted in (flag or costar.yaml): judges in this process, and the processes it starts
    (refine's runs), may run code without a sandbox when none is available."""
    from costar.sandbox import ALLOW_ENV

    os.environ[ALLOW_ENV] = "1"


def project_judges(cfg: ProjectConfig) -> Any:
    """The project's judge registry (``api.project_judges``), saying on stderr what it notices about
    them (an aligned version in use although its judges/ file changed since)."""
    registry = api.project_judges(cfg)
    say_notes(registry.notices)
    return registry


def say_notes(notes: Iterable[str]) -> None:
    """Each note on stderr (what coSTAR noticed about a project's judges)."""
    for note in notes:
        say(f"note: {note}", err=True)


def open_project_store(cfg: ProjectConfig, store: str | Path | None, *, create: bool = True) -> Any:
    """The project's store (``--store``, else COSTAR_STORE, else costar.yaml). Read-only commands
    pass ``create=False``: a missing store is then a one-line error instead of a new, empty
    ``.costar`` folder wherever the command ran, and an old store is not silently upgraded."""
    st = api.open_store(cfg.store_location(store), local_dir=cfg.local_path(store), create=create)
    for note in getattr(st, "migration_notes", ()):  # what upgrading an older store changed in its data
        err_console.print(f"note: {note}", markup=False, highlight=False)
    return st


CELL_LIMIT = 500


def cells(*values: Any) -> list[Text]:
    """Table cells shown literally: data (agent names, scenario ids, tags) is never Rich markup,
    so ``[/b]`` in an imported trace prints as text instead of crashing the table, and never drives
    the terminal (see ``costar.safe_text``)."""
    return [v if isinstance(v, Text) else Text(for_terminal("" if v is None else str(v), CELL_LIMIT, one_line=True))
            for v in values]


def say(text: Any, *, err: bool = False, limit: int | None = DEFAULT_LIMIT) -> None:
    """Print text that may carry untrusted content (trace data, model output, rationales, ids):
    literally (no markup), terminal controls shown as escapes, bounded. Every command prints
    such text through here."""
    (err_console if err else console).print(for_terminal(text, limit), markup=False, highlight=False,
                                            soft_wrap=True)


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
