from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Real public data (tau-bench, SWE-agent, OpenInference, PandaLM, the OTel GenAI conventions),
# kept in the repository with its licenses so a clean checkout tests against it.
EXTERNAL = REPO / "tests" / "data" / "external"


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A scratch project folder as the working directory, importable for python agents/checks."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


@pytest.fixture
def store(tmp_path: Path):
    from costar.store.sqlite import SQLiteStore

    st = SQLiteStore(tmp_path / ".costar")
    yield st
    st.close()


def costar_cmd() -> list[str]:
    return [sys.executable, "-m", "costar.cli"]


def child_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("COLUMNS", None)
    env.update({"NO_COLOR": "1", "COLUMNS": "200"}, **extra)
    return env
