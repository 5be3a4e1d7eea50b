"""Importing an object named ``package.module:attribute``: agents, checks, judges and plugins
registered in code are all named this way."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

from costar.errors import ConfigError


def import_object(target: str) -> Any:
    """Resolve ``package.module:attribute`` (attribute may be dotted)."""
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(f"{target!r} is not of the form 'module:attribute' (e.g. 'checks:has_total')")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"cannot import module {module_name!r} for {target!r}: {exc}; "
                          "is it on PYTHONPATH or in the project folder?") from None
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ConfigError(f"module {module_name!r} has no attribute {attr!r}") from None
    return obj


class importable:
    """Puts folders on sys.path while a project module imports (its helpers sit next to it)."""

    def __init__(self, *folders: Path | None) -> None:
        self.folders = [str(f) for f in folders if f is not None]
        self.added: list[str] = []

    def __enter__(self) -> None:
        self.added = [f for f in self.folders if f not in sys.path]
        sys.path[:0] = self.added

    def __exit__(self, *exc: object) -> None:
        for f in self.added:
            if f in sys.path:
                sys.path.remove(f)
