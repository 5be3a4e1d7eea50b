"""The ``costar`` command: a thin face over the library. Parses, calls ``costar``, prints."""

from __future__ import annotations

import importlib
import sys

from costar.cli.common import app, err_console
from costar.errors import CostarError

# Each module registers its commands when imported; this order is the order `costar --help` shows.
for _module in ("run_commands", "compare_commands", "trace_commands", "mcp_commands", "ci_commands", "judge_commands",
                "label_commands", "refine_commands", "model_commands", "agreement_commands", "store_commands",
                "plugin_commands"):
    importlib.import_module(f"costar.cli.{_module}")


def main() -> None:
    try:
        app(standalone_mode=True)
    except CostarError as exc:
        err_console.print(f"error: {exc}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except (OSError, UnicodeError) as exc:  # a file or socket the user named: one line, not a traceback
        err_console.print(f"error: {exc}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(2)
