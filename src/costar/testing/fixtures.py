"""pytest plugin (entry point ``pytest11``): fixtures for testing agents against scripted models.

``scripted_model_server`` is a factory: ``srv = scripted_model_server([Rule(...)])`` starts a server that is
stopped after the test. ``model_cassette`` is a per-test cassette path under ``cassettes/`` next to the
test file; its mode comes from ``COSTAR_CASSETTE_MODE`` (default: replay).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from costar.models.cassette import Cassette
from costar.testing.rules import Rule
from costar.testing.scripted_server import ScriptedModelServer

ServerFactory = Callable[..., ScriptedModelServer]


@pytest.fixture
def scripted_model_server() -> Iterator[ServerFactory]:
    started: list[ScriptedModelServer] = []

    def start(rules: Iterable[Rule | dict[str, Any]] = (), **kwargs: Any) -> ScriptedModelServer:
        srv = ScriptedModelServer(rules, **kwargs).start()
        started.append(srv)
        return srv

    yield start
    for srv in started:
        srv.stop()


@pytest.fixture
def model_cassette(request: pytest.FixtureRequest) -> Cassette:
    test_file = Path(str(request.node.path))
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
    return Cassette(test_file.parent / "cassettes" / test_file.stem / f"{name}.jsonl")
