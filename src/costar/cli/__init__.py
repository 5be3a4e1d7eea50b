"""The ``costar`` command: a thin face over the library. Parses, calls ``costar``, prints."""

from __future__ import annotations

import importlib
import sys

from costar._util.signals import terminations_interrupt
from costar.cli.common import app, err_console
from costar.errors import CostarError
from costar.safe_text import for_terminal

# Each module registers its commands when imported; this order is the order `costar --help` shows.
for _module in ("run_commands", "compare_commands", "trace_commands", "mcp_commands", "ci_commands", "judge_commands",
                "label_commands", "refine_commands", "model_commands", "agreement_commands", "store_commands",
                "server_commands", "monitor_commands", "ui_commands", "plugin_commands"):
    importlib.import_module(f"costar.cli.{_module}")


__all__ = ["app", "main"]


def main() -> None:
    """The ``costar`` command: run it; a CostarError is printed as one ``error:`` line and exits with its code (2)."""
    try:
        # SIGTERM (a CI cancel) and SIGHUP (a closed terminal) stop a command the way Ctrl-C does:
        # agents' process groups are killed and a run is marked interrupted.
        with terminations_interrupt():
            app(standalone_mode=True)
    except CostarError as exc:
        _error(exc)
        sys.exit(exc.exit_code)
    except (OSError, UnicodeError) as exc:  # a file or socket the user named: one line, not a traceback
        _error(exc)
        sys.exit(2)


def _error(exc: BaseException) -> None:
    # Messages quote what the user gave or the store holds (paths, ids, trace text): one safe line.
    err_console.print(for_terminal(f"error: {exc}", 4000, one_line=True), markup=False, highlight=False,
                      soft_wrap=True)
