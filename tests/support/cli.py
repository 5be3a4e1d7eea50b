"""Running the ``costar`` command as a user does: a child process with plain, wide output."""

from __future__ import annotations

import os
import sys


def costar_cmd() -> list[str]:
    return [sys.executable, "-m", "costar.cli"]


def child_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("COLUMNS", None)
    env.update({"NO_COLOR": "1", "COLUMNS": "200"}, **extra)
    return env
