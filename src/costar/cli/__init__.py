"""The ``costar`` command: a thin face over the library. Parses, calls ``costar``, prints."""

from __future__ import annotations

import sys

from costar.cli import agreement, compare, core, judges, labels, models, refine, traces  # noqa: F401  (registers the commands)
from costar.cli.common import app, err_console
from costar.errors import CostarError


def main() -> None:
    try:
        app(standalone_mode=True)
    except CostarError as exc:
        err_console.print(f"error: {exc}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)


